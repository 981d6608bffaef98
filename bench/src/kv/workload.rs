//! The workload definitions of the KV table: put, range, txn and load (and the restart
//! workload's write phase), and the keys and values they write.
use ballast_bench::report::human;

use crate::opts::Opts;

pub const KEY_LEN: usize = 32;
pub const VALUE_LEN: usize = 256;

#[derive(Clone, Copy)]
pub enum Op {
    /// Put a random key of `prefix` in 0..keyspace.
    PutRandom,
    /// Put key number `i` (the i-th op) of `prefix`: each key once.
    PutSeq,
    /// Get a random key of `prefix` in 0..keyspace.
    Range { serializable: bool },
    /// Each client compare-and-swaps its own key: mod_revision == last seen, then put.
    Cas,
}

#[derive(Clone)]
pub struct Workload {
    pub name: String,
    pub id: &'static str,
    pub op: Op,
    pub prefix: &'static str,
    pub keyspace: u64,
    pub clients: usize,
    pub conns: usize,
    pub ops: u64,
    pub max_secs: f64,
    /// Value size of the puts.
    pub value_len: usize,
    /// Puts write `keyed_value(i, value_len)` (checkable per key) instead of one shared value.
    pub keyed_values: bool,
    /// Unmeasured workload run first (fills the keys the range workloads read).
    pub setup: Option<Box<Workload>>,
}

pub fn workloads(o: &Opts) -> Vec<Workload> {
    let w = |id: &'static str, name: String, op, prefix, keyspace, clients, conns, ops| Workload {
        name,
        id,
        op,
        prefix,
        keyspace,
        clients,
        conns,
        ops,
        max_secs: o.max_secs,
        value_len: VALUE_LEN,
        keyed_values: false,
        setup: None,
    };
    let range_keys = 1000.min(o.keyspace);
    let fill = Box::new(w(
        "fill",
        "fill".into(),
        Op::PutSeq,
        "rng/",
        range_keys,
        100,
        10,
        range_keys,
    ));
    let mut v = vec![
        w(
            "put-1c",
            "put 1c/1conn".into(),
            Op::PutRandom,
            "put/",
            o.keyspace,
            1,
            1,
            (o.ops / 10).max(1),
        ),
        w(
            "put-100c",
            "put 100c/10conn".into(),
            Op::PutRandom,
            "put/",
            o.keyspace,
            100,
            10,
            o.ops,
        ),
        w(
            "put-1000c",
            "put 1000c/100conn".into(),
            Op::PutRandom,
            "put/",
            o.keyspace,
            1000,
            100,
            o.ops,
        ),
        Workload {
            setup: Some(fill.clone()),
            ..w(
                "range-lin",
                "range lin 100c/10conn".into(),
                Op::Range {
                    serializable: false,
                },
                "rng/",
                range_keys,
                100,
                10,
                o.ops,
            )
        },
        Workload {
            setup: Some(fill),
            ..w(
                "range-ser",
                "range ser 100c/10conn".into(),
                Op::Range { serializable: true },
                "rng/",
                range_keys,
                100,
                10,
                o.ops,
            )
        },
        w(
            "txn-cas",
            "txn cas 100c/10conn".into(),
            Op::Cas,
            "cas/",
            0,
            100,
            10,
            o.ops,
        ),
        Workload {
            max_secs: o.load_max_secs,
            ..w(
                "load",
                format!("load {} keys 1000c/100conn", human(o.keys)),
                Op::PutSeq,
                "load/",
                o.keys,
                1000,
                100,
                o.keys,
            )
        },
    ];
    if let Some(l) = &o.workloads {
        v.retain(|w| l.iter().any(|n| n == w.id));
    }
    v
}

/// The value the restart workload stores under key number `i`: the index, then a filler that
/// depends on it, so a value read back identifies its key.
pub fn keyed_value(i: u64, len: usize) -> Vec<u8> {
    let mut v = format!("{i:016}:").into_bytes();
    let salt = (i % 251) as usize;
    v.extend((v.len()..len).map(|j| b'a' + ((j + salt) % 26) as u8));
    v.truncate(len);
    v
}

pub fn key(prefix: &str, i: u64) -> Vec<u8> {
    let width = KEY_LEN - prefix.len();
    format!("{prefix}{i:0width$}").into_bytes()
}

/// xorshift64*: cheap per-client randomness, no dependency.
pub struct Rng(pub u64);
impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

//! The workload definitions of the KV table: the preload (also the `load` row), the sustained put,
//! range and txn workloads that follow it on the same server, the restart workload's write phase
//! (via `Workload`), and the keys and values they write.
use std::time::Duration;

use ballast_bench::report::human;

use crate::opts::{selected, Opts};

pub const KEY_LEN: usize = 32;
pub const VALUE_LEN: usize = 256;
/// The preloaded keys: the put workloads overwrite them, the range workloads read them.
const PRELOAD_PREFIX: &str = "pre/";
/// The id of the `load` row: the preload's own measurement.
pub const LOAD_ID: &str = "load";
/// The put workload whose etcd 3.5 ops/s sets the open loop's rate when `--open-rate` is not given.
pub const RATE_SOURCE_ID: &str = "put-1000c";

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

/// How requests are issued.
#[derive(Clone, Copy, PartialEq)]
pub enum Pace {
    /// Each client sends its next request when the previous one is answered.
    Closed,
    /// Ticket i is due at start + i / rate; a free client takes the next ticket, waits until it is
    /// due and sends it; latency counts from the due time. None: the rate is resolved when the
    /// workload runs (`--open-rate`, else etcd 3.5's put-1000c ops/s of this run).
    Open(Option<f64>),
}

#[derive(Clone)]
pub struct Workload {
    pub name: String,
    pub id: &'static str,
    pub op: Op,
    pub pace: Pace,
    pub prefix: &'static str,
    pub keyspace: u64,
    pub clients: usize,
    pub conns: usize,
    /// Ops to run (bounded by `secs`); None: run for `secs` (a sustained workload).
    pub ops: Option<u64>,
    /// The duration of a sustained workload, or the time bound of a counted one.
    pub secs: f64,
    /// Value size of the puts.
    pub value_len: usize,
    /// Puts write `keyed_value(i, value_len)` (checkable per key) instead of one shared value.
    pub keyed_values: bool,
}

/// The KV part of a run: on one server per target, the preload, then the sustained workloads in
/// order, while a compactor runs every `compact_every`.
pub struct Plan {
    /// `--preload-keys` keys of 32 B with 256 B values, 1000 clients / 100 connections.
    pub preload: Workload,
    /// Whether the preload's measurement is a row (`load`).
    pub load_row: bool,
    /// The selected sustained workloads, in order.
    pub sustained: Vec<Workload>,
    pub compact_every: Duration,
}

impl Plan {
    /// Whether any KV workload (and so the preload) runs.
    pub fn is_empty(&self) -> bool {
        !self.load_row && self.sustained.is_empty()
    }

    /// The table's workloads, in order: the sustained ones, then `load`.
    pub fn rows(&self) -> Vec<&Workload> {
        let load = self.load_row.then_some(&self.preload);
        self.sustained.iter().chain(load).collect()
    }
}

/// A sustained workload over the preloaded keys (txn-cas: over keys of its own).
fn sustained(o: &Opts, id: &'static str, op: Op, clients: usize, conns: usize) -> Workload {
    let (prefix, keyspace) = match op {
        Op::Cas => ("cas/", clients as u64),
        _ => (PRELOAD_PREFIX, o.preload_keys),
    };
    let what = match op {
        Op::PutRandom | Op::PutSeq => "put",
        Op::Range {
            serializable: false,
        } => "range lin",
        Op::Range { serializable: true } => "range ser",
        Op::Cas => "txn cas",
    };
    Workload {
        name: format!("{what} {clients}c/{conns}conn"),
        id,
        op,
        pace: Pace::Closed,
        prefix,
        keyspace,
        clients,
        conns,
        ops: None,
        secs: o.duration,
        value_len: VALUE_LEN,
        keyed_values: false,
    }
}

/// The preload: each of `--preload-keys` keys once, bounded by `--load-max-secs`.
fn preload(o: &Opts) -> Workload {
    Workload {
        name: format!("load {} keys 1000c/100conn", human(o.preload_keys)),
        id: LOAD_ID,
        op: Op::PutSeq,
        ops: Some(o.preload_keys),
        secs: o.load_max_secs,
        ..sustained(o, LOAD_ID, Op::PutSeq, 1000, 100)
    }
}

pub fn plan(o: &Opts) -> Plan {
    let open = Workload {
        name: "put open-loop 1000c/100conn".into(),
        pace: Pace::Open(o.open_rate),
        ..sustained(o, "put-open-1000c", Op::PutRandom, 1000, 100)
    };
    let all = vec![
        sustained(o, "put-1c", Op::PutRandom, 1, 1),
        sustained(o, "put-100c", Op::PutRandom, 100, 10),
        sustained(o, RATE_SOURCE_ID, Op::PutRandom, 1000, 100),
        open,
        sustained(
            o,
            "range-lin",
            Op::Range {
                serializable: false,
            },
            100,
            10,
        ),
        sustained(o, "range-ser", Op::Range { serializable: true }, 100, 10),
        sustained(o, "txn-cas", Op::Cas, 100, 10),
    ];
    Plan {
        preload: preload(o),
        load_row: selected(o, LOAD_ID),
        sustained: all.into_iter().filter(|w| selected(o, w.id)).collect(),
        compact_every: Duration::from_secs_f64(o.compact_secs),
    }
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

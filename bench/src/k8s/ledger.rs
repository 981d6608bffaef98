//! What the apiserver side did: per operation type the answered, failed and conflicting
//! requests with their latencies, and every applied write (resource, revision, key, the
//! mod_revision it replaced, when it was sent), which `check.rs` matches against the watches.
use ballast_bench::hist::Hist;

use super::objects::Resource;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum OpKind {
    /// The apiserver's start: one paginated LIST per resource prefix.
    InitialList,
    /// A paginated LIST of one namespace's pods (a client's consistent list).
    List,
    /// Pod create / GuaranteedUpdate / delete.
    Create,
    Update,
    Delete,
    /// Event create, with the lease manager's lease.
    EventCreate,
    /// A node's Lease object renewed (GuaranteedUpdate).
    Heartbeat,
    /// A Node object's status updated (GuaranteedUpdate).
    NodeStatus,
    /// The compactor's step: its txn on compact_rev_key and the Compact.
    Compaction,
}

impl OpKind {
    pub const ALL: [OpKind; 9] = [
        OpKind::InitialList,
        OpKind::List,
        OpKind::Create,
        OpKind::Update,
        OpKind::Delete,
        OpKind::EventCreate,
        OpKind::Heartbeat,
        OpKind::NodeStatus,
        OpKind::Compaction,
    ];

    pub fn name(self) -> &'static str {
        match self {
            OpKind::InitialList => "initial list",
            OpKind::List => "list",
            OpKind::Create => "create",
            OpKind::Update => "update",
            OpKind::Delete => "delete",
            OpKind::EventCreate => "event create",
            OpKind::Heartbeat => "heartbeat",
            OpKind::NodeStatus => "node status",
            OpKind::Compaction => "compaction",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }

    /// A write request of the steady traffic (the compactor's step excepted; an event create's
    /// latency includes the lease manager's LeaseGrant when it needs a new lease, about once a
    /// run).
    pub fn is_write(self) -> bool {
        matches!(self, OpKind::Create | OpKind::Update | OpKind::Delete | OpKind::EventCreate | OpKind::Heartbeat | OpKind::NodeStatus)
    }
}

/// One operation type's requests.
#[derive(Clone, Default)]
pub struct OpStats {
    /// Answered without error (conflicts not included), with their latency in µs.
    pub lat: Hist,
    pub errors: u64,
    /// Compare-and-swap txns whose compare failed (none expected: one writer per object).
    pub conflicts: u64,
    pub first_error: Option<String>,
}

impl OpStats {
    pub fn ok(&mut self, lat_us: u64) {
        self.lat.record(lat_us);
    }

    pub fn error(&mut self, e: String) {
        self.errors += 1;
        self.first_error.get_or_insert(e);
    }

    pub fn count(&self) -> u64 {
        self.lat.len()
    }
}

/// One applied write.
pub struct Write {
    pub res: Resource,
    pub rev: i64,
    pub key: Vec<u8>,
    pub delete: bool,
    /// The mod_revision it replaced (0 for a create): the prev_kv its event must carry.
    pub prev_rev: i64,
    /// When the request was sent, ns since the workload's base instant.
    pub sent_ns: u64,
}

/// Requests at least this slow are kept with their second of the traffic, to show whether a
/// tail is a few stalls or spread out.
pub const SLOW_US: u64 = 50_000;

pub struct Ledger {
    pub ops: Vec<OpStats>,
    pub writes: Vec<Write>,
    /// Per request of at least `SLOW_US`: the second of the traffic it was due in.
    pub slow_secs: Vec<u64>,
    /// Per applied write request (conflicts left out): when it was due (µs from the traffic's
    /// start) and its latency (µs), for `tail_shape`.
    pub write_lats: Vec<(u64, u64)>,
}

impl Default for Ledger {
    fn default() -> Self {
        Ledger {
            ops: vec![OpStats::default(); OpKind::ALL.len()],
            writes: Vec::new(),
            slow_secs: Vec::new(),
            write_lats: Vec::new(),
        }
    }
}

impl Ledger {
    pub fn op(&mut self, k: OpKind) -> &mut OpStats {
        &mut self.ops[k.index()]
    }
}

/// A write at least this slow is in the tail `tail_shape` describes (near the p99 on this host,
/// for both servers: 0.6-2.6% of their writes in the runs of 12-08).
const TAIL_US: u64 = 2_000;
/// The windows the tail's requests are counted in: a stall of the server or the disk puts many
/// of them in one window; requests slow each on its own are spread over many.
const TAIL_WINDOW_US: u64 = 100_000;
/// Another write due this shortly before a tail request may have held it up (the server's
/// previous durable write, its queue).
const CROWDED_US: u64 = 1_000;

/// Whether the slow writes of `lats` ((due µs, latency µs) each) are a few stalls or spread
/// out, and whether they came right after another write: "writes ≥ 1 ms: a%, ≥ 2 ms: b% (n) in
/// w distinct 100 ms windows (most in one: m); another write due ≤ 1 ms before c% of them, d%
/// of all writes".
pub fn tail_shape(lats: &[(u64, u64)]) -> Option<String> {
    if lats.is_empty() {
        return None;
    }
    let mut by_due = lats.to_vec();
    by_due.sort_unstable();
    let share = |n: usize| 100.0 * n as f64 / by_due.len() as f64;
    let over_1ms = by_due.iter().filter(|(_, l)| *l >= 1_000).count();
    let crowded: Vec<bool> = (0..by_due.len()).map(|i| i > 0 && by_due[i].0 - by_due[i - 1].0 <= CROWDED_US).collect();
    let tail: Vec<usize> = (0..by_due.len()).filter(|&i| by_due[i].1 >= TAIL_US).collect();
    let mut windows: std::collections::BTreeMap<u64, usize> = Default::default();
    tail.iter().for_each(|&i| *windows.entry(by_due[i].0 / TAIL_WINDOW_US).or_default() += 1);
    let tail_crowded = tail.iter().filter(|&&i| crowded[i]).count();
    Some(format!(
        "writes ≥ 1 ms: {:.1}%, ≥ {} ms: {:.1}% ({}) in {} distinct {} ms windows (most in one: {}); another write due ≤ {} ms before {:.0}% of them, {:.0}% of all writes",
        share(over_1ms),
        TAIL_US / 1000,
        share(tail.len()),
        tail.len(),
        windows.len(),
        TAIL_WINDOW_US / 1000,
        windows.values().max().copied().unwrap_or(0),
        CROWDED_US / 1000,
        if tail.is_empty() { 0.0 } else { 100.0 * tail_crowded as f64 / tail.len() as f64 },
        share(crowded.iter().filter(|c| **c).count()),
    ))
}

#[cfg(test)]
mod tests {
    use super::tail_shape;

    #[test]
    fn a_stall_is_told_from_a_spread_tail() {
        assert_eq!(tail_shape(&[]), None);
        // 100 writes 10 ms apart; the slow ones: three in one window, one alone after a
        // write due 0.5 ms before it.
        let mut lats: Vec<(u64, u64)> = (0..100).map(|i| (i * 10_000, 800)).collect();
        for i in [10, 11, 12] {
            lats[i].1 = 5_000;
        }
        lats[50].1 = 1_500;
        lats.push((700_500, 2_500));
        let s = tail_shape(&lats).unwrap();
        assert_eq!(
            s,
            "writes ≥ 1 ms: 5.0%, ≥ 2 ms: 4.0% (4) in 2 distinct 100 ms windows (most in one: 3); another write due ≤ 1 ms before 25% of them, 1% of all writes"
        );
    }
}

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
}

impl Default for Ledger {
    fn default() -> Self {
        Ledger {
            ops: vec![OpStats::default(); OpKind::ALL.len()],
            writes: Vec::new(),
            slow_secs: Vec::new(),
        }
    }
}

impl Ledger {
    pub fn op(&mut self, k: OpKind) -> &mut OpStats {
        &mut self.ops[k.index()]
    }
}

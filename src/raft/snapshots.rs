//! When to snapshot, and what a finished snapshot releases. The core orders a snapshot every
//! `--snapshot-count` applied requests (etcd counts requests; ours are batched into entries),
//! or when one is requested (Defragment: a full rewrite). One runs at a time; requests that
//! arrive meanwhile are served by the next. Writing it is the driver's job
//! (`snapshot::coordinator`), which reports the outcome back as an input.

/// A snapshot to cut at the applied state `index`.
#[derive(Debug, Clone, PartialEq)]
pub struct SnapshotOrder {
    pub index: u64,
    pub term: u64,
    /// WAL replay after this snapshot starts at this batch.
    pub wal_seq_from: u64,
    /// A batch durable now, which the WAL keeps as proof that it continues the snapshot.
    pub wal_seq_kept: u64,
    /// Requested (Defragment): rewrite every segment rather than add a delta.
    pub full: bool,
    /// Raft's configuration and the member list at `index` (a restart resumes with them).
    pub voters: Vec<u64>,
    pub learners: Vec<u64>,
    pub members: crate::cluster::Cluster,
}

impl SnapshotOrder {
    /// WAL batches before this one hold only what the snapshot covers (`wal_seq_kept` stays too).
    pub fn release_wal_before(&self) -> u64 {
        self.wal_seq_from.min(self.wal_seq_kept)
    }
}

pub struct Schedule<R> {
    /// Applied requests between automatic snapshots.
    every_requests: u64,
    applied_since: u64,
    running: Option<(SnapshotOrder, Vec<R>)>,
    requested: Vec<R>,
}

impl<R> Schedule<R> {
    pub fn new(every_requests: u64) -> Schedule<R> {
        Schedule { every_requests: every_requests.max(1), applied_since: 0, running: None, requested: Vec::new() }
    }

    pub fn applied(&mut self, requests: u64) {
        self.applied_since += requests;
    }

    pub fn request(&mut self, waiter: R) {
        self.requested.push(waiter);
    }

    /// A snapshot is due now (a leader's latest one predates a member it must send one to).
    pub fn soon(&mut self) {
        self.applied_since = self.applied_since.max(self.every_requests);
    }

    pub fn is_due(&self) -> bool {
        self.running.is_none() && (self.applied_since >= self.every_requests || !self.requested.is_empty())
    }

    pub fn is_running(&self) -> bool {
        self.running.is_some()
    }

    /// A snapshot from the leader was installed: it counts as the last snapshot.
    pub fn installed(&mut self) {
        assert!(self.running.is_none(), "a snapshot from the leader installed while one of ours ran");
        self.applied_since = 0;
    }

    /// Marks `order` as running; its `full` is set when a snapshot was requested.
    pub fn start(&mut self, mut order: SnapshotOrder) -> SnapshotOrder {
        assert!(self.running.is_none(), "a snapshot is already running");
        order.full = !self.requested.is_empty();
        self.applied_since = 0;
        self.running = Some((order.clone(), std::mem::take(&mut self.requested)));
        order
    }

    /// The running snapshot finished: its order and the waiters to answer.
    pub fn finish(&mut self) -> (SnapshotOrder, Vec<R>) {
        self.running.take().expect("a snapshot finished that was not running")
    }
}

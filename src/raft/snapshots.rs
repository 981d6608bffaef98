//! When to snapshot, and what a finished snapshot releases. The core orders a snapshot every
//! `--snapshot-count` applied requests (etcd counts requests; ours are batched into entries),
//! when the records written since the last one reach `HELD_BUDGET_BYTES` (see below), or when
//! one is requested (Defragment: a full rewrite). One runs at a time; requests that arrive
//! meanwhile are served by the next. Writing it is the driver's job (`snapshot::coordinator`),
//! which reports the outcome back as an input.
//!
//! A third trigger: writes have stopped (`quiet_ticks` ticks without an applied request) with
//! at least `QUIET_MIN_BYTES` still on the heap. What was written since the last snapshot would
//! otherwise stay there until writes resume: up to the count's or the budget's worth (29 MiB
//! after loading 1M keys of 256 bytes), on a server that is doing nothing else.
//!
//! Why a budget of bytes beside the count: the values written since the last snapshot stay on
//! the heap until a snapshot moves them into its segment's mapping. With etcd's count alone
//! that is 100k values: 26 MiB of 256-byte ones, but 550 MiB of the 1-10 KiB objects
//! Kubernetes writes. The budget bounds it whatever the values' size (to the budget, what the
//! `HELD_MIN_REQUESTS` after a snapshot's start write, and what is written while one runs).

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

/// Bytes of records (values and their accounted overhead, `Record::size_bytes`) written since
/// the last snapshot, summed over the shards, at which the next one is due: every ~52k puts of
/// 256 bytes, so the count (100k) decides only for values under ~100 bytes. Loading 1M keys of
/// 256 bytes ended at 165-173 MiB resident with 64 MiB (the count deciding), 160-162 MiB with
/// 16, and the extra deltas cost no measurable CPU (put at 100 clients on 1M keys, 60 s, A/B:
/// 23.8-27.8 µs per put against 23.5-27.4).
pub const HELD_BUDGET_BYTES: u64 = 16 << 20;
/// Requests applied since the last snapshot started before the budget may order one: a
/// snapshot that failed (a full disk) is retried no sooner.
const HELD_MIN_REQUESTS: u64 = 64;
/// How long without an applied request before a quiet server snapshots (in ticks: this over
/// the heartbeat interval).
pub const QUIET_AFTER: std::time::Duration = std::time::Duration::from_secs(5);
/// Bytes written since the last snapshot that a quiet server moves off its heap.
pub const QUIET_MIN_BYTES: u64 = 4 << 20;

pub struct Schedule<R> {
    /// Applied requests between automatic snapshots.
    every_requests: u64,
    applied_since: u64,
    /// Bytes written since the last snapshot (the driver's latest reading).
    held_bytes: u64,
    /// Ticks without an applied request after which a quiet server snapshots what it holds.
    quiet_ticks: u64,
    /// Ticks since a request was last applied.
    ticks_since_applied: u64,
    running: Option<(SnapshotOrder, Vec<R>)>,
    requested: Vec<R>,
}

impl<R> Schedule<R> {
    pub fn new(every_requests: u64, quiet_ticks: u64) -> Schedule<R> {
        Schedule {
            every_requests: every_requests.max(1),
            applied_since: 0,
            held_bytes: 0,
            quiet_ticks: quiet_ticks.max(1),
            ticks_since_applied: 0,
            running: None,
            requested: Vec::new(),
        }
    }

    /// One tick of the core's clock.
    pub fn tick(&mut self) {
        self.ticks_since_applied = self.ticks_since_applied.saturating_add(1);
    }

    /// The shards hold `bytes` written since their last segments.
    pub fn held(&mut self, bytes: u64) {
        self.held_bytes = bytes;
    }

    pub fn applied(&mut self, requests: u64) {
        self.applied_since += requests;
        if requests > 0 {
            self.ticks_since_applied = 0;
        }
    }

    pub fn request(&mut self, waiter: R) {
        self.requested.push(waiter);
    }

    /// A snapshot is due now (a leader's latest one predates a member it must send one to).
    pub fn soon(&mut self) {
        self.applied_since = self.applied_since.max(self.every_requests);
    }

    pub fn is_due(&self) -> bool {
        let over_budget = self.applied_since >= HELD_MIN_REQUESTS && self.held_bytes >= HELD_BUDGET_BYTES;
        // (Once per quiet spell: a snapshot started resets the count, and only a write moves it.)
        let quiet = self.applied_since > 0 && self.held_bytes >= QUIET_MIN_BYTES && self.ticks_since_applied >= self.quiet_ticks;
        self.running.is_none() && (self.applied_since >= self.every_requests || over_budget || quiet || !self.requested.is_empty())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn order() -> SnapshotOrder {
        let members = crate::cluster::Cluster { id: 1, members: vec![], local_id: 1, removed: vec![] };
        SnapshotOrder { index: 1, term: 1, wal_seq_from: 0, wal_seq_kept: 0, full: false, voters: vec![], learners: vec![], members }
    }

    #[test]
    fn due_by_count_or_by_held_bytes_after_a_few_requests() {
        let mut s: Schedule<()> = Schedule::new(1000, 50);
        s.applied(999);
        assert!(!s.is_due(), "under the count and the budget");
        s.applied(1);
        assert!(s.is_due(), "the count is reached");
        s.start(order());
        s.finish();
        s.held(HELD_BUDGET_BYTES);
        s.applied(HELD_MIN_REQUESTS - 1);
        assert!(!s.is_due(), "over the budget, but too soon after the last snapshot started");
        s.applied(1);
        assert!(s.is_due(), "over the budget");
        s.start(order());
        assert!(!s.is_due(), "one runs at a time");
        s.finish();
        s.held(HELD_BUDGET_BYTES - 1);
        s.applied(HELD_MIN_REQUESTS);
        assert!(!s.is_due(), "under the budget again");
    }

    #[test]
    fn due_once_writes_stop_with_enough_on_the_heap() {
        let mut s: Schedule<()> = Schedule::new(1000, 50);
        s.held(QUIET_MIN_BYTES);
        s.applied(1);
        (0..49).for_each(|_| s.tick());
        assert!(!s.is_due(), "not quiet long enough");
        s.applied(0);
        s.tick();
        assert!(s.is_due(), "quiet for 50 ticks (an entry without requests does not count)");
        s.applied(1);
        (0..49).for_each(|_| s.tick());
        assert!(!s.is_due(), "a request applied: quiet again from there");
        s.tick();
        s.start(order());
        s.finish();
        (0..100).for_each(|_| s.tick());
        assert!(!s.is_due(), "nothing written since the quiet snapshot");
        s.held(QUIET_MIN_BYTES - 1);
        s.applied(1);
        (0..100).for_each(|_| s.tick());
        assert!(!s.is_due(), "too little on the heap to bother");
    }
}

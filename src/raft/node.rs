//! The raft core's Ready loop — the write path of ballast. It runs as a task on shard 0.
//!
//! One turn of the loop:
//! 1. Wait for a client message, a WAL stripe reporting a durable batch, or the next tick;
//!    then drain every queued message (bounded by `MAX_MSGS_PER_TURN`, and none while
//!    `MAX_UNPERSISTED_BYTES` are proposed and not durable: that bounds a WAL write). All
//!    proposals of the turn become one raft entry (an `EntryBatch`, split at `MAX_ENTRY_BYTES`):
//!    batching is what makes many clients cheap. Linearizable reads queued in the turn share one ReadIndex,
//!    issued once the leader has committed an entry of its term (raft-rs drops earlier ones).
//! 2. Durable batches are reported to raft-rs in order (`on_persist_ready` for the longest
//!    durable prefix of readies); only now may raft count their entries as persisted.
//! 3. `Ready`s, with raft-rs's async API (at most one WAL batch in flight per stripe, so
//!    proposals arriving meanwhile form the next, larger batch): messages to peers would go out
//!    first (none while the group has one voter); committed entries — durable by construction —
//!    are applied in log order (apply.rs assigns revisions, then the waiting clients are
//!    answered and the applied revision published); new entries and the hard state go to raft's
//!    log storage and, as one numbered batch, to a WAL stripe (`seq % stripes`) without waiting.
//!    The stripe's writer makes everything queued durable with one direct O_DSYNC write
//!    (group commit) and reports the sequence numbers back (step 2). So no client is answered
//!    before its entry is durable and applied. At most one batch per stripe is in flight: WAL
//!    recovery relies on it (a torn write can only be a stripe's last record).
//! 4. Snapshots: every `--snapshot-count` applied requests (or on Defragment) every shard is
//!    told to write its segment, queued behind the writes applied so far; when all are written
//!    the manifest is renamed into place and the raft log and WAL before it are released.
//!
//! On restart raft's storage is restored from the snapshot and the WAL after it; committed
//! entries after the snapshot are applied again, which rebuilds the MVCC state.

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::{select, Either};
use prost::Message as _;
use raft::eraftpb::{Entry, EntryType};
use raft::storage::MemStorage;
use raft::{Config as RaftConfig, RawNode, StateRole};
use tokio::sync::oneshot;

use crate::kv::apply::Applier;
use crate::kv::delivery::{Delivery, Outbox};
use crate::kv::response::Response;
use crate::error::{Error, Result};
use crate::metrics as m;
use crate::proto::ballastpb::{internal_request::Request, EntryBatch, InternalRequest};
use crate::proto::etcdserverpb::{alarm_request::AlarmAction, AlarmRequest, AlarmType};
use crate::reply;
use crate::shard::mailbox::Shards;
use crate::snapshot::Manifest;
use crate::status::ServerStatus;
use crate::wal::record::Batch;
use crate::wal::recover::Recovered;
use crate::wal::stripe::StripeMsg;

/// Client messages queued for the raft core; a full queue answers "too many requests".
pub const PROPOSAL_QUEUE_CAPACITY: usize = 16 * 1024;
/// Messages taken from the queue per loop turn.
const MAX_MSGS_PER_TURN: usize = 4096;
/// A raft entry holds proposals up to this size (plus one request).
const MAX_ENTRY_BYTES: usize = 4 << 20;
/// Proposal bytes taken from the queue but not yet durable: while this much is outstanding the
/// core takes no new client messages (they wait in the bounded queue), so one ready, hence one
/// WAL write, holds at most this plus one entry (`MAX_ENTRY_BYTES` plus one request) — not,
/// say, 4096 queued 1.5 MiB requests in one 6 GiB write.
const MAX_UNPERSISTED_BYTES: usize = 8 << 20;
/// Readies handled per loop turn.
const MAX_READIES_PER_TURN: usize = 8;
/// Applied entries kept in raft's in-memory log for followers to catch up from (etcd's
/// SnapshotCatchUpEntries); a single voter keeps none.
const CATCH_UP_ENTRIES: u64 = 5000;
/// Raft's in-memory log is trimmed once this many entries can go (not on every apply).
const LOG_TRIM_STEP_ENTRIES: u64 = 64;

pub enum CoreMsg {
    /// `home`: the caller's front-end thread, where its answer is delivered (`reply.rs`).
    Propose { req: Request, reply: oneshot::Sender<Result<Response>>, home: Option<usize> },
    ReadIndex { reply: oneshot::Sender<Result<()>>, home: Option<usize> },
    /// Take a snapshot now (Defragment); resolves when its manifest is durable.
    Snapshot { reply: oneshot::Sender<Result<()>> },
    /// Resolves once every WAL batch written before it is durable (health checks: a stuck disk
    /// never answers, as etcd's raft loop stuck in fsync answers no read).
    DiskBarrier { reply: oneshot::Sender<Result<()>> },
}

/// The front end's handle to the raft core.
#[derive(Clone)]
pub struct RaftHandle {
    tx: flume::Sender<CoreMsg>,
    /// etcd's request timeout: 5 s + 2 × election timeout; then "etcdserver: request timed out"
    /// (the request may still be applied later, as in etcd).
    timeout: Duration,
}

impl RaftHandle {
    pub fn new(tx: flume::Sender<CoreMsg>, election_timeout: Duration) -> RaftHandle {
        RaftHandle { tx, timeout: Duration::from_secs(5) + 2 * election_timeout }
    }

    async fn call<T>(&self, msg: impl FnOnce(oneshot::Sender<Result<T>>) -> CoreMsg) -> Result<T> {
        self.call_within(self.timeout, msg).await
    }

    async fn call_within<T>(&self, timeout: Duration, msg: impl FnOnce(oneshot::Sender<Result<T>>) -> CoreMsg) -> Result<T> {
        let (tx, rx) = oneshot::channel();
        self.tx.try_send(msg(tx)).map_err(|e| match e {
            flume::TrySendError::Full(_) => Error::TooManyRequests,
            flume::TrySendError::Disconnected(_) => Error::Stopped,
        })?;
        match tokio::time::timeout(timeout, rx).await {
            Ok(reply) => reply.map_err(|_| Error::Stopped)?,
            Err(_) => Err(Error::Timeout),
        }
    }

    /// Proposes a write; resolves once it is durable, committed and applied.
    pub async fn propose(&self, req: Request) -> Result<Response> {
        let home = reply::home();
        self.call(|reply| CoreMsg::Propose { req, reply, home }).await
    }

    /// Writes a fresh snapshot (rewriting every segment) and releases the log before it.
    pub async fn snapshot(&self) -> Result<()> {
        // Writing every segment takes as long as the data needs: no request timeout.
        self.call_within(Duration::MAX, |reply| CoreMsg::Snapshot { reply }).await
    }

    /// Resolves once every WAL write issued before the call is durable.
    pub async fn disk_barrier(&self) -> Result<()> {
        self.call(|reply| CoreMsg::DiskBarrier { reply }).await
    }

    /// etcd's request timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Resolves once everything committed before the call is applied (raft ReadIndex).
    pub async fn read_index(&self) -> Result<()> {
        let home = reply::home();
        self.call(|reply| CoreMsg::ReadIndex { reply, home }).await
    }
}

pub struct CoreConfig {
    pub id: u64,
    pub voters: Vec<u64>,
    pub heartbeat: Duration,
    pub election_ticks: usize,
    pub quota: crate::quota::Quota,
    pub snap_dir: std::path::PathBuf,
    /// Applied requests between automatic snapshots (`--snapshot-count`).
    pub snapshot_count: u64,
    /// Front-end thread `i`'s answer dispatcher (`reply.rs`).
    pub homes: Vec<flume::Sender<reply::Batch>>,
    /// WAL stripes no shard writes any more (the shard count was lowered), with the highest
    /// batch sequence each holds: deleted by the first snapshot that covers them.
    pub retired_stripes: Vec<(std::path::PathBuf, u64)>,
}

/// A snapshot being written: the shards' segments, then the manifest.
struct SnapshotJob {
    started: Instant,
    done: Rc<RefCell<Option<std::result::Result<Manifest, String>>>>,
    waiters: Vec<oneshot::Sender<Result<()>>>,
}

type ReadWaiters = Vec<(Option<usize>, oneshot::Sender<Result<()>>)>;

struct Core {
    raw: RawNode<MemStorage>,
    /// One queue per WAL stripe (stripe i is written by shard i); batch `seq` goes to stripe
    /// `seq % stripes.len()`, so consecutive batches sync in parallel.
    stripes: Vec<flume::Sender<StripeMsg>>,
    persisted_tx: flume::Sender<u64>,
    /// Sequence number of the last WAL batch handed to a stripe.
    wal_seq: u64,
    /// Readies handed to raft-rs's async API, in order, with the WAL batch each wrote (if
    /// any). A prefix whose batches are all durable is reported with `on_persist_ready`.
    /// Bounded by the readies of the fsyncs in flight (one ready per loop turn).
    in_flight: VecDeque<(u64, Option<u64>)>,
    /// The newest WAL batch known durable with every batch before it (the released prefix).
    durable_seq: u64,
    persisted: BTreeSet<u64>,
    /// (batch seq, last raft index) of the batches a future snapshot may still need.
    batch_index: VecDeque<(u64, u64)>,
    applier: Applier,
    status: Arc<ServerStatus>,
    /// Proposal id → the client waiting for its result (proposals made on this node).
    waiters: HashMap<u64, (Option<usize>, oneshot::Sender<Result<Response>>)>,
    /// Answers of the current turn, sent per front-end thread at its end.
    outbox: Outbox,
    next_id: u64,
    /// Proposals and reads gathered in the current turn.
    batch: Vec<InternalRequest>,
    batch_bytes: usize,
    /// (index, term, requests) of the entries this node proposed and has not applied yet, in
    /// index order: apply takes the requests from here instead of decoding the entry it just
    /// encoded. An (index, term) pair names one entry (raft's log matching), so an entry that a
    /// new leader replaced is not mistaken for ours. Bounded by the proposals not yet applied.
    proposed: VecDeque<(u64, u64, Vec<InternalRequest>)>,
    reads: ReadWaiters,
    /// ReadIndex context → waiters; then (read index, waiters) until applied.
    reads_in_flight: HashMap<u64, ReadWaiters>,
    reads_ready: Vec<(u64, ReadWaiters)>,
    next_read_ctx: u64,
    shards: Shards,
    voters: Vec<u64>,
    snap_dir: std::path::PathBuf,
    snapshot_count: u64,
    applied_since_snapshot: u64,
    snapshot_job: Option<SnapshotJob>,
    /// The newest durable snapshot: the next one may be a delta on top of it.
    last_snapshot: Option<Manifest>,
    /// Number of the last snapshot started (`Manifest::seq`), failed ones included.
    snapshot_seq: u64,
    /// Disk barriers waiting for a batch sequence to be durable (`CoreMsg::DiskBarrier`).
    barriers: Vec<(u64, oneshot::Sender<Result<()>>)>,
    /// Snapshot requests that arrived while a job ran: served by the next job.
    snapshot_waiters: Vec<oneshot::Sender<Result<()>>>,
    retired_stripes: Vec<(std::path::PathBuf, u64)>,
}

/// Builds the core from the recovered WAL and runs it until every handle is dropped.
/// `ready` is signalled once the node leads (or follows) and has re-applied its log.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    cfg: CoreConfig,
    recovered: Recovered,
    snap: Option<Manifest>,
    rx: flume::Receiver<CoreMsg>,
    stripes: Vec<flume::Sender<StripeMsg>>,
    shards: Shards,
    status: Arc<ServerStatus>,
    ready: crossbeam::channel::Sender<std::result::Result<(), String>>,
) {
    let (persisted_tx, persisted_rx) = flume::unbounded();
    let mut core = match Core::new(&cfg, recovered, snap, stripes, persisted_tx, shards, status) {
        Ok(core) => core,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let mut ready = Some(ready);
    let mut next_tick = Instant::now() + cfg.heartbeat;
    // One timer for the whole loop, re-armed when it fires: cheaper than a new one per turn.
    let mut tick_timer = glommio::timer::Timer::new(cfg.heartbeat);
    loop {
        // Client messages wait in their queue while too much is proposed and not yet durable.
        let accepting = core.unpersisted_bytes() < MAX_UNPERSISTED_BYTES;
        let clients = async {
            if accepting {
                rx.recv_async().await
            } else {
                std::future::pending().await
            }
        };
        let clients = std::pin::pin!(clients);
        let client_or_disk = select(clients, persisted_rx.recv_async());
        let first = match select(client_or_disk, &mut tick_timer).await {
            Either::Left((Either::Left((Ok(msg), _)), _)) => Some(msg),
            Either::Left((Either::Left((Err(_), _)), _)) => break, // every handle dropped: shut down
            Either::Left((Either::Right((seq, _)), _)) => {
                core.persisted.extend(seq.ok()); // the core holds a sender: never closed
                None
            }
            Either::Right(_) => {
                tick_timer.reset(cfg.heartbeat); // it fires at the tick, which happens below
                None
            }
        };
        core.persisted.extend(persisted_rx.try_iter());
        core.release_persisted();
        core.raise_nospace_on_full_disk();
        if let Some(msg) = first {
            core.take(msg);
        }
        for _ in 0..MAX_MSGS_PER_TURN {
            if core.unpersisted_bytes() >= MAX_UNPERSISTED_BYTES {
                break;
            }
            let Ok(msg) = rx.try_recv() else { break };
            core.take(msg);
        }
        core.flush_turn();
        if Instant::now() >= next_tick {
            core.raw.tick();
            next_tick = Instant::now() + cfg.heartbeat;
        }
        core.on_ready().await;
        core.poll_snapshot().await;
        core.outbox.flush();
        if core.is_serving() {
            if let Some(tx) = ready.take() {
                let _ = tx.send(Ok(()));
            }
        }
    }
}

impl Core {
    fn new(
        cfg: &CoreConfig,
        recovered: Recovered,
        snap: Option<Manifest>,
        stripes: Vec<flume::Sender<StripeMsg>>,
        persisted_tx: flume::Sender<u64>,
        shards: Shards,
        status: Arc<ServerStatus>,
    ) -> std::result::Result<Core, String> {
        assert!(!stripes.is_empty());
        let storage = super::storage::restore(cfg.voters.clone(), &recovered, snap.as_ref())?;
        let raft_cfg = RaftConfig {
            applied: snap.as_ref().map_or(0, |m| m.index),
            id: cfg.id,
            election_tick: cfg.election_ticks,
            heartbeat_tick: 1,
            max_size_per_msg: 1 << 20,
            max_inflight_msgs: 256,
            pre_vote: true,
            ..Default::default()
        };
        raft_cfg.validate().map_err(|e| format!("raft config: {e}"))?;
        let logger = slog::Logger::root(slog::Discard, slog::o!());
        let mut raw = RawNode::new(&raft_cfg, storage, &logger).map_err(|e| format!("raft: {e}"))?;
        if cfg.voters == [cfg.id] {
            // A lone voter need not wait for an election timeout.
            raw.campaign().map_err(|e| format!("raft campaign: {e}"))?;
        }
        let boot_nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let mut applier = Applier::new(shards.clone(), status.clone(), cfg.quota);
        if let Some(m) = &snap {
            applier.restore(m.rev, m.compact_rev, &m.alarms);
            status.publish_applied(m.index, m.rev, m.compact_rev);
        }
        Ok(Core {
            raw,
            stripes,
            persisted_tx,
            wal_seq: recovered.last_seq,
            in_flight: VecDeque::new(),
            durable_seq: recovered.max_seq_found,
            persisted: BTreeSet::new(),
            batch_index: VecDeque::new(),
            applier,
            status,
            waiters: HashMap::new(),
            outbox: Outbox::new(cfg.homes.clone()),
            // Unique across restarts, so a replayed entry never wakes a new waiter.
            next_id: boot_nanos.as_nanos() as u64,
            batch: Vec::new(),
            batch_bytes: 0,
            proposed: VecDeque::new(),
            reads: Vec::new(),
            reads_in_flight: HashMap::new(),
            reads_ready: Vec::new(),
            next_read_ctx: 1,
            shards,
            voters: cfg.voters.clone(),
            snap_dir: cfg.snap_dir.clone(),
            snapshot_count: cfg.snapshot_count.max(1),
            applied_since_snapshot: 0,
            snapshot_job: None,
            snapshot_seq: snap.as_ref().map_or(0, |m| m.seq),
            last_snapshot: snap,
            snapshot_waiters: Vec::new(),
            barriers: Vec::new(),
            retired_stripes: cfg.retired_stripes.clone(),
        })
    }

    /// Bytes proposed and not yet durable: raft's unstable entries (it keeps them until
    /// `on_persist_ready`) and the batch being gathered.
    fn unpersisted_bytes(&self) -> usize {
        self.raw.raft.raft_log.unstable().entries_size + self.batch_bytes
    }

    /// A leader, that has committed an entry of its own term, with everything committed applied.
    fn is_serving(&self) -> bool {
        let r = &self.raw.raft;
        r.leader_id != raft::INVALID_ID && self.committed_in_current_term() && r.raft_log.applied >= r.raft_log.committed
    }

    /// raft-rs drops a ReadIndex (silently) until the leader has committed an entry of its term.
    fn committed_in_current_term(&self) -> bool {
        let r = &self.raw.raft;
        r.raft_log.term(r.raft_log.committed).is_ok_and(|t| t == r.term)
    }

    fn take(&mut self, msg: CoreMsg) {
        match msg {
            CoreMsg::Propose { req, reply, home } => {
                if self.raw.raft.state != StateRole::Leader {
                    self.outbox.push(home, Delivery::Write(reply, Err(Error::NoLeader)));
                    return;
                }
                self.next_id += 1;
                self.waiters.insert(self.next_id, (home, reply));
                let ir = InternalRequest { id: self.next_id, request: Some(req) };
                self.batch_bytes += ir.encoded_len();
                self.batch.push(ir);
                if self.batch_bytes >= MAX_ENTRY_BYTES {
                    self.propose_batch();
                }
            }
            CoreMsg::ReadIndex { reply, home } => self.reads.push((home, reply)),
            CoreMsg::Snapshot { reply } => self.snapshot_waiters.push(reply),
            CoreMsg::DiskBarrier { reply } => {
                self.barriers.push((self.wal_seq, reply));
                self.release_barriers();
            }
        }
    }

    /// A WAL stripe or a snapshot found the disk full: raise the NOSPACE alarm (through raft,
    /// as every alarm), so writes are refused until space is freed and the alarm disarmed.
    fn raise_nospace_on_full_disk(&mut self) {
        if !self.status.take_disk_full() || self.status.nospace() || self.raw.raft.state != StateRole::Leader {
            return;
        }
        crate::log::error("disk full: raising the NOSPACE alarm", &[]);
        let alarm = AlarmRequest { action: AlarmAction::Activate as i32, member_id: self.status.member_id, alarm: AlarmType::Nospace as i32 };
        let (reply, _) = oneshot::channel();
        self.take(CoreMsg::Propose { req: Request::Alarm(alarm), reply, home: None });
    }

    fn flush_turn(&mut self) {
        self.propose_batch();
        // Reads wait (in `reads`) until raft would not drop them; the next turn retries.
        if !self.reads.is_empty() && self.committed_in_current_term() {
            let ctx = self.next_read_ctx;
            self.next_read_ctx += 1;
            self.reads_in_flight.insert(ctx, std::mem::take(&mut self.reads));
            self.raw.read_index(ctx.to_le_bytes().to_vec());
        }
    }

    fn propose_batch(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let requests = std::mem::take(&mut self.batch);
        self.batch_bytes = 0;
        metrics::histogram!(m::RAFT_PROPOSAL_BATCH).record(requests.len() as f64);
        let batch = EntryBatch { requests };
        let data = batch.encode_to_vec();
        match self.raw.propose(vec![], data) {
            Ok(()) => {
                let r = &self.raw.raft;
                self.proposed.push_back((r.raft_log.last_index(), r.term, batch.requests));
            }
            Err(e) => self.fail_proposals(batch.requests, e),
        }
    }

    /// Answers the proposals of a batch raft refused (no leader) with etcd's error.
    fn fail_proposals(&mut self, requests: Vec<InternalRequest>, e: raft::Error) {
        crate::log::warn("raft dropped a proposal", &[("error", e.to_string())]);
        metrics::counter!(m::PROPOSALS_FAILED).increment(requests.len() as u64);
        for r in requests {
            if let Some((home, w)) = self.waiters.remove(&r.id) {
                self.outbox.push(home, Delivery::Write(w, Err(Error::NoLeader)));
            }
        }
    }

    /// Handles readies until raft has nothing more (bounded per turn). At most one WAL batch
    /// per stripe is in flight: proposals arriving meanwhile wait in the queue and go out as
    /// the next, larger batch — this is what keeps batches big under load.
    async fn on_ready(&mut self) {
        for _ in 0..MAX_READIES_PER_TURN {
            let batches_in_flight = self.in_flight.iter().filter(|(_, seq)| seq.is_some()).count();
            if !self.raw.has_ready() || batches_in_flight >= self.stripes.len() {
                break;
            }
            self.handle_ready().await;
        }
        let r = &self.raw.raft;
        if r.leader_id != self.status.leader() && r.leader_id != raft::INVALID_ID {
            metrics::counter!(m::LEADER_CHANGES).increment(1);
        }
        self.status.publish_raft(r.term, r.leader_id, r.raft_log.committed);
        metrics::gauge!(m::PROPOSALS_PENDING).set(self.waiters.len() as f64);
        self.release_reads();
    }

    /// One ready with raft-rs's async API: committed entries (already durable) are applied;
    /// new entries and the hard state go to raft's log storage at once and to a WAL stripe as
    /// one batch, without waiting: raft counts them persisted only when the stripe reports the
    /// fdatasync (`release_persisted`), so no client is answered before its entry is durable.
    async fn handle_ready(&mut self) {
        let mut rd = self.raw.ready();
        if !rd.messages().is_empty() || !rd.persisted_messages().is_empty() {
            crate::log::debug("dropping raft messages: no peer transport yet", &[]);
        }
        for rs in rd.take_read_states() {
            let ctx = u64::from_le_bytes(rs.request_ctx.as_slice().try_into().unwrap_or_default());
            if let Some(waiters) = self.reads_in_flight.remove(&ctx) {
                self.reads_ready.push((rs.index, waiters));
            }
        }
        let committed = rd.take_committed_entries();
        if let Some(last) = committed.last().map(|e| e.index) {
            self.apply(committed).await;
            self.raw.advance_apply_to(last);
            self.trim_log(last);
        }
        let entries = rd.take_entries();
        let hs = rd.hs().cloned();
        let seq = if self.must_sync(&entries, hs.as_ref()) { Some(self.dispatch(entries, hs).await) } else { None };
        self.in_flight.push_back((rd.number(), seq));
        self.raw.advance_append_async(rd);
        self.release_persisted();
    }

    /// Drops applied entries from raft's in-memory log that no peer can need. A single voter
    /// keeps none: the WAL and the snapshots hold them for recovery. With peers, etcd's
    /// SnapshotCatchUpEntries stay for followers to catch up from. Before, the log held every
    /// request since the last snapshot (up to `--snapshot-count` of them, ~30 MiB by default).
    fn trim_log(&mut self, applied: u64) {
        let keep = if self.voters.len() > 1 { CATCH_UP_ENTRIES } else { 0 };
        let to = applied.saturating_sub(keep);
        let first = raft::Storage::first_index(self.raw.store()).unwrap_or(to);
        if to >= first + LOG_TRIM_STEP_ENTRIES {
            if let Err(e) = self.raw.mut_store().wl().compact(to) {
                crate::log::warn("raft log compaction failed", &[("error", e.to_string())]);
            }
        }
    }

    /// etcd's `raft.MustSync`: new entries, or a new term or vote, must be durable before raft
    /// goes on; a hard state that only moves the commit index need not be written at all — the
    /// next batch carries it, and a commit index lost in a crash is learnt again from the
    /// leader (or, alone, by committing an entry of the new term). Without this a lone client
    /// waited for a second fdatasync per put.
    fn must_sync(&self, entries: &[Entry], hs: Option<&raft::eraftpb::HardState>) -> bool {
        let store = self.raw.store().rl();
        let stored = store.hard_state();
        !entries.is_empty() || hs.is_some_and(|h| h.term != stored.term || h.vote != stored.vote)
    }

    /// Appends to raft's log storage and queues the WAL batch on its stripe.
    async fn dispatch(&mut self, entries: Vec<Entry>, hs: Option<raft::eraftpb::HardState>) -> u64 {
        self.wal_seq += 1;
        let seq = self.wal_seq;
        {
            let mut store = self.raw.mut_store().wl();
            if let Err(e) = store.append(&entries) {
                crate::log::error("raft log append failed", &[("error", e.to_string())]);
                std::process::abort();
            }
            if let Some(hs) = &hs {
                store.set_hardstate(hs.clone());
            }
        }
        if let Some(e) = entries.last() {
            self.batch_index.push_back((seq, e.index));
        }
        let hard_state = hs.unwrap_or_else(|| self.raw.raft.hard_state());
        let stripe = &self.stripes[(seq % self.stripes.len() as u64) as usize];
        let msg = StripeMsg::Append { batch: Batch { seq, hard_state, entries }, persisted: self.persisted_tx.clone() };
        if stripe.send_async(msg).await.is_err() {
            crate::log::error("a wal stripe stopped", &[("seq", seq.to_string())]);
            std::process::abort();
        }
        seq
    }

    /// Reports to raft the longest prefix of in-flight readies whose batches are durable.
    fn release_persisted(&mut self) {
        let mut last = None;
        while let Some(&(number, seq)) = self.in_flight.front() {
            if let Some(seq) = seq {
                if !self.persisted.remove(&seq) {
                    break;
                }
                self.durable_seq = seq;
            }
            last = Some(number);
            self.in_flight.pop_front();
        }
        if let Some(number) = last {
            self.raw.on_persist_ready(number);
        }
        self.release_barriers();
    }

    fn release_barriers(&mut self) {
        let durable = self.durable_seq;
        for (_, reply) in self.barriers.extract_if(.., |(seq, _)| *seq <= durable) {
            let _ = reply.send(Ok(()));
        }
    }

    async fn apply(&mut self, entries: Vec<Entry>) {
        for e in entries {
            if e.get_entry_type() == EntryType::EntryNormal && !e.data.is_empty() {
                let requests = self.take_proposed(e.index, e.term);
                self.apply_batch(e.index, &e.data, requests).await;
            } else if e.get_entry_type() != EntryType::EntryNormal {
                crate::log::warn("ignoring conf change entry: membership changes are not supported yet", &[]);
            }
            self.status.publish_applied(e.index, self.applier.rev(), self.applier.compact_rev());
        }
    }

    /// The requests of entry (index, term) if this node proposed it; older leftovers (entries a
    /// new leader replaced) are dropped on the way.
    fn take_proposed(&mut self, index: u64, term: u64) -> Option<Vec<InternalRequest>> {
        while self.proposed.front().is_some_and(|(i, _, _)| *i < index) {
            self.proposed.pop_front();
        }
        if !self.proposed.front().is_some_and(|(i, _, _)| *i == index) {
            return None;
        }
        let (_, proposed_term, requests) = self.proposed.pop_front()?;
        (proposed_term == term).then_some(requests)
    }

    async fn apply_batch(&mut self, index: u64, data: &[u8], proposed: Option<Vec<InternalRequest>>) {
        let requests = match proposed {
            Some(r) => r,
            None => match EntryBatch::decode(data) {
                Ok(b) => b.requests,
                Err(e) => {
                    // Entries are written only by this code; an undecodable one is corruption.
                    crate::log::error("undecodable raft entry", &[("error", e.to_string())]);
                    std::process::abort();
                }
            },
        };
        let (ids, mut reqs): (Vec<u64>, Vec<Option<Request>>) = requests.into_iter().map(|ir| (ir.id, ir.request)).unzip();
        let results = self.applier.apply_all(&mut reqs).await;
        // etcd's --snapshot-count counts requests (one per entry there); ours are batched.
        self.applied_since_snapshot += reqs.len() as u64;
        // Published before replying, so a client's next serializable read sees its write.
        self.status.publish_applied(index, self.applier.rev(), self.applier.compact_rev());
        for (id, result) in ids.into_iter().zip(results) {
            if let Some((home, w)) = self.waiters.remove(&id) {
                self.outbox.push(home, Delivery::Write(w, result));
            }
        }
    }

    /// Starts a snapshot when one is due or requested, and finishes a completed one: raft's
    /// log and the WAL segments before it are released, waiters answered.
    async fn poll_snapshot(&mut self) {
        let finished = self.snapshot_job.as_ref().is_some_and(|j| j.done.borrow().is_some());
        if finished {
            let job = self.snapshot_job.take().expect("checked above");
            metrics::histogram!(m::SNAPSHOT_SECONDS).record(job.started.elapsed().as_secs_f64());
            let result = job.done.borrow_mut().take().expect("checked above");
            let reply = match result {
                Ok(m) => {
                    if let Err(e) = self.raw.mut_store().wl().compact(m.index) {
                        crate::log::warn("raft log compaction failed", &[("error", e.to_string())]);
                    }
                    crate::failpoint::crash("snapshot-before-release");
                    // Batches from `wal_seq_kept` on stay too: boot checks that the WAL holds it.
                    let release_before = m.wal_seq_from.min(m.wal_seq_kept);
                    for stripe in &self.stripes {
                        let _ = stripe.send_async(StripeMsg::ReleaseBefore { seq: release_before }).await;
                    }
                    self.release_retired_stripes(release_before);
                    let kind = if m.deltas == 0 { "full" } else { "delta" };
                    crate::log::info("saved snapshot", &[("index", m.index.to_string()), ("revision", m.rev.to_string()), ("kind", kind.into())]);
                    self.last_snapshot = Some(m);
                    Ok(())
                }
                Err(e) => {
                    // A shard may have let go of tombstones its segment holds, and that segment
                    // is in no manifest: only a full snapshot no longer needs them.
                    self.last_snapshot = None;
                    crate::log::error("snapshot failed", &[("error", e.clone())]);
                    Err(Error::Internal(format!("snapshot failed: {e}")))
                }
            };
            for w in job.waiters {
                let _ = w.send(reply.clone());
            }
        }
        let due = self.applied_since_snapshot >= self.snapshot_count || !self.snapshot_waiters.is_empty();
        if due && self.snapshot_job.is_none() && self.is_serving() {
            self.start_snapshot().await;
        }
    }

    /// Orders every shard to write its segment as of the current applied state. The messages
    /// are queued behind every write applied so far, so each segment is cut exactly here.
    async fn start_snapshot(&mut self) {
        let index = self.raw.raft.raft_log.applied;
        let term = self.raw.raft.raft_log.term(index).unwrap_or(0);
        // The first WAL batch holding an entry after the snapshot: recovery starts there.
        while self.batch_index.front().is_some_and(|&(_, last)| last <= index) {
            self.batch_index.pop_front();
        }
        let wal_seq_from = self.batch_index.front().map_or(self.wal_seq + 1, |&(seq, _)| seq);
        let rev = self.applier.rev();
        let shards = self.shards.count();
        // Defragment asks for a full rewrite; otherwise a delta when the last snapshot allows.
        let base = self.last_snapshot.as_ref().filter(|m| self.snapshot_waiters.is_empty() && m.next_is_delta(shards));
        let since = base.map_or(0, |m| m.rev);
        self.snapshot_seq += 1;
        let seq = self.snapshot_seq;
        let mut pending = Vec::new();
        let mut segments = base.map_or_else(Vec::new, |m| m.segments.clone());
        for shard in 0..shards {
            let name = crate::snapshot::segment_name(index, seq, shard);
            pending.push(self.shards.send_snapshot(shard, (since, rev), self.snap_dir.join(&name)).await);
            segments.push(name);
        }
        let manifest = Manifest {
            index,
            term,
            voters: self.voters.clone(),
            rev,
            compact_rev: self.applier.compact_rev(),
            alarms: self.applier.alarms(),
            segments,
            wal_seq_from,
            wal_seq_kept: self.durable_seq,
            shards,
            deltas: base.map_or(0, |m| m.deltas + 1),
            full_bytes: base.map_or(0, |m| m.full_bytes),
            delta_bytes: base.map_or(0, |m| m.delta_bytes),
            seq,
        };
        let done = Rc::new(RefCell::new(None));
        let slot = done.clone();
        let (dir, status) = (self.snap_dir.clone(), self.status.clone());
        glommio::spawn_local(async move {
            let mut result = Ok(manifest);
            for p in pending {
                let written = match p {
                    Ok(rx) => rx.await.unwrap_or_else(|_| Err("shard stopped".into())),
                    Err(e) => Err(e.to_string()),
                };
                match (written, &mut result) {
                    (Ok(info), Ok(m)) if m.deltas == 0 => m.full_bytes += info.size_bytes,
                    (Ok(info), Ok(m)) => m.delta_bytes += info.size_bytes,
                    (Ok(_), Err(_)) => {}
                    (Err(e), _) => result = Err(e),
                }
            }
            if result.is_ok() {
                crate::failpoint::crash("snapshot-before-manifest");
            }
            if let Ok(m) = &result {
                // On a blocking thread: the fsyncs and the unlink of the previous (large)
                // segment took 0.1-0.2 s, during which shard 0 served nothing.
                let (dir, m) = (dir.clone(), m.clone());
                let stored = glommio::executor().spawn_blocking(move || crate::snapshot::store(&dir, &m)).await;
                if let Err(e) = stored {
                    if crate::durable::is_disk_full(&e) {
                        status.report_disk_full();
                    }
                    result = Err(format!("cannot write snapshot manifest: {e}"));
                }
            }
            *slot.borrow_mut() = Some(result);
        })
        .detach();
        self.applied_since_snapshot = 0;
        let waiters = std::mem::take(&mut self.snapshot_waiters);
        self.snapshot_job = Some(SnapshotJob { started: Instant::now(), done, waiters });
    }

    /// Deletes retired stripes holding only batches before `seq` (covered by a durable snapshot).
    fn release_retired_stripes(&mut self, seq: u64) {
        self.retired_stripes.retain(|(dir, max_seq)| {
            if *max_seq >= seq {
                return true;
            }
            match std::fs::remove_dir_all(dir) {
                Ok(()) => {
                    crate::log::info("removed retired wal stripe", &[("dir", dir.display().to_string())]);
                    if let Some(parent) = dir.parent() {
                        let _ = crate::durable::sync_dir(parent);
                    }
                    false
                }
                Err(e) => {
                    crate::log::warn("cannot remove retired wal stripe", &[("dir", dir.display().to_string()), ("error", e.to_string())]);
                    true
                }
            }
        });
    }

    fn release_reads(&mut self) {
        let applied = self.raw.raft.raft_log.applied;
        let (done, waiting): (Vec<_>, Vec<_>) = self.reads_ready.drain(..).partition(|(idx, _)| *idx <= applied);
        self.reads_ready = waiting;
        for (_, waiters) in done {
            for (home, w) in waiters {
                self.outbox.push(home, Delivery::Read(w, Ok(())));
            }
        }
    }
}

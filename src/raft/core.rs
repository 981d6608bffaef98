//! The raft core as a state machine without I/O: the write path's decisions, and nothing that
//! waits. Inputs are method calls (a proposal, a read, "batch N is durable", a tick, "entry N is
//! applied", "the snapshot finished"); outputs accumulate in an `Output` the driver takes and
//! carries out (WAL batches to write, entries to apply, waiters to answer, a snapshot to cut).
//! `driver.rs` runs it on glommio; `tests/raft_sim.rs` runs it under a seeded simulation.
//!
//! One turn, as the driver runs it:
//! 1. inputs: durable batches (`persisted`), client messages (`propose`, `read`, ...), `tick`;
//! 2. `advance`: the turn's proposals become one raft entry, queued reads one ReadIndex; then
//!    up to `MAX_READIES_PER_TURN` readies: committed entries go out to apply (durable by
//!    construction: raft commits only what `on_persist_ready` reported), new entries and the
//!    hard state go to raft's log storage and out as one numbered WAL batch (`log_writer.rs`);
//! 3. the driver writes the batches, applies the entries and reports each with `applied`;
//!    `end_turn` answers the reads now applied and orders a snapshot when one is due.
//!
//! So no client is answered before its entry is durable and applied.

use std::collections::VecDeque;

use raft::eraftpb::{Entry, EntryType, HardState, Message};
use raft::storage::MemStorage;
use raft::{Config as RaftConfig, RawNode, StateRole};

use super::log_writer::{LogWriter, WalWrite};
use super::proposals::{Proposals, ToApply};
use super::reads::Reads;
use super::snapshots::{Schedule, SnapshotOrder};
pub use super::storage::SnapPoint;
use crate::error::Error;
use crate::proto::ballastpb::internal_request::Request;
use crate::wal::recover::Recovered;

/// Proposal bytes taken from clients but not yet durable: while this much is outstanding the
/// core takes no new client messages (they wait in the bounded queue), so one ready, hence one
/// WAL write, holds at most this plus one entry — not, say, 4096 queued 1.5 MiB requests in
/// one 6 GiB write.
pub const MAX_UNPERSISTED_BYTES: usize = 8 << 20;
/// Readies handled per turn.
const MAX_READIES_PER_TURN: usize = 8;
/// Applied entries kept in raft's in-memory log for followers to catch up from (etcd's
/// SnapshotCatchUpEntries); a single voter keeps none.
const CATCH_UP_ENTRIES: u64 = 5000;
/// Raft's in-memory log is trimmed once this many entries can go (not on every apply).
const LOG_TRIM_STEP_ENTRIES: u64 = 64;

pub struct CoreConfig {
    pub id: u64,
    pub voters: Vec<u64>,
    pub election_ticks: usize,
    /// WAL stripes (one per shard).
    pub stripes: usize,
    /// Applied requests between automatic snapshots (`--snapshot-count`).
    pub snapshot_count: u64,
    /// The first proposal id: unique across restarts (the boot time in nanoseconds).
    pub first_proposal_id: u64,
}

/// What the driver must do. `W` answers a write, `R` a read, barrier or snapshot request.
pub struct Output<W, R> {
    pub wal: Vec<WalWrite>,
    /// Messages to peers (none while the group has one voter).
    pub messages: Vec<Message>,
    /// Committed entries, in log order.
    pub apply: Vec<ToApply<W>>,
    pub refused: Vec<(W, Error)>,
    pub done: Vec<(R, crate::error::Result<()>)>,
    pub snapshot: Option<SnapshotOrder>,
    /// WAL batches before this sequence number may be deleted (a snapshot covers them).
    pub release_wal_before: Option<u64>,
}

impl<W, R> Default for Output<W, R> {
    fn default() -> Self {
        Output {
            wal: Vec::new(),
            messages: Vec::new(),
            apply: Vec::new(),
            refused: Vec::new(),
            done: Vec::new(),
            snapshot: None,
            release_wal_before: None,
        }
    }
}

pub struct Core<W, R> {
    raw: RawNode<MemStorage>,
    voters: Vec<u64>,
    proposals: Proposals<W>,
    reads: Reads<R>,
    log: LogWriter<R>,
    snapshots: Schedule<R>,
    /// (ready number, messages raft may send only once that ready is durable).
    after_persist: VecDeque<(u64, Vec<Message>)>,
    out: Output<W, R>,
}

impl<W, R> Core<W, R> {
    /// Rebuilds raft from the snapshot point and the WAL recovered after it.
    pub fn new(cfg: &CoreConfig, recovered: &Recovered, snap: Option<&SnapPoint>) -> Result<Core<W, R>, String> {
        let storage = super::storage::restore(cfg.voters.clone(), recovered, snap)?;
        let raft_cfg = RaftConfig {
            applied: snap.map_or(0, |s| s.index),
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
        Ok(Core {
            raw,
            voters: cfg.voters.clone(),
            proposals: Proposals::new(cfg.first_proposal_id),
            reads: Reads::default(),
            log: LogWriter::new(cfg.stripes, recovered.last_seq, recovered.max_seq_found),
            snapshots: Schedule::new(cfg.snapshot_count),
            after_persist: VecDeque::new(),
            out: Output::default(),
        })
    }

    pub fn take_output(&mut self) -> Output<W, R> {
        std::mem::take(&mut self.out)
    }

    // ---- inputs ----

    /// A write; refused with `Error::NoLeader` unless this node leads.
    pub fn propose(&mut self, request: Request, waiter: W) {
        self.propose_as(request, None, waiter)
    }

    /// A write with its sender (`auth`: who sent it, when auth is on).
    pub fn propose_as(&mut self, request: Request, auth: Option<crate::proto::ballastpb::AuthHeader>, waiter: W) {
        if !self.is_leader() {
            self.out.refused.push((waiter, Error::NoLeader));
        } else if self.proposals.add(request, auth, waiter) {
            self.propose_batch();
        }
    }

    /// A linearizable read: answered once everything committed before it is applied.
    pub fn read(&mut self, waiter: R) {
        self.reads.queue(waiter);
    }

    /// Answered once every WAL batch written before it is durable.
    pub fn barrier(&mut self, waiter: R) {
        let done = self.log.barrier(waiter);
        self.out.done.extend(done.into_iter().map(|r| (r, Ok(()))));
    }

    /// A full snapshot now (Defragment); answered when it is durable.
    pub fn request_snapshot(&mut self, waiter: R) {
        self.snapshots.request(waiter);
    }

    /// A stripe made WAL batch `seq` durable.
    pub fn persisted(&mut self, seq: u64) {
        self.log.persisted(seq);
    }

    pub fn tick(&mut self) {
        self.raw.tick();
    }

    /// A message from a peer.
    pub fn step(&mut self, msg: Message) -> Result<(), String> {
        self.raw.step(msg).map_err(|e| format!("raft step: {e}"))
    }

    // ---- the turn ----

    /// Proposes the turn's batch, asks for the turn's reads and handles readies.
    pub fn advance(&mut self) {
        self.release_persisted();
        self.propose_batch();
        // Reads wait until raft would not drop them; a later turn retries.
        if self.committed_in_current_term() {
            if let Some(ctx) = self.reads.ask() {
                self.raw.read_index(ctx);
            }
        }
        for _ in 0..MAX_READIES_PER_TURN {
            if !self.raw.has_ready() || self.log.is_full() {
                break;
            }
            self.handle_ready();
        }
    }

    /// The driver applied committed entry `index` (`requests` requests in it).
    pub fn applied(&mut self, index: u64, requests: u64) {
        self.raw.advance_apply_to(index);
        self.snapshots.applied(requests);
        self.trim_log(index);
    }

    /// Answers the reads whose index is applied (raft may answer a ReadIndex with an index
    /// already applied: nothing more need be) and orders a snapshot when one is due.
    pub fn end_turn(&mut self) {
        let done = self.reads.release(self.raw.raft.raft_log.applied);
        self.out.done.extend(done.into_iter().map(|r| (r, Ok(()))));
        if !self.snapshots.is_due() || !self.is_serving() {
            return;
        }
        let index = self.raw.raft.raft_log.applied;
        let order = SnapshotOrder {
            index,
            term: self.raw.raft.raft_log.term(index).unwrap_or(0),
            wal_seq_from: self.log.first_batch_after(index),
            wal_seq_kept: self.log.durable_seq(),
            full: false,
        };
        self.out.snapshot = Some(self.snapshots.start(order));
    }

    /// The running snapshot is durable (or failed): raft's log before it is released, and the
    /// WAL batches before it may go.
    pub fn snapshot_done(&mut self, result: Result<(), String>) {
        let (order, waiters) = self.snapshots.finish();
        let reply = match result {
            Ok(()) => {
                if let Err(e) = self.raw.mut_store().wl().compact(order.index) {
                    crate::log::warn("raft log compaction failed", &[("error", e.to_string())]);
                }
                self.out.release_wal_before = Some(order.release_wal_before());
                Ok(())
            }
            Err(e) => Err(Error::Internal(format!("snapshot failed: {e}"))),
        };
        self.out.done.extend(waiters.into_iter().map(|w| (w, reply.clone())));
    }

    // ---- state ----

    /// Client messages wait in their queue while too much is proposed and not yet durable.
    pub fn accepting(&self) -> bool {
        self.raw.raft.raft_log.unstable().entries_size + self.proposals.batch_bytes() < MAX_UNPERSISTED_BYTES
    }

    pub fn is_leader(&self) -> bool {
        self.raw.raft.state == StateRole::Leader
    }

    /// A leader that has committed an entry of its own term, with everything committed applied.
    pub fn is_serving(&self) -> bool {
        let r = &self.raw.raft;
        r.leader_id != raft::INVALID_ID && self.committed_in_current_term() && r.raft_log.applied >= r.raft_log.committed
    }

    /// (term, leader id, commit index).
    pub fn progress(&self) -> (u64, u64, u64) {
        let r = &self.raw.raft;
        (r.term, r.leader_id, r.raft_log.committed)
    }

    pub fn applied_index(&self) -> u64 {
        self.raw.raft.raft_log.applied
    }

    /// Clients waiting for a write's result.
    pub fn pending_proposals(&self) -> usize {
        self.proposals.pending()
    }

    // ---- internals ----

    /// raft-rs drops a ReadIndex (silently) until the leader has committed an entry of its term.
    fn committed_in_current_term(&self) -> bool {
        let r = &self.raw.raft;
        r.raft_log.term(r.raft_log.committed).is_ok_and(|t| t == r.term)
    }

    fn propose_batch(&mut self) {
        let Some((requests, data)) = self.proposals.take_batch() else { return };
        crate::metrics::handles().raft_proposal_batch.record(requests.len() as f64);
        match self.raw.propose(vec![], data) {
            Ok(()) => {
                let r = &self.raw.raft;
                self.proposals.proposed(r.raft_log.last_index(), r.term, requests);
            }
            Err(e) => {
                crate::log::warn("raft dropped a proposal", &[("error", e.to_string())]);
                crate::metrics::handles().proposals_failed.increment(requests.len() as u64);
                let refused = self.proposals.refuse(requests);
                self.out.refused.extend(refused.into_iter().map(|w| (w, Error::NoLeader)));
            }
        }
    }

    /// One ready with raft-rs's async API: committed entries go out to apply; new entries and
    /// the hard state go to raft's log storage at once and out as one WAL batch; raft counts
    /// them persisted only when the batch is durable (`release_persisted`).
    fn handle_ready(&mut self) {
        let mut rd = self.raw.ready();
        self.out.messages.extend(rd.take_messages());
        let persisted_messages = rd.take_persisted_messages();
        if !persisted_messages.is_empty() {
            self.after_persist.push_back((rd.number(), persisted_messages));
        }
        for rs in rd.take_read_states() {
            self.reads.answered(&rs.request_ctx, rs.index);
        }
        for e in rd.take_committed_entries() {
            let to_apply = self.committed(e);
            self.out.apply.push(to_apply);
        }
        let entries = rd.take_entries();
        let hs = rd.hs().cloned();
        let seq = self.must_sync(&entries, hs.as_ref()).then(|| self.write(entries, hs));
        self.log.track(rd.number(), seq);
        self.raw.advance_append_async(rd);
        self.release_persisted();
    }

    fn committed(&mut self, e: Entry) -> ToApply<W> {
        if e.get_entry_type() == EntryType::EntryNormal {
            return self.proposals.committed(e.index, e.term, &e.data);
        }
        ToApply { index: e.index, term: e.term, requests: Vec::new(), auth: Vec::new(), waiters: Vec::new(), conf_change: true }
    }

    /// etcd's `raft.MustSync`: new entries, or a new term or vote, must be durable before raft
    /// goes on; a hard state that only moves the commit index need not be written at all — the
    /// next batch carries it, and a commit index lost in a crash is learnt again from the
    /// leader (or, alone, by committing an entry of the new term). Without this a lone client
    /// waited for a second fdatasync per put.
    fn must_sync(&self, entries: &[Entry], hs: Option<&HardState>) -> bool {
        let store = self.raw.store().rl();
        let stored = store.hard_state();
        !entries.is_empty() || hs.is_some_and(|h| h.term != stored.term || h.vote != stored.vote)
    }

    /// Appends to raft's log storage and queues the WAL batch; returns its sequence number.
    fn write(&mut self, entries: Vec<Entry>, hs: Option<HardState>) -> u64 {
        {
            let mut store = self.raw.mut_store().wl();
            // MemStorage refuses only entries that do not continue its log: a raft-rs bug.
            store.append(&entries).unwrap_or_else(|e| panic!("raft log append failed: {e}"));
            if let Some(hs) = &hs {
                store.set_hardstate(hs.clone());
            }
        }
        let hard_state = hs.unwrap_or_else(|| self.raw.raft.hard_state());
        let write = self.log.write(entries, hard_state);
        let seq = write.batch.seq;
        self.out.wal.push(write);
        seq
    }

    /// Reports to raft the longest prefix of readies whose batches are durable.
    fn release_persisted(&mut self) {
        let (number, barriers) = self.log.release();
        if let Some(number) = number {
            self.raw.on_persist_ready(number);
            while self.after_persist.front().is_some_and(|(n, _)| *n <= number) {
                let (_, msgs) = self.after_persist.pop_front().expect("checked above");
                self.out.messages.extend(msgs);
            }
        }
        self.out.done.extend(barriers.into_iter().map(|r| (r, Ok(()))));
    }

    /// Drops applied entries from raft's in-memory log that no peer can need. A single voter
    /// keeps none: the WAL and the snapshots hold them for recovery. With peers, etcd's
    /// SnapshotCatchUpEntries stay for followers to catch up from.
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
}

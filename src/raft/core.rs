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
//!
//! One member of N: messages from peers come in with `step`, messages to them leave in the
//! output, under raft-rs's async-ready rules: a leader's go out at once (pipelining: it counts
//! its own entries only once durable), a follower's or candidate's (votes, append answers,
//! forwarded proposals) only once the ready they came with is durable, so no vote or
//! acknowledged entry is forgotten by a crash. Each WAL batch carries the hard state (term,
//! vote, commit); a new term or vote is written even without entries (`must_sync`).
//! Proposals on a follower are forwarded to the leader (raft-rs's proposal forwarding, as
//! etcd); with no leader known they are refused at once with etcd's "no leader". A linearizable
//! read works on any member (ReadIndex, forwarded by raft-rs); see `reads.rs` for retries and
//! etcd's "leader changed". Every client waiting in the core is answered within the request
//! timeout (`request_timeout_ticks`: "request timed out"), so a lost message or a leader
//! change never leaves one hanging.
//!
//! A follower behind the first entry the leader still holds is sent a raft snapshot: raft's
//! storage offers the latest durable local snapshot (`storage.rs`), with a descriptor of its
//! files as data; the follower fetches the files, then installs them while raft's ready that
//! carries the snapshot waits (`installs.rs`: the two steps, and why). Raft's log is never
//! trimmed past the snapshot offered, so the snapshot always reaches the leader's first entry.
//! The installed snapshot brings raft's configuration (voters and learners, in the raft
//! snapshot) and the member list (in the fetched manifest) with it.
//!
//! Membership changes (`conf_change.rs`): checked before proposing as etcd's strict reconfig
//! check (`reconfig.rs`), proposed as conf change entries; at commit every member validates
//! the change against its member list as etcd does, applies a valid one to raft's
//! configuration and to the list, and answers the proposer (its verdict, or etcd's error). The
//! member list is applied state: it changes only by entries (conf changes, and members'
//! published attributes in normal entries), goes out with the entry that changed it and into
//! every snapshot with raft's configuration, so a restart resumes from the snapshot's and
//! replays the entries after it. A conf change and the entries after it are applied only
//! once the WAL batch carrying its commit index is durable (`held`). A member that applies
//! its own removal is told so (`ConfOutcome::removed_self`), takes nothing more and stops.

use std::collections::VecDeque;

use raft::eraftpb::{Entry, EntryType, HardState, Message, MessageType};
use raft::{Config as RaftConfig, RawNode, SnapshotStatus, StateRole};

use super::conf_change::{self, MemberChange};
use super::installs::{status_message, Installs, STATUS_TIMEOUT_ELECTIONS};
pub use super::installs::{FetchOrder, InstallOrder};
use super::log_writer::{LogWriter, Span, WalWrite};
use super::proposals::{ConfOutcome, Proposals, ToApply};
use super::reads::{PeerRead, Reads};
use super::snapshots::{Schedule, SnapshotOrder};
use super::storage::LogStore;
pub use super::storage::SnapPoint;
use crate::cluster::Cluster;
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
pub const CATCH_UP_ENTRIES: u64 = 5000;
/// Raft's in-memory log is trimmed once this many entries can go (not on every apply).
const LOG_TRIM_STEP_ENTRIES: u64 = 64;

pub struct CoreConfig {
    pub id: u64,
    /// The member list to start from without a snapshot (its voters and learners are raft's
    /// configuration then).
    pub cluster: Cluster,
    /// etcd's `--strict-reconfig-check` (`reconfig.rs`).
    pub strict_reconfig_check: bool,
    pub election_ticks: usize,
    /// raft-rs draws each election timeout from [election_ticks, 2 × election_ticks) with the
    /// thread's RNG, which no seed replays: a simulation sets this false (the timeout is then
    /// exactly `election_ticks`) and jitters the members' clocks instead.
    pub randomized_election: bool,
    /// WAL stripes (one per shard).
    pub stripes: usize,
    /// Applied requests between automatic snapshots (`--snapshot-count`).
    pub snapshot_count: u64,
    /// The first proposal id: unique across restarts and members (the member id and the boot
    /// time); ReadIndex contexts count from it too.
    pub first_proposal_id: u64,
    /// etcd's request timeout in ticks: a client waiting in the core longer is answered
    /// "request timed out".
    pub request_timeout_ticks: u64,
    /// Applied entries kept for followers to catch up from, with peers (`CATCH_UP_ENTRIES`;
    /// a simulation keeps fewer, so followers need snapshots more often).
    pub catch_up_entries: u64,
    /// `--force-new-cluster` on a member with data (`force_new.rs`).
    pub force_new_cluster: bool,
    /// Ticks without an applied request after which a snapshot moves what the shards hold on
    /// their heaps into segments (`snapshots.rs`).
    pub quiet_snapshot_ticks: u64,
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
    /// Fetch the leader's snapshot files, then report `Core::fetched`.
    pub fetch: Option<FetchOrder>,
    /// Install the fetched snapshot, then report `Core::installed`.
    pub install: Option<InstallOrder>,
    /// ReadIndex requests asked again, unanswered for half an election timeout (etcd warns
    /// of each: its read loop's `readIndexRetryTime`).
    pub read_retries: Vec<u64>,
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
            fetch: None,
            install: None,
            read_retries: Vec::new(),
        }
    }
}

pub struct Core<W, R> {
    raw: RawNode<LogStore>,
    /// The member list as applied (`conf_change.rs`).
    members: Cluster,
    strict_reconfig_check: bool,
    catch_up_entries: u64,
    proposals: Proposals<W>,
    /// Membership changes asked for while no leader was known, by proposal id: proposed once
    /// one is, unless their request timed out meanwhile (etcd's ProposeConfChange waits for a
    /// leader on the request's context).
    changes_waiting: Vec<(u64, MemberChange)>,
    reads: Reads<R>,
    log: LogWriter<R>,
    snapshots: Schedule<R>,
    /// (ready number, messages raft may send only once that ready is durable).
    after_persist: VecDeque<(u64, Vec<Message>)>,
    /// The ready that wrote a new term to the hard state, until it is durable: every message
    /// waits for its ready's durability meanwhile (`handle_ready`).
    term_ready: Option<u64>,
    out: Output<W, R>,
    /// Ticks since boot: the clock of request timeouts.
    ticks: u64,
    /// The leader last seen (`INVALID_ID`: none), to notice a new one.
    leader_seen: u64,
    /// The tick this member last became leader at (0: never since boot).
    leader_elected_tick: u64,
    /// Raft snapshots from the leader (`installs.rs`).
    installs: Installs,
    /// The index of an installed snapshot, applied as soon as raft counts it persisted.
    applied_to_after_persist: Option<u64>,
    election_ticks: u64,
    /// Committed entries from a conf change on, each with the WAL batch that carries its commit
    /// index: applied only once that batch is durable. A member acting on a configuration its
    /// disk does not know is committed could, after a crash, wait for votes from a member the
    /// change removed (and that has stopped).
    held: VecDeque<(Option<u64>, Entry)>,
    /// This member applied its own removal: it takes no message, proposal or read any more, and
    /// a removed leader only heartbeats (its followers learn the removal's commit from them)
    /// until its driver stops it. raft-rs cannot run a leader outside its configuration.
    removed: bool,
}

impl<W, R> Core<W, R> {
    /// Rebuilds raft from the snapshot point and the WAL recovered after it.
    pub fn new(cfg: &CoreConfig, recovered: &Recovered, snap: Option<&SnapPoint>) -> Result<Core<W, R>, String> {
        let conf = (cfg.cluster.voters(), cfg.cluster.learners());
        let storage = super::storage::restore(cfg.id, conf, recovered, snap)?;
        let members = snap.and_then(|s| s.members.clone()).unwrap_or_else(|| cfg.cluster.clone());
        let forced = if cfg.force_new_cluster { Some(super::force_new::append_removals(&storage, &members, cfg.id)?) } else { None };
        let raft_cfg = RaftConfig {
            applied: snap.map_or(0, |s| s.index),
            id: cfg.id,
            election_tick: cfg.election_ticks,
            heartbeat_tick: 1,
            max_election_tick: if cfg.randomized_election { 2 * cfg.election_ticks } else { cfg.election_ticks + 1 },
            max_size_per_msg: 1 << 20,
            // etcd's maxInflightMsgs.
            max_inflight_msgs: 512,
            pre_vote: true,
            // As etcd: a leader cut off from a quorum steps down after an election timeout.
            check_quorum: true,
            ..Default::default()
        };
        raft_cfg.validate().map_err(|e| format!("raft config: {e}"))?;
        let logger = slog::Logger::root(slog::Discard, slog::o!());
        let mut raw = RawNode::new(&raft_cfg, storage, &logger).map_err(|e| format!("raft: {e}"))?;
        if raw.raft.prs().conf().to_conf_state().voters == [cfg.id] {
            // A lone voter need not wait for an election timeout.
            raw.campaign().map_err(|e| format!("raft campaign: {e}"))?;
        }
        let leader_seen = raw.raft.leader_id;
        let timeout = cfg.request_timeout_ticks.max(1);
        let mut core = Core {
            raw,
            members,
            strict_reconfig_check: cfg.strict_reconfig_check,
            catch_up_entries: cfg.catch_up_entries,
            proposals: Proposals::new(cfg.first_proposal_id, timeout),
            changes_waiting: Vec::new(),
            // etcd asks again every 500 ms: half its default election timeout.
            reads: Reads::new(cfg.id, cfg.first_proposal_id, timeout, (cfg.election_ticks / 2) as u64),
            // Replayed entries a follower has not applied yet (not known committed) must stay
            // replayable after a snapshot below them.
            log: LogWriter::new(cfg.stripes, recovered.last_seq, recovered.max_seq_found, replayed_span(recovered)),
            snapshots: Schedule::new(cfg.snapshot_count, cfg.quiet_snapshot_ticks),
            after_persist: VecDeque::new(),
            term_ready: None,
            out: Output::default(),
            ticks: 0,
            leader_seen,
            leader_elected_tick: 0,
            installs: Installs::default(),
            applied_to_after_persist: None,
            election_ticks: cfg.election_ticks as u64,
            held: VecDeque::new(),
            removed: false,
        };
        if let Some((entries, hs)) = forced {
            // The first batch, before any ready's: the removals are applied only once a
            // ready's batch after it is durable (`held`), hence it too.
            let write = core.log.write(entries, hs);
            core.log.track(0, Some(write.batch.seq));
            core.out.wal.push(write);
        }
        Ok(core)
    }

    pub fn take_output(&mut self) -> Output<W, R> {
        std::mem::take(&mut self.out)
    }

    // ---- inputs ----

    /// A write; forwarded to the leader by a follower. While no leader is known it waits in
    /// the batch for one, as etcd's proposals wait (raft's node takes none without a leader),
    /// until its request timeout; refused with `Error::NoLeader` when an entry's worth waits.
    pub fn propose(&mut self, request: Request, waiter: W) {
        self.propose_as(request, None, waiter)
    }

    /// A write with its sender (`auth`: who sent it, when auth is on).
    pub fn propose_as(&mut self, request: Request, auth: Option<crate::proto::ballastpb::AuthHeader>, waiter: W) {
        if self.removed {
            self.out.refused.push((waiter, Error::Stopped));
        } else if self.raw.raft.leader_id == raft::INVALID_ID {
            if self.proposals.batch_is_full() {
                self.out.refused.push((waiter, Error::NoLeader));
            } else {
                self.proposals.add(request, auth, waiter, self.ticks);
            }
        } else if self.proposals.add(request, auth, waiter, self.ticks) {
            self.propose_batch();
        }
    }

    /// A membership change: checked as etcd's strict reconfig check, then proposed as a conf
    /// change entry (once a leader is known: until then it waits, and its request's timeout
    /// answers "context deadline exceeded" as etcd's); answered when it is applied (or
    /// refused at commit).
    pub fn propose_member_change(&mut self, change: MemberChange, waiter: W) {
        if self.removed {
            return self.out.refused.push((waiter, Error::Stopped));
        }
        // etcd checks a change (--strict-reconfig-check) before it proposes it, leader or not.
        if let Err(e) = self.check_member_change(&change) {
            return self.out.refused.push((waiter, e));
        }
        let id = self.proposals.register(waiter, self.ticks);
        if self.raw.raft.leader_id == raft::INVALID_ID {
            return self.changes_waiting.push((id, change));
        }
        self.propose_conf_change(id, &change);
    }

    /// Proposes the membership changes that waited for a leader, once one is known.
    fn propose_waiting_changes(&mut self) {
        if self.changes_waiting.is_empty() || self.raw.raft.leader_id == raft::INVALID_ID || self.removed {
            return;
        }
        for (id, change) in std::mem::take(&mut self.changes_waiting) {
            if self.proposals.waits(id) {
                self.propose_conf_change(id, &change);
            }
        }
    }

    fn propose_conf_change(&mut self, id: u64, change: &MemberChange) {
        let (context, cc) = conf_change::encode(id, change);
        if let Err(e) = self.raw.propose_conf_change(context, cc) {
            crate::log::warn("raft dropped a conf change", &[("error", e.to_string())]);
            self.out.refused.extend(self.proposals.take_waiter(id).map(|w| (w, Error::NoLeader)));
        }
    }

    /// A linearizable read: answered once everything committed before it is applied.
    pub fn read(&mut self, waiter: R) {
        if self.removed {
            return self.out.done.push((waiter, Err(Error::Stopped)));
        }
        self.reads.queue(waiter, self.ticks);
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

    /// A message to `peer` could not be sent (its queue is full, or its stream is down): raft
    /// probes it instead of streaming to it, as etcd's transport reports. A snapshot that could
    /// not be sent is reported failed, so the leader sends another.
    pub fn unreachable(&mut self, peer: u64, snapshot: bool) {
        // (Raft is not touched while a ready is held; a member installing leads nobody.)
        if self.removed || self.installs.holding_ready() {
            return;
        }
        self.raw.report_unreachable(peer);
        if snapshot {
            self.snapshot_status(peer, false);
        }
    }

    /// `peer`'s process is gone: every one of its peer URLs refused the connection, so nothing
    /// listens there (a host that went away refuses nothing, and counts only by the timeout).
    /// If it is this follower's leader, the lease this member gave it by hearing from it is
    /// over at once instead of an election timeout after its last heartbeat: the member grants
    /// votes, and campaigns when the rest of its randomized timeout has passed (so the
    /// survivors, who all learn it at once, still campaign at random moments apart, as raft's
    /// own timeouts spread them). Pre-vote keeps it harmless if the leader is in fact alive:
    /// a member that still hears from it refuses the pre-vote, and the leader's next heartbeat
    /// resets the clock. etcd waits for the timeout; this only makes failover shorter.
    /// Returns whether it ended this member's leader's lease.
    pub fn peer_down(&mut self, peer: u64) -> bool {
        self.unreachable(peer, false);
        if self.removed || self.installs.holding_ready() {
            return false;
        }
        let r = &mut self.raw.raft;
        let ends_lease = r.state == StateRole::Follower && r.leader_id == peer && r.election_elapsed < r.election_timeout();
        if ends_lease {
            r.election_elapsed = r.election_timeout();
        }
        ends_lease
    }

    /// A stripe made WAL batch `seq` durable.
    pub fn persisted(&mut self, seq: u64) {
        self.log.persisted(seq);
    }

    /// One heartbeat interval passed: raft's clock, and the request timeouts'.
    pub fn tick(&mut self) {
        self.ticks += 1;
        self.snapshots.tick();
        if !self.installs.holding_ready() {
            if !self.lone_voter_with_unpersisted_log() {
                self.raw.tick();
            }
            self.report_overdue_snapshots();
        }
        for expired in self.proposals.expire(self.ticks) {
            let never_proposed = !expired.proposed || self.changes_waiting.iter().any(|(id, _)| *id == expired.id);
            self.changes_waiting.retain(|(id, _)| *id != expired.id);
            let why = if never_proposed { Error::ProposalDeadline } else { self.timeout_error(expired.started) };
            self.out.refused.push((expired.waiter, why));
        }
        let expired = self.reads.expire(self.ticks);
        if !expired.is_empty() {
            // etcd: "timed out waiting for read index response".
            crate::metrics::handles().slow_read_indexes.increment(1);
        }
        self.out.done.extend(expired.into_iter().map(|r| (r, Err(Error::Timeout))));
        for (id, ctx) in self.reads.retry(self.ticks) {
            self.out.read_retries.push(id);
            if !self.installs.holding_ready() && self.may_ask_reads() {
                self.raw.read_index(ctx);
            }
        }
    }

    /// MoveLeader: raft's leader transfer (ignored unless this member leads and `target` is
    /// another voter; the caller watches the leader change).
    pub fn transfer_leader(&mut self, target: u64) {
        // (A member installing a leader's snapshot is no leader: nothing to transfer.)
        if !self.removed && !self.installs.holding_ready() {
            self.raw.transfer_leader(target);
        }
    }

    /// On the leader, hands leadership to the most caught-up voter among those recently active
    /// (etcd's TryTransferLeadershipOnShutdown); nothing when it leads no other voter.
    pub fn transfer_to_most_caught_up(&mut self) {
        if self.removed || !self.is_leader() {
            return;
        }
        let me = self.raw.raft.id;
        let prs = self.raw.raft.prs();
        let best = prs.conf().to_conf_state().voters.iter().filter(|&&id| id != me).filter_map(|&id| prs.get(id).map(|p| ((p.recent_active, p.matched), id))).max();
        if let Some((_, target)) = best {
            self.raw.transfer_leader(target);
        }
    }

    /// A message from a peer. A proposal forwarded here that raft drops (no leader any more)
    /// is not an error: its sender's client times out, as etcd's. Nor is an answer from a
    /// member no longer in the configuration (removed meanwhile): raft ignores it, as etcd.
    pub fn step(&mut self, msg: Message) -> Result<(), String> {
        if self.removed {
            return Ok(());
        }
        match msg.get_msg_type() {
            MessageType::MsgSnapStatus => {
                self.snapshot_status(msg.from, !msg.reject);
                return Ok(());
            }
            // raft-rs ignores a snapshot whose configuration lacks this member (one taken before
            // its addition): the leader hears so at once and takes a newer one.
            MessageType::MsgSnapshot if self.would_restore(&msg) && !in_conf(&msg, self.raw.raft.id) => {
                self.out.messages.push(status_message(self.raw.raft.id, msg.from, false));
                return Ok(());
            }
            MessageType::MsgSnapshot if self.would_restore(&msg) => {
                if !self.installs.busy() {
                    self.out.fetch = Some(self.installs.fetch(msg));
                }
                return Ok(());
            }
            // A held ready must be advanced before raft changes: the message is lost.
            _ if self.installs.holding_ready() => return Ok(()),
            // A follower's ReadIndex rides on this leader's own (`reads.rs`); raft-rs would
            // drop it now anyway unless the leader has committed an entry of its term.
            MessageType::MsgReadIndex if msg.from != self.raw.raft.id && msg.entries.len() == 1 && self.is_leader() && self.committed_in_current_term() => {
                let read = PeerRead { peer: msg.from, ctx: msg.entries[0].data.to_vec() };
                self.reads.queue_peer(read, self.ticks);
                return Ok(());
            }
            _ => {}
        }
        match self.raw.step(msg) {
            Ok(()) | Err(raft::Error::ProposalDropped | raft::Error::StepPeerNotFound) => Ok(()),
            Err(e) => Err(format!("raft step: {e}")),
        }
    }

    // ---- the turn ----

    /// Proposes the turn's batch, asks for the turn's reads and handles readies.
    pub fn advance(&mut self) {
        self.release_persisted();
        if self.installs.holding_ready() {
            return;
        }
        self.propose_batch();
        self.propose_waiting_changes();
        if self.may_ask_reads() {
            if let Some(ctx) = self.reads.ask(self.ticks, self.is_leader()) {
                self.raw.read_index(ctx);
            }
        }
        for _ in 0..MAX_READIES_PER_TURN {
            if !self.raw.has_ready() || self.log.is_full() || self.installs.holding_ready() {
                break;
            }
            self.handle_ready();
        }
        self.notice_new_leader();
    }

    /// The driver applied committed entry `index` (`requests` requests in it); the shards now
    /// hold `held_bytes` written since their last snapshot segments.
    pub fn applied(&mut self, index: u64, requests: u64, held_bytes: u64) {
        self.raw.advance_apply_to(index);
        self.snapshots.applied(requests);
        self.snapshots.held(held_bytes);
        self.trim_log(index);
    }

    /// Answers the reads whose index is applied (raft may answer a ReadIndex with an index
    /// already applied: nothing more need be) and orders a snapshot when one is due.
    pub fn end_turn(&mut self) {
        let done = self.reads.release(self.raw.raft.raft_log.applied);
        self.out.done.extend(done.into_iter().map(|r| (r, Ok(()))));
        self.order_install();
        if self.raw.store().take_wanted() && !self.snapshots.is_running() {
            // A member needs a snapshot that reaches the log (storage.rs): cut one now. (One
            // running may not reach it either; raft asks again once it is offered.)
            self.snapshots.soon();
        }
        if !self.snapshots.is_due() || !self.may_snapshot() || self.installs.holding_ready() {
            return;
        }
        let index = self.raw.raft.raft_log.applied;
        let conf = self.raw.raft.prs().conf().to_conf_state();
        let order = SnapshotOrder {
            index,
            term: self.raw.raft.raft_log.term(index).unwrap_or(0),
            wal_seq_from: self.log.first_batch_after(index),
            wal_seq_kept: self.log.durable_seq(),
            full: false,
            voters: conf.voters,
            learners: conf.learners,
            members: self.members.clone(),
        };
        self.out.snapshot = Some(self.snapshots.start(order));
    }

    /// The running snapshot is durable (or failed): raft's log before it is released, and the
    /// WAL batches before it may go. `data`: its descriptor, which followers are sent from now.
    pub fn snapshot_done(&mut self, result: Result<Vec<u8>, String>) {
        let (order, waiters) = self.snapshots.finish();
        let reply = match result {
            Ok(data) => {
                let members = Some(order.members.clone());
                let point = SnapPoint { index: order.index, term: order.term, voters: order.voters.clone(), learners: order.learners.clone(), members, data };
                self.raw.store().offer(point.to_snapshot());
                // With peers, etcd's SnapshotCatchUpEntries stay for followers behind.
                let to = order.index.saturating_sub(self.catch_up_entries());
                if let Err(e) = self.raw.mut_store().wl().compact(to) {
                    crate::log::warn("raft log compaction failed", &[("error", e.to_string())]);
                }
                self.out.release_wal_before = Some(order.release_wal_before());
                Ok(())
            }
            Err(e) => Err(Error::Internal(format!("snapshot failed: {e}"))),
        };
        self.out.done.extend(waiters.into_iter().map(|w| (w, reply.clone())));
        self.order_install();
    }

    /// The leader's snapshot files are fetched (step 1 of `installs.rs`): raft may restore it.
    /// A failure tells the leader, which sends again later.
    pub fn fetched(&mut self, result: Result<(), String>) {
        let Some(msg) = self.installs.fetched(result.is_ok()) else { return };
        match result {
            Ok(()) => {
                if let Err(e) = self.raw.step(msg) {
                    crate::log::warn("raft refused a snapshot", &[("error", e.to_string())]);
                }
            }
            Err(e) => {
                crate::log::warn("cannot fetch the leader's snapshot", &[("index", msg.get_snapshot().get_metadata().index.to_string()), ("error", e)]);
                self.out.messages.push(status_message(self.raw.raft.id, msg.from, false));
            }
        }
    }

    /// The ordered install is durable (step 2): raft's storage takes the snapshot and the held
    /// ready goes on. `data`: the installed snapshot's own descriptor, offered from now on;
    /// `members`: its member list (None from a manifest older than membership changes: the
    /// list stays), which replaces this member's. An install that failed left the old state or
    /// the new one on disk: fatal, as a failed WAL write.
    pub fn installed(&mut self, result: Result<(Vec<u8>, Option<Cluster>), String>) {
        let (mut rd, order) = self.installs.take_installed();
        let (data, members) = result.unwrap_or_else(|e| panic!("cannot install the leader's snapshot at index {}: {e}", order.index));
        let snap = rd.snapshot().clone();
        {
            let mut store = self.raw.mut_store().wl();
            store.apply_snapshot(snap.clone()).unwrap_or_else(|e| panic!("raft storage refused snapshot {}: {e}", order.index));
        }
        if let Some(members) = &members {
            self.members = members.clone();
        }
        // Committed entries held for a durable commit index are below the snapshot (raft
        // restores only past its commit index): the snapshot covers them. Their proposers
        // time out, as those of the proposals forgotten below.
        self.held.clear();
        let point = SnapPoint { index: order.index, term: order.term, voters: order.voters.clone(), learners: order.learners.clone(), members, data };
        self.raw.store().offer(point.to_snapshot());
        self.log.forget_before(order.wal_seq_from);
        let entries = rd.take_entries();
        let hs = rd.hs().cloned();
        let seq = self.must_sync(&entries, hs.as_ref()).then(|| self.write(entries, hs));
        self.log.track(rd.number(), seq);
        if order.from != raft::INVALID_ID {
            let finished = status_message(self.raw.raft.id, order.from, true);
            match self.after_persist.back_mut() {
                Some((n, msgs)) if *n == rd.number() => msgs.push(finished),
                _ => self.after_persist.push_back((rd.number(), vec![finished])),
            }
        }
        self.raw.advance_append_async(rd);
        // Entries this node proposed up to the snapshot: applied or not, nobody here can tell.
        self.proposals.forget_up_to(order.index);
        self.snapshots.installed();
        self.applied_to_after_persist = Some(order.index);
        self.out.release_wal_before = Some(order.release_wal_before());
        self.release_persisted();
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
        r.state == StateRole::Leader && self.committed_in_current_term() && r.raft_log.applied >= r.raft_log.committed
    }

    /// The last index of raft's log: at start, the end of what the WAL held (entries up to it
    /// were written before the restart; the commit index recorded may lag the last applied
    /// one, since it is made durable with the next write).
    pub fn last_index(&self) -> u64 {
        self.raw.raft.raft_log.last_index()
    }

    /// (term, leader id, commit index).
    pub fn progress(&self) -> (u64, u64, u64) {
        let r = &self.raw.raft;
        (r.term, r.leader_id, r.raft_log.committed)
    }

    /// The term of the entry at `index` in raft's log, if it holds one (tests' checks).
    pub fn log_term(&self, index: u64) -> Option<u64> {
        let log = &self.raw.raft.raft_log;
        (index <= log.last_index()).then(|| log.term(index).ok()).flatten()
    }

    /// The member list as applied.
    pub fn members(&self) -> &Cluster {
        &self.members
    }

    pub fn applied_index(&self) -> u64 {
        self.raw.raft.raft_log.applied
    }

    /// Clients waiting for a write's result.
    pub fn pending_proposals(&self) -> usize {
        self.proposals.pending()
    }

    // ---- internals ----

    /// Applied entries raft's log keeps for followers to catch up from.
    fn catch_up_entries(&self) -> u64 {
        if self.raw.raft.prs().iter().nth(1).is_some() {
            self.catch_up_entries
        } else {
            0
        }
    }

    /// A snapshot may be cut on a leader that has committed an entry of its term
    /// (`is_serving`), or on any other member once everything it knows committed is applied:
    /// also without a leader, as etcd's Defragment and Snapshot work on a member that lost
    /// quorum (what a disaster recovery starts from). Not after this member's removal (a
    /// restart replays it, and stops again).
    fn may_snapshot(&self) -> bool {
        let r = &self.raw.raft;
        // Index 0 (nothing applied since a first boot) is no snapshot raft can load back.
        !self.removed && r.raft_log.applied > 0 && (self.is_serving() || r.raft_log.applied >= r.raft_log.committed)
    }

    /// Whether raft would restore the snapshot this message carries (else it is stepped as is:
    /// raft answers where this member is).
    fn would_restore(&self, msg: &Message) -> bool {
        let r = &self.raw.raft;
        let meta = msg.get_snapshot().get_metadata();
        msg.term >= r.term && meta.index > r.raft_log.committed && !r.raft_log.match_term(meta.index, meta.term)
    }

    /// The held ready's install, once no local snapshot runs (the two would race for the
    /// manifest).
    fn order_install(&mut self) {
        if self.snapshots.is_running() {
            return;
        }
        let wal = (self.log.next_seq(), self.log.durable_seq());
        if let Some(order) = self.installs.order(wal) {
            self.out.install = Some(order);
        }
    }

    /// Leader: follower `from` finished (or failed) fetching the snapshot it was sent.
    fn snapshot_status(&mut self, from: u64, ok: bool) {
        if self.is_leader() && self.installs.status(from) {
            self.raw.report_snapshot(from, if ok { SnapshotStatus::Finish } else { SnapshotStatus::Failure });
        }
    }

    /// Leader: snapshots sent without news for too long count as failed (so raft sends again).
    fn report_overdue_snapshots(&mut self) {
        let timeout = STATUS_TIMEOUT_ELECTIONS * self.election_ticks.max(1);
        for id in self.installs.overdue(self.ticks, timeout) {
            if self.is_leader() {
                self.raw.report_snapshot(id, SnapshotStatus::Failure);
            }
        }
    }

    /// Why a write proposed at tick `started` timed out, as etcd's `parseProposeCtxErr` tells:
    /// on a member that became leader, one that came in during the two election timeouts
    /// before it was elected may have been lost with the previous leader. (etcd notes the
    /// election time only on the member elected: a follower says "request timed out".)
    fn timeout_error(&self, started: u64) -> Error {
        let elected = self.leader_elected_tick;
        let lost = elected.saturating_sub(2 * self.election_ticks);
        if elected > 0 && lost < started && started < elected {
            Error::TimeoutDueToLeaderFail
        } else {
            Error::Timeout
        }
    }

    /// etcd's leader-change notice: when a new leader is seen, the ReadIndex requests in
    /// flight fail with "leader changed" (the old leader may never answer them).
    fn notice_new_leader(&mut self) {
        let leader = self.raw.raft.leader_id;
        if leader != self.leader_seen && leader != raft::INVALID_ID {
            if leader == self.raw.raft.id {
                self.leader_elected_tick = self.ticks;
            }
            let failed = self.reads.leader_changed();
            if !failed.is_empty() {
                crate::metrics::handles().read_indexes_failed.increment(1);
            }
            self.out.done.extend(failed.into_iter().map(|r| (r, Err(Error::LeaderChanged))));
        }
        self.leader_seen = leader;
    }

    /// A follower that is the only voter of its configuration (its leader removed itself)
    /// while entries that leader sent are not durable yet. raft-rs makes a lone voter leader in
    /// the tick that starts its campaign and asserts then that its whole log is persisted (found
    /// by the raft simulation, seed 1435212: the process would abort); its clock waits for the
    /// write instead, a turn or two.
    fn lone_voter_with_unpersisted_log(&self) -> bool {
        let r = &self.raw.raft;
        r.state != StateRole::Leader && r.raft_log.persisted < r.raft_log.last_index() && r.prs().is_singleton() && r.prs().conf().voters().contains(r.id)
    }

    /// Whether raft may be asked for a read index now. Reads wait until raft would not drop
    /// them: a leader that has committed an entry of its term, or a follower that knows a
    /// leader (who may still drop it: `reads.rs`). A leader that applied its own removal no
    /// longer asks: raft-rs answers a leader whose configuration has a single voter at once
    /// with its commit index, taking that voter for itself, while the remaining voter may lead
    /// a newer term and have committed more (found by the raft simulation, seed 1074291: a
    /// read on the removed leader answered at index 36 after the new leader's 39 was seen).
    /// Its reads wait for the request timeout or the leader change; the member stops soon
    /// after (`driver::stop_removed_member`), as etcd's.
    fn may_ask_reads(&self) -> bool {
        let r = &self.raw.raft;
        if self.is_leader() {
            self.committed_in_current_term() && r.prs().conf().voters().contains(r.id)
        } else {
            r.leader_id != raft::INVALID_ID
        }
    }

    /// raft-rs drops a ReadIndex (silently) until the leader has committed an entry of its term.
    fn committed_in_current_term(&self) -> bool {
        let r = &self.raw.raft;
        r.raft_log.term(r.raft_log.committed).is_ok_and(|t| t == r.term)
    }

    fn propose_batch(&mut self) {
        // Without a leader the batch waits (`propose_as`).
        if self.installs.holding_ready() || self.raw.raft.leader_id == raft::INVALID_ID {
            return;
        }
        let Some((requests, data)) = self.proposals.take_batch() else { return };
        crate::metrics::handles().raft_proposal_batch.record(requests.len() as f64);
        let leading = self.is_leader();
        match self.raw.propose(vec![], data) {
            // A leader appended it as its last entry; a follower forwarded it to the leader,
            // where it gets an index this node learns only when the entry comes back.
            Ok(()) if leading => {
                let r = &self.raw.raft;
                self.proposals.proposed(r.raft_log.last_index(), r.term, requests);
            }
            Ok(()) => {}
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
        for m in rd.messages().iter().filter(|m| m.get_msg_type() == MessageType::MsgSnapshot) {
            self.installs.sent(m.to, self.ticks);
            if !in_conf(m, m.to) {
                // Offered before `m.to` was added: the member refuses it; a newer one is due.
                self.snapshots.soon();
            }
        }
        let stored_term = self.raw.store().rl().hard_state().term;
        if rd.hs().is_some_and(|hs| hs.term != stored_term) {
            self.term_ready = Some(rd.number());
        }
        let mut persisted_messages = rd.take_persisted_messages();
        if self.term_ready.is_some() {
            // No message leaves before this member's term is durable: a single voter leads as
            // it campaigns, in one ready, and raft-rs sends a leader's appends at once; had
            // its learners got entries of a term it then lost in a crash, it could lead that
            // term again with other entries at those indexes, and a learner would keep its own
            // (same index, same term: raft takes them for the same entry).
            let mut now = rd.take_messages();
            now.append(&mut persisted_messages);
            persisted_messages = now;
        } else {
            self.out.messages.extend(rd.take_messages());
        }
        if !persisted_messages.is_empty() {
            self.after_persist.push_back((rd.number(), persisted_messages));
        }
        for rs in rd.take_read_states() {
            let (leading, id, term) = (self.is_leader(), self.raw.raft.id, self.raw.raft.term);
            let peer_reads = self.reads.answered(&rs.request_ctx, rs.index);
            // (A read state reaches a member that no longer leads only for a request it
            // forwarded as a follower: the followers' requests in it are dropped.)
            self.out.messages.extend(peer_reads.into_iter().filter(|_| leading).map(|p| read_index_answer(id, term, rs.index, p)));
        }
        if !rd.snapshot().is_empty() {
            // raft-rs hands out no committed entries with a snapshot; the ready waits for the
            // install (`installs.rs`, step 2).
            assert!(rd.committed_entries().is_empty(), "a ready with a snapshot and committed entries");
            self.installs.hold(rd);
            self.order_install();
            return;
        }
        let committed = rd.take_committed_entries();
        let conf = committed.iter().any(|e| e.get_entry_type() != EntryType::EntryNormal);
        let entries = rd.take_entries();
        let hs = rd.hs().cloned();
        // A committed conf change makes its commit index durable at once (see `held`).
        let seq = (self.must_sync(&entries, hs.as_ref()) || conf).then(|| self.write(entries, hs));
        if conf || !self.held.is_empty() {
            self.held.extend(committed.into_iter().map(|e| (seq, e)));
        } else {
            for e in committed {
                let to_apply = self.committed(e);
                self.out.apply.push(to_apply);
            }
        }
        self.log.track(rd.number(), seq);
        self.raw.advance_append_async(rd);
        self.release_persisted();
    }

    fn committed(&mut self, e: Entry) -> ToApply<W> {
        let replaced = |core: &mut Self, lost: Vec<W>| core.out.refused.extend(lost.into_iter().map(|w| (w, Error::LeaderChanged)));
        if e.get_entry_type() == EntryType::EntryNormal {
            let (mut to_apply, lost) = self.proposals.committed(e.index, e.term, &e.data);
            replaced(self, lost);
            self.set_attributes(&mut to_apply);
            return to_apply;
        }
        let lost = self.proposals.replaced_up_to(e.index);
        replaced(self, lost);
        assert_eq!(e.get_entry_type(), EntryType::EntryConfChange, "entry {}: only v1 conf changes are proposed", e.index);
        self.apply_conf_change(&e)
    }

    /// etcd's strict reconfig check, with the leader's view of its peers. A peer counts as
    /// connected once it acknowledged an entry and was heard from lately: raft-rs marks a peer
    /// recently active when it is added, before it ever answered (so a never-started member
    /// counted as connected until the next check-quorum round; etcd asks its transport).
    fn check_member_change(&self, change: &MemberChange) -> crate::error::Result<()> {
        let r = &self.raw.raft;
        let view = self.is_leader().then(|| super::reconfig::PeerView {
            leader_match: r.prs().get(r.id).map_or(0, |p| p.matched),
            peers: r.prs().iter().map(|(&id, p)| (id, (p.matched, p.recent_active && p.matched > 0))).collect(),
        });
        let checks = super::reconfig::Checks { cluster: &self.members, local_id: r.id, strict: self.strict_reconfig_check, view };
        match change {
            MemberChange::Add { member } => checks.may_add(member),
            MemberChange::Remove { id } => checks.may_remove(*id),
            MemberChange::Promote { id } => checks.may_promote(*id),
            MemberChange::Update { .. } => Ok(()),
        }
    }

    /// A committed conf change: validated as etcd (the same verdict on every member), then
    /// applied to raft's configuration and the member list.
    fn apply_conf_change(&mut self, e: &Entry) -> ToApply<W> {
        let ctx = conf_change::decode(&e.context, e.index);
        let mut result = conf_change::validate(&self.members, &ctx.change);
        if let (Ok(()), Some(cc)) = (&result, ctx.change.raft_change()) {
            // Refused only when it would leave no voter (possible without the strict check).
            if let Err(err) = self.raw.apply_conf_change(&cc) {
                result = Err(Error::Internal(format!("raft refused the configuration change: {err}")));
            }
        }
        let applied = result.is_ok();
        if applied {
            conf_change::apply(&mut self.members, &ctx.change);
            crate::log::info(
                "applied a configuration change through raft",
                &[("local-member-id", format!("{:x}", self.raw.raft.id)), ("raft-conf-change", format!("{:?}", ctx.change)), ("index", e.index.to_string())],
            );
        }
        let removed_self = applied && ctx.change == MemberChange::Remove { id: self.raw.raft.id };
        if removed_self {
            self.removed = true;
            // raft-rs's removed leader broadcasts nothing more by itself: tell the followers
            // the commit now (heartbeats carry it), and again on every heartbeat tick.
            self.raw.raft.ping();
        }
        let waiter = self.proposals.take_waiter(ctx.proposal_id);
        let members = applied.then(|| self.members.clone());
        let outcome = ConfOutcome { waiter, result, removed_self };
        ToApply { index: e.index, term: e.term, requests: Vec::new(), auth: Vec::new(), waiters: Vec::new(), members, conf_change: Some(outcome) }
    }

    /// Members' published attributes in a normal entry change the member list.
    fn set_attributes(&mut self, to_apply: &mut ToApply<W>) {
        let mut changed = false;
        for r in to_apply.requests.iter().flatten() {
            if let Request::MemberAttrSet(a) = r {
                changed |= conf_change::set_attributes(&mut self.members, a.member_id, &a.name, &a.client_urls);
            }
        }
        if changed {
            to_apply.members = Some(self.members.clone());
        }
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
        // A removed leader is not in raft's progress any more: raft-rs would panic on its own.
        if let Some(number) = number.filter(|_| !self.removed) {
            self.raw.on_persist_ready(number);
            self.term_ready = self.term_ready.filter(|&t| t > number);
            // An installed snapshot counts as applied once raft counts it persisted.
            if let Some(index) = self.applied_to_after_persist.filter(|&i| self.raw.raft.raft_log.persisted >= i) {
                self.raw.advance_apply_to(index);
                self.applied_to_after_persist = None;
            }
            while self.after_persist.front().is_some_and(|(n, _)| *n <= number) {
                let (_, msgs) = self.after_persist.pop_front().expect("checked above");
                self.out.messages.extend(msgs);
            }
        }
        self.out.done.extend(barriers.into_iter().map(|r| (r, Ok(()))));
        while self.held.front().is_some_and(|(seq, _)| seq.is_none_or(|s| s <= self.log.durable_seq())) {
            let (_, e) = self.held.pop_front().expect("checked above");
            let to_apply = self.committed(e);
            self.out.apply.push(to_apply);
        }
    }

    /// Drops applied entries from raft's in-memory log that no peer can need. A single voter
    /// keeps none: the WAL and the snapshots hold them for recovery. With peers, etcd's
    /// SnapshotCatchUpEntries stay for followers to catch up from.
    fn trim_log(&mut self, applied: u64) {
        let mut to = applied.saturating_sub(self.catch_up_entries());
        if self.raw.raft.prs().iter().nth(1).is_some() {
            // Never past the snapshot a follower would be sent instead of the entries.
            to = to.min(self.raw.store().offered_index());
        }
        let first = raft::Storage::first_index(self.raw.store()).unwrap_or(to);
        if to >= first + LOG_TRIM_STEP_ENTRIES {
            if let Err(e) = self.raw.mut_store().wl().compact(to) {
                crate::log::warn("raft log compaction failed", &[("error", e.to_string())]);
            }
        }
    }
}

/// Whether member `id` is in the configuration of the snapshot `msg` carries.
fn in_conf(msg: &Message, id: u64) -> bool {
    let cs = msg.get_snapshot().get_metadata().get_conf_state();
    cs.voters.contains(&id) || cs.learners.contains(&id)
}

/// raft-rs's answer to a follower's ReadIndex: the read index and the follower's context; the
/// term is this leader's, whose entry is at the index (it answers only once it committed one).
fn read_index_answer(leader: u64, term: u64, index: u64, read: PeerRead) -> Message {
    let mut m = Message::default();
    m.set_msg_type(MessageType::MsgReadIndexResp);
    m.from = leader;
    m.to = read.peer;
    m.term = term;
    m.index = index;
    let mut ctx = Entry::default();
    ctx.data = read.ctx.into();
    m.set_entries(vec![ctx].into());
    m
}

/// The batches WAL replay brought back, as one span (`LogWriter::new`).
fn replayed_span(recovered: &Recovered) -> Option<Span> {
    let (first, last) = (recovered.entries.first()?, recovered.entries.last()?);
    Some(Span { seq: recovered.first_seq.max(1), first: first.index, last: last.index })
}

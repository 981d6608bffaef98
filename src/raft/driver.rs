//! The raft core's driver: a thin glommio loop on shard 0 that feeds the core (`core.rs`) its
//! inputs and carries out its outputs. It owns everything that waits or touches the world:
//! the client queue, the WAL stripes' queues, apply (`apply.rs`, which reaches the shards), the
//! answers to clients (`reply.rs`), the snapshot coordinator and the server status.
//!
//! One turn: wait for a client message, a peer's message (the transport's own queue, `peer/`),
//! a durable WAL batch, a finished snapshot or the tick; step the queued peers' messages into
//! the core (at most `MAX_PEER_MSGS_PER_TURN`, whether or not it takes client messages) and
//! drain the queued client messages (at most `MAX_MSGS_PER_TURN`, none while the core is not
//! accepting); `core.advance()`; queue its messages to peers (`peer::Outbox`, never waiting;
//! a full queue reports the peer unreachable), write the WAL batches it produced, apply the
//! committed entries in log order and answer their clients (published as applied first, so a
//! client's next serializable read sees its write); `core.end_turn()`; start the snapshot it
//! ordered; flush the turn's answers, one batch per front-end thread.
//!
//! A raft snapshot from the leader (`installs.rs`): the driver fetches the files the core
//! orders (`snapshot::fetch`, through `DriverConfig.fetcher`: the peer transport's, set by
//! `server/`; without one the fetch fails and the leader is told), then installs them: the stores are loaded from them with the boot
//! path's code and replace every shard's, the applier takes the snapshot's revision, alarms,
//! auth state and leases, the watch hub moves every watcher to catch up from the new stores,
//! and the manifest is written last (`snapshot::install`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::{select, Either, LocalBoxFuture};
use tokio::sync::oneshot;

use super::core::{Core, CoreConfig, FetchOrder, InstallOrder, Output, SnapPoint};
use super::handle::{CoreMsg, LeaseCall};
use super::proposals::ToApply;
use crate::kv::apply::Applier;
use crate::lease::lessor::{Checkpoints, Lessor};
use crate::lease::LEASE_CHECKPOINT_INTERVAL;
use crate::kv::delivery::{Delivery, Outbox};
use crate::kv::linear_read::LinearRange;
use crate::kv::response::Response;
use crate::error::Result;
use crate::metrics as m;
use crate::proto::ballastpb::{internal_request::Request, AuthHeader};
use crate::proto::etcdserverpb::{alarm_request::AlarmAction, AlarmRequest, AlarmType, LeaseCheckpoint, LeaseCheckpointRequest, LeaseRevokeRequest};
use crate::reply;
use crate::shard::mailbox::Shards;
use crate::snapshot::coordinator::{AppliedState, Coordinator, Finished};
use crate::snapshot::descriptor::Descriptor;
use crate::snapshot::install::{self, Placement};
use crate::snapshot::Manifest;
use crate::status::ServerStatus;
use crate::wal::recover::Recovered;
use crate::wal::stripe::StripeMsg;
use crate::watch::Applied;

/// Client messages taken from the queue per turn.
const MAX_MSGS_PER_TURN: usize = 4096;
/// Peers' messages taken from the transport's queue per turn.
const MAX_PEER_MSGS_PER_TURN: usize = 4096;

type WriteWaiter = (Option<usize>, oneshot::Sender<Result<Response>>);
/// What the core answers with a plain `Result<()>`: a caller waiting on a oneshot (`home`: its
/// front-end thread), or a linearizable range the driver then hands to its shard.
enum DoneWaiter {
    Notify(Option<usize>, oneshot::Sender<Result<()>>),
    Range(Box<LinearRange>),
}

pub struct DriverConfig {
    pub id: u64,
    /// etcd's `--strict-reconfig-check`.
    pub strict_reconfig_check: bool,
    /// `--force-new-cluster` on a member with data.
    pub force_new_cluster: bool,
    pub heartbeat: Duration,
    pub election_ticks: usize,
    pub quota: crate::quota::Quota,
    pub snap_dir: std::path::PathBuf,
    /// Applied requests between automatic snapshots (`--snapshot-count`).
    pub snapshot_count: u64,
    /// Front-end thread `i`'s answer dispatcher (`reply.rs`).
    pub homes: Vec<reply::HomeTx>,
    /// WAL stripes no shard writes any more (the shard count was lowered), with the highest
    /// batch sequence each holds: deleted by the first snapshot that covers them.
    pub retired_stripes: Vec<(std::path::PathBuf, u64)>,
    /// (lease, key) of every live key with a lease in the snapshot's stores: attached at boot.
    pub leased_keys: Vec<(i64, Vec<u8>)>,
    /// --experimental-enable-lease-checkpoint(-persist).
    pub lease_checkpoint: bool,
    pub lease_checkpoint_persist: bool,
    /// The front end's copy of the auth state, which the applier publishes.
    pub auth: Arc<crate::auth::AuthGuard>,
    /// The live membership, which applied conf changes replace.
    pub membership: crate::cluster::Membership,
    /// Fetches a leader's snapshot files (None: a fetch fails at once and the leader is told).
    pub fetcher: Option<Fetcher>,
    /// The WAL dir, while its marker (`wal::marker`) is still to be written, and the batch
    /// after whose durability it is: the next one (the WAL holds none recovery keeps).
    pub wal_marker: Option<(std::path::PathBuf, u64)>,
    /// The peer transport: messages to peers go out here, theirs come in on `inbound`.
    pub outbox: crate::peer::Outbox,
    pub inbound: flume::Receiver<crate::peer::Inbound>,
}

/// Copies the files of the snapshot a descriptor names from a member into the staging
/// directory of this snapshot dir (`snapshot::fetch::fetch` on that member's `Source`) and
/// returns the member's manifest. Runs as a task on the driver's executor.
pub type Fetcher = Arc<dyn Fn(u64, Descriptor, std::path::PathBuf) -> LocalBoxFuture<'static, std::result::Result<Manifest, String>> + Send + Sync>;

struct Driver {
    core: Core<WriteWaiter, DoneWaiter>,
    applier: Applier,
    outbox: Outbox,
    /// One queue per WAL stripe (stripe i is written by shard i).
    stripes: Vec<flume::Sender<StripeMsg>>,
    persisted_tx: flume::Sender<u64>,
    snapshots: Coordinator,
    status: Arc<ServerStatus>,
    retired_stripes: Vec<(std::path::PathBuf, u64)>,
    /// The watch hub, told how far apply has gone.
    watch: flume::Sender<Applied>,
    shards: Shards,
    snap_dir: std::path::PathBuf,
    /// The manifest of the leader's snapshot fetched into the staging directory.
    fetched: Option<Manifest>,
    fetcher: Option<Fetcher>,
    fetched_tx: flume::Sender<std::result::Result<Manifest, String>>,
    /// The live member list, set from every applied change.
    membership: crate::cluster::Membership,
    /// This member applied its own removal: the process is stopping.
    removed: bool,
    peers: crate::peer::Outbox,
    /// This member leads and has started its lease clocks (`Applier::promote`).
    leading: bool,
    /// The WAL dir and the batch its marker waits for, until written (`DriverConfig::wal_marker`).
    wal_marker: Option<(std::path::PathBuf, u64)>,
    heartbeats: super::heartbeats::HeartbeatDetector,
    /// How long a ReadIndex request waits for its answer before it is asked again (half an
    /// election timeout: etcd's `readIndexRetryTime` at its default timings).
    read_retry: Duration,
}

/// Where the driver's outside events come from and go: durable WAL batches, finished
/// snapshots, the watch hub, and the peers.
struct Channels {
    persisted_tx: flume::Sender<u64>,
    fetched_tx: flume::Sender<std::result::Result<Manifest, String>>,
    done_tx: flume::Sender<Finished>,
    watch: flume::Sender<Applied>,
    peers: crate::peer::Outbox,
}

/// Builds the core from the recovered WAL and runs it until every handle is dropped.
/// `ready` is signalled once the node leads (or follows) and has re-applied its log.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    mut cfg: DriverConfig,
    recovered: Recovered,
    snap: Option<Manifest>,
    mut rx: tokio::sync::mpsc::Receiver<CoreMsg>,
    stripes: Vec<flume::Sender<StripeMsg>>,
    shards: Shards,
    status: Arc<ServerStatus>,
    applied: flume::Sender<Applied>,
    ready: crossbeam::channel::Sender<std::result::Result<(), String>>,
) {
    let (persisted_tx, persisted_rx) = flume::unbounded();
    let (done_tx, done_rx) = flume::unbounded();
    let (fetched_tx, fetched_rx) = flume::unbounded();
    let channels = Channels { persisted_tx, fetched_tx, done_tx, watch: applied, peers: std::mem::take(&mut cfg.outbox) };
    let inbound = cfg.inbound.clone();
    let mut driver = match Driver::new(&cfg, &recovered, snap, stripes, channels, shards, status.clone()) {
        Ok(driver) => driver,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    drop(recovered);
    let mut ready = Some(ready);
    let mut next_tick = crate::shard::beat::next_beat(cfg.heartbeat, Instant::now());
    let mut next_expiry_check = Instant::now() + crate::lease::EXPIRY_CHECK_INTERVAL;
    // One timer for the whole loop, re-armed for the next tick when it fires: cheaper than a
    // new one per turn. A tick runs in the first turn after it is due (`shard::beat`).
    let mut tick_timer = glommio::timer::Timer::new(crate::shard::beat::timer_for(next_tick, Instant::now()));
    loop {
        let accepting = driver.core.accepting();
        let clients = async {
            if accepting {
                rx.recv().await
            } else {
                std::future::pending().await
            }
        };
        let events = select(select(persisted_rx.recv_async(), done_rx.recv_async()), select(inbound.recv_async(), fetched_rx.recv_async()));
        let mut timer_fired = false;
        let first = match select(select(std::pin::pin!(clients), events), &mut tick_timer).await {
            Either::Left((Either::Left((Some(msg), _)), _)) => Some(msg),
            Either::Left((Either::Left((None, _)), _)) => break, // every handle dropped: shut down
            Either::Left((Either::Right((Either::Left((Either::Left((seq, _)), _)), _)), _)) => {
                driver.persisted(seq.expect("the driver holds a sender"));
                None
            }
            Either::Left((Either::Right((Either::Left((Either::Right((finished, _)), _)), _)), _)) => {
                driver.snapshot_finished(finished.expect("the driver holds a sender"));
                None
            }
            Either::Left((Either::Right((Either::Right((Either::Left((from_peer, _)), _)), _)), _)) => {
                if let Ok(event) = from_peer {
                    driver.take_peer_event(event);
                }
                None
            }
            Either::Left((Either::Right((Either::Right((Either::Right((fetched, _)), _)), _)), _)) => {
                driver.fetch_done(fetched.expect("the driver holds a sender"));
                None
            }
            Either::Right(_) => {
                timer_fired = true; // the tick happens below, then the timer is armed again
                None
            }
        };
        persisted_rx.try_iter().for_each(|seq| driver.persisted(seq));
        inbound.try_iter().take(MAX_PEER_MSGS_PER_TURN).for_each(|event| driver.take_peer_event(event));
        driver.raise_nospace_on_full_disk();
        driver.take_all(first, &mut rx);
        let ticked = Instant::now() >= next_tick;
        if ticked {
            driver.core.tick();
            next_tick = next_tick_after(next_tick, cfg.heartbeat, Instant::now());
        }
        // Armed for the next tick whenever that moved (else a timer still set for the tick just
        // run would wake the loop for nothing) or the timer fired.
        if ticked || timer_fired {
            tick_timer.reset(crate::shard::beat::timer_for(next_tick, Instant::now()));
        }
        let rev = status.applied_rev();
        driver.turn().await;
        if status.applied_rev() > rev {
            driver.tell_watch(); // the watch hub releases the events up to here
        }
        driver.follow_leadership(cfg.heartbeat * cfg.election_ticks as u32);
        if driver.serves_clients() {
            if let Some(tx) = ready.take() {
                let _ = tx.send(Ok(()));
            }
        }
        if Instant::now() >= next_expiry_check {
            next_expiry_check = Instant::now() + crate::lease::EXPIRY_CHECK_INTERVAL;
            driver.revoke_expired_leases();
        }
    }
}

/// The tick after the one due at `due`, on the same phase (as etcd's ticker): counting the
/// interval from when a tick ran instead lost a tick whenever a turn's work made the timer fire
/// before the interval had passed (ticks 200 ms apart, not 100: 1% of ticks idle, 3% under
/// load, in a 3-member cluster here).
/// Ticks missed behind a stall are dropped, not run in a burst. Ticks are on the shard's beat
/// (`shard::beat`), so that the watch hub's sync runs in the same wake-up.
fn next_tick_after(due: Instant, heartbeat: Duration, now: Instant) -> Instant {
    let next = due + heartbeat;
    if next > now {
        next
    } else {
        crate::shard::beat::next_beat(heartbeat, now)
    }
}

/// Set once the front end handles SIGTERM (it serves): before, a removed member exits at once.
pub static STOPS_ON_SIGTERM: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
/// Set when the SIGTERM that stops the process is this member's own, sent once it was
/// removed: the process then exits 0 (etcd's), not of the signal (`server::run`).
pub static STOPPED_AS_REMOVED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// etcd's stop of a removed member: the answer goes out first (a second later, as etcd's
/// stopWithDelay), then the process stops as on a signal and exits 0 (at once, with 0, when it
/// does not serve yet: every write it acknowledged is already durable).
fn stop_removed_member() {
    let err = crate::peer::MEMBER_REMOVED;
    crate::log::warn("server error", &[("error", err.into())]);
    crate::log::warn("data-dir used by this member must be removed", &[]);
    let _ = std::thread::Builder::new().name("removed".into()).spawn(|| {
        std::thread::sleep(Duration::from_secs(1));
        if !STOPS_ON_SIGTERM.load(std::sync::atomic::Ordering::SeqCst) {
            crate::log::info("stopped ballast", &[]);
            std::process::exit(0);
        }
        STOPPED_AS_REMOVED.store(true, std::sync::atomic::Ordering::SeqCst);
        // SAFETY: kill(2) on this process with a signal it handles (graceful shutdown).
        unsafe { libc::kill(libc::getpid(), libc::SIGTERM) };
    });
}

impl Driver {
    fn new(
        cfg: &DriverConfig,
        recovered: &Recovered,
        snap: Option<Manifest>,
        stripes: Vec<flume::Sender<StripeMsg>>,
        channels: Channels,
        shards: Shards,
        status: Arc<ServerStatus>,
    ) -> std::result::Result<Driver, String> {
        let Channels { persisted_tx, fetched_tx, done_tx, watch, peers } = channels;
        let boot = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        // As etcd's request ids: the member id's low 16 bits, then the boot time (in µs: it
        // wraps after 8.9 years, and no life proposes a million requests a second).
        let boot_micros = boot.as_micros() as u64 & ((1 << 48) - 1);
        // etcd's request timeout: 5 s + 2 × election timeout.
        let timeout = Duration::from_secs(5) + 2 * cfg.heartbeat * cfg.election_ticks as u32;
        let core_cfg = CoreConfig {
            id: cfg.id,
            cluster: cfg.membership.current().as_ref().clone(),
            strict_reconfig_check: cfg.strict_reconfig_check,
            election_ticks: cfg.election_ticks,
            randomized_election: true,
            stripes: stripes.len(),
            snapshot_count: cfg.snapshot_count,
            first_proposal_id: (cfg.id & 0xffff) << 48 | boot_micros,
            request_timeout_ticks: timeout.as_nanos().div_ceil(cfg.heartbeat.as_nanos().max(1)) as u64,
            catch_up_entries: super::core::CATCH_UP_ENTRIES,
            force_new_cluster: cfg.force_new_cluster,
            quiet_snapshot_ticks: super::snapshots::QUIET_AFTER.as_nanos().div_ceil(cfg.heartbeat.as_nanos().max(1)) as u64,
        };
        let point = snap.as_ref().map(|m| SnapPoint {
            index: m.index,
            term: m.term,
            voters: m.voters.clone(),
            learners: m.learners.clone(),
            members: m.members.clone(),
            data: Descriptor::of(m).encode(),
        });
        let core = Core::new(&core_cfg, recovered, point.as_ref())?;
        // The snapshot's member list, until the entries after it are applied again.
        set_members(&cfg.membership, &status, core.members());
        let election_timeout = cfg.heartbeat * cfg.election_ticks as u32;
        let min_ttl = crate::lease::min_ttl_seconds(cfg.heartbeat, cfg.election_ticks as u64);
        // A revoke not applied within etcd's request timeout is proposed again.
        // Failpoint `lease-checkpoint-secs=N`: checkpoints every N s (tests cannot wait 5 min).
        let interval = crate::failpoint::arg("lease-checkpoint-secs").and_then(|s| s.parse().ok()).map_or(LEASE_CHECKPOINT_INTERVAL, Duration::from_secs);
        let checkpoints = cfg.lease_checkpoint.then_some(Checkpoints { interval, persist: cfg.lease_checkpoint_persist });
        let lessor = Lessor::new(min_ttl, Duration::from_secs(5) + 2 * election_timeout, checkpoints);
        let mut applier = Applier::new(shards.clone(), status.clone(), cfg.quota, lessor, cfg.auth.clone());
        applier.set_replayed_until(core.last_index());
        if let Some(m) = &snap {
            applier.restore(m.rev, m.compact_rev, &m.alarms);
            applier.restore_auth(m.auth.clone());
            applier.lessor().restore(&m.leases, &m.lease_remaining);
            for (lease, key) in &cfg.leased_keys {
                applier.lessor().attach(*lease, key);
            }
            status.publish_applied(m.index, m.rev, m.compact_rev);
        }
        let snapshots = Coordinator::new(cfg.snap_dir.clone(), shards.clone(), status.clone(), snap, done_tx);
        Ok(Driver {
            core,
            applier,
            outbox: Outbox::new(cfg.homes.clone()),
            stripes,
            persisted_tx,
            snapshots,
            status,
            retired_stripes: cfg.retired_stripes.clone(),
            watch,
            shards,
            snap_dir: cfg.snap_dir.clone(),
            fetched: None,
            fetcher: cfg.fetcher.clone(),
            fetched_tx,
            membership: cfg.membership.clone(),
            removed: false,
            peers,
            leading: false,
            wal_marker: cfg.wal_marker.clone(),
            heartbeats: super::heartbeats::HeartbeatDetector::new(cfg.heartbeat),
            read_retry: cfg.heartbeat * (cfg.election_ticks / 2).max(1) as u32,
        })
    }

    /// A stripe made WAL batch `seq` durable. The WAL's first batch marks it written
    /// (`wal::marker`: a blocking create and two syncs, once per data dir). Not a later batch
    /// made durable before it on another stripe: recovery would erase that one with the gap
    /// before it, and then refuse the WAL the marker says was written.
    fn persisted(&mut self, seq: u64) {
        self.core.persisted(seq);
        if let Some((dir, first)) = self.wal_marker.take_if(|(_, first)| *first == seq) {
            if let Err(e) = crate::wal::marker::mark(&dir) {
                // The next boot that finds a record marks it.
                crate::log::warn("cannot mark the WAL as written", &[("dir", dir.display().to_string()), ("batch", first.to_string()), ("error", e.to_string())]);
            }
        }
    }

    /// A peer's message for the core, or news that a peer cannot be reached.
    fn take_peer_event(&mut self, event: crate::peer::Inbound) {
        match event {
            crate::peer::Inbound::Message(m) => {
                if let Err(e) = self.core.step(m) {
                    crate::log::debug("raft refused a peer's message", &[("error", e)]);
                }
            }
            crate::peer::Inbound::Unreachable(peer) => self.core.unreachable(peer, false),
            crate::peer::Inbound::Down(peer) => {
                if self.core.peer_down(peer) {
                    crate::log::info("the leader's peer URLs refuse connections: its lease is over", &[("leader", format!("{peer:x}"))]);
                }
            }
            crate::peer::Inbound::Lease(ask) => self.forwarded_lease_call(ask),
            // etcd: a peer answering 410 Gone tells the member it was removed; it stops.
            crate::peer::Inbound::Removed if !self.removed => {
                self.removed = true;
                stop_removed_member();
            }
            crate::peer::Inbound::Removed => {}
        }
    }

    /// A follower's forwarded lease call: answered by this lessor while it is the primary one
    /// (this member leads), else None (etcd's ErrNotPrimary: the follower asks again).
    fn forwarded_lease_call(&mut self, ask: crate::peer::LeaseAsk) {
        let primary = self.leading && self.core.is_leader();
        match ask {
            crate::peer::LeaseAsk::Renew { ids, reply } => {
                let _ = reply.send(primary.then(|| self.renew_leases(ids)));
            }
            crate::peer::LeaseAsk::TimeToLive { id, reply } => {
                let _ = reply.send(primary.then(|| self.applier.lessor().time_to_live(id, Instant::now())));
            }
        }
    }

    /// The lessor's clocks run on the leader only: started (each lease with its TTL plus an
    /// election timeout, etcd's Promote) when this member starts serving as leader, stopped
    /// when it no longer leads (etcd's Demote), so a member that leads again starts them anew.
    fn follow_leadership(&mut self, election_timeout: Duration) {
        if !self.leading && self.core.is_serving() {
            self.applier.promote(election_timeout);
            self.leading = true;
        } else if self.leading && !self.core.is_leader() {
            self.applier.demote();
            self.leading = false;
        }
    }

    /// Ready to serve clients: the leader once it serves, a follower once it knows a leader and
    /// has applied everything it knows committed (etcd serves clients once it has published
    /// itself through raft, which needs a leader too).
    fn serves_clients(&self) -> bool {
        let (_, leader, commit) = self.core.progress();
        self.core.is_serving() || (leader != raft::INVALID_ID && !self.core.is_leader() && self.core.applied_index() >= commit)
    }

    /// Feeds the core the first message and every queued one (bounded per turn).
    fn take_all(&mut self, first: Option<CoreMsg>, rx: &mut tokio::sync::mpsc::Receiver<CoreMsg>) {
        if let Some(msg) = first {
            self.take(msg);
        }
        for _ in 0..MAX_MSGS_PER_TURN {
            if !self.core.accepting() {
                break;
            }
            let std::task::Poll::Ready(Some(msg)) = crate::shard::mailbox::take_queued(rx) else { break };
            self.take(msg);
        }
    }

    fn take(&mut self, msg: CoreMsg) {
        match msg {
            CoreMsg::Propose { req, auth, reply, home } => self.core.propose_as(req, auth, (home, reply)),
            CoreMsg::ReadIndex { reply, home } => self.core.read(DoneWaiter::Notify(home, reply)),
            CoreMsg::ReadRange(read) => self.core.read(DoneWaiter::Range(read)),
            CoreMsg::Snapshot { reply } => self.core.request_snapshot(DoneWaiter::Notify(None, reply)),
            CoreMsg::DiskBarrier { reply } => self.core.barrier(DoneWaiter::Notify(None, reply)),
            CoreMsg::Lease { call } => self.lease_call(call),
            CoreMsg::MemberChange { change, reply, home } => self.core.propose_member_change(change, (home, reply)),
            CoreMsg::TransferLeader { target: 0 } => self.core.transfer_to_most_caught_up(),
            CoreMsg::TransferLeader { target } => self.core.transfer_leader(target),
        }
    }

    /// A WAL stripe or a snapshot found the disk full: raise the NOSPACE alarm (through raft,
    /// as every alarm), so writes are refused until space is freed and the alarm disarmed.
    fn raise_nospace_on_full_disk(&mut self) {
        if !self.status.take_disk_full() || self.status.nospace() || !self.core.is_leader() {
            return;
        }
        crate::log::error("disk full: raising the NOSPACE alarm", &[]);
        let alarm = AlarmRequest { action: AlarmAction::Activate as i32, member_id: self.status.member_id, alarm: AlarmType::Nospace as i32 };
        let (reply, _) = oneshot::channel();
        self.core.propose(Request::Alarm(alarm), (None, reply));
    }

    /// Advances the core and carries out what it asks, until it asks nothing more this turn.
    async fn turn(&mut self) {
        self.core.advance();
        let out = self.core.take_output();
        self.carry_out(out).await;
        self.core.end_turn();
        let out = self.core.take_output();
        self.carry_out(out).await;
        let (term, leader, commit) = self.core.progress();
        if leader != self.status.leader() && leader != raft::INVALID_ID {
            m::handles().leader_changes.increment(1);
            self.heartbeats.reset();
        }
        self.status.publish_raft(term, leader, commit);
        m::handles().proposals_pending.set(self.core.pending_proposals() as f64);
        self.outbox.flush();
    }

    /// etcd's warning for each ReadIndex request asked again.
    fn warn_read_retries(&self, ids: &[u64]) {
        for id in ids {
            let fields = [("sent-request-id", id.to_string()), ("retry-timeout", crate::log::go_duration(self.read_retry))];
            crate::log::warn("waiting for ReadIndex response took too long, retrying", &fields);
        }
    }

    /// Sends the core's messages to the peers (reporting those that cannot be delivered),
    /// after the warnings they and the ReadIndex requests asked again call for.
    fn send_messages(&mut self, messages: Vec<raft::eraftpb::Message>, read_retries: &[u64]) {
        self.heartbeats.check(&messages);
        self.warn_read_retries(read_retries);
        for lost in self.peers.send(messages) {
            self.core.unreachable(lost.to, lost.snapshot);
        }
    }

    async fn carry_out(&mut self, out: Output<WriteWaiter, DoneWaiter>) {
        self.send_messages(out.messages, &out.read_retries);
        for (w, e) in out.refused {
            self.outbox.push(w.0, Delivery::Write(w.1, Err(e)));
        }
        for write in out.wal {
            let seq = write.batch.seq;
            let msg = StripeMsg::Append { batch: write.batch, persisted: self.persisted_tx.clone() };
            if self.stripes[write.stripe].send_async(msg).await.is_err() {
                crate::log::error("a wal stripe stopped", &[("seq", seq.to_string())]);
                std::process::abort();
            }
        }
        for entry in out.apply {
            self.apply(entry).await;
        }
        self.answer(out.done);
        let more = self.core.take_output();
        self.answer(more.done);
        self.send_messages(more.messages, &more.read_retries);
        debug_assert!(more.wal.is_empty() && more.apply.is_empty() && more.snapshot.is_none());
        if let Some(order) = out.fetch {
            self.fetch(order);
        }
        if let Some(order) = out.install {
            let in_progress = crate::metrics::Raised::new(&crate::metrics::handles().snapshot_apply_in_progress);
            let result = self.install(&order).await;
            drop(in_progress);
            self.core.installed(result);
            // The installed snapshot's member list, until the entries after it are applied.
            set_members(&self.membership, &self.status, self.core.members());
        }
        if let Some(order) = out.snapshot {
            let (leases, lease_remaining) = self.applier.lessor().saved();
            let state = AppliedState {
                rev: self.applier.rev(),
                compact_rev: self.applier.compact_rev(),
                alarms: self.applier.alarms(),
                leases,
                lease_remaining,
                auth: self.applier.auth().clone(),
            };
            self.snapshots.start(&order, state).await;
        }
        if let Some(seq) = out.release_wal_before {
            for stripe in &self.stripes {
                let _ = stripe.send_async(StripeMsg::ReleaseBefore { seq }).await;
            }
            crate::wal::retire::release(&mut self.retired_stripes, seq);
        }
    }

    fn answer(&mut self, done: Vec<(DoneWaiter, Result<()>)>) {
        for (waiter, result) in done {
            match waiter {
                DoneWaiter::Notify(home, tx) => self.outbox.push(home, Delivery::Read(tx, result)),
                DoneWaiter::Range(read) => read.dispatch(result, &self.status, &self.shards, &mut self.outbox),
            }
        }
    }

    /// Applies one committed entry and answers its clients.
    async fn apply(&mut self, entry: ToApply<WriteWaiter>) {
        let ToApply { index, mut requests, auth, waiters, members, conf_change, .. } = entry;
        if let Some(members) = &members {
            set_members(&self.membership, &self.status, members);
        }
        self.applier.set_index(index);
        let results = self.apply_requests(&mut requests, &auth).await;
        // Published before replying, so a client's next serializable read sees its write.
        self.status.publish_applied(index, self.applier.rev(), self.applier.compact_rev());
        self.core.applied(index, requests.len() as u64, self.status.held_bytes());
        for (waiter, result) in waiters.into_iter().zip(results) {
            if let Some((home, tx)) = waiter {
                self.outbox.push(home, Delivery::Write(tx, result));
            }
        }
        if let Some(outcome) = conf_change {
            self.conf_changed(outcome, members);
        }
    }

    /// Answers an applied conf change's proposer (etcd answers with the member list after it);
    /// a member that applied its own removal stops, as etcd's.
    fn conf_changed(&mut self, outcome: crate::raft::proposals::ConfOutcome<WriteWaiter>, members: Option<crate::cluster::Cluster>) {
        if let Some((home, tx)) = outcome.waiter {
            let list = members.map_or_else(Vec::new, |c| c.sorted_members());
            let answer = outcome.result.map(|()| Response::Members(None, list));
            self.outbox.push(home, Delivery::Write(tx, answer));
        }
        if outcome.removed_self && !self.removed {
            self.removed = true;
            stop_removed_member();
        }
    }

    /// Applies an entry's requests in order. Before a compaction the watch hub reads the events
    /// of every revision applied so far (this entry's included): a compaction must not remove
    /// history a watcher following the live events has not been sent (etcd notifies watchers as
    /// it writes, so they never miss one).
    async fn apply_requests(&mut self, requests: &mut [Option<Request>], auth: &[Option<AuthHeader>]) -> Vec<Result<Response>> {
        let mut results = Vec::with_capacity(requests.len());
        let mut rest = requests;
        let mut rest_auth = auth;
        while !rest.is_empty() {
            let run = rest.iter().position(|r| matches!(r, Some(Request::Compaction(_)))).unwrap_or(rest.len());
            let (now, later) = if run == 0 {
                let (done, wait) = oneshot::channel();
                let _ = self.watch.send(Applied { rev: self.applier.rev(), done: Some(done), restored: false });
                let _ = wait.await; // (an error: the hub is gone)
                rest.split_at_mut(1)
            } else {
                rest.split_at_mut(run)
            };
            let (now_auth, later_auth) = rest_auth.split_at(now.len().min(rest_auth.len()));
            results.extend(self.applier.apply_all(now, now_auth).await);
            rest = later;
            rest_auth = later_auth;
        }
        results
    }

    fn tell_watch(&self) {
        let _ = self.watch.send(Applied { rev: self.status.applied_rev(), done: None, restored: false });
    }

    fn lease_call(&mut self, call: LeaseCall) {
        let now = Instant::now();
        let lessor = self.applier.lessor();
        match call {
            LeaseCall::Renew { ids, reply } => {
                let _ = reply.send(Ok(self.renew_leases(ids)));
            }
            LeaseCall::TimeToLive { id, reply } => {
                let _ = reply.send(Ok(lessor.time_to_live(id, now)));
            }
            LeaseCall::Ids { reply } => {
                let _ = reply.send(Ok(lessor.ids()));
            }
        }
    }

    /// Renews `ids`: the TTL each is renewed to, 0 when unknown or expired.
    fn renew_leases(&mut self, ids: Vec<i64>) -> Vec<i64> {
        let now = Instant::now();
        let lessor = self.applier.lessor();
        let mut clear = Vec::new();
        let ttls = ids
            .into_iter()
            .map(|id| {
                let (ttl, must_clear) = lessor.renew(id, now).unwrap_or((0, false));
                if must_clear {
                    clear.push(LeaseCheckpoint { id, remaining_ttl: 0 });
                }
                ttl
            })
            .collect();
        if !clear.is_empty() {
            self.propose_internal(Request::LeaseCheckpoint(LeaseCheckpointRequest { checkpoints: clear }));
        }
        ttls
    }

    /// The leader revokes expired leases through raft, a bounded number per look.
    fn revoke_expired_leases(&mut self) {
        if !self.core.is_serving() {
            return;
        }
        for id in self.applier.lessor().expired(Instant::now(), crate::lease::MAX_REVOKES_PER_CHECK) {
            self.propose_internal(Request::LeaseRevoke(LeaseRevokeRequest { id }));
        }
        let due = self.applier.lessor().due_checkpoints(Instant::now(), crate::lease::MAX_CHECKPOINTS_PER_ENTRY);
        if !due.is_empty() {
            let checkpoints = due.into_iter().map(|(id, remaining_ttl)| LeaseCheckpoint { id, remaining_ttl }).collect();
            self.propose_internal(Request::LeaseCheckpoint(LeaseCheckpointRequest { checkpoints }));
        }
    }

    /// A request of the server's own (no client waits for it).
    fn propose_internal(&mut self, req: Request) {
        let (reply, _) = oneshot::channel();
        self.core.propose(req, (None, reply));
    }

    /// Step 1 of a snapshot from the leader: its files, into the staging directory, in a task
    /// (a large snapshot takes a while; raft goes on meanwhile). The outcome comes back as
    /// `fetch_done`.
    fn fetch(&mut self, order: FetchOrder) {
        let d = match Descriptor::decode(&order.data) {
            Ok(d) => d,
            Err(e) => return self.core.fetched(Err(e)),
        };
        let Some(fetcher) = self.fetcher.clone() else {
            return self.core.fetched(Err(format!("no peer transport to fetch snapshot {} (index {}) from member {:x}", d.seq, d.index, order.from)));
        };
        let (tx, dir) = (self.fetched_tx.clone(), self.snap_dir.clone());
        glommio::spawn_local(async move {
            let _ = tx.send(fetcher(order.from, d, dir).await);
        })
        .detach();
    }

    fn fetch_done(&mut self, result: std::result::Result<Manifest, String>) {
        match result {
            Ok(m) => {
                self.fetched = Some(m);
                self.core.fetched(Ok(()));
            }
            Err(e) => self.core.fetched(Err(e)),
        }
    }

    /// Step 2: the fetched files become this member's state and snapshot; returns its
    /// descriptor and member list. An error is fatal (the core stops the process): the disk holds the old
    /// snapshot or, once the manifest is written, the new one.
    async fn install(&mut self, order: &InstallOrder) -> std::result::Result<(Vec<u8>, Option<crate::cluster::Cluster>), String> {
        let fetched = self.fetched.take().ok_or("no snapshot fetched")?;
        let placement = Placement {
            seq: self.snapshots.next_seq(),
            index: order.index,
            term: order.term,
            voters: order.voters.clone(),
            learners: order.learners.clone(),
            local_id: self.membership.current().local_id,
            wal_seq_from: order.wal_seq_from,
            wal_seq_kept: order.wal_seq_kept,
        };
        let (dir, shards) = (self.snap_dir.clone(), self.shards.count());
        let (m, stores, leased) = glommio::executor()
            .spawn_blocking(move || {
                let m = install::place(&dir, &fetched, &placement)?;
                let stores = crate::snapshot::load::load_stores(&dir, &m, shards)?;
                let leased: Vec<_> = stores.iter().flat_map(crate::mvcc::store::Store::leased_keys).collect();
                Ok::<_, String>((m, stores, leased))
            })
            .await?;
        let bytes = crate::snapshot::load::segment_bytes(&self.snap_dir, &m);
        self.shards.replace_stores(stores, bytes).await.map_err(|e| e.to_string())?;
        self.applier.restore(m.rev, m.compact_rev, &m.alarms);
        self.applier.restore_auth(m.auth.clone());
        self.applier.lessor().replace(&m.leases, &m.lease_remaining);
        for (lease, key) in &leased {
            self.applier.lessor().attach(*lease, key);
        }
        self.applier.set_index(m.index);
        self.status.publish_applied(m.index, m.rev, m.compact_rev);
        let _ = self.watch.send(Applied { rev: m.rev, done: None, restored: true });
        let (dir, manifest) = (self.snap_dir.clone(), m.clone());
        glommio::executor().spawn_blocking(move || install::commit(&dir, &manifest)).await?;
        crate::log::info("installed the leader's snapshot", &[("index", m.index.to_string()), ("revision", m.rev.to_string())]);
        let members = m.members.clone();
        Ok((self.snapshots.installed(m), members))
    }

    fn snapshot_finished(&mut self, finished: Finished) {
        let result = self.snapshots.finish(finished);
        self.core.snapshot_done(result);
    }
}

/// Replaces the live member list, and publishes whether this member is a learner in it (the
/// front end's learner check reads that).
fn set_members(membership: &crate::cluster::Membership, status: &ServerStatus, members: &crate::cluster::Cluster) {
    membership.set(members.clone());
    status.publish_membership(members);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_keep_their_phase_and_drop_what_a_stall_missed() {
        let h = Duration::from_millis(100);
        let t0 = crate::shard::beat::next_beat(h, Instant::now());
        // Run late by 30 ms: the next tick is still 100 ms after the one due, not after now.
        assert_eq!(next_tick_after(t0, h, t0 + Duration::from_millis(30)), t0 + h);
        // Run 250 ms late (a stall): the ticks missed are dropped, the next is the beat after now.
        let now = t0 + Duration::from_millis(250);
        assert_eq!(next_tick_after(t0, h, now), t0 + 3 * h);
    }
}

//! Deterministic simulation of the raft core (`src/raft/core.rs`) as one member of 3 or 5, in
//! the spirit of TigerBeetle's simulator: a seeded run drives every member's core with random
//! interleavings of client writes and linearizable reads on any member, turns, ticks, WAL
//! batches becoming durable (in any order across stripes, in order within one; a slow disk
//! makes them durable late), snapshots, and a network that loses, duplicates (every message but
//! a forwarded proposal: see below), delays and reorders messages, partitions that heal, and
//! crashes with a restart from exactly what was durable (a member may stay down a while; its
//! senders often learn it is down, as a refused connection tells them, and rarely of a member
//! that is up), and membership changes through the core's API (add a learner, which then
//! starts and catches up; promote it; remove a voter, the leader included; update peer URLs,
//! sometimes to a taken one), refused or applied as etcd's checks decide.
//! A member behind the first entry the leader still holds is sent a raft snapshot: it fetches
//! the sender's durable snapshot (the data names it; the fetch fails when the sender is down or
//! holds a newer one by then, and at random), then installs it, which takes a while and may
//! crash before or after the snapshot becomes durable; the installed snapshot brings the
//! sender's member list and raft configuration (learners included) at its index.
//!
//! Checked at every step:
//! * election safety: at most one leader per term;
//! * log matching: an (index, term) pair written anywhere always holds the same entry, after
//!   the same (index - 1, term) pair (except entries of a term a member lost in a crash with
//!   the term itself, which never left it: `forget_lost_terms`);
//! * leader completeness: a new leader of term t holds every entry applied anywhere while no
//!   leader had a term of t or more;
//! * state machine safety: every member applies the same entry (term and requests) at each
//!   index, each request at one index only; nothing is applied before it and every WAL batch
//!   before it are durable on that member;
//! * every member reaches the same verdict on each conf change entry and the same member list
//!   after it; a member that applies its own removal stops for good (as does one whose
//!   messages reach a member that applied its removal: etcd's transport tells it);
//! * refusals are definite: a write refused with "no leader" or "leader changed" is never
//!   applied ("request timed out" and a crash leave it open, as in etcd);
//! * linearizable reads: a read answered on any member sees every write acknowledged, and
//!   everything a read observed, before the read was issued (real time against the model);
//! * at the end (faults stop, partitions heal, every member up, disks fast): a leader is
//!   elected, every outstanding write and read of every member is answered, every member
//!   applies everything committed and holds every write acknowledged on any member in any
//!   life (no acknowledged write lost), members behind the leader's log by installing a
//!   snapshot;
//! * an installed snapshot holds exactly the writes applied anywhere up to its index.
//!
//! `force_new_cluster_simulation` stops all members but one at a random point of a faulty run
//! and restarts that one with `--force-new-cluster` (`src/raft/force_new.rs`): it must keep
//! everything it applied up to the commit index on its disk (etcd discards what follows it),
//! be the only member, lead and commit writes, also after a restart
//! without the flag (`RAFT_SIM_FORCE_SEEDS`, default 300).
//!
//! The network never duplicates a forwarded proposal (MsgPropose): the leader would append it
//! twice and apply the write twice, as etcd would; a transport over one gRPC stream per peer
//! does not duplicate.
//!
//! `RAFT_SIM_SEEDS=n` seeds (default 3000, 35-50 s in a debug build) from `RAFT_SIM_FIRST_SEED` (default 1); a long run:
//! `RAFT_SIM_SEEDS=100000 cargo test --release --test raft_sim_cluster`. `RAFT_SIM_SEED=s`
//! replays one seed, `RAFT_SIM_TRACE=1` prints its steps.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use ballast::error::Error;
use ballast::cluster::Cluster;
use ballast::raft::conf_change::MemberChange;
use ballast::raft::core::{Core, CoreConfig, FetchOrder, InstallOrder, CATCH_UP_ENTRIES};
use ballast::raft::proposals::ToApply;
use ballast::raft::snapshots::SnapshotOrder;
use ballast::wal::record::Batch;
use raft::eraftpb::{Message, MessageType};

#[path = "common/rng.rs"]
mod rng;
#[path = "common/sim.rs"]
mod sim;
use sim::{env_u64, put, recover, snap_point, tag_of};
use rng::Rng;

const STEPS_PER_SEED: usize = 1500;
const HEAL_ROUNDS_MAX: usize = 600;
const ELECTION_TICKS: usize = 10;
const REQUEST_TIMEOUT_TICKS: u64 = 40;
/// Member slots beyond the initial members, for members added at runtime.
const SPARE_SLOTS: u64 = 2;
/// One step in this many proposes a membership change.
const MEMBER_CHANGE_ONE_IN: u64 = 150;

/// A member's applied state.
#[derive(Clone, Default)]
struct Model {
    index: u64,
    tags: HashSet<u64>,
}

#[derive(Debug)]
struct Read {
    /// The highest index any client had observed when the read was issued.
    observed_at_issue: u64,
}

type Disk = sim::Disk<Model>;

struct Node {
    id: u64,
    /// None while down.
    core: Option<Core<u64, Read>>,
    stripes: Vec<VecDeque<Batch>>,
    disk: Disk,
    model: Model,
    running_snapshot: Option<(SnapshotOrder, Model)>,
    /// A raft snapshot from the leader being fetched, and the state fetched for it.
    fetching: Option<FetchOrder>,
    fetched: Option<(Model, Cluster)>,
    /// A fetched snapshot being installed.
    installing: Option<InstallOrder>,
    durable_prefix: u64,
    written_seq: u64,
    durable_above_prefix: HashSet<u64>,
    batch_of_index: HashMap<u64, u64>,
    /// This life's raft log as written: index → term; entries from `log_first` on.
    log: BTreeMap<u64, u64>,
    log_first: u64,
    /// Writes and reads of this life not yet answered.
    unanswered: HashSet<u64>,
    reads_waiting: usize,
    slow_disk: bool,
    down_steps: u64,
    boots: u64,
    /// Added to the cluster (initial members are); a slot not yet added is never up.
    born: bool,
    /// Stopped for good: it applied its own removal.
    removed: bool,
    /// A leader that applied its own removal: it runs on until a peer that applied it too
    /// tells it (etcd's removed leader stops a second later, its followers having heard the
    /// commit meanwhile; stopping at once could leave them waiting for its vote).
    removing: bool,
    /// The next boot is with `--force-new-cluster`.
    force_next_boot: bool,
    /// Forcing a new cluster was refused: this member's log removes it.
    force_refused: bool,
    /// The term of the hard state its last boot recovered.
    recovered_term: u64,
}

struct World {
    rng: Rng,
    trace: bool,
    stripes: usize,
    snapshot_count: u64,
    catch_up_entries: u64,
    /// The initial members (voters), and every slot's id (initial members, then spares).
    initial: Vec<u64>,
    slots: Vec<u64>,
    nodes: Vec<Node>,
    network: Vec<Message>,
    /// Members cut off from the others (one side of a partition), and the steps it lasts.
    partition: Option<(HashSet<u64>, u64)>,
    faults: bool,
    drop_percent: u64,
    dup_percent: u64,
    // ---- the checks' state ----
    /// Term → its leader.
    leaders: HashMap<u64, u64>,
    max_leader_term: u64,
    /// (index, term) → (entry hash, term before it, the members that wrote it as a bit set).
    entries: HashMap<(u64, u64), (u64, Option<u64>, u64)>,
    /// Index → (term, requests, the highest leader term when first applied).
    applied: BTreeMap<u64, (u64, Vec<u64>, u64)>,
    tag_index: HashMap<u64, u64>,
    /// Writes refused for certain: never to be applied.
    refused: HashSet<u64>,
    acked: u64,
    acked_tags: Vec<u64>,
    reads_ok: u64,
    /// The highest index any client observed (an acknowledged write's, a read's state).
    observed: u64,
    next_tag: u64,
    boots: u64,
    installs: u64,
    /// Membership changes proposed (their tags), and per conf change entry the verdict and
    /// member list every member must reach.
    member_tags: HashSet<u64>,
    conf_verdicts: HashMap<u64, String>,
    conf_applied: u64,
    conf_refused_at_commit: u64,
    orphaned_by_removal: bool,
}

/// A snapshot's descriptor: the member whose disk holds it, and its index.
fn descriptor(member: u64, index: u64) -> Vec<u8> {
    format!("{member}:{index}").into_bytes()
}

fn sorted(ids: &[u64]) -> Vec<u64> {
    let mut ids = ids.to_vec();
    ids.sort_unstable();
    ids
}

fn hash(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3))
}

impl Node {
    fn new(id: u64, stripes: usize) -> Node {
        Node {
            id,
            core: None,
            stripes: (0..stripes).map(|_| VecDeque::new()).collect(),
            disk: Disk::default(),
            model: Model::default(),
            running_snapshot: None,
            fetching: None,
            fetched: None,
            installing: None,
            durable_prefix: 0,
            written_seq: 0,
            durable_above_prefix: HashSet::new(),
            batch_of_index: HashMap::new(),
            log: BTreeMap::new(),
            log_first: 1,
            unanswered: HashSet::new(),
            reads_waiting: 0,
            slow_disk: false,
            down_steps: 0,
            boots: 0,
            born: true,
            removed: false,
            removing: false,
            force_next_boot: false,
            force_refused: false,
            recovered_term: 0,
        }
    }

    /// Starts from the disk: the snapshot's state, then the WAL after it.
    /// `initial`: the initial members, whose configuration a member without a snapshot starts
    /// from (a member added later too: it replays the log from the start, its own addition
    /// included).
    fn boot(&mut self, world_boots: u64, initial: &[u64], (snapshot_count, catch_up_entries): (u64, u64)) {
        let stripes = self.stripes.len();
        let (rec, disk) = recover(std::mem::take(&mut self.disk), stripes);
        self.disk = disk;
        self.recovered_term = rec.hard_state.term;
        let point = self.disk.snapshot.as_ref().map(|(o, _)| snap_point(o, descriptor(self.id, o.index)));
        let cfg = CoreConfig {
            id: self.id,
            cluster: sim::cluster(initial, self.id),
            strict_reconfig_check: true,
            election_ticks: ELECTION_TICKS,
            randomized_election: false,
            stripes,
            snapshot_count,
            first_proposal_id: (self.id << 56) | (world_boots << 40),
            request_timeout_ticks: REQUEST_TIMEOUT_TICKS,
            catch_up_entries,
            force_new_cluster: std::mem::take(&mut self.force_next_boot),
            quiet_snapshot_ticks: 50,
        };
        let core = Core::new(&cfg, &rec, point.as_ref());
        if let Err(why) = &core {
            // A member whose durable log commits its own removal (not applied yet when it was
            // picked) cannot force a new cluster; it stays down.
            if cfg.force_new_cluster && why.contains("is not a member of its cluster any more") {
                self.force_refused = true;
                self.removed = true;
                return;
            }
        }
        self.core = Some(core.expect("core starts"));
        self.model = self.disk.snapshot.as_ref().map_or_else(Model::default, |(_, m)| m.clone());
        self.stripes.iter_mut().for_each(VecDeque::clear);
        self.running_snapshot = None;
        self.fetching = None;
        self.fetched = None;
        self.installing = None;
        self.durable_prefix = rec.last_seq;
        self.written_seq = rec.last_seq;
        self.durable_above_prefix.clear();
        self.batch_of_index.clear();
        self.log_first = point.as_ref().map_or(1, |p| p.index + 1);
        self.log = rec.entries.iter().filter(|e| e.index >= self.log_first).map(|e| (e.index, e.term)).collect();
        self.unanswered.clear();
        self.reads_waiting = 0;
        self.boots += 1;
    }

    fn core(&mut self) -> &mut Core<u64, Read> {
        self.core.as_mut().expect("a member that is up")
    }

    fn is_up(&self) -> bool {
        self.core.is_some()
    }
}

impl World {
    fn new(seed: u64, trace: bool) -> World {
        let mut rng = Rng(seed);
        let members = if rng.chance(30) { 5 } else { 3 };
        let stripes = 1 + rng.below(3) as usize;
        // Frequent snapshots in half the seeds: leaders' logs then start late.
        let snapshot_count = if rng.chance(50) { 2 + rng.below(20) } else { 10 + rng.below(200) };
        // Fewer entries kept for followers than etcd's 5000 (in most seeds), so followers fall
        // behind the leader's log and install snapshots often.
        let catch_up_entries = if rng.chance(20) { CATCH_UP_ENTRIES } else { rng.below(50) };
        let initial: Vec<u64> = (1..=members).collect();
        let slots: Vec<u64> = (1..=members + SPARE_SLOTS).collect();
        let drop_percent = rng.below(15);
        let dup_percent = rng.below(10);
        let mut nodes: Vec<Node> = slots.iter().map(|&id| Node::new(id, stripes)).collect();
        for (i, n) in nodes.iter_mut().enumerate() {
            if n.id <= members {
                n.boot(i as u64 + 1, &initial, (snapshot_count, catch_up_entries));
            } else {
                n.born = false;
            }
        }
        World {
            rng,
            trace,
            stripes,
            snapshot_count,
            catch_up_entries,
            boots: members,
            initial,
            slots,
            nodes,
            network: Vec::new(),
            partition: None,
            faults: true,
            drop_percent,
            dup_percent,
            leaders: HashMap::new(),
            max_leader_term: 0,
            entries: HashMap::new(),
            applied: BTreeMap::new(),
            tag_index: HashMap::new(),
            refused: HashSet::new(),
            acked: 0,
            acked_tags: Vec::new(),
            reads_ok: 0,
            observed: 0,
            next_tag: 1,
            installs: 0,
            member_tags: HashSet::new(),
            conf_verdicts: HashMap::new(),
            conf_applied: 0,
            conf_refused_at_commit: 0,
            orphaned_by_removal: false,
        }
    }

    fn log(&self, what: impl FnOnce() -> String) {
        if self.trace {
            eprintln!("{}", what());
        }
    }

    fn random_up(&mut self) -> Option<usize> {
        let up: Vec<usize> = (0..self.nodes.len()).filter(|&i| self.nodes[i].is_up()).collect();
        (!up.is_empty()).then(|| up[self.rng.below(up.len() as u64) as usize])
    }

    fn step(&mut self) {
        for i in 0..self.nodes.len() {
            if !self.nodes[i].is_up() && self.nodes[i].born && !self.nodes[i].removed {
                self.nodes[i].down_steps = self.nodes[i].down_steps.saturating_sub(1);
                if self.nodes[i].down_steps == 0 {
                    self.restart(i);
                }
            }
        }
        if let Some((_, left)) = &mut self.partition {
            *left = left.saturating_sub(1);
            if *left == 0 {
                self.log(|| "partition heals".into());
                self.partition = None;
            }
        }
        if self.rng.below(MEMBER_CHANGE_ONE_IN) == 0 {
            return self.member_change();
        }
        let roll = self.rng.below(100);
        if roll >= 93 {
            if self.rng.chance(20) {
                self.fault(roll);
            }
            return;
        }
        if roll < 25 {
            for _ in 0..3 {
                self.deliver_one();
            }
            return;
        }
        if roll < 30 {
            return self.tick_all();
        }
        let Some(at) = self.random_up() else { return };
        match roll {
            30..=44 => {
                for _ in 0..=self.rng.below(2) {
                    self.propose(at);
                }
            }
            45..=49 => self.read(at),
            50..=69 => self.make_durable(at),
            70..=89 => self.turn(at),
            _ => match self.rng.below(3) {
                0 => self.finish_snapshot(at),
                1 => self.finish_fetch(at),
                _ => self.finish_install(at),
            },
        }
    }

    fn fault(&mut self, roll: u64) {
        match roll {
            93..=94 => {
                if self.partition.is_none() {
                    let side: HashSet<u64> = self.slots.iter().copied().filter(|_| self.rng.chance(40)).collect();
                    let steps = 20 + self.rng.below(300);
                    self.log(|| format!("partition {side:?} from the rest for {steps} steps"));
                    self.partition = Some((side, steps));
                }
            }
            95..=96 => {
                let i = self.rng.below(self.nodes.len() as u64) as usize;
                self.nodes[i].slow_disk = !self.nodes[i].slow_disk;
                self.log(|| format!("member {} disk slow: {}", i + 1, self.nodes[i].slow_disk));
            }
            _ => {
                if let Some(i) = self.random_up() {
                    let down = if self.rng.chance(50) { 0 } else { self.rng.below(200) };
                    self.crash(i, down);
                }
            }
        }
    }

    fn propose(&mut self, at: usize) {
        let tag = self.next_tag;
        self.next_tag += 1;
        self.log(|| format!("{}: propose {tag}", at + 1));
        self.nodes[at].unanswered.insert(tag);
        self.nodes[at].core().propose(put(tag), tag);
        self.carry_out(at);
    }

    /// A random membership change, proposed on a random member (mostly the leader).
    fn member_change(&mut self) {
        let leader = self.nodes.iter().position(|n| n.core.as_ref().is_some_and(|c| c.is_leader()));
        let Some(at) = leader.filter(|_| self.rng.chance(70)).or_else(|| self.random_up()) else { return };
        let members = self.nodes[at].core.as_ref().expect("up").members().clone();
        let pick = |rng: &mut Rng, ids: &[u64]| (!ids.is_empty()).then(|| ids[rng.below(ids.len() as u64) as usize]);
        let ids: Vec<u64> = members.members.iter().map(|m| m.id).collect();
        let change = match self.rng.below(100) {
            0..=34 => {
                let unborn: Vec<u64> = self.nodes.iter().filter(|n| !n.born).map(|n| n.id).collect();
                let Some(id) = pick(&mut self.rng, &unborn) else { return };
                // Added as etcd's MemberAdd adds: no name until it publishes one (unstarted).
                let member = ballast::cluster::Member { name: String::new(), ..sim::member(id, true) };
                MemberChange::Add { member }
            }
            35..=59 => {
                let Some(id) = pick(&mut self.rng, &members.learners()) else { return };
                MemberChange::Promote { id }
            }
            60..=89 => {
                let target = match leader {
                    Some(l) if self.rng.chance(40) => Some(self.nodes[l].id),
                    _ => pick(&mut self.rng, &ids),
                };
                let Some(id) = target else { return };
                MemberChange::Remove { id }
            }
            _ => {
                let Some(id) = pick(&mut self.rng, &ids) else { return };
                // Sometimes another member's URL: refused at commit ("Peer URLs already exists").
                let url = match pick(&mut self.rng, &ids) {
                    Some(other) if self.rng.chance(30) => format!("http://m{other}:2380"),
                    _ => format!("http://m{id}-{}:2380", self.next_tag),
                };
                MemberChange::Update { id, peer_urls: vec![url] }
            }
        };
        let tag = self.next_tag;
        self.next_tag += 1;
        self.log(|| format!("{}: member change {tag}: {change:?}", at + 1));
        self.member_tags.insert(tag);
        self.nodes[at].unanswered.insert(tag);
        self.nodes[at].core().propose_member_change(change, tag);
        self.carry_out(at);
    }

    fn read(&mut self, at: usize) {
        let r = Read { observed_at_issue: self.observed };
        self.log(|| format!("{}: read {r:?}", at + 1));
        self.nodes[at].reads_waiting += 1;
        self.nodes[at].core().read(r);
    }

    /// A heartbeat interval passes; each member's clock misses it at random
    /// (the election timeouts' jitter: the cores' own is off, to replay a seed exactly).
    fn tick_all(&mut self) {
        self.log(|| "tick".into());
        for i in 0..self.nodes.len() {
            if self.nodes[i].is_up() && !self.rng.chance(30) {
                self.nodes[i].core().tick();
                self.carry_out(i);
            }
        }
    }

    /// The front batch of a random stripe reaches the disk (on a slow disk, rarely).
    fn make_durable(&mut self, at: usize) {
        if self.nodes[at].slow_disk && self.faults && !self.rng.chance(10) {
            return;
        }
        let busy: Vec<usize> = (0..self.stripes).filter(|&s| !self.nodes[at].stripes[s].is_empty()).collect();
        if busy.is_empty() {
            return;
        }
        let s = busy[self.rng.below(busy.len() as u64) as usize];
        let node = &mut self.nodes[at];
        let batch = node.stripes[s].pop_front().expect("busy stripe");
        if self.trace {
            eprintln!("{}: durable batch {}", at + 1, batch.seq);
        }
        node.durable_above_prefix.insert(batch.seq);
        while node.durable_above_prefix.remove(&(node.durable_prefix + 1)) {
            node.durable_prefix += 1;
        }
        node.core().persisted(batch.seq);
        node.disk.batches.insert(batch.seq, batch);
    }

    fn turn(&mut self, at: usize) {
        self.nodes[at].core().advance();
        self.carry_out(at);
        if !self.nodes[at].is_up() {
            return; // removed: it stopped
        }
        self.nodes[at].core().end_turn();
        self.carry_out(at);
    }

    /// Carries out a member's output, then checks election safety and leader completeness.
    fn carry_out(&mut self, at: usize) {
        let mut out = self.nodes[at].core().take_output();
        // raft-rs walks its peers in a HashMap's order, which differs between runs: sorted
        // (stably: each peer's messages keep their order), a seed replays exactly.
        out.messages.sort_by_key(|m| m.to);
        for m in out.messages {
            self.send(m);
        }
        for (tag, e) in out.refused {
            self.log(|| format!("{}: refused {tag}: {e:?}", at + 1));
            assert!(self.nodes[at].unanswered.remove(&tag), "proposal {tag} answered twice");
            if self.member_tags.contains(&tag) {
                // etcd's checks before proposing, or no leader, or a timeout (ProposalDeadline:
                // it waited for a leader all along, never proposed).
                assert!(
                    matches!(
                        e,
                        Error::NoLeader
                            | Error::ProposalDeadline
                            | Error::Stopped
                            | Error::Timeout
                            | Error::TimeoutDueToLeaderFail
                            | Error::NotLeader
                            | Error::LearnerNotReady
                            | Error::MemberNotEnoughStarted
                            | Error::Unhealthy
                    ),
                    "member change {tag} refused with {e:?}"
                );
                continue;
            }
            match e {
                // Stopped: refused by a member that applied its own removal. ProposalDeadline:
                // timed out waiting for a leader, never proposed.
                Error::NoLeader | Error::LeaderChanged | Error::Stopped | Error::ProposalDeadline => {
                    assert!(!self.tag_index.contains_key(&tag), "write {tag} refused with {e:?} but applied");
                    self.refused.insert(tag);
                }
                // A timeout (either wording) says nothing of the outcome: the write may apply later.
                Error::Timeout | Error::TimeoutDueToLeaderFail => {}
                other => panic!("write {tag} refused with {other:?}"),
            }
        }
        for w in out.wal {
            self.write(at, w.stripe, w.batch);
        }
        for entry in out.apply {
            self.apply(at, entry);
        }
        if self.nodes[at].removed {
            return self.stop_removed(at);
        }
        let more = self.nodes[at].core().take_output();
        assert!(more.wal.is_empty() && more.apply.is_empty() && more.snapshot.is_none() && more.messages.is_empty());
        assert!(more.refused.is_empty());
        for (r, result) in out.done.into_iter().chain(more.done) {
            self.answered(at, r, result);
        }
        if let Some(order) = out.snapshot {
            self.log(|| format!("{}: snapshot ordered {order:?}", at + 1));
            assert_eq!(order.index, self.nodes[at].model.index, "a snapshot is cut at the applied state");
            assert!(self.nodes[at].running_snapshot.is_none(), "two snapshots at once");
            self.nodes[at].running_snapshot = Some((order, self.nodes[at].model.clone()));
        }
        if let Some(order) = out.fetch {
            self.log(|| format!("{}: fetch ordered {order:?}", at + 1));
            assert!(self.nodes[at].fetching.is_none(), "two fetches at once");
            self.nodes[at].fetching = Some(order);
        }
        if let Some(order) = out.install {
            self.log(|| format!("{}: install ordered {order:?}", at + 1));
            let node = &mut self.nodes[at];
            assert!(node.installing.is_none() && node.running_snapshot.is_none(), "an install beside another snapshot");
            let (fetched, _) = node.fetched.as_ref().expect("an install of a snapshot fetched");
            assert_eq!(fetched.index, order.index, "an install of another snapshot than fetched");
            assert!(order.index > node.model.index, "an install behind the applied state");
            node.installing = Some(order);
        }
        if let Some(seq) = out.release_wal_before {
            let kept = self.nodes[at].disk.snapshot.as_ref().expect("a release follows a durable snapshot");
            assert_eq!(seq, kept.0.release_wal_before());
            self.nodes[at].disk.batches.retain(|&s, _| s >= seq);
        }
        self.check_leader(at);
    }

    /// Election safety and leader completeness.
    fn check_leader(&mut self, at: usize) {
        let core = self.nodes[at].core.as_ref().expect("up");
        if !core.is_leader() {
            return;
        }
        let (term, _, _) = core.progress();
        let id = self.nodes[at].id;
        let held = *self.leaders.entry(term).or_insert(id);
        assert_eq!(held, id, "two leaders in term {term}: {held} and {id}");
        if term <= self.max_leader_term {
            return;
        }
        self.log(|| format!("{}: leader of term {term}", at + 1));
        self.max_leader_term = term;
        let node = &self.nodes[at];
        let core = node.core.as_ref().expect("up");
        for (&index, &(entry_term, _, leader_term)) in self.applied.range(node.model.index + 1..) {
            if leader_term < term {
                assert_eq!(core.log_term(index), Some(entry_term), "leader {id} of term {term} lacks entry {index} (term {entry_term}), applied before");
            }
        }
    }

    fn write(&mut self, at: usize, stripe: usize, batch: Batch) {
        let node = &mut self.nodes[at];
        let seq = batch.seq;
        assert_eq!(seq, node.written_seq + 1, "batches are numbered without gaps");
        assert_eq!(stripe, (seq % self.stripes as u64) as usize);
        assert!(node.stripes[stripe].is_empty(), "two batches in flight on stripe {stripe}");
        node.written_seq = seq;
        if let Some(first) = batch.entries.first() {
            node.log.split_off(&first.index);
        }
        if self.trace {
            let span = batch.entries.first().map(|f| (f.index, batch.entries.last().map_or(0, |l| l.index)));
            eprintln!("{}: write batch {seq} on stripe {stripe}: entries {span:?}, {:?}", at + 1, batch.hard_state);
        }
        for e in &batch.entries {
            node.batch_of_index.insert(e.index, seq);
            let before = node.log.get(&(e.index - 1)).copied();
            node.log.insert(e.index, e.term);
            let key = (e.index, e.term);
            let value = (hash(&e.data), before, 0);
            let held = self.entries.entry(key).or_insert(value);
            assert_eq!(held.0, value.0, "entry ({}, term {}) written with two contents", e.index, e.term);
            if let (Some(a), Some(b)) = (held.1, value.1) {
                assert_eq!(a, b, "entry ({}, term {}) follows term {a} on one member and {b} on another", e.index, e.term);
            }
            held.2 |= 1 << at;
        }
        node.stripes[stripe].push_back(batch);
    }

    fn apply(&mut self, at: usize, entry: ToApply<u64>) {
        let node = &mut self.nodes[at];
        if node.removed {
            return; // it stopped at its own removal: nothing after it is applied
        }
        assert_eq!(entry.index, node.model.index + 1, "member {} applied {} after {}", at + 1, entry.index, node.model.index);
        if let Some(&seq) = node.batch_of_index.get(&entry.index) {
            assert!(seq <= node.durable_prefix, "entry {} applied before batch {seq} (and all before it) is durable", entry.index);
        }
        if entry.conf_change.is_some() {
            return self.apply_conf_change(at, entry);
        }
        let tags: Vec<u64> = entry.requests.iter().map(tag_of).collect();
        let (term, held_tags, _) = self.applied.entry(entry.index).or_insert((entry.term, tags.clone(), self.max_leader_term));
        assert_eq!((*term, &*held_tags), (entry.term, &tags), "member {} applied another entry at index {}", at + 1, entry.index);
        for (&tag, waiter) in tags.iter().zip(&entry.waiters) {
            assert!(!self.refused.contains(&tag), "write {tag} applied after a definite refusal");
            let index = *self.tag_index.entry(tag).or_insert(entry.index);
            assert_eq!(index, entry.index, "write {tag} applied at index {index} and {}", entry.index);
            assert!(node.model.tags.insert(tag), "write {tag} applied twice on member {}", at + 1);
            if let Some(w) = waiter {
                assert_eq!(*w, tag, "a waiter answered with another request's result");
                assert!(node.unanswered.remove(w), "write {w} answered twice");
                self.acked += 1;
                self.acked_tags.push(tag);
                self.observed = self.observed.max(entry.index);
            }
        }
        node.model.index = entry.index;
        if self.trace {
            eprintln!("{}: apply {} (term {}) {tags:?}", at + 1, entry.index, entry.term);
        }
        node.core().applied(entry.index, entry.requests.len() as u64, 0);
    }

    /// A conf change entry: every member reaches the same verdict and member list; its
    /// proposer is answered; an added member starts; a removed one stops.
    fn apply_conf_change(&mut self, at: usize, entry: ToApply<u64>) {
        let outcome = entry.conf_change.expect("a conf change");
        let members = entry.members.as_ref().map(|c| (c.sorted_members(), c.removed.clone()));
        let verdict = format!("{:?} {members:?}", outcome.result);
        let (term, tags, _) = self.applied.entry(entry.index).or_insert((entry.term, Vec::new(), self.max_leader_term));
        assert_eq!((*term, tags.len()), (entry.term, 0), "member {} applied another entry at index {}", at + 1, entry.index);
        let held = self.conf_verdicts.entry(entry.index).or_insert_with(|| verdict.clone());
        assert_eq!(*held, verdict, "member {} reached another verdict on the conf change at index {}", at + 1, entry.index);
        self.log(|| format!("{}: apply conf change {} (term {}): {verdict}", at + 1, entry.index, entry.term));
        if let Some(tag) = outcome.waiter {
            assert!(self.member_tags.contains(&tag), "a conf change answered write {tag}");
            assert!(self.nodes[at].unanswered.remove(&tag), "member change {tag} answered twice");
            if outcome.result.is_ok() {
                self.conf_applied += 1;
            } else {
                self.conf_refused_at_commit += 1;
            }
        }
        if let Some((list, _)) = &members {
            for m in list {
                let slot = (m.id - 1) as usize;
                if !self.nodes[slot].born {
                    self.nodes[slot].born = true;
                    self.nodes[slot].down_steps = 1 + self.rng.below(50); // the admin starts it a little later
                }
            }
        }
        let node = &mut self.nodes[at];
        node.model.index = entry.index;
        node.core().applied(entry.index, 0, 0);
        if outcome.removed_self {
            assert_eq!(members.as_ref().map(|(_, r)| r.contains(&node.id)), Some(true));
            if node.core.as_ref().is_some_and(|c| c.is_leader()) {
                node.removing = true;
            } else {
                node.removed = true;
            }
        }
    }

    /// A member that applied its own removal (or learnt of it from a peer) stops for good;
    /// its clients' outcomes stay open, as after a crash.
    fn stop_removed(&mut self, at: usize) {
        self.log(|| format!("{}: removed from the cluster: stops", at + 1));
        let node = &mut self.nodes[at];
        node.removed = true;
        node.core = None;
        node.stripes.iter_mut().for_each(VecDeque::clear);
        node.unanswered.clear();
        node.reads_waiting = 0;
    }

    fn answered(&mut self, at: usize, r: Read, result: ballast::error::Result<()>) {
        self.log(|| format!("{}: read {r:?} answered {result:?} at {}", at + 1, self.nodes[at].model.index));
        self.nodes[at].reads_waiting -= 1;
        match result {
            Ok(()) => {
                let index = self.nodes[at].model.index;
                assert!(index >= r.observed_at_issue, "a read on member {} saw index {index}, but index {} was observed before it was issued", at + 1, r.observed_at_issue);
                self.observed = self.observed.max(index);
                self.reads_ok += 1;
            }
            Err(Error::Timeout | Error::LeaderChanged | Error::Stopped) => {}
            Err(other) => panic!("read answered {other:?}"),
        }
    }

    fn cut(&self, from: u64, to: u64) -> bool {
        self.partition.as_ref().is_some_and(|(side, _)| side.contains(&from) != side.contains(&to))
    }

    fn send(&mut self, m: Message) {
        assert!(self.slots.contains(&m.to) && m.to != m.from, "a message to {} from {}", m.to, m.from);
        if self.faults && self.rng.chance(self.drop_percent) {
            return;
        }
        if self.faults && m.get_msg_type() != MessageType::MsgPropose && self.rng.chance(self.dup_percent) {
            self.network.push(m.clone());
        }
        self.network.push(m);
    }

    /// A random message in flight (so: reordered, delayed) reaches its member, unless the
    /// partition or a crash is in the way.
    fn deliver_one(&mut self) {
        if self.network.is_empty() {
            return;
        }
        let i = self.rng.below(self.network.len() as u64) as usize;
        let m = self.network.swap_remove(i);
        self.deliver(m);
    }

    fn deliver(&mut self, m: Message) {
        let to = (m.to - 1) as usize;
        if self.cut(m.from, m.to) {
            return;
        }
        if !self.nodes[to].is_up() {
            // A member whose process is gone refuses its sender's connection (`peer_down`).
            self.tell_down((m.from - 1) as usize, m.to, 50);
            return;
        }
        // Now and then one that is up is reported down too (a stale URL that refuses), which
        // must change nothing but timing.
        if self.faults {
            self.tell_down(to, m.from, 1);
        }
        if self.nodes[to].core.as_ref().expect("up").members().removed.contains(&m.from) {
            // etcd's transport answers a removed member so, and it stops.
            let from = (m.from - 1) as usize;
            if self.nodes[from].is_up() {
                self.stop_removed(from);
            }
            self.nodes[from].removed = true;
            return;
        }
        self.nodes[to].core().step(m).expect("raft accepts a peer's message");
        self.carry_out(to);
    }

    /// With `percent` chance, member `at` (if up) learns that `peer`'s URL refuses connections.
    fn tell_down(&mut self, at: usize, peer: u64, percent: u64) {
        if self.nodes[at].is_up() && self.rng.chance(percent) {
            if self.nodes[at].core().peer_down(peer) {
                self.log(|| format!("{}: its leader {peer} is down", at + 1));
            }
            self.carry_out(at);
        }
    }

    fn finish_snapshot(&mut self, at: usize) {
        let Some(running) = self.nodes[at].running_snapshot.take() else { return };
        if self.rng.chance(10) {
            self.nodes[at].core().snapshot_done(Err("simulated failure".into()));
            return self.carry_out(at);
        }
        self.log(|| format!("{}: snapshot durable at index {}", at + 1, running.0.index));
        let data = descriptor(self.nodes[at].id, running.0.index);
        self.nodes[at].disk.snapshot = Some(running);
        if self.faults && self.rng.chance(10) {
            self.crash(at, 0); // after the manifest, before the core heard of it
        } else {
            self.nodes[at].core().snapshot_done(Ok(data));
            self.carry_out(at);
        }
    }

    /// The fetch of a leader's snapshot ends: the member the descriptor names must be up and
    /// still hold that snapshot durable (and the network may fail at random).
    fn finish_fetch(&mut self, at: usize) {
        let Some(order) = self.nodes[at].fetching.take() else { return };
        let text = String::from_utf8(order.data.clone()).expect("a descriptor");
        let (member, index) = text.split_once(':').map(|(m, i)| (m.parse::<u64>().unwrap(), i.parse::<u64>().unwrap())).expect("a descriptor");
        assert_eq!(index, order.index, "a descriptor of another snapshot");
        let source = &self.nodes[(member - 1) as usize];
        let held = source.disk.snapshot.as_ref().filter(|(o, _)| o.index == index && source.is_up()).map(|(o, m)| (m.clone(), o.members.clone()));
        let lost = self.faults && (self.rng.chance(10) || self.cut(member, self.nodes[at].id));
        match held.filter(|_| !lost) {
            Some((model, members)) => {
                self.log(|| format!("{}: fetched snapshot {index} from {member}", at + 1));
                self.check_snapshot(&model);
                self.nodes[at].fetched = Some((model, members));
                self.nodes[at].core().fetched(Ok(()));
            }
            None => {
                self.log(|| format!("{}: fetch of snapshot {index} from {member} failed", at + 1));
                self.nodes[at].core().fetched(Err("simulated failure".into()));
            }
        }
        self.carry_out(at);
    }

    /// The install ends: the snapshot becomes durable (the manifest, written last) and the
    /// state is replaced; a crash comes before or after the manifest.
    fn finish_install(&mut self, at: usize) {
        let Some(order) = self.nodes[at].installing.take() else { return };
        if self.faults && self.rng.chance(10) {
            let down = self.rng.below(20);
            return self.crash(at, down); // before the manifest: the old state
        }
        let (model, mut members) = self.nodes[at].fetched.take().expect("fetched");
        members.local_id = self.nodes[at].id;
        self.log(|| format!("{}: installed snapshot {}", at + 1, order.index));
        self.installs += 1;
        let snap = SnapshotOrder {
            index: order.index,
            term: order.term,
            wal_seq_from: order.wal_seq_from,
            wal_seq_kept: order.wal_seq_kept,
            full: true,
            voters: order.voters.clone(),
            learners: order.learners.clone(),
            members: members.clone(),
        };
        // The same members; raft's voters are listed as voters. (A learner whose peer URLs were
        // updated is listed as a voter, as etcd 3.5 lists it, though raft keeps it a learner:
        // `conf_change::apply`.)
        let listed: Vec<u64> = members.members.iter().map(|m| m.id).collect();
        let in_conf: Vec<u64> = order.voters.iter().chain(&order.learners).copied().collect();
        assert_eq!(sorted(&in_conf), sorted(&listed), "the snapshot's raft configuration is not its member list's");
        let listed_voters = members.voters();
        assert!(order.voters.iter().all(|v| listed_voters.contains(v)), "the snapshot's raft voters {:?} are not all voters in its member list", order.voters);
        self.nodes[at].disk.snapshot = Some((snap, model.clone()));
        if self.faults && self.rng.chance(10) {
            return self.crash(at, 0); // after the manifest, before the core heard of it
        }
        let node = &mut self.nodes[at];
        node.model = model;
        node.log.clear();
        node.log_first = order.index + 1;
        node.batch_of_index.clear();
        let data = descriptor(node.id, order.index);
        node.core().installed(Ok((data, Some(members.clone()))));
        assert_eq!(node.core().members(), &members, "member {} installed another member list", at + 1);
        self.carry_out(at);
    }

    /// A snapshot's state is exactly the writes applied anywhere at or below its index.
    fn check_snapshot(&self, model: &Model) {
        let expected: HashSet<u64> = self.applied.range(..=model.index).flat_map(|(_, (_, tags, _))| tags.iter().copied()).collect();
        assert_eq!(expected, model.tags, "the snapshot at index {} does not hold exactly the writes applied up to it", model.index);
    }

    /// The process dies: each batch in flight is written or lost; its clients' outcomes stay
    /// open. It restarts after `down_steps` steps (at once when 0).
    fn crash(&mut self, at: usize, down_steps: u64) {
        let mut written = Vec::new();
        for stripe in &mut self.nodes[at].stripes {
            written.extend(stripe.drain(..));
        }
        for batch in written {
            if self.rng.chance(50) {
                self.nodes[at].disk.batches.insert(batch.seq, batch);
            }
        }
        self.log(|| format!("{}: crash, down {down_steps} steps", at + 1));
        self.nodes[at].core = None;
        if self.nodes[at].removing {
            self.nodes[at].removed = true; // it was stopping anyway
            return;
        }
        self.nodes[at].down_steps = down_steps;
        if down_steps == 0 {
            self.restart(at);
        }
    }

    fn restart(&mut self, at: usize) {
        self.boots += 1;
        self.log(|| format!("{}: restart from {} batches", at + 1, self.nodes[at].disk.batches.len()));
        let (boots, initial, settings) = (self.boots, self.initial.clone(), (self.snapshot_count, self.catch_up_entries));
        self.nodes[at].boot(boots, &initial, settings);
        self.forget_lost_terms(at);
    }

    /// Entries of a term this member wrote but lost in a crash with the term itself (a single
    /// voter leads as it campaigns; its hard state was not durable yet) may be written again
    /// with other contents when it leads that term again: none of them left the member (the
    /// core sends nothing before its term is durable), so they count as never written by it.
    fn forget_lost_terms(&mut self, at: usize) {
        let term = self.nodes[at].recovered_term;
        self.entries.retain(|&(_, t), v| {
            if t > term {
                v.2 &= !(1 << at);
            }
            v.2 != 0
        });
    }

    /// Quorum loss, then `--force-new-cluster`: every member but `survivor` stops for good,
    /// messages in flight are lost, and the survivor is killed (its batches in flight written
    /// or lost) and restarted with the flag. The dead members' history beyond what the
    /// survivor applied is gone with them, so the checks start again from the survivor's:
    /// what it applied stays (and must survive), the rest (other members' entries, leaders,
    /// refusals, acknowledgements it never applied) is forgotten. Returns the tags it applied.
    fn force_new_cluster(&mut self, survivor: usize) -> HashSet<u64> {
        for i in (0..self.nodes.len()).filter(|&i| i != survivor) {
            if self.nodes[i].is_up() {
                self.stop_removed(i);
            }
            self.nodes[i].removed = true;
        }
        self.network.clear();
        self.partition = None;
        // It dies first (its batches in flight written or lost); what it keeps is what it
        // applied up to the commit index on its disk: entries applied after a commit index
        // that never became durable are discarded with the uncommitted ones, as etcd's
        // --force-new-cluster discards what follows the WAL's commit index.
        self.crash(survivor, 1);
        self.nodes[survivor].down_steps = 0;
        let kept = self.durable_model(survivor);
        self.log(|| format!("{}: force new cluster, applied {}", survivor + 1, kept.index));
        self.applied.retain(|&i, _| i <= kept.index);
        self.tag_index.retain(|_, &mut i| i <= kept.index);
        self.entries.clear();
        self.leaders.clear();
        self.max_leader_term = 0;
        self.conf_verdicts.clear();
        self.refused.clear();
        self.acked_tags.retain(|t| kept.tags.contains(t));
        self.observed = kept.index;
        self.nodes[survivor].force_next_boot = true;
        self.restart(survivor);
        kept.tags
    }

    /// What a member that is down applied up to the commit index its disk recorded (at least
    /// its snapshot's).
    fn durable_model(&mut self, at: usize) -> Model {
        let node = &mut self.nodes[at];
        let applied = node.model.clone();
        let (rec, disk) = recover(std::mem::take(&mut node.disk), node.stripes.len());
        node.disk = disk;
        let snapshot = node.disk.snapshot.as_ref().map_or(0, |(o, _)| o.index);
        let index = rec.hard_state.commit.max(snapshot).min(applied.index);
        let tags = self.applied.range(..=index).flat_map(|(_, (_, tags, _))| tags.iter().copied()).filter(|t| applied.tags.contains(t)).collect();
        Model { index, tags }
    }

    /// Faults stop: every member up, the network whole and reliable, disks fast. Then a leader
    /// must be elected, every client answered and everything committed applied everywhere.
    fn heal(&mut self) {
        self.faults = false;
        self.partition = None;
        for i in 0..self.nodes.len() {
            self.nodes[i].slow_disk = false;
            if !self.nodes[i].is_up() && self.nodes[i].born && !self.nodes[i].removed {
                self.restart(i);
            }
        }
        for round in 0..HEAL_ROUNDS_MAX {
            for i in 0..self.nodes.len() {
                if !self.nodes[i].is_up() && self.nodes[i].born && !self.nodes[i].removed {
                    self.restart(i); // a member added meanwhile starts
                }
                if !self.nodes[i].is_up() {
                    continue;
                }
                if self.nodes[i].running_snapshot.is_some() {
                    self.finish_snapshot(i);
                }
                self.finish_fetch(i);
                self.finish_install(i);
                while self.nodes[i].stripes.iter().any(|s| !s.is_empty()) {
                    self.make_durable(i);
                }
                if self.nodes[i].is_up() {
                    self.turn(i);
                }
            }
            while let Some(m) = (!self.network.is_empty()).then(|| self.network.remove(0)) {
                self.deliver(m);
            }
            if round % 3 == 2 {
                self.tick_all();
            }
            if self.quiet() {
                return;
            }
        }
        let pending: Vec<_> = self
            .nodes
            .iter()
            .map(|n| (n.unanswered.len(), n.reads_waiting, n.model.index, n.log_first, n.log.keys().next_back().copied(), n.core.as_ref().map(|c| (c.is_leader(), c.progress()))))
            .collect();
        panic!("not quiet after {HEAL_ROUNDS_MAX} rounds: (writes, reads unanswered, applied, log first, log last, (leader?, (term, leader, commit))) per member {pending:?}");
    }

    /// A serving leader, no client waiting, and every member caught up (a member behind the
    /// leader's log by a snapshot from it).
    fn quiet(&mut self) -> bool {
        let serving = self.nodes.iter().position(|n| !n.removing && n.core.as_ref().is_some_and(|c| c.is_serving()));
        let Some(leader) = serving else { return self.orphaned() };
        let commit = self.nodes[leader].core.as_ref().expect("up").progress().2;
        let removed = self.nodes[leader].core.as_ref().expect("up").members().removed.clone();
        // Members not added yet, stopped, or removed without knowing it (a learner that never
        // hears from the leader again: etcd's would learn it when it next sends to a peer).
        self.nodes
            .iter()
            .filter(|n| n.born && !n.removed && !n.removing && !removed.contains(&n.id))
            .all(|n| n.unanswered.is_empty() && n.reads_waiting == 0 && n.model.index >= commit)
    }
}

impl World {
    /// No leader can be elected: every live member's configuration still has voters that
    /// stopped for good, too many for a quorum of the rest. It happens when a leader that
    /// removed itself stopped (or crashed) before any remaining voter learnt that the removal
    /// committed (etcd's removed leader has the same weakness: it stops a second later); the
    /// others wait for its vote. Counted, and accepted once no client waits.
    fn orphaned(&mut self) -> bool {
        // A leader that applied its own removal (`removing`) counts as stopped: the server stops
        // it a second later (etcd's stopWithDelay), which the simulation does not play out
        // (seed 1125420: the removed leader, stepped down in a partition, could not campaign, and
        // the only other voter, not knowing the removal committed, waited for its vote).
        let gone = |n: &Node| n.removed || n.removing;
        let live: Vec<&Node> = self.nodes.iter().filter(|n| n.born && !gone(n) && n.is_up()).collect();
        // A member with batches in flight may yet apply a configuration change they hold.
        if live.is_empty() || live.iter().any(|n| !n.unanswered.is_empty() || n.reads_waiting > 0 || n.stripes.iter().any(|s| !s.is_empty())) {
            return false;
        }
        // Only a voter of its own configuration campaigns: a learner (seed 198497: the only
        // voter left had not applied the removed leader's removal, a learner had) elects no one.
        let stuck = live.iter().all(|n| {
            let voters: Vec<u64> = n.core.as_ref().expect("up").members().voters();
            let alive = voters.iter().filter(|&&id| !gone(&self.nodes[(id - 1) as usize])).count();
            !voters.contains(&n.id) || alive <= voters.len() / 2
        });
        self.orphaned_by_removal |= stuck;
        stuck
    }
}

struct Outcome {
    acked: u64,
    reads: u64,
    boots: u64,
    installs: u64,
    conf_applied: u64,
    conf_refused: u64,
    orphaned: bool,
}

fn run_seed(seed: u64, trace: bool) -> Outcome {
    let mut world = World::new(seed, trace);
    for _ in 0..STEPS_PER_SEED {
        world.step();
    }
    world.heal();
    // No acknowledged write lost: every member that caught up holds every one of them; every
    // member still in the cluster caught up (by a snapshot when the leader's log no longer
    // reaches it), unless a removed leader left the rest without a quorum.
    let last = world.applied.keys().next_back().copied().unwrap_or(0);
    let removed: HashSet<u64> = world.nodes.iter().filter_map(|n| n.core.as_ref()).flat_map(|c| c.members().removed.clone()).collect();
    for n in world.nodes.iter().filter(|n| n.born && !n.removed && !n.removing && !removed.contains(&n.id)) {
        assert!(world.orphaned_by_removal || n.model.index >= last, "member {} applied {} of {last}", n.id, n.model.index);
    }
    for n in world.nodes.iter().filter(|n| n.model.index >= last) {
        for tag in &world.acked_tags {
            assert!(n.model.tags.contains(tag), "member {} lost acknowledged write {tag}", n.id);
        }
    }
    for n in world.nodes.iter().filter(|n| n.removed) {
        assert!(!n.is_up(), "removed member {} still runs", n.id);
    }
    Outcome {
        acked: world.acked,
        reads: world.reads_ok,
        boots: world.boots,
        installs: world.installs,
        conf_applied: world.conf_applied,
        conf_refused: world.conf_refused_at_commit,
        orphaned: world.orphaned_by_removal,
    }
}

/// Seeds beyond the usual range that once failed, run on every run: 1074291 (a removed leader
/// answered a linearizable read from its own commit index: `Core::may_ask_reads`), 1125420 (a
/// removed leader that had stepped down was taken for a live voter by the check), 1435212 (a
/// lone voter campaigned with entries not yet durable and raft-rs asserted:
/// `Core::lone_voter_with_unpersisted_log`).
const SEEDS_THAT_FAILED: &[u64] = &[1_074_291, 1_125_420, 1_435_212];

#[test]
fn raft_cluster_simulation() {
    let trace = std::env::var("RAFT_SIM_TRACE").is_ok_and(|v| v == "1");
    let seeds: Vec<u64> = match env_u64("RAFT_SIM_SEED") {
        Some(seed) => vec![seed],
        None => {
            let first = env_u64("RAFT_SIM_FIRST_SEED").unwrap_or(1);
            let range = first..first + env_u64("RAFT_SIM_SEEDS").unwrap_or(3000);
            let mut seeds: Vec<u64> = SEEDS_THAT_FAILED.iter().copied().filter(|s| !range.contains(s)).collect();
            seeds.extend(range);
            seeds
        }
    };
    let (mut acked, mut reads, mut boots, mut installs, mut conf_applied, mut conf_refused, mut orphaned) = (0, 0, 0, 0, 0, 0, 0);
    for &seed in &seeds {
        match std::panic::catch_unwind(|| run_seed(seed, trace)) {
            Ok(o) => {
                acked += o.acked;
                reads += o.reads;
                boots += o.boots;
                installs += o.installs;
                conf_applied += o.conf_applied;
                conf_refused += o.conf_refused;
                orphaned += o.orphaned as u64;
            }
            Err(e) => {
                let why = e.downcast_ref::<String>().cloned().or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()));
                panic!(
                    "raft cluster simulation failed at seed {seed}: {}\nreplay: RAFT_SIM_SEED={seed} RAFT_SIM_TRACE=1 cargo test --test raft_sim_cluster",
                    why.unwrap_or_default()
                );
            }
        }
    }
    eprintln!(
        "raft cluster simulation: {} seeds, {acked} writes acknowledged, {reads} reads answered, {boots} lives, {installs} snapshots installed from a leader, {conf_applied} membership changes applied and {conf_refused} refused at commit, {orphaned} seeds left without quorum by a removed leader",
        seeds.len()
    );
    // The runs must exercise what they check.
    assert!(acked > seeds.len() as u64 * 10, "only {acked} writes acknowledged over {} seeds", seeds.len());
    assert!(reads > seeds.len() as u64, "only {reads} reads answered over {} seeds", seeds.len());
    if seeds.len() >= 100 {
        assert!(conf_applied > seeds.len() as u64 / 10, "only {conf_applied} membership changes applied over {} seeds", seeds.len());
    }
    if seeds.len() >= 1000 {
        assert!(installs > 0, "no snapshot installed from a leader over {} seeds", seeds.len());
    }
}

/// `--force-new-cluster` after quorum loss, at a random point of a faulty run: the survivor
/// keeps everything it applied, becomes the only member (also after a restart without the
/// flag: the removals are durable), leads and commits new writes.
fn run_force_seed(seed: u64, trace: bool) -> bool {
    let mut world = World::new(seed, trace);
    let steps = 100 + world.rng.below(STEPS_PER_SEED as u64);
    for _ in 0..steps {
        world.step();
    }
    let survivor = (0..world.nodes.len()).find(|&i| {
        let n = &world.nodes[i];
        !n.removing && n.core.as_ref().is_some_and(|c| c.members().voters().contains(&n.id))
    });
    let Some(s) = survivor else { return false };
    let id = world.nodes[s].id;
    let kept = world.force_new_cluster(s);
    if world.nodes[s].force_refused {
        return false;
    }
    world.heal();
    let only_self = |world: &World| world.nodes[s].core.as_ref().expect("up").members().members.iter().map(|m| m.id).collect::<Vec<_>>() == [id];
    assert!(only_self(&world), "member {id} is not alone after forcing a new cluster");
    assert!(world.nodes[s].model.tags.is_superset(&kept), "member {id} lost writes it applied before forcing a new cluster");
    assert!(world.nodes[s].core.as_ref().expect("up").is_serving());
    world.crash(s, 0);
    world.heal(); // it replays the removals, then elects itself
    let acked = world.acked;
    for _ in 0..3 {
        world.propose(s);
    }
    world.heal();
    assert!(only_self(&world), "member {id} is not alone after a restart without the flag");
    assert!(world.nodes[s].model.tags.is_superset(&kept));
    assert_eq!(world.acked, acked + 3, "the forced cluster commits writes");
    for tag in &world.acked_tags {
        assert!(world.nodes[s].model.tags.contains(tag), "member {id} lost acknowledged write {tag}");
    }
    true
}

#[test]
fn force_new_cluster_simulation() {
    let trace = std::env::var("RAFT_SIM_TRACE").is_ok_and(|v| v == "1");
    let seeds: Vec<u64> = match env_u64("RAFT_SIM_SEED") {
        Some(seed) => vec![seed],
        None => (1..=env_u64("RAFT_SIM_FORCE_SEEDS").unwrap_or(300)).collect(),
    };
    let mut forced = 0;
    for &seed in &seeds {
        match std::panic::catch_unwind(|| run_force_seed(seed, trace)) {
            Ok(f) => forced += f as u64,
            Err(e) => {
                let why = e.downcast_ref::<String>().cloned().or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()));
                panic!("force-new-cluster simulation failed at seed {seed}: {}\nreplay: RAFT_SIM_SEED={seed} RAFT_SIM_TRACE=1 cargo test --test raft_sim_cluster force", why.unwrap_or_default());
            }
        }
    }
    eprintln!("force-new-cluster simulation: {} seeds, {forced} forced", seeds.len());
    assert!(forced * 2 > seeds.len() as u64, "only {forced} of {} seeds had a member to force", seeds.len());
}

#[test]
fn a_failing_invariant_names_its_seed() {
    // The checker itself: a world that believes another entry was applied at index 2 must fail.
    let mut world = World::new(3, false);
    world.applied.insert(2, (u64::MAX, vec![], 0));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        for _ in 0..STEPS_PER_SEED {
            world.step();
        }
        world.heal();
    }));
    assert!(result.is_err(), "another entry at index 2 went unnoticed");
}

//! The only state shared across threads: atomics the raft core and shards publish and the
//! front end reads (headers, Status, serializable reads), and the raised alarms' list (for
//! Status; swapped whole). Everything else is owned by one shard and reached by message.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, Ordering::*};

pub struct ServerStatus {
    pub cluster_id: u64,
    pub member_id: u64,
    /// Every shard has applied every write up to this revision.
    applied_rev: AtomicI64,
    compact_rev: AtomicI64,
    applied_index: AtomicU64,
    commit_index: AtomicU64,
    term: AtomicU64,
    leader: AtomicU64,
    /// Per shard: bytes of the records it holds (dbSizeInUse) and of its storage: its share of
    /// the snapshot segments plus everything written since (dbSize; shrinks when a snapshot or
    /// Defragment rewrites the segments without compacted history).
    shard_size_bytes: Vec<AtomicU64>,
    shard_stored_bytes: Vec<AtomicU64>,
    shard_keys: Vec<AtomicU64>,
    /// Per shard: bytes of the records written since its newest snapshot segment, whose
    /// values are on the heap until the next snapshot (`raft::snapshots`).
    shard_held_bytes: Vec<AtomicU64>,
    /// Bit `1 << AlarmType` set for every alarm raised on any member.
    alarms: AtomicU32,
    /// The raised alarms: (member id, alarm type).
    alarm_members: arc_swap::ArcSwap<Vec<(u64, i32)>>,
    /// This member is in the member list as a learner.
    learner: AtomicBool,
    /// A file could not be written for lack of space since the raft core last looked.
    disk_full: AtomicBool,
}

impl ServerStatus {
    pub fn new(cluster_id: u64, member_id: u64, shards: usize) -> ServerStatus {
        ServerStatus {
            cluster_id,
            member_id,
            applied_rev: AtomicI64::new(1),
            compact_rev: AtomicI64::new(0),
            applied_index: AtomicU64::new(0),
            commit_index: AtomicU64::new(0),
            term: AtomicU64::new(0),
            leader: AtomicU64::new(0),
            shard_size_bytes: (0..shards).map(|_| AtomicU64::new(0)).collect(),
            shard_stored_bytes: (0..shards).map(|_| AtomicU64::new(0)).collect(),
            shard_keys: (0..shards).map(|_| AtomicU64::new(0)).collect(),
            shard_held_bytes: (0..shards).map(|_| AtomicU64::new(0)).collect(),
            alarms: AtomicU32::new(0),
            alarm_members: Default::default(),
            learner: AtomicBool::new(false),
            disk_full: AtomicBool::new(false),
        }
    }

    pub fn applied_rev(&self) -> i64 {
        self.applied_rev.load(Acquire)
    }
    pub fn compact_rev(&self) -> i64 {
        self.compact_rev.load(Acquire)
    }
    pub fn applied_index(&self) -> u64 {
        self.applied_index.load(Acquire)
    }
    pub fn commit_index(&self) -> u64 {
        self.commit_index.load(Acquire)
    }
    pub fn term(&self) -> u64 {
        self.term.load(Acquire)
    }
    pub fn leader(&self) -> u64 {
        self.leader.load(Acquire)
    }
    /// etcd's dbSize: what the storage holds, history compacted away included until the
    /// segments are rewritten. The quota counts this, as etcd counts its file size.
    pub fn db_size_bytes(&self) -> u64 {
        self.shard_stored_bytes.iter().zip(&self.shard_size_bytes).map(|(s, u)| s.load(Relaxed).max(u.load(Relaxed))).sum()
    }
    /// etcd's dbSizeInUse: the bytes of the records held (live and not yet compacted).
    pub fn db_size_in_use_bytes(&self) -> u64 {
        self.shard_size_bytes.iter().map(|a| a.load(Relaxed)).sum()
    }
    pub fn keys_total(&self) -> u64 {
        self.shard_keys.iter().map(|a| a.load(Relaxed)).sum()
    }

    /// Alarm types raised (bit `1 << AlarmType`).
    pub fn alarms(&self) -> u32 {
        self.alarms.load(Acquire)
    }
    /// Whether the NOSPACE alarm is raised: writes are refused.
    pub fn nospace(&self) -> bool {
        self.alarms() & (1 << crate::proto::etcdserverpb::AlarmType::Nospace as u32) != 0
    }

    /// Reports that the disk is full (a WAL segment or snapshot could not be written); the
    /// raft core raises the NOSPACE alarm.
    pub fn report_disk_full(&self) {
        self.disk_full.store(true, Release);
    }

    /// Whether the disk was reported full since the last call.
    pub fn take_disk_full(&self) -> bool {
        self.disk_full.swap(false, AcqRel)
    }

    /// The raised alarms, as (member id, alarm type).
    pub fn publish_alarms(&self, alarms: &[(u64, i32)]) {
        self.alarm_members.store(std::sync::Arc::new(alarms.to_vec()));
        self.alarms.store(alarms.iter().fold(0, |bits, &(_, alarm)| bits | 1 << alarm.clamp(0, 31)), Release);
    }

    pub fn alarm_members(&self) -> std::sync::Arc<Vec<(u64, i32)>> {
        self.alarm_members.load_full()
    }

    /// Whether this member is a learner in `members` (etcd's IsMemberExist && IsLearner).
    pub fn publish_membership(&self, members: &crate::cluster::Cluster) {
        let learner = members.member(self.member_id).is_some_and(|m| m.is_learner);
        self.learner.store(learner, Release);
    }

    pub fn is_learner(&self) -> bool {
        self.learner.load(Acquire)
    }

    pub fn publish_applied(&self, index: u64, rev: i64, compact_rev: i64) {
        self.compact_rev.store(compact_rev, Release);
        self.applied_rev.store(rev, Release);
        self.applied_index.store(index, Release);
    }
    pub fn publish_raft(&self, term: u64, leader: u64, commit_index: u64) {
        self.term.store(term, Release);
        self.leader.store(leader, Release);
        self.commit_index.store(commit_index, Release);
    }
    /// (live keys, bytes) of one shard.
    pub fn shard_stats(&self, shard: usize) -> (u64, u64) {
        (self.shard_keys[shard].load(Relaxed), self.shard_size_bytes[shard].load(Relaxed))
    }

    /// Bytes written since the shards' newest snapshot segments, summed.
    pub fn held_bytes(&self) -> u64 {
        self.shard_held_bytes.iter().map(|a| a.load(Relaxed)).sum()
    }

    /// One shard's sizes: `segment_bytes` of its snapshot segments, `held_bytes` written since.
    pub fn publish_shard(&self, shard: usize, size_bytes: u64, segment_bytes: u64, held_bytes: u64, keys: u64) {
        self.shard_size_bytes[shard].store(size_bytes, Relaxed);
        self.shard_stored_bytes[shard].store(segment_bytes + held_bytes, Relaxed);
        self.shard_held_bytes[shard].store(held_bytes, Relaxed);
        self.shard_keys[shard].store(keys, Relaxed);
    }
}

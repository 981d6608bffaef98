//! What the raft core's simulations (`tests/raft_sim.rs`, one voter; `tests/raft_sim_cluster.rs`,
//! several members) share: a member's disk, WAL recovery from it, the simulated requests and
//! their seeds' settings.
#![allow(dead_code)]

use std::collections::BTreeMap;

use ballast::cluster::{Cluster, Member};
use ballast::proto::ballastpb::internal_request::Request;
use ballast::raft::core::SnapPoint;
use ballast::proto::etcdserverpb::PutRequest;
use ballast::raft::snapshots::SnapshotOrder;
use ballast::wal::record::Batch;
use ballast::wal::recover::{append_batch, Recovered};

/// A member's disk: the durable WAL batches and the last snapshot with the state `M` it holds.
pub struct Disk<M> {
    pub batches: BTreeMap<u64, Batch>,
    pub snapshot: Option<(SnapshotOrder, M)>,
}

impl<M> Default for Disk<M> {
    fn default() -> Self {
        Disk { batches: BTreeMap::new(), snapshot: None }
    }
}

/// What WAL recovery reads back (as `wal::recover`): from the snapshot's first batch, the
/// contiguous prefix of durable batches; batches after a gap are erased.
pub fn recover<M>(mut disk: Disk<M>, stripes: usize) -> (Recovered, Disk<M>) {
    let start_seq = disk.snapshot.as_ref().map_or(1, |(o, _)| o.wal_seq_from);
    let mut rec = Recovered { last_seq: start_seq - 1, first_seq: start_seq, ..Default::default() };
    let mut erased = Vec::new();
    for (&seq, batch) in &disk.batches {
        if seq < start_seq {
            rec.hard_state = batch.hard_state.clone();
            rec.max_seq_found = seq;
        } else if seq == rec.last_seq + 1 && erased.is_empty() {
            append_batch(&mut rec, batch).expect("batches continue the log");
            rec.last_seq = seq;
            rec.max_seq_found = seq;
        } else {
            assert!(seq <= rec.last_seq + stripes as u64, "batch {seq} beyond the {stripes} that may be in flight after {}", rec.last_seq);
            erased.push(seq);
        }
    }
    for seq in erased {
        disk.batches.remove(&seq);
    }
    if let Some((o, _)) = &disk.snapshot {
        assert!(rec.max_seq_found >= o.wal_seq_kept, "the wal lost batch {} the snapshot kept", o.wal_seq_kept);
    }
    (rec, disk)
}

/// The simulated write tagged `tag`: a put of key `k<tag>`.
pub fn put(tag: u64) -> Request {
    Request::Put(PutRequest { key: format!("k{tag}").into_bytes(), value: tag.to_le_bytes().to_vec(), ..Default::default() })
}

/// The tag of a simulated write.
pub fn tag_of(req: &Option<Request>) -> u64 {
    match req {
        Some(Request::Put(p)) => String::from_utf8_lossy(&p.key)[1..].parse().expect("a simulated key"),
        other => panic!("unexpected request {other:?}"),
    }
}

/// A number from the environment (seed counts, a seed to replay).
pub fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|v| v.parse().unwrap_or_else(|_| panic!("{name}={v} is not a number")))
}

/// The simulated member `id` (a name, so etcd counts it as started).
pub fn member(id: u64, is_learner: bool) -> Member {
    Member { id, name: format!("m{id}"), peer_urls: vec![format!("http://m{id}:2380")], client_urls: vec![], is_learner }
}

/// The initial member list of voters `ids`, as seen by member `local_id`.
pub fn cluster(ids: &[u64], local_id: u64) -> Cluster {
    Cluster { id: 1, members: ids.iter().map(|&id| member(id, false)).collect(), local_id, removed: Vec::new() }
}

/// Where a snapshot order leaves raft: what a restart resumes from (`data`: its descriptor).
pub fn snap_point(o: &SnapshotOrder, data: Vec<u8>) -> SnapPoint {
    SnapPoint { index: o.index, term: o.term, voters: o.voters.clone(), learners: o.learners.clone(), members: Some(o.members.clone()), data }
}

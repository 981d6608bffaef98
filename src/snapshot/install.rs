//! Installing fetched snapshot files (`fetch.rs`) as this member's snapshot: step 2 of
//! `raft/installs.rs`. `place` moves the files from the staging directory into the snapshot
//! directory under this member's names and builds the manifest (this member's snapshot number
//! and WAL position; the sender's revision, leases, auth state, alarms, raft configuration and
//! member list, seen from here); the driver then loads the stores from them with the boot
//! path's code (`load::load_stores`) and replaces its state; `commit` writes the manifest last, atomically (`manifest::store`, which also removes
//! the old segments). A crash before `commit` boots the old snapshot (the placed files are
//! named by no manifest and go with the next one); after it, the new one.

use std::path::Path;

use super::fetch::staging;
use super::manifest::segment_name;
use super::Manifest;

/// Where the installed snapshot stands in this member.
#[derive(Debug, Clone)]
pub struct Placement {
    /// This member's number for the snapshot (`Manifest::seq`).
    pub seq: u64,
    pub index: u64,
    pub term: u64,
    pub voters: Vec<u64>,
    pub learners: Vec<u64>,
    /// This member's id: the sender's member list is seen from here.
    pub local_id: u64,
    pub wal_seq_from: u64,
    pub wal_seq_kept: u64,
}

/// Moves the fetched files of `fetched` (the sender's manifest) into `snap_dir` and returns
/// the manifest to commit once the state is replaced.
pub fn place(snap_dir: &Path, fetched: &Manifest, p: &Placement) -> Result<Manifest, String> {
    if (fetched.index, fetched.term) != (p.index, p.term) {
        return Err(format!("fetched snapshot at ({}, {}), raft's at ({}, {})", fetched.index, fetched.term, p.index, p.term));
    }
    let from = staging(snap_dir);
    let mut segments = Vec::with_capacity(fetched.segments.len());
    for (k, name) in fetched.segments.iter().enumerate() {
        let local = segment_name(p.index, p.seq, k);
        std::fs::rename(from.join(name), snap_dir.join(&local)).map_err(|e| format!("cannot move fetched {name}: {e}"))?;
        segments.push(local);
    }
    crate::durable::sync_dir(snap_dir).map_err(|e| format!("cannot sync {}: {e}", snap_dir.display()))?;
    Ok(Manifest {
        index: p.index,
        term: p.term,
        voters: p.voters.clone(),
        learners: p.learners.clone(),
        members: fetched.members.clone().map(|c| crate::cluster::Cluster { local_id: p.local_id, ..c }),
        segments,
        seq: p.seq,
        wal_seq_from: p.wal_seq_from,
        wal_seq_kept: p.wal_seq_kept,
        ..fetched.clone()
    })
}

/// Makes the installed snapshot this member's: the manifest, written last.
pub fn commit(snap_dir: &Path, m: &Manifest) -> Result<(), String> {
    super::manifest::store(snap_dir, m).map_err(|e| format!("cannot write snapshot manifest: {e}"))?;
    let _ = std::fs::remove_dir_all(staging(snap_dir));
    Ok(())
}

//! raft-rs log storage. The log lives in raft-rs's `MemStorage`; durability comes from the WAL,
//! which the Ready loop writes (and syncs) before entries are appended here. At boot the
//! snapshot position (if any), the recovered hard state and the entries after the snapshot are
//! loaded back, so raft resumes where it stopped.

use raft::prelude::{ConfState, Snapshot};
use raft::storage::MemStorage;

use crate::wal::recover::Recovered;

/// Where a snapshot left the log: raft resumes after it.
#[derive(Debug, Clone)]
pub struct SnapPoint {
    pub index: u64,
    pub term: u64,
    pub voters: Vec<u64>,
}

pub fn restore(voters: Vec<u64>, recovered: &Recovered, snap: Option<&SnapPoint>) -> Result<MemStorage, String> {
    let storage = match snap {
        None => MemStorage::new_with_conf_state(ConfState::from((voters, vec![]))),
        Some(m) => {
            if !m.voters.iter().any(|v| voters.contains(v)) {
                return Err(format!("this member ({voters:x?}) is not among the snapshot's voters ({:x?})", m.voters));
            }
            let storage = MemStorage::new();
            let mut s = Snapshot::default();
            let meta = s.mut_metadata();
            meta.index = m.index;
            meta.term = m.term;
            meta.set_conf_state(ConfState::from((m.voters.clone(), vec![])));
            storage.wl().apply_snapshot(s).map_err(|e| format!("cannot load snapshot into raft: {e}"))?;
            storage
        }
    };
    let snap_index = snap.map_or(0, |m| m.index);
    let entries: Vec<_> = recovered.entries.iter().filter(|e| e.index > snap_index).cloned().collect();
    if let Some(first) = entries.first() {
        if first.index != snap_index + 1 {
            return Err(format!(
                "wal does not continue the snapshot: snapshot at index {snap_index}, wal resumes at {}",
                first.index
            ));
        }
    }
    let mut core = storage.wl();
    core.append(&entries).map_err(|e| format!("cannot load wal entries into raft log: {e}"))?;
    let last = entries.last().map_or(snap_index, |e| e.index);
    let mut hs = recovered.hard_state.clone();
    // The commit index on disk may lag the entries (it is written with the next batch); it is
    // never below the snapshot and never beyond the log.
    hs.commit = hs.commit.clamp(snap_index, last);
    hs.term = hs.term.max(snap.map_or(0, |m| m.term));
    core.set_hardstate(hs);
    drop(core);
    Ok(storage)
}

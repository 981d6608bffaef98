//! raft-rs log storage. The log lives in raft-rs's `MemStorage`; durability comes from the WAL,
//! which the Ready loop writes (and syncs) before entries are appended here. At boot the
//! recovered hard state and entries are loaded back, so raft resumes where it stopped.

use raft::prelude::ConfState;
use raft::storage::MemStorage;

use crate::wal::recover::Recovered;

pub fn restore(voters: Vec<u64>, recovered: &Recovered) -> Result<MemStorage, String> {
    let storage = MemStorage::new_with_conf_state(ConfState::from((voters, vec![])));
    let mut core = storage.wl();
    core.append(&recovered.entries).map_err(|e| format!("cannot load wal entries into raft log: {e}"))?;
    let last = recovered.entries.last().map_or(0, |e| e.index);
    let mut hs = recovered.hard_state.clone();
    // The commit index on disk may lag the entries (it is written with the next batch) and
    // can never exceed them.
    hs.commit = hs.commit.min(last);
    core.set_hardstate(hs);
    drop(core);
    Ok(storage)
}

//! raft-rs log storage. The log lives in raft-rs's `MemStorage`; durability comes from the WAL,
//! which the Ready loop writes (and syncs) before entries are appended here. At boot the
//! snapshot position (if any), the recovered hard state and the entries after the snapshot are
//! loaded back, so raft resumes where it stopped.
//!
//! `LogStore` is `MemStorage` whose snapshot is the latest durable local snapshot (`offer`):
//! its raft position and conf state, and as data a small descriptor the driver understands
//! (which snapshot files to fetch: `snapshot::install::Descriptor`), never the segments
//! themselves. `MemStorage`'s own snapshot would carry no data (a follower would skip the
//! entries and apply nothing in their place). With peers, raft's log is not compacted past the
//! offered snapshot (`Core::trim_log`), so a follower behind the leader's first entry can be
//! sent one. A single voter keeps no log behind what it applied: a member added later may need
//! a snapshot newer than any offered (or the first one). Then the offered one is not sent (the
//! member would install it and still miss the entries after it); `snapshot` says it is wanted
//! instead (`take_wanted`) and the core orders one.

use std::ops::Deref;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use raft::prelude::{ConfState, Entry, Snapshot};
use raft::storage::{MemStorage, RaftState};
use raft::GetEntriesContext;

use crate::wal::recover::Recovered;

/// Where a snapshot left the log: raft resumes after it, with its configuration and member
/// list (`members`: None in manifests from before membership changes).
#[derive(Debug, Clone)]
pub struct SnapPoint {
    pub index: u64,
    pub term: u64,
    pub voters: Vec<u64>,
    pub learners: Vec<u64>,
    pub members: Option<crate::cluster::Cluster>,
    /// The snapshot's descriptor, offered to followers as the raft snapshot's data.
    pub data: Vec<u8>,
}

impl SnapPoint {
    /// The raft snapshot that stands for this point.
    pub fn to_snapshot(&self) -> Snapshot {
        let mut s = Snapshot::default();
        let meta = s.mut_metadata();
        meta.index = self.index;
        meta.term = self.term;
        meta.set_conf_state(ConfState::from((self.voters.clone(), self.learners.clone())));
        s.data = self.data.clone().into();
        s
    }
}

/// raft's log: `MemStorage`, offering the latest durable snapshot, and whether raft asked for
/// one that reaches the log and found none (see the module comment).
#[derive(Clone, Default)]
pub struct LogStore(MemStorage, Arc<RwLock<Option<Snapshot>>>, Arc<AtomicBool>);

impl LogStore {
    /// From now on a follower that needs a snapshot is sent this one (durable, and not older
    /// than the one offered before).
    pub fn offer(&self, snap: Snapshot) {
        let mut offered = self.1.write().unwrap_or_else(|e| e.into_inner());
        if offered.as_ref().is_none_or(|o| o.get_metadata().index <= snap.get_metadata().index) {
            *offered = Some(snap);
        }
    }

    /// The index of the snapshot offered (0: none yet).
    pub fn offered_index(&self) -> u64 {
        self.1.read().unwrap_or_else(|e| e.into_inner()).as_ref().map_or(0, |s| s.get_metadata().index)
    }

    /// Whether raft needed a snapshot for a member since the last call and none reached the
    /// log (none offered, or one older than the log's first entry).
    pub fn take_wanted(&self) -> bool {
        self.2.swap(false, Ordering::Relaxed)
    }
}

impl Deref for LogStore {
    type Target = MemStorage;
    fn deref(&self) -> &MemStorage {
        &self.0
    }
}

impl raft::Storage for LogStore {
    fn initial_state(&self) -> raft::Result<RaftState> {
        self.0.initial_state()
    }
    fn entries(&self, low: u64, high: u64, max_size: impl Into<Option<u64>>, context: GetEntriesContext) -> raft::Result<Vec<Entry>> {
        self.0.entries(low, high, max_size, context)
    }
    fn term(&self, idx: u64) -> raft::Result<u64> {
        self.0.term(idx)
    }
    fn first_index(&self) -> raft::Result<u64> {
        self.0.first_index()
    }
    fn last_index(&self) -> raft::Result<u64> {
        self.0.last_index()
    }
    fn snapshot(&self, request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        let first = self.0.first_index()?;
        match &*self.1.read().unwrap_or_else(|e| e.into_inner()) {
            Some(s) if s.get_metadata().index >= request_index && s.get_metadata().index + 1 >= first => Ok(s.clone()),
            _ => {
                self.2.store(true, Ordering::Relaxed);
                Err(raft::Error::Store(raft::StorageError::SnapshotTemporarilyUnavailable))
            }
        }
    }
}

/// `id`: this member; `voters` and `learners`: the configuration without a snapshot.
pub fn restore(id: u64, (voters, learners): (Vec<u64>, Vec<u64>), recovered: &Recovered, snap: Option<&SnapPoint>) -> Result<LogStore, String> {
    let storage = match snap {
        None => MemStorage::new_with_conf_state(ConfState::from((voters, learners))),
        Some(m) => {
            if !m.voters.contains(&id) && !m.learners.contains(&id) {
                return Err(format!("this member ({id:x}) is not among the snapshot's voters ({:x?}) and learners ({:x?})", m.voters, m.learners));
            }
            let storage = MemStorage::new();
            storage.wl().apply_snapshot(m.to_snapshot()).map_err(|e| format!("cannot load snapshot into raft: {e}"))?;
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
    let store = LogStore(storage, Arc::default(), Arc::default());
    if let Some(m) = snap {
        store.offer(m.to_snapshot());
    }
    Ok(store)
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft::Storage;

    fn point(index: u64) -> Snapshot {
        SnapPoint { index, term: 1, voters: vec![1], learners: vec![], members: None, data: vec![1] }.to_snapshot()
    }

    fn entry(index: u64) -> Entry {
        Entry { index, term: 1, ..Default::default() }
    }

    /// A snapshot is offered only when it reaches the log; otherwise one is wanted.
    #[test]
    fn a_snapshot_older_than_the_log_is_not_offered_but_wanted() {
        let store = LogStore(MemStorage::new_with_conf_state(ConfState::from((vec![1], vec![]))), Arc::default(), Arc::default());
        store.wl().append(&(1..=100).map(entry).collect::<Vec<_>>()).unwrap();
        assert!(store.snapshot(0, 2).is_err() && store.take_wanted(), "none offered yet");
        assert!(!store.take_wanted(), "taken once");
        store.offer(point(40));
        assert_eq!(store.snapshot(0, 2).unwrap().get_metadata().index, 40, "reaches the log's first entry");
        assert!(!store.take_wanted());
        store.wl().compact(80).unwrap();
        assert!(store.snapshot(0, 2).is_err() && store.take_wanted(), "entries 41-79 are gone: 40 would leave a gap");
        store.offer(point(79));
        assert_eq!(store.snapshot(0, 2).unwrap().get_metadata().index, 79);
        assert!(!store.take_wanted());
    }
}

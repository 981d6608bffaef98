//! Snapshots: every `--snapshot-count` applied entries (and on Defragment) each shard writes
//! an rkyv segment (mvcc/segment.rs): its whole MVCC state (a full snapshot) or only the records
//! written since the previous snapshot (a delta, while `Manifest::next_is_delta` allows); then
//! the manifest (`manifest.rs`) records the raft position and the segment files of the full
//! snapshot and of every delta since, written by rename, so a snapshot exists whole or not at
//! all. Afterwards raft's log and the WAL segments before the snapshot are released. Boot loads
//! the segments named by the manifest (`load.rs`), joining a key's records across them, and
//! replays the WAL after its index.
//!
//! Who does what: the raft core decides when (`raft/snapshots.rs`, an order with the raft
//! position); `coordinator.rs` has every shard write its segment and then the manifest, and
//! reports the outcome to the core's driver as a message; the driver hands it to the core, which
//! releases raft's log and the WAL before the snapshot.
//!
//! A follower behind the leader's log is sent a raft snapshot whose data is a descriptor
//! (`descriptor.rs`); it copies the leader's files (`fetch.rs`) and installs them as its own
//! snapshot (`install.rs`), manifest last.
//!
//! Files: `<data-dir>/member/snap/manifest.json` and `<index:016x>-<seq>-<shard>.seg`
//! (`incoming/` while a leader's snapshot is fetched).

pub mod coordinator;
pub mod descriptor;
pub mod fetch;
pub mod install;
pub mod load;
pub mod manifest;

use std::path::{Path, PathBuf};

pub use manifest::Manifest;

pub fn dir(data_dir: &Path) -> PathBuf {
    data_dir.join("member").join("snap")
}

//! Snapshots: every `--snapshot-count` applied entries (and on Defragment) each shard writes
//! an rkyv segment (mvcc/segment.rs): its whole MVCC state (a full snapshot) or only the records
//! written since the previous snapshot (a delta, while `Manifest::next_is_delta` allows); then
//! the manifest below records the raft position and the segment files of the full snapshot and
//! of every delta since, written by rename, so a snapshot exists whole or not at all.
//! Afterwards raft's log and the WAL segments before the snapshot are released. Boot loads the
//! segments named by the manifest, joining a key's records across them, and replays the WAL
//! after its index.
//!
//! Files: `<data-dir>/member/snap/manifest.json` and `<index:016x>-<seq>-<shard>.seg`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::mvcc::segment;
use crate::mvcc::store::Store;
use crate::shard::router::shard_of;

const MANIFEST: &str = "manifest.json";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Raft index and term of the last entry the snapshot includes.
    pub index: u64,
    pub term: u64,
    pub voters: Vec<u64>,
    /// Revision and compaction revision after applying `index`.
    pub rev: i64,
    pub compact_rev: i64,
    /// Raised alarms as (member id, alarm type).
    pub alarms: Vec<(u64, i32)>,
    /// Segment file names in this directory, oldest first: a full snapshot's (one per shard),
    /// then the delta snapshots' written since (one per shard each), each holding only the
    /// records written after the previous snapshot's revision.
    pub segments: Vec<String>,
    /// Shards the segments were cut for (0 in manifests from before deltas): a delta needs the
    /// same shards as the segments before it.
    #[serde(default)]
    pub shards: usize,
    /// Delta snapshots since the full one, and the bytes of the full one's and of theirs: the
    /// next snapshot is full once the deltas outgrow it (`Manifest::next_is_delta`).
    #[serde(default)]
    pub deltas: u32,
    #[serde(default)]
    pub full_bytes: u64,
    #[serde(default)]
    pub delta_bytes: u64,
    /// Snapshots taken by this data dir, this one included: makes segment names unique.
    #[serde(default)]
    pub seq: u64,
    /// WAL replay starts at this batch sequence: earlier batches hold only entries the
    /// snapshot covers.
    #[serde(default = "first_seq")]
    pub wal_seq_from: u64,
    /// A WAL batch that was durable when the snapshot was cut and that the WAL keeps until a
    /// later snapshot replaces this one (0: none yet). Boot refuses a WAL that does not hold it
    /// or a later one: the WAL is missing, or is not this data dir's (a changed `--wal-dir`),
    /// and starting would serve the snapshot without the writes after it.
    #[serde(default)]
    pub wal_seq_kept: u64,
}

fn first_seq() -> u64 {
    1
}

pub fn dir(data_dir: &Path) -> PathBuf {
    data_dir.join("member").join("snap")
}

/// Delta snapshots allowed between two full ones (each adds a file per shard to load at boot).
const MAX_DELTAS: u32 = 8;

impl Manifest {
    /// Whether the snapshot after this one may be a delta on top of it: same shards, few
    /// enough deltas, and the deltas still smaller than the full snapshot they add to. So
    /// what snapshots write stays within twice what the writes and the live data need,
    /// instead of the whole store every `--snapshot-count` requests.
    pub fn next_is_delta(&self, shards: usize) -> bool {
        self.shards == shards && self.deltas < MAX_DELTAS && self.delta_bytes < self.full_bytes
    }
}

/// The segment file of shard `shard` in the snapshot numbered `seq` (taken at raft `index`).
pub fn segment_name(index: u64, seq: u64, shard: usize) -> String {
    format!("{index:016x}-{seq}-{shard}.seg")
}

pub fn load(dir: &Path) -> Result<Option<Manifest>, String> {
    crate::durable::read_checked_json(&dir.join(MANIFEST))
}

/// Writes the manifest atomically, with a checksum (`durable.rs`), then removes segment files
/// no longer named by it (and makes the removal durable).
pub fn store(dir: &Path, m: &Manifest) -> std::io::Result<()> {
    crate::durable::write_checked_json(&dir.join(MANIFEST), m)?;
    let mut removed = false;
    for entry in std::fs::read_dir(dir)?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".seg") && !m.segments.contains(&name) {
            removed |= std::fs::remove_file(entry.path()).is_ok();
        }
    }
    if removed {
        crate::durable::sync_dir(dir)?;
    }
    Ok(())
}

/// Total size of the snapshot's segment files.
pub fn segment_bytes(dir: &Path, m: &Manifest) -> u64 {
    m.segments.iter().filter_map(|name| std::fs::metadata(dir.join(name)).ok()).map(|md| md.len()).sum()
}

/// Loads the snapshot's segments into `shards` stores, routing each key to its owner (the
/// shard count may differ from the snapshot's). A key's records from several segments (a full
/// one and deltas) are joined in revision order; history compacted since an older segment
/// was written is compacted again.
pub fn load_stores(dir: &Path, m: &Manifest, shards: usize) -> Result<Vec<Store>, String> {
    let mut parts: Vec<Vec<segment::SegKey>> = (0..shards).map(|_| Vec::new()).collect();
    for name in &m.segments {
        for k in segment::read(&dir.join(name))? {
            parts[shard_of(&k.key, shards)].push(k);
        }
    }
    Ok(parts
        .into_iter()
        .map(|keys| {
            let mut store = Store::restore(join_keys(keys), m.compact_rev, m.rev);
            store.compact_physical(m.compact_rev);
            store
        })
        .collect())
}

/// Sorts keys and joins the records of a key found in several segments, oldest first.
fn join_keys(mut keys: Vec<segment::SegKey>) -> Vec<segment::SegKey> {
    keys.sort_by(|a, b| a.key.cmp(&b.key)); // stable: a key's segments stay oldest first
    let mut joined: Vec<segment::SegKey> = Vec::with_capacity(keys.len());
    for k in keys {
        match joined.last_mut() {
            Some(last) if last.key == k.key => {
                last.records.extend(k.records);
                last.records.sort_by_key(|r| r.rev());
                last.records.dedup_by_key(|r| r.rev());
            }
            _ => joined.push(k),
        }
    }
    joined
}

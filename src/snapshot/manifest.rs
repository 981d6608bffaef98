//! The snapshot manifest: the raft position a snapshot stands for and the segment files of
//! the full snapshot and of every delta since, written by rename (with a checksum), so a
//! snapshot exists whole or not at all.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

const MANIFEST: &str = "manifest.json";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Raft index and term of the last entry the snapshot includes.
    pub index: u64,
    pub term: u64,
    /// Raft's configuration at `index`.
    pub voters: Vec<u64>,
    #[serde(default)]
    pub learners: Vec<u64>,
    /// The member list at `index` (None in manifests from before membership changes: the one
    /// in `member/membership.json` then).
    #[serde(default)]
    pub members: Option<crate::cluster::Cluster>,
    /// Revision and compaction revision after applying `index`.
    pub rev: i64,
    pub compact_rev: i64,
    /// Raised alarms as (member id, alarm type).
    pub alarms: Vec<(u64, i32)>,
    /// Segment file names in this directory, oldest first: a full snapshot's (one per shard),
    /// then the delta snapshots' written since (one per shard each), each holding only the
    /// records written after the previous snapshot's revision.
    pub segments: Vec<String>,
    /// The CRC-32C of each segment file, as `segments` (empty in manifests from before them,
    /// or when a segment's is unknown: then none is checked). Boot refuses a segment whose
    /// file is not the one written, even a valid segment put in its place.
    #[serde(default)]
    pub segment_crcs: Vec<u32>,
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
    /// The compaction revision when the full snapshot was cut (0 in manifests from before it):
    /// a full snapshot only drops from disk what compaction dropped since.
    #[serde(default)]
    pub full_compact_rev: i64,
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
    /// Leases as (id, granted TTL); their keys are those whose newest record names them.
    #[serde(default)]
    pub leases: Vec<(i64, i64)>,
    /// (id, seconds left at its last checkpoint), with --experimental-enable-lease-checkpoint-persist.
    #[serde(default)]
    pub lease_remaining: Vec<(i64, i64)>,
    /// The auth store (users, roles, enabled flag, auth revision).
    #[serde(default)]
    pub auth: crate::auth::AuthState,
}

fn first_seq() -> u64 {
    1
}

/// Delta snapshots allowed between two full ones (each adds a file per shard to load at boot).
/// At 1M keys a full snapshot rewrites the whole store (9-12 s of a shard's spare time here), and
/// with 8 it came every 9th snapshot unless compaction made one sooner: put at 100 clients on
/// 1M keys, 60 s, 25.2-26.8 µs of server CPU per put with 8 against 23.2-23.9 with 16 (three
/// runs each), the same data dir after loading them, boot 4.5 → 4.8 s from 2.5 GB of segments.
/// 32 since deltas come twice as often (`raft::snapshots::HELD_BUDGET_BYTES` of 16 MiB, every
/// ~52k puts of 256 bytes): a full snapshot comes after as many bytes of deltas as before.
const MAX_DELTAS: u32 = 32;

impl Manifest {
    /// Whether the snapshot after this one, cut at compaction revision `compact_rev`, may be a
    /// delta on top of it: same shards, few enough deltas, and either the deltas still smaller
    /// than the full snapshot they add to or nothing compacted since the full one. So what
    /// snapshots write stays within twice what the writes and the live data need, instead of
    /// the whole store every `--snapshot-count` requests; and without compaction, when a full
    /// snapshot would rewrite exactly what its segments and the deltas already hold, only the
    /// deltas' count makes one.
    pub fn next_is_delta(&self, shards: usize, compact_rev: i64) -> bool {
        let nothing_to_drop = compact_rev <= self.full_compact_rev;
        self.shards == shards && self.deltas < MAX_DELTAS && (self.delta_bytes < self.full_bytes || nothing_to_drop)
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
    let replaced = store_listing_replaced(dir, m)?;
    remove_replaced(dir, replaced)
}

/// Writes the manifest as `store` does and returns the segment files it no longer names, for
/// `remove_replaced`. Listed here, before the next snapshot writes a segment in `dir`: a
/// listing taken later could name that snapshot's files, which no manifest names yet.
pub fn store_listing_replaced(dir: &Path, m: &Manifest) -> std::io::Result<Vec<PathBuf>> {
    crate::durable::write_checked_json(&dir.join(MANIFEST), m)?;
    let mut replaced = Vec::new();
    for entry in std::fs::read_dir(dir)?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".seg") && !m.segments.contains(&name) {
            replaced.push(entry.path());
        }
    }
    Ok(replaced)
}

/// Removes segment files a durable manifest no longer names (`writeback::delete_paced`) and
/// makes the removal durable; one removal at a time, so files a later manifest lists again are
/// not cut by two threads (the later one finds them gone). A removal cut short (a crash) leaves
/// files no manifest names: the next `store_listing_replaced` lists them again.
pub fn remove_replaced(dir: &Path, replaced: Vec<PathBuf>) -> std::io::Result<()> {
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut removed = false;
    for path in replaced {
        removed |= crate::writeback::delete_paced(&path).is_ok();
    }
    if removed {
        crate::durable::sync_dir(dir)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn after_full(deltas: u32, full_bytes: u64, delta_bytes: u64, full_compact_rev: i64) -> Manifest {
        let m = serde_json::json!({"index": 9, "term": 2, "voters": [1], "rev": 100, "compact_rev": full_compact_rev, "alarms": [], "segments": []});
        let m: Manifest = serde_json::from_value(m).expect("a manifest from before deltas parses");
        Manifest { shards: 2, deltas, full_bytes, delta_bytes, full_compact_rev, ..m }
    }

    #[test]
    fn a_full_snapshot_only_when_it_would_drop_compacted_history_or_deltas_pile_up() {
        // Deltas smaller than the full one: another delta, compacted since or not.
        assert!(after_full(1, 1000, 400, 50).next_is_delta(2, 50));
        assert!(after_full(1, 1000, 400, 50).next_is_delta(2, 80));
        // Deltas outgrew it: a full one if compaction dropped history since it was cut...
        assert!(!after_full(3, 1000, 1200, 50).next_is_delta(2, 80));
        // ...and a delta if not: a full snapshot would rewrite what the files already hold.
        assert!(after_full(3, 1000, 1200, 50).next_is_delta(2, 50));
        assert!(after_full(3, 1000, 1200, 0).next_is_delta(2, 0));
        // Too many files to load at boot, or other shards: full.
        assert!(!after_full(MAX_DELTAS, 1000, 10, 50).next_is_delta(2, 50));
        assert!(!after_full(1, 1000, 10, 50).next_is_delta(3, 50));
        // A manifest from before `full_compact_rev` of a compacted store: as before it.
        let old: Manifest = serde_json::from_value(serde_json::json!({"index": 9, "term": 2, "voters": [1], "rev": 100, "compact_rev": 60, "alarms": [], "segments": [], "shards": 2, "deltas": 2, "full_bytes": 10, "delta_bytes": 20})).unwrap();
        assert_eq!(old.full_compact_rev, 0);
        assert!(!old.next_is_delta(2, 60));
    }
}

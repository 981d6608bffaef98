//! Stripes of shards no longer configured (`--shards` lowered): read at boot, never written
//! again, deleted once a durable snapshot covers every batch they hold.

use std::path::PathBuf;

/// Deletes the retired stripes holding only batches before `seq`; keeps the others.
pub fn release(retired: &mut Vec<(PathBuf, u64)>, seq: u64) {
    retired.retain(|(dir, max_seq)| {
        if *max_seq >= seq {
            return true;
        }
        match std::fs::remove_dir_all(dir) {
            Ok(()) => {
                crate::log::info("removed retired wal stripe", &[("dir", dir.display().to_string())]);
                if let Some(parent) = dir.parent() {
                    let _ = crate::durable::sync_dir(parent);
                }
                false
            }
            Err(e) => {
                crate::log::warn("cannot remove retired wal stripe", &[("dir", dir.display().to_string()), ("error", e.to_string())]);
                true
            }
        }
    });
}

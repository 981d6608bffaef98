//! Whether this WAL was ever written. Before the first snapshot the WAL is all a member has,
//! and a WAL whose segments hold no record at all is also what a first boot that crashed before
//! its first write leaves: recovery alone cannot tell that from a WAL whose records were lost
//! (its segment zeroed or replaced in place), and would start empty, every acknowledged write
//! gone. So once its first batch is durable (the first, not any: `Driver::persisted`), the WAL
//! dir gets a marker file (`written`, durably), and a boot without a snapshot that finds no
//! record beside it refuses, naming the segment. A data dir from before the marker gets it at
//! its next boot that finds a record. (With a snapshot, the manifest's `wal_seq_kept` already
//! names a batch the WAL must hold.)

use std::path::{Path, PathBuf};

use super::recover::Recovered;

const MARKER: &str = "written";

fn path(wal_dir: &Path) -> PathBuf {
    wal_dir.join(MARKER)
}

/// Creates the marker durably (the file, then the directory entry).
pub fn mark(wal_dir: &Path) -> std::io::Result<()> {
    let file = std::fs::File::create(path(wal_dir))?;
    file.sync_all()?;
    crate::durable::sync_dir(wal_dir)
}

/// At a boot without a snapshot, after recovery: refuses a WAL that holds no batch although it
/// was written; marks one that holds batches. Returns whether the marker is still to be
/// written (after this life's first durable batch: `Driver::persisted`).
pub fn check(wal_dir: &Path, recovered: &Recovered) -> Result<bool, String> {
    let marked = path(wal_dir).exists();
    if recovered.max_seq_found > 0 {
        if !marked {
            mark(wal_dir).map_err(|e| format!("cannot write {}: {e}", path(wal_dir).display()))?;
        }
        return Ok(false);
    }
    if marked {
        let first = recovered.stripes.first().map(|s| super::segment_path(&s.dir, s.tail.segment)).unwrap_or_else(|| wal_dir.to_path_buf());
        return Err(format!(
            "wal: {} holds no record at offset 0 or after, but this WAL was written before ({}) and there is no snapshot: its records were lost (zeroed or replaced); refusing to start",
            first.display(),
            path(wal_dir).display()
        ));
    }
    Ok(true)
}

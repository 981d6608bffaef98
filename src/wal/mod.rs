//! The write-ahead log: raft entries and hard state, appended in batches, each made durable by
//! one direct O_DSYNC write (group commit) before raft may count them as persisted. There is one
//! stripe per shard; the raft core numbers its batches and deals them to the stripes in turn,
//! so several syncs can be in flight. `record.rs` is the on-disk format, `stripe.rs`
//! the io_uring writer task owned by one shard, `recover.rs` reads the stripes back at boot,
//! `marker.rs` tells a WAL that lost its records from one never written.
//!
//! Files: `<wal-dir>/<stripe>/<segment:016x>.wal`, each preallocated by writing zeros so the
//! hot path overwrites zero-filled space and never extends a file (design.md §3).

pub mod marker;
pub mod record;
pub mod recover;
pub mod retire;
pub mod stripe;

use crate::writeback::{Speed, PIECE_BYTES};

/// Where the next record of a stripe goes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Position {
    pub segment: u64,
    pub offset_bytes: u64,
}

pub fn segment_path(dir: &std::path::Path, segment: u64) -> std::path::PathBuf {
    dir.join(format!("{segment:016x}.wal"))
}

/// A released segment kept for reuse (`<segment:016x>.spare`); recovery ignores these files.
pub fn spare_path(dir: &std::path::Path, segment: u64) -> std::path::PathBuf {
    dir.join(format!("{segment:016x}.spare"))
}

/// A released segment being deleted (`<segment:016x>.deleting`): renamed, durably, before it is
/// cut down piece by piece (`writeback::delete_paced`), so a crash meanwhile never leaves a
/// cut `.wal` file for recovery to refuse; recovery ignores these files and a stripe deletes
/// any left over when it opens.
pub fn deleting_path(dir: &std::path::Path, segment: u64) -> std::path::PathBuf {
    dir.join(format!("{segment:016x}.deleting"))
}

/// Creates a zero-filled segment of `size_bytes` atomically (write a temp file, fsync,
/// rename, fsync the directory), so a crash never leaves a half-initialised segment. With
/// `recycle`, a released segment's file is renamed and overwritten with zeros instead of a
/// new file being created: its blocks are already allocated, so the filesystem does less.
/// The size is rounded up to whole blocks of direct writes. `speed` paces the zeros for a
/// segment prepared while the stripe serves (see `writeback`).
pub fn create_segment(dir: &std::path::Path, segment: u64, size_bytes: u64, recycle: Option<&std::path::Path>, speed: Speed) -> std::io::Result<()> {
    use std::io::Write;
    const CHUNK_BYTES: usize = PIECE_BYTES as usize;
    let size_bytes = stripe::align_up(size_bytes);
    let path = segment_path(dir, segment);
    let tmp = crate::durable::temp_path(&path);
    // A temp file left by an attempt that failed (a full disk) or crashed is reused too.
    let reused = recycle.is_some_and(|spare| std::fs::rename(spare, &tmp).is_ok()) || tmp.exists();
    let mut f = if reused { std::fs::OpenOptions::new().write(true).open(&tmp)? } else { std::fs::File::create(&tmp)? };
    f.set_len(size_bytes)?;
    let zeros = vec![0u8; CHUNK_BYTES];
    let mut pacer = crate::writeback::Pacer::default();
    let mut left = size_bytes;
    while left > 0 {
        let n = left.min(CHUNK_BYTES as u64) as usize;
        f.write_all(&zeros[..n])?;
        left -= n as u64;
        if speed == Speed::Paced {
            crate::writeback::pace_blocking(&mut pacer, &f, size_bytes - left)?;
        }
        if reused && left < size_bytes / 2 {
            crate::failpoint::crash("wal-recycle-half-zeroed");
        }
    }
    f.sync_all()?;
    crate::durable::rename_into_place(&tmp, &path)
}

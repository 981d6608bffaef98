//! Paced writeback of background files (snapshot segments, zero-filled WAL segments), so
//! that their bytes reach the disk a little at a time instead of in one burst that the WAL's
//! durable writes queue behind.
//!
//! Why: this machine's disk has a volatile write cache without FUA, so every durable WAL write
//! is a write plus a cache flush, and a flush carries everything written to the device since
//! the last one. A 33 MB snapshot segment written into the page cache and then fdatasynced, or
//! a 64 MB WAL segment zero-filled and fsynced, made the puts in flight wait 40-120 ms (open
//! loop at 18k puts/s; every stall lined up with one of the two). Paced, a background file is
//! pushed to the device in `PIECE_BYTES` pieces (`sync_file_range`, waiting for each), no faster
//! than `BYTES_PER_SEC`: each WAL flush then carries at most about one piece of it, and the final
//! fdatasync has little left to do. Durability is unchanged: the final fdatasync still decides.

use std::time::{Duration, Instant};

/// Bytes pushed to the device at a time.
pub const PIECE_BYTES: u64 = 256 << 10;
/// The fastest a background file is written: well above what snapshots and WAL segments need
/// at this machine's top put rate (~70k puts/s: ~25 MB/s of segments and ~25 MB/s of WAL),
/// far below the disk's bandwidth (~1.6 GB/s).
pub const BYTES_PER_SEC: u64 = 96 << 20;

/// How a background file is written.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Speed {
    /// Paced: while the server serves.
    Paced,
    /// As fast as the disk goes: nothing waits behind it (boot, tests).
    AtOnce,
}

/// The progress of one paced file.
pub struct Pacer {
    started: Instant,
    pushed_bytes: u64,
}

impl Default for Pacer {
    fn default() -> Self {
        Pacer { started: Instant::now(), pushed_bytes: 0 }
    }
}

impl Pacer {
    /// The range (offset, length) to push now that the file holds `written_bytes`, if a whole
    /// piece is pending.
    pub fn due(&self, written_bytes: u64) -> Option<(u64, u64)> {
        let pending = written_bytes.saturating_sub(self.pushed_bytes);
        (pending >= PIECE_BYTES).then_some((self.pushed_bytes, pending))
    }

    /// Records a push up to `end`; returns how long to wait before writing on, so the file
    /// goes no faster than `BYTES_PER_SEC`.
    pub fn pushed(&mut self, end: u64) -> Duration {
        debug_assert!(end >= self.pushed_bytes, "pushes move forward");
        self.pushed_bytes = end;
        let due_at = Duration::from_secs_f64(end as f64 / BYTES_PER_SEC as f64);
        due_at.saturating_sub(self.started.elapsed())
    }
}

/// Starts writeback of `len` bytes at `offset` of `fd` and waits for it (and for any earlier
/// writeback of that range). Blocks: call it on a blocking thread. A file system that cannot
/// do it (EINVAL, ENOSYS) is left to the final fsync.
pub fn push(fd: std::os::fd::RawFd, offset: u64, len: u64) -> std::io::Result<()> {
    let flags = libc::SYNC_FILE_RANGE_WAIT_BEFORE | libc::SYNC_FILE_RANGE_WRITE | libc::SYNC_FILE_RANGE_WAIT_AFTER;
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else { return Ok(()) };
    // SAFETY: sync_file_range reads no memory of ours; a bad fd is an error return.
    let r = unsafe { libc::sync_file_range(fd, offset, len, flags) };
    if r == 0 {
        return Ok(());
    }
    let e = std::io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EINVAL) | Some(libc::ENOSYS) | Some(libc::ESPIPE) => Ok(()),
        _ => Err(e),
    }
}

/// For a file written by a blocking thread: pushes what is due and sleeps to keep the pace.
pub fn pace_blocking(pacer: &mut Pacer, file: &std::fs::File, written_bytes: u64) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    if let Some((offset, len)) = pacer.due(written_bytes) {
        push(file.as_raw_fd(), offset, len)?;
        std::thread::sleep(pacer.pushed(offset + len));
    }
    Ok(())
}

/// Bytes cut from the end of a file being deleted at a time (see `delete_paced`): a write
/// beside a cut waits for that cut's discards, and longer for a larger cut.
pub const DELETE_PIECE_BYTES: u64 = 1 << 20;
/// Pause between two cuts.
const DELETE_GAP: Duration = Duration::from_millis(2);

/// Deletes a large background file (an old snapshot segment, a WAL segment) without holding up
/// the WAL. Deleted at once, its blocks are all discarded (TRIM) together at the file system's
/// next journal commit, and on this machine's disk (ext4 mounted with `discard`) durable writes
/// queue behind those discards: a 110 MB segment's unlink made 4 KiB O_DSYNC writes beside it
/// wait up to 18 ms (at the end of every Defragment). So the file is cut from its end
/// `DELETE_PIECE_BYTES` at a time, each cut made durable (its discards go with that commit),
/// `DELETE_GAP` apart, and unlinked once small. With cuts of 8 MiB the writes beside it waited
/// 1.9-2.4 ms (0.9-1.5 ms before), which set the p99 of a writer during Defragment (2.1-3.1 ms
/// against a baseline of 1.1-1.4 in bench/'s pauses); with cuts of 1 MiB that p99 is
/// 1.04-1.28 ms, the baseline's. A file still mapped by this process (`value::is_mapped`) is unlinked
/// whole: cutting it could make a read of the mapping fault (SIGBUS). Blocks: call it on a
/// blocking thread.
pub fn delete_paced(path: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let file = std::fs::OpenOptions::new().write(true).open(path)?;
    let meta = file.metadata()?;
    let mut size = meta.len();
    if !crate::mvcc::value::is_mapped((meta.dev(), meta.ino())) {
        while size > DELETE_PIECE_BYTES {
            size -= DELETE_PIECE_BYTES;
            file.set_len(size)?;
            file.sync_all()?;
            std::thread::sleep(DELETE_GAP);
        }
    }
    drop(file);
    std::fs::remove_file(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pushes_whole_pieces_and_keeps_the_pace() {
        let mut p = Pacer::default();
        assert_eq!(p.due(PIECE_BYTES - 1), None, "less than a piece waits");
        assert_eq!(p.due(PIECE_BYTES + 10), Some((0, PIECE_BYTES + 10)));
        let wait = p.pushed(PIECE_BYTES + 10);
        let at_pace = Duration::from_secs_f64((PIECE_BYTES + 10) as f64 / BYTES_PER_SEC as f64);
        assert!(wait <= at_pace, "never waits longer than the pace asks: {wait:?}");
        assert_eq!(p.due(2 * PIECE_BYTES), None, "the pushed part is not pushed again");
        assert_eq!(p.due(3 * PIECE_BYTES), Some((PIECE_BYTES + 10, 2 * PIECE_BYTES - 10)));
    }

    #[test]
    fn a_paced_delete_removes_the_file_and_leaves_a_mapped_one_whole_until_unlinked() {
        let dir = std::env::temp_dir().join(format!("ballast-delete-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (plain, mapped) = (dir.join("plain"), dir.join("mapped"));
        let bytes = vec![7u8; (2 * DELETE_PIECE_BYTES + 5) as usize];
        std::fs::write(&plain, &bytes).unwrap();
        std::fs::write(&mapped, &bytes).unwrap();
        delete_paced(&plain).unwrap();
        assert!(!plain.exists());
        let map = crate::mvcc::value::Mapping::open(&mapped).unwrap();
        delete_paced(&mapped).unwrap();
        assert!(!mapped.exists());
        assert!(map.bytes().iter().all(|&b| b == 7), "the mapping still reads the whole file");
        assert_eq!(map.bytes().len(), bytes.len());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_file_system_without_writeback_ranges_is_left_to_fsync() {
        let f = std::fs::File::open("/dev/null").unwrap();
        use std::os::fd::AsRawFd;
        push(f.as_raw_fd(), 0, 4096).unwrap();
    }
}

//! The writer of one WAL stripe, a task on one shard's glommio executor. It takes every batch
//! queued for it and makes them durable with one io_uring write to a segment opened
//! O_DIRECT | O_DSYNC (group commit: the write returns once its data is durable, as a write and
//! an fdatasync would, in one operation), then reports each batch's sequence number as
//! persisted. A failed write aborts the process: after a failed sync the page cache may have
//! dropped the data, so retrying could acknowledge a write that is not on disk.
//!
//! Direct I/O writes whole aligned blocks (`WAL_BLOCK_BYTES`): a write starts at the block
//! holding the end of the last record, carrying that block's earlier bytes again (kept in
//! `tail_block`), and is padded with zeros to a block boundary, as the segment was zero-filled.
//! Rewriting acknowledged bytes with the same bytes is safe against a torn write: each sector is
//! either old or new, and both hold the same prefix. Why not buffered O_DSYNC writes: io_uring
//! cannot complete them inline, so each went to an io-wq worker thread; measured with fio, 4 KiB
//! durable writes cost 45 µs of CPU each that way and 18.5 µs direct, at the same latency.
//!
//! With a single shard, the write goes through the stripe's own small io_uring (`OwnRing`), not
//! glommio's, and the shard thread waits for it in `io_uring_enter` whenever it has nothing else to
//! do. Through glommio's reactor, each completion cost the shard a park and a wake-up (a
//! `membarrier`, timer re-arming, several `io_uring_enter` calls): measured with 100 clients,
//! server CPU per put 18.6–20.0 µs that way against 16.4–17.8 µs this way, and up to 8% more
//! puts/s. The price: a read that reaches the shard while it waits is served when the write
//! completes (one WAL write, about 0.2 ms on this machine's disk); reads already queued are served
//! first. While the shard writes a snapshot it never blocks: the segment's I/O completes through
//! glommio's reactor, which does not run while the thread waits here (blocking then starved the
//! snapshot: a restart after 1 GiB replayed most of it from the WAL). With several shards the
//! stripes wait through glommio: a blocked shard 0 would also stop the raft core from feeding the
//! other stripes, and a blocked shard N would hold up the core's apply messages, so the stripes'
//! writes would no longer overlap. (On this 2-core machine `--shards 2` measured the same either
//! way; the shards there share the cores anyway.)
//!
//! The next segment is zero-filled on a blocking thread once an eighth of the current one is
//! written, so the hot path never extends or creates a file, and a full disk shows while most of
//! the segment is left: the NOSPACE alarm it raises is applied long before the stripe needs the
//! next segment (prepared at half, 1 MiB segments filled before the alarm was applied). Released segments (covered by a snapshot) are
//! kept as spares, up to `MAX_SPARE_SEGMENTS`, and recycled as the next segments.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;

use glommio::io::{DmaBuffer, DmaFile, OpenOptions};

use super::record::{encode, Batch};
use super::recover::StripeState;
use super::{create_segment, deleting_path, segment_path, spare_path, Position};
use crate::metrics as m;

/// Batches taken from the queue per write.
const MAX_BATCHES_PER_WRITE: usize = 256;
/// The unit of a direct write: offsets and lengths are multiples of it (at least the device's
/// logical block size; 4096 also matches its physical block, so no read-modify-write).
pub const WAL_BLOCK_BYTES: u64 = 4096;
/// Released segments kept for reuse; more are deleted.
const MAX_SPARE_SEGMENTS: usize = 1;
/// The next segment is prepared once 1/this of the current one is written.
const PREPARE_NEXT_AT_FRACTION: u64 = 8;
/// How often a stripe that found the disk full tries again to prepare its next segment.
const DISK_FULL_RETRY: std::time::Duration = std::time::Duration::from_millis(500);
/// A durable write slower than this is logged as etcd logs it ("slow fdatasync", etcd's
/// `warnSyncDuration`): operators' log checks grep for that line.
const SLOW_SYNC: std::time::Duration = std::time::Duration::from_secs(1);
/// Entries of a stripe's own io_uring: one write is in flight at a time.
const STRIPE_RING_ENTRIES: u32 = 4;
/// How long the stripe lets queued shard work run before it checks its write again.
const BUSY_RECHECK: std::time::Duration = std::time::Duration::from_micros(20);

/// True while the shard has other work that needs its thread (messages queued, a snapshot
/// being written): the stripe then lets it run rather than block the thread on its write.
pub type ShardBusy = Box<dyn Fn() -> bool>;

/// A stripe's own io_uring for its durable writes, waited on by blocking the shard thread when
/// the shard has nothing else to do (see the module comment).
struct OwnRing {
    ring: io_uring::IoUring,
    busy: ShardBusy,
    /// The buffer of the write in flight, owned here so it outlives the write even if the
    /// waiting task is dropped: `Drop` waits for the completion.
    in_flight: Option<DmaBuffer>,
}

impl OwnRing {
    fn new(busy: ShardBusy) -> std::io::Result<OwnRing> {
        Ok(OwnRing { ring: io_uring::IoUring::new(STRIPE_RING_ENTRIES)?, busy, in_flight: None })
    }

    /// Writes `data` at `offset` of `fd` and waits for the write; gives the buffer back.
    async fn write(&mut self, fd: std::os::fd::RawFd, data: DmaBuffer, offset: u64) -> (std::io::Result<usize>, DmaBuffer) {
        let Ok(len) = u32::try_from(data.len()) else { return (Err(std::io::Error::other("wal write over 4 GiB")), data) };
        let sqe = io_uring::opcode::Write::new(io_uring::types::Fd(fd), data.as_ptr(), len).offset(offset).build();
        // SAFETY: the buffer stays alive in `in_flight` until the completion is reaped (here,
        // or in Drop); `fd` is the stripe's open segment, closed only after the stripe.
        if unsafe { self.ring.submission().push(&sqe) }.is_err() {
            return (Err(std::io::Error::other("wal ring full")), data);
        }
        self.in_flight = Some(data);
        let result = self.wait().await;
        let data = self.in_flight.take().expect("the write's buffer is held until it completes");
        (result, data)
    }

    /// While the shard has messages queued it lets them run, checking the write every
    /// `BUSY_RECHECK`; otherwise the thread blocks in `io_uring_enter` until the write completes.
    async fn wait(&mut self) -> std::io::Result<usize> {
        loop {
            if (self.busy)() {
                retry_interrupted(|| self.ring.submit())?;
                // A timer, not a bare yield: a reactor turn is what delivers the wake-ups of
                // messages sent from other threads.
                glommio::timer::sleep(BUSY_RECHECK).await;
            } else {
                retry_interrupted(|| self.ring.submit_and_wait(1))?;
            }
            if let Some(cqe) = self.ring.completion().next() {
                let n = cqe.result();
                return if n < 0 { Err(std::io::Error::from_raw_os_error(-n)) } else { Ok(n as usize) };
            }
        }
    }
}

impl Drop for OwnRing {
    fn drop(&mut self) {
        if self.in_flight.is_some() {
            let _ = retry_interrupted(|| self.ring.submit_and_wait(1));
        }
    }
}

pub enum StripeMsg {
    /// Write and sync `batch`, then send its sequence number on `persisted`.
    Append { batch: Batch, persisted: flume::Sender<u64> },
    /// Delete closed segments holding only batches below `seq` (covered by a snapshot).
    ReleaseBefore { seq: u64 },
}

type Prepared = Pin<Box<dyn Future<Output = std::io::Result<()>>>>;

pub struct Stripe {
    dir: PathBuf,
    /// Where a full disk is reported.
    status: std::sync::Arc<crate::status::ServerStatus>,
    file: DmaFile,
    pos: Position,
    segment_size_bytes: u64,
    /// The encoded records of the write being prepared.
    buf: Vec<u8>,
    /// The bytes of the current segment from the block holding `pos` up to `pos`: the next
    /// write starts at that block and must carry them again.
    tail_block: Vec<u8>,
    /// Segments before the current one, with the highest batch sequence each holds.
    closed: Vec<(u64, u64)>,
    /// Highest batch sequence written to the current segment (0 = none).
    max_seq: u64,
    /// Size of new segments; a write larger than this gets a segment of its own size.
    new_segment_bytes: u64,
    /// The next segment being zero-filled in the background, if started.
    prepared: Option<Prepared>,
    /// Released segment files waiting to be recycled.
    spares: Vec<PathBuf>,
    /// `Some` when this is the only shard (see the module comment).
    own_ring: Option<OwnRing>,
}

impl Stripe {
    /// `busy`: given when the stripe's shard is the only one; its writes then go through the
    /// stripe's own ring.
    pub async fn open(
        state: StripeState,
        new_segment_bytes: u64,
        busy: Option<ShardBusy>,
        status: std::sync::Arc<crate::status::ServerStatus>,
    ) -> std::io::Result<Stripe> {
        let path = segment_path(&state.dir, state.tail.segment);
        let file = open_segment(&path).await?;
        let segment_size_bytes = file.file_size().await?;
        let tail_block = read_tail_block(&file, state.tail.offset_bytes).await?;
        let mut stripe = Stripe {
            file,
            pos: state.tail,
            segment_size_bytes,
            buf: Vec::new(),
            tail_block,
            closed: state.closed,
            max_seq: state.tail_max_seq,
            new_segment_bytes: align_up(new_segment_bytes),
            prepared: None,
            spares: find_spares_deleting_leftovers(&state.dir),
            dir: state.dir,
            own_ring: busy.map(OwnRing::new).transpose()?,
            status,
        };
        stripe.prepare_next_when_due();
        Ok(stripe)
    }

    /// Serves the stripe's queue until every sender is gone.
    pub async fn run(mut self, rx: flume::Receiver<StripeMsg>) {
        while let Ok(first) = rx.recv_async().await {
            let mut appends = Vec::new();
            for msg in std::iter::once(first).chain(rx.try_iter().take(MAX_BATCHES_PER_WRITE)) {
                match msg {
                    StripeMsg::Append { batch, persisted } => appends.push((batch, persisted)),
                    StripeMsg::ReleaseBefore { seq } => self.release_before(seq),
                }
            }
            if appends.is_empty() {
                continue;
            }
            self.append(appends.iter().map(|(b, _)| b)).await;
            for (batch, persisted) in appends {
                let _ = persisted.send(batch.seq);
            }
        }
    }

    fn release_before(&mut self, seq: u64) {
        let (dir, spares) = (&self.dir, &mut self.spares);
        let before = self.closed.len();
        let mut unlink = Vec::new();
        self.closed.retain(|&(segment, max_seq)| {
            if max_seq >= seq {
                return true;
            }
            let (to, list) = if spares.len() >= MAX_SPARE_SEGMENTS { (deleting_path(dir, segment), &mut unlink) } else { (spare_path(dir, segment), &mut *spares) };
            match std::fs::rename(segment_path(dir, segment), &to) {
                Ok(()) => {
                    list.push(to);
                    false
                }
                Err(e) => {
                    crate::log::warn("cannot release wal segment", &[("segment", segment.to_string()), ("error", e.to_string())]);
                    true
                }
            }
        });
        if self.closed.len() < before {
            crate::failpoint::crash("wal-release-before-sync");
            // The unlinks, and the renames and unlinks made durable, off the shard's thread:
            // unlinking a 64 MiB segment drops its pages from the page cache before it returns
            // (together with the directory fsync, a stall of about 20 ms for every write at the
            // end of each snapshot). Not needed for safety: a released segment that is still
            // there, or comes back after a crash, holds only batches the snapshot covers.
            let dir = self.dir.clone();
            let release = glommio::executor().spawn_blocking(move || {
                // The renames to `.deleting` are durable before any file is cut: a crash must
                // not leave a cut segment under its `.wal` name (recovery refuses it).
                crate::durable::sync_dir(&dir)?;
                for path in &unlink {
                    if let Err(e) = crate::writeback::delete_paced(path) {
                        crate::log::warn("cannot delete released wal segment", &[("path", path.display().to_string()), ("error", e.to_string())]);
                    }
                }
                crate::durable::sync_dir(&dir)
            });
            glommio::spawn_local(async move {
                if let Err(e) = release.await {
                    crate::log::warn("cannot sync the wal dir after releasing segments", &[("error", e.to_string())]);
                }
            })
            .detach();
        }
    }

    /// Writes the batches as consecutive records with one durable (O_DSYNC) write.
    async fn append<'a>(&mut self, batches: impl Iterator<Item = &'a Batch>) {
        self.buf.clear();
        let (mut entries, mut max_seq) = (0, 0);
        for b in batches {
            encode(b, &mut self.buf);
            entries += b.entries.len();
            max_seq = b.seq;
        }
        let bytes = self.buf.len() as u64;
        // At least one zero block stays after the write: recovery reads a segment that ends
        // without a zero header as cut short.
        if align_up(self.pos.offset_bytes + bytes) >= self.segment_size_bytes {
            self.roll(bytes).await;
        }
        // etcd's fsync histogram: here the durable write (copy + sync; the copy is negligible).
        let sync_started = std::time::Instant::now();
        // Failpoint: the disk hangs while the named file exists (timed as a slow write).
        while crate::failpoint::arg("wal-stall").is_some_and(|f| std::path::Path::new(f).exists()) {
            glommio::timer::sleep(std::time::Duration::from_millis(10)).await;
        }
        let (start, data) = self.block_aligned_write();
        let write_bytes = data.len();
        m::handles().io_uring_writes.increment(1);
        let written = match self.own_ring.as_mut() {
            Some(ring) => {
                use std::os::fd::AsRawFd;
                ring.write(self.file.as_raw_fd(), data, start).await.0
            }
            None => self.file.write_at(data, start).await.map_err(|e| std::io::Error::other(e.to_string())),
        };
        match written {
            Ok(n) if n == write_bytes => {}
            Ok(n) => fatal(&format!("short wal write: {n} of {write_bytes} bytes")),
            Err(e) => fatal(&format!("wal write failed: {e}")),
        }
        let took = sync_started.elapsed();
        m::handles().wal_fsync_seconds.record(took.as_secs_f64());
        if took > SLOW_SYNC {
            crate::log::warn("slow fdatasync", &[("took", crate::log::go_duration(took)), ("expected-duration", crate::log::go_duration(SLOW_SYNC))]);
        }
        m::handles().wal_batch_entries.record(entries as f64);
        m::handles().wal_batch_bytes.record(bytes as f64);
        m::handles().wal_write_bytes.increment(bytes as f64);
        self.advance_tail(bytes);
        self.max_seq = max_seq;
        self.prepare_next_when_due();
    }

    /// The direct write of `buf`: the tail block's bytes, the records, zeros up to a block
    /// boundary; with the offset it goes to (the start of the tail block).
    fn block_aligned_write(&self) -> (u64, DmaBuffer) {
        let start = self.pos.offset_bytes - self.tail_block.len() as u64;
        debug_assert_eq!(start % WAL_BLOCK_BYTES, 0);
        let used = self.tail_block.len() + self.buf.len();
        let mut data = self.file.alloc_dma_buffer(align_up(used as u64) as usize);
        let out = data.as_bytes_mut();
        out[..self.tail_block.len()].copy_from_slice(&self.tail_block);
        out[self.tail_block.len()..used].copy_from_slice(&self.buf);
        out[used..].fill(0);
        (start, data)
    }

    /// Moves the write position past `bytes` just written from `buf`, keeping the new partial
    /// block's bytes for the next write.
    fn advance_tail(&mut self, bytes: u64) {
        let end = self.pos.offset_bytes + bytes;
        let keep = (end % WAL_BLOCK_BYTES) as usize;
        if keep <= self.buf.len() {
            // The new partial block holds only bytes of this write.
            self.tail_block.clear();
            self.tail_block.extend_from_slice(&self.buf[self.buf.len() - keep..]);
        } else {
            // The write ended inside the block it started in.
            self.tail_block.extend_from_slice(&self.buf);
        }
        debug_assert_eq!(self.tail_block.len(), keep);
        self.pos.offset_bytes = end;
    }

    /// Starts preparing the next segment once an eighth of the current one is written: a full
    /// disk then shows while most of the segment is left for the NOSPACE alarm and the deletes
    /// and compactions that follow it. (Not at open: a boot would zero-fill 64 MiB per stripe at
    /// once, for segments a short-lived or idle server may never need.)
    fn prepare_next_when_due(&mut self) {
        if self.prepared.is_none() && self.pos.offset_bytes >= self.segment_size_bytes / PREPARE_NEXT_AT_FRACTION {
            self.prepare_next();
        }
    }

    /// Starts zero-filling the next segment on a blocking thread.
    fn prepare_next(&mut self) {
        self.prepared = Some(self.prepare(self.pos.segment + 1, self.new_segment_bytes));
    }

    /// Zero-fills segment `segment` of `size_bytes` on a blocking thread, recycling a spare
    /// file if there is one.
    /// On a full disk it reports to the status (the raft core raises the NOSPACE alarm, so
    /// writes are refused while the rest of this segment holds deletes, compactions and the
    /// alarm's own entries) and tries again every `DISK_FULL_RETRY` until space is freed, all on
    /// the blocking thread. Paced (`crate::writeback`): zeros pushed to the disk all at once
    /// held the WAL's writes behind them.
    ///
    /// It runs in a task of its own: glommio hands a blocking call to its thread only when the
    /// call's future is first polled, so the bare future, awaited only at the roll, zero-filled
    /// the whole segment while the stripe waited (one put stall per segment: 40-60 ms unpaced,
    /// the segment's whole paced write once paced).
    fn prepare(&mut self, segment: u64, size_bytes: u64) -> Prepared {
        let (dir, spare, status) = (self.dir.clone(), self.spares.pop(), self.status.clone());
        Box::pin(glommio::spawn_local(glommio::executor().spawn_blocking(move || {
            let mut reported = false;
            loop {
                match create_segment(&dir, segment, size_bytes, spare.as_deref(), crate::writeback::Speed::Paced) {
                    Err(e) if crate::durable::is_disk_full(&e) => {
                        status.report_disk_full();
                        if !reported {
                            crate::log::warn("disk full: cannot prepare the next wal segment; retrying", &[("error", e.to_string())]);
                            reported = true;
                        }
                        std::thread::sleep(DISK_FULL_RETRY);
                    }
                    other => return other,
                }
            }
        })))
    }

    /// Moves to the next segment (prepared in the background unless `bytes` needs a bigger one).
    async fn roll(&mut self, bytes: u64) {
        let next = self.pos.segment + 1;
        let bytes = align_up(bytes) + WAL_BLOCK_BYTES;
        if self.prepared.is_none() || bytes > self.new_segment_bytes {
            if let Some(p) = self.prepared.take() {
                let _ = p.await; // finish the regular one before replacing it
            }
            self.prepared = Some(self.prepare(next, self.new_segment_bytes.max(bytes)));
        }
        if let Err(e) = self.prepared.take().expect("set above").await {
            fatal(&format!("cannot create wal segment {next}: {e}"));
        }
        crate::failpoint::crash("wal-roll-before-open");
        let path = segment_path(&self.dir, next);
        let file = match open_segment(&path).await {
            Ok(f) => f,
            Err(e) => fatal(&format!("cannot open wal segment {}: {e}", path.display())),
        };
        let size = match file.file_size().await {
            Ok(s) => s,
            Err(e) => fatal(&format!("cannot stat wal segment {}: {e}", path.display())),
        };
        let old = std::mem::replace(&mut self.file, file);
        let _ = old.close().await;
        self.closed.push((self.pos.segment, self.max_seq));
        self.pos = Position { segment: next, offset_bytes: 0 };
        self.tail_block.clear();
        self.segment_size_bytes = size;
        self.max_seq = 0;
        crate::failpoint::crash("wal-roll-before-write");
    }
}

/// Opens a segment for durable direct writes: with O_DSYNC a write returns once its data is on
/// disk. (glommio adds O_DIRECT, and leaves it out on tmpfs, which has no disk to bypass.)
async fn open_segment(path: &std::path::Path) -> glommio::Result<DmaFile, ()> {
    OpenOptions::new().read(true).write(true).custom_flags(libc::O_DSYNC).dma_open(path).await
}

/// The bytes of the block holding `offset`, before `offset` (the written part of that block).
async fn read_tail_block(file: &DmaFile, offset: u64) -> std::io::Result<Vec<u8>> {
    let start = offset - offset % WAL_BLOCK_BYTES;
    let len = (offset - start) as usize;
    if len == 0 {
        return Ok(Vec::new());
    }
    let read = file.read_at(start, len).await.map_err(|e| std::io::Error::other(e.to_string()))?;
    if read.len() != len {
        return Err(std::io::Error::other(format!("short read of the wal tail block: {} of {len} bytes", read.len())));
    }
    Ok(read.to_vec())
}

/// `n` rounded up to a whole number of blocks.
pub fn align_up(n: u64) -> u64 {
    n.div_ceil(WAL_BLOCK_BYTES) * WAL_BLOCK_BYTES
}

/// The spare segments in `dir`; deletes the released segments a crash left half deleted
/// (`deleting_path`).
fn find_spares_deleting_leftovers(dir: &std::path::Path) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir) else { return Vec::new() };
    let paths: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
    for p in paths.iter().filter(|p| p.extension().is_some_and(|x| x == "deleting")) {
        if let Err(e) = std::fs::remove_file(p) {
            crate::log::warn("cannot delete a released wal segment", &[("path", p.display().to_string()), ("error", e.to_string())]);
        }
    }
    paths.into_iter().filter(|p| p.extension().is_some_and(|x| x == "spare")).collect()
}

fn fatal(msg: &str) -> ! {
    crate::log::error(msg, &[]);
    std::process::abort()
}

fn retry_interrupted(mut f: impl FnMut() -> std::io::Result<usize>) -> std::io::Result<usize> {
    loop {
        match f() {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            r => return r,
        }
    }
}

//! A shard's store written to a snapshot segment: the glue between the store (which cuts its
//! records chunk by chunk) and the segment codec, with the file written through glommio's
//! io_uring. The writer takes one chunk between writes, so the shard keeps serving while its
//! snapshot is written (physical compaction waits until the snapshot is done, so history at the
//! snapshot revision stays). Loading goes the other way through `segment::read` and
//! `Store::restore`.

use std::cell::RefCell;
use std::path::PathBuf;
use std::time::Duration;

use super::segment::{ChunkSink, Encoder, Packed, SegmentInfo};
use super::store::{ChunkBound, SnapCursor, Store};
use crate::writeback::{push, Pacer};

/// Keys per chunk (one rkyv block, one write). Cutting and serializing a chunk, and adopting
/// one after the write, run on the shard between its other work: 4096 keys made bursts of a few
/// ms, which put 1000 clients' p99 at 50-52 ms when a snapshot fell in the run; 512 gave 31-37 ms.
const CHUNK_KEYS: usize = 512;
/// Writes of the change log listed per step for a delta (`keys_written`). Debug builds (the
/// tests' servers) take a few a step, so that the tests' small deltas list over several steps
/// with writes applied between them.
const LIST_STEP_WRITES: usize = if cfg!(debug_assertions) { 2 } else { 4096 };
/// Bytes of records per chunk, at most about: 100 clients compare-and-swapping 100 keys gave a
/// delta snapshot 100k records of one chunk (70-100 ms of cutting and encoding in one step, a
/// full one 900k: 730 ms), which made their p99.9 85-88 ms.
const CHUNK_BYTES: u64 = 256 << 10;
/// A chunk's time on the shard at most, however slow its keys' memory is: a delta after a
/// million revisions spent 48-80 ms on its first ~300 keys (see `CHUNK_CLOCK_KEYS`), and a
/// writer's puts waited up to 99 ms. The bench's `pauses` baseline holds such a delta: its
/// p99 was 8.0-8.1 ms with no time bound, 4.5-4.6 ms with chunks of 1 ms, 2.8-2.9 with 250 µs.
const CHUNK_TIME: Duration = Duration::from_micros(250);
const CHUNK_BOUND: ChunkBound = ChunkBound { max_keys: CHUNK_KEYS, max_bytes: CHUNK_BYTES, time: Some(CHUNK_TIME) };

/// Writes the records of `store` after `since` (0: all) up to `rev` to `path` through io_uring
/// and fdatasyncs it.
pub async fn write_segment(path: PathBuf, store: &RefCell<Store>, since: i64, rev: i64) -> std::io::Result<SegmentInfo> {
    let file = glommio::io::BufferedFile::create(&path).await?;
    let mut encoder = Encoder::default();
    let mut pacer = Pacer::default();
    let mut from: Option<SnapCursor> = None;
    let written = keys_written(store, since, rev).await;
    loop {
        let (chunk, next) = store.borrow().snapshot_chunk::<Packed>(from.as_ref(), since, rev, written.as_deref(), CHUNK_BOUND);
        if chunk.keys() == 0 {
            crate::background::step_aside().await; // let the shard serve between scans
        } else {
            encoder.chunk(chunk)?;
            write_all(&file, encoder.take()).await?;
            pace(&mut pacer, &file, encoder.size_bytes()).await?;
        }
        match next {
            Some(c) => from = Some(c),
            None => break,
        }
    }
    crate::failpoint::crash("snapshot-segment-unfinished");
    encoder.finish();
    write_all(&file, encoder.take()).await?;
    crate::metrics::handles().io_uring_fsyncs.increment(1);
    file.fdatasync().await?;
    file.close().await?;
    Ok(SegmentInfo { path, size_bytes: encoder.size_bytes(), keys: encoder.keys(), crc32c: encoder.crc32c() })
}

/// The keys a delta visits instead of every key (`Store::keys_written_step`), if any: listed a
/// step at a time so the shard serves between steps, then sorted on a blocking thread (52k keys
/// took 8.8 ms to copy and sort in one go).
async fn keys_written(store: &RefCell<Store>, since: i64, rev: i64) -> Option<Vec<Box<[u8]>>> {
    let (mut keys, mut after) = (Vec::new(), None);
    loop {
        // Its own statement: the store's borrow must end before the await below.
        let step = store.borrow().keys_written_step(since, rev, after, LIST_STEP_WRITES, &mut keys)?;
        let Some(next) = step else { break };
        after = Some(next);
        crate::background::step_aside().await;
    }
    Some(
        glommio::executor()
            .spawn_blocking(move || {
                keys.sort_unstable();
                keys.dedup();
                keys
            })
            .await,
    )
}

/// Pushes the segment's bytes to the disk as they are written, at `writeback`'s pace, so the
/// WAL's durable writes never queue behind the whole segment (see `crate::writeback`).
async fn pace(pacer: &mut Pacer, file: &glommio::io::BufferedFile, written_bytes: u64) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let Some((offset, len)) = pacer.due(written_bytes) else { return Ok(()) };
    let fd = file.as_raw_fd();
    // The file stays open: this task owns it and awaits the push.
    glommio::executor().spawn_blocking(move || push(fd, offset, len)).await?;
    glommio::timer::sleep(pacer.pushed(offset + len)).await;
    Ok(())
}

async fn write_all(file: &glommio::io::BufferedFile, (at, data): (u64, Vec<u8>)) -> std::io::Result<()> {
    let len = data.len();
    crate::metrics::handles().io_uring_writes.increment(1);
    let n = file.write_at(data, at).await?;
    if n != len {
        // A short write means the file system ran out of room (or of file size).
        return Err(std::io::Error::new(std::io::ErrorKind::StorageFull, format!("short write: {n} of {len} bytes")));
    }
    Ok(())
}

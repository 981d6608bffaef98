//! The writer of one WAL stripe, owned by one shard's glommio executor. Writes go through
//! io_uring (glommio files); `append` returns only after fdatasync, and a failed write or sync
//! aborts the process: after a failed fsync the page cache may have dropped the data, so
//! retrying could acknowledge a write that is not on disk.

use std::path::PathBuf;

use glommio::io::{BufferedFile, OpenOptions};

use super::record::{encode, Batch};
use crate::metrics as m;
use super::{create_segment, segment_path, Position};

pub struct Stripe {
    dir: PathBuf,
    file: BufferedFile,
    pos: Position,
    segment_size_bytes: u64,
    buf: Vec<u8>,
    /// Segments before the current one, with the last raft index each holds.
    closed: Vec<(u64, u64)>,
    /// Last raft index written to the current segment (0 = none).
    last_index: u64,
    /// Size of new segments; a batch larger than this gets a segment of its own size.
    new_segment_bytes: u64,
}

impl Stripe {
    /// Opens the stripe to append at `pos`; `closed` are the older segments (from recovery).
    pub async fn open(
        dir: PathBuf,
        pos: Position,
        closed: Vec<(u64, u64)>,
        last_index: u64,
        new_segment_bytes: u64,
    ) -> std::io::Result<Stripe> {
        let path = segment_path(&dir, pos.segment);
        let file = OpenOptions::new().read(true).write(true).buffered_open(&path).await?;
        let segment_size_bytes = file.file_size().await?;
        Ok(Stripe { dir, file, pos, segment_size_bytes, buf: Vec::new(), closed, last_index, new_segment_bytes })
    }

    /// Deletes the closed segments whose entries all lie at or below `index` (covered by a
    /// snapshot). The current segment always stays: it holds the newest hard state.
    pub fn release_through(&mut self, index: u64) {
        self.closed.retain(|&(segment, last)| {
            if last > index {
                return true;
            }
            if let Err(e) = std::fs::remove_file(segment_path(&self.dir, segment)) {
                crate::log::warn("cannot remove released wal segment", &[("segment", segment.to_string()), ("error", e.to_string())]);
                return true;
            }
            false
        });
    }

    /// Writes one batch and syncs it (group commit: one fdatasync for every entry in it).
    pub async fn append(&mut self, batch: &Batch) {
        self.buf.clear();
        encode(batch, &mut self.buf);
        let record_bytes = self.buf.len() as u64;
        if self.pos.offset_bytes + record_bytes > self.segment_size_bytes {
            self.roll(record_bytes).await;
        }
        let data = std::mem::take(&mut self.buf);
        metrics::counter!(m::IO_URING_SUBMISSIONS, "kind" => "write").increment(1);
        let written = self.file.write_at(data, self.pos.offset_bytes).await;
        match written {
            Ok(n) if n as u64 == record_bytes => {}
            Ok(n) => fatal(&format!("short wal write: {n} of {record_bytes} bytes")),
            Err(e) => fatal(&format!("wal write failed: {e}")),
        }
        metrics::counter!(m::IO_URING_SUBMISSIONS, "kind" => "fsync").increment(1);
        let sync_started = std::time::Instant::now();
        if let Err(e) = self.file.fdatasync().await {
            fatal(&format!("wal fdatasync failed: {e}"));
        }
        metrics::histogram!(m::WAL_FSYNC_SECONDS).record(sync_started.elapsed().as_secs_f64());
        metrics::histogram!(m::WAL_BATCH_ENTRIES).record(batch.entries.len() as f64);
        metrics::histogram!(m::WAL_BATCH_BYTES).record(record_bytes as f64);
        self.pos.offset_bytes += record_bytes;
        if let Some(e) = batch.entries.last() {
            self.last_index = e.index;
        }
    }

    /// Moves to a fresh zero-filled segment big enough for the next record.
    async fn roll(&mut self, record_bytes: u64) {
        let next = self.pos.segment + 1;
        let size = self.new_segment_bytes.max(record_bytes);
        if let Err(e) = create_segment(&self.dir, next, size) {
            fatal(&format!("cannot create wal segment {next}: {e}"));
        }
        let path = segment_path(&self.dir, next);
        let file = match OpenOptions::new().read(true).write(true).buffered_open(&path).await {
            Ok(f) => f,
            Err(e) => fatal(&format!("cannot open wal segment {}: {e}", path.display())),
        };
        let old = std::mem::replace(&mut self.file, file);
        let _ = old.close().await;
        self.closed.push((self.pos.segment, self.last_index));
        self.pos = Position { segment: next, offset_bytes: 0 };
        self.segment_size_bytes = size;
    }
}

fn fatal(msg: &str) -> ! {
    crate::log::error(msg, &[]);
    std::process::abort()
}

//! The writer of one WAL stripe, owned by one shard's glommio executor. Writes go through
//! io_uring (glommio files); `append` returns only after fdatasync, and a failed write or sync
//! aborts the process: after a failed fsync the page cache may have dropped the data, so
//! retrying could acknowledge a write that is not on disk.

use std::path::PathBuf;

use glommio::io::{BufferedFile, OpenOptions};

use super::record::{encode, Batch};
use super::{create_segment, segment_path, Position, SEGMENT_SIZE_BYTES};

pub struct Stripe {
    dir: PathBuf,
    file: BufferedFile,
    pos: Position,
    segment_size_bytes: u64,
    buf: Vec<u8>,
}

impl Stripe {
    pub async fn open(dir: PathBuf, pos: Position) -> std::io::Result<Stripe> {
        let path = segment_path(&dir, pos.segment);
        let file = OpenOptions::new().read(true).write(true).buffered_open(&path).await?;
        let segment_size_bytes = file.file_size().await?;
        Ok(Stripe { dir, file, pos, segment_size_bytes, buf: Vec::new() })
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
        let written = self.file.write_at(data, self.pos.offset_bytes).await;
        match written {
            Ok(n) if n as u64 == record_bytes => {}
            Ok(n) => fatal(&format!("short wal write: {n} of {record_bytes} bytes")),
            Err(e) => fatal(&format!("wal write failed: {e}")),
        }
        if let Err(e) = self.file.fdatasync().await {
            fatal(&format!("wal fdatasync failed: {e}"));
        }
        self.pos.offset_bytes += record_bytes;
    }

    /// Moves to a fresh zero-filled segment big enough for the next record.
    async fn roll(&mut self, record_bytes: u64) {
        let next = self.pos.segment + 1;
        let size = SEGMENT_SIZE_BYTES.max(record_bytes);
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
        self.pos = Position { segment: next, offset_bytes: 0 };
        self.segment_size_bytes = size;
    }
}

fn fatal(msg: &str) -> ! {
    crate::log::error(msg, &[]);
    std::process::abort()
}

//! Reads one stripe back at boot: every segment in order, every batch in sequence order.
//! A damaged record in the newest segment is a torn write from a crash: the rest of that
//! segment is zeroed and writing resumes there. Damage in an older segment means data loss,
//! and boot refuses with the file and offset. A batch starting at an index already in the log
//! replaces the tail from there (a raft conflict resolved before the crash). Segments wholly
//! covered by a snapshot are deleted, so the log read back may start at any index.

use std::path::{Path, PathBuf};

use raft::eraftpb::{Entry, HardState};

use super::record::{decode, Batch, Decoded};
use super::{create_segment, segment_path, Position};

#[derive(Debug, Default)]
pub struct Recovered {
    pub hard_state: HardState,
    pub entries: Vec<Entry>,
    /// Sequence number of the last batch read (0 = none).
    pub last_seq: u64,
    pub tail: Position,
    /// Every segment before the tail one, with the last raft index it holds (0 = none).
    pub closed: Vec<(u64, u64)>,
}

/// Reads the stripe in `dir`; an empty stripe gets its first segment of `segment_bytes`.
pub fn recover(dir: &Path, segment_bytes: u64) -> Result<Recovered, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create wal dir {}: {e}", dir.display()))?;
    let segments = list_segments(dir)?;
    if segments.is_empty() {
        create_segment(dir, 0, segment_bytes)
            .map_err(|e| format!("cannot create wal segment in {}: {e}", dir.display()))?;
        return Ok(Recovered::default());
    }
    let mut rec = Recovered::default();
    for (i, &segment) in segments.iter().enumerate() {
        let newest = i + 1 == segments.len();
        let end = read_segment(dir, segment, newest, &mut rec)?;
        if newest {
            rec.tail = Position { segment, offset_bytes: end };
        } else {
            rec.closed.push((segment, rec.entries.last().map_or(0, |e| e.index)));
        }
    }
    Ok(rec)
}

fn list_segments(dir: &Path) -> Result<Vec<u64>, String> {
    let rd = std::fs::read_dir(dir).map_err(|e| format!("cannot read wal dir {}: {e}", dir.display()))?;
    let mut segments: Vec<u64> = rd
        .filter_map(|d| d.ok())
        .filter_map(|d| {
            let name = d.file_name().into_string().ok()?;
            u64::from_str_radix(name.strip_suffix(".wal")?, 16).ok()
        })
        .collect();
    segments.sort_unstable();
    Ok(segments)
}

/// Applies every batch of one segment to `rec`; returns the offset after the last good record.
fn read_segment(dir: &Path, segment: u64, newest: bool, rec: &mut Recovered) -> Result<u64, String> {
    let path = segment_path(dir, segment);
    let buf = std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut offset = 0usize;
    loop {
        match decode(&buf[offset..]) {
            Decoded::End => return Ok(offset as u64),
            Decoded::Batch { batch, size_bytes } => {
                apply_batch(rec, batch).map_err(|why| damaged(&path, offset, why))?;
                offset += size_bytes;
            }
            Decoded::Bad(why) if newest => {
                zero_tail(&path, offset as u64, buf.len() as u64).map_err(|e| damaged(&path, offset, &e))?;
                crate::log::warn(
                    "truncated torn wal tail",
                    &[("file", path.display().to_string()), ("offset", offset.to_string()), ("reason", why.into())],
                );
                return Ok(offset as u64);
            }
            Decoded::Bad(why) => return Err(damaged(&path, offset, why)),
        }
    }
}

fn damaged(path: &PathBuf, offset: usize, why: &str) -> String {
    format!("wal: damaged record in {} at offset {offset}: {why}; refusing to start", path.display())
}

/// Segments before a snapshot are deleted, so the first batch read may have any sequence
/// number and start at any index; after it, both must continue.
fn apply_batch(rec: &mut Recovered, batch: Batch) -> Result<(), &'static str> {
    if rec.last_seq != 0 && batch.seq != rec.last_seq + 1 {
        return Err("batch sequence number out of order");
    }
    rec.last_seq = batch.seq;
    rec.hard_state = batch.hard_state;
    let Some(first) = batch.entries.first() else { return Ok(()) };
    let first_index = rec.entries.first().map_or(first.index, |e| e.index);
    if first.index < first_index || first.index > first_index + rec.entries.len() as u64 {
        return Err("entry index not contiguous with the log");
    }
    rec.entries.truncate((first.index - first_index) as usize);
    rec.entries.extend(batch.entries);
    Ok(())
}

fn zero_tail(path: &Path, from: u64, to: u64) -> Result<(), String> {
    use std::io::{Seek, SeekFrom, Write};
    let mut f = std::fs::OpenOptions::new().write(true).open(path).map_err(|e| e.to_string())?;
    f.seek(SeekFrom::Start(from)).map_err(|e| e.to_string())?;
    f.write_all(&vec![0u8; (to - from) as usize]).map_err(|e| e.to_string())?;
    f.sync_data().map_err(|e| e.to_string())
}

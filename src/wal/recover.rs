//! Reads the WAL back at boot: every stripe, every segment in order, then every batch in
//! sequence order across stripes.
//!
//! Per stripe: a damaged record in the newest segment is a torn write from a crash — the rest
//! of that segment is zeroed and writing resumes there; damage in an older segment means data
//! loss, and boot refuses with the file and offset.
//!
//! Across stripes: batches are replayed from `start_seq` (the manifest's `wal_seq_from`, or 1)
//! while their sequence numbers are consecutive. A batch after a gap was written on one stripe
//! while an earlier one on another stripe was not yet durable, so it was never acknowledged:
//! it and everything after it on its stripe are erased. Batches below `start_seq` are covered
//! by the snapshot (only their hard state still counts). A batch starting at an index already
//! in the log replaces the tail from there (a raft conflict resolved before the crash).

use std::path::{Path, PathBuf};

use raft::eraftpb::{Entry, HardState};

use super::record::{decode, Batch, Decoded};
use super::{create_segment, segment_path, Position};

/// What one stripe holds after recovery, for its writer.
#[derive(Debug, Default, Clone)]
pub struct StripeState {
    pub dir: PathBuf,
    /// Where the next record goes.
    pub tail: Position,
    /// Segments before the tail one, with the highest batch sequence each holds.
    pub closed: Vec<(u64, u64)>,
    /// Highest batch sequence in the tail segment (0 = none).
    pub tail_max_seq: u64,
}

#[derive(Debug, Default)]
pub struct Recovered {
    pub hard_state: HardState,
    /// The log from the first entry of the first replayed batch.
    pub entries: Vec<Entry>,
    /// Sequence number of the last batch replayed (next batch: `last_seq + 1`).
    pub last_seq: u64,
    /// One per stripe directory found or created (at least `stripes`).
    pub stripes: Vec<StripeState>,
}

impl StripeState {
    /// The highest batch sequence number the stripe holds (0 = none).
    pub fn max_seq(&self) -> u64 {
        self.closed.iter().map(|&(_, seq)| seq).max().unwrap_or(0).max(self.tail_max_seq)
    }
}

/// One stripe's batches in file order, with where each starts.
struct StripeLog {
    state: StripeState,
    batches: Vec<(Batch, Position)>,
}

/// Reads `stripes` stripe directories under `wal_dir` (and any older extra ones), creating
/// empty ones with a first segment of `segment_bytes`.
pub fn recover(wal_dir: &Path, stripes: usize, segment_bytes: u64, start_seq: u64) -> Result<Recovered, String> {
    let count = stripes.max(existing_stripes(wal_dir)?);
    let mut logs = Vec::with_capacity(count);
    for stripe in 0..count {
        logs.push(read_stripe(&wal_dir.join(stripe.to_string()), segment_bytes)?);
    }
    replay(logs, start_seq.max(1))
}

fn existing_stripes(wal_dir: &Path) -> Result<usize, String> {
    let rd = match std::fs::read_dir(wal_dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(format!("cannot read wal dir {}: {e}", wal_dir.display())),
    };
    let max = rd.flatten().filter_map(|d| d.file_name().to_str()?.parse::<usize>().ok()).max();
    Ok(max.map_or(0, |m| m + 1))
}

fn read_stripe(dir: &Path, segment_bytes: u64) -> Result<StripeLog, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create wal dir {}: {e}", dir.display()))?;
    let mut segments = list_segments(dir)?;
    // A segment zero-filled ahead of need and never written holds nothing: drop it, so the
    // last written segment is the newest (its torn tail, if any, is then truncated).
    while segments.len() > 1 && segment_is_empty(dir, *segments.last().unwrap())? {
        let path = segment_path(dir, segments.pop().unwrap());
        std::fs::remove_file(&path).map_err(|e| format!("cannot remove {}: {e}", path.display()))?;
    }
    let mut log = StripeLog { state: StripeState { dir: dir.to_path_buf(), ..Default::default() }, batches: Vec::new() };
    if segments.is_empty() {
        create_segment(dir, 0, segment_bytes, None).map_err(|e| format!("cannot create wal segment in {}: {e}", dir.display()))?;
        return Ok(log);
    }
    for (i, &segment) in segments.iter().enumerate() {
        let newest = i + 1 == segments.len();
        let end = read_segment(dir, segment, newest, &mut log.batches)?;
        let max_seq = log.batches.iter().rev().find(|(_, p)| p.segment == segment).map_or(0, |(b, _)| b.seq);
        if newest {
            log.state.tail = Position { segment, offset_bytes: end };
            log.state.tail_max_seq = max_seq;
        } else {
            log.state.closed.push((segment, max_seq));
        }
    }
    Ok(log)
}

fn segment_is_empty(dir: &Path, segment: u64) -> Result<bool, String> {
    use std::io::Read;
    let path = segment_path(dir, segment);
    let mut head = [0u8; super::record::HEADER_BYTES];
    let mut f = std::fs::File::open(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let n = f.read(&mut head).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    Ok(head[..n].iter().all(|&b| b == 0))
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

/// Collects every batch of one segment; returns the offset after the last good record.
fn read_segment(dir: &Path, segment: u64, newest: bool, out: &mut Vec<(Batch, Position)>) -> Result<u64, String> {
    let path = segment_path(dir, segment);
    let buf = std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut offset = 0usize;
    loop {
        match decode(&buf[offset..]) {
            Decoded::End => return Ok(offset as u64),
            Decoded::Batch { batch, size_bytes } => {
                if out.last().is_some_and(|(b, _)| b.seq >= batch.seq) {
                    return Err(damaged(&path, offset, "batch sequence numbers go backwards"));
                }
                out.push((batch, Position { segment, offset_bytes: offset as u64 }));
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

fn damaged(path: &Path, offset: usize, why: &str) -> String {
    format!("wal: damaged record in {} at offset {offset}: {why}; refusing to start", path.display())
}

fn replay(logs: Vec<StripeLog>, start_seq: u64) -> Result<Recovered, String> {
    let mut all: Vec<(u64, usize, usize)> = Vec::new(); // (seq, stripe, index in its log)
    for (s, log) in logs.iter().enumerate() {
        all.extend(log.batches.iter().enumerate().map(|(i, (b, _))| (b.seq, s, i)));
    }
    all.sort_unstable();
    if let Some(w) = all.windows(2).find(|w| w[0].0 == w[1].0) {
        return Err(format!("wal: batch sequence {} appears twice; refusing to start", w[0].0));
    }
    let mut rec = Recovered { last_seq: start_seq - 1, ..Default::default() };
    // Per stripe, the first batch erased after a gap.
    let mut erase_from: Vec<Option<usize>> = vec![None; logs.len()];
    for &(seq, s, i) in &all {
        let batch = &logs[s].batches[i].0;
        if seq < start_seq {
            rec.hard_state = batch.hard_state.clone(); // covered by the snapshot
        } else if seq == rec.last_seq + 1 && erase_from.iter().all(Option::is_none) {
            apply(&mut rec, batch).map_err(|why| format!("wal: batch {seq}: {why}; refusing to start"))?;
            rec.last_seq = seq;
        } else {
            erase_from[s].get_or_insert(i);
        }
    }
    for (log, from) in logs.into_iter().zip(erase_from) {
        rec.stripes.push(match from {
            None => log.state,
            Some(i) => erase_after(log, i)?,
        });
    }
    Ok(rec)
}

fn apply(rec: &mut Recovered, batch: &Batch) -> Result<(), &'static str> {
    rec.hard_state = batch.hard_state.clone();
    let Some(first) = batch.entries.first() else { return Ok(()) };
    let first_index = rec.entries.first().map_or(first.index, |e| e.index);
    if first.index < first_index || first.index > first_index + rec.entries.len() as u64 {
        return Err("entry index not contiguous with the log");
    }
    rec.entries.truncate((first.index - first_index) as usize);
    rec.entries.extend(batch.entries.iter().cloned());
    Ok(())
}

/// Erases batch `i` of a stripe and everything after it: zeroes its segment from there and
/// deletes the stripe's later segments. Returns the stripe's state for its writer.
fn erase_after(log: StripeLog, i: usize) -> Result<StripeState, String> {
    let (batch, pos) = &log.batches[i];
    crate::log::warn(
        "erasing wal batches written after a gap (never acknowledged)",
        &[("stripe", log.state.dir.display().to_string()), ("from-seq", batch.seq.to_string())],
    );
    let dir = &log.state.dir;
    let path = segment_path(dir, pos.segment);
    let len = std::fs::metadata(&path).map_err(|e| e.to_string())?.len();
    zero_tail(&path, pos.offset_bytes, len)?;
    let later: Vec<u64> = log.state.closed.iter().map(|&(s, _)| s).chain([log.state.tail.segment]).filter(|&s| s > pos.segment).collect();
    for segment in later {
        std::fs::remove_file(segment_path(dir, segment)).map_err(|e| e.to_string())?;
    }
    let kept = &log.batches[..i];
    Ok(StripeState {
        dir: dir.clone(),
        tail: *pos,
        closed: log.state.closed.into_iter().filter(|&(s, _)| s < pos.segment).collect(),
        tail_max_seq: kept.iter().rev().find(|(_, p)| p.segment == pos.segment).map_or(0, |(b, _)| b.seq),
    })
}

fn zero_tail(path: &Path, from: u64, to: u64) -> Result<(), String> {
    use std::io::{Seek, SeekFrom, Write};
    let mut f = std::fs::OpenOptions::new().write(true).open(path).map_err(|e| e.to_string())?;
    f.seek(SeekFrom::Start(from)).map_err(|e| e.to_string())?;
    f.write_all(&vec![0u8; (to - from) as usize]).map_err(|e| e.to_string())?;
    f.sync_data().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wal::record::encode;

    fn batch(seq: u64, index: u64) -> Batch {
        let mut e = Entry::default();
        e.index = index;
        e.term = 1;
        e.data = vec![seq as u8].into();
        Batch { seq, entries: vec![e], ..Default::default() }
    }

    fn write_stripe(dir: &Path, batches: &[Batch]) {
        std::fs::create_dir_all(dir).unwrap();
        create_segment(dir, 0, 1 << 16, None).unwrap();
        let mut buf = Vec::new();
        for b in batches {
            encode(b, &mut buf);
        }
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().write(true).open(segment_path(dir, 0)).unwrap();
        f.write_all(&buf).unwrap();
    }

    #[test]
    fn replays_across_stripes_and_erases_batches_after_a_gap() {
        let wal = std::env::temp_dir().join(format!("ballast-recover-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&wal);
        // Batch 5 never reached stripe 1: 6 was durable but never acknowledged.
        write_stripe(&wal.join("0"), &[batch(1, 1), batch(3, 3)]);
        write_stripe(&wal.join("1"), &[batch(2, 2), batch(4, 4), batch(6, 6)]);
        let rec = recover(&wal, 2, 1 << 16, 1).unwrap();
        assert_eq!(rec.last_seq, 4);
        assert_eq!(rec.entries.iter().map(|e| e.index).collect::<Vec<_>>(), [1, 2, 3, 4]);
        // Batch 6 is gone from disk: a second recovery agrees, and stripe 1 resumes where 6 was.
        let again = recover(&wal, 2, 1 << 16, 1).unwrap();
        assert_eq!(again.last_seq, 4);
        assert_eq!(again.stripes[1].tail, rec.stripes[1].tail);
        assert!(rec.stripes[1].tail.offset_bytes > 0);
        // From a snapshot's cut: batches below it only lend their hard state.
        let from3 = recover(&wal, 2, 1 << 16, 3).unwrap();
        assert_eq!(from3.entries.iter().map(|e| e.index).collect::<Vec<_>>(), [3, 4]);
        let _ = std::fs::remove_dir_all(&wal);
    }
}

//! Reads the WAL back at boot: every stripe, every segment in order, then every batch in
//! sequence order across stripes. Only what a crash can explain is repaired; everything else
//! refuses to start, naming the file and offset, so an acknowledged write is never dropped
//! silently (etcd refuses the same way).
//!
//! Per stripe, records are read up to the first that is not a valid batch (offset X):
//! * past X the segment must hold no valid record: damage followed by a valid record is not a
//!   torn tail (the raft core keeps at most one batch per stripe in flight, so a torn write is
//!   always the stripe's last record);
//! * in an older segment, a bad record at X refuses;
//! * a zero length at X must be a whole zero header inside the file: a stripe always leaves a
//!   zero block after its last record, so a segment that ends at X was cut short;
//! * in the newest segment, a zero length at X ends the written part, and a bad record there
//!   is a torn write only if one of its sectors after the first holds only zeros (a sector of
//!   the write never reached the disk, as etcd's isTornEntry decides); a complete record whose
//!   checksum fails refuses;
//! * non-zero bytes past X in the newest segment (a torn write's fragments, stale blocks) are
//!   zeroed before writing resumes, so they cannot confuse a later boot.
//!
//! Across stripes, batches are replayed from `start_seq` (the manifest's `wal_seq_from`, or 1)
//! while their sequence numbers are consecutive. At most one batch per stripe is ever in flight
//! (`raft/log_writer.rs`: a ready writes a batch only while fewer than `stripes` are unpersisted), so after
//! the first missing batch L+1 only batches up to L + stripes can exist that were never
//! acknowledged: they are erased (with everything after them on their stripe); a batch beyond
//! that window refuses. Batches below `start_seq` are covered by the snapshot (only their hard
//! state still counts). A batch starting at an index already in the log replaces the tail from
//! there (a raft conflict resolved before the crash); one starting before the replayed log's
//! first entry replaces all of it (a rewrite from below the snapshot, where a manifest of an
//! older ballast started replay). Every valid batch's commit index must be reached by the
//! replayed log (with the snapshot): a batch is written with the commit index of
//! its time, which only counts entries already durable.

use std::path::{Path, PathBuf};

use raft::eraftpb::{Entry, HardState};

use super::record::{decode, find_valid, looks_torn, Batch, Decoded};
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
    /// Sequence number replay started at (the snapshot's `wal_seq_from`, or 1).
    pub first_seq: u64,
    /// One per stripe directory found or created (at least `stripes`).
    pub stripes: Vec<StripeState>,
    /// The highest sequence number of a batch kept on disk (replayed, or covered by the
    /// snapshot; 0 = none).
    pub max_seq_found: u64,
    /// The highest commit index any valid batch records, with where that batch is.
    pub max_commit: (u64, String),
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
/// `start_seq` and `snap_index`: the snapshot's first WAL batch and raft index (1 and 0 without
/// a snapshot). Batches are erased only once every check has passed, so a refusal leaves every
/// valid record where it was (reading a stripe may already have zeroed a torn record's bytes or
/// dropped a segment that was never written: neither held a valid record).
pub fn recover(wal_dir: &Path, stripes: usize, segment_bytes: u64, start_seq: u64, snap_index: u64) -> Result<Recovered, String> {
    let count = stripes.max(existing_stripes(wal_dir)?);
    let mut logs = Vec::with_capacity(count);
    for stripe in 0..count {
        logs.push(read_stripe(&wal_dir.join(stripe.to_string()), segment_bytes)?);
    }
    replay(logs, start_seq.max(1), snap_index)
}

/// How many stripe directories `wal_dir` holds (0 if it does not exist).
pub fn existing_stripes(wal_dir: &Path) -> Result<usize, String> {
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
    check_contiguous(dir, &segments)?;
    // A segment zero-filled ahead of need and never written holds nothing: drop it, so the
    // last written segment is the newest (its torn tail, if any, is then truncated). "Nothing"
    // means no valid record anywhere in it, not just a zero head. Only the newest may: the
    // next segment is prepared once an eighth of the current one is durable, and a roll into
    // a segment precedes its first write, so a crash leaves at most one segment never written
    // after the last one written; two mean a written segment was lost (zeroed, cut to nothing).
    // The newest segment's bytes, once read here, are not read again below.
    let mut newest_bytes = None;
    if segments.len() > 1 {
        let path = segment_path(dir, *segments.last().expect("more than one segment"));
        let buf = read_file(&path)?;
        if holds_nothing(&buf) {
            let before = segment_path(dir, segments[segments.len() - 2]);
            if holds_nothing(&read_file(&before)?) {
                return Err(damaged(&before, 0, "the segment holds no record, yet a later one exists: a written segment was lost"));
            }
            std::fs::remove_file(&path).map_err(|e| format!("cannot remove {}: {e}", path.display()))?;
            crate::durable::sync_dir(dir).map_err(|e| format!("cannot sync {}: {e}", dir.display()))?;
            segments.pop();
        } else {
            newest_bytes = Some(buf);
        }
    }
    let mut log = StripeLog { state: StripeState { dir: dir.to_path_buf(), ..Default::default() }, batches: Vec::new() };
    if segments.is_empty() {
        create_segment(dir, 0, segment_bytes, None, crate::writeback::Speed::AtOnce).map_err(|e| format!("cannot create wal segment in {}: {e}", dir.display()))?;
        return Ok(log);
    }
    for (i, &segment) in segments.iter().enumerate() {
        let newest = i + 1 == segments.len();
        let cached = if newest { newest_bytes.take() } else { None };
        let buf = match cached {
            Some(buf) => buf,
            None => read_file(&segment_path(dir, segment))?,
        };
        let end = read_segment(dir, segment, buf, newest, &mut log.batches)?;
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

/// A segment's bytes that start with zeros and hold no valid record anywhere (one whose head
/// was damaged but which holds records is read, and refused, by `read_segment`).
fn holds_nothing(buf: &[u8]) -> bool {
    matches!(decode(buf), Decoded::End) && find_valid(buf, 0).is_none()
}

/// A stripe's segments are numbered without gaps: the oldest go first (released once a
/// snapshot covers them), the newest is the one written; a number missing between them is a
/// lost segment.
fn check_contiguous(dir: &Path, segments: &[u64]) -> Result<(), String> {
    match segments.windows(2).find(|w| w[1] != w[0] + 1) {
        Some(w) => Err(format!(
            "wal: segment {} is missing in {} (between {} and {}): the WAL lost a segment; refusing to start",
            segment_path(dir, w[0] + 1).display(),
            dir.display(),
            segment_path(dir, w[0]).display(),
            segment_path(dir, w[1]).display()
        )),
        None => Ok(()),
    }
}

fn read_file(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
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

/// Collects every batch of one segment; returns the offset after the last good record. The
/// rules are in the module comment.
fn read_segment(dir: &Path, segment: u64, buf: Vec<u8>, newest: bool, out: &mut Vec<(Batch, Position)>) -> Result<u64, String> {
    let path = segment_path(dir, segment);
    let mut offset = 0usize;
    let bad = loop {
        match decode(&buf[offset..]) {
            Decoded::End => break None,
            Decoded::Batch { batch, size_bytes } => {
                if out.last().is_some_and(|(b, _)| b.seq >= batch.seq) {
                    return Err(damaged(&path, offset, "batch sequence numbers go backwards"));
                }
                out.push((batch, Position { segment, offset_bytes: offset as u64 }));
                offset += size_bytes;
            }
            Decoded::Bad(why) => break Some(why),
        }
    };
    if bad.is_none() && offset + super::record::HEADER_BYTES > buf.len() {
        // A stripe always leaves a zero block after its last record (`Stripe::append`).
        return Err(damaged(&path, offset, "the file ends where the next record should start: the segment was cut short"));
    }
    if let Some(valid) = find_valid(&buf, offset + 1) {
        let why = format!("{}, and a valid record follows at offset {valid}: not a torn tail", bad.unwrap_or("zero length"));
        return Err(damaged(&path, offset, &why));
    }
    match bad {
        Some(why) if !newest => return Err(damaged(&path, offset, why)),
        Some(why) if !looks_torn(&buf[offset..], offset) => {
            return Err(damaged(&path, offset, &format!("{why} in a complete record (no sector of it is missing)")))
        }
        _ => {}
    }
    if newest {
        if let Some(last) = buf[offset..].iter().rposition(|&b| b != 0) {
            zero_tail(&path, offset as u64, (offset + last + 1) as u64).map_err(|e| damaged(&path, offset, &e))?;
            crate::log::warn(
                "truncated torn wal tail",
                &[("file", path.display().to_string()), ("offset", offset.to_string()), ("reason", bad.unwrap_or("stale bytes past the end").into())],
            );
        }
    }
    Ok(offset as u64)
}

fn damaged(path: &Path, offset: usize, why: &str) -> String {
    format!("wal: damaged record in {} at offset {offset}: {why}; refusing to start", path.display())
}

fn replay(logs: Vec<StripeLog>, start_seq: u64, snap_index: u64) -> Result<Recovered, String> {
    let mut all: Vec<(u64, usize, usize)> = Vec::new(); // (seq, stripe, index in its log)
    for (s, log) in logs.iter().enumerate() {
        all.extend(log.batches.iter().enumerate().map(|(i, (b, _))| (b.seq, s, i)));
    }
    all.sort_unstable();
    if let Some(w) = all.windows(2).find(|w| w[0].0 == w[1].0) {
        return Err(format!("wal: batch sequence {} appears twice; refusing to start", w[0].0));
    }
    let where_is = |s: usize, i: usize| {
        let pos = logs[s].batches[i].1;
        format!("{} at offset {}", segment_path(&logs[s].state.dir, pos.segment).display(), pos.offset_bytes)
    };
    let mut rec = Recovered { last_seq: start_seq - 1, first_seq: start_seq, ..Default::default() };
    // Per stripe, the first batch erased after a gap.
    let mut erase_from: Vec<Option<usize>> = vec![None; logs.len()];
    for &(seq, s, i) in &all {
        let batch = &logs[s].batches[i].0;
        if batch.hard_state.commit > rec.max_commit.0 {
            rec.max_commit = (batch.hard_state.commit, where_is(s, i));
        }
        if seq < start_seq {
            rec.hard_state = batch.hard_state.clone(); // covered by the snapshot
            rec.max_seq_found = seq;
        } else if seq == rec.last_seq + 1 && erase_from.iter().all(Option::is_none) {
            append_batch(&mut rec, batch).map_err(|why| format!("wal: batch {seq} ({}): {why}; refusing to start", where_is(s, i)))?;
            rec.last_seq = seq;
            rec.max_seq_found = seq;
        } else if seq <= rec.last_seq + logs.len() as u64 {
            erase_from[s].get_or_insert(i);
        } else {
            return Err(format!(
                "wal: batch {seq} ({}) follows missing batch {}, more than the {} batches that can be in flight at once: \
                 acknowledged writes are missing; refusing to start",
                where_is(s, i),
                rec.last_seq + 1,
                logs.len()
            ));
        }
    }
    let last = rec.entries.last().map_or(snap_index, |e| e.index).max(snap_index);
    let (commit, batch) = &rec.max_commit;
    if *commit > last {
        return Err(format!(
            "wal: the batch in {batch} records entries up to {commit} as committed, but the log recovered from the snapshot \
             (index {snap_index}) and the wal ends at {last}: committed entries are missing; refusing to start"
        ));
    }
    for (log, from) in logs.into_iter().zip(erase_from) {
        rec.stripes.push(match from {
            None => log.state,
            Some(i) => erase_after(log, i)?,
        });
    }
    Ok(rec)
}

/// Continues the recovered log with a batch: its entries replace the log from their first
/// index on (as raft's log does when a leader overwrites a conflicting suffix).
pub fn append_batch(rec: &mut Recovered, batch: &Batch) -> Result<(), &'static str> {
    rec.hard_state = batch.hard_state.clone();
    let Some(first) = batch.entries.first() else { return Ok(()) };
    let first_index = rec.entries.first().map_or(first.index, |e| e.index);
    if first.index > first_index + rec.entries.len() as u64 {
        return Err("entry index not contiguous with the log");
    }
    // (A batch from before the replayed log's first entry: a new leader rewrote the log from
    // below the snapshot, and a manifest of an older ballast started replay before the rewrite;
    // it replaces the whole replayed log, which must still continue the snapshot, as
    // `raft::storage::restore` checks.)
    rec.entries.truncate(first.index.saturating_sub(first_index) as usize);
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
    for &segment in &later {
        std::fs::remove_file(segment_path(dir, segment)).map_err(|e| e.to_string())?;
    }
    if !later.is_empty() {
        crate::durable::sync_dir(dir).map_err(|e| e.to_string())?;
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
        let e = Entry { index, term: 1, data: vec![seq as u8].into(), ..Default::default() };
        Batch { seq, entries: vec![e], ..Default::default() }
    }

    fn write_stripe(dir: &Path, batches: &[Batch]) {
        std::fs::create_dir_all(dir).unwrap();
        create_segment(dir, 0, 1 << 16, None, crate::writeback::Speed::AtOnce).unwrap();
        let mut buf = Vec::new();
        for b in batches {
            encode(b, &mut buf);
        }
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().write(true).open(segment_path(dir, 0)).unwrap();
        f.write_all(&buf).unwrap();
    }

    /// One never-written segment after the last written one is a crash's (the next one
    /// prepared, or rolled into before its first write); two, or a number missing, are a lost
    /// segment: refused, naming it, and nothing is removed.
    #[test]
    fn a_lost_segment_refuses_and_one_prepared_segment_is_dropped() {
        let wal = std::env::temp_dir().join(format!("ballast-recover-lost-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&wal);
        let dir = wal.join("0");
        write_stripe(&dir, &[batch(1, 1), batch(2, 2)]);
        create_segment(&dir, 1, 1 << 16, None, crate::writeback::Speed::AtOnce).unwrap();
        let rec = recover(&wal, 1, 1 << 16, 1, 0).unwrap();
        assert_eq!(rec.entries.len(), 2);
        assert!(!segment_path(&dir, 1).exists(), "the prepared segment was dropped");
        // Segment 1 written, then lost (zeroed), with segment 2 prepared after it.
        create_segment(&dir, 1, 1 << 16, None, crate::writeback::Speed::AtOnce).unwrap();
        create_segment(&dir, 2, 1 << 16, None, crate::writeback::Speed::AtOnce).unwrap();
        let e = recover(&wal, 1, 1 << 16, 1, 0).unwrap_err();
        assert!(e.contains("0000000000000001.wal") && e.contains("a written segment was lost"), "{e}");
        assert!(segment_path(&dir, 2).exists(), "nothing removed on a refusal");
        // Segment 1 gone altogether.
        std::fs::remove_file(segment_path(&dir, 1)).unwrap();
        let e = recover(&wal, 1, 1 << 16, 1, 0).unwrap_err();
        assert!(e.contains("0000000000000001.wal is missing"), "{e}");
        let _ = std::fs::remove_dir_all(&wal);
    }

    #[test]
    fn replays_across_stripes_and_erases_batches_after_a_gap() {
        let wal = std::env::temp_dir().join(format!("ballast-recover-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&wal);
        // Batch 5 never reached stripe 1: 6 was durable but never acknowledged.
        write_stripe(&wal.join("0"), &[batch(1, 1), batch(3, 3)]);
        write_stripe(&wal.join("1"), &[batch(2, 2), batch(4, 4), batch(6, 6)]);
        let rec = recover(&wal, 2, 1 << 16, 1, 0).unwrap();
        assert_eq!(rec.last_seq, 4);
        assert_eq!(rec.entries.iter().map(|e| e.index).collect::<Vec<_>>(), [1, 2, 3, 4]);
        // Batch 6 is gone from disk: a second recovery agrees, and stripe 1 resumes where 6 was.
        let again = recover(&wal, 2, 1 << 16, 1, 0).unwrap();
        assert_eq!(again.last_seq, 4);
        assert_eq!(again.stripes[1].tail, rec.stripes[1].tail);
        assert!(rec.stripes[1].tail.offset_bytes > 0);
        // From a snapshot's cut: batches below it only lend their hard state.
        let from3 = recover(&wal, 2, 1 << 16, 3, 0).unwrap();
        assert_eq!(from3.entries.iter().map(|e| e.index).collect::<Vec<_>>(), [3, 4]);
        let _ = std::fs::remove_dir_all(&wal);
    }

    #[test]
    fn a_batch_from_before_the_replayed_log_replaces_it_and_a_gap_refuses() {
        let mut rec = Recovered::default();
        for b in [batch(10, 21), batch(11, 22), batch(13, 14), batch(14, 15), batch(15, 16)] {
            append_batch(&mut rec, &b).unwrap();
        }
        assert_eq!(rec.entries.iter().map(|e| e.index).collect::<Vec<_>>(), [14, 15, 16]);
        assert_eq!(rec.entries[0].data, vec![13u8], "the rewrite's entry");
        append_batch(&mut rec, &batch(16, 15)).unwrap();
        assert_eq!(rec.entries.iter().map(|e| e.index).collect::<Vec<_>>(), [14, 15]);
        assert_eq!(append_batch(&mut rec, &batch(17, 17)), Err("entry index not contiguous with the log"));
    }
}

//! WAL record format. Every record:
//!
//! ```text
//! 0        4        8    9
//! +--------+--------+----+----------------------+
//! | len u32| crc u32|kind| payload (len bytes)  |   little endian; crc = crc32c(kind | payload)
//! +--------+--------+----+----------------------+
//! ```
//!
//! `len == 0` marks the end of the written part of a segment (segments are zero-filled).
//! Kind 1, a batch: `seq u64 | term u64 | vote u64 | commit u64 | n u32 | n × entry`, an entry
//! being `index u64 | term u64 | type u8 | data_len u32 | data | ctx_len u32 | ctx`.
//! `seq` numbers batches of one raft core consecutively, from 1.

use raft::eraftpb::{Entry, EntryType, HardState};

pub const HEADER_BYTES: usize = 9;
const KIND_BATCH: u8 = 1;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Batch {
    pub seq: u64,
    pub hard_state: HardState,
    pub entries: Vec<Entry>,
}

#[derive(Debug, PartialEq)]
pub enum Decoded {
    Batch { batch: Batch, size_bytes: usize },
    /// Zero length: nothing was written here.
    End,
    /// A record that is cut short or fails its checksum.
    Bad(&'static str),
}

pub fn encode(batch: &Batch, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0u8; 8]);
    out.push(KIND_BATCH);
    let hs = &batch.hard_state;
    for v in [batch.seq, hs.term, hs.vote, hs.commit] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.extend_from_slice(&(batch.entries.len() as u32).to_le_bytes());
    for e in &batch.entries {
        out.extend_from_slice(&e.index.to_le_bytes());
        out.extend_from_slice(&e.term.to_le_bytes());
        out.push(e.get_entry_type() as u8);
        for bytes in [&e.data[..], &e.context[..]] {
            out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
            out.extend_from_slice(bytes);
        }
    }
    let payload_len = (out.len() - start - HEADER_BYTES) as u32;
    let crc = crc32c::crc32c(&out[start + 8..]);
    out[start..start + 4].copy_from_slice(&payload_len.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// The unit a disk writes atomically at the least (etcd's minSectorSize): a torn write leaves
/// each such sector old or new.
pub const SECTOR_BYTES: usize = 512;

/// The offset of the first valid record at or after `from`, trying every byte offset (after
/// damage the record boundaries are unknown). Runs of zeros are skipped quickly: a record's
/// length is never zero.
pub fn find_valid(buf: &[u8], from: usize) -> Option<usize> {
    let mut off = from;
    while off + HEADER_BYTES <= buf.len() {
        if buf[off..off + 4] == [0; 4] {
            let next = buf[off..].iter().position(|&b| b != 0)?;
            off = (off + next).saturating_sub(3).max(off + 1);
            continue;
        }
        if buf[off + 8] == KIND_BATCH && matches!(decode(&buf[off..]), Decoded::Batch { .. }) {
            return Some(off);
        }
        off += 1;
    }
    None
}

/// Whether the bad record at the start of `buf` (at `file_offset` in its file) looks torn — a
/// write cut short by a crash — as etcd's isTornEntry decides: some sector after the first
/// holds only zeros where the record should be (that sector of the write never reached the
/// disk; segments are zero-filled before use). A complete record whose checksum fails is
/// damage, not a torn write; so is a record running past the end of its file (segments are
/// preallocated, so a write never ends the file: the file was cut short).
pub fn looks_torn(buf: &[u8], file_offset: usize) -> bool {
    if buf.len() < HEADER_BYTES {
        return false;
    }
    let len = u32::from_le_bytes(buf[0..4].try_into().unwrap()) as usize;
    let Some(record) = buf.get(..HEADER_BYTES + len) else { return false };
    let mut start = 0;
    while start < record.len() {
        let sector_end = (file_offset + start) / SECTOR_BYTES * SECTOR_BYTES + SECTOR_BYTES - file_offset;
        let chunk = &record[start..sector_end.min(record.len())];
        if start > 0 && chunk.iter().all(|&b| b == 0) {
            return true;
        }
        start = sector_end;
    }
    false
}

pub fn decode(buf: &[u8]) -> Decoded {
    if buf.len() < HEADER_BYTES {
        return if buf.iter().all(|&b| b == 0) { Decoded::End } else { Decoded::Bad("truncated header") };
    }
    let len = u32::from_le_bytes(buf[0..4].try_into().unwrap()) as usize;
    if len == 0 {
        return Decoded::End;
    }
    let crc = u32::from_le_bytes(buf[4..8].try_into().unwrap());
    let Some(body) = buf.get(8..HEADER_BYTES + len) else { return Decoded::Bad("truncated record") };
    if crc32c::crc32c(body) != crc {
        return Decoded::Bad("checksum mismatch");
    }
    if body[0] != KIND_BATCH {
        return Decoded::Bad("unknown record kind");
    }
    match parse_batch(&body[1..]) {
        Some(batch) => Decoded::Batch { batch, size_bytes: HEADER_BYTES + len },
        None => Decoded::Bad("malformed batch"),
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = (self.0.get(..n)?, self.0.get(n..)?);
        self.0 = rest;
        Some(head)
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = self.u32()? as usize;
        self.take(n)
    }
}

fn parse_batch(payload: &[u8]) -> Option<Batch> {
    let mut r = Reader(payload);
    let seq = r.u64()?;
    let hard_state = HardState { term: r.u64()?, vote: r.u64()?, commit: r.u64()?, ..Default::default() };
    let n = r.u32()? as usize;
    let mut entries = Vec::with_capacity(n.min(payload.len() / 21));
    for _ in 0..n {
        let mut e = Entry { index: r.u64()?, term: r.u64()?, ..Default::default() };
        e.set_entry_type(match r.take(1)?[0] {
            0 => EntryType::EntryNormal,
            1 => EntryType::EntryConfChange,
            2 => EntryType::EntryConfChangeV2,
            _ => return None,
        });
        e.data = r.bytes()?.to_vec().into();
        e.context = r.bytes()?.to_vec().into();
        entries.push(e);
    }
    r.0.is_empty().then_some(Batch { seq, hard_state, entries })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Batch {
        let e = Entry { index: 7, term: 2, data: b"hello".to_vec().into(), ..Default::default() };
        let hard_state = HardState { term: 2, commit: 6, ..Default::default() };
        Batch { seq: 3, hard_state, entries: vec![e] }
    }

    #[test]
    fn round_trips_and_detects_damage() {
        let mut buf = Vec::new();
        encode(&sample(), &mut buf);
        let size = buf.len();
        buf.extend_from_slice(&[0u8; 16]);
        assert_eq!(decode(&buf), Decoded::Batch { batch: sample(), size_bytes: size });
        assert_eq!(decode(&buf[size..]), Decoded::End);
        assert_eq!(decode(&buf[..size - 1]), Decoded::Bad("truncated record"));
        buf[HEADER_BYTES + 3] ^= 1;
        assert_eq!(decode(&buf), Decoded::Bad("checksum mismatch"));
        assert!(!looks_torn(&buf, 0), "a flipped bit in a whole record is damage");
    }

    #[test]
    fn finds_valid_records_after_damage_and_tells_torn_from_damaged() {
        let mut big = sample();
        big.entries[0].data = vec![7u8; 2000].into();
        let mut buf = vec![0u8; 100];
        encode(&big, &mut buf);
        let end = buf.len();
        buf.extend_from_slice(&[0u8; 4096]);
        assert_eq!(find_valid(&buf, 0), Some(100));
        assert_eq!(find_valid(&buf, 101), None);
        // The record's third sector never landed: torn.
        let mut torn = buf.clone();
        torn[1024..1536].fill(0);
        assert!(matches!(decode(&torn[100..]), Decoded::Bad(_)));
        assert!(looks_torn(&torn[100..end + 100], 100));
        // A flipped byte instead: damage.
        let mut flipped = buf.clone();
        flipped[1200] ^= 0x10;
        assert!(!looks_torn(&flipped[100..], 100));
    }
}

//! Snapshot segments: one immutable file per shard per snapshot. A full segment holds every key
//! of the shard with the history a read at or below the snapshot revision may need; a delta
//! segment only the records written since the previous snapshot's revision (see snapshot/mod.rs).
//!
//! ```text
//! "BSEG0003" | block* | end
//! block = pad | len u32 | crc32c u32 | rkyv(Chunk) (len bytes)   little endian; pad = zeros so
//!         that the rkyv bytes start 16-byte aligned in the file
//! end   = pad | len 0 | crc 0
//! ```
//!
//! Chunks hold keys in key order. This file is the codec only, with no IO runtime and no
//! store: `Encoder` turns chunks of keys into the file's bytes (the caller writes them, see
//! persist.rs for a shard's), `Reader` maps a file and checks each block (CRC, then rkyv's
//! validated access) in place: values are not copied but referenced in the mapping
//! (`value::MappedBytes`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rkyv::rancor;

use super::index::Record;
use super::value::{Mapping, Value};

const MAGIC: &[u8; 8] = b"BSEG0003";
/// Segments of the format before sub revisions (`SegRecord::sub`); not readable any more.
const MAGIC_V2: &[u8; 8] = b"BSEG0002";
const ALIGN: usize = 16;
const BLOCK_HEAD: usize = 8;

/// A key with its history, as loaded from a segment or cut for one.
#[derive(Debug, Clone, PartialEq)]
pub struct SegKey {
    pub key: Vec<u8>,
    pub records: Vec<Record>,
}

#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct SegRecord {
    pub mod_rev: i64,
    pub sub: u32,
    pub create_rev: i64,
    pub version: i64,
    pub lease: i64,
    pub value: Vec<u8>,
}

#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct SegEntry {
    pub key: Vec<u8>,
    pub records: Vec<SegRecord>,
}

#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Chunk {
    pub keys: Vec<SegEntry>,
}

#[derive(Debug, Clone)]
pub struct SegmentInfo {
    pub path: PathBuf,
    pub size_bytes: u64,
    pub keys: u64,
}

/// Zero bytes that put a block's payload at an aligned file offset.
fn pad_before_block(pos: usize) -> usize {
    (ALIGN - (pos + BLOCK_HEAD) % ALIGN) % ALIGN
}

fn frame(payload: &[u8], pos: usize, out: &mut Vec<u8>) {
    out.resize(out.len() + pad_before_block(pos + out.len()), 0);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(payload).to_le_bytes());
    out.extend_from_slice(payload);
}

fn to_seg(k: SegKey) -> SegEntry {
    let records = k
        .records
        .into_iter()
        .map(|r| SegRecord {
            mod_rev: r.mod_rev,
            sub: r.sub,
            create_rev: r.create_rev,
            version: r.version,
            lease: r.lease,
            value: r.value.as_slice().to_vec(),
        })
        .collect();
    SegEntry { key: k.key, records }
}

/// Per mapping, the span of the mapped values of `chunk` (keys in order, so a chunk's values
/// sit close together in an older segment).
fn mapped_ranges(chunk: &[SegKey]) -> Vec<(Arc<Mapping>, std::ops::Range<usize>)> {
    let mut spans: Vec<(Arc<Mapping>, std::ops::Range<usize>)> = Vec::new();
    for r in chunk.iter().flat_map(|k| &k.records) {
        let Value::Mapped(m) = &r.value else { continue };
        let (map, range) = m.range();
        match spans.iter_mut().find(|(seen, _)| Arc::ptr_eq(seen, map)) {
            Some((_, span)) => *span = span.start.min(range.start)..span.end.max(range.end),
            None => spans.push((map.clone(), range)),
        }
    }
    spans
}

/// Encodes a segment chunk by chunk, doing no IO: `chunk` and `finish` append framed blocks,
/// `take` hands out the bytes not taken yet with the file offset they go to. The caller writes
/// every taken piece, in order.
pub struct Encoder {
    pending: Vec<u8>,
    taken_bytes: u64,
    keys: u64,
}

impl Default for Encoder {
    fn default() -> Encoder {
        Encoder { pending: MAGIC.to_vec(), taken_bytes: 0, keys: 0 }
    }
}

impl Encoder {
    /// Appends a block holding `keys` (in key order, after the keys of earlier chunks).
    pub fn chunk(&mut self, keys: Vec<SegKey>) -> std::io::Result<()> {
        let read = mapped_ranges(&keys);
        let entries: Vec<SegEntry> = keys.into_iter().map(to_seg).collect();
        // Copying the values read the older segments' pages; keep them out of the resident set.
        for (map, range) in read {
            map.release_range(range.start, range.end);
        }
        self.keys += entries.len() as u64;
        let bytes = rkyv::to_bytes::<rancor::Error>(&Chunk { keys: entries }).map_err(std::io::Error::other)?;
        frame(&bytes, self.taken_bytes as usize, &mut self.pending);
        Ok(())
    }

    /// Appends the end marker: len 0, crc32c("") = 0.
    pub fn finish(&mut self) {
        frame(&[], self.taken_bytes as usize, &mut self.pending);
    }

    /// The bytes appended since the last take, and the file offset they start at.
    pub fn take(&mut self) -> (u64, Vec<u8>) {
        let at = self.taken_bytes;
        let bytes = std::mem::take(&mut self.pending);
        self.taken_bytes += bytes.len() as u64;
        (at, bytes)
    }

    /// The file's size so far (the bytes taken).
    pub fn size_bytes(&self) -> u64 {
        self.taken_bytes
    }

    pub fn keys(&self) -> u64 {
        self.keys
    }
}

/// A mapped segment, read block by block with every block validated.
pub struct Reader {
    path: PathBuf,
    map: Arc<Mapping>,
    pos: usize,
    /// Offset below which the read pages were dropped from the resident set.
    released: usize,
}

impl Reader {
    pub fn open(path: &Path) -> Result<Reader, String> {
        let map = Mapping::open(path).map_err(|e| format!("snapshot segment {}: {e} (at offset 0)", path.display()))?;
        match map.bytes().get(..MAGIC.len()) {
            Some(m) if m == MAGIC => {}
            Some(m) if m == MAGIC_V2 => {
                return Err(format!("snapshot segment {}: written by an older ballast (format 2 at offset 0, before sub revisions); this version cannot read it", path.display()))
            }
            _ => return Err(format!("snapshot segment {}: not a ballast segment (magic at offset 0)", path.display())),
        }
        Ok(Reader { path: path.to_path_buf(), map, pos: MAGIC.len(), released: 0 })
    }

    /// Drops the pages of the blocks read so far from the resident set (a full pass touches
    /// every page: the CRC reads it all), so a pass costs resident memory for one block at a
    /// time, not for the whole segment. Chunks taken before stay valid (pages fault back in).
    pub fn release_read(&mut self) {
        self.released = self.map.release_range(self.released, self.pos);
    }

    pub fn mapping(&self) -> &Arc<Mapping> {
        &self.map
    }

    /// The next chunk, validated in place; `None` at the end marker.
    pub fn next_chunk(&mut self) -> Result<Option<&ArchivedChunk>, String> {
        let bad = |why: String| format!("snapshot segment {}: {why}", self.path.display());
        let data = self.map.bytes();
        let off = self.pos + pad_before_block(self.pos);
        let head = data.get(off..off + BLOCK_HEAD).ok_or_else(|| bad(format!("truncated at offset {off}")))?;
        let len = u32::from_le_bytes(head[..4].try_into().unwrap()) as usize;
        let crc = u32::from_le_bytes(head[4..].try_into().unwrap());
        if len == 0 {
            return Ok(None);
        }
        let body = data.get(off + BLOCK_HEAD..off + BLOCK_HEAD + len).ok_or_else(|| bad(format!("truncated at offset {off}")))?;
        if crc32c::crc32c(body) != crc {
            return Err(bad(format!("checksum mismatch at offset {off}")));
        }
        let chunk = rkyv::access::<ArchivedChunk, rancor::Error>(body).map_err(|e| bad(format!("offset {off}: {e}")))?;
        self.pos = off + BLOCK_HEAD + len;
        Ok(Some(chunk))
    }
}

/// A key of a segment, with its values left in the mapping.
pub fn load_key(map: &Arc<Mapping>, e: &ArchivedSegEntry) -> SegKey {
    let records = e
        .records
        .iter()
        .map(|r| Record {
            mod_rev: r.mod_rev.to_native(),
            sub: r.sub.to_native(),
            create_rev: r.create_rev.to_native(),
            version: r.version.to_native(),
            lease: r.lease.to_native(),
            value: Value::mapped_or_copied(map, r.value.as_slice()),
        })
        .collect();
    SegKey { key: e.key.as_slice().to_vec(), records }
}

/// Checks every block of a segment (checksum and layout) without keeping its keys: a segment
/// copied from another member is checked before anything relies on it.
pub fn verify(path: &Path) -> Result<(), String> {
    let mut reader = Reader::open(path)?;
    while reader.next_chunk()?.is_some() {
        reader.release_read();
    }
    reader.mapping().release_resident();
    Ok(())
}

/// Every key of a segment (values mapped, not copied).
pub fn read(path: &Path) -> Result<Vec<SegKey>, String> {
    let mut reader = Reader::open(path)?;
    let map = reader.mapping().clone();
    let mut keys = Vec::new();
    while let Some(chunk) = reader.next_chunk()? {
        keys.extend(chunk.keys.iter().map(|e| load_key(&map, e)));
        reader.release_read();
    }
    map.release_resident();
    Ok(keys)
}


#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u32) -> SegKey {
        let record = |rev: i64, value: Vec<u8>| Record { mod_rev: rev, sub: i % 2, create_rev: 2, version: rev - 1, lease: i64::from(i % 3), value: value.into() };
        SegKey { key: format!("k{i:04}").into_bytes(), records: vec![record(2, vec![b'v'; i as usize % 37]), record(3, vec![])] }
    }

    fn encode(chunks: &[std::ops::Range<u32>]) -> Vec<u8> {
        let mut encoder = Encoder::default();
        let mut file = Vec::new();
        for chunk in chunks {
            encoder.chunk(chunk.clone().map(key).collect()).unwrap();
            let (at, bytes) = encoder.take();
            assert_eq!(at, file.len() as u64);
            file.extend(bytes);
        }
        encoder.finish();
        file.extend(encoder.take().1);
        assert_eq!(encoder.size_bytes(), file.len() as u64);
        file
    }

    #[test]
    fn encoded_segment_reads_back_without_a_runtime() {
        let path = std::env::temp_dir().join(format!("ballast-segment-{}", std::process::id()));
        std::fs::write(&path, encode(&[0..3, 3..700, 700..701])).unwrap();
        let keys = read(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(keys, (0..701).map(key).collect::<Vec<_>>());
    }

    /// The bytes of a segment are ballast's on-disk format: a change here needs a new MAGIC.
    #[test]
    fn format_is_stable() {
        let file = encode(&[0..2, 2..5]);
        assert_eq!(&file[..8], MAGIC);
        assert_eq!((file.len(), crc32c::crc32c(&file)), (656, 3_282_667_206));
    }
}

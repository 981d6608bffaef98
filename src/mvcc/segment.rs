//! Snapshot segments: one immutable file per shard per snapshot. A full segment holds every key
//! of the shard with the history a read at or below the snapshot revision may need; a delta
//! segment only the records written since the previous snapshot's revision (see snapshot.rs).
//!
//! ```text
//! "BSEG0003" | block* | end
//! block = pad | len u32 | crc32c u32 | rkyv(Chunk) (len bytes)   little endian; pad = zeros so
//!         that the rkyv bytes start 16-byte aligned in the file
//! end   = pad | len 0 | crc 0
//! ```
//!
//! Chunks hold up to `CHUNK_KEYS` keys in key order. The writer reads the store chunk by chunk
//! between writes, so the shard keeps serving while its snapshot is written (physical
//! compaction waits until the snapshot is done, so history at the snapshot revision stays).
//! Readers map the file and check each block (CRC, then rkyv's validated access) in place:
//! values are not copied but referenced in the mapping (`value::MappedBytes`).

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rkyv::rancor;

use super::index::Record;
use super::store::Store;
use super::value::{Mapping, MappedBytes, Value};

const MAGIC: &[u8; 8] = b"BSEG0003";
/// Segments of the format before sub revisions (`SegRecord::sub`); not readable any more.
const MAGIC_V2: &[u8; 8] = b"BSEG0002";
/// Keys per chunk (one rkyv block, one write). Cutting and serializing a chunk, and adopting
/// one after the write, run on the shard between its other work: 4096 keys made bursts of a few
/// ms, which put 1000 clients' p99 at 50-52 ms when a snapshot fell in the run; 512 gave 31-37 ms.
const CHUNK_KEYS: usize = 512;
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

/// Writes the records of `store` after `since` (0: all) up to `rev` to `path` through io_uring
/// and fdatasyncs it.
pub async fn write(path: PathBuf, store: &RefCell<Store>, since: i64, rev: i64) -> std::io::Result<SegmentInfo> {
    let file = glommio::io::BufferedFile::create(&path).await?;
    let mut pos = 0u64;
    let mut keys = 0u64;
    let mut after: Option<Vec<u8>> = None;
    let mut buf = MAGIC.to_vec();
    loop {
        let (chunk, next) = store.borrow().snapshot_chunk(after.as_deref(), since, rev, CHUNK_KEYS);
        if chunk.is_empty() {
            glommio::executor().yield_now().await; // let the shard serve between scans
        } else {
            let read = mapped_ranges(&chunk);
            let entries: Vec<SegEntry> = chunk.into_iter().map(to_seg).collect();
            // Copying the values read the older segments' pages; keep them out of the resident set.
            for (map, range) in read {
                map.release_range(range.start, range.end);
            }
            keys += entries.len() as u64;
            let bytes = rkyv::to_bytes::<rancor::Error>(&Chunk { keys: entries }).map_err(std::io::Error::other)?;
            frame(&bytes, pos as usize, &mut buf);
            pos += write_all(&file, std::mem::take(&mut buf), pos).await?;
        }
        match next {
            Some(k) => after = Some(k),
            None => break,
        }
    }
    crate::failpoint::crash("snapshot-segment-unfinished");
    frame(&[], pos as usize, &mut buf); // the end marker: len 0, crc32c("") = 0
    pos += write_all(&file, buf, pos).await?;
    metrics::counter!(crate::metrics::IO_URING_SUBMISSIONS, "kind" => "fsync").increment(1);
    file.fdatasync().await?;
    file.close().await?;
    Ok(SegmentInfo { path, size_bytes: pos, keys })
}

async fn write_all(file: &glommio::io::BufferedFile, data: Vec<u8>, pos: u64) -> std::io::Result<u64> {
    let len = data.len();
    metrics::counter!(crate::metrics::IO_URING_SUBMISSIONS, "kind" => "write").increment(1);
    let n = file.write_at(data, pos).await?;
    if n != len {
        // A short write means the file system ran out of room (or of file size).
        return Err(std::io::Error::new(std::io::ErrorKind::StorageFull, format!("short write: {n} of {len} bytes")));
    }
    Ok(len as u64)
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
            value: Value::Mapped(MappedBytes::new(map, r.value.as_slice())),
        })
        .collect();
    SegKey { key: e.key.as_slice().to_vec(), records }
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

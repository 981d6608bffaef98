//! Snapshot segments: one immutable file per shard per snapshot, holding every key of the
//! shard with the history a read at or below the snapshot revision may need.
//!
//! ```text
//! "BSEG0001" | block* | end
//! block = len u32 | crc32c u32 | rkyv(Chunk) (len bytes)      little endian
//! end   = len 0   | crc 0
//! ```
//!
//! Chunks hold up to `CHUNK_KEYS` keys in key order. The writer reads the store chunk by
//! chunk between writes, so the shard keeps serving while its snapshot is written (physical
//! compaction waits until the snapshot is done, so history at the snapshot revision stays).
//! Blocks are validated (CRC, then rkyv's checked access) when read back at boot.

use std::cell::RefCell;
use std::path::{Path, PathBuf};

use rkyv::rancor;

use super::index::Record;
use super::store::Store;

const MAGIC: &[u8; 8] = b"BSEG0001";
/// Keys per chunk (one rkyv block, one write).
const CHUNK_KEYS: usize = 4096;

#[derive(Debug, Clone, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct SegKey {
    pub key: Vec<u8>,
    pub records: Vec<Record>,
}

#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
struct Chunk {
    keys: Vec<SegKey>,
}

#[derive(Debug, Clone)]
pub struct SegmentInfo {
    pub path: PathBuf,
    pub size_bytes: u64,
    pub keys: u64,
}

fn frame(payload: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(payload).to_le_bytes());
    out.extend_from_slice(payload);
}

/// Writes `store` as of `rev` to `path` through io_uring and fdatasyncs it.
pub async fn write(path: PathBuf, store: &RefCell<Store>, rev: i64) -> std::io::Result<SegmentInfo> {
    let file = glommio::io::BufferedFile::create(&path).await?;
    let mut pos = 0u64;
    let mut keys = 0u64;
    let mut after: Option<Vec<u8>> = None;
    let mut buf = MAGIC.to_vec();
    loop {
        let chunk = store.borrow().snapshot_chunk(after.as_deref(), rev, CHUNK_KEYS);
        let Some(last) = chunk.last() else { break };
        after = Some(last.key.clone());
        keys += chunk.iter().filter(|k| !k.records.is_empty()).count() as u64;
        let bytes = rkyv::to_bytes::<rancor::Error>(&Chunk { keys: chunk }).map_err(std::io::Error::other)?;
        frame(&bytes, &mut buf);
        pos += write_all(&file, std::mem::take(&mut buf), pos).await?;
    }
    buf.extend_from_slice(&[0u8; 8]);
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
        return Err(std::io::Error::other(format!("short write: {n} of {len} bytes")));
    }
    Ok(len as u64)
}

/// Reads a segment back, validating every block.
pub fn read(path: &Path) -> Result<Vec<SegKey>, String> {
    let bad = |why: String| format!("snapshot segment {}: {why}", path.display());
    let data = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
    if data.get(..8) != Some(&MAGIC[..]) {
        return Err(bad("not a ballast segment".into()));
    }
    let mut keys = Vec::new();
    let mut off = 8;
    loop {
        let head = data.get(off..off + 8).ok_or_else(|| bad(format!("truncated at offset {off}")))?;
        let len = u32::from_le_bytes(head[..4].try_into().unwrap()) as usize;
        let crc = u32::from_le_bytes(head[4..].try_into().unwrap());
        if len == 0 {
            return Ok(keys);
        }
        let body = data.get(off + 8..off + 8 + len).ok_or_else(|| bad(format!("truncated at offset {off}")))?;
        if crc32c::crc32c(body) != crc {
            return Err(bad(format!("checksum mismatch at offset {off}")));
        }
        let mut aligned = rkyv::util::AlignedVec::<16>::with_capacity(len);
        aligned.extend_from_slice(body);
        let chunk = rkyv::from_bytes::<Chunk, rancor::Error>(&aligned).map_err(|e| bad(format!("offset {off}: {e}")))?;
        keys.extend(chunk.keys);
        off += 8 + len;
    }
}

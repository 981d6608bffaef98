//! Snapshot segments: one immutable file per shard per snapshot. A full segment holds every key
//! of the shard with the history a read at or below the snapshot revision may need; a delta
//! segment only the records written since the previous snapshot's revision (see snapshot/mod.rs).
//!
//! ```text
//! "BSEG0004" | block* | end
//! block = pad | len u32 | crc32c u32 | rkyv(Chunk) (len bytes)   little endian; pad = zeros so
//!         that the rkyv bytes start 16-byte aligned in the file
//! end   = pad | len 0 | crc 0
//! Chunk = { meta: bytes, values: bytes }
//! meta  = key*   key = len | bytes | records | record*
//! record = mod_rev | sub | mod_rev - create_rev | version | lease | value len   (LEB128 varints,
//!          i64 fields as their two's complement u64; values back to back in `values`)
//! ```
//!
//! Format 3 archived each record as a struct of five fixed-width fields and a vector (48 bytes
//! before its value, a third of a 256-byte put); a packed record takes 8-12 bytes when its lease
//! is 0. Format 3 is still read. Chunks hold keys in key order. This file is the codec only,
//! with no IO runtime and no store: `Encoder` turns chunks of keys into the file's bytes (the
//! caller writes them, see persist.rs for a shard's), `Reader` maps a file and checks each block
//! (CRC, then rkyv's validated access, then the packed fields) in place: values are not copied
//! but referenced in the mapping (`value::MappedBytes`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use prost::encoding::{decode_varint, encode_varint};
use rkyv::rancor;

use super::index::{KeyHistory, Record, RecordRef};
use super::value::{Mapping, Value};

const MAGIC: &[u8; 8] = b"BSEG0004";
/// Format 3: records archived field by field (`v3`); read, not written any more.
const MAGIC_V3: &[u8; 8] = b"BSEG0003";
/// Segments of the format before sub revisions (`Record::sub`); not readable any more.
const MAGIC_V2: &[u8; 8] = b"BSEG0002";
const ALIGN: usize = 16;
const BLOCK_HEAD: usize = 8;
/// The fewest bytes a packed record takes (six one-byte varints): bounds what a damaged count
/// may reserve.
const RECORD_MIN_BYTES: usize = 6;

/// A key with its history, as loaded from a segment or cut for one.
#[derive(Debug, Clone, PartialEq)]
pub struct SegKey {
    pub key: Vec<u8>,
    pub records: Vec<Record>,
}

#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Chunk {
    /// The keys and their records' fields, packed (see the module comment).
    pub meta: Vec<u8>,
    /// The records' values back to back, in the order of `meta`.
    pub values: Vec<u8>,
}

/// Format 3's chunk, kept to read segments written before format 4.
mod v3 {
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
}

#[derive(Debug, Clone)]
pub struct SegmentInfo {
    pub path: PathBuf,
    pub size_bytes: u64,
    pub keys: u64,
    /// CRC-32C of the whole file.
    pub crc32c: u32,
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

/// Where a chunk's keys go as they are cut from the store (`Store::snapshot_chunk`), each with
/// its records, borrowed from the index.
pub trait ChunkSink: Default {
    fn add_key(&mut self, key: &[u8], records: KeyHistory<'_>);
    /// Keys added so far.
    fn keys(&self) -> usize;
}

/// The keys with their records copied out (tests).
#[cfg(test)]
impl ChunkSink for Vec<SegKey> {
    fn add_key(&mut self, key: &[u8], records: KeyHistory<'_>) {
        self.push(SegKey { key: key.to_vec(), records: records.iter().map(|r| r.to_record()).collect() });
    }

    fn keys(&self) -> usize {
        self.len()
    }
}

/// A chunk's buffers at first (they grow as needed; a chunk of a snapshot stops near 256 KiB).
const FIRST_META_BYTES: usize = 4 << 10;
const FIRST_VALUE_BYTES: usize = 64 << 10;

/// A chunk packed as its keys are added, straight from the borrowed records: nothing is
/// copied on the way but into the chunk itself. Each record used to be copied out first, its
/// value into a heap buffer of its own (put at 1000 clients, where a snapshot runs every few
/// seconds: `Store::snapshot_chunk` 4.4 → 3.8% of the server's CPU samples).
#[derive(Default)]
pub struct Packed {
    meta: Vec<u8>,
    values: Vec<u8>,
    keys: usize,
    /// The spans of older segments its values were copied from, per mapping (released from
    /// the resident set once the chunk is encoded).
    read: Vec<(Arc<Mapping>, std::ops::Range<usize>)>,
}

impl ChunkSink for Packed {
    fn add_key(&mut self, key: &[u8], records: KeyHistory<'_>) {
        self.add_head(key, records.len());
        for r in records.iter() {
            self.add_record(r);
        }
    }

    fn keys(&self) -> usize {
        self.keys
    }
}

impl Packed {
    /// `keys` packed (tests).
    #[cfg(test)]
    pub fn of(keys: &[SegKey]) -> Packed {
        let mut packed = Packed::default();
        for k in keys {
            packed.add_head(&k.key, k.records.len());
            for r in &k.records {
                packed.add_record(r.borrowed());
            }
        }
        packed
    }

    /// A key, before its `records` records.
    fn add_head(&mut self, key: &[u8], records: usize) {
        if self.keys == 0 {
            self.meta.reserve(FIRST_META_BYTES);
            self.values.reserve(FIRST_VALUE_BYTES);
        }
        encode_varint(key.len() as u64, &mut self.meta);
        self.meta.extend_from_slice(key);
        encode_varint(records as u64, &mut self.meta);
        self.keys += 1;
    }

    fn add_record(&mut self, r: RecordRef<'_>) {
        for field in [r.mod_rev as u64, u64::from(r.sub), r.mod_rev.wrapping_sub(r.create_rev) as u64, r.version as u64, r.lease as u64, r.value.len() as u64] {
            encode_varint(field, &mut self.meta);
        }
        self.values.extend_from_slice(r.value.as_slice());
        let Value::Mapped(m) = r.value else { return };
        let (map, range) = m.range();
        match self.read.iter_mut().find(|(seen, _)| Arc::ptr_eq(seen, map)) {
            Some((_, span)) => *span = span.start.min(range.start)..span.end.max(range.end),
            None => self.read.push((map.clone(), range)),
        }
    }
}

/// The next `len` bytes of `cur`, or `None` past its end.
fn take<'a>(cur: &mut &'a [u8], len: u64) -> Option<&'a [u8]> {
    let len = usize::try_from(len).ok().filter(|&len| len <= cur.len())?;
    let (head, rest) = cur.split_at(len);
    *cur = rest;
    Some(head)
}

/// What a reader hands each key of a chunk to: the key and its records (values pointing into
/// the mapping), in a buffer the callee may take.
pub type EachKey<'a> = dyn FnMut(&[u8], &mut Vec<Record>) + 'a;

/// Hands every key of a format 4 chunk to `each`, values pointing into `map` (which holds
/// `values`).
fn unpack(chunk: &ArchivedChunk, map: &Arc<Mapping>, each: &mut EachKey) -> Result<(), String> {
    let (meta, mut values) = (chunk.meta.as_slice(), chunk.values.as_slice());
    let mut cur = meta;
    let mut records = Vec::new();
    let meta_at = meta.as_ptr() as usize - map.bytes().as_ptr() as usize;
    while !cur.is_empty() {
        let at = meta_at + meta.len() - cur.len();
        let bad = |why: &str| format!("{why} in the key at offset {at}");
        let field = |cur: &mut &[u8]| decode_varint(cur).map_err(|_| bad("a bad or truncated field"));
        let key_len = field(&mut cur)?;
        let key = take(&mut cur, key_len).ok_or_else(|| bad("a key past the end of its block"))?;
        let count = field(&mut cur)?;
        if count == 0 {
            return Err(bad("no records"));
        }
        records.clear();
        records.reserve((count as usize).min(cur.len() / RECORD_MIN_BYTES));
        for _ in 0..count {
            let [mod_rev, sub, create_back, version, lease, len] = [(); 6].map(|_| field(&mut cur));
            let mod_rev = mod_rev? as i64;
            let sub = u32::try_from(sub?).map_err(|_| bad("a sub revision out of range"))?;
            let value = take(&mut values, len?).ok_or_else(|| bad("a value past the end of its block"))?;
            let (create_rev, version, lease) = (mod_rev.wrapping_sub(create_back? as i64), version? as i64, lease? as i64);
            records.push(Record { mod_rev, sub, create_rev, version, lease, value: Value::mapped_or_copied(map, value) });
        }
        each(key, &mut records);
    }
    match values.len() {
        0 => Ok(()),
        left => Err(format!("{left} value bytes after the last key of its block")),
    }
}

/// Hands every key of a format 3 chunk (`v3`) to `each`, values pointing into `map`.
fn unpack_v3(body: &[u8], map: &Arc<Mapping>, each: &mut EachKey) -> Result<(), String> {
    let chunk = rkyv::access::<v3::ArchivedChunk, rancor::Error>(body).map_err(|e| e.to_string())?;
    let record = |r: &v3::ArchivedSegRecord| Record {
        mod_rev: r.mod_rev.to_native(),
        sub: r.sub.to_native(),
        create_rev: r.create_rev.to_native(),
        version: r.version.to_native(),
        lease: r.lease.to_native(),
        value: Value::mapped_or_copied(map, r.value.as_slice()),
    };
    let mut records = Vec::new();
    for e in chunk.keys.iter() {
        records.clear();
        records.extend(e.records.iter().map(record));
        each(e.key.as_slice(), &mut records);
    }
    Ok(())
}

/// Encodes a segment chunk by chunk, doing no IO: `chunk` and `finish` append framed blocks,
/// `take` hands out the bytes not taken yet with the file offset they go to. The caller writes
/// every taken piece, in order.
pub struct Encoder {
    pending: Vec<u8>,
    taken_bytes: u64,
    keys: u64,
    /// CRC-32C of the bytes taken.
    crc: u32,
}

impl Default for Encoder {
    fn default() -> Encoder {
        Encoder { pending: MAGIC.to_vec(), taken_bytes: 0, keys: 0, crc: 0 }
    }
}

impl Encoder {
    /// Appends a block holding `keys` (in key order, after the keys of earlier chunks).
    pub fn chunk(&mut self, packed: Packed) -> std::io::Result<()> {
        let Packed { meta, values, keys, read } = packed;
        let chunk = Chunk { meta, values };
        // Copying the values read the older segments' pages; keep them out of the resident set.
        for (map, range) in read {
            map.release_range(range.start, range.end);
        }
        self.keys += keys as u64;
        let bytes = rkyv::to_bytes::<rancor::Error>(&chunk).map_err(std::io::Error::other)?;
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
        self.crc = crc32c::crc32c_append(self.crc, &bytes);
        (at, bytes)
    }

    /// CRC-32C of the file so far (the bytes taken).
    pub fn crc32c(&self) -> u32 {
        self.crc
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
    /// Format 3 (`v3`) rather than the current one.
    v3: bool,
    pos: usize,
    /// Offset below which the read pages were dropped from the resident set.
    released: usize,
    /// CRC-32C of the file's bytes below `crc_to` (the blocks' own checksums combined in, so
    /// no byte is hashed twice): the whole file's once the end marker is read.
    crc: u32,
    crc_to: usize,
}

impl Reader {
    pub fn open(path: &Path) -> Result<Reader, String> {
        let map = Mapping::open(path).map_err(|e| format!("snapshot segment {}: {e} (at offset 0)", path.display()))?;
        let v3 = match map.bytes().get(..MAGIC.len()) {
            Some(m) if m == MAGIC => false,
            Some(m) if m == MAGIC_V3 => true,
            Some(m) if m == MAGIC_V2 => {
                return Err(format!("snapshot segment {}: written by an older ballast (format 2 at offset 0, before sub revisions); this version cannot read it", path.display()))
            }
            Some(m) if m.starts_with(b"BSEG") => {
                return Err(format!("snapshot segment {}: written by a newer ballast (format {} at offset 0); this version reads formats 3 and 4", path.display(), String::from_utf8_lossy(&m[4..])))
            }
            _ => return Err(format!("snapshot segment {}: not a ballast segment (magic at offset 0)", path.display())),
        };
        Ok(Reader { path: path.to_path_buf(), map, v3, pos: MAGIC.len(), released: 0, crc: 0, crc_to: 0 })
    }

    /// Drops the pages of the blocks read so far from the resident set (a full pass touches
    /// every page: the CRC reads it all), so a pass costs resident memory for one block at a
    /// time, not for the whole segment. Keys taken before stay valid (pages fault back in).
    pub fn release_read(&mut self) {
        self.released = self.map.release_range(self.released, self.pos);
    }

    pub fn mapping(&self) -> &Arc<Mapping> {
        &self.map
    }

    /// Hands every key of the next chunk to `each` (their values left in the mapping), as the
    /// chunk is validated: a chunk found bad past its first keys has handed those over. False
    /// at the end marker.
    pub fn next_chunk(&mut self, each: &mut EachKey) -> Result<bool, String> {
        let bad = |why: String| format!("snapshot segment {}: {why}", self.path.display());
        let data = self.map.bytes();
        let off = self.pos + pad_before_block(self.pos);
        let head = data.get(off..off + BLOCK_HEAD).ok_or_else(|| bad(format!("truncated at offset {off}")))?;
        let len = u32::from_le_bytes(head[..4].try_into().unwrap()) as usize;
        let crc = u32::from_le_bytes(head[4..].try_into().unwrap());
        if len == 0 {
            self.crc = crc32c::crc32c_append(self.crc, &data[self.crc_to..]);
            self.crc_to = data.len();
            return Ok(false);
        }
        let body = data.get(off + BLOCK_HEAD..off + BLOCK_HEAD + len).ok_or_else(|| bad(format!("truncated at offset {off}")))?;
        if crc32c::crc32c(body) != crc {
            return Err(bad(format!("checksum mismatch at offset {off}")));
        }
        self.crc = crc32c_combine(crc32c::crc32c_append(self.crc, &data[self.crc_to..off + BLOCK_HEAD]), crc, len);
        self.crc_to = off + BLOCK_HEAD + len;
        let unpacked = if self.v3 {
            unpack_v3(body, &self.map, each)
        } else {
            rkyv::access::<ArchivedChunk, rancor::Error>(body).map_err(|e| e.to_string()).and_then(|chunk| unpack(chunk, &self.map, each))
        };
        unpacked.map_err(|e| bad(format!("block at offset {off}: {e}")))?;
        self.pos = off + BLOCK_HEAD + len;
        Ok(true)
    }
}

/// Checks every block of a segment (checksum and layout) without keeping its keys: a segment
/// copied from another member is checked before anything relies on it.
pub fn verify(path: &Path) -> Result<(), String> {
    let mut reader = Reader::open(path)?;
    while reader.next_chunk(&mut |_, _| {})? {
        reader.release_read();
    }
    reader.mapping().release_resident();
    Ok(())
}

/// Every key of a segment (values mapped, not copied), and the CRC-32C of the whole file.
pub fn read(path: &Path) -> Result<(Vec<SegKey>, u32), String> {
    let mut reader = Reader::open(path)?;
    let mut keys = Vec::new();
    while reader.next_chunk(&mut |key, records| keys.push(SegKey { key: key.to_vec(), records: std::mem::take(records) }))? {
        reader.release_read();
    }
    reader.mapping().release_resident();
    Ok((keys, reader.crc))
}

/// The CRC-32C of A then B, from A's, B's and B's length: A's CRC times x^(8·len) modulo the
/// polynomial, plus B's (zlib's `crc32_combine` since 1.2.12). The crc32c crate's combine
/// squares 32×32 bit matrices for every bit of the length, ~1 µs a block: 0.75% of the
/// server's CPU at put 1000 clients, where snapshots read back every block they write.
fn crc32c_combine(crc_a: u32, crc_b: u32, len_b: usize) -> u32 {
    multiply_mod_p(x_pow_8n_mod_p(len_b as u64), crc_a) ^ crc_b
}

/// CRC-32C's polynomial, bit-reflected.
const CRC32C_POLY: u32 = 0x82F6_3B78;

/// a × b modulo the polynomial, both bit-reflected (x^0 is the top bit).
pub(super) fn multiply_mod_p(a: u32, mut b: u32) -> u32 {
    let mut product = 0;
    for bit in (0..32).rev() {
        if a & (1 << bit) != 0 {
            product ^= b;
        }
        b = if b & 1 != 0 { (b >> 1) ^ CRC32C_POLY } else { b >> 1 };
    }
    product
}

/// x^(8·n) modulo the polynomial (the effect of n zero bytes), by squaring: x^(2^k) for k = 3,
/// 4, ... is the previous one squared.
pub(super) fn x_pow_8n_mod_p(mut n: u64) -> u32 {
    let (mut result, mut power) = (1 << 31, 1 << 23); // x^0 and x^8, bit-reflected
    while n != 0 {
        if n & 1 != 0 {
            result = multiply_mod_p(power, result);
        }
        power = multiply_mod_p(power, power);
        n >>= 1;
    }
    result
}

#[cfg(test)]
mod tests {
    /// The combined CRC is the CRC of the concatenation, for lengths around the powers of two.
    #[test]
    fn crc32c_combine_is_the_crc_of_both() {
        let data: Vec<u8> = (0..70_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        for split in [0, 1, 7, 8, 9, 100, 4095, 4096, 4097, 65_536, 69_999] {
            for end in [split, split + 1, split + 1000, data.len()] {
                let (a, b) = (&data[..split], &data[split..end.min(data.len())]);
                let want = crc32c::crc32c(&data[..end.min(data.len())]);
                assert_eq!(super::crc32c_combine(crc32c::crc32c(a), crc32c::crc32c(b), b.len()), want, "split {split}, end {end}");
            }
        }
    }

    use super::*;

    fn key(i: u32) -> SegKey {
        let record = |rev: i64, value: Vec<u8>| Record { mod_rev: rev, sub: i % 2, create_rev: 2, version: rev - 1, lease: i64::from(i % 3), value: value.into() };
        SegKey { key: format!("k{i:04}").into_bytes(), records: vec![record(2, vec![b'v'; i as usize % 37]), record(3, vec![])] }
    }

    /// The file, and the CRC-32C the encoder reports for it.
    fn encode_with_crc(chunks: &[std::ops::Range<u32>]) -> (Vec<u8>, u32) {
        let mut encoder = Encoder::default();
        let mut file = Vec::new();
        for chunk in chunks {
            encoder.chunk(Packed::of(&chunk.clone().map(key).collect::<Vec<_>>())).unwrap();
            let (at, bytes) = encoder.take();
            assert_eq!(at, file.len() as u64);
            file.extend(bytes);
        }
        encoder.finish();
        file.extend(encoder.take().1);
        assert_eq!(encoder.size_bytes(), file.len() as u64);
        (file, encoder.crc32c())
    }

    fn encode(chunks: &[std::ops::Range<u32>]) -> Vec<u8> {
        encode_with_crc(chunks).0
    }

    /// Keys back, and the whole file's CRC-32C as the encoder and a plain hash of the file have
    /// it (the reader combines the blocks' own checksums with the bytes between them).
    #[test]
    fn encoded_segment_reads_back_without_a_runtime() {
        let path = std::env::temp_dir().join(format!("ballast-segment-{}", std::process::id()));
        let (file, written_crc) = encode_with_crc(&[0..3, 3..700, 700..701]);
        std::fs::write(&path, &file).unwrap();
        let (keys, crc) = read(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(keys, (0..701).map(key).collect::<Vec<_>>());
        assert_eq!((crc, written_crc), (crc32c::crc32c(&file), crc32c::crc32c(&file)));
    }

    /// A segment written before format 4 (records archived field by field) still reads.
    #[test]
    fn format_3_segment_still_reads() {
        let as_v3 = |k: SegKey| v3::SegEntry {
            key: k.key,
            records: k.records.into_iter().map(|r| v3::SegRecord { mod_rev: r.mod_rev, sub: r.sub, create_rev: r.create_rev, version: r.version, lease: r.lease, value: r.value.as_slice().to_vec() }).collect(),
        };
        let mut file = MAGIC_V3.to_vec();
        for chunk in [0..3, 3..40] {
            let bytes = rkyv::to_bytes::<rancor::Error>(&v3::Chunk { keys: chunk.map(key).map(as_v3).collect() }).unwrap();
            frame(&bytes, 0, &mut file);
        }
        frame(&[], 0, &mut file);
        let path = std::env::temp_dir().join(format!("ballast-segment-v3-{}", std::process::id()));
        std::fs::write(&path, file).unwrap();
        let (keys, _) = read(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(keys, (0..40).map(key).collect::<Vec<_>>());
    }

    fn pack(keys: &[SegKey]) -> Chunk {
        let Packed { meta, values, .. } = Packed::of(keys);
        Chunk { meta, values }
    }

    /// Every field round-trips at its extremes (negative and full-width values included).
    #[test]
    fn packed_fields_round_trip_at_their_extremes() {
        let record = |mod_rev: i64, create_rev: i64, version: i64, lease: i64| Record { mod_rev, sub: u32::MAX, create_rev, version, lease, value: vec![7; 3].into() };
        let keys = vec![
            SegKey { key: vec![], records: vec![record(i64::MAX, 0, i64::MAX, i64::MIN), record(1, 2, -1, -1)] },
            SegKey { key: vec![0xff; 300], records: vec![record(3, 3, 1, 0)] },
        ];
        let bytes = rkyv::to_bytes::<rancor::Error>(&pack(&keys)).unwrap();
        let path = std::env::temp_dir().join(format!("ballast-segment-fields-{}", std::process::id()));
        let mut file = MAGIC.to_vec();
        frame(&bytes, 0, &mut file);
        frame(&[], 0, &mut file);
        std::fs::write(&path, file).unwrap();
        let (read_back, _) = read(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(read_back, keys);
    }

    /// Packed fields that pass the CRC but do not add up are refused with the block's offset.
    #[test]
    fn inconsistent_fields_are_refused_with_their_offset() {
        let mut chunk = pack(&[key(1), key(2)]);
        chunk.values.push(0);
        let mut file = MAGIC.to_vec();
        frame(&rkyv::to_bytes::<rancor::Error>(&chunk).unwrap(), 0, &mut file);
        frame(&[], 0, &mut file);
        let path = std::env::temp_dir().join(format!("ballast-segment-bad-{}", std::process::id()));
        std::fs::write(&path, file).unwrap();
        let err = read(&path).unwrap_err();
        chunk.values.pop();
        chunk.meta.truncate(chunk.meta.len() - 1);
        let mut file = MAGIC.to_vec();
        frame(&rkyv::to_bytes::<rancor::Error>(&chunk).unwrap(), 0, &mut file);
        std::fs::write(&path, file).unwrap();
        let err_short = read(&path).unwrap_err();
        std::fs::remove_file(&path).unwrap();
        assert!(err.contains("at offset 8: 1 value bytes after the last key"), "{err}");
        assert!(err_short.contains("at offset 8: a bad or truncated field in the key at offset"), "{err_short}");
    }

    /// A segment of a later format is refused as such, not as a stranger's file.
    #[test]
    fn later_format_is_refused_by_name() {
        let path = std::env::temp_dir().join(format!("ballast-segment-later-{}", std::process::id()));
        std::fs::write(&path, b"BSEG0009\0\0\0\0\0\0\0\0").unwrap();
        let err = read(&path).unwrap_err();
        std::fs::remove_file(&path).unwrap();
        assert!(err.contains("written by a newer ballast (format 0009 at offset 0)"), "{err}");
    }

    /// The bytes of a segment are ballast's on-disk format: a change here needs a new MAGIC.
    #[test]
    fn format_is_stable() {
        let file = encode(&[0..2, 2..5]);
        assert_eq!(&file[..8], MAGIC);
        assert_eq!((file.len(), crc32c::crc32c(&file)), (176, 908_500_396));
    }
}

//! bbolt's on-disk page layout (etcd-io/bbolt page.go, db.go, freelist.go), little-endian as
//! bbolt writes it on the machines etcd runs on: a 16-byte header (`id u64 | flags u16 |
//! count u16 | overflow u32`), then the page's elements. A page larger than `PAGE_BYTES` spans
//! `overflow` more pages. Leaf elements are `flags u32 | pos u32 | ksize u32 | vsize u32` and
//! branch elements `pos u32 | ksize u32 | pgid u64`, `pos` counting from the element itself to
//! its key (the value follows the key). Pages 0 and 1 are the two metas, each with an
//! FNV-64a checksum of its fields.

/// etcd's backend uses the OS page size: 4096 on the platforms it supports.
pub const PAGE_BYTES: usize = 4096;
pub const HEADER_BYTES: usize = 16;
pub const ELEMENT_BYTES: usize = 16;

const BRANCH_FLAG: u16 = 0x01;
const LEAF_FLAG: u16 = 0x02;
const META_FLAG: u16 = 0x04;
const FREELIST_FLAG: u16 = 0x10;
/// A leaf element whose value is a bucket header (bbolt's bucketLeafFlag).
pub const BUCKET_ELEMENT: u32 = 0x01;

const MAGIC: u32 = 0xED0C_DAED;
const VERSION: u32 = 2;

/// One element of a leaf page.
pub struct LeafElement<'a> {
    pub flags: u32,
    pub key: &'a [u8],
    pub value: &'a [u8],
}

/// Bytes a leaf or branch element takes on its page: its header, key and value.
pub fn element_bytes(key: usize, value: usize) -> usize {
    ELEMENT_BYTES + key + value
}

/// A page's bytes, `body` rounded up to whole pages, with the header for `id`.
fn page(id: u64, flags: u16, count: usize, body: Vec<u8>) -> Vec<u8> {
    let pages = (HEADER_BYTES + body.len()).div_ceil(PAGE_BYTES).max(1);
    let mut out = unpadded(id, flags, count, pages, body);
    out.resize(pages * PAGE_BYTES, 0);
    out
}

/// The header and `body`, as an inline bucket holds its page.
fn unpadded(id: u64, flags: u16, count: usize, pages: usize, mut body: Vec<u8>) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_BYTES + body.len());
    out.extend_from_slice(&id.to_le_bytes());
    out.extend_from_slice(&flags.to_le_bytes());
    out.extend_from_slice(&(count as u16).to_le_bytes());
    out.extend_from_slice(&((pages - 1) as u32).to_le_bytes());
    out.append(&mut body);
    out
}

/// The pages a leaf or branch node of `bytes` (elements and data) takes.
pub fn pages_for(bytes: usize) -> u64 {
    (HEADER_BYTES + bytes).div_ceil(PAGE_BYTES).max(1) as u64
}

/// A leaf page at `id` holding `elems` (sorted by key).
pub fn leaf(id: u64, elems: &[LeafElement]) -> Vec<u8> {
    let (count, body) = leaf_body(elems);
    page(id, LEAF_FLAG, count, body)
}

/// The value of an inline bucket holding `elems`: its header (root 0) and its leaf, unpadded,
/// as bbolt stores a bucket of at most `INLINE_MAX_BYTES` (bucket.go inlineable).
pub fn inline_bucket(elems: &[LeafElement]) -> Vec<u8> {
    let (count, body) = leaf_body(elems);
    let mut out = bucket_header(0).to_vec();
    out.extend(unpadded(0, LEAF_FLAG, count, 1, body));
    out
}

/// bbolt's maxInlineBucketSize: a quarter page, counting the page header and elements.
pub const INLINE_MAX_BYTES: usize = PAGE_BYTES / 4;

fn leaf_body(elems: &[LeafElement]) -> (usize, Vec<u8>) {
    let table = elems.len() * ELEMENT_BYTES;
    let mut body = vec![0u8; table];
    for (i, e) in elems.iter().enumerate() {
        let at = i * ELEMENT_BYTES;
        let pos = body.len() - at;
        body[at..at + 4].copy_from_slice(&e.flags.to_le_bytes());
        body[at + 4..at + 8].copy_from_slice(&(pos as u32).to_le_bytes());
        body[at + 8..at + 12].copy_from_slice(&(e.key.len() as u32).to_le_bytes());
        body[at + 12..at + 16].copy_from_slice(&(e.value.len() as u32).to_le_bytes());
        body.extend_from_slice(e.key);
        body.extend_from_slice(e.value);
    }
    (elems.len(), body)
}

/// A branch page at `id`: each child's first key and page id, sorted by key.
pub fn branch(id: u64, children: &[(Vec<u8>, u64)]) -> Vec<u8> {
    let table = children.len() * ELEMENT_BYTES;
    let mut body = vec![0u8; table];
    for (i, (key, child)) in children.iter().enumerate() {
        let at = i * ELEMENT_BYTES;
        let pos = body.len() - at;
        body[at..at + 4].copy_from_slice(&(pos as u32).to_le_bytes());
        body[at + 4..at + 8].copy_from_slice(&(key.len() as u32).to_le_bytes());
        body[at + 8..at + 16].copy_from_slice(&child.to_le_bytes());
        body.extend_from_slice(key);
    }
    page(id, BRANCH_FLAG, children.len(), body)
}

/// An empty freelist page at `id`: the file has no free pages.
pub fn freelist(id: u64) -> Vec<u8> {
    page(id, FREELIST_FLAG, 0, Vec::new())
}

/// A bucket's header as its parent's leaf holds it: root page and sequence.
pub fn bucket_header(root: u64) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&root.to_le_bytes());
    out
}

/// The meta page `id` (0 or 1) of transaction `txid`: the root bucket's page, the freelist's
/// page and the high-water mark `pages` (the file's page count).
pub fn meta(id: u64, txid: u64, root: u64, freelist: u64, pages: u64) -> Vec<u8> {
    let mut m = Vec::with_capacity(64);
    m.extend_from_slice(&MAGIC.to_le_bytes());
    m.extend_from_slice(&VERSION.to_le_bytes());
    m.extend_from_slice(&(PAGE_BYTES as u32).to_le_bytes());
    m.extend_from_slice(&0u32.to_le_bytes()); // flags
    m.extend_from_slice(&bucket_header(root));
    m.extend_from_slice(&freelist.to_le_bytes());
    m.extend_from_slice(&pages.to_le_bytes());
    m.extend_from_slice(&txid.to_le_bytes());
    let sum = fnv64a(&m);
    m.extend_from_slice(&sum.to_le_bytes());
    page(id, META_FLAG, 0, m)
}

/// FNV-1a, 64 bits (Go's hash/fnv New64a).
fn fnv64a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv_matches_go() {
        // Go: fnv.New64a().Write([]byte("a")).Sum64()
        assert_eq!(fnv64a(b"a"), 0xaf63dc4c8601ec8c);
        assert_eq!(fnv64a(b""), 0xcbf29ce484222325);
    }

    #[test]
    fn leaf_elements_point_at_their_keys() {
        let p = leaf(7, &[LeafElement { flags: 0, key: b"ab", value: b"xyz" }, LeafElement { flags: 1, key: b"c", value: b"" }]);
        assert_eq!(p.len(), PAGE_BYTES);
        assert_eq!(u64::from_le_bytes(p[..8].try_into().unwrap()), 7);
        assert_eq!(u16::from_le_bytes(p[10..12].try_into().unwrap()), 2);
        for (i, key) in [&b"ab"[..], b"c"].iter().enumerate() {
            let e = HEADER_BYTES + i * ELEMENT_BYTES;
            let pos = u32::from_le_bytes(p[e + 4..e + 8].try_into().unwrap()) as usize;
            let ksize = u32::from_le_bytes(p[e + 8..e + 12].try_into().unwrap()) as usize;
            assert_eq!(&p[e + pos..e + pos + ksize], *key);
        }
    }

    #[test]
    fn a_large_node_overflows() {
        let big = vec![1u8; 5000];
        let p = leaf(3, &[LeafElement { flags: 0, key: b"k", value: &big }]);
        assert_eq!(p.len(), 2 * PAGE_BYTES);
        assert_eq!(u32::from_le_bytes(p[12..16].try_into().unwrap()), 1);
        assert_eq!(pages_for(ELEMENT_BYTES + 1 + 5000), 2);
    }
}

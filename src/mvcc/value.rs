//! A value in the MVCC store: inline bytes for recent writes, or a slice of a snapshot segment
//! mapped read-only into memory. A `Value` is 16 bytes in its record; mapped values take no
//! heap, and their pages are read from the page cache on demand and are clean, so the kernel
//! can drop them — this is what keeps the resident footprint per key small with millions of
//! keys. Inline bytes are boxed twice (8 bytes in the record beside the mapped variant's 16:
//! 64 → 56-byte records) since they only live until the next snapshot segment holds them.

use std::path::Path;
use std::sync::Arc;

#[derive(Clone)]
pub enum Value {
    Inline(Box<Box<[u8]>>),
    Mapped(MappedBytes),
}

impl Value {
    pub fn as_slice(&self) -> &[u8] {
        match self {
            Value::Inline(b) => b.as_ref(),
            Value::Mapped(m) => m.as_slice(),
        }
    }

    pub fn len(&self) -> usize {
        self.as_slice().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The value for an answer: a mapped one shares its mapping (no copy; the mapping lives
    /// as long as the answer does), an inline one (written since the last snapshot) is copied.
    pub fn to_bytes(&self) -> bytes::Bytes {
        match self {
            Value::Inline(b) => bytes::Bytes::copy_from_slice(b.as_ref()),
            Value::Mapped(m) => bytes::Bytes::from_owner(m.clone()),
        }
    }
}

impl From<Vec<u8>> for Value {
    fn from(v: Vec<u8>) -> Value {
        Value::Inline(Box::new(v.into_boxed_slice()))
    }
}

impl Value {
    /// `slice` of `map` as a mapped value, or a copy when `MappedBytes` cannot name it.
    pub fn mapped_or_copied(map: &Arc<Mapping>, slice: &[u8]) -> Value {
        MappedBytes::new(map, slice).map_or_else(|| Value::from(slice.to_vec()), Value::Mapped)
    }
}

impl std::fmt::Debug for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.as_slice())
    }
}

impl PartialEq for Value {
    fn eq(&self, other: &Value) -> bool {
        self.as_slice() == other.as_slice()
    }
}

/// A read-only private mapping of a whole file. The file may be unlinked while mapped.
pub struct Mapping {
    ptr: *const u8,
    len: usize,
    /// The file's (device, inode), counted in `MAPPED` while mapped.
    file_id: (u64, u64),
}

/// How many `Mapping`s each file (device, inode) has: a file still mapped must never be
/// truncated (a read of a page past its new end would kill the process with SIGBUS), so
/// `writeback::delete_paced` deletes it whole instead.
static MAPPED: std::sync::Mutex<Vec<((u64, u64), usize)>> = std::sync::Mutex::new(Vec::new());

fn count_mapping(file_id: (u64, u64), delta: isize) {
    let mut mapped = MAPPED.lock().unwrap_or_else(|e| e.into_inner());
    match mapped.iter().position(|(id, _)| *id == file_id) {
        Some(i) => {
            let n = mapped[i].1.checked_add_signed(delta).expect("mapping counts balance");
            if n == 0 {
                mapped.swap_remove(i);
            } else {
                mapped[i].1 = n;
            }
        }
        None => {
            assert!(delta > 0, "an unmapping of a file never mapped");
            mapped.push((file_id, delta as usize));
        }
    }
}

/// Whether any `Mapping` of the file (device, inode) is alive.
pub fn is_mapped(file_id: (u64, u64)) -> bool {
    MAPPED.lock().unwrap_or_else(|e| e.into_inner()).iter().any(|(id, _)| *id == file_id)
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(n).ok().filter(|&n| n > 0).unwrap_or(4096)
}

// SAFETY: the mapping is read-only and never changes after creation; it is unmapped only in
// Drop, when no reference to it remains.
unsafe impl Send for Mapping {}
unsafe impl Sync for Mapping {}

impl Mapping {
    pub fn open(path: &Path) -> std::io::Result<Arc<Mapping>> {
        use std::os::fd::AsRawFd;
        let file = std::fs::File::open(path)?;
        let meta = file.metadata()?;
        let len = meta.len() as usize;
        let file_id = (std::os::unix::fs::MetadataExt::dev(&meta), std::os::unix::fs::MetadataExt::ino(&meta));
        if len == 0 {
            return Err(std::io::Error::other("empty file"));
        }
        // SAFETY: a fresh read-only mapping of `len` bytes of an open file; the result is
        // checked against MAP_FAILED.
        let ptr = unsafe { libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ, libc::MAP_PRIVATE, file.as_raw_fd(), 0) };
        if ptr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        count_mapping(file_id, 1);
        Ok(Arc::new(Mapping { ptr: ptr as *const u8, len, file_id }))
    }

    /// Drops the mapping's pages from this process's resident set (they stay in the page
    /// cache and fault back in on access). Called after a pass that touched them all.
    pub fn release_resident(&self) {
        self.release_range(0, self.len);
    }

    /// Like `release_resident` for the whole pages within `from..to` (byte offsets), so a pass
    /// over the mapping can release what it has read as it goes. Returns where the next call
    /// may start: `to` rounded down to a page (the partial page stays resident until then).
    pub fn release_range(&self, from: usize, to: usize) -> usize {
        let page = page_size();
        let (start, end) = (from / page * page, to.min(self.len) / page * page);
        if end > start {
            // SAFETY: start..end lies within the mapping and `ptr` is page aligned (mmap), so
            // the range is page aligned; MADV_DONTNEED on a private read-only file mapping only
            // discards page table entries (contents are refetched from the file).
            unsafe { libc::madvise(self.ptr.add(start) as *mut libc::c_void, end - start, libc::MADV_DONTNEED) };
        }
        end.max(start)
    }

    pub fn bytes(&self) -> &[u8] {
        // SAFETY: ptr..ptr+len is mapped readable for the life of self.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        let region = Region { addr: self.ptr as usize, len: self.len, file_id: self.file_id };
        if let Err(std::sync::mpsc::SendError(region)) = unmapper().send(region) {
            unmap(region);
        }
    }
}

/// A dropped `Mapping`'s region, to unmap.
struct Region {
    addr: usize,
    len: usize,
    file_id: (u64, u64),
}

/// Unmaps a region mapped in `Mapping::open` that nothing borrows any more.
fn unmap(r: Region) {
    // SAFETY: the region was mapped by `Mapping::open`, and its `Mapping` was dropped, so no
    // borrow of it remains.
    unsafe { libc::munmap(r.addr as *mut libc::c_void, r.len) };
    count_mapping(r.file_id, -1);
}

/// Where dropped mappings are unmapped: a thread of their own. Unmapping the last mapping of a
/// deleted segment file releases the file, and the kernel then drops its pages from the page
/// cache before munmap returns: 20 ms for a 110 MB segment, which held every write on the
/// shard (the drop of the last value adopted away from an old segment) at the end of each
/// Defragment.
fn unmapper() -> &'static std::sync::mpsc::Sender<Region> {
    static UNMAPPER: std::sync::OnceLock<std::sync::mpsc::Sender<Region>> = std::sync::OnceLock::new();
    UNMAPPER.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel::<Region>();
        let spawned = std::thread::Builder::new().name("unmap".into()).spawn(move || rx.into_iter().for_each(unmap));
        if spawned.is_err() {
            crate::log::warn("cannot start the unmap thread: dropped segments are unmapped where they are dropped", &[]);
        }
        tx
    })
}

/// Bits of `MappedBytes::at` that hold the length; the offset has the other 40 (1 TiB).
const LEN_BITS: u32 = 24;

/// A slice of a mapping.
#[derive(Clone)]
pub struct MappedBytes {
    map: Arc<Mapping>,
    /// offset << LEN_BITS | len.
    at: u64,
}

impl MappedBytes {
    /// `slice` must lie inside `map`. None when it is 16 MiB or longer or starts 1 TiB or more
    /// into the mapping: such a value stays inline (`Value::mapped_or_copied`).
    pub fn new(map: &Arc<Mapping>, slice: &[u8]) -> Option<MappedBytes> {
        let base = map.bytes().as_ptr() as usize;
        let start = slice.as_ptr() as usize;
        assert!(start >= base && start + slice.len() <= base + map.len, "slice outside its mapping");
        let (offset, len) = ((start - base) as u64, slice.len() as u64);
        (len < 1 << LEN_BITS && offset < 1 << (64 - LEN_BITS)).then(|| MappedBytes { map: map.clone(), at: offset << LEN_BITS | len })
    }

    fn offset(&self) -> usize {
        (self.at >> LEN_BITS) as usize
    }

    fn len(&self) -> usize {
        (self.at & ((1 << LEN_BITS) - 1)) as usize
    }

    pub fn is_in(&self, map: &Arc<Mapping>) -> bool {
        Arc::ptr_eq(&self.map, map)
    }

    /// The mapping and the byte range of the value in it.
    pub fn range(&self) -> (&Arc<Mapping>, std::ops::Range<usize>) {
        let start = self.offset();
        (&self.map, start..start + self.len())
    }

    pub fn as_slice(&self) -> &[u8] {
        let start = self.offset();
        &self.map.bytes()[start..start + self.len()]
    }
}

impl AsRef<[u8]> for MappedBytes {
    fn as_ref(&self) -> &[u8] {
        self.as_slice()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_is_16_bytes_and_a_mapped_one_names_its_slice() {
        assert_eq!(std::mem::size_of::<Value>(), 16);
        let dir = std::env::temp_dir().join(format!("ballast-value-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("seg");
        std::fs::write(&path, (0..=255u8).cycle().take(10_000).collect::<Vec<u8>>()).unwrap();
        let map = Mapping::open(&path).unwrap();
        let v = Value::mapped_or_copied(&map, &map.bytes()[300..1300]);
        assert!(matches!(&v, Value::Mapped(m) if m.is_in(&map) && m.range().1 == (300..1300)));
        assert_eq!(v.as_slice(), &map.bytes()[300..1300]);
        assert_eq!(v.to_bytes(), bytes::Bytes::copy_from_slice(&map.bytes()[300..1300]));
        let inline = Value::from(b"abc".to_vec());
        assert_eq!((inline.as_slice(), inline.len()), (&b"abc"[..], 3));
        assert_eq!(inline.clone(), inline);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

//! A value in the MVCC store: inline bytes for recent writes, or a slice of a snapshot segment
//! mapped read-only into memory. Mapped values cost 16 bytes in the index and no heap; their
//! pages are read from the page cache on demand and are clean, so the kernel can drop them —
//! this is what keeps the resident footprint per key small with millions of keys.

use std::path::Path;
use std::sync::Arc;

#[derive(Clone)]
pub enum Value {
    Inline(Box<[u8]>),
    Mapped(MappedBytes),
}

impl Value {
    pub fn as_slice(&self) -> &[u8] {
        match self {
            Value::Inline(b) => b,
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
            Value::Inline(b) => bytes::Bytes::copy_from_slice(b),
            Value::Mapped(m) => bytes::Bytes::from_owner(m.clone()),
        }
    }
}

impl From<Vec<u8>> for Value {
    fn from(v: Vec<u8>) -> Value {
        Value::Inline(v.into_boxed_slice())
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
        let len = file.metadata()?.len() as usize;
        if len == 0 {
            return Err(std::io::Error::other("empty file"));
        }
        // SAFETY: a fresh read-only mapping of `len` bytes of an open file; the result is
        // checked against MAP_FAILED.
        let ptr = unsafe { libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ, libc::MAP_PRIVATE, file.as_raw_fd(), 0) };
        if ptr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Arc::new(Mapping { ptr: ptr as *const u8, len }))
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
        // SAFETY: unmaps exactly the region mapped in `open`; no borrow of it outlives self.
        unsafe { libc::munmap(self.ptr as *mut libc::c_void, self.len) };
    }
}

/// A slice of a mapping.
#[derive(Clone)]
pub struct MappedBytes {
    map: Arc<Mapping>,
    offset: u64,
    len: u32,
}

impl MappedBytes {
    /// `slice` must lie inside `map`.
    pub fn new(map: &Arc<Mapping>, slice: &[u8]) -> MappedBytes {
        let base = map.bytes().as_ptr() as usize;
        let start = slice.as_ptr() as usize;
        assert!(start >= base && start + slice.len() <= base + map.len, "slice outside its mapping");
        MappedBytes { map: map.clone(), offset: (start - base) as u64, len: slice.len() as u32 }
    }

    pub fn is_in(&self, map: &Arc<Mapping>) -> bool {
        Arc::ptr_eq(&self.map, map)
    }

    /// The mapping and the byte range of the value in it.
    pub fn range(&self) -> (&Arc<Mapping>, std::ops::Range<usize>) {
        let start = self.offset as usize;
        (&self.map, start..start + self.len as usize)
    }

    pub fn as_slice(&self) -> &[u8] {
        let start = self.offset as usize;
        &self.map.bytes()[start..start + self.len as usize]
    }
}

impl AsRef<[u8]> for MappedBytes {
    fn as_ref(&self) -> &[u8] {
        self.as_slice()
    }
}

//! Writing a bbolt file front to back: `PageFile` hands out page ids in file order (pages 0-2
//! are the metas and the freelist, written last), and `TreeBuilder` turns one bucket's
//! key-sorted entries into a B+tree bottom-up: leaves are written as they fill, and only each
//! leaf's first key and page id stay in memory until the branch levels are written at the end.
//! Nodes are filled to the page (bbolt reads any fill; it splits and merges on its next write).

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::page::{self, LeafElement, HEADER_BYTES, PAGE_BYTES};

/// The first page after the two metas and the freelist.
const FIRST_DATA_PAGE: u64 = 3;
const FREELIST_PAGE: u64 = 2;

pub struct PageFile {
    out: BufWriter<File>,
    next: u64,
}

impl PageFile {
    pub fn create(path: &Path) -> io::Result<PageFile> {
        let file = std::fs::OpenOptions::new().read(true).write(true).create_new(true).open(path)?;
        let mut out = BufWriter::with_capacity(16 * PAGE_BYTES, file);
        out.write_all(&vec![0u8; FIRST_DATA_PAGE as usize * PAGE_BYTES])?;
        Ok(PageFile { out, next: FIRST_DATA_PAGE })
    }

    /// Appends the page `make` builds for the next id (it may span several pages).
    pub fn append(&mut self, make: impl FnOnce(u64) -> Vec<u8>) -> io::Result<u64> {
        let id = self.next;
        let bytes = make(id);
        self.out.write_all(&bytes)?;
        self.next += (bytes.len() / PAGE_BYTES) as u64;
        Ok(id)
    }

    /// Writes the freelist and both metas pointing at the root bucket's page `root`; the
    /// file's size in bytes.
    pub fn finish(self, root: u64) -> io::Result<u64> {
        let pages = self.next;
        let file = self.out.into_inner().map_err(|e| e.into_error())?;
        file.write_all_at(&page::freelist(FREELIST_PAGE), FREELIST_PAGE * PAGE_BYTES as u64)?;
        // Two valid metas (transactions 0 and 1, as a new bbolt file): bbolt opens the newer.
        for (id, txid) in [(0u64, 0u64), (1, 1)] {
            file.write_all_at(&page::meta(id, txid, root, FREELIST_PAGE, pages), id * PAGE_BYTES as u64)?;
        }
        Ok(pages * PAGE_BYTES as u64)
    }
}

/// One bucket's B+tree, built from entries pushed in key order.
#[derive(Default)]
pub struct TreeBuilder {
    leaf: Vec<(u32, Vec<u8>, Vec<u8>)>,
    leaf_bytes: usize,
    /// Each written leaf's first key and page.
    leaves: Vec<(Vec<u8>, u64)>,
}

impl TreeBuilder {
    pub fn push(&mut self, file: &mut PageFile, flags: u32, key: Vec<u8>, value: Vec<u8>) -> io::Result<()> {
        debug_assert!(self.leaf.last().is_none_or(|(_, last, _)| *last < key), "keys in order");
        let bytes = page::element_bytes(key.len(), value.len());
        if !self.leaf.is_empty() && HEADER_BYTES + self.leaf_bytes + bytes > PAGE_BYTES {
            self.write_leaf(file)?;
        }
        self.leaf_bytes += bytes;
        self.leaf.push((flags, key, value));
        Ok(())
    }

    fn write_leaf(&mut self, file: &mut PageFile) -> io::Result<()> {
        let elems: Vec<LeafElement> = self.leaf.iter().map(|(flags, key, value)| LeafElement { flags: *flags, key, value }).collect();
        let id = file.append(|id| page::leaf(id, &elems))?;
        let first = self.leaf.first().map(|(_, k, _)| k.clone()).unwrap_or_default();
        self.leaves.push((first, id));
        self.leaf.clear();
        self.leaf_bytes = 0;
        Ok(())
    }

    /// The bucket's value in its parent: inline when it is one small leaf (as bbolt writes a
    /// small bucket), else the header naming its root page.
    pub fn finish_bucket(self, file: &mut PageFile) -> io::Result<Vec<u8>> {
        if self.leaves.is_empty() && HEADER_BYTES + self.leaf_bytes <= page::INLINE_MAX_BYTES {
            let elems: Vec<LeafElement> = self.leaf.iter().map(|(flags, key, value)| LeafElement { flags: *flags, key, value }).collect();
            return Ok(page::inline_bucket(&elems));
        }
        Ok(page::bucket_header(self.finish(file)?).to_vec())
    }

    /// Writes what is left and the branch levels above the leaves; the root's page.
    pub fn finish(mut self, file: &mut PageFile) -> io::Result<u64> {
        if !self.leaf.is_empty() || self.leaves.is_empty() {
            self.write_leaf(file)?; // an empty bucket is one empty leaf
        }
        let mut level = std::mem::take(&mut self.leaves);
        while level.len() > 1 {
            level = write_branches(file, &level)?;
        }
        Ok(level[0].1)
    }
}

/// One level of branch pages over `children`; their first keys and pages.
fn write_branches(file: &mut PageFile, children: &[(Vec<u8>, u64)]) -> io::Result<Vec<(Vec<u8>, u64)>> {
    let mut parents = Vec::new();
    let mut start = 0;
    while start < children.len() {
        let (mut end, mut bytes) = (start, HEADER_BYTES);
        // At least two children a branch (bbolt's minKeysPerPage), else as many as fit.
        while end < children.len() && (end - start < 2 || bytes + page::element_bytes(children[end].0.len(), 0) <= PAGE_BYTES) {
            bytes += page::element_bytes(children[end].0.len(), 0);
            end += 1;
        }
        let group = &children[start..end];
        let id = file.append(|id| page::branch(id, group))?;
        parents.push((group[0].0.clone(), id));
        start = end;
    }
    Ok(parents)
}

//! The `key` bucket is ordered by revision, but shards hand their history over key by key: an
//! external sort puts it in order with bounded memory. Entries are buffered up to
//! `RUN_BYTES`; a full buffer is sorted and spilled to a run file beside the export, and the
//! runs are merged at the end (one buffered reader per run). A small store never touches the
//! disk for this.

use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

/// Bytes of entries held in memory before a run is spilled.
const RUN_BYTES: usize = 32 << 20;
/// Read buffer of each run while merging.
const RUN_READ_BYTES: usize = 64 << 10;

pub type Entry = (Vec<u8>, Vec<u8>);

pub struct Runs {
    dir: PathBuf,
    buffer: Vec<Entry>,
    buffer_bytes: usize,
    files: Vec<PathBuf>,
}

impl Runs {
    /// Runs spill into files named after `prefix` (removed when the merge is dropped).
    pub fn new(prefix: &Path) -> Runs {
        Runs { dir: prefix.to_path_buf(), buffer: Vec::new(), buffer_bytes: 0, files: Vec::new() }
    }

    pub fn push(&mut self, key: Vec<u8>, value: Vec<u8>) -> io::Result<()> {
        self.buffer_bytes += key.len() + value.len() + 2 * std::mem::size_of::<Vec<u8>>();
        self.buffer.push((key, value));
        if self.buffer_bytes >= RUN_BYTES {
            self.spill()?;
        }
        Ok(())
    }

    fn spill(&mut self) -> io::Result<()> {
        self.buffer.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let path = PathBuf::from(format!("{}.run{}", self.dir.display(), self.files.len()));
        self.files.push(path.clone());
        let mut out = BufWriter::new(File::create(&path)?);
        for (k, v) in self.buffer.drain(..) {
            out.write_all(&(k.len() as u32).to_le_bytes())?;
            out.write_all(&(v.len() as u32).to_le_bytes())?;
            out.write_all(&k)?;
            out.write_all(&v)?;
        }
        out.flush()?;
        self.buffer_bytes = 0;
        Ok(())
    }

    /// Every entry pushed, in key order.
    pub fn merge(mut self) -> io::Result<Merge> {
        if !self.files.is_empty() && !self.buffer.is_empty() {
            self.spill()?;
        }
        self.buffer.sort_unstable_by(|a, b| b.0.cmp(&a.0)); // popped from the back
        let mut readers = Vec::new();
        let mut heap = BinaryHeap::new();
        for (i, path) in self.files.iter().enumerate() {
            let mut r = BufReader::with_capacity(RUN_READ_BYTES, File::open(path)?);
            if let Some(e) = read_entry(&mut r)? {
                heap.push(std::cmp::Reverse((e, i)));
            }
            readers.push(r);
        }
        Ok(Merge { memory: std::mem::take(&mut self.buffer), readers, heap, files: std::mem::take(&mut self.files) })
    }
}

impl Drop for Runs {
    /// Runs not handed to a merge (an error cut the export short) go too.
    fn drop(&mut self) {
        for f in &self.files {
            let _ = std::fs::remove_file(f);
        }
    }
}

fn read_entry(r: &mut impl Read) -> io::Result<Option<Entry>> {
    let mut lens = [0u8; 8];
    match r.read_exact(&mut lens) {
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        other => other?,
    }
    let klen = u32::from_le_bytes(lens[..4].try_into().expect("4 bytes")) as usize;
    let vlen = u32::from_le_bytes(lens[4..].try_into().expect("4 bytes")) as usize;
    let (mut k, mut v) = (vec![0u8; klen], vec![0u8; vlen]);
    r.read_exact(&mut k)?;
    r.read_exact(&mut v)?;
    Ok(Some((k, v)))
}

/// The merged entries; the run files go when it is dropped.
pub struct Merge {
    memory: Vec<Entry>,
    readers: Vec<BufReader<File>>,
    heap: BinaryHeap<std::cmp::Reverse<(Entry, usize)>>,
    files: Vec<PathBuf>,
}

impl Merge {
    pub fn next_entry(&mut self) -> io::Result<Option<Entry>> {
        if self.readers.is_empty() {
            return Ok(self.memory.pop());
        }
        let Some(std::cmp::Reverse((entry, i))) = self.heap.pop() else { return Ok(None) };
        if let Some(next) = read_entry(&mut self.readers[i])? {
            self.heap.push(std::cmp::Reverse((next, i)));
        }
        Ok(Some(entry))
    }
}

impl Drop for Merge {
    fn drop(&mut self) {
        for f in &self.files {
            let _ = std::fs::remove_file(f);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(mut m: Merge) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        while let Some((k, _)) = m.next_entry().unwrap() {
            out.push(k);
        }
        out
    }

    #[test]
    fn merges_in_memory_and_spilled_runs_in_order() {
        let dir = std::env::temp_dir().join(format!("ballast-runs-{}", std::process::id()));
        let mut runs = Runs::new(&dir);
        for k in [5u8, 1, 3] {
            runs.push(vec![k], vec![]).unwrap();
        }
        assert_eq!(drain(runs.merge().unwrap()), [[1], [3], [5]]);
        let mut runs = Runs::new(&dir);
        for k in [9u8, 2, 7] {
            runs.push(vec![k], vec![k]).unwrap();
        }
        runs.spill().unwrap();
        for k in [4u8, 8, 1] {
            runs.push(vec![k], vec![k]).unwrap();
        }
        let merged = runs.merge().unwrap();
        let files = merged.files.clone();
        assert_eq!(drain(merged), [[1], [2], [4], [7], [8], [9]]);
        assert!(files.iter().all(|f| !f.exists()), "run files removed");
    }
}

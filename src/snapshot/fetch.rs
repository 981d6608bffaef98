//! Copying another member's snapshot files: step 1 of installing a raft snapshot on a follower
//! (`raft/installs.rs`). The sender serves the snapshot a descriptor names (`Served`: its
//! manifest and its segment files by name and length, in chunks); the follower writes them to
//! `<snap dir>/incoming/` (out of reach of the manifest's clean-up of unnamed segments),
//! checks every block of every segment (the segment format's own checksums) and syncs them.
//! Nothing the boot path reads changes here: a failed or interrupted fetch leaves the old
//! state, and the next fetch starts the staging directory afresh.
//!
//! Where the chunks come from is a `Source`: the leader over the peer transport, or (tests,
//! a copied data dir) `Served` on a local directory.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::descriptor::Descriptor;
use super::Manifest;

/// Largest chunk a source hands out.
pub const CHUNK_BYTES: usize = 1 << 20;
/// Chunks read per file before giving up (a source that never ends a file).
const MAX_CHUNKS_PER_FILE: u64 = 1 << 24;

/// What a sender holds for a descriptor: its manifest and the files, with their lengths.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Listing {
    pub manifest: Manifest,
    pub files: Vec<(String, u64)>,
}

/// Where a snapshot's files come from. Futures need not be `Send` (the raft driver runs on a
/// glommio executor).
#[allow(async_fn_in_trait)]
pub trait Source {
    /// The snapshot `d` names; an error when the sender no longer holds it.
    async fn open(&mut self, d: &Descriptor) -> Result<Listing, String>;
    /// Bytes of file `name` from `offset`, at most `CHUNK_BYTES` (empty: past its end).
    async fn read(&mut self, name: &str, offset: u64) -> Result<Vec<u8>, String>;
}

/// The staging directory of fetched files.
pub fn staging(snap_dir: &Path) -> PathBuf {
    snap_dir.join("incoming")
}

/// The sender's side: snapshot files opened when asked for, so a newer snapshot that deletes
/// them meanwhile does not cut the transfer short.
pub struct Served {
    listing: Listing,
    files: Vec<File>,
}

impl Served {
    /// Opens the snapshot `d` names in `snap_dir`, if it is still the newest there.
    pub fn open(snap_dir: &Path, d: &Descriptor) -> Result<Served, String> {
        let manifest = super::manifest::load(snap_dir)?.ok_or("no snapshot held")?;
        if !d.names(&manifest) {
            return Err(format!("snapshot {} at index {} is no longer held (newest: {} at index {})", d.seq, d.index, manifest.seq, manifest.index));
        }
        let mut files = Vec::new();
        let mut names = Vec::new();
        for name in &manifest.segments {
            let f = File::open(snap_dir.join(name)).map_err(|e| format!("cannot open {name}: {e}"))?;
            let len = f.metadata().map_err(|e| format!("cannot stat {name}: {e}"))?.len();
            files.push(f);
            names.push((name.clone(), len));
        }
        Ok(Served { listing: Listing { manifest, files: names }, files })
    }

    pub fn listing(&self) -> &Listing {
        &self.listing
    }

    /// Up to `CHUNK_BYTES` of file `name` from `offset`.
    pub fn read(&self, name: &str, offset: u64) -> Result<Vec<u8>, String> {
        let i = self.listing.files.iter().position(|(n, _)| n == name).ok_or_else(|| format!("{name} is not in the snapshot"))?;
        let len = self.listing.files[i].1;
        let mut buf = vec![0; (len.saturating_sub(offset) as usize).min(CHUNK_BYTES)];
        self.files[i].read_exact_at(&mut buf, offset).map_err(|e| format!("cannot read {name} at {offset}: {e}"))?;
        Ok(buf)
    }
}

/// A `Source` on a local snapshot directory (a copied data dir; the leader's own files).
pub struct LocalDir {
    pub dir: PathBuf,
    served: Option<Served>,
}

impl LocalDir {
    pub fn new(dir: PathBuf) -> LocalDir {
        LocalDir { dir, served: None }
    }
}

impl Source for LocalDir {
    async fn open(&mut self, d: &Descriptor) -> Result<Listing, String> {
        let served = Served::open(&self.dir, d)?;
        let listing = served.listing().clone();
        self.served = Some(served);
        Ok(listing)
    }

    async fn read(&mut self, name: &str, offset: u64) -> Result<Vec<u8>, String> {
        self.served.as_ref().ok_or("not open")?.read(name, offset)
    }
}

/// Copies the snapshot `d` names from `source` into the staging directory of `snap_dir`,
/// checked and durable; returns the sender's manifest.
pub async fn fetch(source: &mut impl Source, d: &Descriptor, snap_dir: &Path) -> Result<Manifest, String> {
    let dir = staging(snap_dir);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(|e| format!("cannot clear {}: {e}", dir.display()))?;
    }
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let listing = source.open(d).await?;
    if !d.names(&listing.manifest) || listing.files.iter().map(|(n, _)| n).ne(listing.manifest.segments.iter()) {
        return Err("the sender's listing does not match the snapshot asked for".into());
    }
    for (name, len) in &listing.files {
        if name.contains('/') || !name.ends_with(".seg") {
            return Err(format!("refusing snapshot file name {name:?}"));
        }
        let path = dir.join(name);
        copy_file(source, name, *len, &path).await?;
        crate::mvcc::segment::verify(&path)?;
    }
    crate::durable::sync_dir(&dir).map_err(|e| format!("cannot sync {}: {e}", dir.display()))?;
    Ok(listing.manifest)
}

async fn copy_file(source: &mut impl Source, name: &str, len: u64, path: &Path) -> Result<(), String> {
    let mut out = File::create(path).map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    let mut offset = 0;
    for _ in 0..MAX_CHUNKS_PER_FILE {
        if offset == len {
            return out.sync_all().map_err(|e| format!("cannot sync {}: {e}", path.display()));
        }
        let chunk = source.read(name, offset).await?;
        if chunk.is_empty() || offset + chunk.len() as u64 > len {
            return Err(format!("{name}: {} bytes at {offset} of {len}", chunk.len()));
        }
        out.write_all(&chunk).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        offset += chunk.len() as u64;
    }
    Err(format!("{name}: too many chunks"))
}

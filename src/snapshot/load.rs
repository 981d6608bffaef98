//! Boot: the segments a manifest names, loaded into the shards' stores.

use std::path::Path;

use super::Manifest;
use crate::mvcc::segment;
use crate::mvcc::store::Store;
use crate::shard::router::shard_of;

/// Total size of the snapshot's segment files.
pub fn segment_bytes(dir: &Path, m: &Manifest) -> u64 {
    m.segments.iter().filter_map(|name| std::fs::metadata(dir.join(name)).ok()).map(|md| md.len()).sum()
}

/// Loads the snapshot's segments into `shards` stores, routing each key to its owner (the
/// shard count may differ from the snapshot's). A key's records from several segments (a full
/// one and deltas) are joined in revision order; history compacted since an older segment
/// was written is compacted again.
pub fn load_stores(dir: &Path, m: &Manifest, shards: usize) -> Result<Vec<Store>, String> {
    let mut parts: Vec<Vec<segment::SegKey>> = (0..shards).map(|_| Vec::new()).collect();
    let checked = m.segment_crcs.len() == m.segments.len();
    for (k, name) in m.segments.iter().enumerate() {
        let path = dir.join(name);
        // Damage inside a block is refused with its offset as the file is read.
        let (keys, crc) = segment::read(&path)?;
        if checked && crc != m.segment_crcs[k] {
            let len = std::fs::metadata(&path).map(|md| md.len()).unwrap_or(0);
            return Err(format!(
                "snapshot segment {}: bytes at offset 0..{len} have CRC-32C {crc:08x}, the manifest's {:08x}: not the file this snapshot wrote",
                path.display(),
                m.segment_crcs[k]
            ));
        }
        for k in keys {
            parts[shard_of(&k.key, shards)].push(k);
        }
    }
    Ok(parts
        .into_iter()
        .map(|keys| {
            let mut store = Store::restore(join_keys(keys), m.compact_rev, m.rev);
            store.compact_physical(m.compact_rev);
            store
        })
        .collect())
}

/// Sorts keys and joins the records of a key found in several segments (a full one and deltas)
/// or in several chunks of one (a key with a long history is split), then puts each joined
/// key's records in revision order once.
fn join_keys(mut keys: Vec<segment::SegKey>) -> Vec<segment::SegKey> {
    keys.sort_by(|a, b| a.key.cmp(&b.key)); // stable: a key's parts stay in file order
    let mut joined: Vec<(segment::SegKey, bool)> = Vec::with_capacity(keys.len());
    for k in keys {
        match joined.last_mut() {
            Some((last, parts)) if last.key == k.key => {
                last.records.extend(k.records);
                *parts = true;
            }
            _ => joined.push((k, false)),
        }
    }
    joined
        .into_iter()
        .map(|(mut k, parts)| {
            if parts {
                k.records.sort_by_key(|r| r.rev());
                k.records.dedup_by_key(|r| r.rev());
            }
            k
        })
        .collect()
}

//! etcd's snapshot file: what `etcdctl snapshot save` receives from Maintenance.Snapshot, a
//! bbolt database as etcd 3.5.1's backend holds it, written from ballast's state at one
//! revision so that `etcdutl snapshot status|restore` read it and etcd serves the restored
//! data. `page.rs` is bbolt's page layout, `tree.rs` writes B+trees bottom-up into a file,
//! `runs.rs` sorts the shards' history into revision order with bounded memory, `schema.rs`
//! holds etcd's buckets other than `key`, and `stream.rs` sends the file in etcd's chunks
//! with its trailing SHA-256.

pub mod page;
pub mod runs;
pub mod schema;
pub mod stream;
pub mod tree;

use std::io;
use std::path::Path;

use crate::mvcc::export::ExportRecord;
use schema::EtcdState;
use tree::{PageFile, TreeBuilder};

/// Writes the bolt file to `path` (a new file): the `key` bucket from every shard's chunks
/// (`shards`, read to the end one after the other), the other buckets from `state`. Its size
/// in bytes.
pub fn write_db(path: &Path, state: &EtcdState, shards: Vec<flume::Receiver<Vec<ExportRecord>>>) -> io::Result<u64> {
    let mut runs = runs::Runs::new(path);
    for shard in shards {
        for chunk in shard.iter() {
            for r in chunk {
                runs.push(r.key, r.value)?;
            }
        }
    }
    let mut merged = runs.merge()?;
    let mut file = PageFile::create(path)?;
    let mut key = TreeBuilder::default();
    while let Some((k, v)) = merged.next_entry()? {
        key.push(&mut file, 0, k, v)?;
    }
    let mut buckets = vec![(b"key".to_vec(), key.finish_bucket(&mut file)?)];
    for (name, entries) in state.buckets() {
        let mut tree = TreeBuilder::default();
        for (k, v) in entries {
            tree.push(&mut file, 0, k, v)?;
        }
        buckets.push((name.as_bytes().to_vec(), tree.finish_bucket(&mut file)?));
    }
    buckets.sort();
    let mut root = TreeBuilder::default();
    for (name, value) in buckets {
        root.push(&mut file, page::BUCKET_ELEMENT, name, value)?;
    }
    let root = root.finish(&mut file)?;
    file.finish(root)
}

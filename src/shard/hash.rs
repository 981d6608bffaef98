//! A shard's side of HashKV: its records up to the hashed revision (`mvcc/hash.rs`), a chunk
//! of keys at a time, stepping aside between chunks so the shard keeps serving; physical
//! compaction beyond the shard's compaction at the start waits meanwhile (registered as a
//! read), so every chunk sees the same history.

use std::rc::Rc;

use tokio::sync::oneshot;

use super::actor::ShardState;
use crate::background::step_aside;
use crate::mvcc::hash::HashRecord;

/// Keys, and records, one chunk lists at most (a key with a long history ends its chunk): a
/// record costs about a microsecond (its KeyValue encoded and checksummed), so a chunk holds
/// the shard for a few milliseconds at most.
const HASH_CHUNK: (usize, usize) = (1024, 2048);

impl ShardState {
    /// Answers the shard's records up to `rev` once all are listed.
    pub(super) async fn hash_records(self: Rc<Self>, rev: i64, reply: oneshot::Sender<Vec<HashRecord>>) {
        let _held = self.read_at(self.store.borrow().compact_rev());
        let (mut all, mut after) = (Vec::new(), None::<Vec<u8>>);
        loop {
            let (chunk, next) = self.store.borrow().hash_chunk(after.as_deref(), rev, HASH_CHUNK.0, HASH_CHUNK.1);
            all.extend(chunk);
            match next {
                Some(key) => after = Some(key),
                None => break,
            }
            step_aside().await;
        }
        let _ = reply.send(all);
    }
}

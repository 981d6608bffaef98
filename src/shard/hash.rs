//! A shard's side of HashKV: its records up to the hashed revision (`mvcc/hash.rs`), a chunk
//! of keys at a time, stepping aside between chunks so the shard keeps serving; physical
//! compaction beyond the shard's compaction when the request arrived waits meanwhile
//! (registered as a read, before any Compact queued behind the request), so every chunk sees
//! the same history.

use std::rc::Rc;

use tokio::sync::oneshot;

use super::actor::ShardState;
use super::reads::ReadGuard;
use crate::background::step_aside;
use crate::mvcc::hash::HashRecord;

/// Keys, and records, one chunk lists at most (a key with a long history ends its chunk): a
/// record costs about a microsecond (its KeyValue encoded and checksummed), so a chunk holds
/// the shard for a few milliseconds at most.
const HASH_CHUNK: (usize, usize) = (1024, 2048);

impl ShardState {
    /// Answers the shard's records up to `rev` once all are listed; `held` holds compaction at
    /// the store's compaction when the request arrived. A store installed from a snapshot
    /// meanwhile (compacted further) is listed again from its first key.
    pub(super) async fn hash_records(self: Rc<Self>, rev: i64, mut held: ReadGuard, reply: oneshot::Sender<Vec<HashRecord>>) {
        let (mut all, mut after, mut store) = (Vec::new(), None::<Vec<u8>>, self.replaced.get());
        loop {
            let (chunk, next) = self.store.borrow().hash_chunk(after.as_deref(), rev, HASH_CHUNK.0, HASH_CHUNK.1);
            all.extend(chunk);
            let Some(key) = next else { break };
            after = Some(key);
            step_aside().await;
            if self.replaced.get() != store {
                (all, after, store) = (Vec::new(), None, self.replaced.get());
                held = self.read_at(self.store.borrow().compact_rev());
            }
        }
        drop(held);
        let _ = reply.send(all);
    }
}

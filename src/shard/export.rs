//! A shard's side of Maintenance.Snapshot: its history as etcd's `key` bucket entries
//! (`mvcc/export.rs`), sent in chunks over a bounded channel to the thread writing the bolt
//! file. Chunk by chunk, stepping aside between chunks so the shard keeps serving; physical
//! compaction beyond the exported compaction waits meanwhile (registered as a read), so
//! every chunk sees the same history. Writes after the exported revision are left out.

use std::rc::Rc;

use super::actor::ShardState;
use super::reads::ReadGuard;
use crate::background::step_aside;
use crate::mvcc::export::ExportRecord;

/// Keys, and bytes of entries, one chunk holds at most.
const EXPORT_CHUNK: (usize, usize) = (4096, 4 << 20);

impl ShardState {
    /// Sends the shard's entries up to `rev` (compaction at `compact_rev`) to `out`, then
    /// drops it; stops early when the receiver is gone.
    /// `_held` holds compaction at `compact_rev` (taken when the request arrived).
    pub(super) async fn export(self: Rc<Self>, rev: i64, compact_rev: i64, _held: ReadGuard, out: flume::Sender<Vec<ExportRecord>>) {
        let mut after: Option<Vec<u8>> = None;
        loop {
            let (chunk, next) = self.store.borrow().export_chunk(after.as_deref(), rev, compact_rev, EXPORT_CHUNK.0, EXPORT_CHUNK.1);
            if out.send_async(chunk).await.is_err() {
                return;
            }
            match next {
                Some(key) => after = Some(key),
                None => return,
            }
            step_aside().await;
        }
    }
}

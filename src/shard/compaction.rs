//! Physical compaction on a shard, in the background: chunk by chunk, yielding between chunks,
//! paused while a snapshot segment is being written (so a segment holds all history at its
//! revision) and while a read below its revision runs in steps (`reads.rs`).

use std::rc::Rc;

use super::actor::ShardState;
use crate::background::step_aside;
use crate::mvcc::store::CompactBound;

/// What a step of a background compaction visits at most: 10 000 keys holding 900 000 records
/// (a history of 90 writes each) took 40 ms in one step, holding writes; bounded in keys and
/// records only, the steps of bench/'s pauses compaction (1M revisions over 110k keys) took
/// 0.8 ms at the median and up to 2 ms, where a read step takes at most 200 µs and a
/// snapshot chunk 250 µs.
const COMPACT_STEP: CompactBound = CompactBound { max_keys: 10_000, max_records: 20_000, time: Some(std::time::Duration::from_micros(250)) };
/// How often a paused compaction checks whether the snapshot (or the read) is done.
const SNAPSHOT_WAIT: std::time::Duration = std::time::Duration::from_millis(5);


impl ShardState {
    /// Physical compaction in steps of `COMPACT_STEP`, yielding between steps so writes
    /// and reads keep flowing; waits while a snapshot is being written.
    pub(super) async fn compact_in_background(self: Rc<Self>) {
        // Below any revision a compaction can name (etcd accepts one at 0), so every waiter is answered.
        let mut done_rev = -1;
        let m = crate::metrics::handles();
        let millis = |since: std::time::Instant| since.elapsed().as_secs_f64() * 1000.0;
        while self.compact_target.get() > done_rev {
            let target = self.compact_target.get();
            let mut cursor: Option<Vec<u8>> = None;
            let started = std::time::Instant::now();
            loop {
                while self.snapshots.get() > 0 || self.oldest_read().is_some_and(|r| r < target) {
                    glommio::timer::sleep(SNAPSHOT_WAIT).await;
                }
                // etcd's pause: what a step holds the shard's writes for.
                let step = std::time::Instant::now();
                cursor = self.store.borrow_mut().compact_chunk(target, cursor.as_deref(), COMPACT_STEP);
                m.compaction_pause_ms.record(millis(step));
                self.publish();
                if cursor.is_none() {
                    break;
                }
                step_aside().await;
            }
            m.compaction_total_ms.record(millis(started));
            m.compaction_last.set(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64().floor()));
            done_rev = target;
            let (done, pending): (Vec<_>, Vec<_>) =
                self.compact_waiters.borrow_mut().drain(..).partition(|(rev, _)| *rev <= done_rev);
            *self.compact_waiters.borrow_mut() = pending;
            for (_, waiter) in done {
                let _ = waiter.send(());
            }
        }
        self.compacting.set(false);
    }
}

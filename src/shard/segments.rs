//! A shard's part of a snapshot: its segment file, written from the store at the snapshot's
//! revision, after which the values it holds are read from the segment's mapping.

use std::rc::Rc;

use super::actor::ShardState;
use crate::background::step_aside;
use crate::mvcc::persist;
use crate::mvcc::segment::{self, SegmentInfo};

impl ShardState {
    /// Writes the shard's segment of a snapshot at `rev`: its records after `since`, all of
    /// them when `since` is 0 (a full snapshot, which replaces the segments before it).
    pub(super) async fn write_segment(self: Rc<Self>, path: std::path::PathBuf, since: i64, rev: i64) -> Result<SegmentInfo, String> {
        let started = std::time::Instant::now();
        // The segment holds what was written up to here (later writes queue behind this order).
        let cut = self.store.borrow().written_bytes();
        let result = persist::write_segment(path.clone(), &self.store, since, rev).await.map_err(|e| {
            // A partial segment is in no manifest: remove it (on a full disk it holds space).
            let _ = std::fs::remove_file(&path);
            if crate::durable::is_disk_full(&e) {
                self.status.report_disk_full();
            }
            format!("{}: {e}", path.display())
        });
        if let Ok(info) = &result {
            self.store.borrow_mut().set_segment_rev(rev);
            let before = if since == 0 { 0 } else { self.segment_bytes.get() };
            self.segment_bytes.set(before + info.size_bytes);
            self.written_at_segment.set(cut);
            self.publish();
        }
        crate::metrics::handles().backend_commit_seconds.record(started.elapsed().as_secs_f64());
        if result.is_ok() {
            if let Err(e) = self.adopt_segment(&path).await {
                crate::log::warn("values stay on the heap: cannot map the new segment", &[("error", e)]);
            }
        }
        self.snapshots.set(self.snapshots.get() - 1);
        result
    }

    /// Moves the values just written to a segment off the heap: they are read from the
    /// segment's mapping from now on. Chunk by chunk, yielding between chunks.
    async fn adopt_segment(&self, path: &std::path::Path) -> Result<(), String> {
        let mut reader = segment::Reader::open(path)?;
        let map = reader.mapping().clone();
        loop {
            let more = {
                let mut store = self.store.borrow_mut();
                reader.next_chunk(&mut |key, records| store.adopt_mapped(&map, key, records))?
            };
            if !more {
                break;
            }
            reader.release_read();
            self.publish();
            step_aside().await;
        }
        map.release_resident();
        Ok(())
    }

}

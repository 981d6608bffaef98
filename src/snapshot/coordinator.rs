//! Carries out the raft core's snapshot orders: every shard is told to write its segment as of
//! the applied state (the order is queued behind every write applied so far, so each segment
//! is cut exactly there), then the manifest is renamed into place. The outcome comes back to
//! the core's driver as a message on `done`; `finish` keeps the newest durable manifest, on
//! top of which the next snapshot may be a delta.

use std::sync::Arc;
use std::time::Instant;

use super::manifest::{remove_replaced, segment_name, store_listing_replaced, Manifest};
use crate::metrics as m;
use crate::raft::snapshots::SnapshotOrder;
use crate::shard::mailbox::Shards;
use crate::status::ServerStatus;

/// What apply knows at the snapshot's index.
pub struct AppliedState {
    pub rev: i64,
    pub compact_rev: i64,
    pub alarms: Vec<(u64, i32)>,
    pub leases: Vec<(i64, i64)>,
    pub lease_remaining: Vec<(i64, i64)>,
    pub auth: crate::auth::AuthState,
}

/// The outcome of a snapshot: its manifest, durable, or why it failed.
pub type Finished = Result<Manifest, String>;

pub struct Coordinator {
    dir: std::path::PathBuf,
    shards: Shards,
    status: Arc<ServerStatus>,
    /// The newest durable snapshot.
    last: Option<Manifest>,
    /// Number of the last snapshot started (`Manifest::seq`), failed ones included.
    seq: u64,
    started: Option<Instant>,
    done: flume::Sender<Finished>,
}

impl Coordinator {
    pub fn new(
        dir: std::path::PathBuf,
        shards: Shards,
        status: Arc<ServerStatus>,
        last: Option<Manifest>,
        done: flume::Sender<Finished>,
    ) -> Coordinator {
        let seq = last.as_ref().map_or(0, |m| m.seq);
        Coordinator { dir, shards, status, last, seq, started: None, done }
    }

    /// Orders every shard's segment and, in a task, waits for them and writes the manifest.
    pub async fn start(&mut self, order: &SnapshotOrder, state: AppliedState) {
        let shards = self.shards.count();
        // A requested snapshot rewrites everything; otherwise a delta when the last one allows.
        let base = self.last.as_ref().filter(|m| !order.full && m.next_is_delta(shards, state.compact_rev));
        let since = base.map_or(0, |m| m.rev);
        self.seq += 1;
        let mut pending = Vec::new();
        let mut segments = base.map_or_else(Vec::new, |m| m.segments.clone());
        for shard in 0..shards {
            let name = segment_name(order.index, self.seq, shard);
            pending.push(self.shards.send_snapshot(shard, (since, state.rev), self.dir.join(&name)).await);
            segments.push(name);
        }
        let manifest = Manifest {
            index: order.index,
            term: order.term,
            voters: order.voters.clone(),
            learners: order.learners.clone(),
            members: Some(order.members.clone()),
            rev: state.rev,
            compact_rev: state.compact_rev,
            alarms: state.alarms,
            leases: state.leases,
            auth: state.auth,
            lease_remaining: state.lease_remaining,
            segments,
            segment_crcs: base.map_or_else(Vec::new, |m| m.segment_crcs.clone()),
            wal_seq_from: order.wal_seq_from,
            wal_seq_kept: order.wal_seq_kept,
            shards,
            deltas: base.map_or(0, |m| m.deltas + 1),
            full_bytes: base.map_or(0, |m| m.full_bytes),
            delta_bytes: base.map_or(0, |m| m.delta_bytes),
            full_compact_rev: base.map_or(state.compact_rev, |m| m.full_compact_rev),
            seq: self.seq,
        };
        self.started = Some(Instant::now());
        let (dir, status, done) = (self.dir.clone(), self.status.clone(), self.done.clone());
        glommio::spawn_local(async move {
            let _ = done.send(write(dir, status, manifest, pending).await);
        })
        .detach();
    }

    /// The number the next snapshot (or an installed one) gets.
    pub fn next_seq(&self) -> u64 {
        self.seq + 1
    }

    /// A snapshot from the leader was installed as `m` (durable): the next snapshot builds
    /// on it. Returns its descriptor, which followers are sent from now on.
    pub fn installed(&mut self, m: Manifest) -> Vec<u8> {
        assert!(self.started.is_none(), "an install while a snapshot runs");
        self.seq = self.seq.max(m.seq);
        let descriptor = super::descriptor::Descriptor::of(&m).encode();
        self.last = Some(m);
        descriptor
    }

    /// Records the outcome of the running snapshot: its descriptor (which followers are sent
    /// from now on), or why it failed.
    pub fn finish(&mut self, result: Finished) -> Result<Vec<u8>, String> {
        if let Some(started) = self.started.take() {
            m::handles().snapshot_seconds.record(started.elapsed().as_secs_f64());
            m::handles().snap_save_seconds.record(started.elapsed().as_secs_f64());
        }
        match result {
            Ok(m) => {
                crate::failpoint::crash("snapshot-before-release");
                let kind = if m.deltas == 0 { "full" } else { "delta" };
                crate::log::info("saved snapshot", &[("index", m.index.to_string()), ("revision", m.rev.to_string()), ("kind", kind.into())]);
                let descriptor = super::descriptor::Descriptor::of(&m).encode();
                self.last = Some(m);
                Ok(descriptor)
            }
            Err(e) => {
                // A shard may have let go of tombstones its segment holds, and that segment is
                // in no manifest: only a full snapshot no longer needs them.
                self.last = None;
                crate::log::error("snapshot failed", &[("error", e.clone())]);
                Err(e)
            }
        }
    }
}

type SegmentWritten = crate::error::Result<tokio::sync::oneshot::Receiver<Result<crate::mvcc::segment::SegmentInfo, String>>>;

/// Waits for every shard's segment, then writes the manifest.
async fn write(dir: std::path::PathBuf, status: Arc<ServerStatus>, mut manifest: Manifest, pending: Vec<SegmentWritten>) -> Finished {
    // Only when the base's checksums are complete (else there are none to add to).
    let base = std::mem::take(&mut manifest.segment_crcs);
    let mut crcs = (base.len() + pending.len() == manifest.segments.len()).then_some(base);
    for p in pending {
        let info = match p {
            Ok(rx) => rx.await.unwrap_or_else(|_| Err("shard stopped".into()))?,
            Err(e) => return Err(e.to_string()),
        };
        if let Some(crcs) = crcs.as_mut() {
            crcs.push(info.crc32c);
        }
        if manifest.deltas == 0 {
            manifest.full_bytes += info.size_bytes;
        } else {
            manifest.delta_bytes += info.size_bytes;
        }
    }
    manifest.segment_crcs = crcs.unwrap_or_default();
    crate::failpoint::crash("snapshot-before-manifest");
    // On a blocking thread: the manifest's fsyncs (with the removal of the replaced segments,
    // once done here too, 0.1-0.2 s) held shard 0.
    let m = manifest.clone();
    let listing = dir.clone();
    let stored = glommio::executor().spawn_blocking(move || store_listing_replaced(&listing, &m)).await;
    match stored {
        Ok(replaced) => remove_in_background(dir, replaced),
        Err(e) => {
            if crate::durable::is_disk_full(&e) {
                status.report_disk_full();
            }
            return Err(format!("cannot write snapshot manifest: {e}"));
        }
    }
    Ok(manifest)
}

/// Removes the segments a snapshot replaced on a thread of its own: cut a megabyte at a time
/// (`writeback::delete_paced`), the old full snapshot and its deltas take seconds to go (110 MB:
/// 0.7 s), and the snapshot (a Defragment's answer, the next snapshot, the WAL's release) need
/// not wait for them.
fn remove_in_background(dir: std::path::PathBuf, replaced: Vec<std::path::PathBuf>) {
    if replaced.is_empty() {
        return;
    }
    let removal = std::thread::Builder::new().name("segment-removal".into()).spawn(move || {
        if let Err(e) = remove_replaced(&dir, replaced) {
            crate::log::warn("cannot remove replaced snapshot segments", &[("error", e.to_string())]);
        }
    });
    if let Err(e) = removal {
        // The next snapshot's listing names the files again.
        crate::log::warn("cannot start removing replaced snapshot segments", &[("error", e.to_string())]);
    }
}

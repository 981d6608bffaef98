//! Maintenance.Snapshot's work: gathers the state etcd's backend would hold (members, leases,
//! auth, alarms, raft position), has every shard list its history at the current revision,
//! writes the bolt file (`src/export/`) to a temporary file in the data dir on a blocking
//! thread, and streams it. The file is unlinked once open, so nothing is left behind when
//! the stream ends or the client goes away; what a crash leaves is removed at the next start.
//! A compaction applied while the file was written makes it be written again (at most
//! `ATTEMPTS` times).
//!
//! Each download holds its file, a whole copy of the data, until its client has taken the
//! last chunk (a client that stops reading keeps it for as long as its connection lasts), so
//! at most `SNAPSHOT_DOWNLOADS_MAX` are in progress at once; one more is refused
//! (ResourceExhausted) rather than let stalled clients fill the disk. etcd has no such bound:
//! its download holds a read transaction of the live file instead.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::mpsc;
use tonic::Status;

use super::Ctx;
use crate::error::Error;
use crate::export::schema::EtcdState;
use crate::proto::etcdserverpb::SnapshotResponse;

/// Numbers the temporary files of concurrent snapshots.
static NEXT_FILE: AtomicU64 = AtomicU64::new(0);

/// Snapshot downloads in progress at once (being written or streamed).
pub const SNAPSHOT_DOWNLOADS_MAX: usize = 4;
static DOWNLOADS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(SNAPSHOT_DOWNLOADS_MAX);

/// Tries to write one snapshot at most this many times (a compaction applied while one was
/// being written makes it start again).
const ATTEMPTS: usize = 3;

/// Writes the snapshot and returns its stream.
pub async fn snapshot(ctx: &Ctx) -> Result<mpsc::Receiver<Result<SnapshotResponse, Status>>, Status> {
    let started = std::time::Instant::now();
    let Ok(slot) = DOWNLOADS.try_acquire() else {
        return Err(Error::TooManySnapshotDownloads.into());
    };
    for _ in 0..ATTEMPTS {
        let compact_rev = ctx.status.compact_rev();
        let (file, size) = write(ctx).await?;
        // A compaction applied while the shards listed their history may have removed records
        // the file claims (a shard holds compaction back only once its export has started).
        if ctx.status.compact_rev() != compact_rev {
            crate::log::info("a compaction ran during a database snapshot; writing it again", &[]);
            continue;
        }
        crate::log::info("sending database snapshot to client", &[("total-bytes", size.to_string())]);
        return Ok(crate::export::stream::send(file, size, slot, started));
    }
    Err(Error::Internal(format!("snapshot: compacted during each of {ATTEMPTS} attempts")).into())
}

/// Writes the bolt file at the current revision: opened and already unlinked, with its size.
async fn write(ctx: &Ctx) -> Result<(std::fs::File, u64), Status> {
    let mut state = gather(ctx).await?;
    let (rev, compact_rev) = (ctx.status.applied_rev(), ctx.status.compact_rev());
    state.compact_rev = compact_rev;
    let shards = ctx.shards.export(rev, compact_rev).await?;
    let path = temp_path(ctx);
    let written = path.clone();
    // The file is unlinked on the blocking thread, so it goes even when the client gave up and
    // this future was dropped.
    let result = tokio::task::spawn_blocking(move || {
        let opened = crate::export::write_db(&written, &state, shards).and_then(|size| Ok((std::fs::File::open(&written)?, size)));
        let _ = std::fs::remove_file(&written);
        opened
    })
    .await;
    match result {
        Ok(Ok(done)) => Ok(done),
        Ok(Err(e)) => Err(Error::Internal(format!("snapshot: {}: {e}", path.display())).into()),
        Err(e) => Err(Error::Internal(format!("snapshot: {e}")).into()),
    }
}

/// The names of the temporary files (the bolt file and its sort runs) begin with this.
const TEMP_PREFIX: &str = "snapshot-download-";

fn temp_path(ctx: &Ctx) -> PathBuf {
    let n = NEXT_FILE.fetch_add(1, Ordering::Relaxed);
    ctx.data_dir.join(format!("{TEMP_PREFIX}{}-{n}.db.tmp", std::process::id()))
}

/// Removes the temporary files a snapshot being written when the process died left behind.
pub fn remove_leftovers(data_dir: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(data_dir) else { return };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

async fn gather(ctx: &Ctx) -> Result<EtcdState, Status> {
    let membership = ctx.membership.current();
    let mut leases = Vec::new();
    for id in ctx.raft.lease_ids().await? {
        if let Some((_, granted, _)) = ctx.raft.lease_time_to_live(id).await? {
            leases.push((id, granted));
        }
    }
    // This member's applied alarms, not a proposal: etcd's snapshot is of the local backend
    // and is served without a leader.
    let alarms = ctx.status.alarm_members().to_vec();
    Ok(EtcdState {
        consistent_index: ctx.status.applied_index(),
        term: ctx.status.term(),
        compact_rev: 0,
        members: membership.members.clone(),
        removed: membership.removed.clone(),
        leases,
        auth: ctx.auth.view().state.clone(),
        cluster_version: cluster_version(&ctx.compat_version),
        alarms,
    })
}

/// etcd's cluster version: the major and minor of the version served, patch 0.
fn cluster_version(version: &str) -> String {
    let mut parts = version.split('.');
    match (parts.next(), parts.next()) {
        (Some(major), Some(minor)) => format!("{major}.{minor}.0"),
        _ => "3.5.0".into(),
    }
}

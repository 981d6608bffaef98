//! Maintenance.Snapshot's stream as etcd's maintenanceServer sends it: the file in 32 KiB
//! chunks, each with the bytes still to come (`remaining_bytes`), then one message holding
//! the SHA-256 of the whole file, which `etcdctl snapshot save` and `etcdutl snapshot
//! restore` check. No header, as etcd. The file is read on a blocking thread, a chunk at a
//! time, no further ahead than the client takes.

use std::fs::File;
use std::io::Read;

use tokio::sync::mpsc;
use tonic::Status;

use crate::proto::etcdserverpb::SnapshotResponse;

/// etcd's snapshotSendBufferSize.
pub const CHUNK_BYTES: usize = 32 * 1024;
/// Chunks read ahead of the client.
const CHUNKS_QUEUED: usize = 4;

/// Sends `file` (`size` bytes) to the returned receiver, then its digest; `slot` (the
/// download's place among those in progress) is given back with the file when it ends.
pub fn send(file: File, size: u64, slot: tokio::sync::SemaphorePermit<'static>, started: std::time::Instant) -> mpsc::Receiver<Result<SnapshotResponse, Status>> {
    let (tx, rx) = mpsc::channel(CHUNKS_QUEUED);
    tokio::task::spawn_blocking(move || {
        let _slot = slot;
        send_chunks(file, size, &tx);
        // etcd observes its snapshot's transfer when it ends, however it ends.
        crate::metrics::handles().backend_snapshot_seconds.record(started.elapsed().as_secs_f64());
    });
    rx
}

/// The file's chunks, then its digest (etcd's last message), until the client goes away.
fn send_chunks(mut file: File, size: u64, tx: &mpsc::Sender<Result<SnapshotResponse, Status>>) {
    let mut digest = ring::digest::Context::new(&ring::digest::SHA256);
    let mut sent = 0u64;
    while sent < size {
        let mut blob = vec![0u8; CHUNK_BYTES.min((size - sent) as usize)];
        if let Err(e) = file.read_exact(&mut blob) {
            let _ = tx.blocking_send(Err(crate::error::Error::Internal(format!("snapshot: {e}")).into()));
            return;
        }
        sent += blob.len() as u64;
        digest.update(&blob);
        if tx.blocking_send(Ok(SnapshotResponse { header: None, remaining_bytes: size - sent, blob })).is_err() {
            return; // the client went away
        }
    }
    let sha = digest.finish().as_ref().to_vec();
    let _ = tx.blocking_send(Ok(SnapshotResponse { header: None, remaining_bytes: 0, blob: sha }));
}

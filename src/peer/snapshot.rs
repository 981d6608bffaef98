//! Snapshot files over the peer transport: step 1 of installing a raft snapshot on a follower
//! (`raft/installs.rs`). The leader's `Peer.Snapshot` opens the snapshot a descriptor names
//! (`snapshot::fetch::Served`, so a newer snapshot deleting the files meanwhile does not cut
//! the transfer short) and streams the listing, then every file's chunks in order; file reads
//! run on tokio's blocking pool. The follower's side (`fetch`) runs `snapshot::fetch::fetch` on
//! a `Source` over that stream, on a thread of its own with its own runtime: the file writes,
//! checksums and syncs stay off the raft driver's thread, which only awaits the outcome.

use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use futures_util::Stream;
use tonic::{Status, Streaming};

use super::stats::Transfer;
use super::Identity;
use crate::proto::ballastpeerpb::peer_client::PeerClient;
use crate::proto::ballastpeerpb::{SnapshotChunk, SnapshotRequest};
use crate::snapshot::descriptor::Descriptor;
use crate::snapshot::fetch::{Listing, Served, Source, CHUNK_BYTES};
use crate::snapshot::Manifest;

/// Chunks read ahead of the network on the sender.
const CHUNKS_AHEAD: usize = 4;

pub type ChunkStream = Pin<Box<dyn Stream<Item = Result<SnapshotChunk, Status>> + Send>>;

/// The sender's stream for descriptor `d` in `snap_dir`, to member `to`.
pub async fn serve(snap_dir: PathBuf, d: Descriptor, to: u64) -> Result<ChunkStream, Status> {
    let opened = tokio::task::spawn_blocking(move || Served::open(&snap_dir, &d)).await.map_err(|e| Status::internal(e.to_string()))?;
    let served = Arc::new(opened.map_err(Status::failed_precondition)?);
    let listing = serde_json::to_vec(served.listing()).map_err(|e| Status::internal(e.to_string()))?;
    let (tx, rx) = flume::bounded(CHUNKS_AHEAD);
    tokio::spawn(async move {
        let transfer = Transfer::send(to); // dropped unfinished: a failed send
        if tx.send_async(Ok(SnapshotChunk { listing, ..Default::default() })).await.is_err() {
            return;
        }
        for (name, len) in served.listing().files.clone() {
            let mut offset = 0;
            while offset < len {
                let (s, n) = (served.clone(), name.clone());
                let read = tokio::task::spawn_blocking(move || s.read(&n, offset)).await.map_err(|e| e.to_string()).and_then(|r| r);
                let chunk = match read {
                    Ok(data) if !data.is_empty() => Ok(data),
                    Ok(_) => Err(format!("{name}: nothing at {offset} of {len}")),
                    Err(e) => Err(e),
                };
                let chunk = match chunk {
                    Ok(data) => data,
                    Err(e) => {
                        let _ = tx.send_async(Err(Status::internal(e))).await;
                        return;
                    }
                };
                let size = chunk.len() as u64;
                if tx.send_async(Ok(SnapshotChunk { name: name.clone(), offset, data: chunk, ..Default::default() })).await.is_err() {
                    return; // the follower went away
                }
                offset += size;
            }
        }
        transfer.done(true);
    });
    Ok(Box::pin(rx.into_stream()))
}

/// The follower's `Source`: the leader's stream, read in the order `fetch` asks.
struct Remote {
    client: PeerClient<tonic::transport::Channel>,
    me: Identity,
    chunks: Option<Streaming<SnapshotChunk>>,
}

impl Source for Remote {
    async fn open(&mut self, d: &Descriptor) -> Result<Listing, String> {
        let req = SnapshotRequest { cluster_id: self.me.cluster_id, from: self.me.member_id, descriptor: d.encode() };
        let mut chunks = self.client.snapshot(req).await.map_err(|s| s.message().to_string())?.into_inner();
        let first = chunks.message().await.map_err(|s| s.message().to_string())?.ok_or("the sender sent no listing")?;
        self.chunks = Some(chunks);
        serde_json::from_slice(&first.listing).map_err(|e| format!("bad snapshot listing: {e}"))
    }

    async fn read(&mut self, name: &str, offset: u64) -> Result<Vec<u8>, String> {
        let chunks = self.chunks.as_mut().ok_or("not open")?;
        let c = chunks.message().await.map_err(|s| s.message().to_string())?.ok_or("the sender ended the snapshot early")?;
        if c.name != name || c.offset != offset || c.data.len() > CHUNK_BYTES {
            return Err(format!("the sender sent {} at {} ({} bytes), {name} at {offset} expected", c.name, c.offset, c.data.len()));
        }
        Ok(c.data)
    }
}

/// Fetches the snapshot `d` names from member `from` at `url` into `snap_dir`'s staging
/// directory (blocking: run it on a thread of its own). Returns the sender's manifest.
pub fn fetch(from: u64, url: String, tls: Option<Arc<rustls::ClientConfig>>, me: Identity, d: Descriptor, snap_dir: PathBuf) -> Result<Manifest, String> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| format!("cannot start a runtime: {e}"))?;
    let transfer = Transfer::receive(from);
    let fetched = rt.block_on(async move {
        let channel = super::dial::connect(&url, tls).await?;
        let client = PeerClient::new(channel).max_decoding_message_size(2 * CHUNK_BYTES);
        let mut source = Remote { client, me, chunks: None };
        crate::snapshot::fetch::fetch(&mut source, &d, &snap_dir).await
    });
    transfer.done(fetched.is_ok());
    fetched
}

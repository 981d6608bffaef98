//! etcd's watch: the hub (`hub.rs`, one task on shard 0 that owns every watcher and fans the
//! shards' events out in revision order) and the watcher (`watcher.rs`: range, filters, where
//! it stands, its responses). The gRPC stream (`api/watch.rs`) reaches the hub through
//! `WatchHub`; the raft driver tells it how far apply has gone.

pub mod hub;
pub mod index;
pub mod watcher;
pub mod wire;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::proto::etcdserverpb::WatchCreateRequest;
use wire::WireResponse;

/// Requests from every watch stream queued for the hub; a stream waits while it is full.
pub const HUB_QUEUE_CAPACITY: usize = 16 * 1024;
/// Response bytes a stream may hold for its client; past this its watchers are moved aside
/// and caught up from MVCC once the client has read them.
pub const STREAM_BUFFER_BYTES: usize = 4 << 20;
/// Response bytes all streams together may hold for their clients. Past it, a stream holding
/// more than `STREAM_FLOOR_BYTES` has its watchers moved aside too, so what stalled clients cost
/// is bounded by this plus the floor per stream, not 4 MiB per stream (600 stalled streams on
/// one connection held 2.8 GiB before; etcd 3.5 408 MiB).
pub const HELD_BUDGET_BYTES: usize = 256 << 20;
/// What a stream may always hold, whatever the others hold.
pub const STREAM_FLOOR_BYTES: usize = 64 << 10;
/// Revisions asked of the shards per release of live events.
pub const RELEASE_MAX_REVISIONS: usize = 10_000;
/// Revisions read from MVCC per catch-up step of one watcher, sent as one response (etcd's
/// watchBatchMaxRevs).
pub const CATCH_UP_MAX_REVISIONS: usize = 1000;
/// A stream holding this much for its client (it is not keeping up) gets each watcher's events
/// of one release in one response (at the last event's revision), as etcd sends a watcher it
/// catches up, rather than one response per revision: fewer, larger messages for a client
/// that is behind.
pub const COALESCE_ABOVE_QUEUED_BYTES: usize = 64 << 10;
/// The most event bytes one such coalesced response carries (well under clients' 4 MiB
/// default receive limit).
pub const COALESCED_RESPONSE_MAX_BYTES: usize = 64 << 10;
/// How often watchers moved aside are caught up (etcd: 100 ms).
pub const SYNC_INTERVAL: Duration = Duration::from_millis(100);

/// The responses for a stream gathered in one turn of the hub (one channel message, so one
/// wake-up of the stream's thread), with about the bytes they encode to (counted against
/// `STREAM_BUFFER_BYTES` until the stream takes them).
pub struct Outgoing {
    pub resps: Vec<WireResponse>,
    pub bytes: usize,
}

/// From the raft driver: everything up to `rev` is applied. With `done`, the driver waits until
/// the hub has read the events up to `rev` (before a compaction could remove them).
pub struct Applied {
    pub rev: i64,
    pub done: Option<tokio::sync::oneshot::Sender<()>>,
    /// The store was replaced by a snapshot from the leader (etcd: every synced watcher becomes
    /// unsynced and catches up from the new store; one whose start is compacted away is
    /// cancelled with the compaction revision).
    pub restored: bool,
}

pub enum HubMsg {
    Open { stream: u64, out: tokio::sync::mpsc::UnboundedSender<Outgoing>, queued: Arc<AtomicUsize> },
    Close { stream: u64 },
    /// `denied`: refused by an auth check (etcd's isWatchPermitted), answered as a cancel.
    Create { stream: u64, req: WatchCreateRequest, denied: Option<crate::error::Error> },
    Cancel { stream: u64, watch_id: i64 },
    Progress { stream: u64 },
}

/// The front end's handle to the hub.
#[derive(Clone)]
pub struct WatchHub {
    tx: flume::Sender<HubMsg>,
    next_stream: Arc<AtomicU64>,
}

/// One open watch stream, as the front end holds it.
pub struct StreamHandle {
    pub id: u64,
    /// tokio's channel, not flume: flume wakes a waiting receiver while it holds the channel's
    /// lock, and the woken stream then blocked on that lock (see `reply.rs`).
    pub responses: tokio::sync::mpsc::UnboundedReceiver<Outgoing>,
    pub queued: Arc<AtomicUsize>,
}

impl WatchHub {
    pub fn new(tx: flume::Sender<HubMsg>) -> WatchHub {
        WatchHub { tx, next_stream: Arc::new(AtomicU64::new(1)) }
    }

    pub async fn open(&self) -> Result<StreamHandle> {
        let id = self.next_stream.fetch_add(1, Ordering::Relaxed);
        let (out, responses) = tokio::sync::mpsc::unbounded_channel();
        let queued = Arc::new(AtomicUsize::new(0));
        self.send(HubMsg::Open { stream: id, out, queued: queued.clone() }).await?;
        Ok(StreamHandle { id, responses, queued })
    }

    pub async fn send(&self, msg: HubMsg) -> Result<()> {
        self.tx.send_async(msg).await.map_err(|_| Error::Stopped)
    }

    /// Closes a stream without waiting (from a `Drop`); the hub also notices a stream whose
    /// receiver is gone.
    pub fn close(&self, stream: u64) {
        let _ = self.tx.try_send(HubMsg::Close { stream });
    }
}

//! The messages a shard serves, and `Shards`, the handle other threads use to send them.
//! Channels are tokio's bounded mpsc (Send, runtime-free, so async on glommio too; not flume,
//! which wakes a waiting receiver under its lock: see `reply.rs`); replies come back on tokio
//! oneshots, which need no runtime either.

use tokio::sync::oneshot;

use super::router::shard_of;
use crate::error::{Error, Result};
use crate::mvcc::events::{EventQuery, EventsPart};
use crate::mvcc::segment::SegmentInfo;
use crate::mvcc::store::{RangePart, RangeQuery, WriteOp, WriteResult};
use crate::mvcc::{KeyRange, Rev};
use crate::proto::etcdserverpb::{TxnRequest, TxnResponse};

/// Messages queued per shard before senders wait.
pub const SHARD_QUEUE_CAPACITY: usize = 4096;
/// Chunks of a snapshot export a shard queues ahead of the bolt writer.
const EXPORT_CHUNKS_QUEUED: usize = 2;

pub enum ShardMsg {
    /// `home`: the caller's front-end thread, where the answer is delivered (`reply.rs`).
    Range { query: RangeQuery, reply: oneshot::Sender<Result<RangePart>>, home: Option<usize> },
    /// Applies `ops` in order, each at its revision; one result per op.
    Write { ops: Vec<(Rev, WriteOp)>, reply: oneshot::Sender<Vec<Result<WriteResult>>> },
    /// Logical compaction now (the reply); the physical one runs in the background and the
    /// replied receiver resolves when it is done.
    Compact { rev: i64, reply: oneshot::Sender<oneshot::Receiver<()>> },
    /// Runs a whole txn on the shard holding all its keys, on top of revision `base`.
    Txn { txn: TxnRequest, base: i64, compact_rev: i64, leases: Vec<i64>, reply: oneshot::Sender<Result<(TxnResponse, bool)>> },
    /// The shard's records up to a revision, for etcd's HashKV (`mvcc/hash.rs`).
    HashRecords { rev: i64, reply: oneshot::Sender<Vec<crate::mvcc::hash::HashRecord>> },
    /// The watch events of a revision window (`mvcc/events.rs`).
    Events { query: EventQuery, reply: oneshot::Sender<Result<EventsPart>> },
    /// Sends the shard's history up to `rev` as etcd's `key` bucket entries, in chunks
    /// (`export.rs`).
    Export { rev: i64, compact_rev: i64, out: flume::Sender<Vec<crate::mvcc::export::ExportRecord>> },
    /// Writes the shard's records after `since` (0: its whole state) as of `rev` to `path`.
    Snapshot { since: i64, rev: i64, path: std::path::PathBuf, reply: oneshot::Sender<std::result::Result<SegmentInfo, String>> },
    /// A snapshot from the leader was installed: the shard serves `store` from now on
    /// (`segment_bytes`: its share of the snapshot's segments).
    Replace { store: Box<crate::mvcc::store::Store>, segment_bytes: u64, reply: oneshot::Sender<()> },
}

pub type ShardTx = tokio::sync::mpsc::Sender<ShardMsg>;
pub type ShardRx = tokio::sync::mpsc::Receiver<ShardMsg>;

/// A shard's queue (`SHARD_QUEUE_CAPACITY` messages).
pub fn shard_channel() -> (ShardTx, ShardRx) {
    tokio::sync::mpsc::channel(SHARD_QUEUE_CAPACITY)
}

/// Messages waiting in a shard's queue, as a sender sees it (the receiver is the shard's).
pub fn queued_messages(tx: &ShardTx) -> usize {
    tx.max_capacity() - tx.capacity()
}

/// The next queued message without waiting: `Ready(Some(msg))`, `Ready(None)` once every
/// sender is gone, `Pending` when none is ready. Not tokio's `try_recv`: finding a message
/// another thread is still pushing, it parks the whole thread until the push completes (the
/// shard's, with every task on it; measured: range-ser 10% slower with it).
pub fn take_queued<T>(rx: &mut tokio::sync::mpsc::Receiver<T>) -> std::task::Poll<Option<T>> {
    rx.poll_recv(&mut std::task::Context::from_waker(futures_util::task::noop_waker_ref()))
}

#[derive(Clone)]
pub struct Shards {
    senders: Vec<ShardTx>,
}

impl Shards {
    pub fn new(senders: Vec<ShardTx>) -> Shards {
        assert!(!senders.is_empty());
        Shards { senders }
    }

    pub fn count(&self) -> usize {
        self.senders.len()
    }

    /// Messages waiting in each shard's queue.
    pub fn queue_depths(&self) -> Vec<usize> {
        self.senders.iter().map(queued_messages).collect()
    }

    pub fn owner(&self, key: &[u8]) -> usize {
        shard_of(key, self.senders.len())
    }

    /// The shards that may hold keys of `range`.
    pub fn owners(&self, range: &KeyRange) -> Vec<usize> {
        match range.single_key() {
            Some(k) => vec![self.owner(k)],
            None => (0..self.senders.len()).collect(),
        }
    }

    async fn call<T>(&self, shard: usize, msg: impl FnOnce(oneshot::Sender<T>) -> ShardMsg) -> Result<T> {
        let (tx, rx) = oneshot::channel();
        self.senders[shard].send(msg(tx)).await.map_err(|_| Error::Stopped)?;
        rx.await.map_err(|_| Error::Stopped)
    }

    /// Sends `msg` to `shard` from a task on a glommio executor without waiting: at once, or
    /// from a task of its own while the shard's queue is full. A message that cannot be
    /// delivered (the shard stopped) is dropped with its reply sender (the caller sees
    /// `Stopped`).
    pub fn send_from_local(&self, shard: usize, msg: ShardMsg) {
        use tokio::sync::mpsc::error::TrySendError;
        if let Err(TrySendError::Full(msg)) = self.senders[shard].try_send(msg) {
            let tx = self.senders[shard].clone();
            glommio::spawn_local(async move {
                let _ = tx.send(msg).await;
            })
            .detach();
        }
    }

    pub async fn range_on(&self, shard: usize, query: RangeQuery) -> Result<RangePart> {
        let home = crate::reply::home();
        self.call(shard, |reply| ShardMsg::Range { query, reply, home }).await?
    }

    /// Applies `(revision, op)` pairs on `shard` in order: one message however many ops.
    pub async fn write_on(&self, shard: usize, ops: Vec<(Rev, WriteOp)>) -> Result<Vec<Result<WriteResult>>> {
        self.call(shard, |reply| ShardMsg::Write { ops, reply }).await
    }

    pub async fn compact_on(&self, shard: usize, rev: i64) -> Result<oneshot::Receiver<()>> {
        self.call(shard, |reply| ShardMsg::Compact { rev, reply }).await
    }

    pub async fn txn_on(&self, shard: usize, txn: TxnRequest, (base, compact_rev): (i64, i64), leases: Vec<i64>) -> Result<(TxnResponse, bool)> {
        self.call(shard, |reply| ShardMsg::Txn { txn, base, compact_rev, leases, reply }).await?
    }

    /// Queues a snapshot order on `shard` (behind everything sent before); the receiver
    /// resolves when its segment is written.
    pub async fn send_snapshot(
        &self,
        shard: usize,
        (since, rev): (i64, i64),
        path: std::path::PathBuf,
    ) -> Result<oneshot::Receiver<std::result::Result<SegmentInfo, String>>> {
        let (reply, rx) = oneshot::channel();
        self.senders[shard].send(ShardMsg::Snapshot { since, rev, path, reply }).await.map_err(|_| Error::Stopped)?;
        Ok(rx)
    }

    /// Replaces every shard's store (behind everything sent before) with `stores`, one per
    /// shard, and waits until all have.
    pub async fn replace_stores(&self, stores: Vec<crate::mvcc::store::Store>, segment_bytes: u64) -> Result<()> {
        assert_eq!(stores.len(), self.senders.len(), "one store per shard");
        let share = segment_bytes / self.senders.len().max(1) as u64;
        let mut done = Vec::new();
        for (shard, store) in stores.into_iter().enumerate() {
            let (reply, rx) = oneshot::channel();
            self.senders[shard].send(ShardMsg::Replace { store: Box::new(store), segment_bytes: share, reply }).await.map_err(|_| Error::Stopped)?;
            done.push(rx);
        }
        for rx in done {
            rx.await.map_err(|_| Error::Stopped)?;
        }
        Ok(())
    }

    /// Reads `query` on every shard that may hold its keys, concurrently, and merges the parts
    /// into key order. With `query.limit > 0` the merged list keeps the first `limit` keys;
    /// `count` is the total over all shards. The first part's key-values are kept where they
    /// are and the others appended: copying a LIST of 100k keys into a fresh vector (10 MiB,
    /// its pages faulted in one go) held a shard's thread for milliseconds, and every write
    /// behind it (bench/RESULTS.md, 2026-12-07: the writer's p99 during unpaginated LISTs at a
    /// past revision; serializable reads, reads under auth and txns' ranges take this path too).
    pub async fn scatter_range(&self, query: &RangeQuery) -> Result<RangePart> {
        let owners = self.owners(&query.range);
        let calls = owners.iter().map(|&s| self.range_on(s, query.clone()));
        let parts = futures_util::future::join_all(calls).await;
        let mut merged = RangePart::default();
        for part in parts {
            let part = part?;
            merged.count += part.count;
            if merged.kvs.is_empty() {
                merged.kvs = part.kvs;
            } else {
                merged.kvs.extend(part.kvs);
            }
        }
        if owners.len() > 1 {
            merged.kvs.sort_unstable_by(|a, b| a.key.cmp(&b.key));
        }
        if query.limit > 0 {
            merged.kvs.truncate(query.limit);
        }
        Ok(merged)
    }

    /// Every shard's records up to `rev` (HashKV).
    pub async fn hash_records(&self, rev: i64) -> Result<Vec<crate::mvcc::hash::HashRecord>> {
        let calls = (0..self.count()).map(|s| self.call(s, |reply| ShardMsg::HashRecords { rev, reply }));
        let mut all = Vec::new();
        for part in futures_util::future::join_all(calls).await {
            all.extend(part?);
        }
        Ok(all)
    }

    /// Every shard's history up to `rev` (compaction at `compact_rev`) as etcd's `key` bucket
    /// entries: one bounded channel of chunks per shard, closed when the shard is done.
    pub async fn export(&self, rev: i64, compact_rev: i64) -> Result<Vec<flume::Receiver<Vec<crate::mvcc::export::ExportRecord>>>> {
        let mut receivers = Vec::new();
        for shard in &self.senders {
            let (out, rx) = flume::bounded(EXPORT_CHUNKS_QUEUED);
            shard.send(ShardMsg::Export { rev, compact_rev, out }).await.map_err(|_| Error::Stopped)?;
            receivers.push(rx);
        }
        Ok(receivers)
    }

    /// The events of `query` on every shard that may hold its keys, merged into revision
    /// order and complete up to the smallest revision every shard reached.
    pub async fn scatter_events(&self, query: &EventQuery) -> Result<EventsPart> {
        let owners = match &query.range {
            Some(range) => self.owners(range),
            None => (0..self.count()).collect(),
        };
        let calls = owners.iter().map(|&s| self.call(s, |reply| ShardMsg::Events { query: query.clone(), reply }));
        let mut merged = EventsPart { events: Vec::new(), to: query.to };
        for part in futures_util::future::join_all(calls).await {
            let part = part??;
            merged.to = merged.to.min(part.to);
            merged.events.extend(part.events);
        }
        if owners.len() > 1 {
            let to = merged.to;
            merged.events.retain(|e| e.rev.main <= to);
            // A delete of a range spanning shards deletes every key at one revision: its
            // events go in key order, as etcd's.
            merged.events.sort_by(|a, b| (a.rev, &a.kv.key).cmp(&(b.rev, &b.kv.key)));
            // Each shard kept `max_revisions`; together they may hold more.
            merged = crate::mvcc::events::cut(merged.events, merged.to, query.max_revisions);
        }
        Ok(merged)
    }
}

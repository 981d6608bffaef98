//! The shard actor: the loop that owns one shard's MVCC store and serves the messages other
//! threads send it (`mailbox.rs`): ranges, writes, txns local to the shard, compaction and
//! snapshot orders. Writing a snapshot segment (`segments.rs`) and physical compaction
//! (`compaction.rs`) run as side tasks on the same executor, reading the store between
//! messages.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::task::Poll;

use tokio::sync::oneshot;

use super::mailbox::ShardMsg;
use crate::mvcc::store::Store;
use crate::kv::delivery::{Delivery, Outbox};
use crate::reply;
use crate::status::ServerStatus;
use crate::kv::view::Local;

/// Reads a shard serves before it sends the front end the answers gathered (it also sends them
/// whenever its queue is empty, and before any other message): bounds how long an answer waits.
const MAX_READS_PER_FLUSH: usize = 64;
/// A shard's loop: owns the store, serves messages until every sender is gone. Snapshots run
/// as separate tasks reading the store between writes; physical compaction waits for them.
pub async fn run(
    id: usize,
    mut rx: super::mailbox::ShardRx,
    status: Arc<ServerStatus>,
    (store, segment_bytes): (Store, u64),
    homes: Vec<reply::HomeTx>,
    snapshots: Rc<Cell<usize>>,
) {
    let shard = Rc::new(ShardState {
        id,
        status,
        store: RefCell::new(store),
        snapshots,
        compacting: Cell::new(false),
        compact_target: Cell::new(0),
        compact_waiters: RefCell::new(Vec::new()),
        reading: RefCell::new(Vec::new()),
        apply_seconds: metrics::histogram!(crate::metrics::SHARD_APPLY_SECONDS, "shard" => id.to_string()),
        segment_bytes: Cell::new(segment_bytes),
        written_at_segment: Cell::new(0),
        replaced: Cell::new(0),
    });
    shard.publish();
    let mut outbox = Outbox::new(homes);
    let mut unflushed = 0;
    loop {
        let msg = match super::mailbox::take_queued(&mut rx) {
            Poll::Ready(Some(msg)) => msg,
            Poll::Pending => {
                // Nothing else queued: answer the front end before waiting.
                outbox.flush();
                unflushed = 0;
                match rx.recv().await {
                    Some(msg) => msg,
                    None => break,
                }
            }
            Poll::Ready(None) => break,
        };
        // Answers wait only behind other reads (cheap), never behind writes, txns or snapshots.
        if unflushed >= MAX_READS_PER_FLUSH || !matches!(msg, ShardMsg::Range { .. }) {
            outbox.flush();
            unflushed = 0;
        }
        // Failpoint: the shard's thread is stuck while the named file exists.
        while crate::failpoint::arg("shard-stall").is_some_and(|f| std::path::Path::new(f).exists()) {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        handle(&shard, msg, &mut outbox).await;
        unflushed += 1;
    }
    outbox.flush();
}

async fn handle(shard: &Rc<ShardState>, msg: ShardMsg, outbox: &mut Outbox) {
    match msg {
        ShardMsg::Range { query, reply, home } => {
            if let Some((reply, done)) = shard.start_read(query, reply) {
                outbox.push(home, Delivery::Range(reply, done));
            }
        }
        ShardMsg::Write { ops, reply } => {
            if let Some(key) = crate::failpoint::arg("shard-panic-on-put") {
                let hit = ops.iter().any(|(_, op)| matches!(op, crate::mvcc::store::WriteOp::Put { key: k, .. } if k == key.as_bytes()));
                assert!(!hit, "failpoint shard-panic-on-put");
            }
            let started = std::time::Instant::now();
            let results: Vec<_> = ops.into_iter().map(|(rev, op)| shard.store.borrow_mut().write(op, rev)).collect();
            shard.apply_seconds.record(started.elapsed().as_secs_f64());
            shard.publish();
            let _ = reply.send(results);
        }
        ShardMsg::Compact { rev, reply } => {
            shard.store.borrow_mut().set_compact_rev(rev);
            let (done_tx, done_rx) = oneshot::channel();
            shard.compact_waiters.borrow_mut().push((rev, done_tx));
            shard.compact_target.set(shard.compact_target.get().max(rev));
            if !shard.compacting.replace(true) {
                crate::background::spawn(shard.clone().compact_in_background());
            }
            let _ = reply.send(done_rx);
        }
        ShardMsg::Txn { txn, base, compact_rev, leases, reply } => {
            let started = std::time::Instant::now();
            // Local views complete at once: this await never yields to other messages.
            let result = crate::kv::txn::txn(&Local(&shard.store), &txn, base, compact_rev, &leases).await;
            shard.apply_seconds.record(started.elapsed().as_secs_f64());
            shard.publish();
            let _ = reply.send(result);
        }
        ShardMsg::HashRecords { rev, reply } => {
            // Compaction is held from here, before a Compact queued behind this message.
            let held = shard.read_at(shard.store.borrow().compact_rev());
            crate::background::spawn(shard.clone().hash_records(rev, held, reply));
        }
        ShardMsg::Events { query, reply } => {
            let _ = reply.send(shard.store.borrow().events(&query));
        }
        ShardMsg::Replace { store, segment_bytes, reply } => {
            // The old and the new store hold the same history (the new one further along), so
            // a read running in steps or a compaction in progress may go on in the new one.
            let written = store.written_bytes();
            let old = std::mem::replace(&mut *shard.store.borrow_mut(), *store);
            shard.replaced.set(shard.replaced.get() + 1);
            // Freeing a store of millions of keys takes a while: not on the shard's thread
            // (when no thread can be made, the failed spawn drops it here).
            let _ = std::thread::Builder::new().name("store-free".into()).spawn(move || drop(old));
            shard.segment_bytes.set(segment_bytes);
            shard.written_at_segment.set(written);
            shard.publish();
            let _ = reply.send(());
        }
        ShardMsg::Export { rev, compact_rev, out } => {
            // Compaction is held from here, before a Compact queued behind this message.
            let held = shard.read_at(compact_rev);
            crate::background::spawn(shard.clone().export(rev, compact_rev, held, out));
        }
        ShardMsg::Snapshot { since, rev, path, reply } => {
            shard.snapshots.set(shard.snapshots.get() + 1);
            let shard = shard.clone();
            crate::background::spawn(async move {
                let result = shard.write_segment(path, since, rev).await;
                let _ = reply.send(result);
            });
        }
    }
}

pub(super) struct ShardState {
    pub(super) id: usize,
    pub(super) status: Arc<ServerStatus>,
    pub(super) store: RefCell<Store>,
    /// Snapshots being written; physical compaction pauses while any runs, so a segment
    /// holds all history at its revision. Shared with the WAL stripe, which does not block the
    /// thread on its write while any runs (see `wal/stripe.rs`).
    pub(super) snapshots: Rc<Cell<usize>>,
    /// A background compaction task is running; it compacts up to `compact_target`.
    pub(super) compacting: Cell<bool>,
    pub(super) compact_target: Cell<i64>,
    /// Callers waiting for physical compaction up to a revision (`physical=true`).
    pub(super) compact_waiters: RefCell<Vec<(i64, oneshot::Sender<()>)>>,
    /// Revisions of the reads running in steps (`reads.rs`): compaction beyond the oldest waits.
    pub(super) reading: RefCell<Vec<i64>>,
    pub(super) apply_seconds: metrics::Histogram,
    /// This shard's share of the snapshot segments' bytes, and `store.written_bytes()` when
    /// its newest segment was cut: the storage holds both (dbSize).
    pub(super) segment_bytes: Cell<u64>,
    pub(super) written_at_segment: Cell<u64>,
    /// Stores installed from a snapshot so far (`Replace`): a walk of the store in chunks
    /// (HashKV) that sees it change starts over.
    pub(super) replaced: Cell<u64>,
}

impl ShardState {
    pub(super) fn publish(&self) {
        let s = self.store.borrow();
        let held = s.written_bytes() - self.written_at_segment.get();
        self.status.publish_shard(self.id, s.size_bytes(), self.segment_bytes.get(), held, s.live_keys());
    }
}

//! Answers from the raft core and the shards to the front end, delivered one batch per
//! front-end thread per turn instead of one wake-up per request.
//!
//! Why (measured with `perf`, put with 100 clients): a oneshot completed on a shard thread wakes
//! the waiting tokio task remotely — one eventfd write on the shard per request — and the
//! handler then runs alone, so its connection flushes its response alone: one `writev` per
//! request, the largest single cost of the front end. Delivered by a task on the waiting
//! handler's own thread instead, every wake-up is local: the turn's handlers all run before
//! their connections flush, so their responses share a `writev`, and the shard pays one wake-up
//! per front-end thread per turn.
//!
//! A caller records its front-end thread (`home`) in its message to the core or a shard;
//! callers on other threads (the raft core reading the shards, for one) are answered directly.
//!
//! The channel to a front-end thread is tokio's unbounded mpsc, not flume: flume wakes a
//! waiting async receiver while it holds the channel's lock, so the woken front-end thread,
//! often on the sender's CPU, preempted the shard inside that lock and then blocked on it
//! (`perf record -e sched:sched_switch`, Kubernetes-shaped load: 0.45 futex waits and 0.5
//! preemptions per request on the shard thread, as many futex waits on the front end). tokio's
//! sender pushes without a lock and wakes after.
//!
//! This file carries answers without knowing their kinds: an `Outbox` holds whatever `Deliver`
//! type its owner answers with (`kv::delivery`), and a batch reaches the front-end thread as
//! one closure, so a new kind of answer changes nothing here.

use std::cell::Cell;

/// An answer that completes a waiting caller when delivered.
pub trait Deliver: Send + 'static {
    fn deliver(self);
}

/// A batch of answers for one front-end thread, of whatever kind its sender gathered: one
/// allocation per batch, none per answer.
pub struct Batch(Box<dyn FnOnce() + Send>);

impl Batch {
    fn new<D: Deliver>(answers: Vec<D>) -> Batch {
        Batch(Box::new(move || answers.into_iter().for_each(D::deliver)))
    }

    fn deliver(self) {
        (self.0)()
    }
}

/// The sending end of a front-end thread's answers.
pub type HomeTx = tokio::sync::mpsc::UnboundedSender<Batch>;
/// Its receiving end, which the thread's dispatcher drains.
pub type HomeRx = tokio::sync::mpsc::UnboundedReceiver<Batch>;

/// A channel to one front-end thread's dispatcher.
pub fn home_channel() -> (HomeTx, HomeRx) {
    tokio::sync::mpsc::unbounded_channel()
}

thread_local! {
    static HOME: Cell<Option<usize>> = const { Cell::new(None) };
}

/// Marks the current thread as front-end thread `index` (its dispatcher task runs here).
pub fn set_home(index: usize) {
    HOME.with(|h| h.set(Some(index)));
}

/// The current thread's front-end index, if it is a front-end thread.
pub fn home() -> Option<usize> {
    HOME.with(|h| h.get())
}

/// Answers gathered during one turn of the raft core (or of a shard's loop), per front-end
/// thread.
pub struct Outbox<D> {
    homes: Vec<HomeTx>,
    pending: Vec<Vec<D>>,
}

impl<D: Deliver> Outbox<D> {
    /// `homes[i]` reaches front-end thread `i`'s dispatcher. The channels are unbounded, but
    /// what they hold is bounded by the requests in flight: the raft core's proposal queue and
    /// the shards' queues (their capacities).
    pub fn new(homes: Vec<HomeTx>) -> Outbox<D> {
        let pending = homes.iter().map(|_| Vec::new()).collect();
        Outbox { homes, pending }
    }

    pub fn push(&mut self, home: Option<usize>, d: D) {
        match home.and_then(|h| self.pending.get_mut(h)) {
            Some(batch) => batch.push(d),
            None => d.deliver(),
        }
    }

    /// Sends every thread its batch: one message, hence at most one wake-up, per thread.
    pub fn flush(&mut self) {
        for (tx, batch) in self.homes.iter().zip(self.pending.iter_mut()) {
            if batch.is_empty() {
                continue;
            }
            if let Err(tokio::sync::mpsc::error::SendError(batch)) = tx.send(Batch::new(std::mem::take(batch))) {
                // The thread's dispatcher is gone (shutting down): answer directly.
                batch.deliver();
            }
        }
    }
}

/// Runs on front-end thread `home`: completes each batch's oneshots from this thread.
pub async fn dispatch(mut rx: HomeRx) {
    while let Some(batch) = rx.recv().await {
        batch.deliver();
    }
}

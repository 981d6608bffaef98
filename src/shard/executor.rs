//! Starts the shard executors: one glommio `LocalExecutor` per shard, pinned to a usable CPU
//! (from the highest down, round-robin when there are more shards than CPUs, unpinned if
//! pinning is refused). Each runs `serve`, the loop that owns the shard's MVCC store (with
//! snapshot writing and background compaction as side tasks), and the writer task of the
//! shard's WAL stripe.
//! Shard 0 also hosts the raft core, started from the `core` closure once its executor runs.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;

use glommio::{LocalExecutorBuilder, Placement};

use tokio::sync::oneshot;

use super::mailbox::{ShardMsg, Shards, SHARD_QUEUE_CAPACITY};
use crate::mvcc::segment::{self, SegmentInfo};
use crate::mvcc::store::Store;
use crate::kv::delivery::{Delivery, Outbox};
use crate::kv::view::Local;
use crate::reply;
use crate::status::ServerStatus;
use crate::wal::recover::StripeState;
use crate::wal::stripe::{ShardBusy, Stripe, StripeMsg};

/// Reads a shard serves before it sends the front end the answers gathered (it also sends them
/// whenever its queue is empty, and before any other message): bounds how long an answer waits.
const MAX_READS_PER_FLUSH: usize = 64;
/// Memory glommio registers for io_uring per executor; fits the 8 MiB memlock limit.
const IO_MEMORY_BYTES: usize = 1 << 20;
/// How long an idle shard polls for work before it sleeps. Waking a sleeping vCPU goes through
/// the host on this VM (`haltpoll` off), which cost a lone client's put most of a round trip:
/// A/B with 1 client, put p50 0.326 ms without spinning, 0.244 ms with 100 µs (300 µs: the
/// same), at 180 instead of 156 µs of server CPU per put; 100 clients keep the shard busy, so
/// it rarely spins there (puts/s and CPU per put unchanged). Spinning used to starve the io-wq
/// worker that did the WAL's buffered writes on the same CPU; direct writes have none.
const SPIN_BEFORE_PARK: std::time::Duration = std::time::Duration::from_micros(100);

pub type CoreTask = Box<dyn FnOnce(Shards) -> Pin<Box<dyn Future<Output = ()>>> + Send>;

/// CPUs this process may run on.
pub fn usable_cpus() -> Vec<usize> {
    // SAFETY: sched_getaffinity writes at most size_of::<cpu_set_t>() bytes into `set`.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let ok = unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) } == 0;
    let cpus: Vec<usize> = if ok {
        (0..libc::CPU_SETSIZE as usize).filter(|&c| unsafe { libc::CPU_ISSET(c, &set) }).collect()
    } else {
        Vec::new()
    };
    if cpus.is_empty() {
        (0..std::thread::available_parallelism().map_or(1, |n| n.get())).collect()
    } else {
        cpus
    }
}

/// Fails with a clear message when io_uring cannot be used here (old kernel, seccomp, limits).
pub fn check_io_uring() -> Result<(), String> {
    io_uring::IoUring::new(8).map(|_| ()).map_err(|e| {
        format!("io_uring is unavailable ({e}); ballast needs Linux 5.8+ with io_uring enabled and RLIMIT_MEMLOCK >= 8 MiB")
    })
}

pub struct ShardThreads {
    handles: Vec<glommio::ExecutorJoinHandle<()>>,
}

impl ShardThreads {
    pub fn join(self) {
        for h in self.handles {
            let _ = h.join();
        }
    }
}

/// What a shard needs to run its WAL stripe writer.
pub struct StripeInit {
    pub state: StripeState,
    pub rx: flume::Receiver<StripeMsg>,
    pub segment_bytes: u64,
}

/// Starts one executor per store in `stores` (the shard count), each serving its store and
/// writing its WAL stripe. `segment_bytes`: the loaded snapshot's segment files, shared out.
pub fn start(
    stores: Vec<Store>,
    segment_bytes: u64,
    stripes: Vec<StripeInit>,
    status: Arc<ServerStatus>,
    core: CoreTask,
    homes: Vec<flume::Sender<reply::Batch>>,
) -> Result<(Shards, ShardThreads), String> {
    let count = stores.len();
    let segment_bytes = segment_bytes / count as u64;
    assert!(count > 0 && stripes.len() == count);
    let (senders, receivers): (Vec<_>, Vec<_>) = (0..count).map(|_| flume::bounded(SHARD_QUEUE_CAPACITY)).unzip();
    let shards = Shards::new(senders);
    let cpus = usable_cpus();
    let mut core = Some(core);
    let mut handles = Vec::with_capacity(count);
    for (id, ((rx, store), stripe)) in receivers.into_iter().zip(stores).zip(stripes).enumerate() {
        // Shared so the closure is Clone (pinning may be retried unpinned); taken once.
        let boot = Arc::new(std::sync::Mutex::new((core.take().map(|c| (c, shards.clone())), Some((store, stripe)))));
        let status = status.clone();
        let homes = homes.clone();
        let run = move || async move {
            let (core, owned) = boot.lock().map(|mut b| (b.0.take(), b.1.take())).unwrap_or((None, None));
            let (store, stripe) = owned.expect("an executor starts once");
            // A snapshot's segment I/O completes through glommio's reactor, which does not run
            // while the stripe blocks the thread: while one is being written the shard is busy.
            let snapshots = Rc::new(Cell::new(0));
            let (queued, writing) = (rx.clone(), snapshots.clone());
            let busy: Option<ShardBusy> =
                (count == 1).then(|| Box::new(move || !queued.is_empty() || writing.get() > 0) as ShardBusy);
            glommio::spawn_local(run_stripe(stripe, busy, status.clone())).detach();
            if let Some((core, shards)) = core {
                glommio::spawn_local(core(shards)).detach();
            }
            serve(id, rx, status, (store, segment_bytes), homes, snapshots).await;
        };
        handles.push(spawn_pinned(id, shard_cpu(&cpus, id), run)?);
    }
    Ok((shards, ShardThreads { handles }))
}

/// The CPU for shard `id`: usable CPUs from the highest down, so the lowest — where Linux keeps
/// most housekeeping and by default many interrupts — are the last to get a shard and are left
/// to the front end. Measured on this 2-CPU machine (shard on CPU 1 instead of CPU 0): lone
/// client put p50 0.42 → 0.34–0.37 ms, 100 clients +5–10% puts/s, 1000 clients about the same.
fn shard_cpu(cpus: &[usize], id: usize) -> usize {
    cpus[cpus.len() - 1 - id % cpus.len()]
}

fn spawn_pinned<F, Fut>(id: usize, cpu: usize, run: F) -> Result<glommio::ExecutorJoinHandle<()>, String>
where
    F: FnOnce() -> Fut + Send + Clone + 'static,
    Fut: Future<Output = ()> + 'static,
{
    let builder = |p| {
        LocalExecutorBuilder::new(p).name(&format!("shard-{id}")).io_memory(IO_MEMORY_BYTES).spin_before_park(SPIN_BEFORE_PARK)
    };
    builder(Placement::Fixed(cpu)).spawn(run.clone()).or_else(|e| {
        crate::log::warn("cannot pin shard; running it unpinned", &[("shard", id.to_string()), ("error", e.to_string())]);
        builder(Placement::Unbound).spawn(run).map_err(|e| format!("cannot start shard {id}: {e}"))
    })
}

/// The shard's WAL stripe writer; a stripe that cannot be opened is fatal.
async fn run_stripe(init: StripeInit, busy: Option<ShardBusy>, status: Arc<ServerStatus>) {
    let dir = init.state.dir.clone();
    match Stripe::open(init.state, init.segment_bytes, busy, status).await {
        Ok(stripe) => stripe.run(init.rx).await,
        Err(e) => {
            let mut fields = vec![("dir", dir.display().to_string()), ("error", e.to_string())];
            if e.kind() == std::io::ErrorKind::InvalidInput {
                fields.push(("hint", "the WAL is written with O_DIRECT; put --wal-dir on a filesystem that supports it".into()));
            }
            crate::log::error("cannot open wal stripe", &fields);
            std::process::abort();
        }
    }
}

/// A shard's loop: owns the store, serves messages until every sender is gone. Snapshots run
/// as separate tasks reading the store between writes; physical compaction waits for them.
async fn serve(
    id: usize,
    rx: flume::Receiver<ShardMsg>,
    status: Arc<ServerStatus>,
    (store, segment_bytes): (Store, u64),
    homes: Vec<flume::Sender<reply::Batch>>,
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
        apply_seconds: metrics::histogram!(crate::metrics::SHARD_APPLY_SECONDS, "shard" => id.to_string()),
        segment_bytes: Cell::new(segment_bytes),
        written_at_segment: Cell::new(0),
    });
    shard.publish();
    let mut outbox = Outbox::new(homes);
    let mut unflushed = 0;
    loop {
        let msg = match rx.try_recv() {
            Ok(msg) => msg,
            Err(flume::TryRecvError::Empty) => {
                // Nothing else queued: answer the front end before waiting.
                outbox.flush();
                unflushed = 0;
                match rx.recv_async().await {
                    Ok(msg) => msg,
                    Err(_) => break,
                }
            }
            Err(flume::TryRecvError::Disconnected) => break,
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
            outbox.push(home, Delivery::Range(reply, shard.store.borrow().range(&query)));
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
                glommio::spawn_local(shard.clone().compact_in_background()).detach();
            }
            let _ = reply.send(done_rx);
        }
        ShardMsg::Txn { txn, base, compact_rev, reply } => {
            let started = std::time::Instant::now();
            // Local views complete at once: this await never yields to other messages.
            let result = crate::kv::txn::txn(&Local(&shard.store), &txn, base, compact_rev).await;
            shard.apply_seconds.record(started.elapsed().as_secs_f64());
            shard.publish();
            let _ = reply.send(result);
        }
        ShardMsg::Snapshot { since, rev, path, reply } => {
            shard.snapshots.set(shard.snapshots.get() + 1);
            let shard = shard.clone();
            glommio::spawn_local(async move {
                let result = shard.write_segment(path, since, rev).await;
                let _ = reply.send(result);
            })
            .detach();
        }
    }
}

struct ShardState {
    id: usize,
    status: Arc<ServerStatus>,
    store: RefCell<Store>,
    /// Snapshots being written; physical compaction pauses while any runs, so a segment
    /// holds all history at its revision. Shared with the WAL stripe, which does not block the
    /// thread on its write while any runs (see `wal/stripe.rs`).
    snapshots: Rc<Cell<usize>>,
    /// A background compaction task is running; it compacts up to `compact_target`.
    compacting: Cell<bool>,
    compact_target: Cell<i64>,
    /// Callers waiting for physical compaction up to a revision (`physical=true`).
    compact_waiters: RefCell<Vec<(i64, oneshot::Sender<()>)>>,
    apply_seconds: metrics::Histogram,
    /// This shard's share of the snapshot segments' bytes, and `store.written_bytes()` when
    /// its newest segment was cut: the storage holds both (dbSize).
    segment_bytes: Cell<u64>,
    written_at_segment: Cell<u64>,
}

impl ShardState {
    fn publish(&self) {
        let s = self.store.borrow();
        let stored = self.segment_bytes.get() + (s.written_bytes() - self.written_at_segment.get());
        self.status.publish_shard(self.id, s.size_bytes(), stored, s.live_keys());
    }

    /// Writes the shard's segment of a snapshot at `rev`: its records after `since`, all of
    /// them when `since` is 0 (a full snapshot, which replaces the segments before it).
    async fn write_segment(self: Rc<Self>, path: std::path::PathBuf, since: i64, rev: i64) -> Result<SegmentInfo, String> {
        let started = std::time::Instant::now();
        // The segment holds what was written up to here (later writes queue behind this order).
        let cut = self.store.borrow().written_bytes();
        let result = segment::write(path.clone(), &self.store, since, rev).await.map_err(|e| {
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
        metrics::histogram!(crate::metrics::BACKEND_COMMIT_SECONDS).record(started.elapsed().as_secs_f64());
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
        while let Some(chunk) = reader.next_chunk()? {
            {
                let mut store = self.store.borrow_mut();
                for e in chunk.keys.iter() {
                    store.adopt_mapped(&map, e);
                }
            }
            reader.release_read();
            self.publish();
            yield_now().await;
        }
        map.release_resident();
        Ok(())
    }

    /// Physical compaction in chunks of `COMPACT_CHUNK_KEYS`, yielding between chunks so writes
    /// and reads keep flowing; waits while a snapshot is being written.
    async fn compact_in_background(self: Rc<Self>) {
        // Below any revision a compaction can name (etcd accepts one at 0), so every waiter is answered.
        let mut done_rev = -1;
        while self.compact_target.get() > done_rev {
            let target = self.compact_target.get();
            let mut cursor: Option<Vec<u8>> = None;
            loop {
                while self.snapshots.get() > 0 {
                    glommio::timer::sleep(SNAPSHOT_WAIT).await;
                }
                cursor = self.store.borrow_mut().compact_chunk(target, cursor.as_deref(), COMPACT_CHUNK_KEYS);
                self.publish();
                if cursor.is_none() {
                    break;
                }
                yield_now().await;
            }
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

/// Keys compacted per step of a background compaction.
const COMPACT_CHUNK_KEYS: usize = 10_000;
/// How often a paused compaction checks whether the snapshot is done.
const SNAPSHOT_WAIT: std::time::Duration = std::time::Duration::from_millis(5);

/// Lets every other ready task of this executor run once.
fn yield_now() -> impl Future<Output = ()> {
    let mut yielded = false;
    std::future::poll_fn(move |cx| {
        if yielded {
            return std::task::Poll::Ready(());
        }
        yielded = true;
        cx.waker().wake_by_ref();
        std::task::Poll::Pending
    })
}

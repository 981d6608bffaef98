//! Starts the shard executors: one glommio `LocalExecutor` per shard, pinned to a usable CPU
//! (from the highest down, round-robin when there are more shards than CPUs, unpinned if
//! pinning is refused). Each runs the shard actor (`actor.rs`) and the writer task of the
//! shard's WAL stripe, and what its `front` closure starts (the shard's client connections,
//! `server/shard_front.rs`). Shard 0 also hosts the raft core's driver, started from the `core`
//! closure once its executor runs.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;

use glommio::{LocalExecutorBuilder, Placement, PoolPlacement};

use super::actor;
use super::mailbox::{queued_messages, shard_channel, Shards};
use crate::mvcc::store::Store;
use crate::reply;
use crate::status::ServerStatus;
use crate::wal::recover::StripeState;
use crate::wal::stripe::{ShardBusy, Stripe, StripeMsg};

/// Memory glommio registers for io_uring per executor; fits the 8 MiB memlock limit.
const IO_MEMORY_BYTES: usize = 1 << 20;
/// Threads of a shard's pool for blocking calls (zero-filling the next WAL segment, pushing a
/// snapshot segment to the disk, manifests, directory fsyncs), unpinned. glommio's default is
/// one thread on the shard's own CPU: a paced WAL segment (most of a second) would hold up
/// every snapshot push queued behind it, and its copying took the shard's CPU.
const BLOCKING_THREADS: usize = 2;

pub type CoreTask = Box<dyn FnOnce(Shards) -> Pin<Box<dyn Future<Output = ()>>> + Send>;
/// A task a shard runs beside its own, started once its executor runs.
pub type ShardTask = Box<dyn FnOnce() -> Pin<Box<dyn Future<Output = ()>>> + Send>;

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
/// writing its WAL stripe and running its `fronts` task. `segment_bytes`: the loaded
/// snapshot's segment files, shared out.
pub fn start(
    stores: Vec<Store>,
    segment_bytes: u64,
    stripes: Vec<StripeInit>,
    status: Arc<ServerStatus>,
    core: CoreTask,
    homes: Vec<reply::HomeTx>,
    fronts: Vec<ShardTask>,
) -> Result<(Shards, ShardThreads), String> {
    let count = stores.len();
    assert_eq!(fronts.len(), count);
    let segment_bytes = segment_bytes / count as u64;
    assert!(count > 0 && stripes.len() == count);
    let (senders, receivers): (Vec<_>, Vec<_>) = (0..count).map(|_| shard_channel()).unzip();
    let weak_senders: Vec<_> = senders.iter().map(|s| s.downgrade()).collect();
    let shards = Shards::new(senders);
    let cpus = usable_cpus();
    let mut core = Some(core);
    let mut handles = Vec::with_capacity(count);
    for (id, ((((rx, store), stripe), queue), front)) in receivers.into_iter().zip(stores).zip(stripes).zip(weak_senders).zip(fronts).enumerate() {
        // Shared so the closure is Clone (pinning may be retried unpinned); taken once.
        let boot = Arc::new(std::sync::Mutex::new((core.take().map(|c| (c, shards.clone())), Some((store, stripe, rx, front)))));
        let status = status.clone();
        let homes = homes.clone();
        let run = move || async move {
            let (core, owned) = boot.lock().map(|mut b| (b.0.take(), b.1.take())).unwrap_or((None, None));
            let (store, stripe, rx, front) = owned.expect("an executor starts once");
            // A snapshot's segment I/O completes through glommio's reactor, which does not run
            // while the stripe blocks the thread: while one is being written the shard is busy.
            let snapshots = Rc::new(Cell::new(0));
            let writing = snapshots.clone();
            // None queued once every sender is gone (shutting down).
            let queued = move || queue.upgrade().is_some_and(|s| queued_messages(&s) > 0);
            let busy: Option<ShardBusy> = (count == 1).then(|| Box::new(move || queued() || writing.get() > 0) as ShardBusy);
            glommio::spawn_local(run_stripe(stripe, busy, status.clone())).detach();
            glommio::spawn_local(release_freed_memory()).detach();
            if let Some((core, shards)) = core {
                glommio::spawn_local(core(shards)).detach();
            }
            glommio::spawn_local(front()).detach();
            actor::run(id, rx, status, (store, segment_bytes), homes, snapshots).await;
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
        // An idle shard does not poll for work before it sleeps (glommio's `spin_before_park`).
        // Waking a sleeping vCPU goes through the host on this VM (`haltpoll` off), so spinning 100 µs
        // once bought a lone client's put p50 0.326 → 0.244 ms. Measured again with the sustained
        // bench (`--duration 10 --preload-keys 20000`, 2 rounds): with 100 µs of spinning a lone
        // client got 0.30 instead of 0.34 ms p50 and 10% more puts/s, at 250 instead of 170 µs of
        // server CPU per put; and every busier load paid for it: 100 clients 39k → 44k puts/s without
        // it (the spinning shard took CPU the front end needed), CPU per put 25.8 → 22.9 µs; open
        // loop at 19k puts/s 46 → 41 µs per put; the Kubernetes-shaped workload 471 → 404 µs per
        // request. CPU per request is what a many-core host turns into throughput: no spinning.
        LocalExecutorBuilder::new(p).name(&format!("shard-{id}")).io_memory(IO_MEMORY_BYTES)
            .blocking_thread_pool_placement(PoolPlacement::Unbound(BLOCKING_THREADS))
    };
    builder(Placement::Fixed(cpu)).spawn(run.clone()).or_else(|e| {
        crate::log::warn("cannot pin shard; running it unpinned", &[("shard", id.to_string()), ("error", e.to_string())]);
        builder(Placement::Unbound).spawn(run).map_err(|e| format!("cannot start shard {id}: {e}"))
    })
}

/// The shard's WAL stripe writer; a stripe that cannot be opened is fatal.
/// Returns what this shard's thread freed to the system, every `memory::RELEASE_INTERVAL`.
async fn release_freed_memory() {
    loop {
        glommio::timer::sleep(crate::memory::RELEASE_INTERVAL).await;
        crate::memory::release_freed();
    }
}

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

//! How long-running background work on a shard's glommio executor (snapshot segments, their
//! adoption, physical compaction) steps aside between its chunks.
//!
//! A bare yield (wake itself, return `Pending` once) is not enough: glommio runs ready tasks
//! until its queue is empty or the preemption timer (100 ms) fires, and only then takes a
//! reactor turn, which is what delivers wake-ups sent from other threads (a client's message to
//! the raft driver or to the shard, a WAL completion through glommio). A task that keeps
//! waking itself therefore held every request arriving meanwhile for its whole run: adopting a
//! 33 MB snapshot segment (40 ms) showed as 40-50 ms puts in an open loop at 18k puts/s.
//! Waiting on a timer instead lets the queue drain and the reactor run before the next chunk.
//!
//! Such work also runs in a task queue of its own with a tenth of the default queue's shares
//! (`spawn`): the shard serves its client connections (`server/shard_front.rs`), so a request
//! is several tasks in turn (its connection, the handler, the raft driver, the answer), and in
//! one queue each waited behind the next chunk: writes' p99 during a Defragment (a full
//! snapshot) went from 2.3-3.4 to 6.1-7.9 ms when the connections moved to the shard.

use std::cell::OnceCell;
use std::future::Future;
use std::time::Duration;

use glommio::{Latency, Shares, TaskQueueHandle};

/// The pause between chunks: short, but long enough that the timer is not already due when
/// first polled (a due timer completes at once, without a reactor turn).
const STEP_ASIDE: Duration = Duration::from_micros(20);

/// The background queue's shares; the default queue has 1000.
const BACKGROUND_SHARES: usize = 100;

thread_local! {
    static QUEUE: OnceCell<TaskQueueHandle> = const { OnceCell::new() };
}

/// Spawns `fut` in this shard's background task queue: whenever the default queue (clients'
/// requests, the raft driver, the shard's messages) has work ready too, the executor mostly
/// runs that first.
pub fn spawn(fut: impl Future<Output = ()> + 'static) {
    let queue = QUEUE.with(|q| *q.get_or_init(|| glommio::executor().create_task_queue(Shares::Static(BACKGROUND_SHARES), Latency::NotImportant, "background")));
    match glommio::spawn_local_into(fut, queue) {
        Ok(task) => task.detach(),
        Err(e) => unreachable!("the shard's own task queue: {e}"),
    };
}

/// Lets the executor serve everything ready, including wake-ups from other threads, before
/// the caller's next chunk.
pub async fn step_aside() {
    glommio::timer::sleep(STEP_ASIDE).await;
}

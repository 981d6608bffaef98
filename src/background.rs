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

use std::time::Duration;

/// The pause between chunks: short, but long enough that the timer is not already due when
/// first polled (a due timer completes at once, without a reactor turn).
const STEP_ASIDE: Duration = Duration::from_micros(20);

/// Lets the executor serve everything ready, including wake-ups from other threads, before
/// the caller's next chunk.
pub async fn step_aside() {
    glommio::timer::sleep(STEP_ASIDE).await;
}

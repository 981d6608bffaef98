//! Reads too big for one step. A shard serves the first step of a read at once (a small read
//! is done in it); a read whose range goes on (a LIST of 100k keys) continues in a task of its
//! own, a step at a time, stepping aside between steps, so writes and other reads are served in
//! between rather than behind it. A step ends after `READ_STEP_KEYS` keys or `READ_STEP_TIME`,
//! whichever comes first: a key whose value is copied into the answer costs many times one only
//! counted (a LIST page counts the whole rest of its range, as etcd's), so no key count alone
//! bounds how long a step holds the shard (10 000 keys of 1 KiB values: 2-3 ms by a profile's
//! count of ~260 ns a key; a key bound small enough for those made paginated LISTs 6× slower).
//! Writes after the read's revision do not change what it sees (a read at `rev` sees each key's
//! last record at or below it); physical compaction could, so while the read runs, compaction
//! beyond its revision waits (`ShardState::reading`). etcd reads from a consistent bolt
//! transaction, and compaction never fails a read it has admitted; nor does ballast's.

use std::rc::Rc;
use std::time::Duration;

use tokio::sync::oneshot;

use super::actor::ShardState;
use crate::background::step_aside;
use crate::error::Result;
use crate::mvcc::store::{RangePart, RangeQuery, StepBound};

/// Keys a read visits per step on its shard at most.
pub const READ_STEP_KEYS: usize = 10_000;
/// A read step's time on its shard at most (the clock is read every 64 keys).
const READ_STEP_TIME: Duration = Duration::from_micros(200);
const STEP_BOUND: StepBound = StepBound { max_keys: READ_STEP_KEYS, time: Some(READ_STEP_TIME) };

type RangeReply = oneshot::Sender<Result<RangePart>>;

/// A read registered as running at a revision; deregisters when dropped.
pub(super) struct ReadGuard {
    shard: Rc<ShardState>,
    rev: i64,
}

impl Drop for ReadGuard {
    fn drop(&mut self) {
        let mut reading = self.shard.reading.borrow_mut();
        let i = reading.iter().position(|&r| r == self.rev).expect("a registered read");
        reading.swap_remove(i);
    }
}

impl ShardState {
    /// Registers a read at `rev` until the guard drops: compaction beyond `rev` waits.
    pub(super) fn read_at(self: &Rc<Self>, rev: i64) -> ReadGuard {
        self.reading.borrow_mut().push(rev);
        ReadGuard { shard: self.clone(), rev }
    }

    /// The oldest revision a running read holds, if any.
    pub(super) fn oldest_read(&self) -> Option<i64> {
        self.reading.borrow().iter().copied().min()
    }

    /// Serves the first step of `q`. A read done in it is given back to be answered with the
    /// other answers of the turn; a longer one goes on in a task of its own, which answers it.
    pub(super) fn start_read(self: &Rc<Self>, q: RangeQuery, reply: RangeReply) -> Option<(RangeReply, Result<RangePart>)> {
        let mut part = RangePart::at(q.rev);
        let first = self.store.borrow().range_step(&q, &mut part, None, STEP_BOUND);
        match first {
            Ok(Some(after)) => {
                let guard = self.read_at(q.rev);
                glommio::spawn_local(self.clone().finish_read(q, (part, after), guard, reply)).detach();
                None
            }
            done => Some((reply, done.map(|_| part))),
        }
    }

    /// Serves the rest of `q` after `after`, a step at a time, then answers.
    async fn finish_read(
        self: Rc<Self>,
        q: RangeQuery,
        (mut part, mut after): (RangePart, Vec<u8>),
        guard: ReadGuard,
        reply: RangeReply,
    ) {
        let result = loop {
            step_aside().await;
            if crate::failpoint::on("read-step-delay") {
                // Failpoint: a long read's steps take 100 ms each, so compactions land inside it.
                glommio::timer::sleep(std::time::Duration::from_millis(100)).await;
            }
            match self.store.borrow().range_step(&q, &mut part, Some(&after), STEP_BOUND) {
                Ok(Some(last)) => after = last,
                Ok(None) => break Ok(part),
                Err(e) => break Err(e),
            }
        };
        drop(guard);
        let _ = reply.send(result);
    }
}

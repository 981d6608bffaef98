//! The recent changes of one shard's store: (revision, key) of its last writes, in revision
//! order. The watch hub asks each shard for the events of a revision window; while the window
//! is still in this log the shard finds them without scanning the keyspace (a watcher on a
//! prefix of 100k keys would otherwise scan them all at every release). An older window is
//! answered by scanning the watched range instead (`events.rs`). Always on, bounded: a key
//! clone per write.

use std::collections::VecDeque;

use super::Rev;

/// Writes remembered per shard.
pub const MAX_LOGGED_CHANGES: usize = 64 * 1024;

#[derive(Debug, Default)]
pub struct ChangeLog {
    changes: VecDeque<(Rev, Box<[u8]>)>,
    /// Every write at a main revision at or above this one is in the log (0: all of them).
    complete_from: i64,
}

impl ChangeLog {
    /// A log that knows nothing before `rev` (a store rebuilt from a snapshot at `rev`).
    pub fn starting_after(rev: i64) -> ChangeLog {
        ChangeLog { changes: VecDeque::new(), complete_from: rev + 1 }
    }

    pub fn record(&mut self, rev: Rev, key: &[u8]) {
        // A range delete writes every key at one revision.
        debug_assert!(self.changes.back().is_none_or(|(last, _)| *last <= rev), "changes out of revision order");
        if self.changes.len() == MAX_LOGGED_CHANGES {
            let (dropped, _) = self.changes.pop_front().expect("the log is full");
            self.complete_from = dropped.main + 1;
        }
        self.changes.push_back((rev, key.into()));
    }

    /// Whether every write at main revisions `from..` is in the log.
    pub fn covers(&self, from: i64) -> bool {
        from >= self.complete_from
    }

    /// The changes after the write `after` and at main revisions up to `to`, in revision order.
    pub fn after(&self, after: Rev, to: i64) -> impl Iterator<Item = &(Rev, Box<[u8]>)> {
        let start = self.changes.partition_point(|(r, _)| *r <= after);
        self.changes.range(start..).take_while(move |(r, _)| r.main <= to)
    }

    /// The changes at main revisions `from..=to`, in revision order.
    pub fn between(&self, from: i64, to: i64) -> impl Iterator<Item = &(Rev, Box<[u8]>)> {
        let start = self.changes.partition_point(|(r, _)| r.main < from);
        self.changes.range(start..).take_while(move |(r, _)| r.main <= to)
    }
}

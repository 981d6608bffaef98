//! Log writing: which readies wrote which WAL batch, and which batches are durable.
//!
//! Each ready's new entries and hard state become one numbered WAL batch (batch `seq` goes to
//! stripe `seq % stripes`, so consecutive batches sync in parallel). raft-rs's async API counts
//! a ready's entries as persisted only when `on_persist_ready` names it; that is called for the
//! longest prefix of readies whose batches are all durable, whatever order the stripes report
//! them in. So no entry counts as persisted (hence none is committed or answered) before it and
//! every entry before it are on disk. At most one batch per stripe is in flight: WAL recovery
//! relies on it (a torn write can only be a stripe's last record), and proposals arriving
//! meanwhile form the next, larger batch.

use std::collections::{BTreeSet, VecDeque};

use raft::eraftpb::{Entry, HardState};

use crate::wal::record::Batch;

/// A WAL batch to write: `stripe` makes it durable and reports `batch.seq` back.
#[derive(Debug)]
pub struct WalWrite {
    pub stripe: usize,
    pub batch: Batch,
}

pub struct LogWriter<B> {
    stripes: usize,
    /// Sequence number of the last batch handed out.
    wal_seq: u64,
    /// Readies handed to raft-rs, in order, with the batch each wrote (if any).
    in_flight: VecDeque<(u64, Option<u64>)>,
    /// Batches reported durable that are not yet part of the released prefix.
    persisted: BTreeSet<u64>,
    /// The newest batch durable with every batch before it.
    durable_seq: u64,
    /// The batches a future snapshot's replay may still need, in order.
    batch_index: VecDeque<Span>,
    /// Waiters for a batch sequence to be durable (disk barriers).
    barriers: Vec<(u64, B)>,
}

impl<B> LogWriter<B> {
    /// `last_seq`: the last batch recovery replayed; `durable_seq`: the newest batch on disk;
    /// `replayed`: the first batch replayed with the first and last entry index replayed, when
    /// replay brought back entries (a snapshot before the last must replay them again).
    pub fn new(stripes: usize, last_seq: u64, durable_seq: u64, replayed: Option<Span>) -> LogWriter<B> {
        assert!(stripes > 0, "a log needs at least one stripe");
        LogWriter {
            stripes,
            wal_seq: last_seq,
            in_flight: VecDeque::new(),
            persisted: BTreeSet::new(),
            durable_seq,
            batch_index: replayed.into_iter().collect(),
            barriers: Vec::new(),
        }
    }

    /// True while every stripe has a batch in flight: the next ready waits.
    pub fn is_full(&self) -> bool {
        self.in_flight.iter().filter(|(_, seq)| seq.is_some()).count() >= self.stripes
    }

    pub fn durable_seq(&self) -> u64 {
        self.durable_seq
    }

    /// Numbers a batch of new entries and hard state for the next stripe.
    pub fn write(&mut self, entries: Vec<Entry>, hard_state: HardState) -> WalWrite {
        self.wal_seq += 1;
        let seq = self.wal_seq;
        if let (Some(first), Some(last)) = (entries.first(), entries.last()) {
            self.batch_index.push_back(Span { seq, first: first.index, last: last.index });
        }
        let stripe = (seq % self.stripes as u64) as usize;
        WalWrite { stripe, batch: Batch { seq, hard_state, entries } }
    }

    /// Records ready `number` and the batch it wrote, if any.
    pub fn track(&mut self, number: u64, seq: Option<u64>) {
        self.in_flight.push_back((number, seq));
    }

    /// A stripe reports batch `seq` durable.
    pub fn persisted(&mut self, seq: u64) {
        assert!(seq <= self.wal_seq, "batch {seq} reported durable but only {} were written", self.wal_seq);
        self.persisted.insert(seq);
    }

    /// The newest ready of the longest durable prefix, to report with `on_persist_ready`, and
    /// the barriers it releases.
    pub fn release(&mut self) -> (Option<u64>, Vec<B>) {
        let mut last = None;
        while let Some(&(number, seq)) = self.in_flight.front() {
            if let Some(seq) = seq {
                if !self.persisted.remove(&seq) {
                    break;
                }
                assert!(seq > self.durable_seq, "batch {seq} released after batch {}", self.durable_seq);
                self.durable_seq = seq;
            }
            last = Some(number);
            self.in_flight.pop_front();
        }
        (last, self.release_barriers())
    }

    /// Resolves once every batch handed out so far is durable.
    pub fn barrier(&mut self, waiter: B) -> Vec<B> {
        self.barriers.push((self.wal_seq, waiter));
        self.release_barriers()
    }

    fn release_barriers(&mut self) -> Vec<B> {
        let durable = self.durable_seq;
        self.barriers.extract_if(.., |(seq, _)| *seq <= durable).map(|(_, b)| b).collect()
    }

    /// The sequence number the next batch will get.
    pub fn next_seq(&self) -> u64 {
        self.wal_seq + 1
    }

    /// A snapshot from the leader replaced the log: WAL replay after it starts at batch `seq`,
    /// and batches before it (entries of the replaced log) never count for a later snapshot.
    pub fn forget_before(&mut self, seq: u64) {
        self.batch_index.retain(|b| b.seq >= seq);
    }

    /// Where WAL replay after a snapshot at `index` starts (the next batch to write when no
    /// batch holds an entry after it): the first batch holding an entry after `index` such that
    /// no later batch rewrites the log from `index` or before. A follower's log rewritten by a
    /// new leader from below `index` (batch 13 holds entry 14 after batches 10-12 held 21-23)
    /// starts replay after the rewrite (at the batch holding 21 again): replayed from batch 10,
    /// batch 13 would not continue the log. Batches before the start are forgotten: a later
    /// snapshot's index is not lower.
    pub fn first_batch_after(&mut self, index: u64) -> u64 {
        let mut start = None;
        for (i, b) in self.batch_index.iter().enumerate() {
            if b.first <= index + 1 {
                // The log from here on is this batch's and its successors'.
                start = (b.last > index).then_some(i);
            } else if start.is_none() {
                start = Some(i);
            }
        }
        let Some(i) = start else {
            self.batch_index.clear();
            return self.wal_seq + 1;
        };
        self.batch_index.drain(..i);
        self.batch_index[0].seq
    }
}

/// A WAL batch's sequence number and the raft indexes of its first and last entry.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Span {
    pub seq: u64,
    pub first: u64,
    pub last: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(first: u64, last: u64, term: u64) -> Vec<Entry> {
        (first..=last).map(|index| Entry { index, term, ..Default::default() }).collect()
    }

    fn writer(spans: &[(u64, u64, u64)]) -> LogWriter<()> {
        let mut log = LogWriter::new(1, 0, 0, None);
        for &(first, last, term) in spans {
            log.write(entries(first, last, term), HardState::default());
        }
        log
    }

    #[test]
    fn replay_starts_at_the_first_batch_holding_an_entry_after_the_snapshot() {
        let mut log = writer(&[(1, 5, 1), (6, 6, 1), (7, 12, 1), (13, 13, 1)]);
        assert_eq!(log.first_batch_after(6), 3);
        assert_eq!(log.first_batch_after(9), 3, "a batch reaching past the snapshot is replayed whole");
        assert_eq!(log.first_batch_after(12), 4);
        assert_eq!(log.first_batch_after(13), 5, "none after it: the next batch");
    }

    #[test]
    fn replay_starts_after_a_rewrite_of_the_log_from_before_the_snapshot() {
        // Batches 2-4 hold 21-23 of term 1; a new leader rewrote the log from 14 (batches 5, 6),
        // then 21 and on again (batches 7, 8).
        let mut log = writer(&[(20, 20, 1), (21, 21, 1), (22, 22, 1), (23, 23, 1), (14, 14, 2), (15, 20, 2), (21, 21, 2), (22, 30, 2)]);
        assert_eq!(log.first_batch_after(20), 7);
        let mut log = writer(&[(20, 20, 1), (21, 23, 1), (14, 25, 2)]);
        assert_eq!(log.first_batch_after(20), 3, "the rewrite reaches past the snapshot: replayed from it");
        let mut log = writer(&[(20, 20, 1), (21, 23, 1), (22, 22, 2)]);
        assert_eq!(log.first_batch_after(20), 2, "a rewrite after the snapshot continues the replayed log");
    }
}

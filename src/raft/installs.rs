//! Raft snapshots sent from the leader to a follower behind the first entry the leader still
//! holds, in two steps on the follower, so that nothing can fail once raft has changed:
//!
//! 1. fetch: a `MsgSnapshot` raft would restore is held back (not stepped). The core orders
//!    a `FetchOrder`: the driver copies the leader's snapshot files (named by the descriptor
//!    in the message's data) into a staging place and reports `Core::fetched`. A failed fetch
//!    drops the message and tells the leader with a `MsgSnapStatus` (reject), which the
//!    leader's core turns into `report_snapshot(.., Failure)`, as etcd's transport does: the
//!    leader probes again and sends a newer snapshot if it must. Raft never saw it.
//! 2. install: the message is stepped; raft restores and hands out a ready carrying the
//!    snapshot. That ready is held (raft-rs's rule: a ready's snapshot must be in storage
//!    before `advance`, and durable before `on_persist_ready`): the core orders an
//!    `InstallOrder`, the driver replaces its state from the staged files and writes the
//!    manifest last (atomically: a crash leaves the old state or the new one), and reports
//!    `Core::installed`. Only then does raft's storage apply the snapshot and the ready go on;
//!    its messages (the append answer that tells the leader where the follower is) and a
//!    `MsgSnapStatus` (finished) leave once it is durable. While a ready is held raft is not
//!    touched: peers' messages are dropped (as lost) and ticks only count request timeouts.
//!    An install that fails is a local disk failure: fatal, as a failed WAL write.
//!
//! On the leader, a follower left in raft's snapshot state without news (its status lost,
//! or it crashed while fetching) is reported failed after `STATUS_TIMEOUT_ELECTIONS`
//! election timeouts, so raft sends again.

use std::collections::HashMap;

use raft::eraftpb::{Message, MessageType};
use raft::Ready;

/// Election timeouts a leader waits for news of a snapshot it sent before it counts it failed.
pub const STATUS_TIMEOUT_ELECTIONS: u64 = 10;

/// Copy the leader's snapshot files (step 1); `data` is the leader's descriptor.
#[derive(Debug, Clone, PartialEq)]
pub struct FetchOrder {
    /// The leader that sent the snapshot: the member to fetch from.
    pub from: u64,
    pub index: u64,
    pub term: u64,
    pub data: Vec<u8>,
}

/// Replace the applied state with the fetched snapshot (step 2) and make it durable.
#[derive(Debug, Clone, PartialEq)]
pub struct InstallOrder {
    pub from: u64,
    pub index: u64,
    pub term: u64,
    pub voters: Vec<u64>,
    pub learners: Vec<u64>,
    pub data: Vec<u8>,
    /// WAL replay after this snapshot starts at this batch (no batch before it holds an entry
    /// after the snapshot that is not also in a later batch).
    pub wal_seq_from: u64,
    /// A batch durable now, which the WAL keeps as proof that it continues the snapshot.
    pub wal_seq_kept: u64,
}

impl InstallOrder {
    /// WAL batches before this one hold only what the snapshot covers.
    pub fn release_wal_before(&self) -> u64 {
        self.wal_seq_from.min(self.wal_seq_kept)
    }
}

/// A snapshot status for `to` (the leader) from `from`: finished, or failed (`reject`).
pub fn status_message(from: u64, to: u64, ok: bool) -> Message {
    let mut m = Message::default();
    m.set_msg_type(MessageType::MsgSnapStatus);
    m.from = from;
    m.to = to;
    m.reject = !ok;
    m
}

#[derive(Default)]
pub struct Installs {
    /// Step 1: the snapshot message held while its files are fetched.
    fetching: Option<Message>,
    /// Step 2: the leader it came from, the ready holding it, and its order once given.
    held: Option<(u64, Ready, Option<InstallOrder>)>,
    /// The leader fetched from (between `fetched` and the ready that restores).
    restoring_from: Option<u64>,
    /// Leader side: follower → tick its snapshot was sent.
    sent: HashMap<u64, u64>,
}

impl Installs {
    /// Whether a snapshot message is being fetched or installed (another one is dropped).
    pub fn busy(&self) -> bool {
        self.fetching.is_some() || self.held.is_some()
    }

    /// Raft must not be touched while a ready is held.
    pub fn holding_ready(&self) -> bool {
        self.held.is_some()
    }

    pub fn fetch(&mut self, msg: Message) -> FetchOrder {
        let meta = msg.get_snapshot().get_metadata();
        let order = FetchOrder { from: msg.from, index: meta.index, term: meta.term, data: msg.get_snapshot().data.to_vec() };
        self.fetching = Some(msg);
        order
    }

    /// The held message, once fetched (None: nothing was being fetched).
    pub fn fetched(&mut self, ok: bool) -> Option<Message> {
        let msg = self.fetching.take()?;
        self.restoring_from = ok.then_some(msg.from);
        Some(msg)
    }

    pub fn hold(&mut self, rd: Ready) {
        assert!(self.held.is_none(), "two raft snapshots to install at once");
        let from = self.restoring_from.take().unwrap_or(raft::INVALID_ID);
        self.held = Some((from, rd, None));
    }

    /// The held ready's install order, if not given yet; `wal` = (from, kept) as of now.
    pub fn order(&mut self, wal: (u64, u64)) -> Option<InstallOrder> {
        let (from, rd, ordered) = self.held.as_mut()?;
        if ordered.is_some() {
            return None;
        }
        let meta = rd.snapshot().get_metadata();
        let order = InstallOrder {
            from: *from,
            index: meta.index,
            term: meta.term,
            voters: meta.get_conf_state().voters.clone(),
            learners: meta.get_conf_state().learners.clone(),
            data: rd.snapshot().data.to_vec(),
            wal_seq_from: wal.0,
            wal_seq_kept: wal.1,
        };
        *ordered = Some(order.clone());
        Some(order)
    }

    /// The installed ready and its order.
    pub fn take_installed(&mut self) -> (Ready, InstallOrder) {
        let (_, rd, order) = self.held.take().expect("an install finished that was not running");
        (rd, order.expect("an install finished that was not ordered"))
    }

    // ---- leader side ----

    pub fn sent(&mut self, to: u64, now: u64) {
        self.sent.insert(to, now);
    }

    /// News of follower `from`'s snapshot: it was awaited.
    pub fn status(&mut self, from: u64) -> bool {
        self.sent.remove(&from).is_some()
    }

    /// Followers whose snapshot status is overdue at tick `now`.
    pub fn overdue(&mut self, now: u64, timeout_ticks: u64) -> Vec<u64> {
        let late: Vec<u64> = self.sent.iter().filter(|(_, &t)| now >= t + timeout_ticks).map(|(&id, _)| id).collect();
        late.iter().for_each(|id| {
            self.sent.remove(id);
        });
        late
    }
}

//! Proposal batching, and matching committed entries back to the clients waiting for them.
//!
//! All proposals taken in one core turn become one raft entry (an `EntryBatch`, cut at
//! `MAX_ENTRY_BYTES`): batching is what makes many clients cheap. Each request carries an id
//! unique across restarts (it starts at the boot time in nanoseconds), so an entry replayed
//! after a restart never wakes a new waiter. The requests of entries this node proposed are kept
//! until applied, so apply does not decode what it just encoded; an (index, term) pair names one
//! entry (raft's log matching), so an entry a new leader replaced is not mistaken for ours.
//!
//! With peers: a follower's proposals go to the leader (raft-rs forwards them); its clients are
//! answered when it applies the entry holding their ids, wherever it was proposed. A waiter is
//! answered at the latest after the request timeout (in ticks): a forwarded proposal the
//! leader dropped leaves no trace, and etcd answers "request timed out" then too (the write may
//! still be applied later). An entry this node proposed as leader that a new leader replaced
//! (another entry committed at its index) will never be applied: its clients are told at once.

use std::collections::{HashMap, VecDeque};

use prost::Message as _;

use crate::proto::ballastpb::{internal_request::Request, AuthHeader, EntryBatch, InternalRequest};

/// A raft entry holds proposals up to this size (plus one request).
pub const MAX_ENTRY_BYTES: usize = 4 << 20;

/// A committed entry to apply, with the waiter of each request this node proposed.
#[derive(Debug)]
pub struct ToApply<W> {
    pub index: u64,
    pub term: u64,
    pub requests: Vec<Option<Request>>,
    /// One per request: who sent it, when auth was on at the front end.
    pub auth: Vec<Option<AuthHeader>>,
    /// One per request: `Some` when a client of this node waits for its result.
    pub waiters: Vec<Option<W>>,
    /// The member list after this entry, when the entry changed it (a conf change, a member's
    /// published attributes).
    pub members: Option<crate::cluster::Cluster>,
    /// A conf change entry: its verdict, for its proposer's waiter when this node proposed it.
    pub conf_change: Option<ConfOutcome<W>>,
}

/// An applied conf change entry (`conf_change.rs`).
#[derive(Debug)]
pub struct ConfOutcome<W> {
    pub waiter: Option<W>,
    /// Ok: the change applied (`ToApply::members` holds the list after it); Err: etcd's
    /// validation refused it, on every member alike.
    pub result: crate::error::Result<()>,
    /// The change removed this member: it stops serving.
    pub removed_self: bool,
}

/// A waiter whose request timeout passed (`Proposals::expire`).
pub struct Expired<W> {
    /// Its proposal id.
    pub id: u64,
    pub waiter: W,
    /// The tick its request came in.
    pub started: u64,
    /// Whether its request was proposed to raft (else it waited for a leader all along).
    pub proposed: bool,
}

pub struct Proposals<W> {
    next_id: u64,
    /// Proposal id → the client waiting for its result.
    waiters: HashMap<u64, W>,
    /// (tick after which the client is answered "request timed out", proposal id), in id order;
    /// an answered id is dropped when it reaches the front.
    deadlines: VecDeque<(u64, u64)>,
    timeout_ticks: u64,
    /// The batch being gathered in the current turn.
    batch: Vec<InternalRequest>,
    batch_bytes: usize,
    /// (index, term, requests) of the entries proposed and not yet committed, in index order.
    /// Bounded by the proposals not yet applied.
    proposed: VecDeque<(u64, u64, Vec<InternalRequest>)>,
}

impl<W> Proposals<W> {
    /// `first_id`: unique across restarts and members (see `CoreConfig::first_proposal_id`);
    /// a waiter is answered within `timeout_ticks` ticks.
    pub fn new(first_id: u64, timeout_ticks: u64) -> Proposals<W> {
        Proposals {
            next_id: first_id,
            waiters: HashMap::new(),
            deadlines: VecDeque::new(),
            timeout_ticks,
            batch: Vec::new(),
            batch_bytes: 0,
            proposed: VecDeque::new(),
        }
    }

    /// Adds a request to the turn's batch at tick `now`; true when the batch is full and must
    /// be proposed.
    pub fn add(&mut self, request: Request, auth: Option<AuthHeader>, waiter: W, now: u64) -> bool {
        self.next_id += 1;
        self.waiters.insert(self.next_id, waiter);
        // Answered ids leave the front as they go (answers come mostly in id order), so the
        // deadlines stay about as many as the waiters, not every request of a timeout.
        while self.deadlines.front().is_some_and(|(_, id)| !self.waiters.contains_key(id)) {
            self.deadlines.pop_front();
        }
        self.deadlines.push_back((now + self.timeout_ticks, self.next_id));
        let ir = InternalRequest { id: self.next_id, request: Some(request), auth };
        self.batch_bytes += ir.encoded_len();
        self.batch.push(ir);
        self.batch_bytes >= MAX_ENTRY_BYTES
    }

    /// A waiter for a request proposed outside the batch (a conf change): its proposal id,
    /// answered by `take_waiter` or when the request times out.
    pub fn register(&mut self, waiter: W, now: u64) -> u64 {
        self.next_id += 1;
        self.waiters.insert(self.next_id, waiter);
        self.deadlines.push_back((now + self.timeout_ticks, self.next_id));
        self.next_id
    }

    /// Whether proposal `id`'s waiter still waits (it has not expired).
    pub fn waits(&self, id: u64) -> bool {
        self.waiters.contains_key(&id)
    }

    /// The waiter of proposal `id`, if it still waits here.
    pub fn take_waiter(&mut self, id: u64) -> Option<W> {
        self.waiters.remove(&id)
    }

    /// Bytes gathered in the batch not yet proposed.
    pub fn batch_bytes(&self) -> usize {
        self.batch_bytes
    }

    /// Whether the batch holds an entry's worth: it takes no more while it cannot be proposed.
    pub fn batch_is_full(&self) -> bool {
        self.batch_bytes >= MAX_ENTRY_BYTES
    }

    /// Clients waiting for a result.
    pub fn pending(&self) -> usize {
        self.waiters.len()
    }

    /// The turn's batch, if any, encoded as one entry's data.
    pub fn take_batch(&mut self) -> Option<(Vec<InternalRequest>, Vec<u8>)> {
        if self.batch.is_empty() {
            return None;
        }
        self.batch_bytes = 0;
        let batch = EntryBatch { requests: std::mem::take(&mut self.batch) };
        let data = batch.encode_to_vec();
        Some((batch.requests, data))
    }

    /// Raft accepted the batch as entry (index, term). Entries this node proposed in an
    /// earlier term at this index or after are gone from its log (a leader since overwrote
    /// them), but may still be committed from another member's log: their requests are
    /// forgotten here, their waiters stay (answered if the entry is applied after all, by id,
    /// or when the request times out).
    pub fn proposed(&mut self, index: u64, term: u64, requests: Vec<InternalRequest>) {
        while self.proposed.back().is_some_and(|&(i, _, _)| i >= index) {
            let (_, earlier_term, _) = self.proposed.pop_back().expect("checked above");
            assert!(earlier_term < term, "two entries proposed at index {index} in term {term}");
        }
        self.proposed.push_back((index, term, requests));
    }

    /// Raft refused the batch: the waiters to answer with an error.
    pub fn refuse(&mut self, requests: Vec<InternalRequest>) -> Vec<W> {
        requests.iter().filter_map(|r| self.waiters.remove(&r.id)).collect()
    }

    /// The waiters whose request timeout has passed at tick `now`, each with the tick it was
    /// added at and whether its request was proposed. A request still in the batch (held
    /// while there is no leader) leaves it: it is never proposed after its client was told it
    /// timed out.
    pub fn expire(&mut self, now: u64) -> Vec<Expired<W>> {
        let mut expired = Vec::new();
        let mut held: Option<std::collections::HashSet<u64>> = None; // the batch's ids, once needed
        while self.deadlines.front().is_some_and(|&(deadline, _)| deadline <= now) {
            let (deadline, id) = self.deadlines.pop_front().expect("checked above");
            let Some(waiter) = self.waiters.remove(&id) else { continue };
            let held = held.get_or_insert_with(|| self.batch.iter().map(|r| r.id).collect());
            expired.push(Expired { id, waiter, started: deadline - self.timeout_ticks, proposed: !held.contains(&id) });
        }
        if !expired.is_empty() && !self.batch.is_empty() {
            self.batch.retain(|r| self.waiters.contains_key(&r.id));
            self.batch_bytes = self.batch.iter().map(|r| r.encoded_len()).sum();
        }
        expired
    }

    /// A committed entry that is not a normal one (a conf change) sits at `index`: an entry
    /// this node proposed there was replaced. Returns the waiters that will never be answered.
    pub fn replaced_up_to(&mut self, index: u64) -> Vec<W> {
        let mut lost = Vec::new();
        while self.proposed.front().is_some_and(|(i, _, _)| *i <= index) {
            let (_, _, requests) = self.proposed.pop_front().expect("checked above");
            lost.extend(self.refuse(requests));
        }
        lost
    }

    /// A snapshot from the leader covers everything up to `index`: entries this node proposed
    /// there may or may not be in it. Their requests are forgotten; their waiters stay, answered
    /// by id if applied later (they cannot be) or when their request times out — never refused
    /// for certain.
    pub fn forget_up_to(&mut self, index: u64) {
        while self.proposed.front().is_some_and(|(i, _, _)| *i <= index) {
            self.proposed.pop_front();
        }
    }

    /// The requests of a committed normal entry, with their waiters, and the waiters of
    /// entries this node proposed that a new leader replaced (never to be applied).
    pub fn committed(&mut self, index: u64, term: u64, data: &[u8]) -> (ToApply<W>, Vec<W>) {
        let (ours, lost) = self.take_proposed(index, term);
        let requests = match ours {
            Some(r) => r,
            None if data.is_empty() => Vec::new(), // a new leader's empty entry
            // Entries are written only by this code; an undecodable one is corruption (a
            // panic ends the process: the log on disk is not touched).
            None => EntryBatch::decode(data).unwrap_or_else(|e| panic!("undecodable raft entry at index {index}: {e}")).requests,
        };
        let mut waiters = Vec::with_capacity(requests.len());
        let mut auth = Vec::with_capacity(requests.len());
        let requests = requests
            .into_iter()
            .map(|ir| {
                waiters.push(self.waiters.remove(&ir.id));
                auth.push(ir.auth);
                ir.request
            })
            .collect();
        (ToApply { index, term, requests, auth, waiters, members: None, conf_change: None }, lost)
    }

    /// The requests of entry (index, term) if this node proposed it, and the waiters of older
    /// leftovers and of another entry at this index: entries a new leader replaced (an index
    /// holds one committed entry, and it is not theirs).
    fn take_proposed(&mut self, index: u64, term: u64) -> (Option<Vec<InternalRequest>>, Vec<W>) {
        let mut lost = self.replaced_up_to(index.saturating_sub(1));
        if self.proposed.front().is_none_or(|(i, _, _)| *i != index) {
            return (None, lost);
        }
        let (_, proposed_term, requests) = self.proposed.pop_front().expect("checked above");
        if proposed_term == term {
            return (Some(requests), lost);
        }
        lost.extend(self.refuse(requests));
        (None, lost)
    }
}

//! Linearizable reads (raft ReadIndex). The reads queued in one core turn share one ReadIndex
//! request; the leader answers with its commit index once a quorum confirmed it still leads,
//! and the reads are released once everything up to that index is applied here. On a follower
//! raft-rs forwards the request to the leader.
//!
//! raft-rs drops a request silently when there is no leader, or the leader has not yet
//! committed an entry of its term (its core does not ask then), or the message is lost. So, as
//! etcd's read loop, a request not answered is asked again every `retry_ticks`; reads asked
//! when the leader changes fail with "leader changed"; and every read is answered within the
//! request timeout ("request timed out"). A context names one request of one member in one
//! life (member id, and a counter that starts at the boot's unique proposal id), so a late
//! answer to another member's request, or to one of an earlier life, is never taken for ours.

use std::collections::HashMap;

/// Reads with the tick after which each is answered "request timed out".
type Timed<R> = Vec<(u64, R)>;

struct Asked<R> {
    reads: Timed<R>,
    /// Tick at which the request was last sent.
    sent_at: u64,
}

pub struct Reads<R> {
    member: u64,
    /// Reads of the current turn, not yet asked of raft.
    queued: Timed<R>,
    /// ReadIndex context → its reads.
    asked: HashMap<u64, Asked<R>>,
    /// (read index, reads) waiting for apply to reach the index.
    ready: Vec<(u64, Timed<R>)>,
    next_ctx: u64,
    timeout_ticks: u64,
    retry_ticks: u64,
}

impl<R> Reads<R> {
    /// `first_ctx`: unique across restarts (the boot's first proposal id).
    pub fn new(member: u64, first_ctx: u64, timeout_ticks: u64, retry_ticks: u64) -> Reads<R> {
        Reads { member, queued: Vec::new(), asked: HashMap::new(), ready: Vec::new(), next_ctx: first_ctx, timeout_ticks, retry_ticks: retry_ticks.max(1) }
    }

    pub fn queue(&mut self, read: R, now: u64) {
        self.queued.push((now + self.timeout_ticks, read));
    }

    /// The context of a ReadIndex request for the queued reads, if any.
    pub fn ask(&mut self, now: u64) -> Option<Vec<u8>> {
        if self.queued.is_empty() {
            return None;
        }
        self.next_ctx += 1;
        self.asked.insert(self.next_ctx, Asked { reads: std::mem::take(&mut self.queued), sent_at: now });
        Some(self.encode(self.next_ctx))
    }

    /// The contexts of requests unanswered for `retry_ticks`: to ask again.
    pub fn retry(&mut self, now: u64) -> Vec<Vec<u8>> {
        let mut again = Vec::new();
        for (&ctx, asked) in &mut self.asked {
            if asked.sent_at + self.retry_ticks <= now {
                asked.sent_at = now;
                again.push(ctx);
            }
        }
        again.sort_unstable(); // deterministic order (a HashMap's is not)
        again.into_iter().map(|ctx| self.encode(ctx)).collect()
    }

    /// Raft answered the request `ctx` with `index`.
    pub fn answered(&mut self, ctx: &[u8], index: u64) {
        let Some(ctx) = self.decode(ctx) else { return };
        if let Some(asked) = self.asked.remove(&ctx) {
            self.ready.push((index, asked.reads));
        }
    }

    /// The leader changed: the reads asked and not answered (etcd's "leader changed").
    pub fn leader_changed(&mut self) -> Vec<R> {
        let mut ctxs: Vec<u64> = self.asked.keys().copied().collect();
        ctxs.sort_unstable();
        ctxs.into_iter().flat_map(|c| self.asked.remove(&c).expect("a key").reads).map(|(_, r)| r).collect()
    }

    /// The reads whose index is applied.
    pub fn release(&mut self, applied: u64) -> Vec<R> {
        let mut done = Vec::new();
        for (_, reads) in self.ready.extract_if(.., |(index, _)| *index <= applied) {
            done.extend(reads.into_iter().map(|(_, r)| r));
        }
        done
    }

    /// The reads whose request timeout has passed at tick `now`, wherever they wait.
    pub fn expire(&mut self, now: u64) -> Vec<R> {
        let mut expired: Vec<R> = self.queued.extract_if(.., |(deadline, _)| *deadline <= now).map(|(_, r)| r).collect();
        let mut ctxs: Vec<u64> = self.asked.keys().copied().collect();
        ctxs.sort_unstable();
        for ctx in ctxs {
            let asked = self.asked.get_mut(&ctx).expect("a key");
            expired.extend(asked.reads.extract_if(.., |(deadline, _)| *deadline <= now).map(|(_, r)| r));
            if asked.reads.is_empty() {
                self.asked.remove(&ctx);
            }
        }
        for (_, reads) in &mut self.ready {
            expired.extend(reads.extract_if(.., |(deadline, _)| *deadline <= now).map(|(_, r)| r));
        }
        self.ready.retain(|(_, reads)| !reads.is_empty());
        expired
    }

    fn encode(&self, ctx: u64) -> Vec<u8> {
        let mut bytes = self.member.to_le_bytes().to_vec();
        bytes.extend_from_slice(&ctx.to_le_bytes());
        bytes
    }

    fn decode(&self, bytes: &[u8]) -> Option<u64> {
        let (member, ctx) = bytes.split_at_checked(8)?;
        let ctx = u64::from_le_bytes(ctx.try_into().ok()?);
        (u64::from_le_bytes(member.try_into().ok()?) == self.member).then_some(ctx)
    }
}

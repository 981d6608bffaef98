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
//!
//! A leader answers its followers' requests itself (`queue_peer`): raft-rs would broadcast a
//! heartbeat round for each of them beside the leader's own, so with reads on every member of 3
//! the leader sent three rounds where one does. A follower's request taken in a turn joins that
//! turn's request of the leader, issued after it arrived at an index at least the commit index
//! it would have got, and is answered as raft-rs answers it (`MsgReadIndexResp`: that index,
//! the follower's context). A peer's request has no waiter here: one not answered within the
//! request timeout, or asked when the leader changes, is dropped, and its follower asks again.

use std::collections::HashMap;

/// Reads with the tick after which each is answered "request timed out".
type Timed<R> = Vec<(u64, R)>;

/// A follower's ReadIndex request, answered by the leader itself (see the module comment).
#[derive(Debug, PartialEq)]
pub struct PeerRead {
    pub peer: u64,
    /// The follower's context, echoed in the answer.
    pub ctx: Vec<u8>,
}

struct Asked<R> {
    reads: Timed<R>,
    /// Followers' requests riding on this one (with the tick after which each is dropped).
    peers: Timed<PeerRead>,
    /// Tick at which the request was last sent.
    sent_at: u64,
}

pub struct Reads<R> {
    member: u64,
    /// Reads of the current turn, not yet asked of raft.
    queued: Timed<R>,
    /// Followers' requests of the current turn (a leader's), not yet asked of raft.
    queued_peers: Timed<PeerRead>,
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
        Reads { member, queued: Vec::new(), queued_peers: Vec::new(), asked: HashMap::new(), ready: Vec::new(), next_ctx: first_ctx, timeout_ticks, retry_ticks: retry_ticks.max(1) }
    }

    pub fn queue(&mut self, read: R, now: u64) {
        self.queued.push((now + self.timeout_ticks, read));
    }

    /// A follower's request, to ride on this leader's next one.
    pub fn queue_peer(&mut self, read: PeerRead, now: u64) {
        self.queued_peers.push((now + self.timeout_ticks, read));
    }

    /// The context of a ReadIndex request for the queued reads, if any. A member that does
    /// not lead (any more) drops the followers' requests queued.
    pub fn ask(&mut self, now: u64, leading: bool) -> Option<Vec<u8>> {
        if !leading {
            self.queued_peers.clear();
        }
        if self.queued.is_empty() && self.queued_peers.is_empty() {
            return None;
        }
        self.next_ctx += 1;
        let asked = Asked { reads: std::mem::take(&mut self.queued), peers: std::mem::take(&mut self.queued_peers), sent_at: now };
        self.asked.insert(self.next_ctx, asked);
        Some(self.encode(self.next_ctx))
    }

    /// The requests unanswered for `retry_ticks`, to ask again: each one's id and context.
    pub fn retry(&mut self, now: u64) -> Vec<(u64, Vec<u8>)> {
        let mut again = Vec::new();
        for (&ctx, asked) in &mut self.asked {
            if asked.sent_at + self.retry_ticks <= now {
                asked.sent_at = now;
                again.push(ctx);
            }
        }
        again.sort_unstable(); // deterministic order (a HashMap's is not)
        again.into_iter().map(|ctx| (ctx, self.encode(ctx))).collect()
    }

    /// Raft answered the request `ctx` with `index`: the followers' requests that rode on it,
    /// to answer with that index.
    pub fn answered(&mut self, ctx: &[u8], index: u64) -> Vec<PeerRead> {
        let Some(ctx) = self.decode(ctx) else { return Vec::new() };
        let Some(asked) = self.asked.remove(&ctx) else { return Vec::new() };
        if !asked.reads.is_empty() {
            self.ready.push((index, asked.reads));
        }
        asked.peers.into_iter().map(|(_, p)| p).collect()
    }

    /// The leader changed: the reads asked and not answered (etcd's "leader changed"); the
    /// followers' requests are dropped (they ask the new leader).
    pub fn leader_changed(&mut self) -> Vec<R> {
        self.queued_peers.clear();
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
        self.queued_peers.retain(|(deadline, _)| *deadline > now);
        let mut ctxs: Vec<u64> = self.asked.keys().copied().collect();
        ctxs.sort_unstable();
        for ctx in ctxs {
            let asked = self.asked.get_mut(&ctx).expect("a key");
            expired.extend(asked.reads.extract_if(.., |(deadline, _)| *deadline <= now).map(|(_, r)| r));
            asked.peers.retain(|(deadline, _)| *deadline > now);
            if asked.reads.is_empty() && asked.peers.is_empty() {
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

#[cfg(test)]
mod tests {
    use super::*;

    const MEMBER: u64 = 7;

    fn reads() -> Reads<&'static str> {
        Reads::new(MEMBER, 100, 10, 2)
    }

    fn peer(peer: u64, ctx: u8) -> PeerRead {
        PeerRead { peer, ctx: vec![ctx] }
    }

    #[test]
    fn followers_requests_ride_on_the_leaders_and_come_back_with_its_index() {
        let mut r = reads();
        r.queue("local", 0);
        r.queue_peer(peer(2, 1), 0);
        r.queue_peer(peer(3, 2), 0);
        let ctx = r.ask(0, true).expect("one request for the turn");
        assert_eq!(r.ask(0, true), None, "nothing queued after the ask");
        assert_eq!(r.answered(&ctx, 42), vec![peer(2, 1), peer(3, 2)]);
        assert_eq!(r.release(41), Vec::<&str>::new());
        assert_eq!(r.release(42), vec!["local"]);
        assert_eq!(r.answered(&ctx, 42), vec![], "an answer counts once");
    }

    #[test]
    fn a_turn_with_only_followers_requests_asks_and_releases_no_local_read() {
        let mut r = reads();
        r.queue_peer(peer(2, 9), 0);
        let ctx = r.ask(0, true).expect("a request for the follower's");
        assert_eq!(r.answered(&ctx, 5), vec![peer(2, 9)]);
        assert_eq!(r.release(5), Vec::<&str>::new());
        assert!(r.ready.is_empty());
    }

    #[test]
    fn a_member_that_no_longer_leads_drops_followers_requests() {
        let mut r = reads();
        r.queue_peer(peer(2, 1), 0);
        assert_eq!(r.ask(0, false), None);
        r.queue("local", 0);
        r.queue_peer(peer(3, 1), 0);
        let ctx = r.ask(0, false).expect("the local read is asked");
        assert_eq!(r.answered(&ctx, 3), vec![]);
        assert_eq!(r.release(3), vec!["local"]);
    }

    #[test]
    fn followers_requests_are_dropped_at_their_timeout_and_at_a_leader_change() {
        let mut r = reads();
        r.queue_peer(peer(2, 1), 0);
        let ctx = r.ask(0, true).expect("asked");
        assert_eq!(r.retry(2).len(), 1, "asked again while unanswered");
        assert_eq!(r.expire(10), Vec::<&str>::new());
        assert!(r.asked.is_empty(), "nothing left waiting");
        assert_eq!(r.answered(&ctx, 1), vec![]);
        r.queue_peer(peer(2, 2), 20);
        r.queue("local", 20);
        r.ask(20, true).expect("asked");
        r.queue_peer(peer(3, 3), 20);
        assert_eq!(r.leader_changed(), vec!["local"]);
        assert!(r.queued_peers.is_empty() && r.asked.is_empty());
    }
}

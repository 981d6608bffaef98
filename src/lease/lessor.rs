//! The lessor: every lease's granted TTL and the keys put with it (raft-applied, the same on
//! every member, saved in snapshots), and on the leader when each expires. etcd's rules: a TTL
//! is raised to the minimum (3/2 election timeout, rounded up to seconds) and may not exceed
//! `MAX_LEASE_TTL_SECONDS`; a keepalive renews a lease to its full TTL; a new leader (and so
//! every restart) gives each lease its full TTL plus an election timeout. Expired leases are
//! revoked through raft by the leader, at most `MAX_REVOKES_PER_CHECK` per look, each retried
//! after the request timeout if its revoke did not apply.
//!
//! With checkpoints (`--experimental-enable-lease-checkpoint`) the leader records, through raft,
//! every 5 minutes the time a long lease has left, so a new leader (or, with
//! `-persist`, a restart) resumes from it instead of the full TTL; a keepalive clears it.
//!
//! The keys of a lease are those put with it; a key put again without it, or deleted, keeps its
//! entry here, so whoever uses them (revoke, TimeToLive) checks the key's current lease.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use super::MAX_LEASE_TTL_SECONDS;
use crate::error::{Error, Result};

struct Lease {
    ttl: i64,
    keys: BTreeSet<Vec<u8>>,
    /// None while this member is not the leader (etcd: forever).
    expiry: Option<Instant>,
    /// Expired, its revoke proposed: proposed again at this time if it has not applied.
    revoking: Option<Instant>,
    /// The time left at the last checkpoint (0: none since the last renewal).
    remaining_ttl: i64,
    /// When the leader checkpoints it next.
    checkpoint_at: Option<Instant>,
}

/// (lease id, seconds).
pub type IdSeconds = (i64, i64);

/// Lease checkpoints (etcd's are every 5 minutes, for leases with more left than that).
#[derive(Clone, Copy)]
pub struct Checkpoints {
    pub interval: Duration,
    /// Saved in snapshots too, so a restart resumes from them.
    pub persist: bool,
}

pub struct Lessor {
    leases: HashMap<i64, Lease>,
    min_ttl: i64,
    /// How long a revoke may take before the lease is revoked again.
    retry: Duration,
    checkpoints: Option<Checkpoints>,
}

impl Lessor {
    pub fn new(min_ttl: i64, retry: Duration, checkpoints: Option<Checkpoints>) -> Lessor {
        Lessor { leases: HashMap::new(), min_ttl, retry, checkpoints }
    }

    /// A snapshot from the leader replaced the state: its leases replace every lease held.
    pub fn replace(&mut self, leases: &[(i64, i64)], remaining: &[(i64, i64)]) {
        self.leases.clear();
        self.restore(leases, remaining);
    }

    /// Leases saved by a snapshot, as (id, ttl), and the time left at their last checkpoint.
    pub fn restore(&mut self, leases: &[(i64, i64)], remaining: &[(i64, i64)]) {
        for &(id, ttl) in leases {
            self.leases.insert(id, Lease::new(ttl.max(self.min_ttl), None));
        }
        for &(id, left) in remaining {
            if let Some(l) = self.leases.get_mut(&id) {
                l.remaining_ttl = left;
            }
        }
    }

    /// Whether checkpointed times left survive a restart (`--experimental-enable-lease-checkpoint-persist`).
    pub fn checkpoints_persist(&self) -> bool {
        self.checkpoints.is_some_and(|c| c.persist)
    }

    /// (id, ttl) of every lease, and (id, time left) of the checkpointed ones when checkpoints
    /// persist.
    pub fn saved(&self) -> (Vec<IdSeconds>, Vec<IdSeconds>) {
        let mut all: Vec<_> = self.leases.iter().map(|(&id, l)| (id, l.ttl)).collect();
        all.sort_unstable();
        let persist = self.checkpoints.is_some_and(|c| c.persist);
        let mut left: Vec<_> = self.leases.iter().filter(|(_, l)| persist && l.remaining_ttl > 0).map(|(&id, l)| (id, l.remaining_ttl)).collect();
        left.sort_unstable();
        (all, left)
    }

    /// Applies a grant; returns the TTL granted.
    pub fn grant(&mut self, id: i64, ttl: i64, leader_now: Option<Instant>) -> Result<i64> {
        if ttl > MAX_LEASE_TTL_SECONDS {
            return Err(Error::LeaseTtlTooLarge);
        }
        if id == 0 {
            return Err(Error::LeaseNotFound);
        }
        if self.leases.contains_key(&id) {
            return Err(Error::LeaseExists);
        }
        let ttl = ttl.max(self.min_ttl);
        let mut lease = Lease::new(ttl, leader_now.map(|now| now + seconds(ttl)));
        lease.checkpoint_at = self.next_checkpoint(ttl, leader_now);
        self.leases.insert(id, lease);
        let m = crate::metrics::handles();
        m.leases_granted.increment(1);
        m.lease_ttls.record(ttl as f64);
        Ok(ttl)
    }

    /// Applies a revoke: the lease is gone; returns its keys, in key order.
    pub fn revoke(&mut self, id: i64) -> Result<Vec<Vec<u8>>> {
        let lease = self.leases.remove(&id).ok_or(Error::LeaseNotFound)?;
        crate::metrics::handles().leases_revoked.increment(1);
        Ok(lease.keys.into_iter().collect())
    }

    /// The keys put with lease `id` (some may have been put again without it since).
    pub fn keys(&self, id: i64) -> impl Iterator<Item = &[u8]> {
        self.leases.get(&id).into_iter().flat_map(|l| l.keys.iter().map(Vec::as_slice))
    }

    pub fn exists(&self, id: i64) -> bool {
        self.leases.contains_key(&id)
    }

    pub fn attach(&mut self, id: i64, key: &[u8]) {
        if let Some(l) = self.leases.get_mut(&id) {
            if !l.keys.contains(key) {
                l.keys.insert(key.to_vec());
            }
        }
    }

    /// A keepalive on the leader: the lease lives its full TTL from now; returns the TTL and
    /// whether a checkpoint must clear its recorded time left (through raft, as etcd does).
    /// None: unknown, or expired (its revoke is on its way).
    pub fn renew(&mut self, id: i64, now: Instant) -> Option<(i64, bool)> {
        let l = self.leases.get_mut(&id)?;
        if l.revoking.is_some() || l.expiry.is_some_and(|e| e <= now) {
            return None;
        }
        l.expiry = Some(now + seconds(l.ttl));
        crate::metrics::handles().leases_renewed.increment(1);
        Some((l.ttl, self.checkpoints.is_some() && l.remaining_ttl > 0))
    }

    /// Applies a checkpoint: the time the lease had left.
    pub fn checkpoint(&mut self, id: i64, remaining: i64, leader_now: Option<Instant>) {
        let next = self.leases.get(&id).and_then(|l| self.next_checkpoint(if remaining > 0 { remaining } else { l.ttl }, leader_now));
        if let Some(l) = self.leases.get_mut(&id) {
            l.remaining_ttl = remaining;
            l.checkpoint_at = next;
        }
    }

    /// Checkpoints due on the leader, as (id, seconds left rounded up): leases not expired
    /// and not renewed since (etcd skips those), at most `limit`.
    pub fn due_checkpoints(&mut self, now: Instant, limit: usize) -> Vec<(i64, i64)> {
        let mut due = Vec::new();
        for (&id, l) in self.leases.iter_mut() {
            if due.len() == limit || l.checkpoint_at.is_none_or(|t| t > now) {
                continue;
            }
            l.checkpoint_at = None;
            let Some(expiry) = l.expiry.filter(|&e| e > now) else { continue };
            let left = expiry.duration_since(now).as_secs_f64().ceil() as i64;
            if left < l.ttl {
                due.push((id, left));
            }
        }
        due
    }

    /// When a lease with `left` seconds to go is checkpointed next: only on the leader, only
    /// with checkpoints, only if it outlives the interval.
    fn next_checkpoint(&self, left: i64, leader_now: Option<Instant>) -> Option<Instant> {
        let interval = self.checkpoints?.interval;
        let now = leader_now?;
        (seconds(left) > interval).then_some(now + interval)
    }

    /// (remaining seconds, truncated; granted TTL; keys put with it) of a lease.
    pub fn time_to_live(&self, id: i64, now: Instant) -> Option<(i64, i64, Vec<Vec<u8>>)> {
        let l = self.leases.get(&id)?;
        let remaining = l.expiry.map_or(l.ttl, |e| remaining_seconds(e, now));
        Some((remaining, l.ttl, l.keys.iter().cloned().collect()))
    }

    /// Every lease id, soonest expiry first.
    pub fn ids(&self) -> Vec<i64> {
        let mut all: Vec<_> = self.leases.iter().map(|(&id, l)| (l.expiry, id)).collect();
        all.sort_unstable();
        all.into_iter().map(|(_, id)| id).collect()
    }

    /// This member became the leader: every lease lives its full TTL plus `extend` from now.
    pub fn promote(&mut self, now: Instant, extend: Duration) {
        let interval = self.checkpoints.map(|c| c.interval);
        for l in self.leases.values_mut() {
            let left = if l.remaining_ttl > 0 { l.remaining_ttl } else { l.ttl };
            l.expiry = Some(now + extend + seconds(left));
            l.revoking = None;
            l.checkpoint_at = interval.filter(|&i| seconds(left) > i).map(|i| now + i);
        }
    }

    /// Up to `limit` expired leases to revoke; each is looked at again after the retry
    /// interval if its revoke has not applied by then.
    pub fn expired(&mut self, now: Instant, limit: usize) -> Vec<i64> {
        let due_at = |l: &Lease| l.revoking.or(l.expiry).filter(|&t| t <= now);
        let mut due: Vec<(Instant, i64)> = self.leases.iter().filter_map(|(&id, l)| due_at(l).map(|t| (t, id))).collect();
        due.sort_unstable();
        due.truncate(limit);
        for (_, id) in &due {
            if let Some(l) = self.leases.get_mut(id) {
                l.revoking = Some(now + self.retry);
            }
        }
        crate::metrics::handles().leases_expired.increment(due.len() as u64);
        due.into_iter().map(|(_, id)| id).collect()
    }
}

impl Lease {
    fn new(ttl: i64, expiry: Option<Instant>) -> Lease {
        Lease { ttl, keys: BTreeSet::new(), expiry, revoking: None, remaining_ttl: 0, checkpoint_at: None }
    }
}

fn seconds(s: i64) -> Duration {
    Duration::from_secs(s.max(0) as u64)
}

/// etcd's int64(remaining.Seconds()): truncated toward zero, negative once past.
fn remaining_seconds(expiry: Instant, now: Instant) -> i64 {
    match expiry.checked_duration_since(now) {
        Some(d) => d.as_secs() as i64,
        None => -(now.duration_since(expiry).as_secs() as i64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_floor_and_refuse_like_etcd() {
        let mut l = Lessor::new(2, Duration::from_secs(7), None);
        let now = Instant::now();
        assert_eq!(l.grant(1, 0, Some(now)), Ok(2), "raised to the minimum TTL");
        assert_eq!(l.grant(1, 10, Some(now)), Err(Error::LeaseExists));
        assert_eq!(l.grant(2, MAX_LEASE_TTL_SECONDS + 1, Some(now)), Err(Error::LeaseTtlTooLarge));
        assert_eq!(l.grant(-1, 60, Some(now)), Ok(60), "any non-zero id, as etcd");
        let (remaining, granted, _) = l.time_to_live(-1, now + Duration::from_millis(1500)).unwrap();
        assert_eq!((remaining, granted), (58, 60));
    }

    #[test]
    fn expiry_renewal_and_promotion() {
        let mut l = Lessor::new(2, Duration::from_secs(7), None);
        let t0 = Instant::now();
        l.grant(5, 10, Some(t0)).unwrap();
        l.attach(5, b"b");
        l.attach(5, b"a");
        assert!(l.expired(t0 + Duration::from_secs(9), 10).is_empty());
        assert_eq!(l.renew(5, t0 + Duration::from_secs(9)), Some((10, false)));
        assert_eq!(l.expired(t0 + Duration::from_secs(19), 10), [5]);
        assert!(l.expired(t0 + Duration::from_secs(20), 10).is_empty(), "retried only after the retry interval");
        assert_eq!(l.renew(5, t0 + Duration::from_secs(20)), None, "expired: its revoke is on its way");
        assert_eq!(l.expired(t0 + Duration::from_secs(26), 10), [5]);
        l.promote(t0, Duration::from_secs(1));
        assert_eq!(l.time_to_live(5, t0).unwrap().0, 11);
        assert_eq!(l.revoke(5), Ok(vec![b"a".to_vec(), b"b".to_vec()]));
    }

    #[test]
    fn checkpoints_record_the_time_left_and_a_renewal_clears_it() {
        let every = Checkpoints { interval: Duration::from_secs(300), persist: true };
        let mut l = Lessor::new(2, Duration::from_secs(7), Some(every));
        let t0 = Instant::now();
        l.grant(1, 1000, Some(t0)).unwrap();
        l.grant(2, 100, Some(t0)).unwrap();
        assert!(l.due_checkpoints(t0 + Duration::from_secs(299), 10).is_empty());
        assert_eq!(l.due_checkpoints(t0 + Duration::from_secs(300), 10), [(1, 700)], "only leases outliving the interval");
        l.checkpoint(1, 700, Some(t0 + Duration::from_secs(300)));
        assert_eq!(l.saved().1, [(1, 700)]);
        l.promote(t0 + Duration::from_secs(400), Duration::from_secs(1));
        assert_eq!(l.time_to_live(1, t0 + Duration::from_secs(400)).unwrap().0, 701, "a new leader resumes from the checkpoint");
        assert_eq!(l.renew(1, t0 + Duration::from_secs(400)), Some((1000, true)), "the renewal must clear it");
        assert_eq!(l.revoke(5), Err(Error::LeaseNotFound));
    }
}

//! The lessor: every lease's granted TTL and the keys put with it (raft-applied, the same on
//! every member, saved in snapshots), and on the leader when each expires. etcd's rules: a TTL
//! is raised to the minimum (3/2 election timeout, rounded up to seconds) and may not exceed
//! `MAX_LEASE_TTL_SECONDS`; a keepalive renews a lease to its full TTL; a new leader (and so
//! every restart) gives each lease its full TTL plus an election timeout. Expired leases are
//! revoked through raft by the leader, at most `MAX_REVOKES_PER_CHECK` per look, each retried
//! after the request timeout if its revoke did not apply.
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
}

pub struct Lessor {
    leases: HashMap<i64, Lease>,
    min_ttl: i64,
    /// How long a revoke may take before the lease is revoked again.
    retry: Duration,
}

impl Lessor {
    pub fn new(min_ttl: i64, retry: Duration) -> Lessor {
        Lessor { leases: HashMap::new(), min_ttl, retry }
    }

    /// Leases saved by a snapshot, as (id, ttl).
    pub fn restore(&mut self, leases: &[(i64, i64)]) {
        for &(id, ttl) in leases {
            self.leases.insert(id, Lease { ttl: ttl.max(self.min_ttl), keys: BTreeSet::new(), expiry: None, revoking: None });
        }
    }

    pub fn saved(&self) -> Vec<(i64, i64)> {
        let mut all: Vec<_> = self.leases.iter().map(|(&id, l)| (id, l.ttl)).collect();
        all.sort_unstable();
        all
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
        let expiry = leader_now.map(|now| now + seconds(ttl));
        self.leases.insert(id, Lease { ttl, keys: BTreeSet::new(), expiry, revoking: None });
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

    /// A keepalive on the leader: the lease lives its full TTL from now. None: unknown, or
    /// expired (its revoke is on its way).
    pub fn renew(&mut self, id: i64, now: Instant) -> Option<i64> {
        let l = self.leases.get_mut(&id)?;
        if l.revoking.is_some() || l.expiry.is_some_and(|e| e <= now) {
            return None;
        }
        l.expiry = Some(now + seconds(l.ttl));
        crate::metrics::handles().leases_renewed.increment(1);
        Some(l.ttl)
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
        for l in self.leases.values_mut() {
            l.expiry = Some(now + extend + seconds(l.ttl));
            l.revoking = None;
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
        let mut l = Lessor::new(2, Duration::from_secs(7));
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
        let mut l = Lessor::new(2, Duration::from_secs(7));
        let t0 = Instant::now();
        l.grant(5, 10, Some(t0)).unwrap();
        l.attach(5, b"b");
        l.attach(5, b"a");
        assert!(l.expired(t0 + Duration::from_secs(9), 10).is_empty());
        assert_eq!(l.renew(5, t0 + Duration::from_secs(9)), Some(10));
        assert_eq!(l.expired(t0 + Duration::from_secs(19), 10), [5]);
        assert!(l.expired(t0 + Duration::from_secs(20), 10).is_empty(), "retried only after the retry interval");
        assert_eq!(l.renew(5, t0 + Duration::from_secs(20)), None, "expired: its revoke is on its way");
        assert_eq!(l.expired(t0 + Duration::from_secs(26), 10), [5]);
        l.promote(t0, Duration::from_secs(1));
        assert_eq!(l.time_to_live(5, t0).unwrap().0, 11);
        assert_eq!(l.revoke(5), Ok(vec![b"a".to_vec(), b"b".to_vec()]));
        assert_eq!(l.revoke(5), Err(Error::LeaseNotFound));
    }
}

//! kube-apiserver's lease manager (etcd3/lease_manager.go) for objects written with a TTL (here:
//! Events, `--event-ttl` 1 h): it keeps one lease and reuses it for every write whose TTL it
//! still covers, granting a new one (TTL + the reuse window) once the last was granted more than
//! the reuse window ago (`--lease-reuse-duration-seconds`, default 60 s, at most 5 % of the TTL).
//! The grant happens on the write's path, under the manager's lock: concurrent writes wait for it.
//! No lease is ever kept alive or revoked: each expires, and the server deletes its events (a run
//! longer than the TTL sees those deletes on the events watch; `check.rs` accounts for them).
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ballast_bench::proto::etcdserverpb::lease_client::LeaseClient;
use ballast_bench::proto::etcdserverpb::LeaseGrantRequest;
use tonic::transport::Channel;

/// kube-apiserver's default `--event-ttl`.
pub const EVENT_TTL: i64 = 3600;

pub struct LeaseManager {
    reuse_secs: i64,
    /// The TTL the objects need (`--event-ttl`).
    ttl: i64,
    /// The lease in use and when it expires.
    prev: tokio::sync::Mutex<Option<(i64, Instant)>>,
    pub granted: AtomicU64,
}

impl LeaseManager {
    pub fn new(reuse_secs: i64, ttl: i64) -> LeaseManager {
        LeaseManager {
            reuse_secs,
            ttl,
            prev: tokio::sync::Mutex::new(None),
            granted: AtomicU64::new(0),
        }
    }

    /// The lease to attach to a write needing the manager's TTL (GetLease).
    pub async fn get(&self, lc: &mut LeaseClient<Channel>) -> Result<i64, String> {
        let (now, ttl) = (Instant::now(), self.ttl);
        let mut prev = self.prev.lock().await;
        let reuse = reuse_secs(self.reuse_secs, ttl);
        if let Some((id, expires)) = *prev {
            let valid = now + secs(ttl) < expires;
            let sufficient = now + secs(ttl + reuse) > expires;
            if valid && sufficient {
                return Ok(id);
            }
        }
        let ttl = ttl + reuse;
        let id = lc
            .lease_grant(LeaseGrantRequest { ttl, id: 0 })
            .await
            .map_err(|e| format!("LeaseGrant: {e}"))?
            .into_inner()
            .id;
        *prev = Some((id, now + secs(ttl)));
        self.granted.fetch_add(1, Ordering::Relaxed);
        Ok(id)
    }
}

/// The reuse window the manager applies: the configured one, at most 5% of the TTL.
pub fn reuse_secs(configured: i64, ttl: i64) -> i64 {
    configured.min((0.05 * ttl as f64) as i64)
}

fn secs(s: i64) -> Duration {
    Duration::from_secs(s.max(0) as u64)
}

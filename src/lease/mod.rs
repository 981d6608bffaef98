//! etcd's leases: the lessor (`lessor.rs`, raft-applied state kept by the applier on shard 0,
//! with the leader's expiry clocks) and lease ids.

pub mod lessor;

use std::sync::atomic::{AtomicU64, Ordering};

/// etcd's MaxLeaseTTL (seconds).
pub const MAX_LEASE_TTL_SECONDS: i64 = 9_000_000_000;
/// How often the leader looks for expired leases (etcd: 500 ms) and how many it revokes per look
/// (etcd: half its 1000/s revoke rate).
pub const EXPIRY_CHECK_INTERVAL: std::time::Duration = std::time::Duration::from_millis(500);
pub const MAX_REVOKES_PER_CHECK: usize = 500;
/// etcd's lease checkpoint interval (no flag in 3.5) and checkpoints per raft entry.
pub const LEASE_CHECKPOINT_INTERVAL: std::time::Duration = std::time::Duration::from_secs(300);
pub const MAX_CHECKPOINTS_PER_ENTRY: usize = 1000;

/// etcd's minimum lease TTL: ceil(3/2 election ticks x heartbeat), 2 s with the defaults.
pub fn min_ttl_seconds(heartbeat: std::time::Duration, election_ticks: u64) -> i64 {
    // In whole milliseconds, as etcd's Duration arithmetic: a float product can land just
    // above a whole second and round up one too many.
    let ms = heartbeat.as_millis() as u64 * ((3 * election_ticks) / 2);
    ms.div_ceil(1000) as i64
}

/// Server-chosen lease ids, laid out as etcd's: member id (low 16 bits) | milliseconds (40
/// bits) | counter (8 bits), top bit clear; unique and positive.
pub struct IdGenerator {
    prefix: u64,
    suffix: AtomicU64,
}

impl IdGenerator {
    pub fn new(member_id: u64) -> IdGenerator {
        let millis = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_millis() as u64;
        IdGenerator { prefix: (member_id & 0xffff) << 48, suffix: AtomicU64::new((millis & ((1 << 40) - 1)) << 8) }
    }

    pub fn next(&self) -> i64 {
        loop {
            let suffix = self.suffix.fetch_add(1, Ordering::Relaxed) + 1;
            let id = (self.prefix | (suffix & ((1 << 48) - 1))) & (i64::MAX as u64);
            if id != 0 {
                return id as i64;
            }
        }
    }
}

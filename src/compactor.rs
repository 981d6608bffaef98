//! Auto-compaction, as etcd's v3compactor (`--auto-compaction-mode`,
//! `--auto-compaction-retention`), proposing ordinary Compact requests through raft:
//!
//! * `periodic`: retention is a Go duration, or an integer number of hours; "0" disables.
//!   Every tenth of the period (at most 6 minutes) the current revision is sampled; once a
//!   period has passed since the last success, the revision sampled one period ago is
//!   compacted (after the first run, at most every hour).
//! * `revision`: retention is a revision count; every 5 minutes the store is compacted to
//!   `current - retention`.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::api::Ctx;
use crate::error::Error;
use crate::proto::ballastpb::internal_request::Request;
use crate::proto::etcdserverpb::CompactionRequest;

const HOUR: Duration = Duration::from_secs(3600);
/// etcd's revision compactor checks this often.
const REVISION_INTERVAL: Duration = Duration::from_secs(300);
const RETRY_DIVISOR: u32 = 10;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Policy {
    Off,
    Periodic(Duration),
    Revision(i64),
}

/// Parses the two flags; errors read like etcd's.
pub fn policy(mode: &str, retention: &str) -> Result<Policy, String> {
    match mode {
        "periodic" => {
            let period = match retention.parse::<u64>() {
                Ok(hours) => Duration::from_secs(hours * 3600),
                Err(_) => parse_go_duration(retention)?,
            };
            Ok(if period.is_zero() { Policy::Off } else { Policy::Periodic(period) })
        }
        "revision" => {
            let n: i64 = retention.parse().map_err(|_| format!("invalid auto-compaction-retention {retention:?}"))?;
            Ok(if n <= 0 { Policy::Off } else { Policy::Revision(n) })
        }
        other => Err(format!("unknown auto-compaction-mode {other:?}")),
    }
}

/// Go's time.ParseDuration for the forms retention uses ("1h30m", "90s", "1.5h", "500ms").
pub fn parse_go_duration(s: &str) -> Result<Duration, String> {
    let invalid = || format!("time: invalid duration {s:?}");
    let mut rest = s;
    let mut total = 0f64;
    if rest.is_empty() {
        return Err(invalid());
    }
    while !rest.is_empty() {
        let num_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let value: f64 = rest[..num_len].parse().map_err(|_| invalid())?;
        rest = &rest[num_len..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let seconds = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(invalid()),
        };
        total += value * seconds;
        rest = &rest[unit_len..];
    }
    Ok(Duration::from_secs_f64(total))
}

/// Runs the compactor on the current tokio runtime until the server stops.
pub fn spawn(policy: Policy, ctx: Arc<Ctx>) {
    match policy {
        Policy::Off => {}
        Policy::Periodic(period) => {
            tokio::spawn(periodic(period, ctx));
        }
        Policy::Revision(retention) => {
            tokio::spawn(revision(retention, ctx));
        }
    }
}

/// Proposes a compaction; an already-compacted revision counts as success (as etcd).
async fn compact(ctx: &Ctx, rev: i64) -> bool {
    let req = Request::Compaction(CompactionRequest { revision: rev, physical: false });
    match ctx.raft.propose(req).await {
        Ok(_) | Err(Error::Compacted) => {
            crate::log::info("completed auto compaction", &[("revision", rev.to_string())]);
            true
        }
        Err(e) => {
            crate::log::warn("failed auto compaction", &[("revision", rev.to_string()), ("error", e.to_string())]);
            false
        }
    }
}

async fn periodic(period: Duration, ctx: Arc<Ctx>) {
    let compact_interval = period.min(HOUR);
    let retry = compact_interval / RETRY_DIVISOR;
    let retentions = (period.as_secs_f64() / retry.as_secs_f64()) as usize + 1;
    let mut revs = VecDeque::with_capacity(retentions + 1);
    let mut last_success = Instant::now();
    let mut base_interval = period;
    loop {
        revs.push_back(ctx.status.applied_rev());
        if revs.len() > retentions {
            revs.pop_front(); // revs[0] is the revision one period ago
        }
        tokio::time::sleep(retry).await;
        if last_success.elapsed() < base_interval {
            continue;
        }
        base_interval = compact_interval;
        if compact(&ctx, revs[0]).await {
            last_success = Instant::now();
        }
    }
}

async fn revision(retention: i64, ctx: Arc<Ctx>) {
    let mut prev = 0;
    loop {
        tokio::time::sleep(REVISION_INTERVAL).await;
        let rev = ctx.status.applied_rev() - retention;
        if rev <= 0 || rev == prev {
            continue;
        }
        if compact(&ctx, rev).await {
            prev = rev;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_etcd_retention_forms() {
        assert_eq!(policy("periodic", "0"), Ok(Policy::Off));
        assert_eq!(policy("periodic", "2"), Ok(Policy::Periodic(Duration::from_secs(7200))));
        assert_eq!(policy("periodic", "1h30m"), Ok(Policy::Periodic(Duration::from_secs(5400))));
        assert_eq!(policy("periodic", "500ms"), Ok(Policy::Periodic(Duration::from_millis(500))));
        assert_eq!(policy("revision", "1000"), Ok(Policy::Revision(1000)));
        assert!(policy("periodic", "abc").is_err());
        assert!(policy("revision", "1h").is_err());
        assert!(policy("weekly", "1").is_err());
    }
}

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
use crate::config::duration;
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
            // etcd: an integer is a number of hours, anything else a Go duration.
            let period = match retention.parse::<u64>() {
                Ok(hours) => Duration::from_secs(
                    hours.checked_mul(3600).ok_or_else(|| format!("auto-compaction-retention {retention:?} hours is too long"))?,
                ),
                Err(_) => duration::parse(retention)?
                    .non_negative()
                    .ok_or_else(|| format!("negative auto-compaction-retention {retention:?}"))?,
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

    #[test]
    fn periodic_retention_is_hours_or_a_go_duration() {
        let periodic = |r: &str| policy("periodic", r);
        assert_eq!(periodic("1.5h"), Ok(Policy::Periodic(Duration::from_secs(5400))));
        assert_eq!(periodic("90s"), Ok(Policy::Periodic(Duration::from_secs(90))));
        assert_eq!(periodic("+1h"), Ok(Policy::Periodic(HOUR)));
        assert_eq!(periodic("2µs"), Ok(Policy::Periodic(Duration::from_micros(2))));
        for off in ["0", "-0", "0s", "0.0h"] {
            assert_eq!(periodic(off), Ok(Policy::Off), "{off}");
        }
        assert_eq!(periodic("abc"), Err("time: invalid duration \"abc\"".to_string()));
        assert_eq!(periodic("-5"), Err("time: missing unit in duration \"-5\"".to_string()));
        assert_eq!(periodic("1d"), Err("time: unknown unit \"d\" in duration \"1d\"".to_string()));
        assert_eq!(periodic("-1h"), Err("negative auto-compaction-retention \"-1h\"".to_string()));
    }
}

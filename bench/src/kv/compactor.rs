//! The background compactor of the sustained mode, as kube-apiserver's: every interval it reads
//! the current revision and compacts (physical=false, i.e. the answer does not wait for the
//! backend's deletes) at the revision it read one interval earlier, so the history of the last
//! one to two intervals stays readable. kube-apiserver's interval is 5 min
//! (`--etcd-compaction-interval`); the harness uses `--compact-secs` (default 60 s) so that each
//! 60 s window sees a compaction.
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ballast_bench::proto::etcdserverpb::kv_client::KvClient;
use ballast_bench::proto::etcdserverpb::{CompactionRequest, RangeRequest};
use tonic::transport::Channel;

use crate::secure::{with_token, Link, Token};

/// One compaction the compactor asked for.
#[derive(Clone)]
pub struct Compaction {
    pub at: Instant,
    pub rev: i64,
    /// The Compact call's latency.
    pub took: Duration,
    pub error: Option<String>,
}

type Log = Arc<Mutex<Vec<Compaction>>>;

/// A running compactor (a task on the caller's runtime); stopped when dropped.
pub struct Compactor {
    log: Log,
    task: tokio::task::JoinHandle<()>,
}

impl Compactor {
    /// Starts compacting the server `link` leads to every `every` (the first compaction after
    /// two intervals, at the revision seen after the first).
    pub fn start(link: Link, every: Duration) -> Compactor {
        let log = Log::default();
        let task = tokio::spawn(run(link, every, log.clone()));
        Compactor { log, task }
    }

    /// The compactions asked for between `from` and `to`.
    pub fn between(&self, from: Instant, to: Instant) -> Vec<Compaction> {
        let log = self.log.lock().expect("compactor log");
        log.iter()
            .filter(|c| c.at >= from && c.at <= to)
            .cloned()
            .collect()
    }
}

impl Drop for Compactor {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The store's current revision (from a linearizable Range's header).
async fn current_revision(
    kv: &mut KvClient<Channel>,
    token: &Option<Token>,
) -> Result<i64, String> {
    let req = RangeRequest {
        key: b"bench/compactor".to_vec(),
        ..Default::default()
    };
    let r = kv
        .range(with_token(req, token))
        .await
        .map_err(|e| e.to_string())?;
    Ok(r.into_inner().header.map_or(0, |h| h.revision))
}

/// Compacts at `rev`, timed.
async fn compact(kv: &mut KvClient<Channel>, token: &Option<Token>, rev: i64) -> Compaction {
    let at = Instant::now();
    let req = CompactionRequest {
        revision: rev,
        physical: false,
    };
    let error = kv
        .compact(with_token(req, token))
        .await
        .err()
        .map(|e| e.to_string());
    Compaction {
        at,
        rev,
        took: at.elapsed(),
        error,
    }
}

async fn run(link: Link, every: Duration, log: Log) {
    let (mut kv, token) = match link.open().await {
        Ok((ch, token)) => (KvClient::new(ch), token),
        Err(e) => {
            let (at, took) = (Instant::now(), Duration::ZERO);
            let error = Some(format!("compactor: {e}"));
            let c = Compaction {
                at,
                rev: 0,
                took,
                error,
            };
            return log.lock().expect("compactor log").push(c);
        }
    };
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (mut seen, mut compacted) = (None, 0);
    loop {
        tick.tick().await;
        let now = current_revision(&mut kv, &token).await.ok();
        if let Some(rev) = seen.filter(|&r| r > compacted) {
            let c = compact(&mut kv, &token, rev).await;
            if c.error.is_none() {
                compacted = rev;
            }
            log.lock().expect("compactor log").push(c);
        }
        seen = now;
    }
}

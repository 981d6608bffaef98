//! watch-idle: server memory per idle watcher and per stream, from RSS deltas. The streams open
//! with one watcher each (RSS before → after = the cost of a stream, its share of the
//! connections and one watcher); then every stream adds the rest of its watchers (after → full =
//! the cost of the added watchers). One put at the end checks that every watcher is live.
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ballast_bench::procstat::rss_mib;
use ballast_bench::proto::etcdserverpb::kv_client::KvClient;
use ballast_bench::proto::etcdserverpb::PutRequest;

use super::clients::{connect, wait_created, Layout, Watchers};
use super::shared::{key, Shared, PREFIX};
use super::{WatchOpts, WATCH_CONNS, WATCH_STREAMS};

/// Pause before each RSS reading, so the server has finished the creations' work.
const SETTLE: Duration = Duration::from_secs(1);

pub struct IdleRes {
    pub watchers: usize,
    pub streams: usize,
    pub conns: usize,
    pub rss_before: f64,
    /// After the streams opened, one watcher each.
    pub rss_streams: f64,
    pub rss_full: f64,
    /// Time to create the watchers added after the first per stream.
    pub create_secs: f64,
    /// Events the final put delivered (should be `watchers`).
    pub delivered: u64,
}

impl IdleRes {
    pub fn kib_per_stream(&self) -> f64 {
        (self.rss_streams - self.rss_before) * 1024.0 / self.streams as f64
    }

    pub fn kib_per_watcher(&self) -> f64 {
        let added = self.watchers.saturating_sub(self.streams).max(1);
        (self.rss_full - self.rss_streams) * 1024.0 / added as f64
    }
}

fn rss(pid: i32) -> Result<f64, String> {
    rss_mib(pid).ok_or_else(|| "cannot read the server's VmRSS".to_string())
}

pub async fn run(o: &WatchOpts, url: &str, pid: i32) -> Result<IdleRes, String> {
    let shared = Arc::new(Shared::new(&[1]));
    let layout = Layout {
        conns: WATCH_CONNS,
        streams: WATCH_STREAMS,
        per_stream: 1,
    };
    let per_stream = o.idle_watchers.div_ceil(WATCH_STREAMS).max(1);
    let watchers = per_stream * WATCH_STREAMS;
    tokio::time::sleep(SETTLE).await;
    let rss_before = rss(pid)?;
    let w = Watchers::start(url, PREFIX, layout, shared.clone()).await?;
    let res = measure(o, url, pid, &shared, &w, per_stream).await;
    w.stop();
    let (rss_streams, rss_full, create_secs) = res?;
    let delivered = shared.delivered[0].load(Ordering::Relaxed);
    Ok(IdleRes {
        watchers,
        streams: WATCH_STREAMS,
        conns: WATCH_CONNS,
        rss_before,
        rss_streams,
        rss_full,
        create_secs,
        delivered,
    })
}

async fn measure(
    o: &WatchOpts,
    url: &str,
    pid: i32,
    shared: &Arc<Shared>,
    w: &Watchers,
    per_stream: usize,
) -> Result<(f64, f64, f64), String> {
    let streams = WATCH_STREAMS as u64;
    wait_created(shared, streams, o.max_secs).await?;
    tokio::time::sleep(SETTLE).await;
    let rss_streams = rss(pid)?;
    let t0 = Instant::now();
    w.create_more(per_stream - 1).await?;
    wait_created(shared, streams * per_stream as u64, o.max_secs).await?;
    let create_secs = t0.elapsed().as_secs_f64();
    tokio::time::sleep(SETTLE).await;
    let rss_full = rss(pid)?;
    // Liveness: one put, every watcher must see it.
    let mut kv = KvClient::new(connect(url).await?);
    shared.mark_sent(0);
    kv.put(PutRequest {
        key: key(0),
        value: b"x".to_vec(),
        ..Default::default()
    })
    .await
    .map_err(|e| format!("put: {e}"))?;
    let want = streams * per_stream as u64;
    let until = Instant::now() + Duration::from_secs(10);
    while shared.delivered[0].load(Ordering::Relaxed) < want && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok((rss_streams, rss_full, create_secs))
}

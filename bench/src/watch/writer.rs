//! The open-loop writer: puts keys under the watched prefix at a fixed rate, whatever the
//! server's answers take (a put is sent when it is due, not when the previous one returned), and
//! stamps each put's send time for the watchers.
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ballast_bench::proto::etcdserverpb::kv_client::KvClient;
use ballast_bench::proto::etcdserverpb::PutRequest;

use super::clients::connect;
use super::shared::{key, Shared};

/// Connections the writer spreads its puts over.
const WRITER_CONNS: usize = 2;
const VALUE_LEN: usize = 256;

/// The outcome of one step's writes.
pub struct Wrote {
    pub acked: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    /// First put sent, ns since `Shared::base`.
    pub start_ns: u64,
    /// Largest delay of a put behind its schedule (the writer's own lag).
    pub max_lag_ms: f64,
}

#[derive(Default)]
struct Tally {
    acked: AtomicU64,
    errors: AtomicU64,
    first_error: std::sync::Mutex<Option<String>>,
}

/// Writes `n` puts of step `step` (from its first index) at `rate` per second on a thread and runtime of its own; waits up
/// to `ack_secs` after the last send for the answers.
pub fn write_step(
    url: &str,
    shared: Arc<Shared>,
    step: usize,
    n: u64,
    rate: f64,
    ack_secs: f64,
) -> Result<Wrote, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("writer runtime: {e}"))?;
    rt.block_on(async move {
        let mut chans = Vec::new();
        for _ in 0..WRITER_CONNS {
            chans.push(connect(url).await?);
        }
        let value: Arc<Vec<u8>> = Arc::new((0..VALUE_LEN).map(|i| b'a' + (i % 26) as u8).collect());
        let first = shared.bounds[step];
        let tally = Arc::new(Tally::default());
        let start_ns = shared.now_ns();
        let t0 = Instant::now();
        let mut sent = 0u64;
        let mut max_lag = 0f64;
        while sent < n {
            let elapsed = t0.elapsed().as_secs_f64();
            let due = ((elapsed * rate) as u64 + 1).min(n);
            if due > sent {
                max_lag = max_lag.max(elapsed - sent as f64 / rate);
            }
            while sent < due {
                let i = first + sent;
                let mut kv = KvClient::new(chans[i as usize % WRITER_CONNS].clone());
                let (shared, tally, value) = (shared.clone(), tally.clone(), value.clone());
                tokio::spawn(async move {
                    let req = PutRequest {
                        key: key(i),
                        value: value.to_vec(),
                        ..Default::default()
                    };
                    shared.mark_sent(i);
                    match kv.put(req).await {
                        Ok(_) => tally.acked.fetch_add(1, Ordering::Relaxed),
                        Err(e) => {
                            tally
                                .first_error
                                .lock()
                                .expect("tally")
                                .get_or_insert(e.to_string());
                            tally.errors.fetch_add(1, Ordering::Relaxed)
                        }
                    };
                });
                sent += 1;
            }
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        let until = Instant::now() + Duration::from_secs_f64(ack_secs);
        let done = |t: &Tally| t.acked.load(Ordering::Relaxed) + t.errors.load(Ordering::Relaxed);
        while done(&tally) < n && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let acked = tally.acked.load(Ordering::Relaxed);
        let errors = n - acked;
        let first_error = tally
            .first_error
            .lock()
            .expect("tally")
            .clone()
            .or_else(|| {
                (errors > 0).then(|| format!("{errors} puts unanswered after {ack_secs:.0} s"))
            });
        Ok(Wrote {
            acked,
            errors,
            first_error,
            start_ns,
            max_lag_ms: max_lag * 1e3,
        })
    })
}

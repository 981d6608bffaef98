//! A fixed-rate writer (lease-expiry, pauses): puts new keys under a prefix of its own at a fixed
//! rate, open loop (a put is sent when it is due, whatever the answers take), on a thread
//! and current-thread runtime of its own so the harness's polling does not delay it. Every
//! answered put is kept as (send time, latency), so the caller can cut the expiry window out
//! after the fact.
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ballast_bench::hist::Hist;
use ballast_bench::proto::etcdserverpb::kv_client::KvClient;
use ballast_bench::proto::etcdserverpb::PutRequest;
use tokio::sync::oneshot;

use crate::watch::connect;

/// Connections the writer spreads its puts over.
const WRITER_CONNS: usize = 2;
const VALUE_LEN: usize = 256;
/// How long a stopped writer waits for the answers of its puts in flight.
const ACK_SECS: u64 = 10;

/// One answered put: sent at `sent_ns` (since the writer's `base`), answered `lat_us` later.
#[derive(Clone, Copy)]
pub struct Sample {
    pub sent_ns: u64,
    pub lat_us: u64,
}

/// What the writer did.
pub struct Wrote {
    pub sent: u64,
    pub samples: Vec<Sample>,
    pub errors: u64,
    pub first_error: Option<String>,
    /// Largest delay of a put behind its schedule (the writer's own lag).
    pub max_lag_ms: f64,
}

#[derive(Default)]
struct Tally {
    samples: Vec<Sample>,
    errors: u64,
    first_error: Option<String>,
}

/// A running writer; `finish` stops it.
pub struct Writer {
    stop: Arc<AtomicBool>,
    handle: oneshot::Receiver<Result<Wrote, String>>,
}

impl Writer {
    /// Starts putting keys `prefix` + put index (zero-padded) at `rate` per second against
    /// `url`; send times count from `base`.
    pub fn start(url: &str, prefix: &'static str, base: Instant, rate: f64) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let (url, flag) = (url.to_string(), stop.clone());
        let handle = own_thread("bench-writer", move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| format!("writer runtime: {e}"))?;
            rt.block_on(write(&url, prefix, base, rate, &flag))
        });
        Writer { stop, handle }
    }

    /// Stops sending, waits up to `ACK_SECS` for the answers of the puts in flight (the rest
    /// count as errors) and returns what the writer did.
    pub async fn finish(self) -> Result<Wrote, String> {
        self.stop.store(true, Ordering::Relaxed);
        let mut w = self
            .handle
            .await
            .map_err(|_| "the writer's thread did not start or ended without an answer")??;
        let done = w.samples.len() as u64 + w.errors;
        if done < w.sent {
            let late = w.sent - done;
            w.errors += late;
            w.first_error.get_or_insert(format!(
                "{late} puts unanswered {ACK_SECS} s after the writer stopped"
            ));
        }
        Ok(w)
    }
}

/// Runs `work` on a new thread named `name` (as `ps -L`, `perf sched` and /proc show it, so a
/// trace tells the harness's threads from the server's); its result comes on the receiver, which
/// yields an error if the thread could not start or panicked. Not tokio's blocking pool: a
/// thread there is reused afterwards, with whatever priority or CPUs `work` gave it.
pub fn own_thread<T: Send + 'static>(
    name: &str,
    work: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> oneshot::Receiver<Result<T, String>> {
    let (tx, rx) = oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let _ = tx.send(work());
        });
    drop(spawned); // detached; a failed spawn drops `tx`, which the receiver reports
    rx
}

async fn write(
    url: &str,
    prefix: &'static str,
    base: Instant,
    rate: f64,
    stop: &AtomicBool,
) -> Result<Wrote, String> {
    let mut chans = Vec::new();
    for _ in 0..WRITER_CONNS {
        chans.push(connect(url).await?);
    }
    let value: Arc<Vec<u8>> = Arc::new((0..VALUE_LEN).map(|i| b'a' + (i % 26) as u8).collect());
    let tally = Arc::new(Mutex::new(Tally::default()));
    let t0 = Instant::now();
    let (mut sent, mut max_lag) = (0u64, 0f64);
    while !stop.load(Ordering::Relaxed) {
        let elapsed = t0.elapsed().as_secs_f64();
        let due = (elapsed * rate) as u64 + 1;
        if due > sent {
            max_lag = max_lag.max(elapsed - sent as f64 / rate);
        }
        for i in sent..due {
            let mut kv = KvClient::new(chans[i as usize % WRITER_CONNS].clone());
            let (tally, value) = (tally.clone(), value.clone());
            tokio::spawn(async move {
                let req = PutRequest {
                    key: format!("{prefix}{i:012}").into_bytes(),
                    value: value.to_vec(),
                    ..Default::default()
                };
                let at = Instant::now();
                let r = kv.put(req).await;
                let lat_us = at.elapsed().as_micros() as u64;
                let mut t = tally.lock().expect("tally");
                match r {
                    Ok(_) => t.samples.push(Sample {
                        sent_ns: at.duration_since(base).as_nanos() as u64,
                        lat_us,
                    }),
                    Err(e) => {
                        t.errors += 1;
                        t.first_error.get_or_insert(e.to_string());
                    }
                }
            });
        }
        sent = sent.max(due);
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    // The answers of the puts in flight (bounded; `finish` counts the rest as errors).
    let until = Instant::now() + Duration::from_secs(ACK_SECS);
    let answered = |t: &Tally| t.samples.len() as u64 + t.errors;
    while answered(&tally.lock().expect("tally")) < sent && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let t = std::mem::take(&mut *tally.lock().expect("tally"));
    Ok(Wrote {
        sent,
        samples: t.samples,
        errors: t.errors,
        first_error: t.first_error,
        max_lag_ms: max_lag * 1e3,
    })
}

/// Put latency quantiles of a set of writer samples.
pub struct Lat {
    pub puts: u64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
}

impl Lat {
    pub fn of<'a>(samples: impl Iterator<Item = &'a Sample>) -> Lat {
        let mut h = Hist::default();
        samples.for_each(|s| h.record(s.lat_us));
        Lat {
            puts: h.len(),
            p50_us: h.quantile(0.50),
            p99_us: h.quantile(0.99),
            p999_us: h.quantile(0.999),
        }
    }
}

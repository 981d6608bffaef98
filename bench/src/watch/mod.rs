//! Watch workloads (see bench/README.md, "Watch"):
//!
//! * `watch-1000`: `--watchers` watchers on one prefix over `WATCH_STREAMS` streams /
//!   `WATCH_CONNS` connections, and an open-loop writer putting keys under it at `--watch-rate`;
//!   every event must arrive; latency = put sent → event received.
//! * `watch-max`: the same watchers, the write rate doubling step by step until the event latency
//!   p99 passes 1 s or events go missing, then two bisection steps; the passing step with the most
//!   delivered events/s counts.
//! * `watch-idle`: `--idle-watchers` watchers nobody writes to; server memory per watcher and per
//!   stream from RSS deltas.
pub(crate) mod clients;
mod idle;
mod shared;
mod table;
mod writer;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ballast_bench::procstat::{cpu_ticks, cpu_us_per, rss_mib};

pub use clients::connect;
use clients::{wait_created, Layout, Watchers};
pub use idle::IdleRes;
pub use shared::prefix_end;
use shared::{Shared, PREFIX};
pub use table::{notes, tables, WatchRow, LEGEND};

pub const IDS: [&str; 3] = ["watch-1000", "watch-max", "watch-idle"];
/// Streams and connections the flowing watchers (watch-1000, watch-max) and the idle ones use.
pub const WATCH_STREAMS: usize = 100;
pub const WATCH_CONNS: usize = 10;
/// watch-max: a step passes while its event latency p99 stays at or below this and none is missing.
const MAX_P99_US: u64 = 1_000_000;
/// watch-max: doubling steps at most (rates start·2^k), and `--watch-rate` ÷ the first rate.
const MAX_STEPS: usize = 12;
pub const MAX_START_DIV: f64 = 4.0;
/// How long after a step's last put answer its events may still arrive before they count missing.
const DRAIN_SECS: f64 = 5.0;
/// After the last step: extra wait for late events before the rest counts as lost.
const LATE_SECS: f64 = 10.0;

pub struct WatchOpts {
    pub watchers: usize,
    pub idle_watchers: usize,
    /// Puts per second of watch-1000.
    pub rate: f64,
    /// Puts of watch-1000; watch-max steps last half as long as watch-1000 each.
    pub puts: u64,
    pub max_secs: f64,
}

/// One write rate held for one step.
#[derive(Clone)]
pub struct StepRes {
    pub rate: f64,
    pub puts_acked: u64,
    pub put_errors: u64,
    pub expected: u64,
    pub delivered: u64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    /// Delivered events ÷ (last event's arrival − first put sent).
    pub events_per_sec: f64,
    pub server_cpu_us: Option<f64>,
    pub client_cpu_us: Option<f64>,
    pub rss_mib: Option<f64>,
    pub disorder: u64,
    pub writer_lag_ms: f64,
    pub first_error: Option<String>,
}

impl StepRes {
    pub fn missing(&self) -> u64 {
        self.expected.saturating_sub(self.delivered)
    }

    fn passes(&self) -> bool {
        self.missing() == 0 && self.put_errors == 0 && self.p99_us <= MAX_P99_US
    }
}

pub struct FlowRes {
    pub watchers: usize,
    pub steps: Vec<StepRes>,
    /// The step the row reports: the only one (watch-1000) or, of watch-max's passing steps, the
    /// one with the most delivered events/s.
    pub shown: Option<usize>,
    /// Events still missing `LATE_SECS` after the last step (lost, not late).
    pub lost: u64,
    pub stream_errors: u64,
    pub first_error: Option<String>,
}

pub enum WatchRes {
    Flow(FlowRes),
    Idle(IdleRes),
}

pub async fn run(id: &str, o: &WatchOpts, url: &str, pid: i32) -> Result<WatchRes, String> {
    let secs = o.puts as f64 / o.rate;
    match id {
        "watch-1000" => {
            let plan = Plan {
                rates: vec![o.rate],
                secs,
                search: false,
            };
            flow(o, url, pid, &plan).await.map(WatchRes::Flow)
        }
        "watch-max" => {
            let start = (o.rate / MAX_START_DIV).max(1.0);
            let plan = Plan {
                rates: (0..MAX_STEPS).map(|k| start * f64::from(1 << k)).collect(),
                secs: secs / 2.0,
                search: true,
            };
            flow(o, url, pid, &plan).await.map(WatchRes::Flow)
        }
        "watch-idle" => idle::run(o, url, pid).await.map(WatchRes::Idle),
        _ => Err(format!("unknown watch workload {id}")),
    }
}

/// The write rates of a flowing workload, each held `secs`: the listed ones in order; with
/// `search`, until the first failing one, then `REFINE` bisection steps between the fastest
/// passing rate and the slowest failing one.
struct Plan {
    rates: Vec<f64>,
    secs: f64,
    search: bool,
}

/// watch-max: bisection steps after the doubling failed (resolution: a quarter of the last
/// doubling).
const REFINE: usize = 2;

impl Plan {
    fn puts(&self, rate: f64) -> u64 {
        ((rate * self.secs).round() as u64).max(1)
    }

    /// Puts each step may write at most (the index space `Shared` preallocates).
    fn slots(&self) -> Vec<u64> {
        let mut v: Vec<u64> = self.rates.iter().map(|r| self.puts(*r)).collect();
        let largest = v.iter().copied().max().unwrap_or(1);
        if self.search {
            v.extend([largest; REFINE]);
        }
        v
    }

    /// The rate of the next step after `ran`, if any.
    fn next(&self, ran: &[StepRes]) -> Option<f64> {
        let first_fail = ran.iter().position(|s| !s.passes()).filter(|_| self.search);
        let Some(f) = first_fail else {
            return self.rates.get(ran.len()).copied();
        };
        if ran.len() - (f + 1) >= REFINE {
            return None;
        }
        let hi = ran
            .iter()
            .filter(|s| !s.passes())
            .map(|s| s.rate)
            .fold(f64::MAX, f64::min);
        let lo = ran
            .iter()
            .filter(|s| s.passes() && s.rate < hi)
            .map(|s| s.rate)
            .fold(None, |m: Option<f64>, r| Some(m.map_or(r, |m| m.max(r))))?;
        Some((lo + hi) / 2.0)
    }
}

/// Watchers up, then one step per rate of `plan`, each drained before the next.
async fn flow(o: &WatchOpts, url: &str, pid: i32, plan: &Plan) -> Result<FlowRes, String> {
    let shared = Arc::new(Shared::new(&plan.slots()));
    let layout = Layout {
        conns: WATCH_CONNS,
        streams: WATCH_STREAMS,
        per_stream: o.watchers.div_ceil(WATCH_STREAMS),
    };
    let watchers = layout.per_stream * layout.streams;
    let w = Watchers::start(url, PREFIX, layout, shared.clone()).await?;
    let created = wait_created(&shared, watchers as u64, o.max_secs).await;
    if let Err(e) = created {
        w.stop();
        return Err(e);
    }
    let cx = StepCtx {
        o,
        url,
        pid,
        shared: &shared,
        w: &w,
        watchers: watchers as u64,
    };
    let mut steps: Vec<StepRes> = Vec::new();
    while let Some(rate) = plan.next(&steps) {
        let s = steps.len();
        let n = plan.puts(rate).min(shared.bounds[s + 1] - shared.bounds[s]);
        let r = match step(&cx, s, n, rate).await {
            Ok(r) => r,
            Err(e) => {
                w.stop();
                return Err(e);
            }
        };
        eprintln!(
            "bench:   {} watchers, {:.0} puts/s: {}/{} events, {:.0} events/s, p99 {:.1} ms, server cpu {} µs/event",
            watchers,
            rate,
            r.delivered,
            r.expected,
            r.events_per_sec,
            r.p99_us as f64 / 1e3,
            r.server_cpu_us.map_or("—".into(), |c| format!("{c:.2}"))
        );
        steps.push(r);
    }
    let expected: u64 = steps.iter().map(|s| s.expected).sum();
    let delivered = |sh: &Shared| -> u64 {
        (0..steps.len())
            .map(|s| sh.delivered[s].load(Ordering::Relaxed))
            .sum()
    };
    let until = Instant::now() + Duration::from_secs_f64(LATE_SECS);
    while delivered(&shared) < expected && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let lost = expected.saturating_sub(delivered(&shared));
    w.stop();
    let shown = if plan.search {
        (0..steps.len())
            .filter(|i| steps[*i].passes())
            .max_by(|a, b| {
                steps[*a]
                    .events_per_sec
                    .total_cmp(&steps[*b].events_per_sec)
            })
    } else {
        Some(0)
    };
    Ok(FlowRes {
        watchers,
        steps,
        shown,
        lost,
        stream_errors: shared.errors.load(Ordering::Relaxed),
        first_error: shared.first_error(),
    })
}

/// What every step of a flowing workload shares.
struct StepCtx<'a> {
    o: &'a WatchOpts,
    url: &'a str,
    pid: i32,
    shared: &'a Arc<Shared>,
    w: &'a Watchers,
    watchers: u64,
}

/// One step: write `n` puts at `rate`, wait for their events (`DRAIN_SECS` after the last
/// answer), read.
async fn step(cx: &StepCtx<'_>, s: usize, n: u64, rate: f64) -> Result<StepRes, String> {
    let StepCtx {
        o,
        url,
        pid,
        shared,
        w,
        watchers,
    } = *cx;
    let me = std::process::id() as i32;
    let (cpu0, me0) = (cpu_ticks(pid), cpu_ticks(me));
    let wrote = {
        let (url, shared, ack) = (url.to_string(), shared.clone(), o.max_secs);
        tokio::task::spawn_blocking(move || writer::write_step(&url, shared, s, n, rate, ack))
            .await
            .map_err(|e| format!("writer: {e}"))??
    };
    let expected = wrote.acked * watchers;
    let until = Instant::now() + Duration::from_secs_f64(DRAIN_SECS);
    while shared.delivered[s].load(Ordering::Relaxed) < expected && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (cpu1, me1) = (cpu_ticks(pid), cpu_ticks(me));
    let delivered = shared.delivered[s].load(Ordering::Relaxed);
    let seen = w.seen(s);
    let span = seen.last_ns.saturating_sub(wrote.start_ns) as f64 / 1e9;
    Ok(StepRes {
        rate,
        puts_acked: wrote.acked,
        put_errors: wrote.errors,
        expected,
        delivered,
        p50_us: seen.lat.quantile(0.50),
        p99_us: seen.lat.quantile(0.99),
        p999_us: seen.lat.quantile(0.999),
        events_per_sec: if span > 0.0 {
            delivered as f64 / span
        } else {
            0.0
        },
        server_cpu_us: cpu_us_per(cpu0, cpu1, delivered),
        client_cpu_us: cpu_us_per(me0, me1, delivered),
        rss_mib: rss_mib(pid),
        disorder: seen.disorder,
        writer_lag_ms: wrote.max_lag_ms,
        first_error: wrote.first_error,
    })
}

//! The load generator: a workload's clients on `LOADGEN_THREADS` current-thread runtimes, and the
//! run of one workload against a server (its result: throughput, latency, server CPU and RSS).
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Barrier, OnceLock};
use std::time::{Duration, Instant};

use ballast_bench::procstat::{cpu_ticks, cpu_us_per, rss_mib};
use ballast_bench::LOADGEN_THREADS;

use super::client::{client_loop, ClientOut};
use super::workload::Workload;
use crate::server::{connect, Server};

#[derive(Default, Clone)]
pub struct Res {
    pub ops: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub secs: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub cpu_us_per_op: Option<f64>,
    pub rss_mib: Option<f64>,
    pub note: String,
}

impl Res {
    pub fn ops_per_sec(&self) -> f64 {
        if self.secs > 0.0 {
            self.ops as f64 / self.secs
        } else {
            0.0
        }
    }
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[idx] as f64
}

/// What the load generator threads share: the op counter, the barrier they meet at once
/// connected, and the start instant the driver sets after it.
#[derive(Clone)]
struct Shared {
    next: Arc<AtomicU64>,
    connected: Arc<Barrier>,
    start: Arc<OnceLock<Instant>>,
    value: Arc<Vec<u8>>,
}

/// Load generator thread `t` of `threads`: connects its connections (j ≡ t mod threads), waits
/// for the start, runs its clients (c with c mod conns ≡ t mod threads) to their end.
async fn loadgen_thread(
    t: usize,
    threads: usize,
    w: Workload,
    url: String,
    sh: Shared,
) -> Result<Vec<ClientOut>, String> {
    let mut chans = Vec::new();
    let mut failed = None;
    for j in (t..w.conns).step_by(threads) {
        match connect(&url).await {
            Ok(ch) => chans.push((j, ch)),
            Err(e) => failed = Some(e),
        }
    }
    sh.connected.wait();
    if let Some(e) = failed {
        return Err(e);
    }
    let t0 = *sh.start.wait();
    let deadline = t0 + Duration::from_secs_f64(w.max_secs);
    let tasks: Vec<_> = (0..w.clients)
        .filter(|c| (c % w.conns) % threads == t)
        .map(|c| {
            let ch = chans[(c % w.conns) / threads].1.clone();
            debug_assert_eq!(chans[(c % w.conns) / threads].0, c % w.conns);
            let f = client_loop(
                w.clone(),
                ch,
                c,
                sh.next.clone(),
                deadline,
                sh.value.clone(),
            );
            tokio::spawn(f)
        })
        .collect();
    let mut outs = Vec::with_capacity(tasks.len());
    for task in tasks {
        outs.push(task.await.map_err(|e| format!("client task: {e}"))?);
    }
    Ok(outs)
}

/// Runs a workload's clients on `LOADGEN_THREADS` threads, each with its own current-thread tokio
/// runtime that owns its share of the connections and of the clients (client c uses connection
/// c % conns, and connection j lives on thread j % LOADGEN_THREADS).
///
/// Why not one multi-thread runtime: with 1000 clients its per-worker run queues overflow into the
/// global queue, which a worker visits only every few dozen polls, so some clients wait far longer
/// than others. That put a 100+ ms p99 on the storage-free server itself, i.e. the load generator
/// measured its own scheduling. A current-thread runtime runs its ready tasks in FIFO order.
///
/// Returns the start instant and server CPU ticks, taken once every thread has connected.
fn drive_clients(
    w: &Workload,
    url: &str,
    pid: i32,
    value: Arc<Vec<u8>>,
) -> Result<(Instant, Option<u64>, Vec<ClientOut>), String> {
    let threads = LOADGEN_THREADS.min(w.conns).max(1);
    let sh = Shared {
        next: Arc::new(AtomicU64::new(0)),
        connected: Arc::new(Barrier::new(threads + 1)),
        start: Arc::new(OnceLock::new()),
        value,
    };
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (w, url, sh) = (w.clone(), url.to_string(), sh.clone());
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| format!("load generator runtime: {e}"))?;
                rt.block_on(loadgen_thread(t, threads, w, url, sh))
            })
        })
        .collect();
    sh.connected.wait();
    let cpu0 = cpu_ticks(pid);
    let t0 = Instant::now();
    sh.start.set(t0).expect("start is set once");
    let mut outs = Vec::with_capacity(w.clients);
    let mut first_err = None;
    for h in handles {
        match h.join() {
            Ok(Ok(o)) => outs.extend(o),
            Ok(Err(e)) => first_err = first_err.or(Some(e)),
            Err(_) => first_err = first_err.or(Some("load generator thread panicked".into())),
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok((t0, cpu0, outs)),
    }
}

/// Runs `w`'s unmeasured setup, if any; its errors fail `w`.
async fn run_setup(w: &Workload, s: &mut Server) -> Result<(), String> {
    let Some(setup) = &w.setup else {
        return Ok(());
    };
    let r = Box::pin(run_workload(setup, s)).await?;
    if r.errors > 0 {
        return Err(format!(
            "setup {}: {} errors, first: {}",
            setup.name,
            r.errors,
            r.first_error.unwrap_or_default()
        ));
    }
    Ok(())
}

pub async fn run_workload(w: &Workload, s: &mut Server) -> Result<Res, String> {
    run_setup(w, s).await?;
    let value = Arc::new(
        (0..w.value_len)
            .map(|i| b'a' + (i % 26) as u8)
            .collect::<Vec<u8>>(),
    );
    let (t0, cpu0, outs) = {
        let (w, url, pid) = (w.clone(), s.url.clone(), s.pid);
        tokio::task::spawn_blocking(move || drive_clients(&w, &url, pid, value))
            .await
            .map_err(|e| format!("load generator: {e}"))??
    };
    let mut lat: Vec<u32> = Vec::with_capacity(w.ops as usize);
    let (mut errors, mut first_error) = (0, None);
    for o in outs {
        lat.extend(o.lat_us);
        errors += o.errors;
        if first_error.is_none() {
            first_error = o.first_error;
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    let cpu1 = cpu_ticks(s.pid);
    lat.sort_unstable();
    let ops = lat.len() as u64;
    let cpu_us_per_op = cpu_us_per(cpu0, cpu1, ops);
    let mut note = String::new();
    if ops + errors < w.ops {
        note = format!(
            "time bound {:.0} s hit after {} of {} ops",
            w.max_secs,
            ops + errors,
            w.ops
        );
    }
    if let Some(e) = s.exited() {
        return Err(e);
    }
    Ok(Res {
        ops,
        errors,
        first_error,
        secs,
        p50_us: percentile(&lat, 0.50),
        p99_us: percentile(&lat, 0.99),
        cpu_us_per_op,
        rss_mib: rss_mib(s.pid),
        note,
    })
}

//! The load generator: a workload's clients on `LOADGEN_THREADS` current-thread runtimes, and the
//! run of one workload against a server (its result: throughput, latency, server and harness CPU,
//! RSS, and notes: time bound, open-loop rate, compactions in the window).
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Barrier, OnceLock};
use std::time::{Duration, Instant};

use ballast_bench::procstat::{cpu_ticks, cpu_us_per, rss_mib, thread_note, thread_reading_of, ThreadReading};
use ballast_bench::LOADGEN_THREADS;

use super::client::{self, Client, ClientOut};
use super::lean::Conn;
use super::compactor::Compactor;
use super::pace::{closed_loop, open_loop, pacer, ticket_queues, Schedule, Tickets};
use super::workload::{Pace, Workload};
use crate::secure::Link;
use crate::server::Server;

#[derive(Default, Clone)]
pub struct Res {
    pub ops: u64,
    /// Failed ops, and for an open loop the tickets never sent.
    pub errors: u64,
    pub first_error: Option<String>,
    pub secs: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    /// Server utime+stime over the run ÷ ops.
    pub cpu_us_per_op: Option<f64>,
    /// This harness's utime+stime over the run ÷ ops.
    pub client_cpu_us_per_op: Option<f64>,
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

/// What the load generator threads share: the closed loops' op counter, the open loop's ticket
/// queues (one per thread), the barrier they meet at once connected, the start instant the driver
/// sets after it, the value the puts write.
#[derive(Clone)]
struct Shared {
    next: Arc<AtomicU64>,
    tickets: Vec<Tickets>,
    connected: Arc<Barrier>,
    start: Arc<OnceLock<Instant>>,
    value: Arc<Vec<u8>>,
}

/// Client `c` of `w` on `conn` (logged in on a secure target; on load generator thread `t`), in
/// a closed or an open loop from `t0`.
async fn client_task(
    w: Workload,
    conn: Conn,
    (c, t): (usize, usize),
    t0: Instant,
    sh: Shared,
) -> ClientOut {
    let (pace, ops, secs) = (w.pace, w.ops, w.secs);
    let client = Client::new(w, conn, c, sh.value);
    match pace {
        Pace::Closed => {
            let deadline = t0 + Duration::from_secs_f64(secs);
            closed_loop(client, ops, sh.next, deadline).await
        }
        Pace::Open(rate) => {
            let rate = rate.expect("open loop rate resolved before the run");
            let s = Schedule::new(t0, rate, secs);
            open_loop(client, s, sh.tickets[t].clone()).await
        }
    }
}

/// Load generator thread `t` of `threads`: connects its connections (j ≡ t mod threads, to
/// member j mod members of a cluster; on a secure target each logs in once), waits for the
/// start, runs its clients (c with c mod conns ≡ t mod threads) to their end.
async fn loadgen_thread(
    t: usize,
    threads: usize,
    w: Workload,
    links: Vec<Link>,
    sh: Shared,
) -> Result<Vec<ClientOut>, String> {
    let mut chans = Vec::new();
    let mut failed = None;
    for j in (t..w.conns).step_by(threads) {
        match client::open(&links[j % links.len()]).await {
            Ok(ch) => chans.push((j, ch)),
            Err(e) => failed = Some(e),
        }
    }
    sh.connected.wait();
    if let Some(e) = failed {
        return Err(e);
    }
    let t0 = *sh.start.wait();
    let tasks: Vec<_> = (0..w.clients)
        .filter(|c| (c % w.conns) % threads == t)
        .map(|c| {
            let ch = chans[(c % w.conns) / threads].1.clone();
            debug_assert_eq!(chans[(c % w.conns) / threads].0, c % w.conns);
            tokio::spawn(client_task(w.clone(), ch, (c, t), t0, sh.clone()))
        })
        .collect();
    let mut outs = Vec::with_capacity(tasks.len());
    for task in tasks {
        outs.push(task.await.map_err(|e| format!("client task: {e}"))?);
    }
    Ok(outs)
}

/// A run of the load generator: its start, CPU readings at the start (the server's threads and
/// total, the harness), and what each client measured.
struct Driven {
    t0: Instant,
    server0: Option<ThreadReading>,
    own_cpu0: Option<u64>,
    outs: Vec<ClientOut>,
}

/// Starts the load generator threads, each a current-thread runtime running `loadgen_thread`.
fn spawn_threads(
    w: &Workload,
    links: &[Link],
    threads: usize,
    sh: &Shared,
) -> Vec<std::thread::JoinHandle<Result<Vec<ClientOut>, String>>> {
    (0..threads)
        .map(|t| {
            let (w, link, sh) = (w.clone(), links.to_vec(), sh.clone());
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| format!("load generator runtime: {e}"))?;
                rt.block_on(loadgen_thread(t, threads, w, link, sh))
            })
        })
        .collect()
}

/// What the load generator threads returned: every client's measurements, or the first error.
fn join_all(
    handles: Vec<std::thread::JoinHandle<Result<Vec<ClientOut>, String>>>,
) -> Result<Vec<ClientOut>, String> {
    let mut outs = Vec::new();
    let mut first_err = None;
    for h in handles {
        match h.join() {
            Ok(Ok(o)) => outs.extend(o),
            Ok(Err(e)) => first_err = first_err.or(Some(e)),
            Err(_) => first_err = first_err.or(Some("load generator thread panicked".into())),
        }
    }
    first_err.map_or(Ok(outs), Err)
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
/// An open loop adds the pacer thread, which releases the tickets into the threads' queues.
/// The start instant and CPU readings are taken once every thread has connected.
fn drive_clients(
    w: &Workload,
    links: &[Link],
    pids: &[i32],
    value: Arc<Vec<u8>>,
) -> Result<Driven, String> {
    let threads = LOADGEN_THREADS.min(w.conns).max(1);
    let (senders, tickets) = match w.pace {
        Pace::Open(_) => ticket_queues(threads),
        Pace::Closed => (Vec::new(), Vec::new()),
    };
    let sh = Shared {
        next: Arc::new(AtomicU64::new(0)),
        tickets,
        connected: Arc::new(Barrier::new(threads + 1)),
        start: Arc::new(OnceLock::new()),
        value,
    };
    let handles = spawn_threads(w, links, threads, &sh);
    drop(sh.tickets);
    sh.connected.wait();
    let (server0, own_cpu0) = (thread_reading_of(pids), cpu_ticks(own_pid()));
    let t0 = Instant::now();
    sh.start.set(t0).expect("start is set once");
    let paced = match w.pace {
        Pace::Open(Some(rate)) => {
            let s = Schedule::new(t0, rate, w.secs);
            Some(std::thread::spawn(move || pacer(s, senders)))
        }
        _ => None,
    };
    let outs = join_all(handles)?;
    if let Some(p) = paced {
        p.join().map_err(|_| "pacer thread panicked".to_string())?;
    }
    Ok(Driven {
        t0,
        server0,
        own_cpu0,
        outs,
    })
}

fn own_pid() -> i32 {
    std::process::id() as i32
}

/// The RSS of every member of a server, in MiB (None if one cannot be read).
fn rss_mib_of(pids: &[i32]) -> Option<f64> {
    pids.iter().map(|&p| rss_mib(p)).sum()
}

/// The clients' latencies (sorted), error count and first error.
fn merge(outs: Vec<ClientOut>) -> (Vec<u32>, u64, Option<String>) {
    let mut lat: Vec<u32> = Vec::with_capacity(outs.iter().map(|o| o.lat_us.len()).sum());
    let (mut errors, mut first_error) = (0, None);
    for o in outs {
        lat.extend(o.lat_us);
        errors += o.errors;
        if first_error.is_none() {
            first_error = o.first_error;
        }
    }
    lat.sort_unstable();
    (lat, errors, first_error)
}

/// The notes of a run of `w` that did `done` ops (answered or failed) and left `unsent` tickets,
/// from `t0` for `secs`: a time bound hit, an open loop's rate and unsent tickets, the compactions
/// in the window.
fn run_notes(
    w: &Workload,
    (done, unsent): (u64, u64),
    t0: Instant,
    secs: f64,
    compactor: Option<&Compactor>,
) -> Vec<String> {
    let mut notes = Vec::new();
    match (w.ops, w.pace) {
        (Some(n), _) if done < n => notes.push(format!(
            "time bound {:.0} s hit after {done} of {n} ops",
            w.secs
        )),
        (_, Pace::Open(Some(rate))) => {
            notes.push(format!("issued at {rate:.0}/s"));
            if unsent > 0 {
                notes.push(format!(
                    "{unsent} of {} requests never sent (sends stop at twice the duration; counted as errors)",
                    done + unsent
                ));
            }
        }
        _ => {}
    }
    let end = t0 + Duration::from_secs_f64(secs);
    for c in compactor.map(|c| c.between(t0, end)).unwrap_or_default() {
        let at = (c.at - t0).as_secs_f64();
        let took = c.took.as_secs_f64() * 1e3;
        notes.push(match c.error {
            None => format!("compacted at rev {} {at:.1} s in ({took:.1} ms)", c.rev),
            Some(e) => format!("compaction at rev {} {at:.1} s in failed: {e}", c.rev),
        });
    }
    notes
}

/// Runs `w` against `s` (compactions of `compactor` in its window are noted).
pub async fn run_workload(
    w: &Workload,
    s: &mut Server,
    compactor: Option<&Compactor>,
) -> Result<Res, String> {
    if w.pace == Pace::Open(None) {
        return Err(format!("{}: open loop without a rate", w.name));
    }
    let value = Arc::new(
        (0..w.value_len)
            .map(|i| b'a' + (i % 26) as u8)
            .collect::<Vec<u8>>(),
    );
    let d = {
        let (w, links, pids) = (w.clone(), s.links(), s.pids());
        tokio::task::spawn_blocking(move || drive_clients(&w, &links, &pids, value))
            .await
            .map_err(|e| format!("load generator: {e}"))??
    };
    let (lat, errors, first_error) = merge(d.outs);
    let secs = d.t0.elapsed().as_secs_f64();
    let (server1, own1) = (thread_reading_of(&s.pids()), cpu_ticks(own_pid()));
    let ops = lat.len() as u64;
    let unsent = match w.pace {
        Pace::Open(Some(rate)) => Schedule::new(d.t0, rate, w.secs)
            .tickets()
            .saturating_sub(ops + errors),
        _ => 0,
    };
    let mut notes = run_notes(w, (ops + errors, unsent), d.t0, secs, compactor);
    notes.extend(d.server0.zip(server1).and_then(|(a, b)| thread_note(&a, &b, ops)));
    let note = notes.join("; ");
    if let Some(e) = s.exited() {
        return Err(e);
    }
    Ok(Res {
        ops,
        errors: errors + unsent,
        first_error,
        secs,
        p50_us: percentile(&lat, 0.50),
        p99_us: percentile(&lat, 0.99),
        p999_us: percentile(&lat, 0.999),
        cpu_us_per_op: cpu_us_per(d.server0.map(|r| r.total_ticks), server1.map(|r| r.total_ticks), ops),
        client_cpu_us_per_op: cpu_us_per(d.own_cpu0, own1, ops),
        rss_mib: rss_mib_of(&s.pids()),
        note,
    })
}

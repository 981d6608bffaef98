//! pauses (see bench/README.md, "Pauses"): what a write sees while the server does something
//! big. On a fresh server: `--pause-list-keys` keys of 1 KiB under `pl/` (the LIST set), then
//! `--pause-history` puts of 256 B over `HOT_KEYS` keys under `ph/` (history for the compaction),
//! about a million revisions in all. An open-loop writer (`--pause-rate` puts/s of new keys under
//! `pw/`) then runs through four phases, and its puts are sorted into them by send time:
//!
//! * baseline: nothing else;
//! * list: one client LISTs the LIST set again and again (`list.rs`): unpaginated and paginated
//!   by 500, at the current revision and at the revision the set was complete at, every answer
//!   checked, from a thread confined to the harness's first CPU at SCHED_IDLE; the server's
//!   peak RSS above the phase's start is measured (VmHWM reset first);
//! * compaction: Compact at the current revision with physical=true (the history of a million
//!   revisions dropped), from its send until its answer, at least `MIN_PHASE`;
//! * defrag: Defragment, likewise.
//!
//! The bound: in each phase the writer's p99 ≤ 2 × its baseline p99.
mod list;
mod table;

use std::time::{Duration, Instant};

use ballast_bench::procstat::{clk_tck, cpu_ticks};
use ballast_bench::proto::etcdserverpb::kv_client::KvClient;
use ballast_bench::proto::etcdserverpb::maintenance_client::MaintenanceClient;
use ballast_bench::proto::etcdserverpb::{
    CompactionRequest, DefragmentRequest, PutRequest, RangeRequest,
};
use tonic::transport::Channel;

use crate::watch::connect;
use crate::writer::{Lat, Writer};
pub use list::ListSeen;
pub use table::{notes, table, PausesRow, LEGEND};

pub const ID: &str = "pauses";
const LIST_PREFIX: &str = "pl/";
const HISTORY_PREFIX: &str = "ph/";
const WRITER_PREFIX: &str = "pw/";
/// Keys the history puts cycle over.
const HOT_KEYS: usize = 10_000;
const LIST_VALUE_LEN: usize = 1024;
const HISTORY_VALUE_LEN: usize = 256;
/// Connections and concurrent puts of the setup.
const SETUP_CONNS: usize = 8;
const SETUP_CALLS: usize = 256;
/// The writer runs this long before the baseline phase opens (long enough for the server to
/// settle after the setup: its snapshot and write-back of the loaded data).
const WARMUP: Duration = Duration::from_secs(10);
/// The compaction and defrag phases last at least this long (a call answered sooner leaves
/// the rest of it to what follows the call), so each holds enough puts for a p99.
const MIN_PHASE: Duration = Duration::from_secs(2);

pub struct PausesOpts {
    pub list_keys: usize,
    pub history_puts: usize,
    /// Puts per second of the writer.
    pub rate: f64,
    /// Length of the baseline and list phases.
    pub phase_secs: f64,
    /// Bound of the setup and of each Compact / Defragment call.
    pub max_secs: f64,
}

/// One phase: its window (send times of the writer's puts) and what it saw.
pub struct Phase {
    pub name: &'static str,
    pub secs: f64,
    pub lat: Lat,
    pub server_cpu_secs: Option<f64>,
    /// What the phase did, for the table.
    pub what: String,
}

pub struct PausesRes {
    pub setup_secs: f64,
    pub revisions: i64,
    pub phases: Vec<Phase>,
    pub list: ListSeen,
    pub writer_errors: u64,
    pub writer_lag_ms: f64,
    pub first_error: Option<String>,
}

impl PausesRes {
    pub fn errors(&self) -> u64 {
        self.writer_errors + self.list.errors
    }

    pub fn baseline_p99_us(&self) -> u64 {
        self.phases.first().map_or(0, |p| p.lat.p99_us)
    }
}

/// Puts `n` keys `key(i)` with `value_len`-byte values, `SETUP_CALLS` at a time over `chans`.
async fn put_all(
    chans: &[Channel],
    n: usize,
    key: fn(usize) -> Vec<u8>,
    value_len: usize,
    max_secs: f64,
) -> Result<(), String> {
    let mut tasks = tokio::task::JoinSet::new();
    for g in 0..SETUP_CALLS {
        let mut kv = KvClient::new(chans[g % chans.len()].clone());
        tasks.spawn(async move {
            for i in (g..n).step_by(SETUP_CALLS) {
                let req = PutRequest {
                    key: key(i),
                    value: vec![b'v'; value_len],
                    ..Default::default()
                };
                kv.put(req)
                    .await
                    .map_err(|e| format!("setup put {i}: {e}"))?;
            }
            Ok::<_, String>(())
        });
    }
    let all = tokio::time::timeout(Duration::from_secs_f64(max_secs), tasks.join_all())
        .await
        .map_err(|_| format!("setup: {n} puts took over {max_secs} s"))?;
    all.into_iter().collect()
}

fn list_key(i: usize) -> Vec<u8> {
    format!("{LIST_PREFIX}{i:08}").into_bytes()
}

fn history_key(i: usize) -> Vec<u8> {
    format!("{HISTORY_PREFIX}{:05}", i % HOT_KEYS).into_bytes()
}

/// The server's current revision (a count-only range's header).
async fn current_rev(kv: &mut KvClient<Channel>) -> Result<i64, String> {
    let req = RangeRequest {
        key: b"/".to_vec(),
        count_only: true,
        ..Default::default()
    };
    let r = kv
        .range(req)
        .await
        .map_err(|e| format!("range: {e}"))?
        .into_inner();
    Ok(r.header.map_or(0, |h| h.revision))
}

/// Server CPU seconds between two tick readings.
fn cpu_secs(before: Option<u64>, after: Option<u64>) -> Option<f64> {
    Some(after?.saturating_sub(before?) as f64 / clk_tck())
}

/// A phase's window, from `from` (since `base`) to now.
struct Window {
    from: Instant,
    ticks: Option<u64>,
}

impl Window {
    fn open(pid: i32) -> Window {
        Window {
            from: Instant::now(),
            ticks: cpu_ticks(pid),
        }
    }

    /// The phase `name` from the window's opening to now, and its span in send times since
    /// `base` (its `lat` is cut from the writer's samples once the writer has stopped).
    fn close(
        self,
        pid: i32,
        base: Instant,
        name: &'static str,
        what: String,
    ) -> (Phase, (u64, u64)) {
        let to = Instant::now();
        let span = (
            self.from.duration_since(base).as_nanos() as u64,
            to.duration_since(base).as_nanos() as u64,
        );
        let lat = Lat::of(std::iter::empty());
        let secs = (to - self.from).as_secs_f64();
        (
            Phase {
                name,
                secs,
                lat,
                server_cpu_secs: cpu_secs(self.ticks, cpu_ticks(pid)),
                what,
            },
            span,
        )
    }
}

pub async fn run(o: &PausesOpts, url: &str, pid: i32) -> Result<PausesRes, String> {
    let mut chans = Vec::new();
    for _ in 0..SETUP_CONNS {
        chans.push(connect(url).await?);
    }
    let t_setup = Instant::now();
    put_all(&chans, o.list_keys, list_key, LIST_VALUE_LEN, o.max_secs).await?;
    let mut kv = KvClient::new(chans[0].clone());
    let past_rev = current_rev(&mut kv).await?;
    put_all(
        &chans,
        o.history_puts,
        history_key,
        HISTORY_VALUE_LEN,
        o.max_secs,
    )
    .await?;
    let setup_secs = t_setup.elapsed().as_secs_f64();
    let revisions = current_rev(&mut kv).await?;
    drop(chans);

    let base = Instant::now();
    let writer = Writer::start(url, WRITER_PREFIX, base, o.rate);
    tokio::time::sleep(WARMUP).await;
    let mut phases = Vec::new();

    let w = Window::open(pid);
    tokio::time::sleep(Duration::from_secs_f64(o.phase_secs)).await;
    phases.push(w.close(pid, base, "baseline", "nothing else".into()));

    let set = list::ListSet {
        prefix: LIST_PREFIX,
        keys: o.list_keys,
        value_len: LIST_VALUE_LEN,
        past_rev,
    };
    let w = Window::open(pid);
    let mut seen = list::run(url, pid, &set, o.phase_secs, base).await?;
    phases.push(w.close(pid, base, "list", String::new()));

    let (rev, w) = (current_rev(&mut kv).await?, Window::open(pid));
    let compact = kv.compact(CompactionRequest {
        revision: rev,
        physical: true,
    });
    tokio::time::timeout(Duration::from_secs_f64(o.max_secs), compact)
        .await
        .map_err(|_| format!("Compact at {rev} took over {} s", o.max_secs))?
        .map_err(|e| format!("Compact at {rev}: {e}"))?;
    let secs = w.from.elapsed().as_secs_f64();
    tokio::time::sleep(MIN_PHASE.saturating_sub(w.from.elapsed())).await;
    phases.push(w.close(
        pid,
        base,
        "compaction",
        format!("Compact at revision {rev} (physical) answered after {secs:.2} s"),
    ));

    let mut m = MaintenanceClient::new(connect(url).await?);
    let w = Window::open(pid);
    tokio::time::timeout(
        Duration::from_secs_f64(o.max_secs),
        m.defragment(DefragmentRequest {}),
    )
    .await
    .map_err(|_| format!("Defragment took over {} s", o.max_secs))?
    .map_err(|e| format!("Defragment: {e}"))?;
    let secs = w.from.elapsed().as_secs_f64();
    tokio::time::sleep(MIN_PHASE.saturating_sub(w.from.elapsed())).await;
    phases.push(w.close(
        pid,
        base,
        "defrag",
        format!("Defragment answered after {secs:.2} s"),
    ));

    let wrote = writer.finish().await?;
    let mut phases: Vec<Phase> = phases
        .into_iter()
        .map(|(mut p, (from, to))| {
            p.lat = Lat::of(
                wrote
                    .samples
                    .iter()
                    .filter(|s| s.sent_ns >= from && s.sent_ns < to),
            );
            p
        })
        .collect();
    // The list phase's puts by the kind of LIST under way when they were sent.
    seen.baseline_p99_us = phases[0].lat.p99_us;
    for k in 0..seen.during.len() {
        let spans: Vec<_> = seen.spans.iter().filter(|s| s.0 == k).collect();
        let during = wrote.samples.iter().filter(|s| spans.iter().any(|&&(_, from, to)| s.sent_ns >= from && s.sent_ns < to));
        let lat = Lat::of(during);
        seen.during[k] = (lat.puts > 0).then_some((lat.puts, lat.p99_us));
    }
    phases[1].what = seen.describe();
    Ok(PausesRes {
        setup_secs,
        revisions,
        phases,
        list: seen,
        writer_errors: wrote.errors,
        writer_lag_ms: wrote.max_lag_ms,
        first_error: wrote.first_error,
    })
}

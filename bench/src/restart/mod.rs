//! The restart workload (see bench/README.md, "Restart"): on a fresh data dir, write
//! `--restart-bytes` as 4 KiB per-key values, stop the server cleanly, start it again on the same
//! dir and time it until a linearizable Range of the last written key returns its value; then
//! check a few more keys and the key count.
mod table;

use std::path::Path;
use std::time::{Duration, Instant};

use ballast_bench::procstat::{clk_tck, cpu_ticks, dir_bytes, rss_mib};
use ballast_bench::proto::etcdserverpb::kv_client::KvClient;
use ballast_bench::proto::etcdserverpb::RangeRequest;
use ballast_bench::report::{human, ms};
use tonic::transport::{Channel, Endpoint};

use crate::kv::{key, keyed_value, run_workload, Op, Pace, Workload};
use crate::opts::{selected, Opts};
use crate::server::{spawn, start, tail, wait_ready, Server, Stopped};
use crate::targets::Target;
pub use table::{restart_notes, restart_table, RestartRow, RESTART_LEGEND};

/// Value size of the restart workload's data set; its key count is `--restart-bytes` / this.
pub const RESTART_VALUE_LEN: usize = 4096;

/// Result of the restart workload for one target.
pub struct RestartRes {
    /// Spawn of the restarted server → first successful linearizable Range with the right value.
    pub serve_us: f64,
    /// Apparent size (sum of file lengths) of the data dir after the clean stop.
    pub disk_mib: f64,
    /// VmRSS of the restarted server when it first served.
    pub rss_mib: Option<f64>,
    /// utime+stime of the restarted server from its spawn until it first served.
    pub cpu_secs: Option<f64>,
    /// Throughput of the write phase (before the restart).
    pub fill_mib_per_sec: f64,
    /// The stop before the restart (SIGTERM → exit).
    pub stop: Stopped,
    /// Failed Range attempts before the first success (connection refused etc. not counted).
    pub attempts: u64,
    pub note: String,
}

/// Whether the restart workload is selected (it is not in `workloads()`: it runs its own server).
pub fn restart_selected(o: &Opts) -> bool {
    selected(o, "restart")
}

/// Keys written by the restart workload before its restart.
pub fn restart_keys(o: &Opts) -> u64 {
    (o.restart_bytes / RESTART_VALUE_LEN as u64).max(1)
}

/// The restart workload's write phase: `restart_keys` distinct keys with 4 KiB per-key values,
/// 1000 clients over 100 connections (as the load workload).
fn restart_fill(o: &Opts) -> Workload {
    let n = restart_keys(o);
    Workload {
        name: format!("restart fill {} keys", human(n)),
        id: "restart-fill",
        op: Op::PutSeq,
        pace: Pace::Closed,
        prefix: "rst/",
        keyspace: n,
        clients: 1000,
        conns: 100,
        ops: Some(n),
        secs: o.load_max_secs,
        value_len: RESTART_VALUE_LEN,
        keyed_values: true,
    }
}

/// `e` and its sources ("transport error: tcp connect error: Connection refused ...").
fn err_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

/// One Range of `k`; Ok(Some(value)) if present.
async fn get(
    kv: &mut KvClient<Channel>,
    k: Vec<u8>,
    timeout: Duration,
) -> Result<Option<Vec<u8>>, String> {
    let req = RangeRequest {
        key: k,
        ..Default::default()
    };
    match tokio::time::timeout(timeout, kv.range(req)).await {
        Ok(Ok(r)) => Ok(r.into_inner().kvs.into_iter().next().map(|kv| kv.value)),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!(
            "range timed out after {:.1} s",
            timeout.as_secs_f64()
        )),
    }
}

/// The write phase on a fresh server in `dir`, then its clean stop: (write MiB/s, the stop).
async fn write_and_stop(
    fill: &Workload,
    t: &Target,
    bin: &Path,
    dir: &Path,
) -> Result<(f64, Stopped), String> {
    let n = fill.keyspace; // each key of the keyspace once
    let mut s = start(t, bin, dir)?;
    wait_ready(&mut s).await?;
    let w = run_workload(fill, &mut s, None).await?;
    if w.errors > 0 || w.ops < n {
        return Err(format!(
            "write phase incomplete: {} of {n} puts ok, {} errors{}{}",
            w.ops,
            w.errors,
            w.first_error
                .map(|e| format!(", first: {e}"))
                .unwrap_or_default(),
            if w.note.is_empty() {
                String::new()
            } else {
                format!(" ({})", w.note)
            }
        ));
    }
    let fill_mib_per_sec = (n * RESTART_VALUE_LEN as u64) as f64 / (1 << 20) as f64 / w.secs;
    eprintln!(
        "bench: {:<16} restart: wrote {n} keys × {RESTART_VALUE_LEN} B in {:.1} s ({fill_mib_per_sec:.1} MiB/s); stopping",
        t.name, w.secs
    );
    let stop = s.stop();
    Ok((fill_mib_per_sec, stop))
}

/// A connection to `url`, bounded (connection refused, i.e. not listening yet, fails at once).
async fn try_connect(url: &str) -> Result<KvClient<Channel>, String> {
    let ep = Endpoint::from_shared(url.to_string())
        .map_err(|e| e.to_string())?
        .connect_timeout(Duration::from_secs(1))
        .tcp_nodelay(true);
    match tokio::time::timeout(Duration::from_secs(2), ep.connect()).await {
        Ok(Ok(ch)) => Ok(KvClient::new(ch)),
        Ok(Err(e)) => Err(format!("connect: {}", err_chain(&e))),
        Err(_) => Err("connect timed out".into()),
    }
}

/// Polls the restarted server `s` every 10 ms until a Range of key `probe` of `prefix` returns its
/// value (bounded by `max_secs` from the spawn): (µs since the spawn, failed attempts, client).
async fn wait_serving(
    s: &mut Server,
    prefix: &str,
    probe: u64,
    max_secs: f64,
) -> Result<(f64, u64, KvClient<Channel>), String> {
    let t0 = s.spawned;
    let deadline = t0 + Duration::from_secs_f64(max_secs);
    let want = keyed_value(probe, RESTART_VALUE_LEN);
    let mut kv: Option<KvClient<Channel>> = None;
    let mut last = String::from("never connected");
    let mut attempts = 0u64;
    loop {
        if let Some(e) = s.exited() {
            return Err(format!("restarted {e}"));
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(format!(
                "not serving {max_secs:.0} s after restart ({last}); log tail:\n{}",
                tail(&s.log, 15)
            ));
        }
        if kv.is_none() {
            match try_connect(&s.url).await {
                Ok(c) => kv = Some(c),
                Err(e) => last = e,
            }
        }
        if let Some(c) = kv.as_mut() {
            // A server that accepts but answers only once recovered is timed by this one call.
            match get(c, key(prefix, probe), deadline - now).await {
                Ok(Some(v)) if v == want => {
                    let c = kv.expect("connected when serving");
                    return Ok((t0.elapsed().as_secs_f64() * 1e6, attempts, c));
                }
                Ok(Some(v)) => {
                    return Err(format!(
                    "restarted server returned a wrong value for key {probe} ({} B, starts {:?})",
                    v.len(),
                    String::from_utf8_lossy(&v[..v.len().min(24)])
                ))
                }
                Ok(None) => {
                    return Err(format!(
                    "restarted server served, but key {probe} (written before the stop) is missing"
                ))
                }
                Err(e) => {
                    attempts += 1;
                    last = e;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Not timed: spot-checks other keys and the key count of the `n` keys of `prefix`; a failed or
/// timed-out count is a note.
async fn check_after(c: &mut KvClient<Channel>, prefix: &str, n: u64) -> Result<String, String> {
    for i in [0, n / 2, n / 3] {
        match get(c, key(prefix, i), Duration::from_secs(30)).await {
            Ok(Some(v)) if v == keyed_value(i, RESTART_VALUE_LEN) => {}
            Ok(Some(_)) => return Err(format!("after restart: wrong value for key {i}")),
            Ok(None) => return Err(format!("after restart: key {i} missing")),
            Err(e) => return Err(format!("after restart: range of key {i}: {e}")),
        }
    }
    let mut end = prefix.as_bytes().to_vec();
    *end.last_mut().expect("non-empty prefix") += 1;
    let req = RangeRequest {
        key: prefix.as_bytes().to_vec(),
        range_end: end,
        count_only: true,
        ..Default::default()
    };
    Ok(
        match tokio::time::timeout(Duration::from_secs(30), c.range(req)).await {
            Ok(Ok(r)) if r.get_ref().count == n as i64 => String::new(),
            Ok(Ok(r)) => {
                return Err(format!(
                    "after restart: {} keys under {prefix}, expected {n}",
                    r.get_ref().count,
                ))
            }
            Ok(Err(e)) => format!("count check failed: {e}"),
            Err(_) => "count check timed out".into(),
        },
    )
}

/// Fresh data dir → write `restart_keys` × 4 KiB → clean stop → restart on the same data dir,
/// timed until a linearizable Range of the last written key returns its value; then checks a few
/// more keys and the key count. Every wait is bounded (`--load-max-secs` for the writes,
/// `--max-secs` for the restart, 10 s for the stop).
pub async fn run_restart(
    o: &Opts,
    t: &Target,
    bin: &Path,
    dir: &Path,
) -> Result<RestartRes, String> {
    let fill = restart_fill(o);
    let n = fill.keyspace;
    let (fill_mib_per_sec, stop) = write_and_stop(&fill, t, bin, dir).await?;
    let disk_mib = dir_bytes(&dir.join("data")) as f64 / (1 << 20) as f64;

    let mut s = spawn(t, bin, dir, "server-restart.log")?;
    let (serve_us, attempts, mut c) = wait_serving(&mut s, fill.prefix, n - 1, o.max_secs).await?;
    let cpu_secs = cpu_ticks(s.pid).map(|c| c as f64 / clk_tck());
    let rss_mib = rss_mib(s.pid);
    eprintln!(
        "bench: {:<16} restart: serving after {} ms",
        t.name,
        ms(serve_us)
    );
    let note = check_after(&mut c, fill.prefix, n).await?;
    if let Some(e) = s.exited() {
        return Err(format!("restarted {e}"));
    }
    s.stop();
    Ok(RestartRes {
        serve_us,
        disk_mib,
        rss_mib,
        cpu_secs,
        fill_mib_per_sec,
        stop,
        attempts,
        note,
    })
}

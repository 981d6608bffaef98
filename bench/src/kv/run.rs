//! The KV workloads of one target, on one server: the compactor starts with it, the preload
//! writes the data set, then the sustained workloads run one after another.
use std::path::Path;

use ballast_bench::report::ms;

use super::compactor::Compactor;
use super::drive::{run_workload, Res};
use super::table::Row;
use super::workload::{Pace, Plan, Workload, RATE_SOURCE_ID};
use crate::server::{start, wait_ready, Server};
use crate::targets::{Target, ETCD35};

/// The KV rows of the run so far, notes that belong to no row (preloads, skipped workloads), and
/// the ops/s of etcd 3.5's put-1000c once it ran (the open loop's rate unless `--open-rate`).
#[derive(Default)]
pub struct KvRows<'a> {
    pub rows: Vec<Row<'a>>,
    pub notes: String,
    etcd_rate: Option<f64>,
}

/// One progress line on stderr for `w`'s result on `t`.
fn log(t: &Target, w: &Workload, res: &Result<Res, String>) {
    match res {
        Ok(r) => eprintln!(
            "bench: {:<16} {:<28} {:>9.0} ops/s  p50 {:>7} ms  p99 {:>7} ms  p99.9 {:>7} ms  cpu {:>6} µs/op  client cpu {:>6} µs/op  errors {}",
            t.name,
            w.name,
            r.ops_per_sec(),
            ms(r.p50_us),
            ms(r.p99_us),
            ms(r.p999_us),
            r.cpu_us_per_op.map_or("—".into(), |c| format!("{c:.1}")),
            r.client_cpu_us_per_op.map_or("—".into(), |c| format!("{c:.1}")),
            r.errors
        ),
        Err(e) => eprintln!("bench: {} {}: failed: {e}", t.name, w.name),
    }
}

/// Every row of `plan` failed with `e` on `t`.
fn all_failed<'a>(t: &'a Target, plan: &'a Plan, e: &str, out: &mut KvRows<'a>) {
    eprintln!("bench: {}: {e}", t.name);
    out.rows.extend(plan.rows().into_iter().map(|w| Row {
        workload: w,
        target: t,
        res: Err(e.to_string()),
    }));
}

/// The preload on `s`, noted (and a row if `load` is selected); Err if the server failed.
async fn preload<'a>(
    t: &'a Target,
    plan: &'a Plan,
    (s, data): (&mut Server, &Path),
    c: &Compactor,
    out: &mut KvRows<'a>,
) -> Result<(), String> {
    let w = &plan.preload;
    eprintln!("bench: {:<16} preloading: {}", t.name, w.name);
    let res = run_workload(w, s, Some(c)).await;
    log(t, w, &res);
    let ok = match &res {
        Ok(r) => {
            let settled = if plan.load_row { settled(s, data).await } else { String::new() };
            out.notes.push_str(&format!(
                "- preload / {}: {} keys in {:.1} s ({:.0}/s), {} errors, RSS after it {} MiB{settled}\n",
                t.name,
                r.ops,
                r.secs,
                r.ops_per_sec(),
                r.errors,
                mib(r.rss_mib),
            ));
            Ok(())
        }
        Err(e) => Err(format!("preload: {e}")),
    };
    if plan.load_row {
        out.rows.push(Row {
            workload: w,
            target: t,
            res,
        });
    }
    ok
}

/// How long the `load` row waits, idle, before its second RSS reading: past a full snapshot of
/// 1M keys (~6 s here), after which values written during it are mapped from disk, not held.
const SETTLE_SECS: u64 = 15;

/// "; after N s idle: RSS M MiB, data dir D MiB" once the server has been idle `SETTLE_SECS`
/// after the load. The reading at the load's end depends on where it falls in the snapshot
/// cycle; this one is what a server holding the data set keeps resident and on disk (the
/// data dir: the sum of its files' lengths, as `du --apparent-size`).
async fn settled(s: &Server, data: &Path) -> String {
    tokio::time::sleep(std::time::Duration::from_secs(SETTLE_SECS)).await;
    let rss = s.pids().iter().map(|&p| ballast_bench::procstat::rss_mib(p)).sum();
    let disk = ballast_bench::procstat::dir_bytes(data) as f64 / (1 << 20) as f64;
    format!("; after {SETTLE_SECS} s idle: RSS {} MiB, data dir {disk:.0} MiB", mib(rss))
}

fn mib(m: Option<f64>) -> String {
    m.map_or("—".into(), |m| format!("{m:.0}"))
}

/// `w` ready to run: an open loop without a rate gets etcd 3.5's put-1000c ops/s; None if
/// there is none.
fn resolved(w: &Workload, etcd_rate: Option<f64>) -> Option<Workload> {
    match w.pace {
        Pace::Open(None) => etcd_rate.map(|r| Workload {
            pace: Pace::Open(Some(r)),
            ..w.clone()
        }),
        _ => Some(w.clone()),
    }
}

/// Runs the sustained workload `w` on `s`, or notes why it is skipped.
async fn sustained<'a>(
    t: &'a Target,
    w: &'a Workload,
    s: &mut Server,
    c: &Compactor,
    out: &mut KvRows<'a>,
) {
    let Some(ready) = resolved(w, out.etcd_rate) else {
        out.notes.push_str(&format!(
            "- {} / {}: skipped: no --open-rate, and no put-1000c of etcd 3.5 ran before it\n",
            w.name, t.name
        ));
        return;
    };
    let res = match s.exited() {
        Some(e) => Err(e),
        None => run_workload(&ready, s, Some(c)).await,
    };
    log(t, w, &res);
    if t.name == ETCD35 && w.id == RATE_SOURCE_ID {
        out.etcd_rate = res.as_ref().ok().map(Res::ops_per_sec);
    }
    out.rows.push(Row {
        workload: w,
        target: t,
        res,
    });
}

/// Starts `t` on a fresh `dir` with a compactor, preloads it, runs the sustained workloads of
/// `plan` in order, stops it.
pub async fn run_target<'a>(
    t: &'a Target,
    bin: &Path,
    dir: &Path,
    plan: &'a Plan,
    out: &mut KvRows<'a>,
    keep_data: bool,
) {
    let mut server = match start(t, bin, dir) {
        Ok(s) => s,
        Err(e) => return all_failed(t, plan, &e, out),
    };
    if let Err(e) = wait_ready(&mut server).await {
        server.stop();
        return all_failed(t, plan, &e, out);
    }
    let compactor = Compactor::start(server.link(), plan.compact_every);
    match preload(t, plan, (&mut server, &dir.join("data")), &compactor, out).await {
        Ok(()) => {
            for w in &plan.sustained {
                sustained(t, w, &mut server, &compactor, out).await;
            }
        }
        Err(e) => {
            eprintln!("bench: {}: {e}", t.name);
            out.rows.extend(plan.sustained.iter().map(|w| Row {
                workload: w,
                target: t,
                res: Err(e.clone()),
            }));
        }
    }
    drop(compactor);
    server.stop();
    drop(server);
    if !keep_data {
        let _ = std::fs::remove_dir_all(dir.join("data"));
    }
}

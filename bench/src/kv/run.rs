//! The KV workloads of one target, in order on one server.
use std::path::Path;

use ballast_bench::report::ms;

use super::drive::{run_workload, Res};
use super::table::Row;
use super::workload::Workload;
use crate::server::{start, wait_ready};
use crate::targets::Target;

/// One progress line on stderr for `w`'s result on `t`.
fn log(t: &Target, w: &Workload, res: &Result<Res, String>) {
    match res {
        Ok(r) => eprintln!(
            "bench: {:<16} {:<28} {:>9.0} ops/s  p50 {:>7} ms  p99 {:>7} ms  cpu {:>6} µs/op  rss {:>6} MiB  errors {}",
            t.name,
            w.name,
            r.ops_per_sec(),
            ms(r.p50_us),
            ms(r.p99_us),
            r.cpu_us_per_op.map_or("—".into(), |c| format!("{c:.1}")),
            r.rss_mib.map_or("—".into(), |m| format!("{m:.0}")),
            r.errors
        ),
        Err(e) => eprintln!("bench: {} {}: failed: {e}", t.name, w.name),
    }
}

/// Every workload of `workloads` failed with `e` on `t`.
fn all_failed<'a>(t: &'a Target, workloads: &'a [Workload], e: &str, rows: &mut Vec<Row<'a>>) {
    eprintln!("bench: {}: {e}", t.name);
    rows.extend(workloads.iter().map(|w| Row {
        workload: w,
        target: t,
        res: Err(e.to_string()),
    }));
}

/// Starts `t` on a fresh `dir`, runs `workloads` against it in order, stops it.
pub async fn run_target<'a>(
    t: &'a Target,
    bin: &Path,
    dir: &Path,
    workloads: &'a [Workload],
    rows: &mut Vec<Row<'a>>,
    keep_data: bool,
) {
    let mut server = match start(t, bin, dir) {
        Ok(s) => s,
        Err(e) => return all_failed(t, workloads, &e, rows),
    };
    if let Err(e) = wait_ready(&mut server).await {
        server.stop();
        return all_failed(t, workloads, &e, rows);
    }
    for w in workloads {
        let res = if let Some(e) = server.exited() {
            Err(e)
        } else {
            run_workload(w, &mut server).await
        };
        log(t, w, &res);
        rows.push(Row {
            workload: w,
            target: t,
            res,
        });
    }
    server.stop();
    drop(server);
    if !keep_data {
        let _ = std::fs::remove_dir_all(dir.join("data"));
    }
}

//! The KV result table (ops/s, latency, CPU and RSS per workload and target, with ratios of
//! ballast rows against the faster etcd and against sol), its legend and notes.
use std::fmt::Write as _;

use ballast_bench::report::{ms, ratio};

use super::drive::Res;
use super::workload::Workload;
use crate::targets::{Kind, Target};

pub struct Row<'a> {
    pub workload: &'a Workload,
    pub target: &'a Target,
    pub res: Result<Res, String>,
}

/// Ballast's ratios against `etcd` (ops/s, p99, CPU) and its ops/s as % of `sol`'s.
fn vs(x: &Res, etcd: Option<&Res>, sol: Option<&Res>) -> [String; 4] {
    let (mut vo, mut vp, mut vc, mut vs) = Default::default();
    if let Some(e) = etcd {
        vo = ratio(x.ops_per_sec(), e.ops_per_sec());
        vp = ratio(x.p99_us, e.p99_us);
        if let (Some(a), Some(b)) = (x.cpu_us_per_op, e.cpu_us_per_op) {
            vc = ratio(a, b);
        }
    }
    if let Some(sl) = sol {
        if sl.ops_per_sec() > 0.0 {
            vs = format!("{:.0}%", 100.0 * x.ops_per_sec() / sl.ops_per_sec());
        }
    }
    [vo, vp, vc, vs]
}

/// The table line of one row of `w`.
fn line(w: &Workload, r: &Row, best_etcd: Option<&Res>, sol: Option<&Res>) -> String {
    let x = match &r.res {
        Err(e) => {
            let e = e.lines().next().unwrap_or_default().replace('|', "/");
            return format!(
                "| {} | {} | failed: {e} | | | | | | | | | |\n",
                w.name, r.target.name
            );
        }
        Ok(x) => x,
    };
    let cpu = x.cpu_us_per_op.map_or("—".into(), |c| format!("{c:.1}"));
    let rss = x.rss_mib.map_or("—".into(), |m| format!("{m:.0}"));
    let [vo, vp, vc, vs] = match r.target.kind {
        Kind::Ballast(_) => vs(x, best_etcd, sol),
        _ => Default::default(),
    };
    format!(
        "| {} | {} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
        w.name,
        r.target.name,
        x.ops_per_sec(),
        ms(x.p50_us),
        ms(x.p99_us),
        cpu,
        rss,
        x.errors,
        vo,
        vp,
        vc,
        vs
    )
}

pub fn table(rows: &[Row], workloads: &[Workload]) -> String {
    let mut s = String::new();
    s.push_str("| workload | target | ops/s | p50 ms | p99 ms | CPU µs/op | RSS MiB | errors | ops/s vs etcd | p99 vs etcd | CPU vs etcd | ops/s % of SoL |\n");
    s.push_str("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n");
    for w in workloads {
        let of_w: Vec<&Row> = rows.iter().filter(|r| r.workload.id == w.id).collect();
        // The faster etcd of this workload (by ops/s).
        let best_etcd = of_w
            .iter()
            .filter(|r| r.target.kind == Kind::Etcd)
            .filter_map(|r| r.res.as_ref().ok())
            .filter(|r| r.ops > 0)
            .max_by(|a, b| a.ops_per_sec().total_cmp(&b.ops_per_sec()));
        let sol = of_w
            .iter()
            .filter(|r| r.target.kind == Kind::Sol)
            .find_map(|r| r.res.as_ref().ok());
        for r in &of_w {
            s.push_str(&line(w, r, best_etcd, sol));
        }
    }
    s
}

pub fn notes(rows: &[Row], targets: &[Target]) -> String {
    let mut s = String::new();
    for t in targets {
        match &t.bin {
            Ok(b) => {
                let _ = writeln!(s, "- {}: `{}` {}", t.name, b.display(), t.version);
            }
            Err(e) => {
                let _ = writeln!(s, "- {}: **skipped**: {e}", t.name);
            }
        }
    }
    for r in rows {
        if let Ok(x) = &r.res {
            if !x.note.is_empty() {
                let _ = writeln!(s, "- {} / {}: {}", r.workload.name, r.target.name, x.note);
            }
            if let Some(e) = &x.first_error {
                let _ = writeln!(
                    s,
                    "- {} / {}: {} errors, first: {}",
                    r.workload.name,
                    r.target.name,
                    x.errors,
                    e.replace('\n', " ")
                );
            }
        } else if let Err(e) = &r.res {
            let _ = writeln!(
                s,
                "- {} / {}: failed: {}",
                r.workload.name,
                r.target.name,
                e.replace('\n', " ⏎ ")
            );
        }
    }
    s
}

pub const LEGEND: &str = "\
Columns: ops/s = completed ops / wall time; p50/p99 = client-side latency of successful ops; \
CPU µs/op = server process utime+stime delta (/proc/PID/stat) over the workload ÷ ops; \
RSS = server VmRSS at the end of the workload (for the load row, run on a server of its own: after all keys are written). \
On ballast rows: \"vs etcd\" compares with the faster (by ops/s) of etcd 3.5 / 3.4 in that workload \
(ops/s: >1 is better; p99 and CPU: <1 is better); \"% of SoL\" = ops/s relative to the storage-free \
speed-of-light server. Client and server share the machine: on few cores the client's own CPU use \
caps every target.";

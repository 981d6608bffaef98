//! The restart result table (time to serving, data dir, RSS, CPU, write throughput, stop time,
//! with ratios of ballast rows against the etcd that served first), its legend and notes.
use std::fmt::Write as _;

use ballast_bench::report::{ms, ratio};

use super::RestartRes;
use crate::targets::{Kind, Target};

pub struct RestartRow<'a> {
    pub target: &'a Target,
    pub res: Result<RestartRes, String>,
}

/// The table line of one row.
fn line(r: &RestartRow, name: &str, best_etcd: Option<&RestartRes>) -> String {
    let x = match &r.res {
        Err(e) => {
            let e = e.lines().next().unwrap_or_default();
            let e = e
                .split("; log tail")
                .next()
                .unwrap_or_default()
                .replace('|', "/");
            return format!(
                "| {name} | {} | failed: {e} (see notes) | | | | | | | | |\n",
                r.target.name
            );
        }
        Ok(x) => x,
    };
    let (mut vt, mut vc, mut vd) = (String::new(), String::new(), String::new());
    if let (Kind::Ballast(_), Some(e)) = (r.target.kind, best_etcd) {
        vt = ratio(x.serve_us, e.serve_us);
        if let (Some(a), Some(b)) = (x.cpu_secs, e.cpu_secs) {
            vc = ratio(a, b);
        }
        vd = ratio(x.disk_mib, e.disk_mib);
    }
    let stop = if x.stop.clean {
        format!("{:.2}", x.stop.secs)
    } else {
        format!("{:.0} (SIGKILL)", x.stop.secs)
    };
    format!(
        "| {name} | {} | {} | {:.0} | {} | {} | {:.1} | {stop} | {vt} | {vc} | {vd} |\n",
        r.target.name,
        ms(x.serve_us),
        x.disk_mib,
        x.rss_mib.map_or("—".into(), |m| format!("{m:.0}")),
        x.cpu_secs.map_or("—".into(), |c| format!("{c:.2}")),
        x.fill_mib_per_sec,
    )
}

pub fn restart_table(rows: &[RestartRow], name: &str) -> String {
    let mut s = String::new();
    s.push_str("| workload | target | time to serving ms | data dir MiB | RSS MiB | CPU s | write MiB/s | stop s | serving vs etcd | CPU vs etcd | data dir vs etcd |\n");
    s.push_str("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n");
    // The faster etcd (by time to serving).
    let best_etcd = rows
        .iter()
        .filter(|r| r.target.kind == Kind::Etcd)
        .filter_map(|r| r.res.as_ref().ok())
        .min_by(|a, b| a.serve_us.total_cmp(&b.serve_us));
    for r in rows {
        s.push_str(&line(r, name, best_etcd));
    }
    s
}

pub fn restart_notes(rows: &[RestartRow], name: &str) -> String {
    let mut s = String::new();
    for r in rows {
        match &r.res {
            Ok(x) => {
                if !x.stop.clean {
                    let _ = writeln!(
                        s,
                        "- {name} / {}: did not exit within 10 s of SIGTERM; SIGKILLed before the restart",
                        r.target.name
                    );
                }
                if x.attempts > 0 {
                    let _ = writeln!(
                        s,
                        "- {name} / {}: {} Range attempts failed before the first success",
                        r.target.name, x.attempts
                    );
                }
                if !x.note.is_empty() {
                    let _ = writeln!(s, "- {name} / {}: {}", r.target.name, x.note);
                }
            }
            Err(e) => {
                let _ = writeln!(
                    s,
                    "- {name} / {}: failed: {}",
                    r.target.name,
                    e.replace('\n', " ⏎ ")
                );
            }
        }
    }
    s
}

pub const RESTART_LEGEND: &str = "\
Restart table: each storage target (not sol) gets a fresh data dir, `--restart-bytes` of data as \
4 KiB values (1000 clients / 100 connections, \"write MiB/s\"), a clean stop (SIGTERM; \"stop s\" \
until exit, SIGKILL after 10 s), then a restart on the same data dir. Time to serving = spawn of \
the restarted process → first successful linearizable Range of the last written key, with its \
value checked (polled every 10 ms; a Range that is accepted but held until recovery is timed as \
is). Data dir = sum of file sizes after the stop; RSS = VmRSS and CPU s = utime+stime of the \
restarted process when it first served (clock-tick resolution). The page cache is warm (the files \
were just written). After the timing a few other keys and the key count are checked. \
On ballast rows \"vs etcd\" divides by the etcd with the shorter time to serving (<1 is better).";

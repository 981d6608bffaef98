//! The KV result table (ops/s, latency p50/p99/p99.9, server and harness CPU per op, RSS, errors
//! per workload and target, with ratios of ballast rows against etcd 3.5 and against sol), its
//! legend and notes.
use std::fmt::Write as _;

use ballast_bench::report::{ms, opt, ratio};

use super::drive::Res;
use super::workload::Workload;
use crate::targets::{Kind, Target, ETCD35};

pub struct Row<'a> {
    pub workload: &'a Workload,
    pub target: &'a Target,
    pub res: Result<Res, String>,
}

const HEAD: &str = "\
| workload | target | ops/s | p50 ms | p99 ms | p99.9 ms | server CPU µs/op | client CPU µs/op | RSS MiB | errors | ops/s vs etcd | p50 vs etcd | p99 vs etcd | p99.9 vs etcd | CPU vs etcd | ops/s % of SoL |
|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|
";
/// Cells after the target's name.
const CELLS: usize = 14;

/// Ballast's ratios against `etcd` (ops/s, p50, p99, p99.9, server CPU) and its ops/s as % of
/// `sol`'s.
fn vs(x: &Res, etcd: Option<&Res>, sol: Option<&Res>) -> [String; 6] {
    let mut v: [String; 6] = Default::default();
    if let Some(e) = etcd {
        v[0] = ratio(x.ops_per_sec(), e.ops_per_sec());
        v[1] = ratio(x.p50_us, e.p50_us);
        v[2] = ratio(x.p99_us, e.p99_us);
        v[3] = ratio(x.p999_us, e.p999_us);
        if let (Some(a), Some(b)) = (x.cpu_us_per_op, e.cpu_us_per_op) {
            v[4] = ratio(a, b);
        }
    }
    if let Some(sl) = sol.filter(|s| s.ops_per_sec() > 0.0) {
        v[5] = format!("{:.0}%", 100.0 * x.ops_per_sec() / sl.ops_per_sec());
    }
    v
}

/// The table line of one row of `w`.
fn line(w: &Workload, r: &Row, etcd: Option<&Res>, sol: Option<&Res>) -> String {
    let x = match &r.res {
        Err(e) => {
            let e = e.lines().next().unwrap_or_default().replace('|', "/");
            let empty = " |".repeat(CELLS - 1);
            return format!("| {} | {} | failed: {e} |{empty}\n", w.name, r.target.name);
        }
        Ok(x) => x,
    };
    let ratios = match r.target.kind {
        Kind::Ballast(_) => vs(x, etcd, sol),
        _ => Default::default(),
    };
    format!(
        "| {} | {} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
        w.name,
        r.target.name,
        x.ops_per_sec(),
        ms(x.p50_us),
        ms(x.p99_us),
        ms(x.p999_us),
        opt(x.cpu_us_per_op, 1),
        opt(x.client_cpu_us_per_op, 1),
        opt(x.rss_mib, 0),
        x.errors,
        ratios.join(" | "),
    )
}

/// The etcd result ballast rows of a workload compare with: etcd 3.5's, else any etcd's, with
/// the same security (plain, or TLS and auth) and the same number of members.
fn reference<'r>(of_w: &[&'r Row], secure: bool, members: usize) -> Option<&'r Res> {
    let etcd = || {
        of_w.iter().filter(move |r| {
            r.target.kind == Kind::Etcd
                && r.target.secure.is_some() == secure
                && r.target.members == members
        })
    };
    etcd()
        .find(|r| r.target.plain_name() == ETCD35)
        .or_else(|| etcd().next())
        .and_then(|r| r.res.as_ref().ok())
}

pub fn table(rows: &[Row], workloads: &[&Workload]) -> String {
    let mut s = HEAD.to_string();
    for w in workloads {
        let of_w: Vec<&Row> = rows.iter().filter(|r| r.workload.id == w.id).collect();
        let sol = of_w
            .iter()
            .filter(|r| r.target.kind == Kind::Sol)
            .find_map(|r| r.res.as_ref().ok());
        for r in &of_w {
            let secure = r.target.secure.is_some();
            let sol = if secure { None } else { sol };
            s.push_str(&line(w, r, reference(&of_w, secure, r.target.members), sol));
        }
    }
    s
}

/// The targets' binaries (or why skipped), then per row its note, errors or failure.
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
        let what = format!("- {} / {}", r.workload.name, r.target.name);
        match &r.res {
            Ok(x) => {
                if !x.note.is_empty() {
                    let _ = writeln!(s, "{what}: {}", x.note);
                }
                if let Some(e) = &x.first_error {
                    let e = e.replace('\n', " ");
                    let _ = writeln!(s, "{what}: {} errors, first: {e}", x.errors);
                }
            }
            Err(e) => {
                let _ = writeln!(s, "{what}: failed: {}", e.replace('\n', " ⏎ "));
            }
        }
    }
    s
}

pub const LEGEND: &str = "\
KV table: on one server per target, preloaded with the `--preload-keys` data set (the load row \
measures that preload: 1000 clients / 100 connections, each key once, RSS after it; its note \
adds the RSS and the data dir size after 15 s idle), each \
workload runs for the stated duration while a compactor compacts (physical=false) every \
`--compact-secs` at the revision it saw one interval earlier, and the target takes snapshots \
at its default settings. Puts overwrite random preloaded keys, ranges read them, txn-cas \
clients compare-and-swap keys of their own. Closed loop: a client sends its next request when \
the previous one is answered; latency = send → answer. Open loop (put open-loop): request i is \
due at start + i / rate (rate noted), a free client takes the next one, waits until it is due and \
sends it; latency = due time → answer, so time a request spends waiting for a free client or a \
stalled server counts (no coordinated omission). ops/s = successful ops / (start → last answer); \
p50/p99/p99.9 = latency of successful ops; server CPU µs/op = server utime+stime \
(/proc/PID/stat) over the workload ÷ ops; client CPU µs/op = this harness likewise; RSS = server \
VmRSS at the end of the workload; errors include open-loop requests never sent. On ballast rows: \
\"vs etcd\" divides by etcd 3.5 (else 3.4) in that workload (ops/s: >1 is better; latency and \
CPU: <1 is better); \"% of SoL\" = ops/s relative to the storage-free speed-of-light server. \
Client and server share the machine: when server + client CPU per op × ops/s nears the core \
count, the client shares the limit.";

/// The result of the target named `name` in the rows of one workload.
fn result_of<'r>(of_w: &[&'r Row], name: &str) -> Option<&'r Res> {
    of_w.iter()
        .find(|r| r.target.name == name)
        .and_then(|r| r.res.as_ref().ok())
}

/// What security costs: per workload and ballast target with a secure twin that ran, ballast's
/// ratios to etcd 3.5 plain and secure (ops/s, p99, p99.9, server CPU per op) and secure ÷ plain
/// of each; empty if no pair ran.
pub fn secure_table(rows: &[Row], workloads: &[&Workload]) -> String {
    let mut s = String::new();
    for w in workloads {
        let of_w: Vec<&Row> = rows.iter().filter(|r| r.workload.id == w.id).collect();
        let twins = of_w
            .iter()
            .filter(|r| matches!(r.target.kind, Kind::Ballast(_)) && r.target.secure.is_some());
        for twin in twins {
            let (Some(bp), Some(bs)) = (
                result_of(&of_w, twin.target.plain_name()),
                twin.res.as_ref().ok(),
            ) else {
                continue;
            };
            let (Some(ep), Some(es)) = (reference(&of_w, false, 1), reference(&of_w, true, 1)) else {
                continue;
            };
            s.push_str(&secure_line(w, twin.target.plain_name(), [bp, bs, ep, es]));
        }
    }
    if s.is_empty() {
        return s;
    }
    format!("{SECURE_HEAD}{s}")
}

const SECURE_HEAD: &str = "\
| workload | target | ops/s plain: ballast / etcd | ops/s TLS+auth: ballast / etcd | ops/s ratio, plain | ops/s ratio, TLS+auth | **ratio of ratios** | p99 ratio plain → TLS+auth | p99.9 ratio plain → TLS+auth | CPU/op ratio plain → TLS+auth | ballast ops/s TLS+auth ÷ plain | etcd ops/s TLS+auth ÷ plain |
|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|
";

/// One line of the security table: `[ballast plain, ballast secure, etcd plain, etcd secure]`.
fn secure_line(w: &Workload, ballast: &str, [bp, bs, ep, es]: [&Res; 4]) -> String {
    let r = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::NAN };
    let (plain, secure) = (
        r(bp.ops_per_sec(), ep.ops_per_sec()),
        r(bs.ops_per_sec(), es.ops_per_sec()),
    );
    let pair = |f: fn(&Res) -> Option<f64>| match (f(bp), f(ep), f(bs), f(es)) {
        (Some(a), Some(b), Some(c), Some(d)) => format!("{} → {}", ratio(a, b), ratio(c, d)),
        _ => "—".into(),
    };
    format!(
        "| {} | {ballast} | {:.0} / {:.0} | {:.0} / {:.0} | {plain:.2}× | {secure:.2}× | **{:.2}** | {} | {} | {} | {:.2} | {:.2} |\n",
        w.name,
        bp.ops_per_sec(),
        ep.ops_per_sec(),
        bs.ops_per_sec(),
        es.ops_per_sec(),
        r(secure, plain),
        pair(|x| Some(x.p99_us)),
        pair(|x| Some(x.p999_us)),
        pair(|x| x.cpu_us_per_op),
        r(bs.ops_per_sec(), bp.ops_per_sec()),
        r(es.ops_per_sec(), ep.ops_per_sec()),
    )
}

pub const SECURE_LEGEND: &str = "\
Security table (when a `+tls-auth` twin ran beside its plain target and etcd 3.5 ran both ways): \
the twins serve over mutual TLS (`--cert-file --key-file --trusted-ca-file --client-cert-auth`, \
certificates made at the run's start) with auth enabled (`--auth-token simple`, a user with \
READWRITE on the workloads' prefixes); every client connection is TLS with a client certificate, \
logs in once and sends its token with every request. \"ops/s ratio\" = ballast ÷ etcd 3.5 with \
the same security; ratio of ratios = TLS+auth ratio ÷ plain ratio (the issue's target: within \
10% of 1, i.e. ≥ 0.90: security does not eat ballast's lead); the latency and CPU columns show \
ballast ÷ etcd plain → with TLS+auth; the last two columns what TLS+auth costs each server.";

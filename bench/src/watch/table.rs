//! The watch result tables: one for the flowing workloads (watch-1000, watch-max), one for
//! watch-idle, with ratios of ballast rows against etcd 3.5 (else etcd 3.4), and their notes.
use std::fmt::Write as _;

use ballast_bench::report::{ms, opt, ratio, Cells};

use super::{FlowRes, IdleRes, StepRes, WatchRes};

pub const LEGEND: &str = "\
Watch tables (not for sol; each workload on a fresh server): watchers on one prefix spread over \
streams and connections as stated above, an open-loop writer (puts sent on schedule, 256 B \
values, 2 connections). Event latency = put sent by the writer → event received by the watcher \
(same clock), p99.9 from a log-linear histogram (±1.6 %). Missing = watchers × acknowledged puts \
− events received within 5 s of the step's last put answer. events/s = events delivered ÷ (first \
put sent → last event received). Server CPU µs/event = server utime+stime over the step (writes \
included) ÷ events delivered; client CPU = this harness (writer and watchers) likewise. watch-max \
doubles the rate until p99 > 1 s or an event is missing, bisects twice, and reports the passing step with the most \
delivered events/s (all steps in the notes). watch-idle: RSS before any stream, after each stream created one watcher \
(→ KiB per stream, which includes that watcher and a share of the connections), after the rest \
(→ KiB per watcher), 1 s settle before each reading; one put at the end checks every watcher. \
On ballast rows \"vs etcd\" divides by etcd 3.5 (else 3.4): <1 is better, except events/s.";

pub struct WatchRow {
    pub id: &'static str,
    pub name: String,
    pub target: &'static str,
    pub is_etcd: bool,
    pub is_ballast: bool,
    pub res: Result<WatchRes, String>,
}

/// The row ballast rows of workload `id` compare with: etcd 3.5's, else any etcd's.
fn reference<'a>(rows: &'a [WatchRow], id: &str) -> Option<&'a WatchRes> {
    let of = || rows.iter().filter(|r| r.id == id && r.is_etcd);
    of().find(|r| r.target == "etcd-3.5")
        .or_else(|| of().next())
        .and_then(|r| r.res.as_ref().ok())
}

fn shown(f: &FlowRes) -> Option<&StepRes> {
    f.shown.and_then(|i| f.steps.get(i))
}

fn failed(id_name: &str, target: &str, e: &str, cols: usize) -> String {
    let e = e.lines().next().unwrap_or_default().replace('|', "/");
    format!(
        "| {id_name} | {target} | failed: {e} |{}\n",
        " |".repeat(cols - 3)
    )
}

fn flow_row(s: &mut String, r: &WatchRow, f: &FlowRes, etcd: Option<&StepRes>) {
    let Some(x) = shown(f) else {
        let _ = writeln!(
            s,
            "| {} | {} | no step passed (see notes) |{}",
            r.name,
            r.target,
            " |".repeat(13)
        );
        return;
    };
    let (mut vp, mut vc, mut ve) = (String::new(), String::new(), String::new());
    if let (true, Some(e)) = (r.is_ballast, etcd) {
        vp = ratio(x.p99_us as f64, e.p99_us as f64);
        if let (Some(a), Some(b)) = (x.server_cpu_us, e.server_cpu_us) {
            vc = ratio(a, b);
        }
        ve = ratio(x.events_per_sec, e.events_per_sec);
    }
    let _ = writeln!(
        s,
        "| {} | {} | {:.0} | {} | {} | {:.0} | {} | {vp} | {vc} | {ve} |",
        r.name,
        r.target,
        x.rate,
        x.delivered,
        x.missing(),
        x.events_per_sec,
        Cells {
            p50_us: x.p50_us,
            p99_us: x.p99_us,
            p999_us: x.p999_us,
            server_cpu_us: x.server_cpu_us,
            client_cpu_us: x.client_cpu_us,
            rss_mib: x.rss_mib,
        }
        .cols(),
    );
}

fn idle_row(s: &mut String, r: &WatchRow, x: &IdleRes, etcd: Option<&IdleRes>) {
    let (mut vw, mut vs) = (String::new(), String::new());
    if let (true, Some(e)) = (r.is_ballast, etcd) {
        vw = ratio(x.kib_per_watcher(), e.kib_per_watcher());
        vs = ratio(x.kib_per_stream(), e.kib_per_stream());
    }
    let _ = writeln!(
        s,
        "| {} | {} | {} / {} / {} | {:.0} | {:.0} | {:.0} | {:.2} | {:.1} | {:.2} | {} | {vw} | {vs} |",
        r.name,
        r.target,
        x.watchers,
        x.streams,
        x.conns,
        x.rss_before,
        x.rss_streams,
        x.rss_full,
        x.kib_per_watcher(),
        x.kib_per_stream(),
        x.create_secs,
        x.delivered,
    );
}

/// Both tables (each only if it has rows), in `ids` order.
pub fn tables(rows: &[WatchRow], ids: &[&str]) -> String {
    let mut flow = String::from("| workload | target | puts/s | events delivered | missing | events/s | event p50 ms | event p99 ms | event p99.9 ms | server CPU µs/event | client CPU µs/event | RSS MiB | p99 vs etcd | CPU vs etcd | events/s vs etcd |\n|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n");
    let mut idle = String::from("| workload | target | watchers / streams / conns | RSS before MiB | RSS streams MiB | RSS all MiB | KiB per watcher | KiB per stream | create s | events of 1 put | per watcher vs etcd | per stream vs etcd |\n|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n");
    let (mut has_flow, mut has_idle) = (false, false);
    for id in ids {
        let etcd = reference(rows, id);
        for r in rows.iter().filter(|r| r.id == *id) {
            match (&r.res, etcd) {
                (Ok(WatchRes::Flow(f)), e) => {
                    has_flow = true;
                    let e = match e {
                        Some(WatchRes::Flow(ef)) => shown(ef),
                        _ => None,
                    };
                    flow_row(&mut flow, r, f, e);
                }
                (Ok(WatchRes::Idle(x)), e) => {
                    has_idle = true;
                    let e = match e {
                        Some(WatchRes::Idle(ei)) => Some(ei),
                        _ => None,
                    };
                    idle_row(&mut idle, r, x, e);
                }
                (Err(e), _) if *id == "watch-idle" => {
                    has_idle = true;
                    idle.push_str(&failed(&r.name, r.target, e, 12));
                }
                (Err(e), _) => {
                    has_flow = true;
                    flow.push_str(&failed(&r.name, r.target, e, 15));
                }
            }
        }
    }
    let mut s = String::new();
    if has_flow {
        s.push_str(&flow);
    }
    if has_idle {
        if has_flow {
            s.push('\n');
        }
        s.push_str(&idle);
    }
    s
}

fn step_line(x: &StepRes) -> String {
    format!(
        "{:.0} puts/s ({} acknowledged): {}/{} events ({} missing), {:.0} events/s, p50/p99/p99.9 {}/{}/{} ms, server {} / client {} µs/event, writer lag ≤ {:.1} ms{}{}",
        x.rate,
        x.puts_acked,
        x.delivered,
        x.expected,
        x.missing(),
        x.events_per_sec,
        ms(x.p50_us as f64),
        ms(x.p99_us as f64),
        ms(x.p999_us as f64),
        opt(x.server_cpu_us, 2),
        opt(x.client_cpu_us, 2),
        x.writer_lag_ms,
        if x.disorder > 0 {
            format!(", {} events out of revision order", x.disorder)
        } else {
            String::new()
        },
        x.first_error
            .as_ref()
            .map(|e| format!(", {} put errors, first: {e}", x.put_errors))
            .unwrap_or_default(),
    )
}

pub fn notes(rows: &[WatchRow]) -> String {
    let mut s = String::new();
    for r in rows {
        let head = format!("- {} / {}", r.name, r.target);
        match &r.res {
            Err(e) => {
                let _ = writeln!(s, "{head}: failed: {}", e.replace('\n', " ⏎ "));
            }
            Ok(WatchRes::Flow(f)) => {
                for x in &f.steps {
                    let _ = writeln!(s, "{head}: {} watchers, {}", f.watchers, step_line(x));
                }
                if f.lost > 0 {
                    let _ = writeln!(
                        s,
                        "{head}: {} events still not received 10 s after the last step",
                        f.lost
                    );
                }
                if let Some(e) = &f.first_error {
                    let _ = writeln!(
                        s,
                        "{head}: {} watch stream errors, first: {e}",
                        f.stream_errors
                    );
                }
            }
            Ok(WatchRes::Idle(x)) if x.delivered != x.watchers as u64 => {
                let _ = writeln!(
                    s,
                    "{head}: the liveness put reached {} of {} watchers",
                    x.delivered, x.watchers
                );
            }
            Ok(WatchRes::Idle(_)) => {}
        }
    }
    s
}

//! The pauses table: one line per phase and target, with the writer's p99 against its own
//! baseline (the bound: ≤ 2) and against etcd's in the same phase; its legend and notes.
use std::fmt::Write as _;

use ballast_bench::report::{self, ms, opt, ratio, TargetRow};

use super::PausesRes;

pub type PausesRow = TargetRow<PausesRes>;

pub const LEGEND: &str = "\
Pauses table (not for sol; on a fresh server): the LIST set (1 KiB values) and a history of \
256 B puts over 10 000 keys are written first (about a million revisions in all). Then an \
open-loop writer puts new keys (256 B values, 2 connections) at a fixed rate through four \
phases, each put counted in the phase it was sent in: baseline (nothing else), list (one client \
LISTs the set again and again: unpaginated and paginated by 500, at the current revision and at \
the revision the set was complete at; every answer checked for every key and value; the client \
confined to the harness's first CPU at SCHED_IDLE, so that it takes little of the server's or the \
writer's CPU, as a kube-apiserver on other CPUs would take none), \
compaction (Compact at the current revision, physical=true, from its send until its answer \
or at least 2 s) and defrag (Defragment, likewise). p99 ÷ baseline = the phase's p99 over the baseline phase's p99 of \
the same target (the issue's bound: ≤ 2). Server CPU s = utime+stime over the phase. In the \
list phase the server's peak RSS (VmHWM, reset at the phase's start) is compared with the size \
of one unpaginated answer, and the writer's puts are split by the kind of LIST under way when \
they were sent: the p99 of each kind's puts over the baseline's (the phase's p99 mixes the \
kinds by the time each took, so a server whose paginated LISTs are faster spends more of the \
phase in unpaginated ones). Errors = writer errors + failed or wrong LISTs; they must be 0. On \
ballast rows \"p99 vs etcd\" divides by etcd 3.5's (else 3.4's) p99 in the same phase.";

fn row(r: &PausesRow, x: &PausesRes, etcd: Option<&PausesRes>) -> String {
    let base = x.baseline_p99_us() as f64;
    let mut s = String::new();
    for p in &x.phases {
        let vs_etcd = match (
            r.is_ballast,
            etcd.and_then(|e| e.phases.iter().find(|q| q.name == p.name)),
        ) {
            (true, Some(e)) => ratio(p.lat.p99_us as f64, e.lat.p99_us as f64),
            _ => String::new(),
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {:.1} | {} | {} | {} | {} | {} | {} | {} | {} | {vs_etcd} |",
            r.name,
            r.target,
            p.name,
            p.secs,
            p.lat.puts,
            ms(p.lat.p50_us as f64),
            ms(p.lat.p99_us as f64),
            ms(p.lat.p999_us as f64),
            ratio(p.lat.p99_us as f64, base),
            opt(p.server_cpu_secs, 1),
            p.what.replace('|', "/"),
            x.errors(),
        );
    }
    s
}

pub fn table(rows: &[PausesRow]) -> String {
    report::table("| workload | target | phase | phase s | puts | put p50 ms | put p99 ms | put p99.9 ms | p99 ÷ baseline | server CPU s | what the phase did | errors | p99 vs etcd |\n|---|---|---|--:|--:|--:|--:|--:|--:|--:|---|--:|--:|\n", rows, 11, row)
}

pub fn notes(rows: &[PausesRow]) -> String {
    report::notes(rows, |x| {
        let mut s = format!(
            "setup {:.1} s ({} revisions); writer lag ≤ {:.0} ms",
            x.setup_secs, x.revisions, x.writer_lag_ms
        );
        if let Some(e) = x.first_error.as_ref().or(x.list.first_error.as_ref()) {
            let _ = write!(s, "; first error: {e}");
        }
        s
    })
}

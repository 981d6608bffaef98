//! The lease-expiry result table, with ratios of ballast rows against etcd 3.5 (else 3.4), its
//! legend and notes.
use std::fmt::Write as _;

use ballast_bench::report::{self, ms, opt, ratio, TargetRow};

use super::ExpiryRes;

pub type ExpiryRow = TargetRow<ExpiryRes>;

pub const LEGEND: &str = "\
Lease expiry table (not for sol; on a fresh server): the leases are granted with the TTL shown \
(256 concurrent LeaseGrant calls over 8 connections), then one key is put under each with its \
lease (256 concurrent puts); no keepalive is ever sent. From the end of that setup an open-loop \
writer puts other keys (256 B values, 2 connections) at a fixed rate. From the first possible \
expiry (first grant sent + TTL), a count-only Range over the leased keys is polled every 500 ms: \
removed after = first possible expiry → first poll that counts no leased key (bounded; ±0.5 s); \
revoked/s = leases ÷ that time. Put p50/p99/p99.9 = latency of the writer's puts sent in that \
window (the p99 before it, from the end of the setup to the first possible expiry, in the \
column before-p99). Server CPU s = server utime+stime over the window; RSS after the setup → at \
the end. Errors = leased keys left + our leases LeaseLeases still lists + writer errors + 1 if \
the revisions spent in the window (less the writer's puts) are not one per revoked lease; they \
must be 0. On ballast rows \"vs etcd\" divides by etcd 3.5 (else 3.4): <1 is better; the issue's \
target is put p99 vs etcd ≤ 1.";

fn row(r: &ExpiryRow, x: &ExpiryRes, etcd: Option<&ExpiryRes>) -> String {
    let (mut vt, mut vp, mut vc) = (String::new(), String::new(), String::new());
    if let (true, Some(e)) = (r.is_ballast, etcd) {
        if let (Some(a), Some(b)) = (x.removed_secs, e.removed_secs) {
            vt = ratio(a, b);
        }
        vp = ratio(x.during.p99_us as f64, e.during.p99_us as f64);
        if let (Some(a), Some(b)) = (x.server_cpu_secs, e.server_cpu_secs) {
            vc = ratio(a, b);
        }
    }
    let removed = x
        .removed_secs
        .map_or(format!("not all: {} left", x.keys_left), |t| {
            format!("{t:.1}")
        });
    let rate = x
        .removed_secs
        .map_or("—".into(), |t| format!("{:.0}", x.leases as f64 / t));
    format!(
        "| {} | {} | {} | {} | {:.1} | {:.1} | {removed} | {rate} | {} | {} | {} | {} | {} | {} | {} → {} | {} | {vt} | {vp} | {vc} |\n",
        r.name,
        r.target,
        x.leases,
        x.ttl,
        x.grant_secs,
        x.put_secs,
        x.during.puts,
        ms(x.during.p50_us as f64),
        ms(x.during.p99_us as f64),
        ms(x.during.p999_us as f64),
        ms(x.before.p99_us as f64),
        opt(x.server_cpu_secs, 1),
        opt(x.rss_setup_mib, 0),
        opt(x.rss_end_mib, 0),
        x.errors(),
    )
}

pub fn table(rows: &[ExpiryRow]) -> String {
    report::table("| workload | target | leases | TTL s | grant s | put s | removed after s | revoked/s | puts in window | put p50 ms | put p99 ms | put p99.9 ms | before-p99 ms | server CPU s | RSS MiB | errors | removed vs etcd | p99 vs etcd | CPU vs etcd |\n|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n", rows, 16, row)
}

fn note(x: &ExpiryRes) -> String {
    let mut s = format!(
        "{} leases (TTL {} s) granted in {:.2} s, keys put in {:.2} s; first key gone {} s after the first possible expiry; {} writer puts before it (p50 {} ms), writer lag ≤ {:.0} ms; {} revisions for {} revokes",
        x.leases,
        x.ttl,
        x.grant_secs,
        x.put_secs,
        opt(x.first_removal_secs, 1),
        x.before.puts,
        ms(x.before.p50_us as f64),
        x.writer_lag_ms,
        x.revoke_revs,
        x.leases as u64 - x.keys_left,
    );
    if x.keys_left > 0 {
        let _ = write!(s, "; {} leased keys LEFT at the bound", x.keys_left);
    }
    if x.leases_left > 0 {
        let _ = write!(
            s,
            "; {} of our leases still listed by LeaseLeases",
            x.leases_left
        );
    }
    if x.polls_failed > 0 {
        let _ = write!(s, "; {} count polls failed", x.polls_failed);
    }
    if let Some(e) = &x.first_error {
        let _ = write!(s, "; {} writer errors, first: {e}", x.writer_errors);
    }
    s
}

pub fn notes(rows: &[ExpiryRow]) -> String {
    report::notes(rows, note)
}

//! The lease-keepalive result table, with ratios of ballast rows against etcd 3.5 (else 3.4),
//! its legend and notes.
use ballast_bench::report::{self, ratio, TargetRow};

use super::LeaseRes;

pub type LeaseRow = TargetRow<LeaseRes>;

pub const LEGEND: &str = "\
Lease table (not for sol; on a fresh server): the leases are granted (16 concurrent LeaseGrant \
calls, TTL 60 s), then ONE LeaseKeepAlive stream on one connection (as one etcd clientv3 client) \
keeps every lease alive in a closed loop: one keepalive in flight per lease, re-sent when its \
answer arrives. After 1 s of warmup, keepalives/s = answers ÷ measured time; latency = keepalive \
sent → its answer received; server CPU µs/keepalive = server utime+stime over the measured time ÷ \
answers, client CPU likewise for this harness; RSS at the end. Bad answers = answers (warmup \
included) whose TTL is not the lease's granted TTL or whose ID is unknown; they must be 0. \
On ballast rows \"vs etcd\" divides by etcd 3.5 (else 3.4): <1 is better, except keepalives/s.";

fn row(r: &LeaseRow, x: &LeaseRes, etcd: Option<&LeaseRes>) -> String {
    let (mut vk, mut vp, mut vc) = (String::new(), String::new(), String::new());
    if let (true, Some(e)) = (r.is_ballast, etcd) {
        vk = ratio(x.per_sec, e.per_sec);
        vp = ratio(x.m.p99_us as f64, e.m.p99_us as f64);
        if let (Some(a), Some(b)) = (x.m.server_cpu_us, e.m.server_cpu_us) {
            vc = ratio(a, b);
        }
    }
    format!(
        "| {} | {} | {} / {} | {} | {:.0} | {} | {} | {vk} | {vp} | {vc} |\n",
        r.name,
        r.target,
        x.leases,
        x.leases,
        x.answers,
        x.per_sec,
        x.m.cols(),
        x.bad,
    )
}

pub fn table(rows: &[LeaseRow]) -> String {
    report::table("| workload | target | leases / in flight | keepalives | keepalives/s | p50 ms | p99 ms | p99.9 ms | server CPU µs/keepalive | client CPU µs/keepalive | RSS MiB | bad answers | keepalives/s vs etcd | p99 vs etcd | CPU vs etcd |\n|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n", rows, 12, row)
}

pub fn notes(rows: &[LeaseRow]) -> String {
    report::notes(rows, |x| {
        format!(
            "{} leases granted in {:.2} s{}",
            x.leases,
            x.grant_secs,
            x.first_bad
                .as_ref()
                .map(|e| format!("; {} bad answers, first: {e}", x.bad))
                .unwrap_or_default()
        )
    })
}

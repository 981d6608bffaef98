//! The workloads that run each on a fresh server of their own: watch (watch-1000, watch-max,
//! watch-idle), lease-keepalive, lease-expiry, k8s and pauses; their options from the command line and their
//! progress lines.
use std::path::Path;

use ballast_bench::report::{human, ms, opt, TargetRow};

use crate::opts::{selected, Opts};
use crate::server::on_fresh_server;
use crate::targets::{Kind, Target};
use crate::{k8s, lease, pauses, watch};

/// The selected watch workloads, in the default order.
pub fn watch_selected(o: &Opts) -> Vec<&'static str> {
    watch::IDS
        .iter()
        .copied()
        .filter(|id| selected(o, id))
        .collect()
}

pub fn watch_opts(o: &Opts) -> watch::WatchOpts {
    watch::WatchOpts {
        watchers: o.watchers as usize,
        idle_watchers: o.idle_watchers as usize,
        rate: o.watch_rate,
        puts: (o.ops / 10).max(1),
        max_secs: o.max_secs,
    }
}

fn watch_name(id: &str, w: &watch::WatchOpts) -> String {
    match id {
        "watch-1000" => format!("watch {}w {:.0} puts/s", w.watchers, w.rate),
        "watch-max" => format!("watch max {}w", w.watchers),
        _ => format!("watch idle {}w", w.idle_watchers),
    }
}

/// Runs each watch workload of `ids` on a fresh server of its own (`<dir>/<id>/`), so its RSS
/// and CPU readings start from the same state for every target.
pub async fn run_watch(
    o: &Opts,
    t: &Target,
    bin: &Path,
    dir: &Path,
    ids: &[&'static str],
    rows: &mut Vec<watch::WatchRow>,
) {
    let wo = watch_opts(o);
    for id in ids {
        let wdir = dir.join(id);
        let name = watch_name(id, &wo);
        let wo = &wo;
        let res = on_fresh_server(t, bin, &wdir, o.keep_data, |url, pid| async move {
            watch::run(id, wo, &url, pid).await
        })
        .await;
        if let Err(e) = &res {
            eprintln!("bench: {} {name}: failed: {e}", t.name);
        }
        rows.push(watch::WatchRow {
            id,
            name,
            target: t.name,
            is_etcd: t.kind == Kind::Etcd,
            is_ballast: matches!(t.kind, Kind::Ballast(_)),
            res,
        });
    }
}

/// Runs lease-keepalive on a fresh server of its own (`dir`).
pub async fn run_lease(o: &Opts, t: &Target, bin: &Path, dir: &Path) -> lease::LeaseRow {
    let lo = lease::LeaseOpts {
        leases: o.leases as usize,
        secs: o.lease_secs,
        max_secs: o.max_secs,
    };
    let name = format!("lease keepalive {}", o.leases);
    let lo = &lo;
    let res = on_fresh_server(t, bin, dir, o.keep_data, |url, pid| async move {
        lease::run(lo, &url, pid).await
    })
    .await;
    match &res {
        Ok(r) => eprintln!(
            "bench: {:<16} {name}: {:.0} keepalives/s  p99 {} ms  server cpu {} µs/keepalive  bad {}",
            t.name,
            r.per_sec,
            ms(r.m.p99_us as f64),
            opt(r.m.server_cpu_us, 2),
            r.bad
        ),
        Err(e) => eprintln!("bench: {} {name}: failed: {e}", t.name),
    }
    target_row(t, name, res)
}

/// Runs k8s on a fresh server of its own (`dir`).
pub async fn run_k8s(o: &Opts, t: &Target, bin: &Path, dir: &Path) -> k8s::K8sRow {
    let (ko, max_secs) = (&o.k8s, o.max_secs);
    let name = ko.name();
    let res = on_fresh_server(t, bin, dir, o.keep_data, |url, pid| async move {
        k8s::run(ko, max_secs, &url, pid).await
    })
    .await;
    match &res {
        Ok(r) => eprintln!(
            "bench: {:<16} {name}: {} ops, server cpu {} µs/op, watch events {}/{}, errors {}, conflicts {}",
            t.name,
            r.traffic_ops(),
            opt(r.cpu_us_per_op(), 1),
            r.events.delivered,
            r.events.expected,
            r.errors(),
            r.conflicts(),
        ),
        Err(e) => eprintln!("bench: {} {name}: failed: {e}", t.name),
    }
    target_row(t, name, res)
}

/// The table row of `t`'s result of the workload `name`.
fn target_row<T>(t: &Target, name: String, res: Result<T, String>) -> TargetRow<T> {
    TargetRow {
        name,
        target: t.name,
        is_etcd: t.kind == Kind::Etcd,
        is_ballast: matches!(t.kind, Kind::Ballast(_)),
        res,
    }
}

pub fn expiry_opts(o: &Opts) -> lease::expiry::ExpiryOpts {
    let leases = o.expiring_leases as usize;
    lease::expiry::ExpiryOpts {
        leases,
        ttl: o.expiry_ttl as i64,
        rate: o.expiry_rate,
        max_secs: o.max_secs,
        // Both revoke ~1000 leases/s: 3x that, and at least 300 s.
        removal_secs: (leases as f64 * 3.0 / 1000.0).max(300.0),
    }
}

/// Runs lease-expiry on a fresh server of its own (`dir`).
pub async fn run_lease_expiry(
    o: &Opts,
    t: &Target,
    bin: &Path,
    dir: &Path,
) -> lease::expiry::ExpiryRow {
    let eo = expiry_opts(o);
    let name = format!("lease expiry {}", human(o.expiring_leases));
    let eo = &eo;
    let res = on_fresh_server(t, bin, dir, o.keep_data, |url, pid| async move {
        lease::expiry::run(eo, &url, pid).await
    })
    .await;
    match &res {
        Ok(r) => eprintln!(
            "bench: {:<16} {name}: all keys removed after {} s ({} left)  put p99 {} ms (before {} ms)  server cpu {} s  errors {}",
            t.name,
            opt(r.removed_secs, 1),
            r.keys_left,
            ms(r.during.p99_us as f64),
            ms(r.before.p99_us as f64),
            opt(r.server_cpu_secs, 1),
            r.errors(),
        ),
        Err(e) => eprintln!("bench: {} {name}: failed: {e}", t.name),
    }
    target_row(t, name, res)
}

pub fn pause_opts(o: &Opts) -> pauses::PausesOpts {
    pauses::PausesOpts {
        list_keys: o.pause_list_keys as usize,
        history_puts: o.pause_history as usize,
        rate: o.pause_rate,
        phase_secs: o.pause_secs,
        max_secs: o.load_max_secs,
    }
}

/// Runs pauses on a fresh server of its own (`dir`).
pub async fn run_pauses(o: &Opts, t: &Target, bin: &Path, dir: &Path) -> pauses::PausesRow {
    let po = pause_opts(o);
    let name = format!("pauses {} listed, {} revisions", human(o.pause_list_keys), human(o.pause_list_keys + o.pause_history));
    let po = &po;
    let res = on_fresh_server(t, bin, dir, o.keep_data, |url, pid| async move {
        pauses::run(po, &url, pid).await
    })
    .await;
    match &res {
        Ok(r) => {
            for p in &r.phases {
                eprintln!(
                    "bench: {:<16} {name} / {}: {:.1} s, put p99 {} ms (baseline {} ms); {}",
                    t.name,
                    p.name,
                    p.secs,
                    ms(p.lat.p99_us as f64),
                    ms(r.baseline_p99_us() as f64),
                    p.what,
                );
            }
        }
        Err(e) => eprintln!("bench: {} {name}: failed: {e}", t.name),
    }
    target_row(t, name, res)
}

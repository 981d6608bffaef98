//! k8s (see bench/README.md, "Kubernetes"): what kube-apiserver sends to its etcd, modelled on
//! its etcd3 store (k8s.io/apiserver/pkg/storage/etcd3).
//!
//! 1. Preload (`preload.rs`): pods, configmaps, services, events (leased), nodes and node
//!    leases under `/registry/…`, 1–10 KiB each (`objects.rs`).
//! 2. The apiserver starts: a paginated LIST (limit 500) of every resource prefix, concurrently,
//!    then a watch per prefix from the LIST's revision + 1 with prev_kv and progress_notify
//!    (`watch.rs`).
//! 3. Open-loop traffic for `--k8s-secs` (`traffic.rs`): pod creates / GuaranteedUpdates /
//!    deletes as the store's txns (`store.rs`), event creates under the lease manager's lease
//!    (`leases.rs`), node lease heartbeats every 10 s per node, node status updates every 60 s
//!    per node, namespace LISTs, and the compactor every `--k8s-compact-secs`.
//! 4. Every applied write must arrive on its prefix's watch, in revision order, with the right
//!    prev_kv (`check.rs`). Reported per operation type: count, errors, conflicts, p50/p99/p99.9
//!    from the due time; server CPU per op over the traffic; RSS (`table.rs`).
mod check;
mod leases;
mod ledger;
mod objects;
mod preload;
mod store;
mod table;
mod traffic;
mod watch;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ballast_bench::procstat::{clk_tck, cpu_ticks, rss_mib, thread_note, thread_reading};
use ballast_bench::walsync;

use check::EventCheck;
use ledger::{OpKind, OpStats};
use objects::{Pool, Resource};
use store::Compactor;
pub use table::{notes, table, K8sRow, LEGEND};

pub const ID: &str = "k8s";
/// How long after the traffic's last answer the watches may still deliver its events.
const DRAIN_SECS: f64 = 10.0;
/// How often each watch stream sends a RequestProgress.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

#[derive(Clone)]
pub struct K8sOpts {
    pub secs: f64,
    pub nodes: u64,
    pub pods: u64,
    pub pod_rate: f64,
    pub event_rate: f64,
    pub list_rate: f64,
    pub compact_secs: f64,
    pub lease_reuse_secs: i64,
    /// The events' TTL (kube-apiserver's `--event-ttl`); a run longer than it sees the
    /// server delete expired events.
    pub event_ttl_secs: i64,
    /// LIST page size.
    pub list_limit: i64,
}

impl Default for K8sOpts {
    fn default() -> Self {
        K8sOpts {
            secs: 60.0,
            nodes: 500,
            pods: 5000,
            pod_rate: 70.0,
            event_rate: 50.0,
            list_rate: 1.0,
            compact_secs: 60.0,
            lease_reuse_secs: 60,
            event_ttl_secs: leases::EVENT_TTL,
            list_limit: 500,
        }
    }
}

impl K8sOpts {
    /// Sets the `--k8s-…` option `name` to `val`.
    pub fn set(&mut self, name: &str, val: &str) -> Result<(), String> {
        let num = |v: &str| {
            v.replace('_', "")
                .parse::<u64>()
                .map_err(|e| format!("{name}: {e}"))
        };
        let real = |v: &str| {
            v.parse::<f64>()
                .ok()
                .filter(|x| x.is_finite() && *x >= 0.0)
                .ok_or_else(|| format!("{name}: not a non-negative number: {v}"))
        };
        match name {
            "--k8s-secs" => self.secs = real(val)?.max(1.0),
            "--k8s-nodes" => self.nodes = num(val)?.max(1),
            "--k8s-pods" => self.pods = num(val)?.max(1),
            "--k8s-pod-rate" => self.pod_rate = real(val)?,
            "--k8s-event-rate" => self.event_rate = real(val)?,
            "--k8s-list-rate" => self.list_rate = real(val)?,
            "--k8s-compact-secs" => self.compact_secs = real(val)?,
            "--k8s-lease-reuse-secs" => self.lease_reuse_secs = num(val)? as i64,
            "--k8s-event-ttl" => self.event_ttl_secs = num(val)?.clamp(1, 1 << 31) as i64,
            _ => return Err(format!("unknown option {name}")),
        }
        Ok(())
    }

    /// The row name.
    pub fn name(&self) -> String {
        format!(
            "k8s {} nodes {} pods {:.0} s",
            self.nodes, self.pods, self.secs
        )
    }

    /// One line of parameters for the results file.
    pub fn describe(&self) -> String {
        format!(
            "{} nodes (heartbeat every {:.0} s, status every {:.0} s), {} pods preloaded ({} objects in all), {:.0} pod writes/s (1:5:1 create:update:delete), {:.0} event creates/s (TTL {} s, lease reuse {} s), {:.1} namespace LISTs/s, LIST limit {}, compaction every {:.0} s, {:.0} s of traffic",
            self.nodes,
            traffic::HEARTBEAT_SECS,
            traffic::NODE_STATUS_SECS,
            self.pods,
            preload::counts(self.pods, self.nodes).iter().sum::<u64>(),
            self.pod_rate,
            self.event_rate,
            self.event_ttl_secs,
            leases::reuse_secs(self.lease_reuse_secs, self.event_ttl_secs),
            self.list_rate,
            self.list_limit,
            self.compact_secs,
            self.secs,
        )
    }

    fn rates(&self) -> traffic::Rates {
        traffic::Rates {
            secs: self.secs,
            nodes: self.nodes,
            pod_rate: self.pod_rate,
            event_rate: self.event_rate,
            list_rate: self.list_rate,
            compact_secs: self.compact_secs,
            list_limit: self.list_limit,
        }
    }
}

/// The apiserver's state: its view of the objects it writes, its lease manager, its compactor.
pub struct World {
    pods: Pool,
    nodes: Pool,
    node_leases: Pool,
    /// Only its index counter: events are created, never written again.
    events: Pool,
    leases: leases::LeaseManager,
    compactor: tokio::sync::Mutex<Compactor>,
}

pub struct K8sRes {
    /// Per `OpKind::ALL`.
    pub ops: Vec<OpStats>,
    pub sent: Vec<u64>,
    pub events: EventCheck,
    /// The traffic and the drain of its events, seconds.
    pub secs: f64,
    pub server_cpu_secs: Option<f64>,
    pub client_cpu_secs: Option<f64>,
    /// Server CPU of the apiserver's start (initial LISTs, watches created).
    pub start_cpu_secs: Option<f64>,
    pub rss_mib: Option<f64>,
    pub preloaded: u64,
    pub preload_mib: f64,
    pub preload_secs: f64,
    pub list_pages: u64,
    pub list_keys: u64,
    pub leases_granted: u64,
    pub pods_end: usize,
    pub lag_ms: f64,
    /// Per traffic request of at least `ledger::SLOW_US`: the second it was due in.
    pub slow_secs: Vec<u64>,
    /// The slow writes' shape (`ledger::tail_shape`).
    pub tail_shape: Option<String>,
    /// The server's durable WAL writes over the traffic (its fsync histogram).
    pub wal_syncs: Option<walsync::WalSyncs>,
    pub watch_errors: u64,
    pub watch_error: Option<String>,
    /// The traffic's server CPU per op by kind of thread (ballast only).
    pub thread_note: Option<String>,
}

impl K8sRes {
    pub fn op(&self, k: OpKind) -> &OpStats {
        &self.ops[k.index()]
    }

    /// Requests of the traffic answered (conflicts included): the denominator of CPU per op.
    pub fn traffic_ops(&self) -> u64 {
        OpKind::ALL
            .iter()
            .filter(|k| **k != OpKind::InitialList)
            .map(|k| self.op(*k).count() + self.op(*k).conflicts)
            .sum()
    }

    pub fn cpu_us_per_op(&self) -> Option<f64> {
        let n = self.traffic_ops();
        self.server_cpu_secs
            .filter(|_| n > 0)
            .map(|s| s * 1e6 / n as f64)
    }

    pub fn client_cpu_us_per_op(&self) -> Option<f64> {
        let n = self.traffic_ops();
        self.client_cpu_secs
            .filter(|_| n > 0)
            .map(|s| s * 1e6 / n as f64)
    }

    /// Failed requests, event check failures and watch stream errors: all must be 0.
    pub fn errors(&self) -> u64 {
        self.ops.iter().map(|s| s.errors).sum::<u64>() + self.events.errors() + self.watch_errors
    }

    pub fn conflicts(&self) -> u64 {
        self.ops.iter().map(|s| s.conflicts).sum()
    }
}

fn cpu_secs(a: Option<u64>, b: Option<u64>) -> Option<f64> {
    a.zip(b)
        .map(|(a, b)| b.saturating_sub(a) as f64 / clk_tck())
}

/// The apiserver's start: a paginated LIST per resource, concurrently; per resource the
/// revision its watch starts after. Lists that miss preloaded keys count as errors.
async fn initial_lists(
    url: &str,
    o: &K8sOpts,
    want: &[u64],
    stats: &mut OpStats,
) -> Result<(Vec<(Resource, i64)>, u64, u64), String> {
    let ch = crate::watch::connect(url).await?;
    let mut set = tokio::task::JoinSet::new();
    for r in Resource::ALL {
        let (ch, limit) = (ch.clone(), o.list_limit);
        set.spawn(async move {
            let t = Instant::now();
            let l = store::list(&ch, r.prefix().as_bytes(), limit).await;
            (r, t.elapsed().as_micros() as u64, l)
        });
    }
    let (mut starts, mut pages, mut keys) = (Vec::new(), 0, 0);
    for (r, lat_us, l) in set.join_all().await {
        let l = l?;
        if l.keys == want[r.index()] {
            stats.ok(lat_us);
        } else {
            stats.error(format!(
                "LIST {} read {} keys, {} were written",
                r.prefix(),
                l.keys,
                want[r.index()]
            ));
        }
        starts.push((r, l.rev));
        pages += l.pages;
        keys += l.keys;
    }
    starts.sort_by_key(|(r, _)| r.index());
    Ok((starts, pages, keys))
}

pub async fn run(o: &K8sOpts, max_secs: f64, url: &str, pid: i32) -> Result<K8sRes, String> {
    let base = Instant::now();
    let world = Arc::new(World {
        pods: Pool::default(),
        nodes: Pool::default(),
        node_leases: Pool::default(),
        events: Pool::default(),
        leases: leases::LeaseManager::new(o.lease_reuse_secs, o.event_ttl_secs),
        compactor: tokio::sync::Mutex::new(Compactor::default()),
    });
    let pre = preload::run(url, &world, o.pods, o.nodes, max_secs).await?;
    let me = std::process::id() as i32;
    let cpu0 = cpu_ticks(pid);
    let mut initial = OpStats::default();
    let (lists, list_pages, list_keys) = initial_lists(url, o, &pre.objects, &mut initial).await?;
    let starts = lists.iter().map(|(r, rev)| (*r, rev + 1)).collect();
    let watches = watch::Watches::start(url, starts, base, PROGRESS_EVERY).await?;
    watches
        .wait_created(Resource::ALL.len() as u64, max_secs)
        .await?;
    let syncs1 = walsync::read(url);
    let (threads1, me1) = (thread_reading(pid), cpu_ticks(me));
    let cpu1 = threads1.map(|r| r.total_ticks);
    let t1 = Instant::now();
    let mut done = traffic::run(url, world.clone(), &o.rates(), base).await?;
    let expected = done.ledger.writes.len() as u64;
    let until = Instant::now() + Duration::from_secs_f64(DRAIN_SECS);
    while watches.events() < expected && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (threads2, me2, rss) = (thread_reading(pid), cpu_ticks(me), rss_mib(pid));
    let wal_syncs = walsync::read(url).zip(syncs1).map(|(after, before)| after.since(&before));
    let cpu2 = threads2.map(|r| r.total_ticks);
    let secs = t1.elapsed().as_secs_f64();
    let log = watches.stop();
    let events = check::check(&done.ledger.writes, &pre.events, &log);
    let mut ops = std::mem::take(&mut done.ledger.ops);
    ops[OpKind::InitialList.index()] = initial;
    let mut sent = done.sent;
    sent[OpKind::InitialList.index()] = Resource::ALL.len() as u64;
    let mut res = K8sRes {
        ops,
        sent,
        events,
        secs,
        server_cpu_secs: cpu_secs(cpu1, cpu2),
        client_cpu_secs: cpu_secs(me1, me2),
        start_cpu_secs: cpu_secs(cpu0, cpu1),
        rss_mib: rss,
        preloaded: pre.objects.iter().sum(),
        preload_mib: pre.bytes as f64 / (1 << 20) as f64,
        preload_secs: pre.secs,
        list_pages,
        list_keys,
        leases_granted: world.leases.granted.load(Ordering::Relaxed),
        pods_end: world.pods.len(),
        lag_ms: done.max_lag_ms,
        slow_secs: done.ledger.slow_secs,
        tail_shape: ledger::tail_shape(&done.ledger.write_lats),
        wal_syncs,
        watch_errors: log.errors,
        watch_error: log.first_error,
        thread_note: None,
    };
    res.thread_note = threads1.zip(threads2).and_then(|(a, b)| thread_note(&a, &b, res.traffic_ops()));
    Ok(res)
}

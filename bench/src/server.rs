//! Server processes: spawn on free loopback ports, readiness (and on a secure target the auth
//! setup), stop (SIGTERM, then SIGKILL), and the run of one workload on a fresh server of its own.
//! A cluster target (`Target::members` > 1) is its first member, the others in `others`: they
//! are started, checked and stopped together, and the KV load spreads its connections over all.
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ballast_bench::proto::etcdserverpb::kv_client::KvClient;
use ballast_bench::proto::etcdserverpb::RangeRequest;
use tonic::transport::{Channel, Endpoint};

use crate::secure::{Link, Secure};
use crate::targets::{Kind, Target};

pub struct Server {
    child: Child,
    pub pid: i32,
    pub url: String,
    pub log: PathBuf,
    /// Taken just before the spawn: the restart workload's "time to serving" starts here.
    pub spawned: Instant,
    /// A secure target's certificates (its URL is https, auth is enabled once it serves).
    pub secure: Option<Arc<Secure>>,
    /// The other members of a cluster target (empty for a single server).
    pub others: Vec<Server>,
}

/// How a server stopped: after SIGTERM within the bound, or SIGKILLed.
pub struct Stopped {
    pub clean: bool,
    pub secs: f64,
}

impl Server {
    /// How clients reach this server.
    pub fn link(&self) -> Link {
        Link {
            url: self.url.clone(),
            secure: self.secure.clone(),
        }
    }

    /// How clients reach each member (this one first).
    pub fn links(&self) -> Vec<Link> {
        std::iter::once(self).chain(&self.others).map(Server::link).collect()
    }

    /// Every member's process id (this one first).
    pub fn pids(&self) -> Vec<i32> {
        std::iter::once(self).chain(&self.others).map(|s| s.pid).collect()
    }

    /// SIGTERM, a bounded wait (10 s), then SIGKILL; always reaps. The other members of a
    /// cluster first; the result is this member's.
    pub fn stop(&mut self) -> Stopped {
        for o in &mut self.others {
            o.stop();
        }
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

    /// Why this server (or another member of its cluster) exited, if one did.
    pub fn exited(&mut self) -> Option<String> {
        if let Some(e) = self.others.iter_mut().find_map(Server::exited) {
            return Some(e);
        }
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

pub fn tail(p: &Path, n: usize) -> String {
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

/// Starts `t` on a fresh (emptied) `dir`: data in `dir/data`, log in `dir/server.log`. Dirty
/// pages of earlier servers are flushed first (sync(2)), so their writeback does not compete with
/// this server's fsyncs.
pub fn start(t: &Target, bin: &Path, dir: &Path) -> Result<Server, String> {
    let _ = std::fs::remove_dir_all(dir);
    // SAFETY: sync(2) has no preconditions.
    unsafe { libc::sync() };
    std::fs::create_dir_all(dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
    if t.members > 1 {
        spawn_cluster(t, bin, dir)
    } else {
        spawn(t, bin, dir, "server.log")
    }
}

/// `n` distinct free loopback ports.
fn distinct_ports(n: usize) -> Vec<u16> {
    let mut ports: Vec<u16> = Vec::with_capacity(n);
    while ports.len() < n {
        let p = free_port();
        if !ports.contains(&p) {
            ports.push(p);
        }
    }
    ports
}

/// How one member is named and joins: its name, `--initial-cluster`, and its data dir.
struct Membership<'a> {
    name: &'a str,
    initial_cluster: &'a str,
    data: &'a Path,
}

/// Starts the `t.members` members of a cluster target as a new cluster on fresh ports: member
/// i is `m<i>`, its data in `dir/data/m<i>`, its log `dir/server-m<i>.log`. Member 0 is the
/// server returned, the others in its `others`.
fn spawn_cluster(t: &Target, bin: &Path, dir: &Path) -> Result<Server, String> {
    let ports = distinct_ports(2 * t.members);
    let peer = |i: usize| format!("http://127.0.0.1:{}", ports[2 * i + 1]);
    let initial_cluster: Vec<String> = (0..t.members).map(|i| format!("m{i}={}", peer(i))).collect();
    let initial_cluster = initial_cluster.join(",");
    let mut members = Vec::with_capacity(t.members);
    for i in 0..t.members {
        let name = format!("m{i}");
        let data = dir.join("data").join(&name);
        let m = Membership { name: &name, initial_cluster: &initial_cluster, data: &data };
        let log = format!("server-{name}.log");
        members.push(spawn_member(t, bin, dir, &log, (ports[2 * i], ports[2 * i + 1]), &m)?);
    }
    let mut first = members.remove(0);
    first.others = members;
    Ok(first)
}

/// The command line of `t` serving clients on `url`, peers on `peer`, as member `m` (etcd flags;
/// ballast adds its shard count; a secure target its TLS and auth flags; sol takes the client
/// URLs only).
fn server_args(t: &Target, m: &Membership, url: &str, peer: &str) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "--listen-client-urls".into(),
        url.to_string(),
        "--advertise-client-urls".into(),
        url.to_string(),
    ];
    if t.kind != Kind::Sol {
        args.extend(
            [
                "--name",
                m.name,
                "--data-dir",
                &m.data.to_string_lossy(),
                "--listen-peer-urls",
                peer,
                "--initial-advertise-peer-urls",
                peer,
                "--initial-cluster",
                m.initial_cluster,
                "--quota-backend-bytes",
                "8589934592",
            ]
            .map(String::from),
        );
    }
    if let Kind::Ballast(n) = t.kind {
        args.extend(["--shards".to_string(), n.to_string()]);
    }
    if let Some(s) = &t.secure {
        args.extend(s.server_flags());
    }
    args
}

/// Starts `t` on whatever `dir/data` holds (fresh ports), logging to `dir/<log_name>`.
pub fn spawn(t: &Target, bin: &Path, dir: &Path, log_name: &str) -> Result<Server, String> {
    let ports = distinct_ports(2);
    let peer = format!("http://127.0.0.1:{}", ports[1]);
    let initial_cluster = format!("default={peer}");
    let data = dir.join("data");
    let m = Membership { name: "default", initial_cluster: &initial_cluster, data: &data };
    spawn_member(t, bin, dir, log_name, (ports[0], ports[1]), &m)
}

/// Starts `t` as member `m` on the client and peer ports `(cport, pport)`, logging to
/// `dir/<log_name>`.
fn spawn_member(
    t: &Target,
    bin: &Path,
    dir: &Path,
    log_name: &str,
    (cport, pport): (u16, u16),
    m: &Membership,
) -> Result<Server, String> {
    let log = dir.join(log_name);
    let scheme = if t.secure.is_some() { "https" } else { "http" };
    let url = format!("{scheme}://127.0.0.1:{cport}");
    let peer = format!("http://127.0.0.1:{pport}");
    let args = server_args(t, m, &url, &peer);
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
        secure: t.secure.clone(),
        others: Vec::new(),
    })
}

pub async fn connect(url: &str) -> Result<Channel, String> {
    dial(endpoint(url)?, url).await
}

/// The bench's connection settings for `url`, plain or (after `tls_config`) secure.
pub fn endpoint(url: &str) -> Result<Endpoint, String> {
    Ok(Endpoint::from_shared(url.to_string())
        .map_err(|e| e.to_string())?
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(30))
        .tcp_nodelay(true))
}

pub async fn dial(endpoint: Endpoint, url: &str) -> Result<Channel, String> {
    endpoint.connect().await.map_err(|e| format!("connect {url}: {e}"))
}

/// Polls a linearizable Range until it succeeds (bounded: 60 s); a secure target then gets its
/// users, role and auth enabled.
pub async fn wait_ready(s: &mut Server) -> Result<(), String> {
    let until = Instant::now() + Duration::from_secs(60);
    let mut last = String::new();
    while Instant::now() < until {
        if let Some(e) = s.exited() {
            return Err(e);
        }
        let ch = match &s.secure {
            None => connect(&s.url).await,
            Some(sec) => sec.channel(&s.url).await,
        };
        if let Ok(ch) = ch {
            let mut kv = KvClient::new(ch);
            let req = RangeRequest {
                key: b"bench/ready".to_vec(),
                ..Default::default()
            };
            match tokio::time::timeout(Duration::from_secs(2), kv.range(req)).await {
                Ok(Ok(_)) => {
                    return match &s.secure {
                        None => Ok(()),
                        Some(sec) => sec.enable_auth(&s.url).await,
                    }
                }
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

/// Starts `t` on a fresh `dir`, runs `f(url, pid)` against it once it serves, stops it (removing
/// its data dir unless `keep_data`). A server that exited meanwhile fails the run.
pub async fn on_fresh_server<T, F, Fut>(
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

//! A cluster of real member processes on loopback for fault tests: etcd 3.5 or ballast (both
//! take etcd's flags), each with its own data dir and client port, its peer traffic through
//! `peer_proxy` so that links can be cut. Members are killed by PID (SIGKILL) and restarted on
//! the same data dir and ports; the leader is found with Maintenance.Status. Processes are
//! killed when the cluster is dropped; on a panic their dirs are kept and their log tails
//! printed. Every wait is bounded in time.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use etcd_client::{Client, ConnectOptions, MemberAddOptions, StatusResponse};

use crate::peer_proxy::PeerProxies;

/// Which binary the fault tests run: `BALLAST_FAULTS_TARGET=ballast|etcd` (ballast by default:
/// this build's binary unless `BALLAST_FAULTS_BIN` names another; etcd 3.5 is the reference).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Target {
    Etcd,
    Ballast,
}

impl Target {
    pub fn from_env() -> Target {
        match std::env::var("BALLAST_FAULTS_TARGET").as_deref() {
            Ok("ballast") | Err(_) => Target::Ballast,
            Ok("etcd") => Target::Etcd,
            Ok(other) => panic!("BALLAST_FAULTS_TARGET={other}: expected etcd or ballast"),
        }
    }

    fn binary(self) -> PathBuf {
        match self {
            Target::Etcd => crate::etcd::find_etcd35().unwrap_or_else(|e| panic!("etcd 3.5 is needed: {e}")),
            // BALLAST_FAULTS_BIN: another ballast build (a release one, another branch's).
            Target::Ballast => std::env::var_os("BALLAST_FAULTS_BIN")
                .map_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_ballast")), PathBuf::from),
        }
    }
}

/// How long a cluster may take to elect its first leader.
const START_BOUND: Duration = Duration::from_secs(30);
/// Status calls and their connection: short, so a dead member answers quickly.
const STATUS_TIMEOUT: Duration = Duration::from_millis(500);
const POLL_PAUSE: Duration = Duration::from_millis(50);
/// Log lines shown per member when a test fails.
const LOG_TAIL_LINES: usize = 20;

pub struct Member {
    pub name: String,
    pub client_port: u16,
    /// The port it listens on for peers (its proxy's port is what it advertises).
    pub peer_port: u16,
    pub dir: PathBuf,
    child: Option<Child>,
    /// Its raft member id, once known.
    pub id: u64,
    /// Flags every start of this member gets (the `--initial-cluster*` ones).
    initial: Vec<String>,
}

impl Member {
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join(format!("{}.log", self.name))
    }

    pub fn log(&self) -> String {
        std::fs::read(self.log_path()).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default()
    }
}

pub struct Cluster {
    pub target: Target,
    bin: PathBuf,
    pub members: Vec<Member>,
    pub proxies: PeerProxies,
    token: String,
}

impl Cluster {
    /// Starts `size` members as a new cluster and waits (bounded) until they agree on a leader.
    pub async fn start(target: Target, size: usize) -> Cluster {
        let mut proxies = PeerProxies::new();
        let root = crate::common::fresh_dir("procs3");
        let mut members = Vec::new();
        let mut used = Vec::new();
        for i in 0..size {
            let peer_port = distinct_port(&mut used);
            let client_port = distinct_port(&mut used);
            let proxy = proxies.add_member(peer_port).await;
            assert!(!used.contains(&proxies.proxy_ports[proxy]), "a proxy took a port chosen for a member");
            used.push(proxies.proxy_ports[proxy]);
            let dir = root.join(format!("m{i}"));
            std::fs::create_dir_all(&dir).unwrap();
            let name = format!("m{i}");
            members.push(Member { name, client_port, peer_port, dir, child: None, id: 0, initial: Vec::new() });
        }
        let token = format!("faults-{}-{}", std::process::id(), root.file_name().unwrap().to_string_lossy());
        let mut c = Cluster { target, bin: target.binary(), members, proxies, token };
        let initial_cluster = c.initial_cluster(size);
        for i in 0..size {
            c.members[i].initial = vec![
                "--initial-cluster".into(),
                initial_cluster.clone(),
                "--initial-cluster-state".into(),
                "new".into(),
            ];
            c.spawn(i);
        }
        c.learn_ids(START_BOUND).await;
        c.wait_leader(None, START_BOUND).await.unwrap_or_else(|e| panic!("{e}"));
        c
    }

    /// Waits (bounded) until every member answers Status, and keeps their member ids.
    async fn learn_ids(&mut self, bound: Duration) {
        let started = Instant::now();
        for i in 0..self.members.len() {
            while self.members[i].id == 0 {
                assert!(started.elapsed() < bound, "{} did not answer Status within {bound:?}", self.members[i].name);
                match self.status(i).await {
                    Ok(s) => self.members[i].id = s.header().expect("a header").member_id(),
                    Err(_) => tokio::time::sleep(POLL_PAUSE).await,
                }
            }
        }
    }

    /// `--initial-cluster` for the first `n` members: their proxies' URLs.
    fn initial_cluster(&self, n: usize) -> String {
        (0..n).map(|i| format!("{}={}", self.members[i].name, self.peer_url(i))).collect::<Vec<_>>().join(",")
    }

    /// The peer URL member `i` advertises: its proxy.
    pub fn peer_url(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.proxies.proxy_ports[i])
    }

    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(Member::endpoint).collect()
    }

    fn spawn(&mut self, i: usize) {
        let m = &mut self.members[i];
        assert!(m.child.is_none(), "{} is running", m.name);
        let client = m.endpoint();
        let peer = format!("http://127.0.0.1:{}", m.peer_port);
        let advertised_peer = format!("http://127.0.0.1:{}", self.proxies.proxy_ports[i]);
        let log = std::fs::OpenOptions::new().create(true).append(true).open(m.log_path()).unwrap();
        let child = Command::new(&self.bin)
            .args(["--name", &m.name])
            .args(["--data-dir", m.dir.join("data").to_str().unwrap()])
            .args(["--listen-client-urls", &client, "--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &advertised_peer])
            .args(["--initial-cluster-token", &self.token])
            .args(&m.initial)
            .current_dir(&m.dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", self.bin.display()));
        self.proxies.set_pid(i, Some(child.id()));
        m.child = Some(child);
    }

    /// SIGKILL member `i` by its PID.
    pub fn kill(&mut self, i: usize) {
        crate::common::kill_child(&mut self.members[i].child);
        self.proxies.set_pid(i, None);
    }

    /// Starts member `i` again on its data dir and ports.
    pub fn restart(&mut self, i: usize) {
        self.spawn(i);
    }

    /// A client of member `i` alone, every call bounded by `timeout`.
    pub async fn client(&self, i: usize, timeout: Duration) -> Client {
        let opts = ConnectOptions::new().with_timeout(timeout).with_connect_timeout(timeout);
        Client::connect([self.members[i].endpoint()], Some(opts)).await.expect("a client (connects lazily)")
    }

    /// Maintenance.Status of member `i` (bounded by `STATUS_TIMEOUT`).
    pub async fn status(&self, i: usize) -> Result<StatusResponse, String> {
        let mut c = self.client(i, STATUS_TIMEOUT).await;
        c.status().await.map_err(|e| e.to_string())
    }

    /// The leader as the running members answering Status see it (see `leader_among`).
    pub async fn leader(&self) -> Option<usize> {
        self.leader_among(&self.all()).await
    }

    /// Every member's index.
    pub fn all(&self) -> Vec<usize> {
        (0..self.members.len()).collect()
    }

    /// The leader as the running ones of `members` see it: Some(index) when every one that
    /// answers Status names the same member, which is running.
    pub async fn leader_among(&self, members: &[usize]) -> Option<usize> {
        let mut seen = None;
        for &i in members.iter().filter(|&&i| self.members[i].is_running()) {
            let Ok(s) = self.status(i).await else { continue };
            let leader_id = s.leader();
            if leader_id == 0 || seen.is_some_and(|l| l != leader_id) {
                return None;
            }
            seen = Some(leader_id);
        }
        let id = seen?;
        self.members.iter().position(|m| m.id == id).filter(|&i| self.members[i].is_running())
    }

    /// Waits (bounded by `bound`) until the running members agree on a running leader other
    /// than `not`: the leader and how long it took.
    pub async fn wait_leader(&self, not: Option<usize>, bound: Duration) -> Result<(usize, Duration), String> {
        self.wait_leader_among(&self.all(), not, bound).await
    }

    /// `wait_leader` as the running ones of `members` see it.
    pub async fn wait_leader_among(
        &self,
        members: &[usize],
        not: Option<usize>,
        bound: Duration,
    ) -> Result<(usize, Duration), String> {
        let started = Instant::now();
        while started.elapsed() < bound {
            if let Some(l) = self.leader_among(members).await {
                if Some(l) != not {
                    return Ok((l, started.elapsed()));
                }
            }
            tokio::time::sleep(POLL_PAUSE).await;
        }
        Err(format!("members {members:?} agreed on no leader (other than {not:?}) within {bound:?}"))
    }

    /// Adds a member as a learner (MemberAdd through the leader) and starts it with
    /// `--initial-cluster-state existing`: its index.
    pub async fn add_learner(&mut self) -> usize {
        let mut used: Vec<u16> = self.members.iter().flat_map(|m| [m.client_port, m.peer_port]).collect();
        used.extend(&self.proxies.proxy_ports);
        let (peer_port, client_port) = (distinct_port(&mut used), distinct_port(&mut used));
        let i = self.proxies.add_member(peer_port).await;
        let root = self.members[0].dir.parent().unwrap().to_path_buf();
        let name = format!("m{i}");
        let dir = root.join(&name);
        std::fs::create_dir_all(&dir).unwrap();
        self.members.push(Member { name, client_port, peer_port, dir, child: None, id: 0, initial: Vec::new() });
        let url = self.peer_url(i);
        let added = self
            .retry_unhealthy("MemberAdd of a learner", |mut c| {
                let url = url.clone();
                async move { c.member_add([url], Some(MemberAddOptions::new().with_is_learner())).await }
            })
            .await;
        self.members[i].id = added.member().expect("the added member").id();
        let initial: Vec<String> = added
            .member_list()
            .iter()
            .map(|m| {
                let name = if m.id() == self.members[i].id { self.members[i].name.clone() } else { m.name().to_string() };
                m.peer_urls().iter().map(|u| format!("{name}={u}")).collect::<Vec<_>>().join(",")
            })
            .collect();
        self.members[i].initial =
            vec!["--initial-cluster".into(), initial.join(","), "--initial-cluster-state".into(), "existing".into()];
        self.spawn(i);
        i
    }

    /// MemberPromote of learner `i` through the leader (one attempt: a learner not yet in sync
    /// is refused).
    pub async fn promote(&self, i: usize) -> Result<(), String> {
        let leader = self.leader().await.ok_or("no leader")?;
        let mut c = self.client(leader, START_BOUND).await;
        c.member_promote(self.members[i].id).await.map(|_| ()).map_err(|e| e.to_string())
    }

    /// MemberRemove of member `i` through the leader (another member), then its process killed.
    pub async fn remove(&mut self, i: usize) {
        let id = self.members[i].id;
        self.retry_unhealthy("MemberRemove", |mut c| async move { c.member_remove(id).await }).await;
        self.kill(i);
    }

    /// Calls `call` with a client of the leader until it is not refused as "unhealthy cluster"
    /// (bounded by `START_BOUND`): with --strict-reconfig-check (the default) etcd refuses a
    /// membership change until the leader has been connected to every voting member for 5 s.
    async fn retry_unhealthy<T, F, Fut>(&self, what: &str, call: F) -> T
    where
        F: Fn(Client) -> Fut,
        Fut: std::future::Future<Output = Result<T, etcd_client::Error>>,
    {
        let started = Instant::now();
        loop {
            let (leader, _) = self.wait_leader(None, START_BOUND).await.unwrap_or_else(|e| panic!("{e}"));
            match call(self.client(leader, START_BOUND).await).await {
                Ok(r) => return r,
                Err(e) if e.to_string().contains("unhealthy cluster") && started.elapsed() < START_BOUND => {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                Err(e) => panic!("{what}: {e}"),
            }
        }
    }

    /// The members the cluster lists (MemberList through member `via`): (id, is learner).
    pub async fn member_list(&self, via: usize) -> Vec<(u64, bool)> {
        let mut c = self.client(via, START_BOUND).await;
        let list = c.member_list().await.unwrap_or_else(|e| panic!("MemberList: {e}"));
        list.members().iter().map(|m| (m.id(), m.is_learner())).collect()
    }

    /// The running members' indexes.
    pub fn running(&self) -> Vec<usize> {
        self.all().into_iter().filter(|&i| self.members[i].is_running()).collect()
    }

    /// The members that are not the leader.
    pub fn followers(&self, leader: usize) -> Vec<usize> {
        (0..self.members.len()).filter(|&i| i != leader).collect()
    }
}

/// A free port not in `used`, added to it.
fn distinct_port(used: &mut Vec<u16>) -> u16 {
    loop {
        let p = crate::common::free_port();
        if !used.contains(&p) {
            used.push(p);
            return p;
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
        if std::thread::panicking() {
            for m in &self.members {
                let log = m.log();
                let tail: Vec<&str> = log.lines().rev().take(LOG_TAIL_LINES).collect();
                eprintln!("{} ({}) log tail, dir kept at {}:", m.name, m.endpoint(), m.dir.display());
                for l in tail.iter().rev() {
                    eprintln!("  {l}");
                }
            }
        } else if let Some(root) = self.members.first().and_then(|m| m.dir.parent()) {
            let _ = std::fs::remove_dir_all(root);
        }
    }
}

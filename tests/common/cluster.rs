//! A cluster of real ballast processes on loopback ports: each member with its own client and
//! peer port and data dir, started together (a member serves only once a leader is elected),
//! killed by PID when the cluster is dropped. Every wait is bounded in count and time.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{etcdctl_path, free_port, fresh_dir, port_taken};

/// How long a member may take to serve (its peers elect a leader first).
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);
const POLL_PAUSE: Duration = Duration::from_millis(50);
/// Starts of a whole cluster when a port it was given was taken meanwhile.
const PORT_ATTEMPTS: u32 = 5;

extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}
const SIGTERM: i32 = 15;

pub struct Member {
    pub name: String,
    /// The peer URLs' scheme: `http`, or `https` for peer TLS.
    pub peer_scheme: &'static str,
    pub client_port: u16,
    pub peer_port: u16,
    pub data_dir: PathBuf,
    child: Option<Child>,
    /// One log file per start: `<name>-<n>.log`.
    starts: u32,
    dir: PathBuf,
}

impl Member {
    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }

    pub fn peer_url(&self) -> String {
        format!("{}://127.0.0.1:{}", self.peer_scheme, self.peer_port)
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join(format!("{}-{}.log", self.name, self.starts))
    }

    /// The log of the member's latest start.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// SIGKILL, and wait for the process to be gone.
    pub fn kill(&mut self) {
        crate::common::kill_child(&mut self.child);
    }

    /// Starts the process with `--initial-cluster initial` and `token`, plus `extra` flags
    /// (`--initial-cluster-state new` unless they name another).
    pub fn spawn(&mut self, initial: &str, token: &str, extra: &[String]) {
        let state = if extra.iter().any(|a| a.starts_with("--initial-cluster-state")) { &[][..] } else { &["--initial-cluster-state", "new"][..] };
        let mut args: Vec<String> = ["--initial-cluster", initial, "--initial-cluster-token", token].iter().chain(state).map(|s| s.to_string()).collect();
        args.extend(extra.iter().cloned());
        self.spawn_with(&args, &[]);
    }

    /// Starts the process with its name, data dir and URLs, then `args` (the bootstrap flags:
    /// none of `--initial-cluster*` is added) and `env` in its environment.
    pub fn spawn_with(&mut self, args: &[String], env: &[(&str, String)]) {
        assert!(self.child.is_none(), "{} is running", self.name);
        self.starts += 1;
        let log = std::fs::File::create(self.log_path()).unwrap();
        let client = format!("http://{}", self.endpoint());
        let child = Command::new(env!("CARGO_BIN_EXE_ballast"))
            .args(["--name", &self.name, "--data-dir", self.data_dir.to_str().unwrap()])
            .args(["--listen-client-urls", &client, "--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &self.peer_url(), "--initial-advertise-peer-urls", &self.peer_url()])
            .args(args)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn ballast");
        self.child = Some(child);
    }

    /// Waits (bounded) until the member serves clients; panics with its log if it exits or
    /// does not serve in time.
    pub fn wait_ready(&mut self, timeout: Duration) {
        if let Err(why) = self.try_wait_ready(timeout) {
            panic!("{why}");
        }
    }

    /// As `wait_ready`, with Err(why, the log) instead of a panic when it exits first.
    fn try_wait_ready(&mut self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.log().contains("ready to serve client requests") {
                return Ok(());
            }
            if let Some(status) = self.child.as_mut().expect("running").try_wait().unwrap() {
                self.child = None;
                return Err(format!("{} exited ({status}) before serving; log:\n{}", self.name, self.log()));
            }
            std::thread::sleep(POLL_PAUSE);
        }
        panic!("{} did not serve within {timeout:?}; log:\n{}", self.name, self.log());
    }

    /// Waits (bounded) for the process to exit by itself, as a refused start does; returns its
    /// log. Panics if it serves or outlives `timeout`.
    pub fn wait_refused(&mut self, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.child.as_mut().expect("running").try_wait().unwrap() {
                self.child = None;
                assert!(!status.success(), "{} exited with success; log:\n{}", self.name, self.log());
                return self.log();
            }
            assert!(!self.log().contains("ready to serve client requests"), "{} served; log:\n{}", self.name, self.log());
            std::thread::sleep(POLL_PAUSE);
        }
        panic!("{} did not exit within {timeout:?}; log:\n{}", self.name, self.log());
    }

    /// Waits (bounded) for the process to exit by itself; its exit status. Panics if it
    /// outlives `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        if let Some(status) = crate::common::wait_child_exit(self.child.as_mut().expect("running"), timeout) {
            self.child = None;
            return status;
        }
        panic!("{} did not exit within {timeout:?}; log:\n{}", self.name, self.log());
    }

    /// SIGTERM: the graceful stop.
    pub fn terminate(&self) {
        // SAFETY: a signal to a child process this test started.
        assert_eq!(unsafe { libc_kill(self.pid() as i32, SIGTERM) }, 0);
    }

    pub fn etcdctl(&self, args: &[&str]) -> std::process::Output {
        Command::new(etcdctl_path())
            .env("ETCDCTL_API", "3")
            .args(["--endpoints", &self.endpoint(), "--command-timeout", "10s"])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run etcdctl (apt-get install etcd-client)")
    }

    /// etcdctl that must succeed; returns stdout.
    pub fn ctl(&self, args: &[&str]) -> String {
        let out = self.etcdctl(args);
        assert!(out.status.success(), "etcdctl {args:?} on {} failed: {}", self.name, String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    /// `etcdctl endpoint status -w json`'s Status of this member, or None if it does not answer.
    pub fn status(&self) -> Option<serde_json::Value> {
        let out = self.etcdctl(&["endpoint", "status", "-w", "json", "--command-timeout", "2s"]);
        if !out.status.success() {
            return None;
        }
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        Some(v[0]["Status"].clone())
    }

    pub async fn client(&self) -> etcd_client::Client {
        let options = etcd_client::ConnectOptions::new().with_timeout(Duration::from_secs(10)).with_connect_timeout(Duration::from_secs(5));
        etcd_client::Client::connect([format!("http://{}", self.endpoint())], Some(options)).await.expect("connect")
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.kill();
    }
}

pub struct Cluster {
    pub members: Vec<Member>,
    pub token: String,
    /// Flags every member gets.
    pub extra: Vec<String>,
    dir: PathBuf,
}

impl Cluster {
    /// `n` members named infra1..n, started together; returns once every one serves.
    /// `free_port` only finds ports free at that moment: when another test took one before a
    /// member bound it, the whole cluster starts again on fresh ports (bounded; the peer ports
    /// are in every member's `--initial-cluster`).
    pub fn start(n: usize) -> Cluster {
        for attempt in 1..=PORT_ATTEMPTS {
            let mut c = Cluster::unstarted(n, "ballast-test-cluster");
            for i in 0..n {
                c.spawn(i);
            }
            match c.members.iter_mut().try_for_each(|m| m.try_wait_ready(READY_TIMEOUT)) {
                Ok(()) => return c,
                Err(why) if port_taken(&why) && attempt < PORT_ATTEMPTS => continue, // dropped: killed
                Err(why) => panic!("{why}"),
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    pub fn unstarted(n: usize, token: &str) -> Cluster {
        let dir = fresh_dir("cluster");
        let members = (1..=n)
            .map(|i| Member {
                name: format!("infra{i}"),
                peer_scheme: "http",
                client_port: free_port(),
                peer_port: free_port(),
                data_dir: dir.join(format!("infra{i}.ballast")),
                child: None,
                starts: 0,
                dir: dir.clone(),
            })
            .collect();
        Cluster { members, token: token.into(), extra: Vec::new(), dir }
    }

    /// `--initial-cluster` of the members.
    pub fn initial_cluster(&self) -> String {
        self.members.iter().map(|m| format!("{}={}", m.name, m.peer_url())).collect::<Vec<_>>().join(",")
    }

    /// A new member process for this cluster's directory (not one of `members`): another
    /// cluster's, say.
    pub fn outsider(&self, name: &str) -> Member {
        Member { name: name.into(), peer_scheme: "http", client_port: free_port(), peer_port: free_port(), data_dir: self.dir.join(format!("{name}.ballast")), child: None, starts: 0, dir: self.dir.clone() }
    }

    /// The directory holding the members' data dirs and logs (and whatever a test puts there).
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// Starts member `i` (again, on its data dir and ports) without waiting.
    pub fn spawn(&mut self, i: usize) {
        let initial = self.initial_cluster();
        let extra = self.extra.clone();
        self.members[i].spawn(&initial, &self.token, &extra);
    }

    /// Restarts member `i` on its data dir and waits until it serves.
    pub fn restart(&mut self, i: usize) {
        self.spawn(i);
        self.members[i].wait_ready(READY_TIMEOUT);
    }

    /// The index of the member every running member names as leader, once they agree
    /// (bounded by `timeout`).
    pub fn wait_leader(&self, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(i) = self.agreed_leader() {
                return i;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let statuses: Vec<_> = self.members.iter().filter(|m| m.is_running()).map(|m| (m.name.clone(), m.status())).collect();
        panic!("no leader agreed within {timeout:?}: {statuses:?}");
    }

    fn agreed_leader(&self) -> Option<usize> {
        let mut leader = None;
        for m in self.members.iter().filter(|m| m.is_running()) {
            let id = m.status()?["leader"].as_u64().filter(|&id| id != 0)?;
            if leader.is_some_and(|l| l != id) {
                return None;
            }
            leader = Some(id);
        }
        let leader = leader?;
        self.members.iter().position(|m| m.is_running() && m.status().and_then(|s| s["header"]["member_id"].as_u64()) == Some(leader))
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for m in &mut self.members {
            m.kill();
        }
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

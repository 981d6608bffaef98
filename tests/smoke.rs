mod common;
#[path = "common/etcd.rs"]
mod etcd;

#[test]
fn starts_and_answers_etcdctl() {
    let s = common::Server::start(&[]);
    assert_eq!(s.ctl(&["put", "k", "v"]).trim(), "OK");
    assert_eq!(s.ctl(&["get", "k"]), "k\nv\n");
}

/// raft-rs drops a ReadIndex until the leader has committed an entry of its term: a
/// linearizable read sent the moment the server says it is ready must still be answered.
#[tokio::test]
async fn linearizable_read_right_after_start_is_answered() {
    for _ in 0..5 {
        let s = common::Server::start(&[]);
        let mut c = s.client().await;
        let bound = std::time::Duration::from_secs(30);
        let r = tokio::time::timeout(bound, c.get("k", None)).await.expect("a linearizable read was never answered");
        assert_eq!(r.unwrap().header().unwrap().revision(), 1);
    }
}

/// A client port another process holds: both refuse to start with Go's bind error.
#[test]
fn a_client_port_in_use_is_refused_with_etcds_error() {
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{port}");
    let etcd_error = etcd::Etcd::start_error("http", &["--listen-client-urls", &url, "--advertise-client-urls", &url]);
    let expected = format!("listen tcp 127.0.0.1:{port}: bind: address already in use");
    assert_eq!(etcd_error, expected);
    let (log, _) = common::Server::refused_urls(&[url.as_str()], &[]);
    assert!(log.contains(&expected), "ballast's log:\n{log}");
}

/// An `ETCD_*` variable set beside its command-line flag: etcd 3.5 refuses to start with a
/// fatal log line naming the variable (exit 1), even when the variable is empty; so does ballast.
#[test]
fn an_env_variable_beside_its_flag_is_refused_as_etcd_refuses_it() {
    let fatal = |bin: &std::path::Path, value: &str| {
        let dir = common::fresh_dir("env-flag");
        let url = format!("http://127.0.0.1:{}", common::free_port());
        let peer = format!("http://127.0.0.1:{}", common::free_port());
        let out = std::process::Command::new(bin)
            .env("ETCD_NAME", value)
            .args(["--name", "cli", "--data-dir", dir.join("d").to_str().unwrap()])
            .args(["--listen-client-urls", &url, "--advertise-client-urls", &url, "--listen-peer-urls", &peer])
            .output()
            .unwrap();
        let log = String::from_utf8_lossy(&out.stderr).to_string();
        let line = log.lines().filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()).find(|v| v["level"] == "fatal");
        let line = line.unwrap_or_else(|| panic!("no fatal line from {}:\n{log}", bin.display()));
        (out.status.code(), line["msg"].as_str().unwrap().to_string(), line["environment-variable"].as_str().unwrap().to_string())
    };
    let etcd = etcd::find_etcd35().unwrap();
    for value in ["envname", ""] {
        let want = fatal(&etcd, value);
        assert_eq!(want.0, Some(1), "etcd's exit code");
        assert_eq!(fatal(std::path::Path::new(env!("CARGO_BIN_EXE_ballast")), value), want, "ETCD_NAME={value:?}");
    }
}

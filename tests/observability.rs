//! The monitoring artifacts against the real tools: `promtool` checks and unit-tests the alert
//! rules (alerts/ballast.rules.yml, alerts/tests.yml); then a real ballast under load is scraped
//! by a real Prometheus (Debian's /usr/bin/prometheus, installed by tests/run.sh) that loads
//! the same rules, and every PromQL expression of the Grafana dashboard (grafana/ballast.json)
//! and of the alert rules is run through Prometheus's HTTP API. Finally the quota is filled
//! until writes fail with NOSPACE and the etcdDatabaseQuotaLowSpace alert must fire.
//! Every wait is bounded in count and time; Prometheus is killed by PID when the test ends.

mod common;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const PROMETHEUS: &str = "/usr/bin/prometheus";
const PROMTOOL: &str = "/usr/bin/promtool";
/// The scrape job name in the live test; the rules select `job=~".*(etcd|ballast).*"` and the
/// dashboard `job=~"$job"`.
const JOB: &str = "ballast";
const QUOTA_BYTES: u64 = 300_000;

/// Dashboard expressions allowed to return no series on a single ballast member. Each entry
/// is a substring of the expression; everything else must return data.
const MAY_BE_EMPTY: &[&str] = &[
    // Peer traffic and round-trip time exist only between members of a multi-member cluster.
    "etcd_network_peer_received_bytes_total",
    "etcd_network_peer_sent_bytes_total",
    "etcd_network_peer_round_trip_time_seconds",
];

/// Metric names referenced by the alert rules that may have no series on a single member.
const ALERT_METRICS_MAY_BE_ABSENT: &[&str] = &[
    // Peer metrics: multi-member clusters only.
    "etcd_network_peer_sent_failures_total",
    "etcd_network_peer_round_trip_time_seconds_bucket",
];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn require_tool(path: &str) {
    assert!(
        Path::new(path).exists(),
        "{path} is missing: install Debian's `prometheus` package (apt-get install -y prometheus; tests/run.sh does this)"
    );
}

fn promtool(args: &[&str]) -> String {
    require_tool(PROMTOOL);
    let out = Command::new(PROMTOOL).args(args).current_dir(repo()).output().expect("run promtool");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "promtool {args:?} failed:\n{text}");
    text
}

#[test]
fn alert_rules_pass_promtool_check_and_unit_tests() {
    let check = promtool(&["check", "rules", "alerts/ballast.rules.yml"]);
    assert!(check.contains("SUCCESS"), "{check}");
    let test = promtool(&["test", "rules", "alerts/tests.yml"]);
    assert!(test.contains("SUCCESS"), "{test}");

    // Every alert in the rules has at least one unit test that expects it to fire.
    let rules = std::fs::read_to_string(repo().join("alerts/ballast.rules.yml")).unwrap();
    let tests = std::fs::read_to_string(repo().join("alerts/tests.yml")).unwrap();
    let tests: serde_yaml::Value = serde_yaml::from_str(&tests).unwrap();
    let mut fired = BTreeSet::new();
    for t in tests["tests"].as_sequence().unwrap() {
        for case in t["alert_rule_test"].as_sequence().into_iter().flatten() {
            if case["exp_alerts"].as_sequence().is_some_and(|a| !a.is_empty()) {
                fired.insert(case["alertname"].as_str().unwrap().to_string());
            }
        }
    }
    for (name, _, _) in alert_rules(&rules) {
        assert!(fired.contains(&name), "alerts/tests.yml has no firing case for {name}");
    }
}

/// (alert name, expr, for) of every alerting rule.
fn alert_rules(yaml: &str) -> Vec<(String, String, String)> {
    let doc: serde_yaml::Value = serde_yaml::from_str(yaml).expect("rules yaml");
    let mut out = vec![];
    for g in doc["groups"].as_sequence().expect("groups") {
        for r in g["rules"].as_sequence().expect("rules") {
            if let Some(name) = r["alert"].as_str() {
                let expr = r["expr"].as_str().expect("expr").trim().to_string();
                out.push((name.to_string(), expr, r["for"].as_str().unwrap_or("0s").to_string()));
            }
        }
    }
    out
}

/// Every PromQL expression of the dashboard: panel targets, plus the metric selector inside
/// each `label_values(selector, label)` template variable query.
fn dashboard_exprs(json: &str) -> Vec<(String, String)> {
    let d: Value = serde_json::from_str(json).expect("dashboard json");
    let mut out = vec![];
    for p in d["panels"].as_array().expect("panels") {
        let nested = p["panels"].as_array().cloned().unwrap_or_default();
        for p in std::iter::once(p).chain(nested.iter()) {
            for t in p["targets"].as_array().into_iter().flatten() {
                out.push((p["title"].as_str().unwrap_or("").to_string(), t["expr"].as_str().expect("expr").to_string()));
            }
        }
    }
    for v in d["templating"]["list"].as_array().expect("templating") {
        if v["type"] == "query" {
            let q = v["query"].as_str().map(str::to_string).unwrap_or_else(|| v["query"]["query"].as_str().unwrap().to_string());
            let inner = q.strip_prefix("label_values(").and_then(|s| s.strip_suffix(')')).expect("label_values query");
            let selector = inner.rsplit_once(',').map_or(inner, |(s, _)| s).trim();
            out.push((format!("variable ${}", v["name"].as_str().unwrap()), selector.to_string()));
        }
    }
    out
}

/// Grafana's template variables as they would be on this dashboard for our scrape job.
fn substitute(expr: &str) -> String {
    let e = expr
        .replace("${datasource}", "prometheus")
        .replace("$__rate_interval", "1m")
        .replace("$job", JOB)
        .replace("$instance", ".+");
    assert!(!e.contains('$'), "unsubstituted template variable in {expr}");
    e
}

/// Metric names used in an expression: identifiers directly followed by a `{` selector.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let b = expr.as_bytes();
    let mut names = BTreeSet::new();
    for (i, _) in expr.match_indices('{') {
        let mut j = i;
        while j > 0 && (b[j - 1].is_ascii_alphanumeric() || b[j - 1] == b'_' || b[j - 1] == b':') {
            j -= 1;
        }
        if j < i {
            names.insert(expr[j..i].to_string());
        }
    }
    names
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|c| match c {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (c as char).to_string(),
            _ => format!("%{c:02X}"),
        })
        .collect()
}

/// A plain HTTP/1.0 GET (so the reply is never chunked): (status code, body).
fn http_get(addr: &str, path: &str) -> Result<(u16, String), String> {
    let mut conn = std::net::TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
    conn.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(conn, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").map_err(|e| e.to_string())?;
    let mut raw = String::new();
    conn.read_to_string(&mut raw).map_err(|e| format!("read {addr}{path}: {e}"))?;
    let (head, body) = raw.split_once("\r\n\r\n").ok_or_else(|| format!("no HTTP head from {addr}{path}: {raw}"))?;
    let code = head.split(' ').nth(1).and_then(|c| c.parse().ok()).ok_or_else(|| format!("bad status line: {head}"))?;
    Ok((code, body.to_string()))
}

/// A real Prometheus on a free loopback port; killed (by PID) and its storage removed on drop.
struct Prometheus {
    child: Option<Child>,
    addr: String,
    dir: PathBuf,
}

impl Prometheus {
    fn start(target: &str, rules: &Path) -> Prometheus {
        require_tool(PROMETHEUS);
        let dir = common::fresh_dir("prometheus");
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
                 rule_files:\n  - {}\n\
                 scrape_configs:\n  - job_name: {JOB}\n    static_configs:\n      - targets: ['{target}']\n",
                rules.display()
            ),
        )
        .unwrap();
        let addr = format!("127.0.0.1:{}", common::free_port());
        let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
        let child = Command::new(PROMETHEUS)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address={addr}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn prometheus");
        let mut p = Prometheus { child: Some(child), addr, dir };
        p.wait_ready();
        p
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        for _ in 0..300 {
            if let Ok((200, _)) = http_get(&self.addr, "/-/ready") {
                return;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("prometheus exited early ({status}); log:\n{}", self.log());
            }
            if Instant::now() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("prometheus not ready in time; log:\n{}", self.log());
    }

    /// GET an API path; the reply must be HTTP 200 with `"status":"success"`; returns `data`.
    fn api(&self, path: &str) -> Value {
        let (code, body) = http_get(&self.addr, path).unwrap_or_else(|e| panic!("{e}"));
        let v: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"));
        assert_eq!((code, v["status"].as_str()), (200, Some("success")), "{path}: {body}");
        v["data"].clone()
    }

    /// An instant query; returns the result vector.
    fn query(&self, expr: &str) -> Vec<Value> {
        let data = self.api(&format!("/api/v1/query?query={}", percent_encode(expr)));
        match data["resultType"].as_str() {
            Some("vector") | Some("matrix") => data["result"].as_array().unwrap().clone(),
            Some("scalar") | Some("string") => vec![data["result"].clone()],
            other => panic!("{expr}: unexpected result type {other:?}"),
        }
    }

    /// Polls `cond` once per 500ms, at most `secs` seconds.
    fn wait_for(&self, what: &str, secs: u64, mut cond: impl FnMut(&Prometheus) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        for _ in 0..(secs * 2 + 1) {
            if cond(self) {
                return;
            }
            if Instant::now() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        panic!("timed out after {secs}s waiting for {what}; prometheus log:\n{}", self.log());
    }

    fn alert_state(&self, name: &str) -> Vec<String> {
        let data = self.api("/api/v1/alerts");
        data["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["labels"]["alertname"] == name)
            .map(|a| a["state"].as_str().unwrap_or("").to_string())
            .collect()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// A bounded burst of mixed traffic: puts, ranges, a txn, deletes, a lease with one keep-alive.
/// Returns whether the server has the Lease service (false while it answers Unimplemented).
async fn load(c: &mut etcd_client::Client, round: u32, max: Duration) -> bool {
    use etcd_client::{Compare, CompareOp, GetOptions, Txn, TxnOp};
    let start = Instant::now();
    for i in 0..200u32 {
        if start.elapsed() > max {
            break;
        }
        c.put(format!("load/{round}/{i:04}"), vec![b'x'; 64], None).await.expect("put");
        if i % 10 == 0 {
            c.get("load/", Some(GetOptions::new().with_prefix().with_limit(10))).await.expect("range");
            let txn = Txn::new()
                .when([Compare::version(format!("load/{round}/{i:04}"), CompareOp::Greater, 0)])
                .and_then([TxnOp::put(format!("txn/{round}/{i}"), "t", None)]);
            c.txn(txn).await.expect("txn");
            c.delete(format!("txn/{round}/{i}"), None).await.expect("delete");
        }
    }
    match c.lease_grant(60, None).await {
        Ok(lease) => {
            let (mut keeper, mut stream) = c.lease_keep_alive(lease.id()).await.expect("keep-alive stream");
            keeper.keep_alive().await.expect("keep alive");
            let _ = tokio::time::timeout(Duration::from_secs(5), stream.message()).await;
            true
        }
        Err(etcd_client::Error::GRpcStatus(st)) if st.code() == tonic::Code::Unimplemented => false,
        Err(e) => panic!("lease grant: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_and_alert_queries_work_on_a_live_prometheus() {
    require_tool(PROMETHEUS);
    require_tool(PROMTOOL);
    // Four shards so the per-shard panels have several series; a low snapshot count so a
    // snapshot (and with it the backend commit and snapshot histograms) happens during the load.
    let quota = QUOTA_BYTES.to_string();
    let s = common::Server::start(&["--quota-backend-bytes", &quota, "--shards", "4", "--snapshot-count", "100"]);
    let mut c = s.client().await;
    let has_lease = load(&mut c, 0, Duration::from_secs(10)).await;
    // An open watch stream for the "Active streams" panel (if the server has the Watch service).
    let watch = match c.watch("load/", None).await {
        Ok(stream) => Some(stream),
        Err(etcd_client::Error::GRpcStatus(st)) if st.code() == tonic::Code::Unimplemented => None,
        Err(e) => panic!("watch: {e}"),
    };
    let has_watch = watch.is_some();

    // The live copy of the rules has every `for:` shortened to 0s so an alert fires on the
    // first evaluation that sees its condition; promtool's unit tests cover the real durations.
    let rules_src = std::fs::read_to_string(repo().join("alerts/ballast.rules.yml")).unwrap();
    let rules_live: String = rules_src
        .lines()
        .map(|l| if l.trim_start().starts_with("for: ") { format!("{}for: 0s", &l[..l.len() - l.trim_start().len()]) } else { l.to_string() })
        .collect::<Vec<_>>()
        .join("\n");
    let rules_path = s.dir.join("ballast.rules.live.yml");
    std::fs::write(&rules_path, rules_live + "\n").unwrap();

    let p = Prometheus::start(&s.endpoint, &rules_path);
    p.wait_for("the ballast target to be up", 60, |p| {
        p.query(&format!("up{{job=\"{JOB}\"}}")).iter().any(|r| r["value"][1] == "1")
    });
    // More load while Prometheus scrapes, so counters move between samples and rates are real.
    load(&mut c, 1, Duration::from_secs(10)).await;
    let after = Instant::now();
    p.wait_for("three scrapes after the load", 30, |p| {
        after.elapsed() > Duration::from_secs(3)
            && p.query(&format!("count_over_time(up{{job=\"{JOB}\"}}[1m])")).first().is_some_and(|r| r["value"][1].as_str().unwrap().parse::<f64>().unwrap() >= 4.0)
    });

    // Every rule loaded and evaluates without error.
    p.wait_for("every rule to be evaluated", 30, |p| {
        let groups = p.api("/api/v1/rules");
        groups["groups"].as_array().unwrap().iter().flat_map(|g| g["rules"].as_array().unwrap().clone()).all(|r| r["lastEvaluation"].as_str().is_some_and(|t| !t.starts_with("0001")))
    });
    let groups = p.api("/api/v1/rules");
    let loaded: Vec<Value> = groups["groups"].as_array().unwrap().iter().flat_map(|g| g["rules"].as_array().unwrap().clone()).collect();
    assert_eq!(loaded.len(), alert_rules(&rules_src).len(), "rules loaded by prometheus");
    for r in &loaded {
        assert_eq!(r["health"], "ok", "rule {} is unhealthy: {}", r["name"], r["lastError"]);
    }

    // Every dashboard expression answers, and with data unless allow-listed.
    let dashboard = std::fs::read_to_string(repo().join("grafana/ballast.json")).unwrap();
    let mut empty = vec![];
    let exprs = dashboard_exprs(&dashboard);
    assert!(exprs.len() > 40, "only {} dashboard expressions", exprs.len());
    for (panel, expr) in &exprs {
        let result = p.query(&substitute(expr));
        // Without the Lease (Watch) service no LeaseKeepAlive (Watch) stream ever starts, so
        // that line of "Active streams" is empty.
        let no_stream = (expr.contains("etcdserverpb.Lease") && !has_lease) || (expr.contains("etcdserverpb.Watch") && !has_watch);
        if result.is_empty() && !no_stream && !MAY_BE_EMPTY.iter().any(|m| expr.contains(m)) {
            empty.push(format!("[{panel}] {expr}"));
        }
    }

    // Every alert expression answers; every metric it names has series unless allow-listed.
    let mut alert_metrics = BTreeSet::new();
    for (name, expr, _) in alert_rules(&rules_src) {
        p.query(&expr);
        for m in metric_names(&expr) {
            alert_metrics.insert((m, name.clone()));
        }
    }
    for (m, alert) in &alert_metrics {
        if m == "up" || ALERT_METRICS_MAY_BE_ABSENT.contains(&m.as_str()) {
            continue;
        }
        if p.query(&format!("{m}{{job=\"{JOB}\"}}")).is_empty() {
            empty.push(format!("[alert {alert}] metric {m} has no series"));
        }
    }
    // The metric scrape contains no unknown-typed or duplicate series.
    let scrape = s.http_get("/metrics");
    assert!(scrape.contains("# TYPE etcd_disk_wal_fsync_duration_seconds histogram"), "{scrape}");
    // etcd has every one of these from startup: go-grpc-prometheus pre-registers
    // grpc_server_handled_total for every method and status code at 0, and
    // etcd_server_proposals_failed_total is a plain counter exported at 0.
    assert!(
        empty.is_empty(),
        "queries without data on a live single member under load (etcd exports these metrics, at 0 if nothing happened):\n{}",
        empty.join("\n")
    );

    // A healthy member: none of these fire (their `for:` is 0s here).
    for name in ["etcdMembersDown", "etcdInsufficientMembers", "etcdNoLeader", "etcdHighNumberOfFailedGRPCRequests", "BallastApplyLag"] {
        assert!(!p.alert_state(name).contains(&"firing".to_string()), "{name} fires on a healthy member");
    }

    // Fill the quota until writes fail with NOSPACE; then the quota alert must fire.
    let (_, err) = common::fill_until_error(&mut c, 2048).await;
    assert!(err.to_string().contains("etcdserver: mvcc: database space exceeded"), "{err}");
    p.wait_for("etcdDatabaseQuotaLowSpace to fire", 60, |p| p.alert_state("etcdDatabaseQuotaLowSpace").contains(&"firing".to_string()));
    let ratio = p.query(&format!("etcd_mvcc_db_total_size_in_bytes{{job=\"{JOB}\"}} / etcd_server_quota_backend_bytes{{job=\"{JOB}\"}}"));
    let ratio: f64 = ratio[0]["value"][1].as_str().unwrap().parse().unwrap();
    assert!(ratio > 0.95 && ratio <= 1.0, "db size / quota = {ratio}");
}

//! /metrics under load: etcd's metric names with moving values, go-grpc-prometheus labels,
//! and ballast's own per-shard metrics; also served on --listen-metrics-urls.

mod common;
#[path = "common/etcd.rs"]
mod etcd;
#[path = "common/http.rs"]
mod http;

use etcd_client::{Compare, CompareOp, Txn, TxnOp};

/// The value of the first sample line starting with `series` (name plus optional labels).
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().filter(|l| !l.starts_with('#')).find(|l| l.starts_with(series)).and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

fn scrape(s: &common::Server) -> String {
    let resp = s.http_get("/metrics");
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    resp
}

async fn load(c: &mut etcd_client::Client, n: usize) {
    for i in 0..n {
        c.put(format!("m/{i}"), "v", None).await.unwrap();
        c.get(format!("m/{i}"), None).await.unwrap();
    }
    let t = Txn::new().when([Compare::version("m/0", CompareOp::Greater, 0)]).and_then([TxnOp::put("m/t", "x", None)]);
    c.txn(t).await.unwrap();
    assert!(c.put("", "v", None).await.is_err());
}

#[tokio::test]
async fn metrics_have_etcd_names_and_move_under_load() {
    let metrics_port = common::free_port();
    let metrics_url = format!("http://127.0.0.1:{metrics_port}");
    let s = common::Server::start(&["--shards", "2", "--listen-metrics-urls", &metrics_url]);
    let mut c = s.client().await;
    load(&mut c, 40).await;
    s.ctl(&["defrag"]); // a snapshot: backend commit and snapshot timings
    let first = scrape(&s);
    for name in [
        "etcd_disk_wal_fsync_duration_seconds_bucket{le=\"0.001\"}",
        "etcd_disk_wal_fsync_duration_seconds_count",
        "etcd_disk_backend_commit_duration_seconds_count",
        "etcd_server_has_leader 1",
        "etcd_server_is_leader 1",
        "etcd_server_leader_changes_seen_total",
        "etcd_server_proposals_committed_total",
        "etcd_server_proposals_applied_total",
        "etcd_server_proposals_pending",
        "etcd_server_version{server_version=\"3.5.23\"} 1",
        "etcd_server_quota_backend_bytes 2147483648",
        "etcd_mvcc_db_total_size_in_bytes",
        "etcd_mvcc_db_total_size_in_use_in_bytes",
        "etcd_debugging_mvcc_keys_total 41",
        "etcd_network_client_grpc_sent_bytes_total",
        "etcd_network_client_grpc_received_bytes_total",
        "grpc_server_started_total{grpc_type=\"unary\",grpc_service=\"etcdserverpb.KV\",grpc_method=\"Put\"}",
        "grpc_server_handled_total{grpc_type=\"unary\",grpc_service=\"etcdserverpb.KV\",grpc_method=\"Put\",grpc_code=\"OK\"}",
        "grpc_server_handled_total{grpc_type=\"unary\",grpc_service=\"etcdserverpb.KV\",grpc_method=\"Put\",grpc_code=\"InvalidArgument\"} 1",
        "grpc_server_msg_received_total{grpc_type=\"unary\",grpc_service=\"etcdserverpb.KV\",grpc_method=\"Range\"}",
        "grpc_server_msg_sent_total{grpc_type=\"unary\",grpc_service=\"etcdserverpb.KV\",grpc_method=\"Txn\"} 1",
        "grpc_server_handling_seconds_bucket{grpc_type=\"unary\",grpc_service=\"etcdserverpb.KV\",grpc_method=\"Range\",le=\"0.005\"}",
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
        "process_open_fds",
        "process_max_fds",
        "process_start_time_seconds",
        "ballast_build_info{version=",
        "ballast_shard_queue_depth{shard=\"1\"}",
        "ballast_shard_keys{shard=\"0\"}",
        "ballast_shard_size_bytes{shard=\"1\"}",
        "ballast_shard_apply_duration_seconds_count{shard=\"0\"}",
        "ballast_wal_fsync_batch_entries_count",
        "ballast_wal_fsync_batch_bytes_sum",
        "ballast_io_uring_submissions_total{kind=\"fsync\"}",
        "ballast_raft_proposal_batch_requests_count",
        "ballast_applied_revision 42",
        "ballast_snapshot_duration_seconds_count",
    ] {
        assert!(sample(&first, name).is_some(), "missing {name} in:\n{first}");
    }
    let puts = "grpc_server_handled_total{grpc_type=\"unary\",grpc_service=\"etcdserverpb.KV\",grpc_method=\"Put\",grpc_code=\"OK\"}";
    assert_eq!(sample(&first, puts), Some(40.0));
    let keys0 = sample(&first, "ballast_shard_keys{shard=\"0\"}").unwrap();
    let keys1 = sample(&first, "ballast_shard_keys{shard=\"1\"}").unwrap();
    assert_eq!(keys0 + keys1, 41.0, "both shards hold keys");

    load(&mut c, 20).await;
    let second = scrape(&s);
    for moving in [
        "etcd_disk_wal_fsync_duration_seconds_count",
        "etcd_server_proposals_applied_total",
        "etcd_network_client_grpc_received_bytes_total",
        "etcd_network_client_grpc_sent_bytes_total",
        puts,
        "ballast_io_uring_submissions_total{kind=\"write\"}",
        "process_cpu_seconds_total",
    ] {
        let (a, b) = (sample(&first, moving).unwrap(), sample(&second, moving).unwrap());
        assert!(b > a, "{moving} did not move: {a} -> {b}");
    }

    // The same exposition on --listen-metrics-urls.
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", metrics_port)).unwrap();
    use std::io::{Read, Write};
    write!(conn, "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut body = String::new();
    conn.read_to_string(&mut body).unwrap();
    assert!(body.contains("etcd_server_has_leader 1"), "{body}");
}

#[tokio::test]
async fn invented_grpc_paths_add_no_metric_series() {
    use ballast::proto::etcdserverpb::RangeRequest;
    let s = common::Server::start(&[]);
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", s.endpoint)).unwrap().connect().await.unwrap();
    let before = scrape(&s).lines().filter(|l| l.starts_with("grpc_server_")).count();
    for i in 0..200 {
        let mut grpc = tonic::client::Grpc::new(channel.clone());
        grpc.ready().await.unwrap();
        let path = tonic::codegen::http::uri::PathAndQuery::try_from(format!("/invented.Service{i}/Method{i}")).unwrap();
        let codec = tonic_prost::ProstCodec::<RangeRequest, RangeRequest>::default();
        let e = grpc.unary(tonic::Request::new(RangeRequest::default()), path, codec).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unimplemented);
    }
    let after = scrape(&s);
    assert!(!after.contains("invented"), "an invented path got series");
    assert_eq!(after.lines().filter(|l| l.starts_with("grpc_server_")).count(), before, "no new grpc_server_ series");
    // A method of etcd's API gets its (bounded) series, as etcd's: UserList, answered with auth off.
    let mut c = s.client().await;
    assert!(c.user_list().await.unwrap().users().is_empty());
    assert!(scrape(&s).contains(r#"grpc_server_started_total{grpc_type="unary",grpc_service="etcdserverpb.Auth",grpc_method="UserList"} 1"#));
}

/// The metric names of the sample lines (a histogram's by its `_count` line).
fn exported_names(metrics: &str) -> std::collections::HashSet<&str> {
    let names = metrics.lines().filter(|l| !l.starts_with('#')).filter_map(|l| l.split(['{', ' ']).next());
    names.map(|n| n.strip_suffix("_count").unwrap_or(n)).collect()
}

#[tokio::test]
async fn a_fresh_server_exports_every_metric_from_the_first_scrape() {
    let s = common::Server::start(&["--shards", "2"]);
    let first = scrape(&s);
    let exported = exported_names(&first);
    // As etcd's, these series appear with their first label value: a failed promotion's reason,
    // a client's API version.
    let on_first_use = [ballast::metrics::LEARNER_PROMOTE_FAILURES, ballast::metrics::CLIENT_REQUESTS];
    for m in ballast::metrics::METRICS.iter().filter(|m| !on_first_use.contains(&m.name)) {
        // As etcd, the peer series appear once there are peers.
        if !m.name.starts_with("etcd_network_") || m.name.starts_with("etcd_network_client_") {
            assert!(exported.contains(m.name), "missing {} in the first scrape:\n{first}", m.name);
        }
    }
    // Histograms nothing recorded yet show etcd's buckets at 0.
    assert_eq!(sample(&first, "etcd_disk_backend_commit_duration_seconds_bucket{le=\"0.001\"}"), Some(0.0));
    assert_eq!(sample(&first, "etcd_disk_backend_commit_duration_seconds_count"), Some(0.0));
    assert_eq!(sample(&first, "etcd_server_proposals_failed_total"), Some(0.0));
    let compact = r#"grpc_server_handled_total{grpc_type="unary",grpc_service="etcdserverpb.KV",grpc_method="Compact",grpc_code="OK"}"#;
    assert_eq!(sample(&first, compact), Some(0.0));
    let snapshot = r#"grpc_server_handling_seconds_count{grpc_type="server_stream",grpc_service="etcdserverpb.Maintenance",grpc_method="Snapshot"}"#;
    assert_eq!(sample(&first, snapshot), Some(0.0));
}

/// Every metric family of the running server by name: its TYPE.
fn families(metrics: &str) -> std::collections::BTreeMap<String, String> {
    let typed = metrics.lines().filter_map(|l| l.strip_prefix("# TYPE "));
    typed.filter_map(|l| l.split_once(' ')).map(|(n, t)| (n.to_string(), t.trim().to_string())).collect()
}

/// Beside etcd 3.5: the same operations counted alike by etcd's mvcc counters (puts, deletes,
/// ranges incl. a txn's compares, txns of several operations, a revoked lease's keys), the
/// health checks counted, the families dashboards and alerts read present, and every family
/// both export of the same type.
/// Each histogram's bucket bounds (`le` label values, as written), by family name.
fn bucket_bounds(metrics: &str) -> std::collections::BTreeMap<String, std::collections::BTreeSet<String>> {
    let mut out: std::collections::BTreeMap<String, std::collections::BTreeSet<String>> = Default::default();
    for line in metrics.lines().filter(|l| !l.starts_with('#')) {
        let Some((name, labels)) = line.split_once("_bucket{") else { continue };
        let Some(le) = labels.split("le=\"").nth(1).and_then(|l| l.split('"').next()) else { continue };
        out.entry(name.to_string()).or_default().insert(le.to_string());
    }
    out
}

#[tokio::test]
async fn operation_counters_names_and_types_match_etcds() {
    let e = etcd::Etcd::start();
    let b = common::Server::start(&[]);
    let get = |endpoint: &str| http::request(endpoint, "GET", "/metrics", "", &[]).body;
    let before = (get(&e.endpoint), get(&b.endpoint));
    for endpoint in [&e.endpoint, &b.endpoint] {
        let mut c = etcd_client::Client::connect([format!("http://{endpoint}")], None).await.unwrap();
        for i in 0..3 {
            c.put(format!("k/{i}"), "v", None).await.unwrap();
        }
        c.get("k/0", None).await.unwrap();
        c.get("k/", Some(etcd_client::GetOptions::new().with_prefix())).await.unwrap();
        c.delete("k/2", None).await.unwrap();
        c.delete("absent", None).await.unwrap();
        // A compare-and-swap (a range and a put), a read-only txn, a failed one, a nested one.
        let cas = Txn::new().when([Compare::version("k/0", CompareOp::Equal, 1)]).and_then([TxnOp::put("k/0", "w", None)]);
        assert!(c.txn(cas).await.unwrap().succeeded());
        c.txn(Txn::new().and_then([TxnOp::get("k/1", None)])).await.unwrap();
        let failed = Txn::new().when([Compare::version("k/0", CompareOp::Equal, 9)]).or_else([TxnOp::get("k/0", None), TxnOp::delete("k/1", None)]);
        assert!(!c.txn(failed).await.unwrap().succeeded());
        let nested = Txn::new().and_then([TxnOp::txn(Txn::new().and_then([TxnOp::put("k/3", "v", None)])), TxnOp::get("k/3", None)]);
        c.txn(nested).await.unwrap();
        let lease = c.lease_grant(60, None).await.unwrap().id();
        for k in ["l/0", "l/1"] {
            c.put(k, "v", Some(etcd_client::PutOptions::new().with_lease(lease))).await.unwrap();
        }
        c.lease_revoke(lease).await.unwrap();
        assert_eq!(http::request(endpoint, "GET", "/health", "", &[]).status, 200);
        c.hash_kv(0).await.unwrap();
        c.defragment().await.unwrap();
        let rev = c.get("k/0", None).await.unwrap().header().unwrap().revision();
        c.compact(rev, Some(etcd_client::CompactionOptions::new().with_physical())).await.unwrap();
    }
    let (theirs, ours) = (get(&e.endpoint), get(&b.endpoint));
    // By how much each counted the operations (the servers' start-up checks differ).
    let moved = |after: &str, before: &str, counter: &str| sample(after, counter).unwrap_or(0.0) - sample(before, counter).unwrap_or(0.0);
    for counter in ["etcd_mvcc_put_total", "etcd_mvcc_delete_total", "etcd_mvcc_range_total", "etcd_debugging_mvcc_range_total", "etcd_mvcc_txn_total", "etcd_server_health_success", "etcd_server_health_failures", "etcd_debugging_mvcc_db_compaction_keys_total"] {
        assert_eq!(moved(&ours, &before.1, counter), moved(&theirs, &before.0, counter), "{counter}");
    }
    for gauge in ["etcd_debugging_mvcc_current_revision", "etcd_debugging_mvcc_compact_revision", "etcd_debugging_auth_revision", "etcd_server_is_learner", "etcd_cluster_version", "etcd_server_has_leader"] {
        assert_eq!(sample(&ours, gauge), sample(&theirs, gauge), "{gauge}");
    }
    assert!(sample(&ours, "etcd_disk_wal_write_bytes_total").is_some_and(|v| v > 0.0));
    let id = format!("{:x}", b.member_id_dec());
    assert_eq!(sample(&ours, &format!("etcd_server_id{{server_id=\"{id}\"}}")), Some(1.0), "{ours}");
    // Every histogram both export has the same bucket bounds, written alike (Go writes
    // `le="1.048576e+06"`: a rule or query naming a bucket must match both).
    let (their_bounds, our_bounds) = (bucket_bounds(&theirs), bucket_bounds(&ours));
    let mut compared = 0;
    for (name, bounds) in &our_bounds {
        if let Some(etcds) = their_bounds.get(name) {
            assert_eq!(bounds, etcds, "the buckets of {name}");
            compared += 1;
        }
    }
    assert!(our_bounds.contains_key("etcd_debugging_lease_ttl_total") && their_bounds.contains_key("etcd_debugging_lease_ttl_total") && compared >= 3, "histograms compared: {compared}");
    let (theirs_text, ours_text) = (theirs.clone(), ours.clone());
    let (theirs, ours) = (families(&theirs), families(&ours));
    for (name, kind) in &ours {
        if let Some(etcds) = theirs.get(name) {
            assert_eq!(kind, etcds, "the type of {name}");
        }
    }
    let wanted = [
        "etcd_server_has_leader", "etcd_server_leader_changes_seen_total", "etcd_server_proposals_failed_total", "etcd_server_proposals_pending",
        "etcd_server_proposals_committed_total", "etcd_server_proposals_applied_total", "etcd_mvcc_db_total_size_in_bytes",
        "etcd_mvcc_db_total_size_in_use_in_bytes", "etcd_server_quota_backend_bytes", "etcd_disk_wal_fsync_duration_seconds",
        "etcd_disk_backend_commit_duration_seconds", "grpc_server_handled_total", "grpc_server_started_total",
        "etcd_network_client_grpc_received_bytes_total", "etcd_network_client_grpc_sent_bytes_total", "process_resident_memory_bytes",
        "process_cpu_seconds_total", "process_open_fds", "process_max_fds", "etcd_server_id", "etcd_server_version", "etcd_cluster_version",
    ];
    for name in wanted {
        assert!(theirs.contains_key(name), "etcd 3.5 exports {name}");
        assert!(ours.contains_key(name), "ballast exports {name}");
    }
    // Every family etcd 3.5 exports is ballast's too, but for its debugging and proxy ones, Go's
    // runtime and these.
    let not_ballasts = [
        "etcd_server_go_version",              // ballast is not built with Go
        "etcd_mvcc_db_open_read_transactions", // no bbolt: reads hold no transaction
        // etcd's .snap and .snap.db files; ballast's snapshots are segment files, whose writes are
        // in etcd_disk_backend_commit_duration_seconds and ballast_snapshot_duration_seconds.
        "etcd_snap_fsync_duration_seconds",
        "etcd_snap_db_fsync_duration_seconds",
        "etcd_snap_db_save_total_duration_seconds",
    ];
    let kept_out = |n: &str| ["etcd_debugging_", "etcd_grpc_proxy_", "go_", "promhttp_"].iter().any(|p| n.starts_with(p)) || not_ballasts.contains(&n);
    let missing: Vec<&String> = theirs.keys().filter(|n| !kept_out(n) && !ours.contains_key(*n)).collect();
    assert!(missing.is_empty(), "etcd 3.5 exports, ballast does not: {missing:?}");
    for moved in ["etcd_mvcc_hash_rev_duration_seconds_count", "etcd_disk_backend_defrag_duration_seconds_count"] {
        assert_eq!(sample(&ours_text, moved), Some(1.0), "{moved}");
    }
    // The applies, by op (etcd serves a read-only txn without applying it; ballast does not count it).
    for op in ["Put", "DeleteRange", "Txn", "LeaseGrant", "LeaseRevoke"] {
        let ours = sample(&ours_text, &format!("etcd_server_apply_duration_seconds_count{{version=\"v3\",op=\"{op}\",success=\"true\"}}"));
        let theirs = sample(&theirs_text, &format!("etcd_server_apply_duration_seconds_count{{op=\"{op}\",success=\"true\",version=\"v3\"}}"));
        assert!(ours.is_some() && ours == theirs, "{op}: ours {ours:?}, etcd's {theirs:?}");
    }
    assert_eq!(sample(&ours_text, "etcd_disk_defrag_inflight"), Some(0.0));
}

/// etcdctl 3.5 against `endpoint`, `stdin` written to it; must succeed unless `fails`.
fn etcdctl35(endpoint: &str, args: &[&str], stdin: &str, fails: bool) {
    use std::io::Write;
    let mut child = std::process::Command::new(etcd::find_etcdctl35().unwrap())
        .args(["--endpoints", endpoint, "--command-timeout", "10s"])
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.success(), !fails, "etcdctl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// The "apply request took too long" warnings of reads in a server's log: (prefix, request,
/// response, error), each checked for etcd's level and threshold.
fn slow_read_warnings(log: &str) -> Vec<(String, String, String, String)> {
    let lines = log.lines().filter(|l| l.contains(r#""msg":"apply request took too long""#));
    let warnings = lines.map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap_or_else(|e| panic!("{e}: {l}")));
    let reads = warnings.filter(|w| w["prefix"].as_str().is_some_and(|p| p.starts_with("read-only")));
    reads
        .map(|w| {
            assert_eq!((w["level"].as_str(), w["expected-duration"].as_str()), (Some("warn"), Some("1ns")), "{w}");
            assert!(w["took"].as_str().is_some_and(|t| t.ends_with('s')), "took as Go writes a duration: {w}");
            let field = |name: &str| w[name].as_str().unwrap_or_default().to_string();
            (field("prefix"), field("request"), field("response"), field("error"))
        })
        .collect()
}

/// etcd's warning for slow reads, with `--experimental-warning-apply-duration` at 1 ns so that
/// every read is slow: the same reads sent by etcdctl to etcd 3.5 and to ballast give the same
/// warnings, the request and the answer as etcd writes them (its text format, sizes with the
/// header etcd has at that point, a read-only txn's ops, a refused read's error), and ballast
/// counts each in etcd_server_slow_apply_total.
#[test]
fn slow_reads_are_logged_as_etcds() {
    let flag = ["--experimental-warning-apply-duration=1ns"];
    let e = etcd::Etcd::start_with(&flag);
    let b = common::Server::start(&flag);
    // Compares, success ops and failure ops (none), each list ended by an empty line.
    let txn = "value(\"foo\") = \"bar\"\n\nget foo\nget zz\n\n\n";
    // Only what follows: the harnesses' own readiness reads are logged too.
    let (e_from, b_from) = (e.log().len(), b.log().len());
    for endpoint in [&e.endpoint, &b.endpoint] {
        etcdctl35(endpoint, &["put", "foo", "bar"], "", false);
        etcdctl35(endpoint, &["get", "foo"], "", false);
        etcdctl35(endpoint, &["get", "--prefix", "f", "--limit", "5", "--order", "DESCEND", "--sort-by", "MODIFY"], "", false);
        etcdctl35(endpoint, &["get", "--consistency", "s", "--keys-only", "a\tb\u{1}\"\\"], "", false);
        etcdctl35(endpoint, &["get", "--prefix", "--count-only", "-w", "fields", ""], "", false);
        etcdctl35(endpoint, &["txn"], txn, false);
        etcdctl35(endpoint, &["get", "foo", "--rev", "100"], "", true);
    }
    let (theirs, ours) = (slow_read_warnings(&e.log()[e_from..]), slow_read_warnings(&b.log()[b_from..]));
    assert_eq!(ours.len(), 6, "{ours:#?}");
    assert_eq!(ours, theirs);
    assert!(ours.iter().any(|(p, _, _, err)| p == "read-only range " && err.contains("future revision")), "{ours:#?}");
    let metrics = http::request(&b.endpoint, "GET", "/metrics", "", &[]).body;
    assert_eq!(sample(&metrics, "etcd_server_slow_apply_total"), Some(6.0));
}

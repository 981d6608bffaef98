//! Process health (finding 3 of the hardening issue): a dead thread ends the process instead of
//! leaving a zombie that accepts connections, and /health, /livez and /readyz do what etcd's do
//! — a real read through the server with a timeout — so a stuck disk or a stuck shard turns them
//! red, and they turn green again when it recovers. Faults come from failpoints (debug builds).
//! gRPC's health service answers as etcd 3.5's.

mod common;
#[path = "common/etcd.rs"]
mod etcd;

use std::time::Duration;

/// ballast's request timeout with `--election-timeout 100`: 5 s + 2 × 100 ms.
const FLAGS: &[&str] = &["--election-timeout", "100", "--heartbeat-interval", "10"];

fn status_line(response: &str) -> &str {
    response.lines().next().unwrap_or("")
}

#[tokio::test]
async fn a_panicking_shard_ends_the_process() {
    let mut s = common::Server::start_with_env(&["--shards", "2"], &[("BALLAST_FAILPOINTS", "shard-panic-on-put=boom")]);
    let mut c = s.client().await;
    c.put("before", "1", None).await.unwrap();
    // Applying this put panics a shard thread: the whole process must go, not just the thread.
    let put = tokio::time::timeout(Duration::from_secs(20), c.put("boom", "1", None)).await;
    assert!(put.is_err() || put.unwrap().is_err(), "the put that killed a shard was not answered OK");
    let status = s.wait_exit();
    assert!(!status.success(), "{status}");
    assert!(s.log().contains("a thread panicked; stopping the process"), "{}", s.log());
    // The put was durable before it was applied: a restart applies it (as etcd replays its WAL).
    s.set_env(&[]);
    s.restart();
    let mut c = s.client().await;
    assert_eq!(c.get("before", None).await.unwrap().kvs()[0].value(), b"1");
    assert_eq!(c.get("boom", None).await.unwrap().kvs()[0].value(), b"1");
}

#[tokio::test]
async fn health_turns_red_while_the_disk_is_stuck() {
    let stall_dir = common::fresh_dir("stall");
    let stall = stall_dir.join("disk-stuck");
    let fp = format!("wal-stall={}", stall.display());
    let s = common::Server::start_with_env(FLAGS, &[("BALLAST_FAILPOINTS", &fp)]);
    assert!(s.http_get("/health").contains(r#"{"health":"true","reason":""}"#), "{}", s.http_get("/health"));
    std::fs::write(&stall, b"").unwrap();
    let stalled = std::time::Instant::now();
    // A write now hangs in the WAL (answered "request timed out" after 5.2 s, as etcd does).
    let mut c = s.client().await;
    let put = tokio::spawn(async move { c.put("k", "v", None).await.map(|r| r.header().unwrap().revision()) });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let health = s.http_get("/health");
    assert!(status_line(&health).contains("503"), "{health}");
    assert!(health.contains(r#""health":"false""#) && health.contains("RANGE ERROR:etcdserver: request timed out"), "{health}");
    let readyz = s.http_get("/readyz");
    assert!(status_line(&readyz).contains("503") && readyz.contains("[-]linearizable_read failed"), "{readyz}");
    // The process is alive and its data readable: /livez (a serializable read) stays green.
    let livez = s.http_get("/livez");
    assert!(status_line(&livez).contains("200") && livez.ends_with("ok"), "{livez}");
    // Held past etcd's 1 s warning threshold (the probes above take longer anyway).
    tokio::time::sleep(Duration::from_millis(1500).saturating_sub(stalled.elapsed())).await;
    std::fs::remove_file(&stall).unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(20), put).await.unwrap().unwrap();
    assert!(matches!(answer, Ok(2)) || answer.as_ref().unwrap_err().to_string().contains("request timed out"), "{answer:?}");
    // Either way the write is applied once the disk is back.
    let mut c = s.client().await;
    assert_eq!(c.get("k", None).await.unwrap().kvs()[0].mod_revision(), 2);
    // Applied, so its write is done: logged as etcd logs a slow one.
    let slow = s.log().lines().find(|l| l.contains(r#""msg":"slow fdatasync""#)).map(str::to_owned);
    let slow = slow.unwrap_or_else(|| panic!("no slow fdatasync line: {}", s.log()));
    let line: serde_json::Value = serde_json::from_str(&slow).unwrap();
    assert_eq!((line["level"].as_str(), line["expected-duration"].as_str()), (Some("warn"), Some("1s")), "{slow}");
    let took = line["took"].as_str().and_then(|t| t.strip_suffix('s')).and_then(|t| t.parse::<f64>().ok());
    assert!(took.is_some_and(|t| (1.0..60.0).contains(&t)), "took in Go's seconds: {slow}");
    assert!(s.http_get("/health").contains(r#""health":"true""#));
    assert!(s.http_get("/readyz").ends_with("ok"));
    let _ = std::fs::remove_dir_all(&stall_dir);
}

#[tokio::test]
async fn probes_turn_red_while_a_shard_is_stuck() {
    let stall_dir = common::fresh_dir("stall");
    let stall = stall_dir.join("shard-stuck");
    let fp = format!("shard-stall={}", stall.display());
    let s = common::Server::start_with_env(FLAGS, &[("BALLAST_FAILPOINTS", &fp)]);
    let verbose = s.http_get("/readyz?verbose");
    assert!(verbose.contains("[+]serializable_read ok") && verbose.contains("readyz check passed"), "{verbose}");
    std::fs::write(&stall, b"").unwrap();
    // The shard serves nothing until a message reaches it: send one, then probe.
    let mut c = s.client().await;
    let get = tokio::spawn(async move { c.get("k", None).await.is_ok() });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let livez = s.http_get("/livez");
    assert!(status_line(&livez).contains("503"), "{livez}");
    assert!(livez.contains("[-]serializable_read failed: etcdserver: request timed out") && livez.contains("livez check failed"), "{livez}");
    std::fs::remove_file(&stall).unwrap();
    assert!(tokio::time::timeout(Duration::from_secs(20), get).await.unwrap().unwrap());
    assert!(s.http_get("/livez").ends_with("ok"));
    assert!(s.http_get("/health").contains(r#""health":"true""#));
    let _ = std::fs::remove_dir_all(&stall_dir);
}

/// grpc.health.v1.Health's Check and Watch for the server ("") and an unknown service: one
/// line per answer.
async fn grpc_health(endpoint: &str) -> Vec<String> {
    use ballast::proto::health::{health_client::HealthClient, HealthCheckRequest};
    let mut health = HealthClient::new(common::grpc_channel(endpoint).await);
    let mut out = Vec::new();
    for service in ["", "etcdserverpb.KV", "nope"] {
        let req = || HealthCheckRequest { service: service.into() };
        let check = tokio::time::timeout(Duration::from_secs(10), health.check(req())).await.expect("answered in time");
        out.push(format!("check {service:?}: {:?}", check.map(|r| r.into_inner().status).map_err(|e| (e.code(), e.message().to_string()))));
        let mut watch = match health.watch(req()).await {
            Ok(w) => w.into_inner(),
            Err(e) => {
                out.push(format!("watch {service:?}: refused {:?} {}", e.code(), e.message()));
                continue;
            }
        };
        let first = tokio::time::timeout(Duration::from_secs(10), watch.message()).await.expect("answered in time");
        out.push(format!("watch {service:?}: {:?}", first.map(|r| r.map(|r| r.status)).map_err(|e| (e.code(), e.message().to_string()))));
        let more = tokio::time::timeout(Duration::from_millis(300), watch.message()).await;
        out.push(format!("watch {service:?} then: {}", if more.is_err() { "open, quiet" } else { "more" }));
    }
    out
}

#[tokio::test]
async fn grpc_health_service_answers_as_etcds() {
    let etcd = etcd::Etcd::start();
    let ballast = common::Server::start(&[]);
    let want = grpc_health(&etcd.endpoint).await;
    assert_eq!(grpc_health(&ballast.endpoint).await, want, "ballast, then etcd 3.5");
    assert!(want[0].contains("Ok(1)"), "SERVING: {want:?}");
}

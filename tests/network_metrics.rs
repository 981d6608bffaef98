//! etcd's peer network metrics (`etcd_network_*`) on a 3-member cluster, against etcd 3.5
//! beside it: after some writes and the first round-trip report, every peer series etcd 3.5
//! exports (name and label names) is exported by ballast too, with values that say the streams
//! are up and carrying traffic.

mod common;
#[path = "common/etcd.rs"]
mod etcd;
#[path = "common/peer_proxy.rs"]
mod peer_proxy;
#[path = "common/procs3.rs"]
mod procs3;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::time::{Duration, Instant};

use procs3::{Cluster, Target};

/// etcd reports the first smoothed RTT 5 s after it starts probing a peer (then every 30 s).
const RTT_BOUND: Duration = Duration::from_secs(30);
const PUTS: usize = 20;

fn scrape(port: u16) -> String {
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    conn.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // HTTP/1.0: no chunked encoding to split the lines.
    write!(conn, "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n").unwrap();
    let mut out = String::new();
    let _ = conn.read_to_string(&mut out);
    assert!(out.starts_with("HTTP/1.1 200") || out.starts_with("HTTP/1.0 200"), "{out}");
    out
}

/// The `etcd_network_` peer series (client gRPC byte counters left out): each sample line's name
/// (a histogram by its base name) with its labels.
fn peer_series(metrics: &str) -> Vec<(String, BTreeMap<String, String>, f64)> {
    let mut out = Vec::new();
    for line in metrics.lines().filter(|l| l.starts_with("etcd_network_") && !l.starts_with("etcd_network_client_")) {
        let (series, value) = line.rsplit_once(' ').unwrap();
        let (name, labels) = series.split_once('{').map_or((series, ""), |(n, l)| (n, l.trim_end_matches('}')));
        let name = name.trim_end_matches("_bucket").trim_end_matches("_sum").trim_end_matches("_count");
        let labels: BTreeMap<String, String> = labels
            .split(',')
            .filter(|kv| !kv.is_empty())
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap();
                (k.to_string(), v.trim_matches('"').to_string())
            })
            .filter(|(k, _)| k != "le")
            .collect();
        out.push((name.to_string(), labels, value.parse().unwrap_or(f64::NAN)));
    }
    out
}

/// (name, label names) of every series.
fn shapes(series: &[(String, BTreeMap<String, String>, f64)]) -> BTreeSet<(String, Vec<String>)> {
    series.iter().map(|(n, l, _)| (n.clone(), l.keys().cloned().collect())).collect()
}

/// Starts a 3-member cluster of `target`, writes through member 0, and waits (bounded) until
/// the leader reports a round-trip time to both peers; returns its peer series and the ids of
/// the members.
async fn observed(target: Target) -> (Vec<(String, BTreeMap<String, String>, f64)>, Vec<u64>) {
    let c = Cluster::start(target, 3).await;
    let mut client = c.client(0, Duration::from_secs(5)).await;
    for i in 0..PUTS {
        client.put(format!("net/{i}"), vec![b'x'; 1024], None).await.expect("put");
    }
    let ids: Vec<u64> = c.member_list(0).await.into_iter().map(|(id, _)| id).collect();
    let (leader, _) = c.wait_leader(None, Duration::from_secs(15)).await.expect("a leader");
    let port = c.members[leader].client_port;
    let deadline = Instant::now() + RTT_BOUND;
    loop {
        let series = peer_series(&scrape(port));
        let rtt_peers = series.iter().filter(|(n, _, _)| n == "etcd_network_peer_round_trip_time_seconds").map(|(_, l, _)| l["To"].clone()).collect::<BTreeSet<_>>();
        if rtt_peers.len() == 2 {
            return (series, ids);
        }
        assert!(Instant::now() < deadline, "{target:?}: no round-trip time to both peers within {RTT_BOUND:?}: {series:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test]
async fn peer_network_metrics_match_etcd_3_5_on_a_three_member_cluster() {
    let (etcd_series, _) = observed(Target::Etcd).await;
    let (ours, ids) = observed(Target::Ballast).await;

    let missing: Vec<_> = shapes(&etcd_series).difference(&shapes(&ours)).cloned().collect();
    assert!(missing.is_empty(), "series etcd 3.5 exports and ballast does not: {missing:?}\netcd: {etcd_series:?}\nballast: {ours:?}");

    // The leader streams the writes to both peers, which answer: bytes both ways, each stream
    // active.
    let value = |name: &str, label: &str, peer: &str| ours.iter().find(|(n, l, _)| n == name && l.get(label).map(String::as_str) == Some(peer)).map(|s| s.2);
    let me = ours.iter().find(|(n, _, _)| n == "etcd_network_active_peers").map(|(_, l, _)| l["Local"].clone()).expect("active peers");
    let peers: Vec<String> = ids.iter().map(|id| format!("{id:x}")).filter(|id| *id != me).collect();
    assert_eq!(peers.len(), 2, "member ids {ids:x?}, local {me}");
    for p in &peers {
        assert!(value("etcd_network_peer_sent_bytes_total", "To", p) > Some((PUTS * 1024) as f64), "sent to {p}: {ours:?}");
        assert!(value("etcd_network_peer_received_bytes_total", "From", p) > Some(0.0), "received from {p}: {ours:?}");
        assert_eq!(value("etcd_network_active_peers", "Remote", p), Some(1.0), "stream to {p}: {ours:?}");
    }
}

//! Leases on a real ballast process: expiry deletes a lease's keys within TTL plus a bound and
//! keepalives hold it off; leases and their keys survive a kill -9 (through a snapshot and the
//! WAL tail) with their TTL extended; a thousand leases expiring at once are all revoked while
//! writes keep being served; etcdctl's lease commands print what they print against etcd 3.5.
//! Every wait is bounded.

mod common;
#[path = "common/etcd.rs"]
mod etcd;

use std::process::Command;
use std::time::{Duration, Instant};

use common::Server;
use etcd_client::{Client, LeaseGrantOptions, LeaseTimeToLiveOptions, PutOptions};

/// How long after its TTL an expired lease's keys may still be there: the 500 ms expiry check
/// plus a raft round trip, with room for a loaded machine (etcd's e2e test allows 1 s).
const EXPIRY_SLACK: Duration = Duration::from_millis(2500);

async fn grant(c: &mut Client, id: i64, ttl: i64) -> i64 {
    c.lease_grant(ttl, Some(LeaseGrantOptions::new().with_id(id))).await.expect("grant").id()
}

async fn put_leased(c: &mut Client, key: &str, lease: i64) {
    c.put(key, "v", Some(PutOptions::new().with_lease(lease))).await.expect("put with lease");
}

/// The lease of `key`, or None when it is missing.
async fn lease_of(c: &mut Client, key: &str) -> Option<i64> {
    c.get(key, None).await.expect("get").kvs().first().map(|kv| kv.lease())
}

/// Waits (bounded by `limit` from `since`) until `key` is gone; returns when it went.
async fn gone_by(c: &mut Client, key: &str, since: Instant, limit: Duration) -> Duration {
    loop {
        if lease_of(c, key).await.is_none() {
            return since.elapsed();
        }
        assert!(since.elapsed() < limit, "{key} still there {:?} after its lease was granted", since.elapsed());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// (remaining, granted, sorted keys) of lease `id`.
async fn time_to_live(c: &mut Client, id: i64) -> (i64, i64, Vec<String>) {
    let r = c.lease_time_to_live(id, Some(LeaseTimeToLiveOptions::new().with_keys())).await.expect("timetolive");
    let mut keys: Vec<String> = r.keys().iter().map(|k| String::from_utf8_lossy(k).into_owned()).collect();
    keys.sort();
    (r.ttl(), r.granted_ttl(), keys)
}

// ---------------------------------------------------------------------------------------------
// Expiry and keepalive

/// A 2 s lease's keys are there at 1 s and gone within TTL + slack; a put without lease
/// detaches a key, which then stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_vanish_when_their_lease_expires() {
    let s = Server::start(&[]);
    let mut c = s.client().await;
    let start = Instant::now();
    grant(&mut c, 7, 2).await;
    for key in ["x/a", "x/b", "x/detached"] {
        put_leased(&mut c, key, 7).await;
    }
    c.put("x/detached", "plain", None).await.unwrap();
    tokio::time::sleep(Duration::from_secs(1).saturating_sub(start.elapsed())).await;
    assert_eq!(lease_of(&mut c, "x/a").await, Some(7), "still there 1 s into a 2 s lease");
    let took = gone_by(&mut c, "x/a", start, Duration::from_secs(2) + EXPIRY_SLACK).await;
    assert!(took >= Duration::from_secs(2), "gone after {took:?}, before the TTL");
    assert_eq!(lease_of(&mut c, "x/b").await, None, "every key of the lease goes at once");
    assert_eq!(lease_of(&mut c, "x/detached").await, Some(0), "a detached key stays");
    assert_eq!(time_to_live(&mut c, 7).await, (-1, 0, vec![]));
    assert!(c.leases().await.unwrap().leases().is_empty());
}

/// Keepalives from the etcd-client crate hold a 2 s lease for 5 s; once they stop, it expires.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keepalives_hold_a_lease() {
    let s = Server::start(&[]);
    let mut c = s.client().await;
    grant(&mut c, 8, 2).await;
    put_leased(&mut c, "held", 8).await;
    let (mut keeper, mut answers) = c.lease_keep_alive(8).await.expect("keepalive stream");
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(5) {
        keeper.keep_alive().await.expect("send a keepalive");
        let answer = tokio::time::timeout(Duration::from_secs(2), answers.message()).await;
        let answer = answer.expect("a keepalive answer in time").expect("stream open").expect("an answer");
        assert_eq!((answer.id(), answer.ttl()), (8, 2), "keepalive answers the granted TTL");
        assert_eq!(lease_of(&mut c, "held").await, Some(8), "kept alive at {:?}", start.elapsed());
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let (remaining, granted, keys) = time_to_live(&mut c, 8).await;
    assert!((1..=2).contains(&remaining) && granted == 2 && keys == ["held"], "{remaining} {granted} {keys:?}");
    drop((keeper, answers));
    let stopped = Instant::now();
    gone_by(&mut c, "held", stopped, Duration::from_secs(2) + EXPIRY_SLACK).await;
}

// ---------------------------------------------------------------------------------------------
// Restart

/// Leases (one saved in a snapshot, one only in the WAL tail) and their keys survive kill -9;
/// after the restart every lease has its full TTL again (plus the election timeout), a short
/// lease still expires, and a revoke still deletes the re-attached keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_survive_a_restart() {
    let mut s = Server::start(&["--snapshot-count", "10"]);
    let mut c = s.client().await;
    grant(&mut c, 100, 30).await;
    put_leased(&mut c, "snap/a", 100).await;
    put_leased(&mut c, "snap/b", 100).await;
    for i in 0..30 {
        c.put(format!("filler/{i}"), "f", None).await.unwrap();
    }
    let snapped = wait_for_lease_in_manifest(&s, 100).await;
    assert!(snapped, "lease 100 never reached a snapshot manifest");
    grant(&mut c, 200, 20).await;
    put_leased(&mut c, "tail/a", 200).await;
    grant(&mut c, 400, 9_000_000_000).await;
    // Spend some of lease 100's TTL: it must come back whole.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(time_to_live(&mut c, 100).await.0 <= 27);
    grant(&mut c, 300, 2).await;
    put_leased(&mut c, "short", 300).await;
    drop(c);
    s.kill();
    s.restart();
    let restarted = Instant::now();
    let mut c = s.client().await;
    assert_eq!(lease_of(&mut c, "snap/a").await, Some(100));
    assert_eq!(lease_of(&mut c, "tail/a").await, Some(200));
    let (remaining, granted, keys) = time_to_live(&mut c, 100).await;
    assert!((29..=31).contains(&remaining) && granted == 30, "lease 100 after restart: {remaining}/{granted}");
    assert_eq!(keys, ["snap/a", "snap/b"]);
    let (remaining, granted, keys) = time_to_live(&mut c, 200).await;
    assert!((19..=21).contains(&remaining) && granted == 20, "lease 200 after restart: {remaining}/{granted}");
    assert_eq!(keys, ["tail/a"]);
    let mut ids: Vec<i64> = c.leases().await.unwrap().leases().iter().map(|l| l.id()).collect();
    ids.sort();
    assert_eq!(ids, [100, 200, 300, 400], "leases after restart");
    let (remaining, granted, _) = time_to_live(&mut c, 400).await;
    assert!(granted == 9_000_000_000 && remaining >= 9_000_000_000 - 1, "the longest lease: {remaining}/{granted}");
    // The short lease gets 2 s + the election timeout from the restart.
    assert_eq!(lease_of(&mut c, "short").await, Some(300));
    let took = gone_by(&mut c, "short", restarted, Duration::from_secs(3) + EXPIRY_SLACK).await;
    assert!(took >= Duration::from_millis(2500), "the short lease went {took:?} after the restart");
    c.lease_revoke(100).await.expect("revoke after restart");
    assert_eq!(lease_of(&mut c, "snap/a").await, None);
    assert_eq!(lease_of(&mut c, "snap/b").await, None);
    assert_eq!(lease_of(&mut c, "tail/a").await, Some(200));
}

/// Polls (bounded) the snapshot manifest for lease `id`.
async fn wait_for_lease_in_manifest(s: &Server, id: i64) -> bool {
    let path = s.data_dir.join("member/snap/manifest.json");
    for _ in 0..100 {
        if let Some(m) = common::read_checked_json(&path) {
            let leases = m["leases"].as_array().cloned().unwrap_or_default();
            if leases.iter().any(|l| l[0].as_i64() == Some(id) || l["id"].as_i64() == Some(id)) {
                return true;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

// ---------------------------------------------------------------------------------------------
// Many leases at once

/// A thousand 2 s leases, each with a key, granted together: all are revoked (etcd revokes
/// 500 per 500 ms) within a bound, while puts keep being answered promptly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_leases_expire_while_writes_go_on() {
    const N: i64 = 1000;
    let s = Server::start(&[]);
    let c = s.client().await;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for chunk in 0..10 {
        let mut c = c.clone();
        tasks.push(tokio::spawn(async move {
            for id in (chunk * N / 10 + 1)..=((chunk + 1) * N / 10) {
                grant(&mut c, id, 2).await;
                put_leased(&mut c, &format!("many/{id:04}"), id).await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let granted = start.elapsed();
    let mut c = c.clone();
    let count = |c: &mut Client| {
        let mut c = c.clone();
        async move {
            let opts = etcd_client::GetOptions::new().with_prefix().with_count_only();
            c.get("many/", Some(opts)).await.expect("count").count()
        }
    };
    let limit = granted + Duration::from_secs(2) + Duration::from_secs(10);
    let mut writes = 0;
    let mut slowest = Duration::ZERO;
    loop {
        let t = Instant::now();
        c.put(format!("busy/{}", writes % 10), "w", None).await.expect("a put during the expiry");
        slowest = slowest.max(t.elapsed());
        writes += 1;
        if count(&mut c).await == 0 {
            break;
        }
        assert!(start.elapsed() < limit, "{} keys left {:?} after the grants began", count(&mut c).await, start.elapsed());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(slowest < Duration::from_secs(2), "a put took {slowest:?} during the expiry");
    assert!(c.leases().await.unwrap().leases().is_empty(), "every lease revoked");
    assert!(writes > 10, "writes went on during the expiry ({writes})");
}

// ---------------------------------------------------------------------------------------------
// etcdctl

/// etcdctl against `endpoint`: (exit code, stdout, stderr).
fn etcdctl(endpoint: &str, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(common::etcdctl_path())
        .env("ETCDCTL_API", "3")
        .args(["--endpoints", endpoint, "--command-timeout", "10s"])
        .args(args)
        .output()
        .expect("run etcdctl");
    let text = |b: Vec<u8>| String::from_utf8(b).unwrap();
    (out.status.code().unwrap_or(-1), text(out.stdout), text(out.stderr))
}

/// The lease id (hex) etcdctl printed in `lease <id> granted with TTL(..)`.
fn granted_id(stdout: &str) -> String {
    stdout.strip_prefix("lease ").and_then(|s| s.split(' ').next()).unwrap_or_else(|| panic!("not a grant: {stdout}")).to_string()
}

/// Replaces `remaining(<n>s)` by `remaining(<rem>)` and the `"TTL" : <n>` line of `-w fields`
/// by `"TTL" : <rem>` after checking `n` within [lo, hi].
fn mask_remaining(s: &str, lo: i64, hi: i64) -> String {
    if let Some(n) = s.strip_prefix("\"TTL\" : ") {
        let n: i64 = n.parse().unwrap();
        assert!((lo..=hi).contains(&n), "remaining {n} not in [{lo}, {hi}]: {s}");
        return "\"TTL\" : <rem>".into();
    }
    let Some(at) = s.find("remaining(") else { return s.to_string() };
    let from = at + "remaining(".len();
    let to = from + s[from..].find("s)").expect("remaining(<n>s)");
    let n: i64 = s[from..to].parse().unwrap();
    assert!((lo..=hi).contains(&n), "remaining {n} not in [{lo}, {hi}]: {s}");
    format!("{}<rem>{}", &s[..from], &s[to + 1..])
}

/// etcdctl's `-w json` output without the header's cluster_id, member_id and raft_term, keys
/// sorted, a remaining `ttl` below the granted one checked and masked.
fn normalized_json(out: &str) -> String {
    let mut v: serde_json::Value = serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("bad json ({e}): {out}"));
    for f in ["cluster_id", "member_id", "raft_term"] {
        v.as_object_mut().expect("a json object").remove(f);
        if let Some(h) = v.get_mut("header").and_then(|h| h.as_object_mut()) {
            h.remove(f);
        }
    }
    if let Some(keys) = v.get_mut("keys").and_then(|k| k.as_array_mut()) {
        keys.sort_by_key(|k| k.to_string());
    }
    if let (Some(ttl), Some(granted)) = (v["ttl"].as_i64(), v["granted-ttl"].as_i64()) {
        assert!(ttl > granted - 3 && ttl <= granted, "remaining {ttl} of {granted}: {out}");
        v["ttl"] = "<rem>".into();
    }
    format!("{v}\n")
}

/// Sorts the keys of `attached keys([k2 k1])` (etcd lists them in Go map order).
fn sort_attached(s: &str) -> String {
    let Some(at) = s.find("attached keys([") else { return s.to_string() };
    let from = at + "attached keys([".len();
    let to = from + s[from..].find("])").expect("attached keys([..])");
    let mut keys: Vec<&str> = s[from..to].split(' ').collect();
    keys.sort();
    format!("{}{}{}", &s[..from], keys.join(" "), &s[to..])
}

/// One server's etcdctl session: every command's (code, stdout, `Error:` lines) with the lease
/// ids it granted replaced by names (`<A>`, `<B>`, in hex and decimal), remaining TTLs checked
/// and masked, and the header lines of `-w fields` dropped.
struct Session<'a> {
    endpoint: &'a str,
    names: Vec<(String, String)>,
    out: Vec<(i32, String, String)>,
}

impl Session<'_> {
    /// Runs etcdctl `args`, records its normalized output; returns the raw stdout.
    fn run(&mut self, args: &[&str]) -> String {
        let (code, raw, stderr) = etcdctl(self.endpoint, args);
        if code == 0 && args[..2] == ["lease", "grant"] {
            let name = format!("<{}>", (b'A' + self.names.len() as u8) as char);
            self.names.push((granted_id(&raw), name));
        }
        let (mut stdout, mut stderr) = (raw.clone(), stderr);
        if args.contains(&"json") && code == 0 {
            stdout = normalized_json(&stdout);
        }
        for (hex, name) in &self.names {
            let dec = i64::from_str_radix(hex, 16).unwrap().to_string();
            stdout = stdout.replace(hex, name).replace(&dec, name);
            stderr = stderr.replace(hex, name);
        }
        // etcdctl's client logs (timestamps, connection ids) are not part of the answer.
        let stderr: String = stderr.lines().filter(|l| l.starts_with("Error:")).map(|l| format!("{l}\n")).collect();
        let mut lines: Vec<String> = stdout
            .lines()
            .filter(|l| !["\"ClusterID\"", "\"MemberID\"", "\"RaftTerm\""].iter().any(|h| l.starts_with(h)))
            .map(|l| sort_attached(&mask_remaining(l, 58, 60)))
            .collect();
        if args.contains(&"fields") {
            // Attached keys come in Go map order.
            lines.sort();
        }
        self.out.push((code, lines.iter().map(|l| format!("{l}\n")).collect(), stderr));
        raw
    }
}

fn etcdctl_session(endpoint: &str) -> Vec<(i32, String, String)> {
    let mut s = Session { endpoint, names: Vec::new(), out: Vec::new() };
    let a = granted_id(&s.run(&["lease", "grant", "60"]));
    let b = granted_id(&s.run(&["lease", "grant", "0"]));
    for args in [
        &["lease", "grant", "9000000001"][..],
        &["lease", "grant", "abc"],
        &["lease", "grant"],
        &["put", "--lease", &a, "k1", "v"],
        &["put", "--lease", &a, "k2", "v"],
        &["put", "--lease", "1234", "k3", "v"],
        &["put", "--lease", "zz", "k3", "v"],
        &["put", "--ignore-lease", "k1", "w"],
        &["get", "k1", "-w", "fields"],
        &["lease", "timetolive", &a],
        &["lease", "timetolive", "--keys", &a],
        &["lease", "timetolive", "--keys", &a, "-w", "fields"],
        &["lease", "timetolive", "1234"],
        &["lease", "timetolive", "--keys", &a, "-w", "json"],
        &["lease", "keep-alive", "--once", &a, "-w", "json"],
        &["lease", "list", "-w", "json"],
    ] {
        s.run(args);
    }
    // etcd lists soonest expiry first: B (2 s) before A (60 s).
    let list = s.run(&["lease", "list"]);
    assert!(list.starts_with("found 2 leases\n"), "{list}");
    for args in [
        &["lease", "keep-alive", "--once", &a][..],
        &["lease", "keep-alive", "--once", "1234"],
        &["lease", "revoke", &a],
        &["lease", "revoke", &a],
        &["lease", "revoke", "xyz"],
        &["get", "--prefix", "k"],
        &["lease", "timetolive", &a],
        &["lease", "revoke", &b],
        &["lease", "list"],
    ] {
        s.run(args);
    }
    s.out
}

/// The same etcdctl session against etcd 3.5 and ballast prints the same (ids aside).
#[test]
fn etcdctl_lease_commands_match_etcd() {
    let e = etcd::Etcd::start();
    let s = Server::start(&[]);
    let want = etcdctl_session(&e.endpoint);
    let got = etcdctl_session(&s.endpoint);
    assert_eq!(want.len(), got.len());
    for (i, (w, g)) in want.iter().zip(&got).enumerate() {
        assert_eq!(g, w, "etcdctl command {i}: ballast (left) vs etcd (right)");
    }
    // Spot checks of the formats themselves (etcdctl's simple printer).
    assert_eq!(want[0].1, "lease <A> granted with TTL(60s)\n");
    assert_eq!(want[1].1, "lease <B> granted with TTL(2s)\n");
    assert_eq!(want[12].1, "lease <A> granted with TTL(60s), remaining(<rem>), attached keys([k1 k2])\n");
    assert!(want[13].1.contains("\"TTL\" : <rem>\n"), "{}", want[13].1);
    assert_eq!(want[18].1, "found 2 leases\n<B>\n<A>\n");
    assert_eq!(want[19].1, "lease <A> keepalived with TTL(60)\n");
    assert_eq!(want[25].1, "lease <A> already expired\n");
    assert_eq!(want[27].1, "found 0 leases\n");
}

/// What a restart re-attaches is each key's newest record: a key detached (put without lease),
/// deleted and put back, or moved to another lease before the kill is not deleted by a revoke
/// after it; a lease revoked after the snapshot stays revoked. Two shards, a snapshot in the
/// middle of it all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_reattaches_only_the_newest_records() {
    let mut s = Server::start(&["--snapshot-count", "10", "--shards", "2"]);
    let mut c = s.client().await;
    for id in [1, 2, 3] {
        grant(&mut c, id, 60).await;
    }
    for key in ["a", "b", "c", "d", "e", "f", "g", "h"] {
        put_leased(&mut c, key, 1).await;
    }
    put_leased(&mut c, "gone/1", 3).await;
    c.put("b", "plain", None).await.unwrap();
    c.delete("c", None).await.unwrap();
    c.put("c", "back", None).await.unwrap();
    put_leased(&mut c, "d", 2).await;
    for i in 0..30 {
        c.put(format!("filler/{i}"), "f", None).await.unwrap();
    }
    assert!(wait_for_lease_in_manifest(&s, 3).await, "lease 3 never reached a snapshot manifest");
    // After the snapshot, in the WAL tail only.
    c.put("e", "plain", None).await.unwrap();
    put_leased(&mut c, "f", 2).await;
    c.lease_revoke(3).await.unwrap();
    drop(c);
    s.kill();
    s.restart();
    let mut c = s.client().await;
    assert_eq!(time_to_live(&mut c, 1).await.2, ["a", "g", "h"]);
    assert_eq!(time_to_live(&mut c, 2).await.2, ["d", "f"]);
    assert_eq!(time_to_live(&mut c, 3).await.0, -1, "lease 3 was revoked before the kill");
    assert_eq!(lease_of(&mut c, "gone/1").await, None);
    c.lease_revoke(1).await.unwrap();
    let mut left = Vec::new();
    for key in ["a", "b", "c", "d", "e", "f", "g", "h"] {
        left.push((key, lease_of(&mut c, key).await));
    }
    let want = [("a", None), ("b", Some(0)), ("c", Some(0)), ("d", Some(2)), ("e", Some(0)), ("f", Some(2)), ("g", None), ("h", None)];
    assert_eq!(left, want);
}

/// A lease that expired before the kill stays gone, with its keys; one granted 2 s before the
/// kill expires after the restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiry_before_and_after_a_restart() {
    let mut s = Server::start(&[]);
    let mut c = s.client().await;
    let start = Instant::now();
    grant(&mut c, 1, 2).await;
    put_leased(&mut c, "early", 1).await;
    gone_by(&mut c, "early", start, Duration::from_secs(2) + EXPIRY_SLACK).await;
    grant(&mut c, 2, 2).await;
    put_leased(&mut c, "late", 2).await;
    drop(c);
    s.kill();
    s.restart();
    let restarted = Instant::now();
    let mut c = s.client().await;
    assert_eq!(lease_of(&mut c, "early").await, None);
    assert_eq!(time_to_live(&mut c, 1).await.0, -1);
    assert_eq!(lease_of(&mut c, "late").await, Some(2));
    gone_by(&mut c, "late", restarted, Duration::from_secs(3) + EXPIRY_SLACK).await;
}

/// Under the NOSPACE alarm a grant fails as etcd's (ResourceExhausted, database space
/// exceeded), while keepalives, TimeToLive, revokes and expiry still work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_under_the_nospace_alarm() {
    let s = Server::start(&["--quota-backend-bytes", "200000"]);
    let mut c = s.client().await;
    grant(&mut c, 1, 2).await;
    grant(&mut c, 2, 60).await;
    put_leased(&mut c, "short", 1).await;
    put_leased(&mut c, "long", 2).await;
    let start = Instant::now();
    let (_, e) = common::fill_until_error(&mut c, 1024).await;
    assert!(e.to_string().contains("etcdserver: mvcc: database space exceeded"), "{e}");
    let refused = c.lease_grant(60, Some(LeaseGrantOptions::new().with_id(3))).await.expect_err("a grant under NOSPACE");
    match refused {
        etcd_client::Error::GRpcStatus(st) => {
            assert_eq!((st.code(), st.message()), (tonic::Code::ResourceExhausted, "etcdserver: mvcc: database space exceeded"))
        }
        other => panic!("{other}"),
    }
    let (mut keeper, mut answers) = c.lease_keep_alive(2).await.unwrap();
    keeper.keep_alive().await.unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(2), answers.message()).await.expect("in time").unwrap().unwrap();
    assert_eq!(answer.ttl(), 60);
    assert_eq!(time_to_live(&mut c, 2).await.2, ["long"]);
    gone_by(&mut c, "short", start, Duration::from_secs(10)).await;
    c.lease_revoke(2).await.expect("a revoke under NOSPACE");
    assert_eq!(lease_of(&mut c, "long").await, None);
}

/// `etcdctl lease keep-alive <id>` on a 3 s lease revoked after 1.5 s: the same distinct lines
/// (keepalived with the granted TTL, then expired or revoked) and exit code on both servers.
fn keep_alive_until_revoked(endpoint: &str) -> (i32, Vec<String>) {
    let (_, granted, _) = etcdctl(endpoint, &["lease", "grant", "3"]);
    let id = granted_id(&granted);
    let child = Command::new(common::etcdctl_path())
        .env("ETCDCTL_API", "3")
        .args(["--endpoints", endpoint, "lease", "keep-alive", &id])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("run etcdctl");
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(etcdctl(endpoint, &["lease", "revoke", &id]).0, 0);
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || drop(tx.send(child.wait_with_output())));
    let Ok(out) = rx.recv_timeout(Duration::from_secs(8)) else {
        let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        panic!("etcdctl lease keep-alive did not end after the revoke");
    };
    let out = out.unwrap();
    let mut lines: Vec<String> = String::from_utf8(out.stdout).unwrap().lines().map(|l| l.replace(&id, "<id>")).collect();
    lines.dedup();
    (out.status.code().unwrap_or(-1), lines)
}

#[test]
fn etcdctl_keep_alive_ends_on_revoke_as_with_etcd() {
    let e = etcd::Etcd::start();
    let s = Server::start(&[]);
    let want = keep_alive_until_revoked(&e.endpoint);
    assert_eq!(want, (0, vec!["lease <id> keepalived with TTL(3)".to_string(), "lease <id> expired or revoked.".to_string()]));
    assert_eq!(keep_alive_until_revoked(&s.endpoint), want);
}

// ---------------------------------------------------------------------------------------------
// Restarts against a model

#[path = "common/rng.rs"]
mod rng;

/// Lease state as the acknowledged writes left it: lease -> keys, key -> lease (0: none).
#[derive(Default)]
struct Model {
    leases: std::collections::BTreeMap<i64, std::collections::BTreeSet<String>>,
    keys: std::collections::BTreeMap<String, i64>,
}

impl Model {
    fn put(&mut self, key: &str, lease: i64) {
        self.detach(key);
        self.keys.insert(key.to_string(), lease);
        if lease != 0 {
            self.leases.get_mut(&lease).unwrap().insert(key.to_string());
        }
    }
    fn detach(&mut self, key: &str) {
        if let Some(old) = self.keys.remove(key) {
            if let Some(ks) = self.leases.get_mut(&old) {
                ks.remove(key);
            }
        }
    }
}

/// One random acknowledged write, applied to the model too.
async fn random_write(c: &mut Client, r: &mut rng::Rng, m: &mut Model) {
    let key = format!("k{:02}", r.below(20));
    let live: Vec<i64> = m.leases.keys().copied().collect();
    match r.below(10) {
        0 => {
            let id = r.between(1, 8);
            let res = c.lease_grant(600, Some(LeaseGrantOptions::new().with_id(id))).await;
            assert_eq!(res.is_ok(), !m.leases.contains_key(&id), "grant {id}: {res:?}");
            m.leases.entry(id).or_default();
        }
        1 if !live.is_empty() => {
            let id = r.pick(&live);
            c.lease_revoke(id).await.expect("revoke");
            for key in m.leases.remove(&id).unwrap() {
                m.keys.remove(&key);
            }
        }
        2 => {
            c.delete(key.as_str(), None).await.expect("delete");
            m.detach(&key);
        }
        3 if m.keys.contains_key(&key) => {
            c.put(key.as_str(), "kept", Some(PutOptions::new().with_ignore_lease())).await.expect("put ignore_lease");
        }
        4 if !live.is_empty() => {
            let (a, b) = (r.pick(&live), format!("k{:02}", r.below(20)));
            let ops = vec![etcd_client::TxnOp::put(key.as_str(), "t", Some(PutOptions::new().with_lease(a))), etcd_client::TxnOp::put(b.as_str(), "t", None)];
            if key != b {
                c.txn(etcd_client::Txn::new().and_then(ops)).await.expect("txn");
                m.put(&key, a);
                m.put(&b, 0);
            }
        }
        _ => {
            let lease = if live.is_empty() || r.chance(30) { 0 } else { r.pick(&live) };
            c.put(key.as_str(), "v", Some(PutOptions::new().with_lease(lease))).await.expect("put");
            m.put(&key, lease);
        }
    }
}

/// Leases, every key's lease, every lease's keys: as the model says.
async fn check_model(c: &mut Client, m: &Model, when: &str) {
    let mut ids: Vec<i64> = c.leases().await.unwrap().leases().iter().map(|l| l.id()).collect();
    ids.sort();
    assert_eq!(ids, m.leases.keys().copied().collect::<Vec<_>>(), "{when}: leases");
    for i in 0..20 {
        let key = format!("k{i:02}");
        assert_eq!(lease_of(c, &key).await, m.keys.get(&key).copied(), "{when}: lease of {key}");
    }
    for (id, keys) in &m.leases {
        let (remaining, granted, got) = time_to_live(c, *id).await;
        assert_eq!(got, keys.iter().cloned().collect::<Vec<_>>(), "{when}: keys of lease {id}");
        assert!(granted == 600 && remaining > 590, "{when}: lease {id} {remaining}/{granted}");
    }
}

/// Rounds of random lease writes, each ended by kill -9 and a restart (two shards, a
/// snapshot every 7 entries): what comes back is what the acknowledged writes made.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarts_keep_what_acknowledged_lease_writes_made() {
    let mut s = Server::start(&["--snapshot-count", "7", "--shards", "2"]);
    let mut r = rng::Rng(0x1ea5e);
    let mut m = Model::default();
    for round in 0..4 {
        let mut c = s.client().await;
        for _ in 0..120 {
            random_write(&mut c, &mut r, &mut m).await;
        }
        check_model(&mut c, &m, &format!("round {round}, before the kill")).await;
        drop(c);
        s.kill();
        s.restart();
        let mut c = s.client().await;
        check_model(&mut c, &m, &format!("round {round}, after the restart")).await;
    }
    let mut c = s.client().await;
    for id in m.leases.keys() {
        c.lease_revoke(*id).await.unwrap();
    }
    for i in 0..20 {
        let key = format!("k{i:02}");
        let want = m.keys.get(&key).filter(|&&l| l == 0).copied();
        assert_eq!(lease_of(&mut c, &key).await, want, "{key} after revoking every lease");
    }
}

/// Writers that never stop (grants, puts with and without leases, revokes) and kill -9 in the
/// middle of them, three times: after each restart every key's lease exists and lists it, every
/// lease's keys name it, and revoking every lease leaves no key with a lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kills_during_lease_writes_leave_consistent_leases() {
    let mut s = Server::start(&["--snapshot-count", "9", "--shards", "2"]);
    for round in 0..3u64 {
        let c = s.client().await;
        let mut writers = Vec::new();
        for w in 0..4u64 {
            let mut c = c.clone();
            writers.push(tokio::spawn(async move {
                let mut r = rng::Rng(round * 10 + w);
                loop {
                    let id = r.between(1, 12);
                    let key = format!("k{:02}", r.below(20));
                    // Errors (lease exists / not found, the server going away) are expected.
                    let _ = match r.below(6) {
                        0 => c.lease_grant(600, Some(LeaseGrantOptions::new().with_id(id))).await.map(drop),
                        1 => c.lease_revoke(id).await.map(drop),
                        2 => c.put(key, "plain", None).await.map(drop),
                        3 => c.delete(key, None).await.map(drop),
                        _ => c.put(key, "leased", Some(PutOptions::new().with_lease(id))).await.map(drop),
                    };
                }
            }));
        }
        tokio::time::sleep(Duration::from_millis(1500)).await;
        s.kill();
        for w in writers {
            w.abort();
        }
        drop(c);
        s.restart();
        let mut c = s.client().await;
        let ids: Vec<i64> = c.leases().await.unwrap().leases().iter().map(|l| l.id()).collect();
        let mut on_leases = std::collections::BTreeMap::new();
        for id in &ids {
            for key in time_to_live(&mut c, *id).await.2 {
                assert!(on_leases.insert(key.clone(), *id).is_none(), "round {round}: {key} on two leases");
            }
        }
        for i in 0..20 {
            let key = format!("k{i:02}");
            let lease = lease_of(&mut c, &key).await.filter(|&l| l != 0);
            assert_eq!(lease, on_leases.get(&key).copied(), "round {round}: {key} vs the leases' keys");
            if let Some(l) = lease {
                assert!(ids.contains(&l), "round {round}: {key} names lease {l}, which is gone");
            }
        }
    }
    let mut c = s.client().await;
    for l in c.leases().await.unwrap().leases().to_vec() {
        c.lease_revoke(l.id()).await.unwrap();
    }
    for i in 0..20 {
        let key = format!("k{i:02}");
        assert!(lease_of(&mut c, &key).await.unwrap_or(0) == 0, "{key} keeps a lease after every revoke");
    }
}

/// With `--experimental-enable-lease-checkpoint` the leader records a lease's time left (every
/// 2 s here, failpoint `lease-checkpoint-secs`; 5 min in production). A restart keeps that time
/// only with `-persist`: without it etcd's backend never held it, so the lease comes back with
/// its full TTL (a checkpoint replayed from the WAL is not applied); with it, with the time left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_keeps_checkpointed_time_left_only_when_persisted() {
    for (persist, flags) in [(false, vec!["--experimental-enable-lease-checkpoint"]), (true, vec!["--experimental-enable-lease-checkpoint", "--experimental-enable-lease-checkpoint-persist"])] {
        let mut s = Server::start_with_env(&flags, &[("BALLAST_FAILPOINTS", "lease-checkpoint-secs=2")]);
        let mut c = s.client().await;
        grant(&mut c, 100, 60).await;
        // A checkpoint at ~2 s and ~4 s records ~58 and ~56 s left.
        tokio::time::sleep(Duration::from_secs(5)).await;
        drop(c);
        s.kill();
        s.restart();
        let mut c = s.client().await;
        let (left, granted, _) = time_to_live(&mut c, 100).await;
        assert_eq!(granted, 60);
        if persist {
            assert!(left <= 58, "persisted: the checkpointed time left, not the full TTL: {left}");
        } else {
            assert!(left >= 59, "not persisted: the full TTL again after a restart, as etcd: {left}");
        }
    }
}

//! Maintenance.Snapshot as etcd's tools use it: the same history (puts, overwrites, a range
//! delete, a txn that deletes a key and puts others, leases with and without keys, a revoked
//! lease, a compaction, a value larger than a page, enough keys for branch pages, users and
//! roles, auth enabled) is sent to a real etcd 3.5 and to ballast (two shards); `etcdctl
//! snapshot save` fetches both snapshots. Ballast's must end with the SHA-256 etcdctl and
//! etcdutl check, `etcdutl snapshot status` must report its revision and every entry, its
//! `key`, `lease`, `authRoles` and `auth` buckets must equal etcd's byte for byte, and etcd
//! 3.5 started on `etcdutl snapshot restore` of it must serve the same keys (now and at a past
//! revision), HashKV, users and roles as ballast. A snapshot taken while writes go on holds one
//! revision's state. The etcd-client crate reads the stream too.

mod common;
#[path = "common/bolt.rs"]
mod bolt;
#[path = "common/etcd.rs"]
mod etcd;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use ballast::proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use ballast::proto::etcdserverpb::kv_client::KvClient;
use ballast::proto::etcdserverpb::lease_client::LeaseClient;
use ballast::proto::etcdserverpb::request_op::Request as Op;
use ballast::proto::etcdserverpb::*;
use tonic::transport::Channel;

/// Keys put after the compaction: enough for several leaf pages and a branch page.
const MANY_KEYS: usize = 300;
/// A value larger than a bolt page (an overflow page in the file).
const BIG_VALUE_BYTES: usize = 100_000;
const ROOT: &str = "root:pw";

fn put(key: &str, value: &[u8], lease: i64) -> PutRequest {
    PutRequest { key: key.into(), value: value.to_vec(), lease, ..Default::default() }
}

/// The history, sent to one server; returns the compaction revision.
async fn history(ch: Channel) -> i64 {
    let (mut kv, mut lease) = (KvClient::new(ch.clone()), LeaseClient::new(ch));
    for (k, v) in [("a", "1"), ("b", "2"), ("a", "3"), ("p/1", "x"), ("p/2", "y"), ("p/3", "z")] {
        kv.put(put(k, v.as_bytes(), 0)).await.unwrap();
    }
    kv.delete_range(DeleteRangeRequest { key: b"p/".to_vec(), range_end: b"p0".to_vec(), prev_kv: false }).await.unwrap();
    let cmp = Compare { result: CompareResult::Greater as i32, target: CompareTarget::Version as i32, key: b"a".to_vec(), target_union: Some(TargetUnion::Version(0)), range_end: vec![] };
    let ops = vec![
        RequestOp { request: Some(Op::RequestDeleteRange(DeleteRangeRequest { key: b"b".to_vec(), range_end: b"c".to_vec(), prev_kv: false })) },
        RequestOp { request: Some(Op::RequestPut(put("a", b"again", 0))) },
        RequestOp { request: Some(Op::RequestPut(put("t", b"txn", 0))) },
    ];
    assert!(kv.txn(TxnRequest { compare: vec![cmp], success: ops, failure: vec![] }).await.unwrap().into_inner().succeeded);
    for (id, ttl) in [(0x1234, 600), (0x5678, 300), (0x9999, 100)] {
        lease.lease_grant(LeaseGrantRequest { ttl, id }).await.unwrap();
    }
    kv.put(put("leased", b"l", 0x1234)).await.unwrap();
    kv.put(put("gone", b"g", 0x9999)).await.unwrap();
    lease.lease_revoke(LeaseRevokeRequest { id: 0x9999 }).await.unwrap();
    let compact_at = 6;
    kv.compact(CompactionRequest { revision: compact_at, physical: true }).await.unwrap();
    kv.put(put("big", &vec![b'v'; BIG_VALUE_BYTES], 0)).await.unwrap();
    for i in 0..MANY_KEYS {
        kv.put(put(&format!("k/{i:04}"), format!("value {i}").as_bytes(), 0)).await.unwrap();
    }
    compact_at
}

/// Users and roles by etcdctl, then auth enabled.
fn add_auth(ctl: &Path, endpoint: &str) {
    for args in [
        &["user", "add", "root", "--new-user-password=pw"][..],
        &["role", "add", "r1"],
        &["role", "grant-permission", "r1", "readwrite", "a", "z"],
        &["role", "grant-permission", "r1", "read", "k/", "--prefix"],
        &["user", "add", "u1", "--new-user-password=pw"],
        &["user", "grant-role", "u1", "r1"],
        &["auth", "enable"],
    ] {
        run(ctl, endpoint, args);
    }
}

/// etcdctl 3.5 that must succeed; its stdout.
fn run(ctl: &Path, endpoint: &str, args: &[&str]) -> String {
    let out = Command::new(ctl)
        .args(["--endpoints", endpoint, "--command-timeout", "20s"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run etcdctl");
    assert!(out.status.success(), "etcdctl {args:?} at {endpoint}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("{e}: {s}"))
}

/// `etcdctl snapshot save` into `dir`; the saved file's bytes.
fn save(ctl: &Path, endpoint: &str, dir: &Path, name: &str) -> (PathBuf, Vec<u8>) {
    let path = dir.join(name);
    run(ctl, endpoint, &["--user", ROOT, "snapshot", "save", path.to_str().unwrap()]);
    let bytes = std::fs::read(&path).unwrap();
    (path, bytes)
}

/// `etcdutl snapshot status -w json`.
fn status(ctl: &Path, snapshot: &Path) -> serde_json::Value {
    let out = Command::new(ctl.with_file_name("etcdutl")).args(["snapshot", "status", snapshot.to_str().unwrap(), "-w", "json"]).output().expect("run etcdutl");
    assert!(out.status.success(), "etcdutl snapshot status: {}", String::from_utf8_lossy(&out.stderr));
    json(&String::from_utf8_lossy(&out.stdout))
}

/// What a member answers that must match between ballast and etcd restored from its
/// snapshot: every key now and at `past`, the history below the compaction refused, users,
/// roles and HashKV.
fn served(ctl: &Path, endpoint: &str, past: i64, compact_rev: i64) -> Vec<String> {
    let kvs = |extra: &[&str]| {
        let mut args = vec!["--user", ROOT, "get", "", "--prefix", "-w", "json"];
        args.extend_from_slice(extra);
        let v = json(&run(ctl, endpoint, &args));
        format!("{} {}", v["kvs"], v["count"])
    };
    let refused = Command::new(ctl)
        .args(["--endpoints", endpoint, "--user", ROOT, "get", "a", "--rev", &(compact_rev - 1).to_string()])
        .output()
        .unwrap();
    let hash = json(&run(ctl, endpoint, &["--user", ROOT, "endpoint", "hashkv", "-w", "json"]));
    vec![
        kvs(&[]),
        kvs(&["--rev", &past.to_string()]),
        String::from_utf8_lossy(&refused.stderr).lines().last().unwrap_or_default().to_string(),
        run(ctl, endpoint, &["--user", ROOT, "user", "list"]),
        run(ctl, endpoint, &["--user", ROOT, "user", "get", "u1"]),
        run(ctl, endpoint, &["--user", ROOT, "role", "get", "r1"]),
        sorted_lines(&run(ctl, endpoint, &["--user", ROOT, "lease", "list"])),
        without_remaining(&run(ctl, endpoint, &["--user", ROOT, "lease", "timetolive", "1234", "--keys"])),
        format!("hash {} compact {}", hash[0]["HashKV"]["hash"], hash[0]["HashKV"]["compact_revision"]),
    ]
}

/// etcd lists leases in no order.
fn sorted_lines(s: &str) -> String {
    let mut lines: Vec<_> = s.lines().collect();
    lines.sort();
    lines.join("\n")
}

/// `lease timetolive` without the remaining seconds (a restore extends every lease, as a
/// restart does).
fn without_remaining(s: &str) -> String {
    match (s.find(", remaining("), s.find("), attached")) {
        (Some(a), Some(b)) => format!("{}{}", &s[..a], &s[b + 1..]),
        _ => s.to_string(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn etcd_tools_save_check_and_restore_ballasts_snapshot() {
    let ctl = etcd::find_etcdctl35().unwrap_or_else(|e| panic!("etcdctl 3.5 is needed for this test: {e}"));
    let e = etcd::Etcd::start();
    let b = common::Server::start(&["--shards", "2"]);
    let compact_e = history(common::grpc_channel(&e.endpoint).await).await;
    let compact_b = history(common::grpc_channel(&b.endpoint).await).await;
    assert_eq!(compact_e, compact_b);
    add_auth(&ctl, &e.endpoint);
    add_auth(&ctl, &b.endpoint);
    let dir = common::fresh_dir("snapshot-save");
    let (etcd_path, etcd_saved) = save(&ctl, &e.endpoint, &dir, "etcd.db");
    let (path, saved) = save(&ctl, &b.endpoint, &dir, "ballast.db");

    // The file: a digest etcdutl accepts, and what it reports.
    let (want, got) = (bolt::buckets(&bolt::strip_digest(&etcd_saved)), bolt::buckets(&bolt::strip_digest(&saved)));
    let (etcd_status, st) = (status(&ctl, &etcd_path), status(&ctl, &path));
    assert_eq!(st["revision"], etcd_status["revision"], "status revision: ballast {st}, etcd {etcd_status}");
    let entries: usize = got.values().map(Vec::len).sum();
    assert_eq!(st["totalKey"].as_u64(), Some(entries as u64), "status counts every entry of every bucket: {st}");
    assert_eq!(st["totalKey"], etcd_status["totalKey"], "as many entries as etcd's file: ballast {st}, etcd {etcd_status}");
    assert_eq!(st["totalSize"].as_u64(), Some(saved.len() as u64 - 32));
    // The buckets: etcd's names, and the same history, leases, roles and auth flags.
    assert_eq!(got.keys().collect::<Vec<_>>(), want.keys().collect::<Vec<_>>(), "bucket names");
    assert_eq!(got["key"].len(), want["key"].len(), "key bucket entries");
    assert!(got["key"] == want["key"], "the key bucket equals etcd's byte for byte");
    for bucket in ["lease", "authRoles", "auth", "cluster", "alarm", "members_removed"] {
        assert_eq!(got[bucket], want[bucket], "bucket {bucket}");
    }
    let users = |b: &bolt::Buckets| b["authUsers"].iter().map(|(k, _)| k.clone()).collect::<Vec<_>>();
    assert_eq!(users(&got), users(&want), "users");
    let meta_keys = |b: &bolt::Buckets| b["meta"].iter().map(|(k, _)| String::from_utf8_lossy(k).into_owned()).collect::<Vec<_>>();
    assert_eq!(meta_keys(&got), meta_keys(&want), "meta keys");
    let compacted = |b: &bolt::Buckets| b["meta"].iter().filter(|(k, _)| k.ends_with(b"CompactRev")).cloned().collect::<Vec<_>>();
    assert_eq!(compacted(&got), compacted(&want), "compaction revisions");

    // etcd on the restored file serves what ballast serves.
    let restored = etcd::Etcd::start_restored(&path);
    let past = compact_b + 2;
    let (ours, theirs) = (served(&ctl, &b.endpoint, past, compact_b), served(&ctl, &restored.endpoint, past, compact_b));
    assert!(ours[0].contains("\"lease\":4660"), "the leased key is served with its lease: {}", ours[0]);
    assert!(ours[2].contains("compacted"), "below the compaction: {}", ours[2]);
    for (i, (o, t)) in ours.iter().zip(&theirs).enumerate() {
        assert_eq!(o, t, "answer {i}: ballast, then etcd restored from ballast's snapshot");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_etcd_client_crate_reads_the_stream() {
    let b = common::Server::start(&[]);
    let mut client = b.client().await;
    for i in 0..50 {
        client.put(format!("key{i}"), vec![b'x'; 2000], None).await.unwrap();
    }
    let mut stream = client.maintenance_client().snapshot().await.unwrap();
    let (mut blobs, mut remaining) = (Vec::new(), Vec::new());
    for _ in 0..10_000 {
        let Some(msg) = stream.message().await.unwrap() else { break };
        assert!(msg.header().is_none(), "etcd sends no header");
        remaining.push(msg.remaining_bytes());
        blobs.push(msg.blob().to_vec());
    }
    let sha = blobs.pop().expect("the digest");
    let db: Vec<u8> = blobs.concat();
    assert!(db.len() > 50 * 2000, "the values are in the file");
    assert!(blobs.iter().all(|b| b.len() == 32 * 1024 || std::ptr::eq(b, blobs.last().unwrap())), "32 KiB chunks");
    let mut sent = 0;
    for (blob, left) in blobs.iter().zip(&remaining) {
        sent += blob.len() as u64;
        assert_eq!(*left, db.len() as u64 - sent, "remaining_bytes");
    }
    assert_eq!(remaining.last(), Some(&0));
    let mut saved = db.clone();
    saved.extend_from_slice(&sha);
    let buckets = bolt::buckets(&bolt::strip_digest(&saved));
    assert_eq!(buckets["key"].len(), 50);
    // Auth never enabled: etcd's auth bucket holds only the revision (its authEnabled key is
    // written by the first AuthEnable).
    let auth_keys: Vec<&[u8]> = buckets["auth"].iter().map(|(k, _)| k.as_slice()).collect();
    assert_eq!(auth_keys, [&b"authRevision"[..]]);
}

/// Puts a writer sends at most while the snapshot is taken.
const PUTS_DURING_SAVE: usize = 3000;

/// A snapshot taken while writes go on holds exactly one revision's history: etcd restored
/// from it serves, at its revision, what ballast serves at that revision.
#[tokio::test(flavor = "multi_thread")]
async fn a_snapshot_under_writes_is_one_revision() {
    let ctl = etcd::find_etcdctl35().unwrap_or_else(|e| panic!("etcdctl 3.5 is needed for this test: {e}"));
    let b = common::Server::start(&["--shards", "2"]);
    let mut kv = KvClient::new(common::grpc_channel(&b.endpoint).await);
    for i in 0..200 {
        kv.put(put(&format!("pre/{i:03}"), &vec![b'p'; 500], 0)).await.unwrap();
    }
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let (stop, done) = (std::sync::Arc::new(AtomicBool::new(false)), std::sync::Arc::new(AtomicUsize::new(0)));
    let writer = {
        let (mut kv, stop, done) = (kv.clone(), stop.clone(), done.clone());
        tokio::spawn(async move {
            let mut n = 0;
            while n < PUTS_DURING_SAVE && !stop.load(Ordering::Relaxed) {
                kv.put(put(&format!("pre/{:03}", n % 300), format!("w{n}").as_bytes(), 0)).await.unwrap();
                n += 1;
                done.store(n, Ordering::Relaxed);
            }
            n
        })
    };
    // The save starts once the writer is under way (bounded wait).
    for _ in 0..500 {
        if done.load(Ordering::Relaxed) >= 10 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let dir = common::fresh_dir("snapshot-under-writes");
    let path = dir.join("s.db");
    let (ctl2, endpoint, p) = (ctl.clone(), b.endpoint.clone(), path.clone());
    tokio::task::spawn_blocking(move || run(&ctl2, &endpoint, &["snapshot", "save", p.to_str().unwrap()])).await.unwrap();
    stop.store(true, Ordering::Relaxed);
    let puts = writer.await.unwrap();
    assert!(puts > 0, "writes went on");
    let restored = etcd::Etcd::start_restored(&path);
    let theirs = json(&run(&ctl, &restored.endpoint, &["get", "", "--prefix", "-w", "json"]));
    let rev = theirs["header"]["revision"].as_i64().unwrap();
    let ours = json(&run(&ctl, &b.endpoint, &["get", "", "--prefix", "-w", "json", "--rev", &rev.to_string()]));
    eprintln!("snapshot at revision {rev}, {puts} puts sent by then");
    assert!(rev >= 211, "the snapshot holds the writes made before it: revision {rev}, {puts} puts");
    assert_eq!(ours["kvs"], theirs["kvs"], "at revision {rev} ({puts} puts during the save)");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Snapshot downloads in progress at once (ballast's `SNAPSHOT_DOWNLOADS_MAX`).
const DOWNLOADS_MAX: usize = 4;

/// Each download holds a whole copy of the data on disk until its client has taken it, so
/// clients that start downloads and stop reading must not fill the disk: past the bound one
/// more is refused with ResourceExhausted, and a slot comes back when a client goes away.
#[tokio::test(flavor = "multi_thread")]
async fn stalled_downloads_are_bounded_and_give_their_slot_back() {
    let b = common::Server::start(&[]);
    let mut client = b.client().await;
    // 20 MiB: far more than the server reads ahead and HTTP/2 windows hold, so a download
    // whose client does not read stays in progress.
    for i in 0..200 {
        client.put(format!("big{i}"), vec![b'x'; 100 << 10], None).await.unwrap();
    }
    let mut held = Vec::new();
    for _ in 0..DOWNLOADS_MAX {
        held.push(b.client().await.maintenance_client().snapshot().await.expect("a download within the bound"));
    }
    let Err(refused) = b.client().await.maintenance_client().snapshot().await else { panic!("one download past the bound is refused") };
    let etcd_client::Error::GRpcStatus(status) = refused else { panic!("a gRPC status: {refused:?}") };
    assert_eq!(status.code(), tonic::Code::ResourceExhausted);
    assert_eq!(status.message(), "ballast: too many snapshot downloads in progress (at most 4 at once); try again when one has ended");
    drop(held.pop());
    // The server notices the client went away (bounded wait), then serves a whole download.
    let mut stream = None;
    for _ in 0..100 {
        match b.client().await.maintenance_client().snapshot().await {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    let mut stream = stream.expect("a slot came back within 10 s of a client going away");
    let (mut bytes, mut last_remaining) = (0usize, u64::MAX);
    for _ in 0..10_000 {
        let Some(msg) = stream.message().await.unwrap() else { break };
        bytes += msg.blob().len();
        last_remaining = msg.remaining_bytes();
    }
    assert_eq!(last_remaining, 0, "the download ran to its digest");
    assert!(bytes > 200 * (100 << 10), "the values are in the file: {bytes} bytes");
    client.put("after", "ok", None).await.expect("the server goes on serving");
    drop(held);
}

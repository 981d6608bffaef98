//! Durability: every acknowledged write survives SIGKILL with its revision; restart restores
//! keys, revisions and the compaction point; SIGTERM exits cleanly; a second server on a data
//! dir in use is refused, and the data dir is private as etcd's. (Damaged and torn WALs:
//! wal_recovery.rs.)

mod common;
#[path = "common/etcd.rs"]
mod etcd;

use std::collections::BTreeMap;

use etcd_client::GetOptions;

const WRITERS: usize = 8;
const PUTS_PER_WRITER: usize = 40;

/// Concurrent writers; returns key → (revision, value) of every acknowledged put.
async fn write_concurrently(s: &common::Server, tag: &str) -> BTreeMap<String, (i64, String)> {
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let mut c = s.client().await;
        let tag = tag.to_string();
        tasks.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for i in 0..PUTS_PER_WRITER {
                let (k, v) = (format!("{tag}/w{w}/k{}", i % 10), format!("v{i}"));
                let rev = c.put(k.clone(), v.clone(), None).await.unwrap().header().unwrap().revision();
                acked.push((k, rev, v));
            }
            acked
        }));
    }
    let mut latest = BTreeMap::new();
    for t in tasks {
        for (k, rev, v) in t.await.unwrap() {
            let e = latest.entry(k).or_insert((0, String::new()));
            if rev > e.0 {
                *e = (rev, v);
            }
        }
    }
    latest
}

async fn assert_present(s: &common::Server, acked: &BTreeMap<String, (i64, String)>) {
    let mut c = s.client().await;
    for (k, (rev, v)) in acked {
        let r = c.get(k.as_str(), None).await.unwrap();
        let kv = r.kvs().first().unwrap_or_else(|| panic!("acknowledged key {k} lost"));
        assert_eq!((kv.mod_revision(), kv.value_str().unwrap()), (*rev, v.as_str()), "key {k}");
    }
}

#[tokio::test]
async fn acknowledged_writes_survive_sigkill() {
    let mut s = common::Server::start(&["--shards", "2"]);
    let acked = write_concurrently(&s, "a").await;
    let total = (WRITERS * PUTS_PER_WRITER) as i64;
    let revs: Vec<i64> = acked.values().map(|(r, _)| *r).collect();
    assert_eq!(*revs.iter().max().unwrap(), total + 1, "one revision per put, no gaps");
    s.kill();
    s.restart();
    assert_present(&s, &acked).await;
    let mut c = s.client().await;
    assert_eq!(c.get("a", None).await.unwrap().header().unwrap().revision(), total + 1);
    // Writing continues from the recovered revision.
    assert_eq!(c.put("after", "x", None).await.unwrap().header().unwrap().revision(), total + 2);
    let count = c.get("a/", Some(GetOptions::new().with_prefix().with_count_only())).await.unwrap().count();
    assert_eq!(count, (WRITERS * 10) as i64);
}

#[tokio::test]
async fn restart_restores_history_and_compaction_point() {
    let mut s = common::Server::start(&[]);
    let mut c = s.client().await;
    for i in 0..5 {
        c.put("k", format!("v{i}"), None).await.unwrap(); // revisions 2..=6
    }
    c.delete("k", None).await.unwrap(); // 7
    c.put("k", "again", None).await.unwrap(); // 8
    c.compact(4, None).await.unwrap();
    drop(c);
    s.terminate();
    s.restart();
    let mut c = s.client().await;
    let kv = c.get("k", None).await.unwrap().kvs()[0].clone();
    assert_eq!((kv.create_revision(), kv.mod_revision(), kv.version()), (8, 8, 1));
    let old = c.get("k", Some(GetOptions::new().with_revision(5))).await.unwrap();
    assert_eq!((old.kvs()[0].value(), old.kvs()[0].version()), (&b"v3"[..], 4));
    let e = c.get("k", Some(GetOptions::new().with_revision(3))).await.unwrap_err();
    assert!(e.to_string().contains("etcdserver: mvcc: required revision has been compacted"), "{e}");
}

/// etcd 3.5 logs the signal, stops gracefully, then re-raises it (`osutil.HandleInterrupts`):
/// the process dies of SIGTERM (a shell's 143), not exit 0. ballast does the same.
#[test]
fn sigterm_stops_gracefully_and_dies_of_the_signal_as_etcd() {
    let mut etcd = etcd::Etcd::start();
    // etcd answers /health before it handles signals (its "notifying init daemon" comes
    // after); a SIGTERM before that kills it unlogged.
    for _ in 0..500 {
        if etcd.log().contains("notifying init daemon") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    etcd.terminate();
    let etcd_status = etcd.wait_exit(std::time::Duration::from_secs(30));
    let mut s = common::Server::start(&[]);
    s.ctl(&["put", "x", "y"]);
    let status = s.terminate();
    assert!(common::died_of_sigterm(etcd_status), "etcd: {etcd_status}");
    assert!(common::died_of_sigterm(status), "exit status {status}; log:\n{}", s.log());
    for (server, log) in [("etcd", etcd.log()), ("ballast", s.log())] {
        let line = log.lines().find(|l| l.contains("received signal; shutting down")).unwrap_or_else(|| panic!("{server}: no signal logged:\n{log}"));
        let line: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(line["signal"], "terminated", "{server}: {line}");
    }
    assert!(s.log().contains("stopped ballast"));
    s.restart();
    assert_eq!(s.ctl(&["get", "x", "--print-value-only"]).trim(), "y");
}

#[test]
fn wal_dir_flag_puts_the_log_elsewhere_and_restart_reads_it() {
    let wal = common::fresh_dir("wal");
    let wal_flag = wal.join("log");
    let mut s = common::Server::start(&["--wal-dir", wal_flag.to_str().unwrap(), "--shards", "2"]);
    s.ctl(&["put", "k", "v"]);
    assert!(wal_flag.join("0").read_dir().unwrap().any(|e| e.unwrap().path().extension().is_some_and(|x| x == "wal")));
    assert!(wal_flag.join("1").is_dir(), "one stripe per shard");
    assert!(!s.data_dir.join("member/wal").exists(), "nothing under the data dir's default wal path");
    s.kill();
    s.restart();
    assert_eq!(s.ctl(&["get", "k", "--print-value-only"]).trim(), "v");
    drop(s);
    let _ = std::fs::remove_dir_all(&wal);
}

/// The next WAL segment is prepared (zero-filled) in the background once an eighth of the
/// current one is written, not when the current one is full: it exists while the first still
/// takes writes. glommio starts a blocking call only when its future is first polled, so the
/// preparation used to run at the roll itself, with every write waiting for it.
#[tokio::test]
async fn the_next_wal_segment_is_ready_before_the_current_one_fills() {
    const SEGMENT_BYTES: usize = 1 << 20;
    let s = common::Server::start(&["--shards", "1", "--wal-segment-bytes", &SEGMENT_BYTES.to_string(), "--snapshot-count", "1000000"]);
    let mut c = s.client().await;
    // About a quarter of the segment: past the eighth that starts the preparation.
    let value = "v".repeat(4096);
    for i in 0..SEGMENT_BYTES / 4 / 4096 {
        c.put(format!("k{i:04}"), value.clone(), None).await.unwrap();
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while s.wal_segments(0).len() < 2 && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let segs = s.wal_segments(0);
    assert_eq!(segs.len(), 2, "the next segment is prepared while the first takes writes: {segs:?}");
    assert!(!common::wal_records(&segs[0]).is_empty(), "the first segment holds the writes");
    assert!(common::wal_records(&segs[1]).is_empty(), "the prepared segment is not written yet");
    assert_eq!(std::fs::metadata(&segs[1]).unwrap().len(), SEGMENT_BYTES as u64, "prepared whole");
}

/// Every file and directory under `dir`, with its permission bits.
fn modes(dir: &std::path::Path, out: &mut Vec<(std::path::PathBuf, u32)>) {
    use std::os::unix::fs::PermissionsExt;
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let meta = entry.metadata().unwrap();
        out.push((entry.path(), meta.permissions().mode() & 0o777));
        if meta.is_dir() {
            modes(&entry.path(), out);
        }
    }
}

/// A second server on a data dir another one serves is refused (etcd's second process never
/// serves: its bolt file is flocked); the first keeps every write. The data dir is etcd's
/// private one: directories 0700, files 0600.
#[tokio::test]
async fn a_data_dir_in_use_is_refused_and_private() {
    let s = common::Server::start(&[]);
    let mut c = s.client().await;
    c.put("kept", "1", None).await.unwrap();
    let mut second = common::Server::on_data_dir(&s.data_dir, &[]);
    let log = second.restart_refused();
    assert!(log.contains("is locked by another process"), "{log}");
    c.put("kept", "2", None).await.unwrap();
    let got = c.get("kept", None).await.unwrap();
    assert_eq!(got.kvs()[0].value(), b"2");
    // Snapshot segments too (a defragment writes them).
    c.maintenance_client().defragment().await.unwrap();
    let mut found = vec![(s.data_dir.clone(), std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&s.data_dir).unwrap().permissions()) & 0o777)];
    modes(&s.data_dir, &mut found);
    assert!(found.iter().any(|(p, _)| p.extension().is_some_and(|e| e == "seg")), "{found:?}");
    for (path, mode) in &found {
        let want = if path.is_dir() { 0o700 } else { 0o600 };
        assert_eq!(*mode, want, "{} is {mode:o}", path.display());
    }
}

//! Snapshots: every --snapshot-count entries each shard writes an rkyv segment and a manifest
//! is renamed into place; older WAL segments are released and recycled; restart loads the
//! segments and replays only the WAL after them, with history, revisions, compaction point and
//! alarms intact — also when --shards changes (a stripe no shard writes any more is then
//! deleted). `etcdctl defrag` writes a fresh snapshot online.

mod common;

use std::path::Path;

use etcd_client::{DeleteOptions, GetOptions};

const SMALL_WAL: &[&str] = &["--snapshot-count", "40", "--wal-segment-bytes", "65536", "--shards", "2"];

fn manifest(data_dir: &Path) -> serde_json::Value {
    common::read_checked_json(&data_dir.join("member/snap/manifest.json")).expect("a snapshot manifest")
}

/// Writes 400 puts over 50 keys (history), deletes a few, compacts; returns the revision.
async fn workload(c: &mut etcd_client::Client) -> i64 {
    let value = vec![b'x'; 512];
    for i in 0..400 {
        c.put(format!("k/{:02}", i % 50), value.clone(), None).await.unwrap();
    }
    c.delete("k/4", Some(DeleteOptions::new().with_prefix())).await.unwrap(); // k/40..k/49
    c.compact(300, None).await.unwrap();
    c.get("k", None).await.unwrap().header().unwrap().revision()
}

#[tokio::test]
async fn snapshots_release_wal_and_restart_restores_everything() {
    let mut s = common::Server::start(SMALL_WAL);
    let mut c = s.client().await;
    let rev = workload(&mut c).await;
    assert_eq!(rev, 402);
    let m = manifest(&s.data_dir);
    assert!(m["index"].as_u64().unwrap() >= 360, "a snapshot was taken recently: {m}");
    // A full snapshot's segment per shard, then each delta's.
    let deltas = m["deltas"].as_u64().unwrap() as usize;
    assert_eq!(m["segments"].as_array().unwrap().len(), 2 * (deltas + 1), "{m}");
    // 400 × ~600 B of WAL would fill four 64 KiB segments; snapshots released the old ones.
    let written = s.written_wal_segments(0);
    assert!(written.len() <= 2, "wal segments holding records: {written:?}");
    let before = c.get("k/", Some(GetOptions::new().with_prefix())).await.unwrap();
    let history = c.get("k/0", Some(GetOptions::new().with_revision(310))).await.unwrap();
    drop(c);

    s.kill();
    s.restart();
    assert!(s.log().contains("loaded snapshot"), "{}", s.log());
    let mut c = s.client().await;
    let after = c.get("k/", Some(GetOptions::new().with_prefix())).await.unwrap();
    assert_eq!(format!("{:?}", after.kvs()), format!("{:?}", before.kvs()));
    assert_eq!(after.header().unwrap().revision(), rev);
    assert_eq!(after.count(), 40);
    let history_after = c.get("k/0", Some(GetOptions::new().with_revision(310))).await.unwrap();
    assert_eq!(format!("{:?}", history_after.kvs()), format!("{:?}", history.kvs()));
    let e = c.get("k/0", Some(GetOptions::new().with_revision(299))).await.unwrap_err();
    assert!(e.to_string().contains("required revision has been compacted"), "{e}");
    assert_eq!(c.put("next", "v", None).await.unwrap().header().unwrap().revision(), rev + 1);
}

/// Polls the manifest (bounded) until `ok` holds for it; returns it.
async fn manifest_when(data_dir: &Path, ok: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    for _ in 0..200 {
        if let Some(m) = common::read_checked_json(&data_dir.join("member/snap/manifest.json")) {
            if ok(&m) {
                return m;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("manifest never matched: {:?}", std::fs::read_to_string(data_dir.join("member/snap/manifest.json")));
}

#[tokio::test]
async fn delta_snapshots_add_only_new_records_and_restart_joins_them() {
    let mut s = common::Server::start(SMALL_WAL);
    let mut c = s.client().await;
    let value = vec![b'v'; 512];
    for i in 0..200 {
        c.put(format!("big/{i:03}"), value.clone(), None).await.unwrap();
    }
    // Overwrites of a few keys: each snapshot now adds far less than the full one holds.
    for i in 0..120 {
        c.put(format!("big/{:03}", i % 10), format!("new-{i}"), None).await.unwrap();
    }
    // A snapshot taken during the overwrites (rev 201..321) is a delta.
    let m = manifest_when(&s.data_dir, |m| m["rev"].as_i64() >= Some(250) && m["deltas"].as_u64() >= Some(1)).await;
    let segs: Vec<String> = m["segments"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect();
    assert_eq!(segs.len(), 2 * (m["deltas"].as_u64().unwrap() as usize + 1), "{m}");
    let size = |name: &str| std::fs::metadata(s.data_dir.join("member/snap").join(name)).unwrap().len();
    let (full, delta) = (size(&segs[0]) + size(&segs[1]), size(&segs[segs.len() - 2]) + size(&segs[segs.len() - 1]));
    assert!(delta * 4 < full, "a delta holds only new records: {delta} vs {full} bytes ({m})");
    // Deletes and a compaction after the full snapshot, then more deltas.
    c.delete("big/1", Some(DeleteOptions::new().with_prefix())).await.unwrap(); // big/100..big/199
    c.delete("big/005", None).await.unwrap();
    let rev = c.put("big/000", "last", None).await.unwrap().header().unwrap().revision();
    // big/005 again, then a compaction at a revision where it is deleted: after a restart it
    // must still read as deleted there (the tombstone is in no segment when compacted).
    c.put("big/005", "again", None).await.unwrap();
    c.compact(rev, Some(etcd_client::CompactionOptions::new().with_physical())).await.unwrap();
    let gap = rev;
    for i in 0..80 {
        c.put(format!("small/{i}"), "s", None).await.unwrap();
    }
    let rev = c.get("big/000", None).await.unwrap().header().unwrap().revision();
    manifest_when(&s.data_dir, |m| m["rev"].as_i64() >= Some(rev - 40) && m["deltas"].as_u64() >= Some(1)).await;
    let before = c.get("", Some(GetOptions::new().with_from_key())).await.unwrap();
    drop(c);

    s.kill();
    s.restart();
    let mut c = s.client().await;
    let after = c.get("", Some(GetOptions::new().with_from_key())).await.unwrap();
    let summary = |kvs: &[etcd_client::KeyValue]| -> Vec<String> {
        kvs.iter().map(|kv| format!("{} c{} m{} v{} {}B", kv.key_str().unwrap(), kv.create_revision(), kv.mod_revision(), kv.version(), kv.value().len())).collect()
    };
    let (b, a) = (summary(before.kvs()), summary(after.kvs()));
    let missing: Vec<_> = b.iter().filter(|x| !a.contains(x)).collect();
    let extra: Vec<_> = a.iter().filter(|x| !b.contains(x)).collect();
    assert!(missing.is_empty() && extra.is_empty(), "lost: {missing:?}\ngained: {extra:?}");
    assert!(after.kvs().iter().zip(before.kvs()).all(|(x, y)| x.value() == y.value()), "values differ");
    assert_eq!(after.count(), 100 + 80);
    assert_eq!(c.get("big/000", None).await.unwrap().kvs()[0].value(), b"last");
    assert!(c.get("big/005", Some(GetOptions::new().with_revision(gap))).await.unwrap().kvs().is_empty());
    let again = c.get("big/005", None).await.unwrap();
    assert_eq!((again.kvs()[0].value(), again.kvs()[0].version()), (&b"again"[..], 1));
    assert!(c.get("big/150", None).await.unwrap().kvs().is_empty());
    let e = c.get("big/000", Some(GetOptions::new().with_revision(rev - 200))).await.unwrap_err();
    assert!(e.to_string().contains("required revision has been compacted"), "{e}");
    drop(c);

    // Defragment rewrites a full snapshot: the deltas' files go.
    s.ctl(&["defrag"]);
    let m = manifest(&s.data_dir);
    assert_eq!(m["deltas"].as_u64(), Some(0), "{m}");
    assert_eq!(m["segments"].as_array().unwrap().len(), 2, "{m}");
    // The replaced files are removed in the background, a megabyte at a time.
    let count = || std::fs::read_dir(s.data_dir.join("member/snap")).unwrap().flatten().filter(|e| e.file_name().to_string_lossy().ends_with(".seg")).count();
    let until = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while count() != 2 && std::time::Instant::now() < until {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(count(), 2);
}

/// A delta that touches few of the shard's keys looks up only those (the change log names
/// them) instead of walking every key: puts, overwrites, deletes, a range delete and new keys
/// among 2000, several such deltas, then a restart from them serves the same keys, values and
/// history.
#[tokio::test]
async fn deltas_of_a_few_keys_among_many_restart_whole() {
    use etcd_client::{Compare, Txn, TxnOp};
    let mut s = common::Server::start(&["--snapshot-count", "30", "--shards", "1"]);
    let mut c = s.client().await;
    for batch in 0..20 {
        let puts: Vec<TxnOp> = (0..100).map(|i| TxnOp::put(format!("many/{:04}", batch * 100 + i), "v0", None)).collect();
        c.txn(Txn::new().when(Vec::<Compare>::new()).and_then(puts)).await.unwrap();
    }
    let loaded = c.get("many/", Some(GetOptions::new().with_prefix().with_count_only())).await.unwrap().header().unwrap().revision();
    // Writers that keep writing while the deltas below are cut (a debug build lists 2 writes a
    // step, and applies writes between the steps).
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers: Vec<_> = (0..4)
        .map(|t| {
            let (mut c, stop) = (c.clone(), stop.clone());
            tokio::spawn(async move {
                for n in 0..10_000 {
                    if stop.load(std::sync::atomic::Ordering::Relaxed) {
                        break;
                    }
                    c.put(format!("bg/{t}"), n.to_string(), None).await.unwrap();
                }
            })
        })
        .collect();
    for round in 0..4 {
        // Concurrent overwrites: writes arrive while a snapshot lists the keys it visits.
        let puts: Vec<_> = (0..25)
            .map(|j| {
                let mut c = c.clone();
                tokio::spawn(async move { c.put(format!("many/{:04}", (round * 389 + j * 71) % 2000), format!("v{round}-{j}"), None).await.unwrap() })
            })
            .collect();
        for p in puts {
            p.await.unwrap();
        }
        c.put(format!("new/{round}"), "n", None).await.unwrap();
        c.delete(format!("many/{:04}", 1500 + round), None).await.unwrap();
        c.delete(format!("many/{:03}", 180 + round), Some(DeleteOptions::new().with_prefix())).await.unwrap(); // 10 keys
    }
    // Puts of one more key until a snapshot holds every write above (bounded: the count is 30).
    let written = c.get("many/0000", None).await.unwrap().header().unwrap().revision();
    for n in 0..100 {
        if common::read_checked_json(&s.data_dir.join("member/snap/manifest.json")).is_some_and(|m| m["rev"].as_i64() >= Some(written)) {
            break;
        }
        c.put("tick", n.to_string(), None).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for w in writers {
        w.await.unwrap();
    }
    let m = manifest(&s.data_dir);
    assert!(m["rev"].as_i64() >= Some(written) && m["deltas"].as_u64() >= Some(3), "{m}");
    let all = GetOptions::new().with_from_key();
    let before = c.get("", Some(all.clone())).await.unwrap();
    let past = c.get("many/", Some(GetOptions::new().with_prefix().with_revision(loaded + 20))).await.unwrap();
    drop(c);

    s.kill();
    s.restart();
    let mut c = s.client().await;
    let after = c.get("", Some(all)).await.unwrap();
    assert_eq!(after.header().unwrap().revision(), before.header().unwrap().revision(), "{m}");
    // 2000 + 4 new − 44 deleted, + 2 deleted and put again by a later round, + "tick" and 4 "bg/".
    assert_eq!((before.count(), after.count()), (1967, 1967), "{m}");
    assert!(format!("{:?}", after.kvs()) == format!("{:?}", before.kvs()), "the keys after the restart differ from before ({m})");
    let past_after = c.get("many/", Some(GetOptions::new().with_prefix().with_revision(loaded + 20))).await.unwrap();
    assert!(format!("{:?}", past_after.kvs()) == format!("{:?}", past.kvs()), "the history at {} differs", loaded + 20);
    assert_eq!(past.count(), 2000, "no key deleted yet then");
}

/// Without compaction a full snapshot would rewrite exactly what the files already hold, so
/// deltas go on (up to 32) even once they outgrow the full one; after a compaction the next
/// snapshot is full again.
#[tokio::test]
async fn deltas_go_on_until_a_compaction_gives_a_full_snapshot_something_to_drop() {
    let s = common::Server::start(&["--snapshot-count", "20", "--shards", "1"]);
    let mut c = s.client().await;
    for i in 0..20 {
        c.put(format!("a/{i:02}"), "v", None).await.unwrap();
    }
    manifest_when(&s.data_dir, |m| m["rev"].as_i64() >= Some(10)).await;
    // Each delta alone outgrows the small full snapshot.
    let big = vec![b'b'; 4096];
    let mut rev = 0;
    for i in 0..100 {
        rev = c.put(format!("b/{}", i % 10), big.clone(), None).await.unwrap().header().unwrap().revision();
    }
    let m = manifest_when(&s.data_dir, |m| m["rev"].as_i64() >= Some(rev - 20) && m["deltas"].as_u64() >= Some(3)).await;
    assert!(m["delta_bytes"].as_u64() > m["full_bytes"].as_u64(), "the deltas outgrew the full snapshot: {m}");
    assert_eq!(m["full_compact_rev"], m["compact_rev"], "nothing compacted since the full snapshot: {m}");
    c.compact(rev - 50, None).await.unwrap();
    for i in 0..40 {
        rev = c.put(format!("b/{}", i % 10), big.clone(), None).await.unwrap().header().unwrap().revision();
    }
    // The next snapshot (at most two follow in these 40 puts) is full: it was cut after the
    // compaction, and the deltas before it are gone.
    let m = manifest_when(&s.data_dir, |m| m["rev"].as_i64() > Some(rev - 40) && m["full_compact_rev"].as_i64() == Some(rev - 90)).await;
    assert!(m["deltas"].as_u64() <= Some(1), "{m}");
    assert_eq!(m["segments"].as_array().map(Vec::len), m["deltas"].as_u64().map(|d| d as usize + 1), "{m}");
    let after = c.get("b/", Some(GetOptions::new().with_prefix().with_count_only())).await.unwrap();
    assert_eq!(after.count(), 10);
}

#[tokio::test]
async fn snapshot_loads_under_a_different_shard_count() {
    let mut s = common::Server::start(SMALL_WAL);
    let mut c = s.client().await;
    let rev = workload(&mut c).await;
    let before = format!("{:?}", c.get("k/", Some(GetOptions::new().with_prefix())).await.unwrap().kvs());
    drop(c);
    s.terminate();
    s.set_args(&["--snapshot-count", "40", "--shards", "1"]);
    s.restart();
    let mut c = s.client().await;
    let after = c.get("k/", Some(GetOptions::new().with_prefix())).await.unwrap();
    assert_eq!(format!("{:?}", after.kvs()), before);
    assert_eq!(after.header().unwrap().revision(), rev);

    // Stripe 1 is no longer written; the first snapshot covering its batches deletes it.
    let stripe1 = s.data_dir.join("member/wal/1");
    assert!(stripe1.exists());
    for i in 0..50 {
        c.put(format!("more/{i}"), "v", None).await.unwrap();
    }
    assert!(manifest(&s.data_dir)["index"].as_u64().unwrap() > 0);
    for _ in 0..100 {
        if !stripe1.exists() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(!stripe1.exists(), "{}", s.log());
    drop(c);
    s.kill();
    s.restart();
    let mut c = s.client().await;
    assert_eq!(format!("{:?}", c.get("k/", Some(GetOptions::new().with_prefix())).await.unwrap().kvs()), before);
    assert_eq!(c.get("more/", Some(GetOptions::new().with_prefix().with_count_only())).await.unwrap().count(), 50);
}

#[tokio::test]
async fn defrag_writes_a_fresh_snapshot_online() {
    let s = common::Server::start(&["--shards", "2"]);
    let mut c = s.client().await;
    for i in 0..30 {
        c.put(format!("d/{i}"), "v", None).await.unwrap();
    }
    let out = s.ctl(&["defrag"]);
    assert_eq!(out.trim(), format!("Finished defragmenting etcd member[{}]", s.endpoint));
    let m = manifest(&s.data_dir);
    assert_eq!(m["rev"].as_i64(), Some(31));
    // The server kept serving and the data is intact.
    assert_eq!(c.get("d/", Some(GetOptions::new().with_prefix().with_count_only())).await.unwrap().count(), 30);
    // Again with nothing written in between (same raft index): the new segments get new names,
    // so the mapped ones the values are read from are not overwritten.
    s.ctl(&["defrag"]);
    let again = manifest(&s.data_dir);
    assert_eq!(again["index"], m["index"]);
    assert_ne!(again["segments"], m["segments"]);
    let values = c.get("d/", Some(GetOptions::new().with_prefix())).await.unwrap();
    assert!(values.kvs().len() == 30 && values.kvs().iter().all(|kv| kv.value() == b"v"));
}

#[tokio::test]
async fn membership_is_kept_in_the_data_dir_across_restarts() {
    let mut s = common::Server::start(&["--shards", "2"]);
    let id = s.member_id_dec();
    s.ctl(&["put", "k", "v"]);
    s.ctl(&["defrag"]); // a snapshot names this member as the voter
    s.terminate();
    // As etcd: once the data dir exists, --initial-cluster and peer URLs no longer decide ids.
    s.set_args(&[
        "--shards",
        "2",
        "--initial-advertise-peer-urls",
        "http://127.0.0.1:4321",
        "--initial-cluster",
        "default=http://127.0.0.1:4321",
    ]);
    s.restart();
    assert_eq!(s.member_id_dec(), id);
    assert_eq!(s.ctl(&["get", "k", "--print-value-only"]).trim(), "v");
}

#[tokio::test]
async fn values_follow_the_newest_segment_and_old_ones_are_unmapped() {
    let s = common::Server::start(&["--shards", "2"]);
    let mut c = s.client().await;
    for i in 0..200 {
        c.put(format!("v/{i:03}"), format!("value-{i}"), None).await.unwrap();
    }
    s.ctl(&["defrag"]); // values move into the first segments
    c.put("v/new", "x", None).await.unwrap();
    s.ctl(&["defrag"]); // ... and then all into the second ones
    let maps = std::fs::read_to_string(format!("/proc/{}/maps", s.pid())).unwrap();
    let segs: Vec<&str> = maps.lines().filter(|l| l.contains(".seg")).collect();
    assert!(!segs.is_empty(), "values are read from mapped segments");
    // By name: the replaced files may not be deleted yet (removed in the background).
    let m = manifest(&s.data_dir);
    let listed: Vec<&str> = m["segments"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    let replaced = |l: &&str| l.contains("(deleted)") || !listed.iter().any(|name| l.contains(&format!("/{name}")));
    assert!(!segs.iter().any(replaced), "a replaced segment is still mapped:\n{}\nlisted: {listed:?}", segs.join("\n"));
    let kv = c.get("v/123", None).await.unwrap();
    assert_eq!(kv.kvs()[0].value(), b"value-123");
}

/// Inode of every file in stripe 0 with extension `ext`.
fn stripe0_inodes(data_dir: &Path, ext: &str) -> Vec<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::read_dir(data_dir.join("member/wal/0"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == ext))
        .map(|e| e.metadata().unwrap().ino())
        .collect()
}

#[tokio::test]
async fn released_wal_segments_are_recycled() {
    let mut s = common::Server::start(SMALL_WAL);
    let mut c = s.client().await;
    workload(&mut c).await;
    let spares = stripe0_inodes(&s.data_dir, "spare");
    assert_eq!(spares.len(), 1, "spare segments");
    let files = |d: &Path| [stripe0_inodes(d, "wal"), stripe0_inodes(d, "spare")].concat();
    let before = files(&s.data_dir);
    let newest = |d: &Path| {
        let names = std::fs::read_dir(d.join("member/wal/0")).unwrap().flatten().filter_map(|e| e.file_name().into_string().ok());
        names.filter_map(|n| u64::from_str_radix(n.strip_suffix(".wal")?, 16).ok()).max().unwrap()
    };
    let first_segment = newest(&s.data_dir);
    // Writing on rolls through several segments (~300 × 600 B in 64 KiB segments); the new
    // ones are the released files, renamed and zeroed, so the same files keep being used.
    let value = vec![b'y'; 512];
    for i in 0..300 {
        c.put(format!("r/{:02}", i % 50), value.clone(), None).await.unwrap();
    }
    let after = files(&s.data_dir);
    assert!(newest(&s.data_dir) >= first_segment + 2, "segments rolled: {first_segment} -> {}", newest(&s.data_dir));
    // The current segment, the next one prepared, one closed and not yet released, a spare.
    assert!(after.len() <= 4, "wal and spare files: {after:?}");
    assert!(after.iter().any(|ino| before.contains(ino)), "no file was recycled: {before:?} -> {after:?}");
    let before = c.get("r/", Some(GetOptions::new().with_prefix())).await.unwrap();
    drop(c);
    s.kill();
    s.restart();
    let mut c = s.client().await;
    let after = c.get("r/", Some(GetOptions::new().with_prefix())).await.unwrap();
    assert_eq!(format!("{:?}", after.kvs()), format!("{:?}", before.kvs()));
}

/// A key with more history than a snapshot chunk holds (256 KiB) is split over chunks of the
/// full and delta segments; a restart joins its parts: every revision reads as before.
#[tokio::test]
async fn a_key_with_a_long_history_survives_snapshots_and_restart() {
    let mut s = common::Server::start(&["--shards", "1", "--snapshot-count", "500"]);
    let mut c = s.client().await;
    let mut revs = Vec::new();
    for i in 0..1200 {
        let value = format!("{i:0>1024}");
        revs.push(c.put("hot", value, None).await.unwrap().header().unwrap().revision());
    }
    // A full snapshot near revision 500 and a delta near 1000, each with ~500 KiB of "hot".
    manifest_when(&s.data_dir, |m| m["deltas"].as_u64().unwrap_or(0) >= 1 && m["rev"].as_i64().unwrap_or(0) >= 1000).await;
    let sample: Vec<i64> = revs.iter().copied().step_by(97).chain(revs.last().copied()).collect();
    let read = |c: &mut etcd_client::Client, rev: i64| {
        let mut c = c.clone();
        async move { c.get("hot", Some(GetOptions::new().with_revision(rev))).await.unwrap().kvs()[0].value_str().unwrap().to_string() }
    };
    let mut before = Vec::new();
    for &rev in &sample {
        before.push(read(&mut c, rev).await);
    }
    drop(c);
    s.kill();
    s.restart();
    assert!(s.log().contains("loaded snapshot"), "{}", s.log());
    let mut c = s.client().await;
    for (i, &rev) in sample.iter().enumerate() {
        assert_eq!(read(&mut c, rev).await, before[i], "hot at revision {rev}");
    }
}

/// Large values bring the next snapshot forward: at the default --snapshot-count (100000) a
/// snapshot follows once the values written since the last one reach 16 MiB (their heap is
/// then given up for the segment's mapping), and a restart reads them back from it.
#[tokio::test]
async fn large_values_bring_a_snapshot_before_the_count() {
    let mut s = common::Server::start(&["--shards", "1"]);
    let mut c = s.client().await;
    let value = |i: usize| vec![b'a' + (i % 26) as u8; 1 << 20];
    for i in 0..80 {
        c.put(format!("big/{i:03}"), value(i), None).await.unwrap();
    }
    let m = manifest_when(&s.data_dir, |m| m["index"].as_u64().unwrap_or(0) > 0).await;
    let rev = m["rev"].as_i64().unwrap();
    assert!(rev >= 16, "the snapshot holds the budget's worth of puts at least: {m}");
    assert!(rev < 81, "ordered by the budget while the puts went on, not once they stopped: {m}");
    drop(c);
    s.kill();
    s.restart();
    assert!(s.log().contains("loaded snapshot"), "{}", s.log());
    let mut c = s.client().await;
    for i in [0, 41, 79] {
        let got = c.get(format!("big/{i:03}"), None).await.unwrap();
        assert!(got.kvs()[0].value() == value(i).as_slice(), "big/{i:03} reads back whole");
    }
}

/// Writes that stop with a few MiB written since the last snapshot (under the count and the
/// byte budget) are snapshotted once the server has been quiet for 5 s: their values leave
/// the heap for the segment's mapping; a restart reads them back from it.
#[tokio::test]
async fn a_quiet_server_snapshots_what_it_holds() {
    let mut s = common::Server::start(&["--shards", "1"]);
    let mut c = s.client().await;
    let value = |i: usize| vec![b'a' + (i % 26) as u8; 1 << 20];
    for i in 0..6 {
        c.put(format!("big/{i}"), value(i), None).await.unwrap();
    }
    let started = std::time::Instant::now();
    let path = s.data_dir.join("member/snap/manifest.json");
    let mut snapshot = None;
    for _ in 0..300 {
        snapshot = common::read_checked_json(&path).filter(|m| m["index"].as_u64().unwrap_or(0) > 0);
        if snapshot.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let m = snapshot.expect("a snapshot within 15 s of the last write");
    assert!(started.elapsed() >= std::time::Duration::from_secs(4), "not before the server was quiet: {m}");
    assert_eq!(m["rev"].as_i64(), Some(7), "it holds every put: {m}");
    drop(c);
    s.kill();
    s.restart();
    assert!(s.log().contains("loaded snapshot"), "{}", s.log());
    let mut c = s.client().await;
    for i in [0, 5] {
        let got = c.get(format!("big/{i}"), None).await.unwrap();
        assert!(got.kvs()[0].value() == value(i).as_slice(), "big/{i} reads back whole");
    }
}

//! Crashes between the steps of the disk's multi-step operations: the process aborts at a
//! failpoint (debug builds; `src/failpoint.rs`) inside a snapshot (segment half written, all
//! segments written but no manifest, manifest written but not renamed, manifest renamed but the
//! WAL not released), a WAL segment roll, a release of old segments and the recycling of one,
//! and inside Defragment's snapshot. Every write acknowledged before the crash is served after a
//! restart, with its revision, and writing goes on.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Small WAL segments and frequent snapshots: every multi-step operation happens within a few
/// hundred writes.
const FLAGS: &[&str] = &["--shards", "2", "--snapshot-count", "30", "--wal-segment-bytes", "16384"];
const WRITERS: usize = 4;
const MAX_PUTS_PER_WRITER: usize = 3000;
const MAX_RUN: Duration = Duration::from_secs(60);

/// Writes unique keys from several clients (and defragments now and then with `defrag`) until
/// the server dies; returns key → (revision, value) of every acknowledged put.
async fn write_until_crash(s: &common::Server, defrag: bool) -> BTreeMap<String, (i64, String)> {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let mut c = s.client().await;
        tasks.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for i in 0..MAX_PUTS_PER_WRITER {
                if started.elapsed() > MAX_RUN {
                    break;
                }
                if defrag && w == 0 && i % 25 == 24 && c.defragment().await.is_err() {
                    break;
                }
                let (k, v) = (format!("k/{w}/{i:05}"), format!("v{i}-{}", "x".repeat(i % 300)));
                match tokio::time::timeout(Duration::from_secs(10), c.put(k.clone(), v.clone(), None)).await {
                    Ok(Ok(r)) => acked.push((k, (r.header().unwrap().revision(), v))),
                    _ => break,
                }
            }
            acked
        }));
    }
    let mut all = BTreeMap::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all
}

async fn crash_at(failpoint: &str, flags: &[&str], defrag: bool) {
    let mut s = common::Server::start_with_env(flags, &[("BALLAST_FAILPOINTS", failpoint)]);
    let acked = write_until_crash(&s, defrag).await;
    let status = s.wait_exit();
    assert!(!status.success(), "{failpoint}: {status}");
    assert!(s.log().contains("failpoint: crashing here"), "{failpoint} was never reached; log:\n{}", s.log());
    assert!(!acked.is_empty(), "{failpoint}: nothing was acknowledged before the crash");
    s.set_env(&[]);
    s.restart();
    let mut c = s.client().await;
    let served = c.get("k/", Some(etcd_client::GetOptions::new().with_prefix())).await.unwrap();
    let served: BTreeMap<String, (i64, String)> = served
        .kvs()
        .iter()
        .map(|kv| (kv.key_str().unwrap().to_string(), (kv.mod_revision(), kv.value_str().unwrap().to_string())))
        .collect();
    for (k, want) in &acked {
        assert_eq!(served.get(k), Some(want), "{failpoint}: acknowledged key {k} after the restart");
    }
    let top = served.values().map(|(rev, _)| *rev).max().unwrap();
    let next = c.put("after", "1", None).await.unwrap().header().unwrap().revision();
    assert_eq!(next, top + 1, "{failpoint}: revisions go on from the recovered state");
    // And a second crash-free restart agrees (nothing recovery repaired is lost again).
    drop(c);
    s.kill();
    s.restart();
    let mut c = s.client().await;
    assert_eq!(c.get("k/", Some(etcd_client::GetOptions::new().with_prefix().with_count_only())).await.unwrap().count(), served.len() as i64);
}

#[tokio::test]
async fn crash_while_a_snapshot_segment_is_half_written() {
    crash_at("snapshot-segment-unfinished", FLAGS, false).await;
}

#[tokio::test]
async fn crash_after_the_segments_before_the_manifest() {
    crash_at("snapshot-before-manifest", FLAGS, false).await;
}

#[tokio::test]
async fn crash_with_the_manifest_written_but_not_renamed() {
    crash_at("atomic-write-before-rename=manifest.json", FLAGS, false).await;
}

#[tokio::test]
async fn crash_after_the_manifest_before_the_wal_is_released() {
    crash_at("snapshot-before-release", FLAGS, false).await;
}

#[tokio::test]
async fn crash_after_releasing_wal_segments_before_the_directory_sync() {
    crash_at("wal-release-before-sync", FLAGS, false).await;
}

#[tokio::test]
async fn crash_in_a_segment_roll_before_the_new_segment_opens() {
    crash_at("wal-roll-before-open", FLAGS, false).await;
}

#[tokio::test]
async fn crash_in_a_segment_roll_before_its_first_write() {
    crash_at("wal-roll-before-write", FLAGS, false).await;
}

#[tokio::test]
async fn crash_while_recycling_a_released_segment() {
    crash_at("wal-recycle-half-zeroed", FLAGS, false).await;
}

/// Defragment's snapshot is a full one, asked for by a client: no automatic ones here.
const DEFRAG_FLAGS: &[&str] = &["--shards", "2", "--snapshot-count", "1000000", "--wal-segment-bytes", "16384"];

#[tokio::test]
async fn crash_in_defragment_before_the_manifest() {
    crash_at("snapshot-before-manifest", DEFRAG_FLAGS, true).await;
}

#[tokio::test]
async fn crash_in_defragment_with_a_segment_half_written() {
    crash_at("snapshot-segment-unfinished", DEFRAG_FLAGS, true).await;
}

#[tokio::test]
async fn crash_in_defragment_before_the_wal_is_released() {
    crash_at("snapshot-before-release", DEFRAG_FLAGS, true).await;
}

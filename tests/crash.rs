//! Crash safety: SIGKILL ballast under concurrent write load, restart, and check that every
//! acknowledged write is present with its revision and that revisions have no gaps or
//! duplicates. Every put writes a fresh key, so the live keys show the whole history.
//! Cycles: `BALLAST_CRASH_CYCLES` (default 4 for CI; `scripts/crash-loop.sh` runs 1000).

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use etcd_client::GetOptions;

const WRITERS: usize = 16;
/// Upper bound on puts per writer per cycle (the kill usually lands first).
const MAX_PUTS_PER_WRITER: usize = 400;
/// Longest a writer waits for one put's answer.
const PUT_TIMEOUT: Duration = Duration::from_secs(10);

fn cycles() -> usize {
    std::env::var("BALLAST_CRASH_CYCLES").ok().and_then(|v| v.parse().ok()).unwrap_or(4)
}

/// Runs writers until the server dies; returns (key, revision) of every acknowledged put.
async fn load_until_killed(s: &mut common::Server, cycle: usize) -> Vec<(String, i64)> {
    let acked = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let mut c = s.client().await;
        let acked = acked.clone();
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            for i in 0..MAX_PUTS_PER_WRITER {
                let key = format!("crash/{cycle:04}/{w:02}/{i:04}");
                // Bounded: a put cut off by the kill must not hang the writer (it once did, with
                // no socket left open); unanswered, it was not acknowledged.
                match tokio::time::timeout(PUT_TIMEOUT, c.put(key.clone(), "v", None)).await {
                    Ok(Ok(r)) => {
                        mine.push((key, r.header().unwrap().revision()));
                        acked.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(Err(_)) | Err(_) => break, // the server is gone
                }
            }
            mine
        }));
    }
    // Kill after a cycle-dependent number of acknowledged writes (bounded wait).
    let kill_after = 50 + (cycle * 97) % 900;
    for _ in 0..2000 {
        if acked.load(Ordering::Relaxed) >= kill_after {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    s.kill();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all
}

/// Keys read per Range when reading everything back (a single Range would outgrow the client's
/// 4 MiB message limit after a few hundred cycles).
const VERIFY_PAGE_KEYS: i64 = 5000;

/// Every `crash/` key with its mod revision, read page by page at one revision; and that revision.
async fn read_all(c: &mut etcd_client::Client) -> (i64, Vec<(String, i64)>) {
    let (mut rev, mut from, mut out) = (0, b"crash/".to_vec(), Vec::new());
    loop {
        let opts = GetOptions::new().with_range("crash0").with_limit(VERIFY_PAGE_KEYS).with_revision(rev);
        let page = c.get(from.clone(), Some(opts)).await.unwrap();
        if rev == 0 {
            rev = page.header().unwrap().revision();
        }
        out.extend(page.kvs().iter().map(|kv| (kv.key_str().unwrap().to_string(), kv.mod_revision())));
        match page.kvs().last() {
            Some(last) if page.more() => from = [last.key(), &[0]].concat(),
            _ => return (rev, out),
        }
    }
}

async fn verify(s: &common::Server, acked: &[(String, i64)]) {
    let mut c = s.client().await;
    let (current, all) = read_all(&mut c).await;
    let mut revs: Vec<i64> = all.iter().map(|(_, rev)| *rev).collect();
    revs.sort_unstable();
    let expected: Vec<i64> = (2..=current).collect();
    assert_eq!(revs, expected, "every revision 2..={current} belongs to exactly one put");
    let stored: std::collections::HashMap<&str, i64> = all.iter().map(|(k, rev)| (k.as_str(), *rev)).collect();
    for (k, rev) in acked {
        assert_eq!(stored.get(k.as_str()), Some(rev), "acknowledged put {k} at revision {rev}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_load_loses_no_acknowledged_write() {
    // Small snapshots and WAL segments: crashes also land during snapshots and segment rolls.
    let mut s = common::Server::start(&["--shards", "2", "--snapshot-count", "300", "--wal-segment-bytes", "131072"]);
    let mut acked = Vec::new();
    for cycle in 0..cycles() {
        acked.extend(load_until_killed(&mut s, cycle).await);
        s.restart();
        verify(&s, &acked).await;
    }
    assert!(!acked.is_empty());
}

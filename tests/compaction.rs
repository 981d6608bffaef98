//! Compaction: logical at once, physical in the background while writes continue
//! (`physical=true` waits for it), and etcd's periodic auto-compaction.

mod common;

use std::time::Duration;

use etcd_client::{CompactionOptions, GetOptions};

#[tokio::test]
async fn physical_compaction_frees_history_while_writes_continue() {
    let s = common::Server::start(&["--shards", "2"]);
    let mut c = s.client().await;
    let value = vec![b'v'; 100];
    for round in 0..2 {
        for i in 0..3000 {
            c.put(format!("h/{i:05}"), value.clone(), None).await.unwrap();
        }
        assert_eq!(c.get("h/", Some(GetOptions::new().with_prefix().with_count_only())).await.unwrap().count(), 3000, "round {round}");
    }
    let before = c.maintenance_client().status().await.unwrap();
    let rev = c.get("h", None).await.unwrap().header().unwrap().revision();

    // A writer runs during the compaction.
    let mut w = s.client().await;
    let writer = tokio::spawn(async move {
        for i in 0..300 {
            w.put(format!("during/{i}"), "x", None).await.unwrap();
        }
    });
    c.compact(rev, Some(CompactionOptions::new().with_physical())).await.unwrap();
    writer.await.unwrap();

    // In use shrinks at once; the storage (dbSize) keeps its size until segments are rewritten.
    let after = c.maintenance_client().status().await.unwrap();
    let (used_before, used_after) = (before.raft_used_db_size(), after.raft_used_db_size());
    assert!(used_after < used_before * 2 / 3, "history freed: {used_before} -> {used_after} bytes");
    assert!(after.db_size() >= before.db_size(), "db size {} -> {}", before.db_size(), after.db_size());
    let e = c.get("h/00000", Some(GetOptions::new().with_revision(rev - 1))).await.unwrap_err();
    assert!(e.to_string().contains("required revision has been compacted"), "{e}");
    let kv = c.get("h/00000", None).await.unwrap().kvs()[0].clone();
    assert_eq!(kv.version(), 2);
    assert_eq!(c.get("during/", Some(GetOptions::new().with_prefix().with_count_only())).await.unwrap().count(), 300);
}

#[tokio::test]
async fn periodic_auto_compaction_compacts_old_revisions() {
    let s = common::Server::start(&["--auto-compaction-mode", "periodic", "--auto-compaction-retention", "1s"]);
    let mut c = s.client().await;
    c.put("a", "1", None).await.unwrap(); // revision 2
    // The compactor samples every 100 ms and compacts what it saw a second ago; keep writing
    // so there is something to compact, and wait (bounded) for revision 2 to go.
    for i in 0..100 {
        c.put("a", format!("{i}"), None).await.unwrap();
        match c.get("a", Some(GetOptions::new().with_revision(2))).await {
            Err(e) => {
                assert!(e.to_string().contains("required revision has been compacted"), "{e}");
                assert!(s.log().contains("completed auto compaction"));
                return;
            }
            Ok(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    panic!("revision 2 was never auto-compacted; log:\n{}", s.log());
}

#[tokio::test]
async fn reads_at_revision_0_never_answer_compacted_while_compactions_race_them() {
    // The failpoint waits 5 ms between picking a read's revision and reading, so that
    // compactions overtake reads often.
    let s = common::Server::start_with_env(&["--shards", "2"], &[("BALLAST_FAILPOINTS", "range-delay")]);
    let mut writer = s.client().await;
    let mut reader = s.client().await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let done = stop.clone();
    // Writes and compacts at the newest revision as fast as it can, for a bounded count.
    let compactor = tokio::spawn(async move {
        for i in 0..300 {
            let rev = writer.put(format!("k{}", i % 7), "v", None).await.unwrap().header().unwrap().revision();
            writer.compact(rev, None).await.unwrap();
        }
        done.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    let mut reads = 0;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) && reads < 5_000 {
        for serializable in [true, false] {
            let opts = etcd_client::GetOptions::new().with_prefix();
            let opts = if serializable { opts.with_serializable() } else { opts };
            if let Err(e) = reader.get("k", Some(opts)).await {
                panic!("a read at revision 0 failed after {reads} reads: {e}");
            }
            reads += 1;
        }
    }
    compactor.await.unwrap();
    assert!(reads > 0);
}

#[tokio::test]
async fn a_read_served_in_steps_keeps_its_revision_through_a_compaction_past_it() {
    // 25 000 keys: a shard serves them in 3 steps (10 000 keys each); the failpoint (debug
    // builds) holds each later step 100 ms, so the delete and the compaction below land while
    // the read runs. Physical compaction at the delete's revision would drop every record the
    // read needs; it must wait for the read instead.
    let s = common::Server::start_with_env(&[], &[("BALLAST_FAILPOINTS", "read-step-delay")]);
    let mut c = s.client().await;
    for batch in 0..200 {
        let puts: Vec<etcd_client::TxnOp> =
            (0..125).map(|i| etcd_client::TxnOp::put(format!("l/{:05}", batch * 125 + i), "v", None)).collect();
        c.txn(etcd_client::Txn::new().and_then(puts)).await.unwrap();
    }
    let rev = c.get("l/", None).await.unwrap().header().unwrap().revision();
    let mut reader = s.client().await;
    let list = tokio::spawn(async move { reader.get("l/", Some(GetOptions::new().with_prefix().with_revision(rev))).await });
    tokio::time::sleep(Duration::from_millis(20)).await;
    let del = c.delete("l/", Some(etcd_client::DeleteOptions::new().with_prefix())).await.unwrap();
    assert_eq!(del.deleted(), 25_000);
    let del_rev = del.header().unwrap().revision();
    c.compact(del_rev, Some(CompactionOptions::new().with_physical())).await.unwrap();
    let got = list.await.unwrap().expect("the read at its revision succeeds");
    assert_eq!((got.count(), got.kvs().len()), (25_000, 25_000));
    assert!(got.kvs().windows(2).all(|w| w[0].key() < w[1].key()));
    assert!(got.kvs().iter().all(|kv| kv.value() == b"v" && kv.mod_revision() <= rev));
    // And the compaction did happen: the revision is gone, the keys too.
    assert!(c.get("l/", Some(GetOptions::new().with_prefix().with_revision(rev))).await.is_err());
    assert_eq!(c.get("l/", Some(GetOptions::new().with_prefix().with_count_only())).await.unwrap().count(), 0);
}

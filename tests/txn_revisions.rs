//! etcd's (main, sub) revision model inside txns: the writes of one txn share a revision and are
//! ordered, so a txn may delete a key and put it again (finding 1 of the hardening issue: such a
//! txn used to panic a shard and brick the data dir). Checked live, after SIGKILL (WAL replay),
//! through snapshots (segments and deltas) and compaction, on one and on two shards.

mod common;

use etcd_client::{Compare, CompareOp, DeleteOptions, GetOptions, PutOptions, Txn, TxnOp};

fn from_key() -> Option<DeleteOptions> {
    Some(DeleteOptions::new().with_from_key())
}

/// (value, create, mod, version) of `key` at `rev` (0: now); None if absent.
async fn read(c: &mut etcd_client::Client, key: &str, rev: i64) -> Option<(String, i64, i64, i64)> {
    let r = c.get(key, Some(GetOptions::new().with_revision(rev))).await.unwrap();
    r.kvs().first().map(|kv| (kv.value_str().unwrap().to_string(), kv.create_revision(), kv.mod_revision(), kv.version()))
}

async fn delete_then_put_in_one_txn(shards: &str) {
    let mut s = common::Server::start(&["--shards", shards, "--snapshot-count", "4"]);
    let mut c = s.client().await;
    c.put("b", "1", None).await.unwrap(); // rev 2
    c.put("c", "1", None).await.unwrap(); // rev 3
    // The txn: delete everything from "a", then put b.
    let t = Txn::new().and_then(vec![TxnOp::delete("a", from_key()), TxnOp::put("b", "2", None)]);
    let r = c.txn(t).await.unwrap();
    assert!(r.succeeded());
    assert_eq!(r.header().unwrap().revision(), 4);
    assert_eq!(read(&mut c, "b", 0).await, Some(("2".into(), 4, 4, 1)), "a new generation at 4");
    assert_eq!(read(&mut c, "c", 0).await, None);
    // Put first, then delete it within the same txn: gone at 5.
    let t = Txn::new().and_then(vec![TxnOp::put("d", "x", None), TxnOp::delete("a", from_key())]);
    assert_eq!(c.txn(t).await.unwrap().header().unwrap().revision(), 5);
    assert_eq!(c.get("a", Some(GetOptions::new().with_from_key())).await.unwrap().count(), 0);
    // Nested: delete all, then a nested txn puts b and reads it back.
    let nested = Txn::new().and_then(vec![TxnOp::put("b", "3", None), TxnOp::get("b", None)]);
    let t = Txn::new().and_then(vec![TxnOp::put("e", "1", None), TxnOp::delete("a", from_key()), TxnOp::txn(nested)]);
    c.txn(t).await.unwrap(); // rev 6: e put then deleted, b put
    assert_eq!(read(&mut c, "b", 0).await, Some(("3".into(), 6, 6, 1)));
    assert_eq!(read(&mut c, "e", 0).await, None);
    // An ignore_value put on a key an earlier op of the txn deleted: refused, nothing written.
    let t = Txn::new()
        .and_then(vec![TxnOp::delete("a", from_key()), TxnOp::put("b", "", Some(PutOptions::new().with_ignore_value()))]);
    let e = c.txn(t).await.unwrap_err();
    assert!(e.to_string().contains("etcdserver: key not found"), "{e}");
    assert_eq!(c.get("b", None).await.unwrap().header().unwrap().revision(), 6, "the refused txn used no revision");
    // History at every revision, now and after a SIGKILL and restart (the WAL replays the txns,
    // a snapshot was cut after 4 requests).
    let manifest = s.data_dir.join("member/snap/manifest.json");
    for _ in 0..100 {
        if manifest.exists() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(manifest.exists(), "a snapshot was saved");
    let expect = [(2, Some("1")), (3, Some("1")), (4, Some("2")), (5, None), (6, Some("3"))];
    for round in 0..2 {
        for (rev, want) in expect {
            let got = read(&mut c, "b", rev).await.map(|v| v.0);
            assert_eq!(got.as_deref(), want, "b at {rev}, round {round}");
        }
        s.kill();
        s.restart();
        c = s.client().await;
    }
    // Compaction at the txn's revision keeps what a read there sees, also across a restart.
    c.compact(6, Some(etcd_client::CompactionOptions::new().with_physical())).await.unwrap();
    c.put("z", "1", None).await.unwrap();
    assert_eq!(read(&mut c, "b", 6).await, Some(("3".into(), 6, 6, 1)));
    s.kill();
    s.restart();
    let mut c = s.client().await;
    assert_eq!(read(&mut c, "b", 6).await, Some(("3".into(), 6, 6, 1)));
    let t = Txn::new().when(vec![Compare::version("b", CompareOp::Equal, 1)]).and_then(vec![TxnOp::put("b", "4", None)]);
    assert!(c.txn(t).await.unwrap().succeeded());
    assert_eq!(read(&mut c, "b", 0).await, Some(("4".into(), 6, 8, 2)));
}

#[tokio::test]
async fn a_txn_deletes_a_key_and_puts_it_again_one_shard() {
    delete_then_put_in_one_txn("1").await;
}

#[tokio::test]
async fn a_txn_deletes_a_key_and_puts_it_again_two_shards() {
    delete_then_put_in_one_txn("2").await;
}

#[tokio::test]
async fn a_put_naming_a_lease_that_does_not_exist_is_refused() {
    let s = common::Server::start(&[]);
    let mut c = s.client().await;
    let e = c.put("k", "v", Some(PutOptions::new().with_lease(7))).await.unwrap_err();
    assert!(e.to_string().contains("etcdserver: requested lease not found"), "{e}");
    let t = Txn::new().and_then(vec![TxnOp::put("k", "v", Some(PutOptions::new().with_lease(7)))]);
    let e = c.txn(t).await.unwrap_err();
    assert!(e.to_string().contains("etcdserver: requested lease not found"), "{e}");
    assert_eq!(c.get("k", None).await.unwrap().header().unwrap().revision(), 1);
}

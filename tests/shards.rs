//! `--shards 1` and `--shards 2` give identical answers to the same workload.

mod common;

use etcd_client::{Compare, CompareOp, DeleteOptions, GetOptions, PutOptions, SortOrder, SortTarget, Txn, TxnOp};

/// Runs a fixed workload touching every KV feature; returns every response, rendered.
async fn workload(shards: &str) -> Vec<String> {
    let s = common::Server::start(&["--shards", shards]);
    let mut c = s.client().await;
    let mut out = Vec::new();
    for i in 0..60 {
        let opts = PutOptions::new().with_prev_key();
        out.push(format!("{:?}", c.put(format!("key/{:02}", i % 23), format!("v{i}"), Some(opts)).await.unwrap()));
    }
    let d = c.delete("key/1", Some(DeleteOptions::new().with_prefix().with_prev_key())).await.unwrap();
    out.push(format!("{d:?}"));
    let t = Txn::new()
        .when([Compare::version("key/0", CompareOp::Greater, 0).with_prefix()])
        .and_then([TxnOp::put("key/new", "n", None), TxnOp::delete("key/2", Some(DeleteOptions::new().with_prefix()))])
        .or_else([TxnOp::put("key/else", "e", None)]);
    out.push(format!("{:?}", c.txn(t).await.unwrap()));
    // kube-apiserver style compare-and-swap on single keys: runs on the owning shard.
    for i in 0..20 {
        let key = format!("key/{:02}", i % 7);
        let rev = c.get(key.as_str(), None).await.unwrap().kvs().first().map_or(0, |kv| kv.mod_revision());
        let guess = if i % 3 == 0 { rev + 1 } else { rev }; // every third compare fails
        let t = Txn::new()
            .when([Compare::mod_revision(key.as_str(), CompareOp::Equal, guess)])
            .and_then([TxnOp::put(key.as_str(), format!("cas{i}"), Some(PutOptions::new().with_prev_key()))])
            .or_else([TxnOp::get(key.as_str(), None)]);
        out.push(format!("{:?}", c.txn(t).await.unwrap()));
    }
    c.compact(30, None).await.unwrap();
    let gets = [
        GetOptions::new().with_prefix(),
        GetOptions::new().with_prefix().with_limit(5),
        GetOptions::new().with_prefix().with_sort(SortTarget::Value, SortOrder::Descend).with_limit(7),
        GetOptions::new().with_prefix().with_sort(SortTarget::Mod, SortOrder::Ascend),
        GetOptions::new().with_prefix().with_revision(40),
        GetOptions::new().with_prefix().with_count_only(),
        GetOptions::new().with_prefix().with_min_mod_revision(50).with_keys_only(),
    ];
    for g in gets {
        out.push(format!("{:?}", c.get("key/", Some(g)).await.unwrap()));
    }
    out
}

#[tokio::test]
async fn one_and_two_shards_answer_identically() {
    let one = workload("1").await;
    let two = workload("2").await;
    assert_eq!(one.len(), two.len());
    for (a, b) in one.iter().zip(&two) {
        assert_eq!(a, b);
    }
}

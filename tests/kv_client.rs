//! The KV API through the `etcd-client` crate against a real ballast: every RangeRequest,
//! PutRequest, DeleteRangeRequest, TxnRequest and CompactionRequest field, with etcd's
//! revision rules and exact error codes and messages.

mod common;

use etcd_client::{
    Client, Compare, CompareOp, CompactionOptions, DeleteOptions, GetOptions, PutOptions, SortOrder,
    SortTarget, Txn, TxnOp, TxnOpResponse,
};
use tonic::Code;

fn status(e: etcd_client::Error) -> (Code, String) {
    match e {
        etcd_client::Error::GRpcStatus(s) => (s.code(), s.message().to_string()),
        other => panic!("expected a gRPC status, got {other:?}"),
    }
}

async fn rev_of_put(c: &mut Client, k: &str, v: &str) -> i64 {
    c.put(k, v, None).await.unwrap().header().unwrap().revision()
}

fn keys(resp: &etcd_client::GetResponse) -> Vec<String> {
    resp.kvs().iter().map(|kv| kv.key_str().unwrap().to_string()).collect()
}

#[tokio::test]
async fn revisions_versions_and_prev_kv_follow_etcd() {
    let s = common::Server::start(&[]);
    let mut c = s.client().await;
    assert_eq!(c.get("a", None).await.unwrap().header().unwrap().revision(), 1, "a fresh store is at revision 1");
    assert_eq!(rev_of_put(&mut c, "a", "1").await, 2);
    assert_eq!(rev_of_put(&mut c, "b", "1").await, 3);
    let r = c.put("a", "2", Some(PutOptions::new().with_prev_key())).await.unwrap();
    assert_eq!(r.header().unwrap().revision(), 4);
    let prev = r.prev_key().expect("prev kv");
    assert_eq!((prev.value(), prev.mod_revision(), prev.version()), (&b"1"[..], 2, 1));
    let kv = c.get("a", None).await.unwrap().kvs()[0].clone();
    assert_eq!((kv.create_revision(), kv.mod_revision(), kv.version()), (2, 4, 2));

    let d = c.delete("a", Some(DeleteOptions::new().with_prev_key())).await.unwrap();
    assert_eq!((d.deleted(), d.header().unwrap().revision()), (1, 5));
    assert_eq!(d.prev_kvs()[0].value(), b"2");
    let none = c.delete("nothing", None).await.unwrap();
    assert_eq!((none.deleted(), none.header().unwrap().revision()), (0, 5), "deleting nothing keeps the revision");
    assert_eq!(rev_of_put(&mut c, "a", "3").await, 6);
    let kv = c.get("a", None).await.unwrap().kvs()[0].clone();
    assert_eq!((kv.create_revision(), kv.mod_revision(), kv.version()), (6, 6, 1), "version resets after delete");

    let h = c.get("a", None).await.unwrap().header().unwrap().clone();
    assert_ne!(h.cluster_id(), 0);
    assert_ne!(h.member_id(), 0);
    assert!(h.raft_term() >= 1);
}

#[tokio::test]
async fn put_lease_ignore_value_and_ignore_lease() {
    let s = common::Server::start(&[]);
    let mut c = s.client().await;
    // No lease exists yet (the Lease service is not built): etcd refuses a put naming one.
    let e = c.put("k", "v1", Some(PutOptions::new().with_lease(0x1234))).await.unwrap_err();
    assert_eq!(status(e), (Code::NotFound, "etcdserver: requested lease not found".into()));
    c.put("k", "v1", None).await.unwrap();
    c.put("k", "", Some(PutOptions::new().with_ignore_value())).await.unwrap();
    let kv = c.get("k", None).await.unwrap().kvs()[0].clone();
    assert_eq!((kv.value(), kv.lease(), kv.version()), (&b"v1"[..], 0, 2), "ignore_value keeps the value");
    c.put("k", "v3", Some(PutOptions::new().with_ignore_lease())).await.unwrap();
    let kv = c.get("k", None).await.unwrap().kvs()[0].clone();
    assert_eq!((kv.value(), kv.lease(), kv.version()), (&b"v3"[..], 0, 3));

    let e = c.put("missing", "", Some(PutOptions::new().with_ignore_value())).await.unwrap_err();
    assert_eq!(status(e), (Code::InvalidArgument, "etcdserver: key not found".into()));
    let e = c.put("k", "x", Some(PutOptions::new().with_ignore_value())).await.unwrap_err();
    assert_eq!(status(e), (Code::InvalidArgument, "etcdserver: value is provided".into()));
    let e = c.put("k", "x", Some(PutOptions::new().with_ignore_lease().with_lease(3))).await.unwrap_err();
    assert_eq!(status(e), (Code::InvalidArgument, "etcdserver: lease is provided".into()));
    let e = c.put("", "x", None).await.unwrap_err();
    assert_eq!(status(e), (Code::InvalidArgument, "etcdserver: key is not provided".into()));
    let e = c.get("", None).await.unwrap_err();
    assert_eq!(status(e), (Code::InvalidArgument, "etcdserver: key is not provided".into()));
    let e = c.delete("", None).await.unwrap_err();
    assert_eq!(status(e), (Code::InvalidArgument, "etcdserver: key is not provided".into()));
    let big = vec![b'x'; 1_600_000];
    let e = c.put("big", big, None).await.unwrap_err();
    assert_eq!(status(e), (Code::InvalidArgument, "etcdserver: request is too large".into()));
    assert_eq!(c.get("k", None).await.unwrap().header().unwrap().revision(), 4, "failed requests change nothing");
}

#[tokio::test]
async fn range_options() {
    let s = common::Server::start(&["--shards", "2"]);
    let mut c = s.client().await;
    // Values sort opposite to keys; versions differ per key.
    for (k, v) in [("a", "5"), ("b", "4"), ("b", "4"), ("c", "3"), ("d", "2"), ("e", "1"), ("f/x", "0")] {
        c.put(k, v, None).await.unwrap();
    }
    let all = c.get("a", Some(GetOptions::new().with_from_key())).await.unwrap();
    assert_eq!(keys(&all), ["a", "b", "c", "d", "e", "f/x"]);
    assert_eq!(all.count(), 6);
    assert_eq!(keys(&c.get("\0", Some(GetOptions::new().with_from_key())).await.unwrap()).len(), 6);
    assert_eq!(keys(&c.get("f/", Some(GetOptions::new().with_prefix())).await.unwrap()), ["f/x"]);
    assert_eq!(keys(&c.get("b", Some(GetOptions::new().with_range("d"))).await.unwrap()), ["b", "c"]);
    assert!(c.get("d", Some(GetOptions::new().with_range("b"))).await.unwrap().kvs().is_empty());

    let lim = c.get("a", Some(GetOptions::new().with_from_key().with_limit(2))).await.unwrap();
    assert_eq!((keys(&lim), lim.more(), lim.count()), (vec!["a".to_string(), "b".into()], true, 6));
    let lim = c.get("a", Some(GetOptions::new().with_from_key().with_limit(6))).await.unwrap();
    assert!(!lim.more());

    let by_value = GetOptions::new().with_from_key().with_sort(SortTarget::Value, SortOrder::Ascend);
    assert_eq!(keys(&c.get("a", Some(by_value)).await.unwrap()), ["f/x", "e", "d", "c", "b", "a"]);
    let desc = GetOptions::new().with_from_key().with_sort(SortTarget::Key, SortOrder::Descend).with_limit(2);
    let r = c.get("a", Some(desc)).await.unwrap();
    assert_eq!((keys(&r), r.more()), (vec!["f/x".to_string(), "e".into()], true));
    let by_version = GetOptions::new().with_from_key().with_sort(SortTarget::Version, SortOrder::Descend);
    assert_eq!(keys(&c.get("a", Some(by_version)).await.unwrap())[0], "b");
    let by_create = GetOptions::new().with_from_key().with_sort(SortTarget::Create, SortOrder::Descend);
    assert_eq!(keys(&c.get("a", Some(by_create)).await.unwrap())[0], "f/x");
    let by_mod = GetOptions::new().with_from_key().with_sort(SortTarget::Mod, SortOrder::Ascend);
    assert_eq!(keys(&c.get("a", Some(by_mod)).await.unwrap())[0], "a");

    let ko = c.get("a", Some(GetOptions::new().with_keys_only())).await.unwrap();
    assert_eq!((ko.kvs()[0].key(), ko.kvs()[0].value()), (&b"a"[..], &b""[..]));
    let co = c.get("a", Some(GetOptions::new().with_from_key().with_count_only())).await.unwrap();
    assert_eq!((co.kvs().len(), co.count()), (0, 6));

    // Revisions: a=2 b=3,4 c=5 d=6 e=7 f/x=8.
    let f = GetOptions::new().with_from_key().with_min_mod_revision(4).with_max_mod_revision(6);
    assert_eq!(keys(&c.get("a", Some(f)).await.unwrap()), ["b", "c", "d"]);
    let f = GetOptions::new().with_from_key().with_min_create_revision(5).with_max_create_revision(7);
    let r = c.get("a", Some(f)).await.unwrap();
    assert_eq!((keys(&r), r.count()), (vec!["c".to_string(), "d".into(), "e".into()], 6), "count ignores filters");

    let old = c.get("b", Some(GetOptions::new().with_revision(3))).await.unwrap();
    assert_eq!(old.kvs()[0].version(), 1);
    assert_eq!(old.header().unwrap().revision(), 8, "header carries the current revision");
    assert!(c.get("c", Some(GetOptions::new().with_revision(4))).await.unwrap().kvs().is_empty());
    let ser = c.get("e", Some(GetOptions::new().with_serializable())).await.unwrap();
    assert_eq!(ser.kvs()[0].value(), b"1");
    let e = c.get("a", Some(GetOptions::new().with_revision(9))).await.unwrap_err();
    assert_eq!(status(e), (Code::OutOfRange, "etcdserver: mvcc: required revision is a future revision".into()));
}

#[tokio::test]
async fn compaction_and_historical_reads() {
    let s = common::Server::start(&[]);
    let mut c = s.client().await;
    c.put("k", "1", None).await.unwrap(); // 2
    c.put("gone", "x", None).await.unwrap(); // 3
    c.delete("gone", None).await.unwrap(); // 4
    c.put("k", "2", None).await.unwrap(); // 5
    let r = c.compact(4, None).await.unwrap();
    assert_eq!(r.header().unwrap().revision(), 5);
    let e = c.get("k", Some(GetOptions::new().with_revision(3))).await.unwrap_err();
    assert_eq!(status(e), (Code::OutOfRange, "etcdserver: mvcc: required revision has been compacted".into()));
    let at4 = c.get("k", Some(GetOptions::new().with_revision(4))).await.unwrap();
    assert_eq!(at4.kvs()[0].value(), b"1", "the compaction revision itself stays readable");
    assert!(c.get("gone", Some(GetOptions::new().with_revision(4))).await.unwrap().kvs().is_empty());
    let e = c.compact(4, None).await.unwrap_err();
    assert_eq!(status(e), (Code::OutOfRange, "etcdserver: mvcc: required revision has been compacted".into()));
    let e = c.compact(99, None).await.unwrap_err();
    assert_eq!(status(e), (Code::OutOfRange, "etcdserver: mvcc: required revision is a future revision".into()));
    c.compact(5, Some(CompactionOptions::new().with_physical())).await.unwrap();
    assert_eq!(c.get("k", None).await.unwrap().kvs()[0].value(), b"2");
}

#[tokio::test]
async fn txn_compares_branches_and_one_revision() {
    let s = common::Server::start(&["--shards", "2"]);
    let mut c = s.client().await;
    c.put("x", "1", None).await.unwrap(); // 2
    c.put("y", "1", None).await.unwrap(); // 3

    let t = Txn::new()
        .when([Compare::value("x", CompareOp::Equal, "1"), Compare::version("y", CompareOp::Greater, 0)])
        .and_then([TxnOp::put("x", "2", None), TxnOp::put("z", "1", None), TxnOp::get("x", None)])
        .or_else([TxnOp::put("fail", "1", None)]);
    let r = c.txn(t).await.unwrap();
    assert!(r.succeeded());
    assert_eq!(r.header().unwrap().revision(), 4, "a txn is one revision");
    match &r.op_responses()[2] {
        TxnOpResponse::Get(g) => assert_eq!(g.kvs()[0].value(), b"2", "a read in a txn sees its earlier writes"),
        other => panic!("expected a get response, got {other:?}"),
    }
    assert_eq!(c.get("z", None).await.unwrap().kvs()[0].mod_revision(), 4);
    assert!(c.get("fail", None).await.unwrap().kvs().is_empty());

    // Failure branch; compares on create, mod, lease and missing keys.
    let t = Txn::new()
        .when([Compare::create_revision("x", CompareOp::Equal, 3)])
        .and_then([TxnOp::put("no", "1", None)])
        .or_else([TxnOp::delete("z", None), TxnOp::get("z", None)]);
    let r = c.txn(t).await.unwrap();
    assert!(!r.succeeded());
    assert_eq!(r.header().unwrap().revision(), 5);
    let cmp = |cmp: Compare| Txn::new().when([cmp]).and_then([]).or_else([]);
    assert!(c.txn(cmp(Compare::mod_revision("x", CompareOp::Equal, 4))).await.unwrap().succeeded());
    assert!(!c.txn(cmp(Compare::mod_revision("x", CompareOp::Less, 4))).await.unwrap().succeeded());
    assert!(c.txn(cmp(Compare::lease("x", CompareOp::Equal, 0))).await.unwrap().succeeded());
    assert!(c.txn(cmp(Compare::version("missing", CompareOp::Equal, 0))).await.unwrap().succeeded());
    assert!(!c.txn(cmp(Compare::value("missing", CompareOp::NotEqual, "a"))).await.unwrap().succeeded());
    assert!(c.txn(cmp(Compare::version("x", CompareOp::NotEqual, 1))).await.unwrap().succeeded());
    // A range compare holds only if every key in the range matches.
    assert!(c.txn(cmp(Compare::value("x", CompareOp::Equal, "2").with_range("y"))).await.unwrap().succeeded());
    assert!(!c.txn(cmp(Compare::value("x", CompareOp::Equal, "2").with_range("z"))).await.unwrap().succeeded());
    let r = c.txn(cmp(Compare::value("x", CompareOp::Equal, "2"))).await.unwrap();
    assert_eq!(r.header().unwrap().revision(), 5, "a txn without writes keeps the revision");

    // Nested txn: its compare sees the state before the outer txn's writes.
    let inner = Txn::new()
        .when([Compare::value("x", CompareOp::Equal, "2")])
        .and_then([TxnOp::put("inner", "then", None)])
        .or_else([TxnOp::put("inner", "else", None)]);
    let outer = Txn::new().when([]).and_then([TxnOp::put("x", "3", None), TxnOp::txn(inner)]);
    let r = c.txn(outer).await.unwrap();
    assert!(r.succeeded());
    assert_eq!(c.get("inner", None).await.unwrap().kvs()[0].value(), b"then");
    assert_eq!(c.get("inner", None).await.unwrap().kvs()[0].mod_revision(), 6);
    assert_eq!(c.get("x", None).await.unwrap().kvs()[0].mod_revision(), 6);
}

#[tokio::test]
async fn txn_errors_change_nothing() {
    let s = common::Server::start(&[]);
    let mut c = s.client().await;
    c.put("a", "1", None).await.unwrap();
    let t = Txn::new().and_then([TxnOp::put("a", "2", None), TxnOp::put("a", "3", None)]);
    assert_eq!(status(c.txn(t).await.unwrap_err()), (Code::InvalidArgument, "etcdserver: duplicate key given in txn request".into()));
    let t = Txn::new().and_then([TxnOp::delete("a", Some(DeleteOptions::new().with_prefix())), TxnOp::put("ab", "3", None)]);
    assert_eq!(status(c.txn(t).await.unwrap_err()).1, "etcdserver: duplicate key given in txn request");
    let ops: Vec<TxnOp> = (0..129).map(|i| TxnOp::put(format!("k{i}"), "v", None)).collect();
    assert_eq!(status(c.txn(Txn::new().and_then(ops)).await.unwrap_err()), (Code::InvalidArgument, "etcdserver: too many operations in txn request".into()));
    let ops: Vec<TxnOp> = (0..128).map(|i| TxnOp::put(format!("k{i}"), "v", None)).collect();
    assert_eq!(c.txn(Txn::new().and_then(ops)).await.unwrap().header().unwrap().revision(), 3);
    // A txn whose put needs a missing key fails whole, before any write.
    let t = Txn::new().and_then([TxnOp::put("new", "1", None), TxnOp::put("missing", "", Some(PutOptions::new().with_ignore_value()))]);
    assert_eq!(status(c.txn(t).await.unwrap_err()), (Code::InvalidArgument, "etcdserver: key not found".into()));
    assert!(c.get("new", None).await.unwrap().kvs().is_empty());
    let t = Txn::new().and_then([TxnOp::put("new", "1", None), TxnOp::get("a", Some(GetOptions::new().with_revision(50)))]);
    assert_eq!(status(c.txn(t).await.unwrap_err()).1, "etcdserver: mvcc: required revision is a future revision");
    let t = Txn::new().when([Compare::value("", CompareOp::Equal, "1")]);
    assert_eq!(status(c.txn(t).await.unwrap_err()).1, "etcdserver: key is not provided");
    assert_eq!(c.get("a", None).await.unwrap().header().unwrap().revision(), 3);
}

#[tokio::test]
async fn maintenance_status_and_member_list() {
    let s = common::Server::start(&[]);
    let mut c = s.client().await;
    c.put("a", "1", None).await.unwrap();
    let st = c.maintenance_client().status().await.unwrap();
    assert_eq!(st.version(), "3.5.23");
    assert_eq!(st.leader(), st.header().unwrap().member_id());
    assert!(st.raft_index() >= 2 && st.raft_term() >= 1);
    assert!(st.db_size() > 0);
    let members = c.cluster_client().member_list().await.unwrap();
    assert_eq!(members.members().len(), 1);
    assert_eq!(members.members()[0].name(), "default");
    assert_eq!(members.members()[0].client_urls(), [format!("http://{}", s.endpoint)]);
}

#[tokio::test]
async fn a_list_of_several_mebibytes_is_answered_whole() {
    // Above 1 MiB the answer is encoded off the front-end thread (server/kv_route.rs).
    let s = common::Server::start(&[]);
    let mut c = s.client().await;
    let value = |i: usize| format!("{i:04}").repeat(256).into_bytes(); // 1 KiB
    for batch in 0..30 {
        let puts: Vec<etcd_client::TxnOp> = (0..100).map(|i| etcd_client::TxnOp::put(format!("big/{:05}", batch * 100 + i), value(batch * 100 + i), None)).collect();
        c.txn(etcd_client::Txn::new().and_then(puts)).await.unwrap();
    }
    let all = c.get("big/", Some(GetOptions::new().with_prefix())).await.unwrap();
    assert_eq!((all.kvs().len(), all.count(), all.more()), (3000, 3000, false));
    for (i, kv) in all.kvs().iter().enumerate() {
        assert_eq!((kv.key(), kv.value()), (format!("big/{i:05}").as_bytes(), value(i).as_slice()));
    }
    let page = c.get("big/", Some(GetOptions::new().with_prefix().with_limit(2500))).await.unwrap();
    assert_eq!((page.kvs().len(), page.count(), page.more()), (2500, 3000, true));
    // A request over the gRPC message bound is refused as grpc-go (etcd) refuses one, on
    // Range's own path as on tonic's (tests/differential.rs compares them with etcd).
    let key = vec![b'k'; 3 << 20];
    let range = status(c.get(key.clone(), None).await.unwrap_err());
    let put = status(c.put(key, "v", None).await.unwrap_err());
    assert_eq!(range, (Code::ResourceExhausted, "grpc: received message larger than max (3145733 vs. 2097152)".into()));
    assert_eq!(put, (Code::ResourceExhausted, "grpc: received message larger than max (3145736 vs. 2097152)".into()));
    assert_eq!(c.get("big/00007", None).await.unwrap().kvs()[0].value(), value(7).as_slice(), "the server keeps serving");
}

/// Linearizable reads that one shard answers take one hop through the raft core
/// (`kv/linear_read.rs`); the others two calls. Either way the answer is the serializable
/// read's: the header at the current revision (not the key's), limits, sorting, counts and
/// filters as etcd applies them, on one and on two shards.
#[tokio::test]
async fn linearizable_reads_in_one_hop_answer_what_serializable_reads_do() {
    for shards in ["1", "2"] {
        let s = common::Server::start(&["--shards", shards]);
        let mut c = s.client().await;
        for (k, v) in [("a", "1"), ("b", "2"), ("c", "3"), ("a", "4"), ("d", "5")] {
            rev_of_put(&mut c, k, v).await;
        }
        let now = rev_of_put(&mut c, "z", "6").await;
        let cases = [
            ("a", GetOptions::new()),
            ("b", GetOptions::new().with_keys_only()),
            ("c", GetOptions::new().with_count_only()),
            ("a", GetOptions::new().with_prefix().with_limit(1)),
            ("", GetOptions::new().with_all_keys().with_limit(2).with_sort(SortTarget::Mod, SortOrder::Descend)),
            ("", GetOptions::new().with_all_keys().with_min_mod_revision(4)),
            ("missing", GetOptions::new()),
            ("a", GetOptions::new().with_revision(2)),
        ];
        for (key, opts) in cases {
            let lin = c.get(key, Some(opts.clone())).await.unwrap();
            let ser = c.get(key, Some(opts.with_serializable())).await.unwrap();
            let what = format!("{shards} shard(s), key {key:?}");
            assert_eq!(lin.header().unwrap().revision(), now, "{what}: the header is at the current revision");
            assert_eq!((keys(&lin), lin.count(), lin.more()), (keys(&ser), ser.count(), ser.more()), "{what}");
            let values = |r: &etcd_client::GetResponse| r.kvs().iter().map(|kv| (kv.value().to_vec(), kv.mod_revision(), kv.version())).collect::<Vec<_>>();
            assert_eq!(values(&lin), values(&ser), "{what}");
        }
        assert_eq!(c.get("a", None).await.unwrap().kvs()[0].value(), b"4");
    }
}

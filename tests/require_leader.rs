//! etcd's require-leader calls (clientv3's `WithRequireLeader`, metadata `hasleader: true`,
//! which kube-apiserver puts on its watches), on a 3-member cluster of etcd 3.5 and then of
//! ballast, the same steps and the answers compared: a follower opens two watches, one with the
//! metadata and one without; the other two members are killed. The watch with the metadata must
//! end with Unavailable "etcdserver: no leader" a few election timeouts later, so its client can
//! move to a member with a leader; the one without stays open; a unary call and a new watch with
//! the metadata are refused at once, a serializable read without it is served.

mod common;
#[path = "common/etcd.rs"]
mod etcd;
#[path = "common/peer_proxy.rs"]
mod peer_proxy;
#[path = "common/procs3.rs"]
mod procs3;

use std::time::{Duration, Instant};

use ballast::proto::etcdserverpb::{kv_client::KvClient, watch_client::WatchClient, watch_request::RequestUnion, RangeRequest, WatchCreateRequest, WatchRequest, WatchResponse};
use procs3::{Cluster, Target};

/// A watch with the metadata ends within this after its member loses the others (etcd: three
/// election timeouts of 1 s without a leader, checked once per election timeout).
const END_BOUND: Duration = Duration::from_secs(20);

fn text(s: tonic::Status) -> String {
    format!("{:?}: {}", s.code(), s.message())
}

/// A channel without a call timeout: the watches outlive any.
async fn channel(port: u16) -> tonic::transport::Channel {
    let ep = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}")).unwrap().connect_timeout(Duration::from_secs(5));
    ep.connect().await.expect("connect")
}

fn with_leader<T>(mut req: tonic::Request<T>, required: bool) -> tonic::Request<T> {
    if required {
        req.metadata_mut().insert("hasleader", "true".parse().unwrap());
    }
    req
}

/// A watch of one key, created; its request stream's sender is kept open with it.
type Watch = (tonic::Streaming<WatchResponse>, tokio::sync::mpsc::Sender<WatchRequest>);

async fn watch(ch: &tonic::transport::Channel, required: bool) -> Result<Watch, String> {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let create = WatchCreateRequest { key: b"w".to_vec(), ..Default::default() };
    tx.send(WatchRequest { request_union: Some(RequestUnion::CreateRequest(create)) }).await.unwrap();
    let req = with_leader(tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(rx)), required);
    let mut stream = WatchClient::new(ch.clone()).watch(req).await.map_err(text)?.into_inner();
    let created = tokio::time::timeout(Duration::from_secs(10), stream.message()).await.map_err(|_| "no answer".to_string())?.map_err(text)?;
    assert!(created.is_some_and(|r| r.created), "the watch is created");
    Ok((stream, tx))
}

async fn range(ch: &tonic::transport::Channel, required: bool) -> String {
    let r = RangeRequest { key: b"w".to_vec(), serializable: true, ..Default::default() };
    match KvClient::new(ch.clone()).range(with_leader(tonic::Request::new(r), required)).await {
        Ok(_) => "served".into(),
        Err(s) => text(s),
    }
}

/// The answers of `target`, in the module comment's order, and how long after the kill the
/// watch with the metadata ended.
async fn answers(target: Target) -> (Vec<String>, Duration) {
    let mut c = Cluster::start(target, 3).await;
    let (leader, _) = c.wait_leader(None, Duration::from_secs(15)).await.expect("a leader");
    let lone = (0..3).find(|&i| i != leader).unwrap();
    let ch = channel(c.members[lone].client_port).await;
    let (mut required, _keep) = watch(&ch, true).await.expect("a watch that requires a leader, while there is one");
    let (mut plain, _keep_plain) = watch(&ch, false).await.expect("a watch");
    for i in (0..3).filter(|&i| i != lone) {
        c.kill(i);
    }
    let killed = Instant::now();
    let ended = match tokio::time::timeout(END_BOUND, required.message()).await {
        Ok(Err(s)) => text(s),
        other => format!("not ended with an error: {other:?}"),
    };
    let took = killed.elapsed();
    let plain_open = match tokio::time::timeout(Duration::from_secs(1), plain.message()).await {
        Err(_) => "open".to_string(),
        Ok(other) => format!("{other:?}"),
    };
    let new_watch = match watch(&ch, true).await {
        Ok(_) => "created".to_string(),
        Err(e) => e,
    };
    (vec![ended, plain_open, range(&ch, true).await, range(&ch, false).await, new_watch], took)
}

#[tokio::test]
async fn a_member_without_a_leader_ends_and_refuses_calls_that_require_one_as_etcd() {
    let (want, etcd_took) = answers(Target::Etcd).await;
    let (got, took) = answers(Target::Ballast).await;
    assert_eq!(got, want, "ballast, then etcd 3.5 (ended after {took:?} and {etcd_took:?})");
    let no_leader = "Unavailable: etcdserver: no leader";
    assert_eq!(want, [no_leader, "open", no_leader, "served", no_leader]);
    // Three election timeouts at least (the member may take one or two to notice), counted
    // from the leader's last heartbeat, which came up to a heartbeat interval (100 ms) before
    // the kill: a run ended 2.97 s after it.
    assert!(took >= Duration::from_millis(2_900), "ended after {took:?}");
}

//! gzip-compressed requests (grpc-encoding: gzip), as clients that turn compression on send
//! them: etcd 3.5's grpc-go server takes them on every service; so must ballast. The same
//! calls go to a real etcd 3.5 and to ballast, and what each answered is compared.

mod common;
#[path = "common/etcd.rs"]
mod etcd;

use std::time::Duration;

use ballast::proto::etcdserverpb::kv_client::KvClient;
use ballast::proto::etcdserverpb::lease_client::LeaseClient;
use ballast::proto::etcdserverpb::watch_client::WatchClient;
use ballast::proto::etcdserverpb::*;
use tonic::codec::CompressionEncoding::Gzip;
use tonic::transport::Channel;

/// How long one answer may take.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

async fn within<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(ANSWER_TIMEOUT, f).await.expect("answered in time")
}

/// Compressed KV, Watch and Lease calls; one line per answer.
async fn compressed_calls(ch: Channel) -> Vec<String> {
    let mut out = Vec::new();
    let mut kv = KvClient::new(ch.clone()).send_compressed(Gzip).accept_compressed(Gzip);
    let value = b"compressible ".repeat(8000);
    let put = within(kv.put(PutRequest { key: b"k".to_vec(), value: value.clone(), ..Default::default() })).await;
    out.push(format!("put: revision {:?}", put.map(|r| r.into_inner().header.unwrap().revision)));
    let range = within(kv.range(RangeRequest { key: b"k".to_vec(), ..Default::default() })).await;
    out.push(format!("range: {:?}", range.map(|r| r.into_inner().kvs.iter().map(|kv| (kv.mod_revision, kv.value == value)).collect::<Vec<_>>())));

    let mut watch = WatchClient::new(ch.clone()).send_compressed(Gzip).accept_compressed(Gzip);
    let create = WatchRequest { request_union: Some(watch_request::RequestUnion::CreateRequest(WatchCreateRequest { key: b"w".to_vec(), ..Default::default() })) };
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(create).await.unwrap();
    let mut events = within(watch.watch(tokio_stream::wrappers::ReceiverStream::new(rx))).await.expect("a watch stream").into_inner();
    let created = within(events.message()).await;
    out.push(format!("watch created: {:?}", created.map(|r| r.map(|r| r.created))));
    within(kv.put(PutRequest { key: b"w".to_vec(), value: b"x".to_vec(), ..Default::default() })).await.unwrap();
    let event = within(events.message()).await;
    out.push(format!("watch event: {:?}", event.map(|r| r.map(|r| r.events.iter().map(|e| (e.kv.as_ref().unwrap().mod_revision, e.kv.as_ref().unwrap().value.clone())).collect::<Vec<_>>()))));
    drop(tx);

    // Over the receive limit once decompressed: grpc-go names the size from the gzip trailer.
    let mut kv = kv.max_encoding_message_size(usize::MAX);
    let huge = b"a".repeat(3_000_000);
    let put = within(kv.put(PutRequest { key: b"k".to_vec(), value: huge.clone(), ..Default::default() })).await;
    out.push(format!("put over the limit: {:?}", put.map(|_| ()).map_err(|s| (s.code(), s.message().to_string()))));
    let put_op = RequestOp { request: Some(request_op::Request::RequestPut(PutRequest { key: b"k".to_vec(), value: huge, ..Default::default() })) };
    let txn = within(kv.txn(TxnRequest { success: vec![put_op], ..Default::default() })).await;
    out.push(format!("txn over the limit: {:?}", txn.map(|_| ()).map_err(|s| (s.code(), s.message().to_string()))));

    let mut lease = LeaseClient::new(ch).send_compressed(Gzip).accept_compressed(Gzip);
    let granted = within(lease.lease_grant(LeaseGrantRequest { ttl: 60, id: 7 })).await;
    out.push(format!("lease grant: {:?}", granted.map(|r| (r.into_inner().id, 60))));
    let alive = within(lease.lease_keep_alive(tokio_stream::iter([LeaseKeepAliveRequest { id: 7 }]))).await;
    let mut alive = alive.expect("a keepalive stream").into_inner();
    out.push(format!("keepalive: {:?}", within(alive.message()).await.map(|r| r.map(|r| (r.id, r.ttl)))));
    out
}

#[tokio::test]
async fn gzip_requests_are_served_as_by_etcd() {
    let etcd = etcd::Etcd::start();
    let ballast = common::Server::start(&[]);
    let want = compressed_calls(common::grpc_channel(&etcd.endpoint).await).await;
    let got = compressed_calls(common::grpc_channel(&ballast.endpoint).await).await;
    assert_eq!(got, want, "ballast, then etcd 3.5");
    assert!(want.iter().all(|line| line.contains("Ok(") || line.contains("over the limit: Err((ResourceExhausted")), "etcd answered every call: {want:?}");
}

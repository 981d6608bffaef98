//! The `Peer` service on `--listen-peer-urls` (etcd's rafthttp stream handler): each batch's
//! sender must belong to this cluster and address this member, or the stream ends with etcd's
//! "cluster ID mismatch" / "to field mismatch" (gRPC FAILED_PRECONDITION where etcd answers
//! HTTP 412) and a warning with etcd's wording. The batch's messages are decoded and queued
//! for the driver; a full queue holds up the stream (HTTP/2 flow control reaches the sender,
//! whose own bounded queue then drops), never the driver.

use std::net::TcpListener;

use futures_util::StreamExt;
use raft::eraftpb::Message;
use tonic::{Request, Response, Status, Streaming};

use super::{Identity, Inbound, CLUSTER_ID_MISMATCH, MAX_BATCH_DECODE_BYTES, TO_FIELD_MISMATCH};
use crate::log;
use crate::proto::ballastpeerpb::peer_server::{Peer, PeerServer};
use crate::proto::ballastpeerpb::{MembersRequest, MembersResponse, MessageBatch, PeerMember, StreamEnd};

pub struct PeerService {
    me: Identity,
    inbound: flume::Sender<Inbound>,
    membership: crate::cluster::Membership,
}

#[tonic::async_trait]
impl Peer for PeerService {
    async fn stream(&self, request: Request<Streaming<MessageBatch>>) -> Result<Response<StreamEnd>, Status> {
        let mut batches = request.into_inner();
        while let Some(batch) = batches.message().await? {
            self.check(&batch)?;
            for bytes in batch.messages {
                let m: Message = protobuf::Message::parse_from_bytes(&bytes).map_err(|e| Status::invalid_argument(format!("undecodable raft message: {e}")))?;
                if self.inbound.send_async(Inbound::Message(m)).await.is_err() {
                    return Err(Status::unavailable("server stopped"));
                }
            }
        }
        Ok(Response::new(StreamEnd {}))
    }

    async fn members(&self, _: Request<MembersRequest>) -> Result<Response<MembersResponse>, Status> {
        let cluster = self.membership.current();
        let members = cluster
            .members
            .iter()
            .map(|m| PeerMember { id: m.id, name: m.name.clone(), peer_urls: m.peer_urls.clone(), client_urls: m.client_urls.clone(), is_learner: m.is_learner })
            .collect();
        Ok(Response::new(MembersResponse { cluster_id: cluster.id, members }))
    }
}

impl PeerService {
    /// etcd's checkClusterCompatibilityFromHeader and the stream handler's `to` check.
    fn check(&self, batch: &MessageBatch) -> Result<(), Status> {
        if batch.cluster_id != self.me.cluster_id {
            log::warn(
                "request cluster ID mismatch",
                &[
                    ("local-member-id", format!("{:x}", self.me.member_id)),
                    ("local-member-cluster-id", format!("{:x}", self.me.cluster_id)),
                    ("remote-peer-id", format!("{:x}", batch.from)),
                    ("remote-peer-cluster-id", format!("{:x}", batch.cluster_id)),
                ],
            );
            return Err(Status::failed_precondition(CLUSTER_ID_MISMATCH));
        }
        if batch.to != self.me.member_id {
            log::warn(
                "ignored streaming request; ID mismatch",
                &[("local-member-id", format!("{:x}", self.me.member_id)), ("remote-peer-id-stream-handler", format!("{:x}", batch.from)), ("remote-peer-id-from", format!("{:x}", batch.to))],
            );
            return Err(Status::failed_precondition(TO_FIELD_MISMATCH));
        }
        Ok(())
    }
}

/// Binds every `--listen-peer-urls` address (plain `http://` only, so far).
pub fn bind_all(urls: &[String]) -> Result<Vec<TcpListener>, String> {
    let mut addrs: Vec<&str> = Vec::new();
    for url in urls {
        let addr = match (url.strip_prefix("http://"), url.strip_prefix("https://")) {
            (Some(rest), _) => rest.trim_end_matches('/'),
            (_, Some(_)) => return Err(format!("listen url {url}: TLS between peers (https:// peer URLs) is not supported yet")),
            _ => return Err(format!("listen url {url}: peer URLs must be http://")),
        };
        if !addrs.contains(&addr) {
            addrs.push(addr);
        }
    }
    addrs
        .into_iter()
        .map(|addr| {
            let l = TcpListener::bind(addr).map_err(|e| format!("listen tcp {addr}: {e}"))?;
            l.set_nonblocking(true).map_err(|e| format!("listen tcp {addr}: {e}"))?;
            Ok(l)
        })
        .collect()
}

/// Serves the `Peer` service on `listeners` for good (on the transport's runtime).
pub async fn serve(listeners: Vec<TcpListener>, me: Identity, inbound: flume::Sender<Inbound>, membership: crate::cluster::Membership) {
    for listener in listeners {
        let address = listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
        let listener = match tokio::net::TcpListener::from_std(listener) {
            Ok(l) => l,
            Err(e) => {
                log::error("cannot serve peer traffic", &[("address", address), ("error", e.to_string())]);
                continue;
            }
        };
        log::info("serving peer traffic", &[("address", address)]);
        let service = PeerServer::new(PeerService { me, inbound: inbound.clone(), membership: membership.clone() }).max_decoding_message_size(MAX_BATCH_DECODE_BYTES);
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener).map(|conn| conn.inspect(|c| drop(c.set_nodelay(true))));
        tokio::spawn(async move {
            let served = tonic::transport::Server::builder().add_service(service).serve_with_incoming(incoming).await;
            if let Err(e) = served {
                log::error("the peer listener stopped", &[("error", e.to_string())]);
            }
        });
    }
}

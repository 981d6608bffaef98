//! The `Peer` service on `--listen-peer-urls` (etcd's rafthttp stream handler): each batch's
//! sender must belong to this cluster and address this member, or the stream ends with etcd's
//! "cluster ID mismatch" / "to field mismatch" (gRPC FAILED_PRECONDITION where etcd answers
//! HTTP 412; a removed member's, "the member has been permanently removed from the cluster",
//! where etcd answers 410) and a warning with etcd's wording. The batch's messages are decoded and queued
//! for the driver; a full queue holds up the stream (HTTP/2 flow control reaches the sender,
//! whose own bounded queue then drops), never the driver.

use std::net::TcpListener;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::StreamExt;
use raft::eraftpb::Message;
use tonic::{Request, Response, Status, Streaming};

use super::stats;
use super::{Identity, Inbound, CLUSTER_ID_MISMATCH, MAX_BATCH_DECODE_BYTES, MEMBER_REMOVED, TO_FIELD_MISMATCH};
use crate::log;

/// A peer's TLS handshake must finish within this.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
use crate::proto::ballastpeerpb::peer_server::{Peer, PeerServer};
use crate::proto::ballastpeerpb::{
    LeaseRenewRequest, LeaseRenewResponse, LeaseTtlRequest, LeaseTtlResponse, MembersRequest, MembersResponse, MessageBatch, PeerMember, ProbeRequest, ProbeResponse, PromoteRequest, SnapshotRequest, StreamEnd,
};

/// etcd's lease.ErrNotPrimary, as a forwarded lease call's answer from a member not leading.
pub const NOT_PRIMARY: &str = "not a primary lessor";

#[derive(Clone)]
pub struct PeerService {
    pub me: Identity,
    pub inbound: flume::Sender<Inbound>,
    pub membership: crate::cluster::Membership,
    pub promote: super::PromoteFn,
    /// Where this member's snapshots are (served to followers installing one).
    pub snap_dir: std::path::PathBuf,
}

#[tonic::async_trait]
impl Peer for PeerService {
    async fn stream(&self, request: Request<Streaming<MessageBatch>>) -> Result<Response<StreamEnd>, Status> {
        let mut batches = request.into_inner();
        // The byte counter of the stream's sender, resolved at its first batch (not per batch).
        let mut received: Option<(u64, metrics::Counter)> = None;
        while let Some(batch) = batches.message().await? {
            if let Err(refused) = self.check(&batch) {
                let member = self.membership.current().member(batch.from).is_some();
                stats::receive_failure(member.then_some(batch.from));
                return Err(refused);
            }
            let bytes: usize = batch.messages.iter().map(Vec::len).sum();
            match &received {
                Some((from, counter)) if *from == batch.from => counter.increment(bytes as u64),
                _ => {
                    let counter = stats::received_bytes(batch.from);
                    counter.increment(bytes as u64);
                    received = Some((batch.from, counter));
                }
            }
            for bytes in batch.messages {
                let m: Message = protobuf::Message::parse_from_bytes(&bytes).map_err(|e| {
                    stats::receive_failure(Some(batch.from));
                    Status::invalid_argument(format!("undecodable raft message: {e}"))
                })?;
                if self.inbound.send_async(Inbound::Message(m)).await.is_err() {
                    return Err(Status::unavailable("server stopped"));
                }
            }
        }
        Ok(Response::new(StreamEnd {}))
    }

    type SnapshotStream = super::snapshot::ChunkStream;

    async fn snapshot(&self, request: Request<SnapshotRequest>) -> Result<Response<Self::SnapshotStream>, Status> {
        let req = request.into_inner();
        self.check(&MessageBatch { cluster_id: req.cluster_id, from: req.from, to: self.me.member_id, messages: Vec::new() })?;
        let d = crate::snapshot::descriptor::Descriptor::decode(&req.descriptor).map_err(Status::invalid_argument)?;
        log::info("sending a snapshot's files", &[("to", format!("{:x}", req.from)), ("index", d.index.to_string())]);
        Ok(Response::new(super::snapshot::serve(self.snap_dir.clone(), d, req.from).await?))
    }

    async fn members(&self, _: Request<MembersRequest>) -> Result<Response<MembersResponse>, Status> {
        let cluster = self.membership.current();
        let initial_members = list(&self.membership.initial().members);
        Ok(Response::new(MembersResponse { cluster_id: cluster.id, members: list(&cluster.members), initial_members }))
    }

    async fn member_promote(&self, request: Request<PromoteRequest>) -> Result<Response<MembersResponse>, Status> {
        let members = (self.promote)(request.into_inner().id).await?;
        Ok(Response::new(MembersResponse { cluster_id: self.me.cluster_id, members: list(&members), initial_members: Vec::new() }))
    }

    async fn probe(&self, _: Request<ProbeRequest>) -> Result<Response<ProbeResponse>, Status> {
        Ok(Response::new(ProbeResponse {}))
    }

    async fn lease_renew(&self, request: Request<LeaseRenewRequest>) -> Result<Response<LeaseRenewResponse>, Status> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.ask(super::LeaseAsk::Renew { ids: request.into_inner().ids, reply }).await?;
        let ttls = answer.await.map_err(|_| Status::unavailable("server stopped"))?.ok_or_else(|| Status::failed_precondition(NOT_PRIMARY))?;
        Ok(Response::new(LeaseRenewResponse { ttls }))
    }

    async fn lease_time_to_live(&self, request: Request<LeaseTtlRequest>) -> Result<Response<LeaseTtlResponse>, Status> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.ask(super::LeaseAsk::TimeToLive { id: request.into_inner().id, reply }).await?;
        let ttl = answer.await.map_err(|_| Status::unavailable("server stopped"))?.ok_or_else(|| Status::failed_precondition(NOT_PRIMARY))?;
        Ok(Response::new(match ttl {
            Some((remaining, granted, keys)) => LeaseTtlResponse { found: true, remaining, granted, keys },
            None => LeaseTtlResponse::default(),
        }))
    }
}

/// Members as the peer API lists them.
pub fn list(members: &[crate::cluster::Member]) -> Vec<PeerMember> {
    members
        .iter()
        .map(|m| PeerMember { id: m.id, name: m.name.clone(), peer_urls: m.peer_urls.clone(), client_urls: m.client_urls.clone(), is_learner: m.is_learner })
        .collect()
}

/// Members from the peer API's list (the inverse of `list`).
pub fn unlist(members: Vec<PeerMember>) -> Vec<crate::cluster::Member> {
    members
        .into_iter()
        .map(|m| crate::cluster::Member { id: m.id, name: m.name, peer_urls: m.peer_urls, client_urls: m.client_urls, is_learner: m.is_learner })
        .collect()
}

impl PeerService {
    async fn ask(&self, ask: super::LeaseAsk) -> Result<(), Status> {
        self.inbound.send_async(Inbound::Lease(ask)).await.map_err(|_| Status::unavailable("server stopped"))
    }

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
        if self.membership.current().removed.contains(&batch.from) {
            log::warn(
                "rejected stream from remote peer because it was removed",
                &[("local-member-id", format!("{:x}", self.me.member_id)), ("remote-peer-id-stream-handler", format!("{:x}", batch.from))],
            );
            return Err(Status::failed_precondition(MEMBER_REMOVED));
        }
        Ok(())
    }
}

/// Binds every `--listen-peer-urls` address; each listener with whether it serves TLS
/// (`https://`, which needs the peer TLS flags: `tls_configured`).
pub fn bind_all(urls: &[String], tls_configured: bool) -> Result<Vec<(TcpListener, bool)>, String> {
    let mut addrs: Vec<(&str, bool)> = Vec::new();
    for url in urls {
        let (addr, secure) = match (url.strip_prefix("http://"), url.strip_prefix("https://")) {
            (Some(rest), _) => (rest.trim_end_matches('/'), false),
            (_, Some(_)) if !tls_configured => {
                return Err(format!("listen url {url}: an https:// peer URL needs --peer-cert-file and --peer-key-file, or --peer-auto-tls"))
            }
            (_, Some(rest)) => (rest.trim_end_matches('/'), true),
            _ => return Err(format!("listen url {url}: peer URLs must be http:// or https://")),
        };
        if !addrs.iter().any(|(a, _)| *a == addr) {
            addrs.push((addr, secure));
        }
    }
    addrs
        .into_iter()
        .map(|(addr, secure)| {
            let l = crate::listener::listen(addr).map_err(|e| format!("listen tcp {addr}: {e}"))?;
            Ok((l, secure))
        })
        .collect()
}

/// Serves the `Peer` service on `listeners` for good (on the transport's runtime); a secure
/// listener's connections are handshaken with `tls` first.
pub async fn serve(listeners: Vec<(TcpListener, bool)>, peer: PeerService, tls: Option<Arc<rustls::ServerConfig>>) {
    for (listener, secure) in listeners {
        let address = listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
        let listener = match tokio::net::TcpListener::from_std(listener) {
            Ok(l) => l,
            Err(e) => {
                log::error("cannot serve peer traffic", &[("address", address), ("error", e.to_string())]);
                continue;
            }
        };
        let service = PeerServer::new(peer.clone()).max_decoding_message_size(MAX_BATCH_DECODE_BYTES);
        let router = tonic::transport::Server::builder().add_service(service);
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener).map(|conn| conn.inspect(|c| drop(c.set_nodelay(true))));
        match tls.clone().filter(|_| secure) {
            None => {
                log::info("serving peer traffic", &[("address", address)]);
                tokio::spawn(async move {
                    if let Err(e) = router.serve_with_incoming(incoming).await {
                        log::error("the peer listener stopped", &[("error", e.to_string())]);
                    }
                });
            }
            Some(tls) => {
                log::info("serving peer traffic securely", &[("address", address)]);
                let acceptor = tokio_rustls::TlsAcceptor::from(tls);
                let handshaken = incoming
                    .filter_map(move |conn| {
                        let acceptor = acceptor.clone();
                        async move { handshake(acceptor, conn.ok()?).await }
                    })
                    .map(Ok::<_, std::io::Error>);
                tokio::spawn(async move {
                    if let Err(e) = router.serve_with_incoming(Box::pin(handshaken)).await {
                        log::error("the peer listener stopped", &[("error", e.to_string())]);
                    }
                });
            }
        }
    }
}

/// A peer's TLS handshake, bounded in time; None (logged) when it fails.
async fn handshake(acceptor: tokio_rustls::TlsAcceptor, conn: tokio::net::TcpStream) -> Option<TlsConn> {
    let remote = conn.peer_addr().map(|a| a.to_string()).unwrap_or_default();
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(conn)).await {
        Ok(Ok(stream)) => Some(TlsConn(stream)),
        Ok(Err(e)) => {
            log::warn("rejected connection on peer endpoint", &[("remote-addr", remote), ("error", e.to_string())]);
            None
        }
        Err(_) => {
            log::warn("rejected connection on peer endpoint", &[("remote-addr", remote), ("error", "TLS handshake timed out".into())]);
            None
        }
    }
}

/// A handshaken peer connection, as tonic serves it.
pub struct TlsConn(tokio_rustls::server::TlsStream<tokio::net::TcpStream>);

impl tonic::transport::server::Connected for TlsConn {
    type ConnectInfo = ();

    fn connect_info(&self) {}
}

impl tokio::io::AsyncRead for TlsConn {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut tokio::io::ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for TlsConn {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_write_vectored(mut self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[std::io::IoSlice<'_>]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

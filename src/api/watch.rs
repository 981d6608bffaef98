//! etcd's Watch service (etcd: server/etcdserver/api/v3rpc/watch.go) over gRPC: one
//! bidirectional stream per call. Requests go to the watch hub (`watch/hub.rs`) in order; the
//! hub's responses (headers filled in: their size counts for fragments) come back on the
//! stream's channel.
//! The stream stays open when the client half-closes, as etcd's does.

use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use futures_util::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use super::Ctx;
use crate::proto::etcdserverpb::watch_request::RequestUnion;
use crate::proto::etcdserverpb::watch_server;
use crate::proto::etcdserverpb::{WatchRequest, WatchResponse};
use crate::watch::{HubMsg, WatchHub};

pub struct WatchService {
    ctx: Arc<Ctx>,
}

impl WatchService {
    pub fn new(ctx: Arc<Ctx>) -> WatchService {
        WatchService { ctx }
    }
}

type Responses = Pin<Box<dyn Stream<Item = Result<WatchResponse, Status>> + Send>>;

#[tonic::async_trait]
impl watch_server::Watch for WatchService {
    type WatchStream = Responses;

    async fn watch(&self, req: Request<Streaming<WatchRequest>>) -> Result<Response<Responses>, Status> {
        let hub = self.ctx.watch.clone();
        let stream = hub.open().await?;
        let id = stream.id;
        // etcd checks each create against the token the stream was opened with.
        let sender = Sender {
            auth: self.ctx.auth.clone(),
            meta: req.metadata().clone(),
            tls: req.extensions().get::<crate::server::handshake::TlsConnectInfo>().cloned(),
        };
        tokio::spawn(forward_requests(hub.clone(), id, req.into_inner(), sender));
        let closer = CloseOnDrop { hub, stream: id };
        let queued = stream.queued;
        let responses = stream.responses.into_stream().flat_map(move |o| {
            let _ = &closer;
            queued.fetch_sub(o.bytes, Ordering::Relaxed);
            futures_util::stream::iter(o.resps.into_iter().map(Ok))
        });
        Ok(Response::new(Box::pin(responses)))
    }
}

/// Passes the client's requests to the hub until the client stops sending.
async fn forward_requests(hub: WatchHub, stream: u64, mut requests: Streaming<WatchRequest>, sender: Sender) {
    while let Some(Ok(req)) = requests.next().await {
        let msg = match req.request_union {
            Some(RequestUnion::CreateRequest(req)) => {
                let denied = sender.check(&req).err();
                HubMsg::Create { stream, req, denied }
            }
            Some(RequestUnion::CancelRequest(c)) => HubMsg::Cancel { stream, watch_id: c.watch_id },
            Some(RequestUnion::ProgressRequest(_)) => HubMsg::Progress { stream },
            None => continue,
        };
        if hub.send(msg).await.is_err() {
            return;
        }
    }
}

/// Who opened a watch stream, for the auth check of each create.
struct Sender {
    auth: Arc<crate::auth::AuthGuard>,
    meta: tonic::metadata::MetadataMap,
    tls: Option<crate::server::handshake::TlsConnectInfo>,
}

impl Sender {
    /// etcd's isWatchPermitted: read permission on the watched range.
    fn check(&self, req: &crate::proto::etcdserverpb::WatchCreateRequest) -> crate::error::Result<()> {
        if !self.auth.enabled() {
            return Ok(());
        }
        let mut ext = http::Extensions::new();
        if let Some(tls) = &self.tls {
            ext.insert(tls.clone());
        }
        let who = self.auth.caller(&self.meta, &ext)?.unwrap_or_default();
        self.auth.view().read(&who, &req.key, &req.range_end)
    }
}

/// Tells the hub when the response stream is dropped (the client went away).
struct CloseOnDrop {
    hub: WatchHub,
    stream: u64,
}

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.hub.close(self.stream);
    }
}

//! etcd's Watch service (etcd: server/etcdserver/api/v3rpc/watch.go) over gRPC: one
//! bidirectional stream per call. Requests go to the watch hub (`watch/hub.rs`) in order; the
//! hub's responses (headers filled in: their size counts for fragments) come back on the
//! stream's channel.
//! The stream stays open when the client half-closes, as etcd's does.
//!
//! While the stream holds more than `STREAM_BUFFER_BYTES` of answers its client has not taken,
//! its requests wait unread (`Backlog`), so HTTP/2's flow control stops the client: etcd's
//! recvLoop blocks the same way on its control channel when its sendLoop cannot send. Before,
//! a client that sent creates and cancels (or progress requests) and never read had every
//! answer queued: 3 GiB in 30 s, and other clients' puts timed out meanwhile.
//!
//! `WatchServer` serves the one method as tonic's generated server would, but with
//! `WatchCodec`: the hub's answers are mostly encoded already (`watch/wire.rs`).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use super::Ctx;
use crate::proto::etcdserverpb::watch_request::RequestUnion;
use crate::proto::etcdserverpb::WatchRequest;
use crate::server::codec::WatchCodec;
use crate::watch::wire::WireResponse;
use crate::watch::{HubMsg, WatchHub, STREAM_BUFFER_BYTES};

const WATCH_PATH: &str = "/etcdserverpb.Watch/Watch";

pub struct WatchService {
    ctx: Arc<Ctx>,
}

impl WatchService {
    pub fn new(ctx: Arc<Ctx>) -> WatchService {
        WatchService { ctx }
    }
}

type Responses = Pin<Box<dyn Stream<Item = Result<WireResponse, Status>> + Send>>;
type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl WatchService {
    pub async fn watch(&self, req: Request<Streaming<WatchRequest>>) -> Result<Response<Responses>, Status> {
        let hub = self.ctx.watch.clone();
        let stream = hub.open().await?;
        let id = stream.id;
        // etcd checks each create against the token the stream was opened with.
        let sender = Sender {
            auth: self.ctx.auth.clone(),
            meta: req.metadata().clone(),
            tls: req.extensions().get::<crate::server::tls_conn::TlsConnectInfo>().cloned(),
        };
        let (failed_tx, failed) = tokio::sync::oneshot::channel();
        let backlog = Arc::new(Backlog { queued: stream.queued, taken: tokio::sync::Notify::new(), closed: AtomicBool::new(false) });
        crate::server::shard_front::spawn(forward_requests(hub.clone(), id, req.into_inner(), sender, failed_tx, backlog.clone()));
        let closer = CloseOnDrop { hub, stream: id, backlog: backlog.clone() };
        let responses = tokio_stream::wrappers::UnboundedReceiverStream::new(stream.responses).flat_map(move |o| {
            let _ = &closer;
            backlog.queued.fetch_sub(o.bytes, Ordering::Relaxed);
            backlog.taken.notify_one();
            futures_util::stream::iter(o.resps.into_iter().map(Ok))
        });
        // A request that cannot be read (too large, undecodable) ends the stream with its
        // error, as etcd's does; tonic sends an error as the stream's last word.
        let failure = futures_util::stream::once(failed).filter_map(|f| std::future::ready(f.ok().map(Err)));
        Ok(Response::new(Box::pin(futures_util::stream::select(responses, failure))))
    }
}

/// A stream's answers not yet taken by its client (the bytes the hub counts as sent, less
/// those the response stream took), and a wake-up each time it takes some.
struct Backlog {
    queued: Arc<AtomicUsize>,
    taken: tokio::sync::Notify,
    /// The response stream is gone (the client left): nothing will be taken any more.
    closed: AtomicBool,
}

impl Backlog {
    /// Waits while the client holds more than `STREAM_BUFFER_BYTES` untaken; false once the
    /// response stream is gone.
    async fn room(&self) -> bool {
        while self.queued.load(Ordering::Relaxed) >= STREAM_BUFFER_BYTES {
            if self.closed.load(Ordering::Acquire) {
                return false;
            }
            // A wake-up between the load and here is kept as a permit: none is lost.
            self.taken.notified().await;
        }
        true
    }
}

/// Passes the client's requests to the hub until the client stops sending, or sends what
/// cannot be read: then `failed` gets the error. Waits, unread, while the client has not
/// taken its answers (`Backlog`).
async fn forward_requests(hub: WatchHub, stream: u64, mut requests: Streaming<WatchRequest>, sender: Sender, failed: tokio::sync::oneshot::Sender<Status>, backlog: Arc<Backlog>) {
    while backlog.room().await {
        let Some(req) = requests.next().await else { return };
        let req = match req {
            Ok(req) => req,
            Err(status) => {
                let _ = failed.send(status);
                return;
            }
        };
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
    tls: Option<crate::server::tls_conn::TlsConnectInfo>,
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

/// Tells the hub, and the requests waiting on the backlog, when the response stream is
/// dropped (the client went away).
struct CloseOnDrop {
    hub: WatchHub,
    stream: u64,
    backlog: Arc<Backlog>,
}

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.backlog.closed.store(true, Ordering::Release);
        self.backlog.taken.notify_one();
        self.hub.close(self.stream);
    }
}

/// The Watch service's gRPC server (tonic's generated one, with `WatchCodec`).
#[derive(Clone)]
pub struct WatchServer {
    service: Arc<WatchService>,
    /// Requests larger than this are refused (`--max-request-bytes` and gRPC's overhead).
    max_request_bytes: usize,
}

impl WatchServer {
    pub fn new(service: WatchService, max_request_bytes: usize) -> WatchServer {
        WatchServer { service: Arc::new(service), max_request_bytes }
    }
}

impl tonic::server::NamedService for WatchServer {
    const NAME: &'static str = "etcdserverpb.Watch";
}

impl tower_service::Service<http::Request<tonic::body::Body>> for WatchServer {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        if req.uri().path() != WATCH_PATH {
            return Box::pin(async { Ok(Status::unimplemented("").into_http()) });
        }
        let (method, max_request_bytes) = (WatchMethod(self.service.clone()), self.max_request_bytes);
        Box::pin(async move {
            let mut gzip = tonic::codec::EnabledCompressionEncodings::default();
            gzip.enable(tonic::codec::CompressionEncoding::Gzip);
            // gzip requests taken, answers plain (see `server::client_routes`).
            let mut grpc = tonic::server::Grpc::new(WatchCodec)
                .apply_compression_config(gzip, Default::default())
                .apply_max_message_size_config(Some(max_request_bytes), Some(usize::MAX));
            Ok(grpc.streaming(method, req).await)
        })
    }
}

struct WatchMethod(Arc<WatchService>);

impl tonic::server::StreamingService<WatchRequest> for WatchMethod {
    type Response = WireResponse;
    type ResponseStream = Responses;
    type Future = BoxFuture<Result<Response<Responses>, Status>>;

    fn call(&mut self, req: Request<Streaming<WatchRequest>>) -> Self::Future {
        let service = self.0.clone();
        Box::pin(async move { service.watch(req).await })
    }
}

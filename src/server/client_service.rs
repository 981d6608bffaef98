//! The client port's service: gRPC calls of the KV service go straight to it (Range, Put,
//! DeleteRange and Txn to `kv_route`, Compact to its tonic server), everything else through the
//! router (the other services, the JSON gateway, /health, /metrics, ...). Why: the router costs every call allocations that KV's
//! hot path does not need: axum boxes the request and the answer bodies again, inserts the
//! matched route into the request's extensions and clones the route's boxed service (measured,
//! put at 1000 clients: about 6% of the server's CPU between the metrics layer and the KV
//! server, mostly allocation). A call that is not a POST takes the router as before, so every
//! answer is the router's (a GET of Range is still refused there as it was).
//!
//! With auth on, a call whose simple token names a raft entry this member has not applied yet
//! (a token another member issued a moment ago) first waits for it, as etcd's
//! isValidSimpleToken does (`auth::wait_applied`).
//!
//! A unary call whose request exceeds the receive limit gets grpc-go's answer (etcd's):
//! ResourceExhausted "grpc: received message larger than max (N vs. M)", where tonic says
//! OutOfRange "Error, decoded message length too large: ..."; one that sends no request
//! message, Unknown "EOF", where tonic says Internal "Missing request message."
//! (`as_grpc_go_refusal`).
//!
//! A gRPC call over HTTP/1 is not served: 404, as etcd's HTTP mux answers it.
//!
//! A call that requires a leader (`hasleader: true`) is refused while this member has none,
//! and its stream ends when the member has been without one for a while (`require_leader`).
//!
//! A gRPC call of a method or service the port does not serve gets grpc-go's answer (etcd's):
//! "unknown method M for service S" or "unknown service S" (Unimplemented), and
//! "malformed method name: \"P\"" (ResourceExhausted, as etcd 3.5's grpc-go) for a path without
//! a second slash; tonic's servers and the router answered Unimplemented with no message.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tonic::service::Routes;
use tower_service::Service;

use super::kv_route::{KvCall, KvRoute};
use super::require_leader::{self, LeaderLoss};
use crate::api::kv::KvService;
use crate::auth::AuthGuard;
use crate::proto::etcdserverpb::kv_server::KvServer;
use crate::status::ServerStatus;

/// The KV service's paths start with this.
const KV_PREFIX: &str = "/etcdserverpb.KV/";

type Answer = http::Response<tonic::body::Body>;
type BoxAnswer = Pin<Box<dyn Future<Output = Result<Answer, Infallible>> + Send + 'static>>;

#[derive(Clone)]
pub struct ClientService {
    kv: KvServer<KvService>,
    route: KvRoute,
    routes: Routes,
    /// A call whose simple token this member has not applied yet waits for it first
    /// (`AuthGuard::token_index_ahead`).
    auth: Arc<AuthGuard>,
    status: Arc<ServerStatus>,
    leader_loss: LeaderLoss,
}

impl ClientService {
    /// `route` and `kv` (Compact) serve the KV paths; `routes` holds them too (the gateway
    /// calls them there, in process) and everything else.
    pub fn new(kv: KvServer<KvService>, route: KvRoute, routes: Routes, auth: Arc<AuthGuard>, status: Arc<ServerStatus>, leader_loss: LeaderLoss) -> ClientService {
        ClientService { kv, route, routes, auth, status, leader_loss }
    }

    /// After the simple token's raft entry is applied here, if it is ahead.
    fn authorized<B>(&mut self, req: http::Request<B>) -> ClientFuture
    where
        B: http_body::Body<Data = bytes::Bytes> + Send + Unpin + 'static,
        B::Error: Into<tonic::codegen::StdError> + Send + 'static,
    {
        let Some(index) = self.auth.token_index_ahead(req.headers(), self.status.applied_index()) else { return self.route(req) };
        let mut me = self.clone();
        ClientFuture::Direct(Box::pin(async move {
            crate::auth::wait_applied(index, || me.status.applied_index()).await;
            me.route(req).await
        }))
    }

    fn route<B>(&mut self, req: http::Request<B>) -> ClientFuture
    where
        B: http_body::Body<Data = bytes::Bytes> + Send + Unpin + 'static,
        B::Error: Into<tonic::codegen::StdError> + Send + 'static,
    {
        if req.method() != http::Method::POST {
            return ClientFuture::Routed(Box::pin(self.routes.call(req)));
        }
        if req.version() < http::Version::HTTP_2 && is_grpc(&req) {
            return ClientFuture::Direct(Box::pin(std::future::ready(Ok(not_found()))));
        }
        match req.uri().path().strip_prefix(KV_PREFIX) {
            Some("Compact") => return ClientFuture::Direct(self.kv.call(req)),
            Some(method) => {
                if let Some(call) = KvCall::of(method) {
                    let route = self.route.clone();
                    return ClientFuture::Direct(Box::pin(async move { Ok(route.serve(call, req).await) }));
                }
            }
            None => {}
        }
        if let Some(status) = is_grpc(&req).then(|| not_served(req.uri().path())).flatten() {
            return ClientFuture::Direct(Box::pin(std::future::ready(Ok(status.into_http()))));
        }
        ClientFuture::Routed(Box::pin(self.routes.call(req)))
    }
}

impl<B> Service<http::Request<B>> for ClientService
where
    B: http_body::Body<Data = bytes::Bytes> + Send + Unpin + 'static,
    B::Error: Into<tonic::codegen::StdError> + Send + 'static,
{
    type Response = Answer;
    type Error = Infallible;
    type Future = ClientFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // The KV server is always ready; the router says for itself.
        Service::<http::Request<B>>::poll_ready(&mut self.routes, cx)
    }

    fn call(&mut self, req: http::Request<B>) -> ClientFuture {
        if self.status.is_learner() && refused_on_learner(&req) {
            let refused = tonic::Status::from(crate::error::Error::NotSupportedForLearner);
            return ClientFuture::Direct(Box::pin(std::future::ready(Ok(refused.into_http()))));
        }
        let path = req.uri().path();
        if require_leader::required(&req) && is_grpc(&req) && super::grpc_metrics::serves(path) {
            if self.status.leader() == 0 {
                return ClientFuture::Direct(Box::pin(std::future::ready(Ok(require_leader::no_leader().into_http()))));
            }
            if super::grpc_metrics::is_stream(path) {
                let (mut me, loss) = (self.clone(), self.leader_loss.clone());
                return ClientFuture::Direct(Box::pin(async move { Ok(loss.bound(me.authorized(req).await?)) }));
            }
        }
        self.authorized(req)
    }
}

/// A call's answer. Both variants are boxes, so this is small: it is moved up through every
/// layer around the service on each call (the router's future inline made it, and every KV
/// call's future, as large as the router's; copying it was ~2% of the server's CPU at put 1000
/// clients). The router's calls pay one allocation more.
pub enum ClientFuture {
    Direct(BoxAnswer),
    Routed(Pin<Box<<Routes as Service<http::Request<tonic::body::Body>>>::Future>>),
}

impl Future for ClientFuture {
    type Output = Result<Answer, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let answer = match self.get_mut() {
            ClientFuture::Direct(f) => f.as_mut().poll(cx),
            ClientFuture::Routed(f) => f.as_mut().poll(cx),
        };
        answer.map(|a| a.map(as_grpc_go_refusal))
    }
}

/// tonic's refusals of a unary request it cannot read, in grpc-go's (etcd's) words: a message
/// over the receive limit, OutOfRange "Error, decoded message length too large: found N
/// bytes, the limit is: M bytes", is ResourceExhausted "grpc: received message larger than max
/// (N vs. M)"; no message at all, Internal "Missing request message.", is Unknown "EOF". Such
/// a refusal is the answer's headers (trailers-only); any other answer passes untouched after
/// one header lookup (a gRPC answer's status is in its trailers).
fn as_grpc_go_refusal(mut answer: Answer) -> Answer {
    if answer.headers().get("grpc-status").is_none_or(|s| s.as_bytes() != b"11" && s.as_bytes() != b"13") {
        return answer;
    }
    let Some(status) = tonic::Status::from_header_map(answer.headers()) else { return answer };
    let refusal = match (status.code(), status.message()) {
        (tonic::Code::Internal, "Missing request message.") => tonic::Status::unknown("EOF"),
        (tonic::Code::OutOfRange, message) => {
            let Some(sizes) = message.strip_prefix("Error, decoded message length too large: found ") else { return answer };
            let Some((found, limit)) = sizes.strip_suffix(" bytes").and_then(|s| s.split_once(" bytes, the limit is: ")) else { return answer };
            tonic::Status::resource_exhausted(format!("grpc: received message larger than max ({found} vs. {limit})"))
        }
        _ => return answer,
    };
    let headers = answer.headers_mut();
    headers.remove("grpc-message");
    let _ = refusal.add_header(headers);
    answer
}

/// A gRPC call a learner does not serve (`api::learner_serves`); an unknown method is answered
/// as on any member.
fn refused_on_learner<B>(req: &http::Request<B>) -> bool {
    let path = req.uri().path();
    is_grpc(req) && super::grpc_metrics::serves(path) && !crate::api::learner_serves(path)
}

/// etcd's answer to a gRPC call over HTTP/1, which tonic would serve: its cmux hands HTTP/1
/// to its HTTP mux, where the gRPC paths are not routes (Go's http.NotFound, with the
/// gateway's CORS headers).
fn not_found() -> Answer {
    crate::gateway::with_cors(crate::gateway::text(http::StatusCode::NOT_FOUND, "404 page not found")).map(tonic::body::Body::new)
}

fn is_grpc<B>(req: &http::Request<B>) -> bool {
    req.headers().get(http::header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

/// grpc-go's answer to a gRPC call of `path` when the port does not serve it (its server's
/// `handleStream`: the method is after the last slash).
fn not_served(path: &str) -> Option<tonic::Status> {
    if super::grpc_metrics::serves(path) {
        return None;
    }
    let name = path.strip_prefix('/').unwrap_or(path);
    let Some((service, method)) = name.rsplit_once('/') else {
        return Some(tonic::Status::resource_exhausted(format!("malformed method name: {path:?}")));
    };
    Some(if super::grpc_metrics::serves_service(service) {
        tonic::Status::unimplemented(format!("unknown method {method} for service {service}"))
    } else {
        tonic::Status::unimplemented(format!("unknown service {service}"))
    })
}

//! etcd's JSON gateway: the v3 API as JSON over HTTP on the client URLs (`POST /v3/kv/put`,
//! `/v3/watch`, ...), answered as etcd 3.5's grpc-gateway v1 answers. Like etcd's, it is a
//! client of the gRPC services: each request's JSON becomes the protobuf request and goes to
//! the same tonic services the gRPC clients reach, in process (`call.rs`), with the
//! `Authorization` header as the `authorization` metadata; the protobuf answer comes back as
//! JSON. So the gateway has no semantics of its own — errors, auth checks, size limits and
//! revisions are the services'.
//!
//! * `go_json` reads JSON as Go's `encoding/json` does (its errors, base64 and escaping).
//! * `mapping` turns etcd's messages into JSON and back from proto/'s descriptors.
//! * `call` is the in-process gRPC call; `stream` serves the streaming calls (Watch,
//!   LeaseKeepAlive, Observe, Snapshot): newline-delimited `{"result":…}` objects.
//!
//! Paths are etcd 3.5's (`routes`): `/v3/…`, and `/v3beta/…` rewritten to `/v3/…` as etcd does;
//! every one is a POST (another method: 405), an unknown `/v3/` path is 404 `Not Found`, as
//! grpc-gateway's mux answers, and `/v3alpha/` is etcd 3.5's `404 page not found`.

pub mod call;
pub mod go_json;
pub mod mapping;
pub mod stream;

use std::sync::Arc;

use axum::body::Body;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::BodyExt;
use prost_reflect::MessageDescriptor;

/// How a method's messages flow.
#[derive(Clone, Copy, PartialEq, Debug)]
pub enum Flow {
    Unary,
    /// One request, a stream of answers (Observe, Snapshot).
    ServerStream,
    /// Requests and answers both streamed (Watch, LeaseKeepAlive).
    Bidi,
}

/// One gateway path: the gRPC method it calls.
pub struct Route {
    /// The gRPC path, `/etcdserverpb.KV/Range`.
    pub grpc_path: String,
    pub input: MessageDescriptor,
    pub output: MessageDescriptor,
    pub flow: Flow,
}

/// etcd 3.5's gateway paths (after `/v3/`) and the (service, method) each calls, from the
/// `google.api.http` annotations of etcd's protos. `maintenance/hash` is Hash: etcd 3.5
/// annotates HashKV with the same path, and the first registration wins.
const PATHS: &[(&str, &str, &str)] = &[
    ("kv/range", "etcdserverpb.KV", "Range"),
    ("kv/put", "etcdserverpb.KV", "Put"),
    ("kv/deleterange", "etcdserverpb.KV", "DeleteRange"),
    ("kv/txn", "etcdserverpb.KV", "Txn"),
    ("kv/compaction", "etcdserverpb.KV", "Compact"),
    ("watch", "etcdserverpb.Watch", "Watch"),
    ("lease/grant", "etcdserverpb.Lease", "LeaseGrant"),
    ("lease/revoke", "etcdserverpb.Lease", "LeaseRevoke"),
    ("kv/lease/revoke", "etcdserverpb.Lease", "LeaseRevoke"),
    ("lease/keepalive", "etcdserverpb.Lease", "LeaseKeepAlive"),
    ("lease/timetolive", "etcdserverpb.Lease", "LeaseTimeToLive"),
    ("kv/lease/timetolive", "etcdserverpb.Lease", "LeaseTimeToLive"),
    ("lease/leases", "etcdserverpb.Lease", "LeaseLeases"),
    ("kv/lease/leases", "etcdserverpb.Lease", "LeaseLeases"),
    ("cluster/member/add", "etcdserverpb.Cluster", "MemberAdd"),
    ("cluster/member/remove", "etcdserverpb.Cluster", "MemberRemove"),
    ("cluster/member/update", "etcdserverpb.Cluster", "MemberUpdate"),
    ("cluster/member/list", "etcdserverpb.Cluster", "MemberList"),
    ("cluster/member/promote", "etcdserverpb.Cluster", "MemberPromote"),
    ("maintenance/alarm", "etcdserverpb.Maintenance", "Alarm"),
    ("maintenance/status", "etcdserverpb.Maintenance", "Status"),
    ("maintenance/defragment", "etcdserverpb.Maintenance", "Defragment"),
    ("maintenance/hash", "etcdserverpb.Maintenance", "Hash"),
    ("maintenance/snapshot", "etcdserverpb.Maintenance", "Snapshot"),
    ("maintenance/transfer-leadership", "etcdserverpb.Maintenance", "MoveLeader"),
    ("maintenance/downgrade", "etcdserverpb.Maintenance", "Downgrade"),
    ("auth/enable", "etcdserverpb.Auth", "AuthEnable"),
    ("auth/disable", "etcdserverpb.Auth", "AuthDisable"),
    ("auth/status", "etcdserverpb.Auth", "AuthStatus"),
    ("auth/authenticate", "etcdserverpb.Auth", "Authenticate"),
    ("auth/user/add", "etcdserverpb.Auth", "UserAdd"),
    ("auth/user/get", "etcdserverpb.Auth", "UserGet"),
    ("auth/user/list", "etcdserverpb.Auth", "UserList"),
    ("auth/user/delete", "etcdserverpb.Auth", "UserDelete"),
    ("auth/user/changepw", "etcdserverpb.Auth", "UserChangePassword"),
    ("auth/user/grant", "etcdserverpb.Auth", "UserGrantRole"),
    ("auth/user/revoke", "etcdserverpb.Auth", "UserRevokeRole"),
    ("auth/role/add", "etcdserverpb.Auth", "RoleAdd"),
    ("auth/role/get", "etcdserverpb.Auth", "RoleGet"),
    ("auth/role/list", "etcdserverpb.Auth", "RoleList"),
    ("auth/role/delete", "etcdserverpb.Auth", "RoleDelete"),
    ("auth/role/grant", "etcdserverpb.Auth", "RoleGrantPermission"),
    ("auth/role/revoke", "etcdserverpb.Auth", "RoleRevokePermission"),
    ("lock/lock", "v3lockpb.Lock", "Lock"),
    ("lock/unlock", "v3lockpb.Lock", "Unlock"),
    ("election/campaign", "v3electionpb.Election", "Campaign"),
    ("election/proclaim", "v3electionpb.Election", "Proclaim"),
    ("election/leader", "v3electionpb.Election", "Leader"),
    ("election/observe", "v3electionpb.Election", "Observe"),
    ("election/resign", "v3electionpb.Election", "Resign"),
];

/// The route of gateway path `path` (after `/v3/`), from proto/'s service descriptors.
fn route(path: &str) -> Option<&'static Route> {
    static ROUTES: std::sync::OnceLock<Vec<(&'static str, Route)>> = std::sync::OnceLock::new();
    let routes = ROUTES.get_or_init(|| PATHS.iter().map(|(p, service, method)| (*p, make_route(service, method))).collect());
    routes.iter().find(|(p, _)| *p == path).map(|(_, r)| r)
}

fn make_route(service: &str, method: &str) -> Route {
    let svc = mapping::pool().get_service_by_name(service).unwrap_or_else(|| panic!("service {service} is not in proto/"));
    let m = svc.methods().find(|m| m.name() == method).unwrap_or_else(|| panic!("{service}.{method} is not in proto/"));
    let flow = match (m.is_client_streaming(), m.is_server_streaming()) {
        (false, false) => Flow::Unary,
        (false, true) => Flow::ServerStream,
        _ => Flow::Bidi,
    };
    Route { grpc_path: format!("/{service}/{method}"), input: m.input(), output: m.output(), flow }
}

/// What the gateway needs: the gRPC routes it calls and the bounds.
pub struct Gateway {
    /// The gRPC services, as the client port serves them (without the gateway).
    pub grpc: axum::Router,
    /// The largest request message the services take (`--max-request-bytes` + gRPC's
    /// overhead allowance): a bigger one is refused here as etcd's gRPC server refuses it.
    pub max_message_bytes: usize,
    /// Streaming calls open at once through the gateway, shared by every front-end thread
    /// (`stream_bound`).
    pub streams: Arc<tokio::sync::Semaphore>,
    /// For etcd's refusal of common names on the gateway, and the wait for a simple token's
    /// entry to be applied (`call.rs`).
    pub auth: Arc<crate::auth::AuthGuard>,
    pub status: Arc<crate::status::ServerStatus>,
    /// Becomes true when the server stops: open streams end as etcd's gateway's do when its
    /// gRPC connection closes (`stream.rs`).
    pub stopping: tokio::sync::watch::Receiver<bool>,
}

/// The bound on the gateway's open streaming calls, one for the whole server:
/// `--max-concurrent-streams` (etcd's gateway is one gRPC connection to its own server, whose
/// streams that flag bounds); more wait for a turn.
pub fn stream_bound(max_concurrent_streams: u32) -> Arc<tokio::sync::Semaphore> {
    let permits = (max_concurrent_streams as usize).min(tokio::sync::Semaphore::MAX_PERMITS);
    Arc::new(tokio::sync::Semaphore::new(permits))
}

impl Gateway {
    pub fn new(
        grpc: axum::Router,
        max_message_bytes: usize,
        streams: Arc<tokio::sync::Semaphore>,
        auth: Arc<crate::auth::AuthGuard>,
        status: Arc<crate::status::ServerStatus>,
        stopping: tokio::sync::watch::Receiver<bool>,
    ) -> Gateway {
        Gateway { grpc, max_message_bytes, streams, auth, status, stopping }
    }

    /// etcd's access controller: with `--client-cert-auth` and auth on, a gateway request over
    /// TLS whose client certificate has a common name is refused (the gateway's calls carry no
    /// certificate, so the name would silently not count).
    fn refuses_common_name(&self, req: &http::request::Parts) -> bool {
        if !self.auth.client_cert_auth() || !self.auth.enabled() {
            return false;
        }
        let info = req.extensions.get::<crate::server::tls_conn::TlsConnectInfo>();
        let leaf = info.and_then(|i| i.peer_certificates.as_ref()).and_then(|chain| chain.first());
        leaf.and_then(|c| crate::auth::common_name(c.as_ref())).is_some_and(|cn| !cn.is_empty())
    }

    /// A request body larger than this is refused unread: a request message's JSON (base64
    /// takes 4/3 of the bytes; escapes more) never needs more.
    fn max_body_bytes(&self) -> usize {
        self.max_message_bytes.saturating_mul(8)
    }
}

/// The routes to merge into the client port's router.
pub fn router(gateway: Arc<Gateway>) -> axum::Router {
    let serve = move |req: Request<Body>| {
        let gateway = gateway.clone();
        async move { with_cors(serve(gateway, req).await) }
    };
    // Go's ServeMux sends `/v3` to `/v3/` (a subtree registered with its slash).
    let to_subtree = |req: Request<Body>| async move { with_cors(redirect("/v3/", req.uri().query())) };
    axum::Router::new()
        .route("/v3", axum::routing::any(to_subtree))
        .route("/v3/", axum::routing::any(serve.clone()))
        .route("/v3beta/", axum::routing::any(serve.clone()))
        .route("/v3/{*rest}", axum::routing::any(serve.clone()))
        .route("/v3beta/{*rest}", axum::routing::any(serve.clone()))
        .route("/v3alpha/{*rest}", axum::routing::any(|| async { with_cors(text(StatusCode::NOT_FOUND, "404 page not found")) }))
}

async fn serve(gateway: Arc<Gateway>, req: Request<Body>) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let route = match route_or_refusal(&gateway, &parts) {
        Ok(route) => route,
        Err(refusal) => {
            // The body first (bounded): an HTTP/2 stream answered before its request body
            // ended is reset, and curl then reports a framing error instead of the answer.
            let _ = read_body(body, gateway.max_body_bytes()).await;
            return *refusal;
        }
    };
    let meta = call::metadata(&parts.headers);
    match route.flow {
        Flow::Unary => unary(&gateway, route, meta, body).await,
        Flow::ServerStream | Flow::Bidi => stream::serve(&gateway, route, meta, body).await,
    }
}

/// The route a request calls, or the answer it gets without a call (refused, redirected,
/// unknown path, wrong method, CORS preflight).
fn route_or_refusal(gateway: &Gateway, req: &http::request::Parts) -> Result<&'static Route, Box<Response<Body>>> {
    if gateway.refuses_common_name(req) {
        return Err(Box::new(text(StatusCode::BAD_REQUEST, "CommonName of client sending a request against gateway will be ignored and not used as expected")));
    }
    let path = req.uri.path();
    let rest = path.strip_prefix("/v3/").or_else(|| path.strip_prefix("/v3beta/")).unwrap_or("");
    // Go's ServeMux answers a path that is not clean (`//`, `.`, `..`) with a redirect to
    // the clean one.
    let clean = clean_path(&format!("/v3/{rest}"));
    if clean != format!("/v3/{rest}") {
        return Err(Box::new(redirect(&clean, req.uri.query())));
    }
    if req.method == http::Method::OPTIONS {
        return Err(Box::new(Response::new(Body::empty())));
    }
    let Some(route) = route(rest) else { return Err(Box::new(text(StatusCode::NOT_FOUND, "Not Found"))) };
    if req.method != http::Method::POST {
        return Err(Box::new(text(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed")));
    }
    Ok(route)
}

/// A unary call: the body's first JSON value as the request, the answer as one JSON object.
async fn unary(gateway: &Gateway, route: &Route, meta: http::HeaderMap, body: Body) -> Response<Body> {
    let request = match read_request(gateway, route, body).await {
        Ok(r) => r,
        Err(status) => return error(&status),
    };
    let mut answer = call::Call::open(gateway, route, meta, Body::from(call::frame(&request))).await;
    match answer.next().await {
        Some(Ok(msg)) => match to_json(route.output.clone(), msg).await {
            Ok(json) => ok_json(Body::from(json)),
            Err(e) => error(&tonic::Status::internal(e)),
        },
        Some(Err(status)) => error(&status),
        None => error(&tonic::Status::internal("the service sent no answer")),
    }
}

/// The request message of a unary or server-streaming call: the whole body read (bounded),
/// its first JSON value decoded (none: the empty request), as etcd's gateway reads it.
async fn read_request(gateway: &Gateway, route: &Route, body: Body) -> Result<Vec<u8>, tonic::Status> {
    let body = read_body(body, gateway.max_body_bytes()).await?;
    let request = match go_json::decode_next(&body, false) {
        Ok(None) => Vec::new(),
        Ok(Some((v, _))) => mapping::request_from_json(&route.input, &v).map_err(tonic::Status::invalid_argument)?,
        Err(e) => return Err(tonic::Status::invalid_argument(go_json::eof_as("unexpected EOF")(e))),
    };
    check_size(gateway, request.len())?;
    Ok(request)
}

/// etcd's gRPC server refuses a message over its limit with this status.
fn check_size(gateway: &Gateway, len: usize) -> Result<(), tonic::Status> {
    if len > gateway.max_message_bytes {
        return Err(too_large(len, gateway.max_message_bytes));
    }
    Ok(())
}

fn too_large(len: usize, max: usize) -> tonic::Status {
    tonic::Status::resource_exhausted(format!("grpc: received message larger than max ({len} vs. {max})"))
}

/// The whole body, refused past `max_bytes`.
async fn read_body(mut body: Body, max_bytes: usize) -> Result<bytes::Bytes, tonic::Status> {
    let mut buf = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| tonic::Status::invalid_argument(e.to_string()))?;
        if let Ok(data) = frame.into_data() {
            buf.extend_from_slice(&data);
            if buf.len() > max_bytes {
                return Err(too_large(buf.len(), max_bytes));
            }
        }
    }
    Ok(buf.freeze())
}

/// Answers larger than this are turned into JSON on a blocking thread, not the connection's.
const OFF_THREAD_BYTES: usize = 1 << 20;

/// The JSON of an answer message (off the front-end thread when large).
async fn to_json(desc: MessageDescriptor, msg: bytes::Bytes) -> Result<String, String> {
    let len = msg.len();
    let convert = move || {
        let mut out = String::with_capacity(msg.len() * 2 + 64);
        mapping::response_to_json(&desc, &msg, &mut out).map(|()| out)
    };
    if len > OFF_THREAD_BYTES {
        return tokio::task::spawn_blocking(convert).await.map_err(|e| e.to_string())?;
    }
    convert()
}

/// A successful answer's head, as etcd's gateway sends it (the gRPC response's content type
/// passed on as `Grpc-Metadata-Content-Type`).
fn ok_json(body: Body) -> Response<Body> {
    let mut resp = Response::new(body);
    let h = resp.headers_mut();
    h.insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert("grpc-metadata-content-type", HeaderValue::from_static("application/grpc"));
    resp
}

/// grpc-gateway v1's error answer: `{"error":…,"code":…,"message":…}` with its HTTP status.
pub fn error(status: &tonic::Status) -> Response<Body> {
    let code = status.code() as i32;
    let mut body = String::from("{\"error\":");
    go_json::write_string(&mut body, status.message());
    body.push_str(&format!(",\"code\":{code},\"message\":"));
    go_json::write_string(&mut body, status.message());
    body.push('}');
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = http_status(status.code());
    resp.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

/// grpc-gateway v1's `HTTPStatusFromCode`.
pub fn http_status(code: tonic::Code) -> StatusCode {
    use tonic::Code::*;
    match code {
        Ok => StatusCode::OK,
        Cancelled => StatusCode::REQUEST_TIMEOUT,
        Unknown => StatusCode::INTERNAL_SERVER_ERROR,
        InvalidArgument => StatusCode::BAD_REQUEST,
        DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        NotFound => StatusCode::NOT_FOUND,
        AlreadyExists => StatusCode::CONFLICT,
        PermissionDenied => StatusCode::FORBIDDEN,
        Unauthenticated => StatusCode::UNAUTHORIZED,
        ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        FailedPrecondition => StatusCode::BAD_REQUEST,
        Aborted => StatusCode::CONFLICT,
        OutOfRange => StatusCode::BAD_REQUEST,
        Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Internal => StatusCode::INTERNAL_SERVER_ERROR,
        Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// What the client port answers on a path nothing serves: gRPC's Unimplemented to a gRPC
/// request, else etcd's HTTP mux's `404 page not found`.
pub async fn unknown_path(req: Request<Body>) -> Response<Body> {
    let grpc = req.headers().get(http::header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
    if grpc {
        return tonic::Status::unimplemented("").into_http();
    }
    with_cors(text(StatusCode::NOT_FOUND, "404 page not found"))
}

/// Go's `path.Clean` as its ServeMux applies it: `//`, `.` and `..` resolved, a trailing
/// slash kept.
fn clean_path(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    let mut out = format!("/{}", parts.join("/"));
    if path.ends_with('/') && out != "/" {
        out.push('/');
    }
    out
}

/// Go's ServeMux redirect (301, `Location`, no body for a POST).
fn redirect(path: &str, query: Option<&str>) -> Response<Body> {
    let location = match query {
        Some(q) => format!("{path}?{q}"),
        None => path.to_string(),
    };
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = StatusCode::MOVED_PERMANENTLY;
    if let Ok(v) = HeaderValue::from_str(&location) {
        resp.headers_mut().insert(http::header::LOCATION, v);
    }
    resp
}

/// Go's `http.Error`: a plain-text line.
pub(crate) fn text(status: StatusCode, msg: &str) -> Response<Body> {
    let mut resp = Response::new(Body::from(format!("{msg}\n")));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(http::header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    h.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    resp
}

/// etcd's CORS headers (its default `--cors` allows every origin), on every answer of the
/// client port's HTTP (the gateway, /health, /version...).
pub(crate) fn with_cors(mut resp: Response<Body>) -> Response<Body> {
    let h = resp.headers_mut();
    h.insert("access-control-allow-headers", HeaderValue::from_static("accept, content-type, authorization"));
    h.insert("access-control-allow-methods", HeaderValue::from_static("POST, GET, OPTIONS, PUT, DELETE"));
    h.insert("access-control-allow-origin", HeaderValue::from_static("*"));
    resp
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_path_names_a_method_of_proto() {
        for (path, _, _) in super::PATHS {
            assert!(super::route(path).is_some(), "{path}");
        }
        assert_eq!(super::route("watch").unwrap().flow, super::Flow::Bidi);
        assert_eq!(super::route("election/observe").unwrap().flow, super::Flow::ServerStream);
    }
}

//! go-grpc-prometheus's server metrics and etcd's client byte counters, as a tower layer around
//! every gRPC route: started / handled{grpc_code} / msg_received / msg_sent counters, the
//! handling-time histogram, and `etcd_network_client_grpc_{received,sent}_bytes_total` from
//! the bodies' data frames. Non-gRPC requests (/health, /metrics) pass through untouched.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use http_body::{Body, Frame};
use metrics::Counter;

use crate::metrics as m;

#[derive(Clone, Copy, Default)]
pub struct GrpcMetricsLayer;

impl<S> tower_layer::Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetrics<S>;
    fn layer(&self, inner: S) -> GrpcMetrics<S> {
        GrpcMetrics { inner }
    }
}

#[derive(Clone)]
pub struct GrpcMetrics<S> {
    inner: S,
}

/// The labels go-grpc-prometheus puts on a method: (grpc_type, grpc_service, grpc_method).
fn labels(path: &str) -> Option<(&'static str, String, String)> {
    let (service, method) = path.strip_prefix('/')?.split_once('/')?;
    let grpc_type = match method {
        "Watch" | "LeaseKeepAlive" => "bidi_stream",
        "Snapshot" | "Observe" => "server_stream",
        _ => "unary",
    };
    Some((grpc_type, service.to_string(), method.to_string()))
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, ReqBody, ResBody> tower_service::Service<http::Request<ReqBody>> for GrpcMetrics<S>
where
    S: tower_service::Service<http::Request<CountingBody<ReqBody>>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ReqBody: Body<Data = Bytes> + Unpin,
    ResBody: Body<Data = Bytes> + Unpin + Send + 'static,
{
    type Response = http::Response<CountingBody<ResBody>>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<ReqBody>) -> Self::Future {
        let is_grpc = req.headers().get(http::header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
        let method = if is_grpc { MethodMetrics::of(req.uri().path()) } else { None };
        let received = method.as_ref().map(|_| bytes_counters().0.clone());
        if let Some(mm) = &method {
            mm.started.increment(1);
            if mm.unary {
                mm.msg_received.increment(1);
            }
        }
        let started = Instant::now();
        let fut = self.inner.call(req.map(|b| CountingBody { inner: b, bytes: received }));
        Box::pin(async move {
            let resp = fut.await?;
            let Some(mm) = method else {
                return Ok(resp.map(|b| CountingBody { inner: b, bytes: None }));
            };
            // Errors are trailers-only responses (grpc-status in the headers); success puts
            // grpc-status 0 in the trailers.
            let code: i32 = resp.headers().get("grpc-status").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok()).unwrap_or(0);
            mm.handled[code.clamp(0, 16) as usize].increment(1);
            mm.seconds.record(started.elapsed().as_secs_f64());
            if mm.unary && code == 0 {
                mm.msg_sent.increment(1);
            }
            let sent = bytes_counters().1.clone();
            Ok(resp.map(|b| CountingBody { inner: b, bytes: Some(sent) }))
        })
    }
}

/// One method's series, resolved once: the hot path touches no registry and allocates no
/// label strings.
struct MethodMetrics {
    unary: bool,
    started: Counter,
    msg_received: Counter,
    msg_sent: Counter,
    /// Indexed by gRPC code (0..=16).
    handled: Vec<Counter>,
    seconds: metrics::Histogram,
}

impl MethodMetrics {
    fn new(grpc_type: &'static str, service: String, method: String) -> MethodMetrics {
        let counter = |name: &'static str| {
            metrics::counter!(name, "grpc_type" => grpc_type, "grpc_service" => service.clone(), "grpc_method" => method.clone())
        };
        let handled = CODES
            .iter()
            .map(|&code| {
                metrics::counter!(m::GRPC_HANDLED, "grpc_type" => grpc_type, "grpc_service" => service.clone(), "grpc_method" => method.clone(), "grpc_code" => code_label(code))
            })
            .collect();
        MethodMetrics {
            unary: grpc_type == "unary",
            started: counter(m::GRPC_STARTED),
            msg_received: counter(m::GRPC_MSG_RECEIVED),
            msg_sent: counter(m::GRPC_MSG_SENT),
            handled,
            seconds: metrics::histogram!(m::GRPC_HANDLING_SECONDS, "grpc_type" => grpc_type, "grpc_service" => service, "grpc_method" => method),
        }
    }

    /// The served methods' series from the table; another method of etcd's API gets its series
    /// on first use (kept); any other path gets none, so a client inventing paths cannot grow
    /// /metrics without bound (go-grpc-prometheus only sees registered services either).
    fn of(path: &str) -> Option<Arc<MethodMetrics>> {
        if let Some(mm) = KNOWN.get().and_then(|k| k.get(path)) {
            return Some(mm.clone());
        }
        let (service, method) = path.strip_prefix('/')?.split_once('/')?;
        let known = ETCD_METHODS.iter().any(|(s, ms)| *s == service && ms.contains(&method));
        if !known {
            return None;
        }
        let mut others = OTHERS.lock().unwrap_or_else(|e| e.into_inner());
        let mm = others.entry(path.to_string()).or_insert_with(|| {
            let (t, s, meth) = labels(path).expect("well-formed path");
            Arc::new(MethodMetrics::new(t, s, meth))
        });
        Some(mm.clone())
    }
}

static KNOWN: OnceLock<HashMap<String, Arc<MethodMetrics>>> = OnceLock::new();
/// Series of etcd methods ballast does not serve yet, created on first use (at most one per
/// entry of `ETCD_METHODS`).
static OTHERS: std::sync::LazyLock<std::sync::Mutex<HashMap<String, Arc<MethodMetrics>>>> =
    std::sync::LazyLock::new(|| std::sync::Mutex::new(HashMap::new()));

/// (received, sent) client byte counters.
fn bytes_counters() -> &'static (Counter, Counter) {
    static BYTES: OnceLock<(Counter, Counter)> = OnceLock::new();
    BYTES.get_or_init(|| (metrics::counter!(m::CLIENT_GRPC_RECEIVED_BYTES), metrics::counter!(m::CLIENT_GRPC_SENT_BYTES)))
}

/// The services ballast serves: go-grpc-prometheus registers every method of these.
const SERVED_SERVICES: &[&str] = &["etcdserverpb.KV", "etcdserverpb.Maintenance", "etcdserverpb.Cluster"];

/// Every method of etcd's v3 API (rpc.proto, v3lock.proto, v3election.proto).
const ETCD_METHODS: &[(&str, &[&str])] = &[
    ("etcdserverpb.KV", &["Range", "Put", "DeleteRange", "Txn", "Compact"]),
    ("etcdserverpb.Watch", &["Watch"]),
    ("etcdserverpb.Lease", &["LeaseGrant", "LeaseRevoke", "LeaseKeepAlive", "LeaseTimeToLive", "LeaseLeases"]),
    ("etcdserverpb.Cluster", &["MemberAdd", "MemberRemove", "MemberUpdate", "MemberList", "MemberPromote"]),
    ("etcdserverpb.Maintenance", &["Alarm", "Status", "Defragment", "Hash", "HashKV", "Snapshot", "MoveLeader", "Downgrade"]),
    (
        "etcdserverpb.Auth",
        &[
            "AuthEnable", "AuthDisable", "AuthStatus", "Authenticate", "UserAdd", "UserGet", "UserList", "UserDelete",
            "UserChangePassword", "UserGrantRole", "UserRevokeRole", "RoleAdd", "RoleGet", "RoleList", "RoleDelete",
            "RoleGrantPermission", "RoleRevokePermission",
        ],
    ),
    ("v3lockpb.Lock", &["Lock", "Unlock"]),
    ("v3electionpb.Election", &["Campaign", "Proclaim", "Leader", "Observe", "Resign"]),
];

const CODES: [tonic::Code; 17] = {
    use tonic::Code::*;
    [
        Ok, Cancelled, Unknown, InvalidArgument, DeadlineExceeded, NotFound, AlreadyExists, PermissionDenied, ResourceExhausted,
        FailedPrecondition, Aborted, OutOfRange, Unimplemented, Internal, Unavailable, DataLoss, Unauthenticated,
    ]
};

/// As go-grpc-prometheus's Register: every served method's series exist from start-up at 0,
/// one handled series per code, so rate and ratio queries see 0 rather than no data.
pub fn preregister() {
    assert!(CODES.iter().enumerate().all(|(i, &c)| c as usize == i), "CODES is indexed by code");
    let mut known = HashMap::new();
    for (service, methods) in ETCD_METHODS.iter().filter(|(s, _)| SERVED_SERVICES.contains(s)) {
        for method in *methods {
            let path = format!("/{service}/{method}");
            let (t, s, meth) = labels(&path).expect("well-formed path");
            let mm = MethodMetrics::new(t, s, meth);
            for c in [&mm.started, &mm.msg_received, &mm.msg_sent].into_iter().chain(&mm.handled) {
                c.absolute(0);
            }
            known.insert(path, Arc::new(mm));
        }
    }
    let _ = KNOWN.set(known);
    bytes_counters();
}

/// go-grpc-prometheus spells codes as Go's codes.Code.String(): "OK", "InvalidArgument", ...
fn code_label(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "Canceled",
        Unknown => "Unknown",
        InvalidArgument => "InvalidArgument",
        DeadlineExceeded => "DeadlineExceeded",
        NotFound => "NotFound",
        AlreadyExists => "AlreadyExists",
        PermissionDenied => "PermissionDenied",
        ResourceExhausted => "ResourceExhausted",
        FailedPrecondition => "FailedPrecondition",
        Aborted => "Aborted",
        OutOfRange => "OutOfRange",
        Unimplemented => "Unimplemented",
        Internal => "Internal",
        Unavailable => "Unavailable",
        DataLoss => "DataLoss",
        Unauthenticated => "Unauthenticated",
    }
}

/// A body that adds the size of every data frame to a counter.
pub struct CountingBody<B> {
    inner: B,
    bytes: Option<Counter>,
}

impl<B: Body<Data = Bytes> + Unpin> Body for CountingBody<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let (Poll::Ready(Some(Ok(frame))), Some(c)) = (&polled, &self.bytes) {
            if let Some(data) = frame.data_ref() {
                c.increment(data.len() as u64);
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

//! Client connections served on the shards' threads: plaintext HTTP/2 ones (gRPC clients')
//! and TLS ones. Each shard takes the connections the front-end threads pass it (`front_end`,
//! `handshake`, after a look at their first bytes or their TLS handshake) and serves them
//! with hyper on its glommio executor, with the same client service as the front-end
//! threads, as a front-end "home" of its own (`reply.rs`). Plaintext HTTP/1 (probes, /metrics,
//! the JSON gateway) stays on the front-end threads, so a stuck shard does not silence them.
//!
//! Why: at the rate a Kubernetes control plane writes, each request is alone, and on the
//! front-end threads it crossed threads four times (socket → front end → raft driver on the
//! shard → front end → socket), each a sleep and a wake-up. Served on the shard, it wakes the
//! thread once for its bytes and once for its WAL write. Measured with bench/ (k8s, 40 s,
//! ballast alone, alternated, two rounds): server CPU per request 519 / 511 → 369 / 388 µs,
//! context switches per request 6.6 → 2.4, write p50 −100 µs; the closed loops' CPU per op fell
//! 5-25% at the same throughput (see bench/RESULTS.md).
//!
//! Unix sockets stay on front-end thread 0. tokio's timers and the tasks the handlers spawn
//! (`tokio::spawn`) go to a runtime of one thread whose context every shard enters
//! (`timers_runtime`); the watch and lease keep-alive streams' own tasks stay on the shard
//! (`spawn`).

use std::cell::Cell;
use std::future::Future;
use std::os::fd::{FromRawFd, IntoRawFd};
use std::sync::OnceLock;
use std::time::Duration;

use hyper_util::server::conn::auto;
use hyper_util::server::graceful::Watcher;
use tokio_util::compat::FuturesAsyncReadCompatExt;

use super::client_service::ClientService;
use super::coalesce::Coalesced;
use super::front_end::Http2Settings;
use super::grpc_metrics::{GrpcMetrics, GrpcMetricsLayer};
use super::shard_queues::{ShardConn, ShardConnRx};
use super::tls_conn::{TlsConn, TlsConnectInfo};
use crate::log;
use crate::reply;

/// What a shard's connections need, sent by front-end thread 0 once the services exist.
pub struct Handoff {
    pub conns: ShardConnRx,
    pub replies: reply::HomeRx,
    pub routes: ClientService,
    pub http2: Http2Settings,
    pub stop: tokio::sync::watch::Receiver<bool>,
    /// How long open connections get to finish after `stop`.
    pub grace: Duration,
    /// Dropped once the shard has closed its connections (or given up on them).
    pub done: tokio::sync::mpsc::Sender<()>,
    /// `timers_runtime`'s.
    pub runtime: tokio::runtime::Handle,
}

static TIMERS_RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();

/// The tokio runtime whose context the shards enter: the handlers' tokio timers and the tasks
/// they spawn run on its one thread. Never dropped, unlike the front-end threads' runtimes: a
/// handler still finishing on a shard after the front end stopped finds its timers working.
pub fn timers_runtime() -> Result<tokio::runtime::Handle, String> {
    if TIMERS_RUNTIME.get().is_none() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("shard-timers")
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start tokio runtime: {e}"))?;
        let _ = TIMERS_RUNTIME.set(rt);
    }
    Ok(TIMERS_RUNTIME.get().expect("set above").handle().clone())
}

pub type HandoffTx = flume::Sender<Handoff>;
pub type HandoffRx = flume::Receiver<Handoff>;

/// The channel one shard's handoff comes on.
pub fn handoff_channel() -> (HandoffTx, HandoffRx) {
    flume::bounded(1)
}

thread_local! {
    static ON_SHARD: Cell<bool> = const { Cell::new(false) };
}

/// Spawns `fut` on this thread: on its glommio executor when the thread is a shard serving
/// connections, else on tokio's runtime.
pub fn spawn<F: Future<Output = ()> + Send + 'static>(fut: F) {
    if ON_SHARD.with(Cell::get) {
        glommio::spawn_local(fut).detach();
    } else {
        tokio::spawn(fut);
    }
}

/// Runs on a shard's executor: serves the connections dealt to it as front-end home `home`
/// until the handoff's `stop`, then gives them the grace to finish and drops those still open
/// (a watch stream never finishes by itself), so that nothing of the front end keeps the shard
/// running.
pub async fn run(home: usize, handoff: HandoffRx) {
    let Ok(h) = handoff.recv_async().await else { return }; // stopped before serving
    // The guard is never dropped: the thread stays in the runtime's context while it lives.
    std::mem::forget(h.runtime.enter());
    ON_SHARD.with(|c| c.set(true));
    reply::set_home(home);
    glommio::spawn_local(reply::dispatch(h.replies)).detach();
    let svc = tower_layer::Layer::layer(&GrpcMetricsLayer, h.routes);
    let builder = std::rc::Rc::new(connection_builder(h.http2));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut stop = h.stop;
    let (kill_tx, kill) = tokio::sync::watch::channel(());
    loop {
        let conn = tokio::select! {
            _ = stop.changed() => break,
            c = h.conns.recv_async() => match c {
                Ok(c) => c,
                Err(_) => break,
            },
        };
        let served = serve(conn, builder.clone(), graceful.watcher(), svc.clone());
        let mut kill = kill.clone();
        glommio::spawn_local(async move {
            tokio::select! {
                _ = served => {}
                _ = kill.changed() => {}
            }
        })
        .detach();
    }
    let shutdown = async {
        graceful.shutdown().await;
        Ok(())
    };
    if glommio::timer::timeout(h.grace, shutdown).await.is_err() {
        log::warn("closing client connections that outlived the shutdown grace period", &[]);
    }
    let _ = kill_tx.send(());
    drop(h.done);
}

type Service = GrpcMetrics<ClientService>;

/// Serves one connection until it closes (or `graceful` ends it).
async fn serve(conn: ShardConn, builder: std::rc::Rc<auto::Builder<Local>>, graceful: Watcher, svc: Service) {
    match conn {
        ShardConn::Http2(conn) => {
            let io = hyper_util::rt::TokioIo::new(Coalesced::new(glommio_stream(conn).compat()));
            serve_io(&builder, graceful, io, svc, None).await;
        }
        ShardConn::Tls(tls) => {
            let TlsConn { mut stream, info } = *tls;
            stream.get_mut().0.attach();
            serve_io(&builder, graceful, hyper_util::rt::TokioIo::new(Coalesced::new(stream)), svc, Some(info)).await;
        }
    }
}

fn glommio_stream(conn: std::net::TcpStream) -> glommio::net::TcpStream {
    // SAFETY: the descriptor is taken out of the stream, which no longer owns it.
    unsafe { glommio::net::TcpStream::from_raw_fd(conn.into_raw_fd()) }
}

/// hyper over `io`; a TLS connection's requests carry what they can learn of it.
async fn serve_io<IO>(builder: &auto::Builder<Local>, graceful: Watcher, io: IO, svc: Service, tls: Option<TlsConnectInfo>)
where
    IO: hyper::rt::Read + hyper::rt::Write + Unpin + 'static,
{
    let service = hyper::service::service_fn(move |mut req: http::Request<hyper::body::Incoming>| {
        if let Some(info) = &tls {
            req.extensions_mut().insert(info.clone());
        }
        tower_service::Service::call(&mut svc.clone(), req)
    });
    let _ = graceful.watch(builder.serve_connection(io, service)).await;
}

/// hyper's settings as tonic's server makes them for the front-end threads: HTTP/1 (over TLS)
/// and HTTP/2, etcd's stream bound and keepalive.
fn connection_builder(http2: Http2Settings) -> auto::Builder<Local> {
    let mut builder = auto::Builder::new(Local);
    builder
        .http2()
        .timer(hyper_util::rt::TokioTimer::new())
        .max_concurrent_streams(http2.max_streams)
        .keep_alive_interval(http2.keepalive.map(|(interval, _)| interval))
        .keep_alive_timeout(http2.keepalive.map_or(Duration::from_secs(20), |(_, timeout)| timeout));
    // hyper enforces its HTTP/1 header read timeout (30 s) only with a timer, as tonic sets.
    builder.http1().timer(hyper_util::rt::TokioTimer::new());
    builder
}

/// hyper's executor on a shard: its HTTP/2 streams are tasks of the shard's executor.
#[derive(Clone, Copy)]
struct Local;

impl<F: Future + 'static> hyper::rt::Executor<F> for Local {
    fn execute(&self, fut: F) {
        glommio::spawn_local(fut).detach();
    }
}

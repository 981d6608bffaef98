//! The front end's threads: `n` tokio current-thread runtimes, each serving the plaintext
//! HTTP/1 client connections handed to it (probes, /metrics, the JSON gateway: answered here
//! even while a shard is stuck, as etcd answers them), plus its reply dispatcher (`reply.rs`).
//! A plaintext connection that opens with HTTP/2's preface (a gRPC client's) and every TLS
//! connection go on to a shard, which serves them (`shard_front.rs`).
//!
//! Why current-thread runtimes and not one multi-thread runtime (measured with `perf`, put with
//! 100 clients): in a multi-thread runtime a task woken by a task on the same worker runs next
//! (tokio's LIFO slot), so each handler's connection task ran right after it and flushed one
//! response per `writev`. On a current-thread runtime the woken connection task queues behind
//! the other handlers the reply dispatcher woke in the same batch, so a connection flushes all
//! its ready responses at once. Each thread owns its connections; thread 0 also accepts them for
//! every listener (round robin), serves the unix sockets, the metrics listeners, the
//! auto-compactor and signals.
//!
//! With TLS (`tls.rs`), connections of secure listeners reach the thread on a queue of their
//! own (`handshake.rs`): on a port serving both schemes one found to be plaintext joins the
//! thread's plaintext ones; the TLS ones go on to a shard, which does the handshake.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;

use super::coalesce::Coalesced;
use super::grpc_metrics;
use super::handshake::{self, SecureConn};
use super::shard_queues::{ShardConn, ShardConnRx, ShardQueues};
use super::sniff;
use crate::log;
use crate::reply;

/// Accepted connections waiting for their thread to take them.
const CONN_QUEUE_CAPACITY: usize = 1024;
/// After a failed accept (out of file descriptors, ...), wait this long before the next.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(10);
/// HTTP/2's connection preface opens with these bytes; no HTTP/1 request does (RFC 9113 §3.4:
/// "PRI" is reserved for it).
const HTTP2_PREFACE_START: &[u8; 4] = b"PRI ";
/// A plaintext connection that has not sent its first bytes by then is served here.
const SNIFF_TIMEOUT: Duration = Duration::from_secs(10);

/// One front-end thread's share: where its connections arrive and its answers are delivered.
pub struct Worker {
    pub conns: Queues,
    pub replies: reply::HomeRx,
    pub routes: super::client_service::ClientService,
    /// The TLS configuration of the secure listeners, if any.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    pub http2: Http2Settings,
}

/// How every client connection's HTTP/2 is served.
#[derive(Clone, Copy)]
pub struct Http2Settings {
    /// Streams per connection (`--max-concurrent-streams`).
    pub max_streams: u32,
    /// etcd's keepalive: a connection quiet for the interval is pinged, and closed when no
    /// answer comes within the timeout (`--grpc-keepalive-interval`, `--grpc-keepalive-timeout`);
    /// none when either is 0, as etcd.
    pub keepalive: Option<(Duration, Duration)>,
}

impl Http2Settings {
    pub fn of(cfg: &crate::config::Config) -> Http2Settings {
        let (interval, timeout) = (cfg.grpc_keepalive_interval, cfg.grpc_keepalive_timeout);
        let keepalive = (!interval.is_zero() && !timeout.is_zero()).then_some((interval, timeout));
        Http2Settings { max_streams: cfg.max_concurrent_streams, keepalive }
    }
}

/// What a listener serves: its URLs' schemes (etcd: a serveCtx's `insecure` and `secure`).
#[derive(Clone, Copy, PartialEq, Debug)]
pub enum Transport {
    /// `http://` only.
    Plain,
    /// `https://` only.
    Tls,
    /// Both on one port: each connection's first byte decides.
    Both,
}

/// A thread's connection queues, as its receiving end.
pub struct Queues {
    pub plain: flume::Receiver<std::net::TcpStream>,
    pub secure: flume::Receiver<SecureConn>,
    /// The plain queue's sending end: where a connection found plaintext on a port serving
    /// both goes.
    pub plain_again: flume::Sender<std::net::TcpStream>,
    /// Where its plaintext HTTP/2 and its TLS connections go.
    pub shards: ShardQueues,
}

/// A thread's connection queues, as the dealer's sending end.
struct Senders {
    plain: flume::Sender<std::net::TcpStream>,
    secure: flume::Sender<SecureConn>,
}

/// Hands accepted connections to the front-end threads in turn.
#[derive(Clone)]
pub struct Dealer {
    threads: Arc<Vec<Senders>>,
    next: Arc<AtomicUsize>,
}

impl Dealer {
    /// The dealer, the queues of `threads` front-end threads and those of `shards` shards.
    pub fn new(threads: usize, shards: usize) -> (Dealer, Vec<Queues>, Vec<ShardConnRx>) {
        assert!(threads > 0);
        let (to_shards, shard_queues) = ShardQueues::new(shards);
        let mut senders = Vec::with_capacity(threads);
        let mut queues = Vec::with_capacity(threads);
        for _ in 0..threads {
            let (plain_tx, plain_rx) = flume::bounded(CONN_QUEUE_CAPACITY);
            let (secure_tx, secure_rx) = flume::bounded(CONN_QUEUE_CAPACITY);
            queues.push(Queues { plain: plain_rx, secure: secure_rx, plain_again: plain_tx.clone(), shards: to_shards.clone() });
            senders.push(Senders { plain: plain_tx, secure: secure_tx });
        }
        (Dealer { threads: Arc::new(senders), next: Arc::new(AtomicUsize::new(0)) }, queues, shard_queues)
    }

    /// Accepts connections on `listener`, serving `transport`, until `stop` changes.
    pub async fn accept(self, listener: tokio::net::TcpListener, transport: Transport, mut stop: tokio::sync::watch::Receiver<bool>) {
        loop {
            let accepted = tokio::select! {
                _ = stop.changed() => return,
                r = listener.accept() => r,
            };
            let conn = match accepted {
                Ok((conn, _)) => conn,
                Err(e) => {
                    log::warn("accept failed", &[("error", e.to_string())]);
                    tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                    continue;
                }
            };
            // A connection that fails here (reset at once, say) is dropped; accepting goes on.
            let Ok(conn) = conn.set_nodelay(true).and_then(|()| conn.into_std()) else { continue };
            let i = self.next.fetch_add(1, Ordering::Relaxed) % self.threads.len();
            let sent = match transport {
                Transport::Plain => self.threads[i].plain.send_async(conn).await.is_ok(),
                Transport::Tls | Transport::Both => {
                    let sniff = transport == Transport::Both;
                    self.threads[i].secure.send_async(SecureConn { conn, sniff }).await.is_ok()
                }
            };
            if !sent {
                return; // that thread stopped: shutting down
            }
        }
    }
}

/// Serves `worker`'s connections on the current thread's runtime until `stop` changes; open
/// connections then get `grace` to finish.
pub async fn serve(worker: Worker, mut stop: tokio::sync::watch::Receiver<bool>, grace: Duration) -> Result<(), String> {
    let Worker { conns: Queues { plain, secure, plain_again, shards }, replies, routes, tls, http2 } = worker;
    tokio::spawn(reply::dispatch(replies));
    tokio::spawn(release_freed_memory());
    let (http1_tx, http1_rx) = flume::bounded(CONN_QUEUE_CAPACITY);
    tokio::spawn(pass_http2_to_shards(plain, shards.clone(), http1_tx));
    let incoming = http1_rx.into_stream().map(Ok::<_, std::io::Error>);
    if let Some(acceptor) = tls {
        tokio::spawn(handshake::run(secure, acceptor, plain_again, shards));
    }
    let server = serve_connections(routes, incoming, stop.clone(), http2);
    let deadline = async move {
        let _ = stop.changed().await;
        tokio::time::sleep(grace).await;
    };
    tokio::select! {
        r = server => r.map(|_| ()),
        _ = deadline => {
            log::warn("closing client connections that outlived the shutdown grace period", &[]);
            Ok(())
        }
    }
}

/// Takes `plain` connections until their senders are gone: each that opens with HTTP/2's
/// preface goes to a shard, the others (and those that send nothing within `SNIFF_TIMEOUT`)
/// to `http1`, this thread's server.
async fn pass_http2_to_shards(plain: flume::Receiver<std::net::TcpStream>, shards: ShardQueues, http1: flume::Sender<tokio::net::TcpStream>) {
    while let Ok(conn) = plain.recv_async().await {
        let (shards, http1) = (shards.clone(), http1.clone());
        tokio::spawn(async move {
            let Ok(conn) = tokio::net::TcpStream::from_std(conn) else { return };
            // Closed first, or not HTTP/2: this thread's server answers it.
            let http2 = tokio::time::timeout(SNIFF_TIMEOUT, sniff::opens_with(&conn, HTTP2_PREFACE_START)).await.unwrap_or(Ok(false));
            match http2 {
                Ok(true) => {
                    if let Ok(conn) = conn.into_std() {
                        shards.deal(ShardConn::Http2(conn)).await;
                    }
                }
                Ok(false) => {
                    let _ = http1.send_async(conn).await;
                }
                Err(_) => {} // reset before its first bytes
            }
        });
    }
}

/// Returns what this thread freed to the system, every `memory::RELEASE_INTERVAL`.
async fn release_freed_memory() {
    let mut every = tokio::time::interval(crate::memory::RELEASE_INTERVAL);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        crate::memory::release_freed();
    }
}

/// Serves a unix socket listener's connections on the current thread until `stop` changes.
pub async fn serve_unix(listener: tokio::net::UnixListener, routes: super::client_service::ClientService, stop: tokio::sync::watch::Receiver<bool>, http2: Http2Settings) -> Result<(), String> {
    serve_connections(routes, tokio_stream::wrappers::UnixListenerStream::new(listener), stop, http2).await
}

/// One tonic server (gRPC and the HTTP routes) on `incoming`'s connections until `stop` changes.
async fn serve_connections<S, IO>(routes: super::client_service::ClientService, incoming: S, mut stop: tokio::sync::watch::Receiver<bool>, http2: Http2Settings) -> Result<(), String>
where
    S: futures_util::Stream<Item = std::io::Result<IO>>,
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + tonic::transport::server::Connected + Unpin + Send + 'static,
{
    let shutdown = async move {
        let _ = stop.changed().await;
    };
    // Many answers per write (coalesce.rs).
    let incoming = incoming.map(|conn| conn.map(Coalesced::new));
    tonic::transport::Server::builder()
        .accept_http1(true)
        .max_concurrent_streams(Some(http2.max_streams))
        .http2_keepalive_interval(http2.keepalive.map(|(interval, _)| interval))
        .http2_keepalive_timeout(http2.keepalive.map(|(_, timeout)| timeout))
        .layer(grpc_metrics::GrpcMetricsLayer)
        .serve_with_incoming_shutdown(routes, incoming, shutdown)
        .await
        .map_err(|e| e.to_string())
}

/// A current-thread runtime for front-end thread `index`.
pub fn runtime(index: usize) -> Result<tokio::runtime::Runtime, String> {
    reply::set_home(index);
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start tokio runtime: {e}"))
}

//! The front end's threads: `n` tokio current-thread runtimes, each serving the client
//! connections handed to it, plus its reply dispatcher (`reply.rs`).
//!
//! Why current-thread runtimes and not one multi-thread runtime (measured with `perf`, put with
//! 100 clients): in a multi-thread runtime a task woken by a task on the same worker runs next
//! (tokio's LIFO slot), so each handler's connection task ran right after it and flushed one
//! response per `writev`. On a current-thread runtime the woken connection task queues behind
//! the other handlers the reply dispatcher woke in the same batch, so a connection flushes all
//! its ready responses at once. Each thread owns its connections; thread 0 also accepts them for
//! every listener (round robin), serves the metrics listeners, the auto-compactor and signals.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;

use super::grpc_metrics;
use crate::log;
use crate::reply;

/// Accepted connections waiting for their thread to take them.
const CONN_QUEUE_CAPACITY: usize = 1024;
/// After a failed accept (out of file descriptors, ...), wait this long before the next.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(10);

/// One front-end thread's share: where its connections arrive and its answers are delivered.
pub struct Worker {
    pub conns: flume::Receiver<std::net::TcpStream>,
    pub replies: flume::Receiver<reply::Batch>,
    pub routes: tonic::service::Routes,
}

/// Hands accepted connections to the front-end threads in turn.
#[derive(Clone)]
pub struct Dealer {
    threads: Arc<Vec<flume::Sender<std::net::TcpStream>>>,
    next: Arc<AtomicUsize>,
}

impl Dealer {
    pub fn new(n: usize) -> (Dealer, Vec<flume::Receiver<std::net::TcpStream>>) {
        let (txs, rxs): (Vec<_>, Vec<_>) = (0..n).map(|_| flume::bounded(CONN_QUEUE_CAPACITY)).unzip();
        (Dealer { threads: Arc::new(txs), next: Arc::new(AtomicUsize::new(0)) }, rxs)
    }

    /// Accepts connections on `listener` until `stop` changes.
    pub async fn accept(self, listener: tokio::net::TcpListener, mut stop: tokio::sync::watch::Receiver<bool>) {
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
            if self.threads[i].send_async(conn).await.is_err() {
                return; // that thread stopped: shutting down
            }
        }
    }
}

/// Serves `worker`'s connections on the current thread's runtime until `stop` changes; open
/// connections then get `grace` to finish.
pub async fn serve(worker: Worker, mut stop: tokio::sync::watch::Receiver<bool>, grace: Duration) -> Result<(), String> {
    tokio::spawn(reply::dispatch(worker.replies));
    tokio::spawn(release_freed_memory());
    let incoming = worker.conns.into_stream().map(tokio::net::TcpStream::from_std);
    let mut stop_server = stop.clone();
    let shutdown = async move {
        let _ = stop_server.changed().await;
    };
    let server = tonic::transport::Server::builder()
        .accept_http1(true)
        .layer(grpc_metrics::GrpcMetricsLayer)
        .add_routes(worker.routes)
        .serve_with_incoming_shutdown(incoming, shutdown);
    let deadline = async move {
        let _ = stop.changed().await;
        tokio::time::sleep(grace).await;
    };
    tokio::select! {
        r = server => r.map_err(|e| e.to_string()),
        _ = deadline => {
            log::warn("closing client connections that outlived the shutdown grace period", &[]);
            Ok(())
        }
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

/// A current-thread runtime for front-end thread `index`.
pub fn runtime(index: usize) -> Result<tokio::runtime::Runtime, String> {
    reply::set_home(index);
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start tokio runtime: {e}"))
}

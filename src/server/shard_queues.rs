//! The shards' queues of client connections, which the front-end threads deal to in turn:
//! plaintext HTTP/2 connections, and TLS connections past their handshake (`handshake.rs`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Connections a shard's queue holds before a front-end thread waits to pass it another.
const QUEUE_CAPACITY: usize = 1024;

/// A connection for a shard to serve.
pub enum ShardConn {
    /// Plaintext, opened with HTTP/2's preface (not consumed).
    Http2(std::net::TcpStream),
    /// A connection of a secure listener, its handshake done on a front-end thread.
    Tls(Box<super::tls_conn::TlsConn>),
}

pub type ShardConnRx = flume::Receiver<ShardConn>;

/// The shards' queues, dealt in turn.
#[derive(Clone)]
pub struct ShardQueues {
    queues: Arc<Vec<flume::Sender<ShardConn>>>,
    next: Arc<AtomicUsize>,
}

impl ShardQueues {
    /// The queues of `shards` shards, and their receiving ends.
    pub fn new(shards: usize) -> (ShardQueues, Vec<ShardConnRx>) {
        assert!(shards > 0);
        let (queues, receivers): (Vec<_>, Vec<_>) = (0..shards).map(|_| flume::bounded(QUEUE_CAPACITY)).unzip();
        (ShardQueues { queues: Arc::new(queues), next: Arc::new(AtomicUsize::new(0)) }, receivers)
    }

    /// Passes `conn` to the next shard; false when the shards stopped taking connections.
    pub async fn deal(&self, conn: ShardConn) -> bool {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.queues.len();
        self.queues[i].send_async(conn).await.is_ok()
    }
}

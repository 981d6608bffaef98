//! The connections of secure listeners, on the front-end thread they were dealt to (never on
//! the accepting thread): on a port listed both as `http://` and `https://` a task first peeks
//! at the first byte: a TLS connection opens with a handshake record (0x16), and a plaintext
//! HTTP/1 request or HTTP/2 preface never does, so anything else goes back to the thread's
//! plaintext connections (etcd splits such a port with cmux the same way: HTTP/1 or HTTP/2
//! plaintext, else TLS). The TLS ones do their handshake here (`accept`, bounded by
//! `HANDSHAKE_TIMEOUT`) and go on to a shard, which serves the stream (`shard_front.rs`): a
//! handshake is a burst of CPU that would hold every request on the shard behind it
//! (`moving_socket.rs`). Connections of plaintext listeners never come here.
//!
//! A failed handshake is logged as etcd logs it (`rejected connection`) and the connection
//! is closed: wrong or missing client certificate, revoked certificate, no common cipher
//! suite or protocol version.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use super::moving_socket::MovingSocket;
use super::shard_queues::{ShardConn, ShardQueues};
use super::tls_conn::{TlsConn, TlsConnectInfo};
use crate::log;

/// A client that has not finished its handshake (or sent its first byte) by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// The first byte of a TLS connection: a record of content type handshake.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// A connection accepted on a secure listener.
pub struct SecureConn {
    pub conn: std::net::TcpStream,
    /// The port also serves plaintext: look at the first byte before the handshake.
    pub sniff: bool,
}

/// Takes `conns` until their senders are gone: each in a task of its own, which does its TLS
/// handshake and passes it to a shard or, when it is plaintext, to `plain` (a port serving
/// both schemes: after a look at its first byte).
pub async fn run(conns: flume::Receiver<SecureConn>, acceptor: TlsAcceptor, plain: flume::Sender<std::net::TcpStream>, shards: ShardQueues) {
    while let Ok(c) = conns.recv_async().await {
        let conn = match TcpStream::from_std(c.conn) {
            Ok(conn) => conn,
            Err(e) => {
                log::warn("cannot serve a secure connection", &[("error", e.to_string())]);
                continue;
            }
        };
        if c.sniff {
            tokio::spawn(sniff(conn, acceptor.clone(), plain.clone(), shards.clone()));
        } else {
            tokio::spawn(to_shard(conn, acceptor.clone(), shards.clone()));
        }
    }
}

/// A connection of a port serving both schemes: on to its handshake if it opens one, else to
/// `plain`.
async fn sniff(conn: TcpStream, acceptor: TlsAcceptor, plain: flume::Sender<std::net::TcpStream>, shards: ShardQueues) {
    let remote = conn.peer_addr().map(|a| a.to_string()).unwrap_or_default();
    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, super::sniff::opens_with(&conn, &[TLS_HANDSHAKE_RECORD])).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => return rejected(&remote, &e.to_string()),
        Err(_) => return rejected(&remote, "TLS handshake timed out"),
    };
    if tls {
        to_shard(conn, acceptor, shards).await;
    } else if let Ok(conn) = conn.into_std() {
        // A send fails only when the server has stopped (shutting down).
        let _ = plain.send_async(conn).await;
    }
}

/// The handshake of `conn`, then the stream to a shard (a failed handshake is logged by
/// `accept`; a failed deal means the shards stopped: shutting down).
async fn to_shard(conn: TcpStream, acceptor: TlsAcceptor, shards: ShardQueues) {
    let remote = conn.peer_addr().ok();
    let Some((mut stream, info)) = accept(&acceptor, MovingSocket::FrontEnd(conn), remote).await else { return };
    if let Err(e) = stream.get_mut().0.detach() {
        let remote = remote.map(|a| a.to_string()).unwrap_or_default();
        return log::warn("cannot hand a TLS connection to a shard", &[("remote-addr", remote), ("error", e.to_string())]);
    }
    shards.deal(ShardConn::Tls(Box::new(TlsConn { stream, info }))).await;
}

/// etcd's log line for a refused TLS connection (embed/config_logging.go).
fn rejected(remote: &str, error: &str) {
    log::warn("rejected connection", &[("remote-addr", remote.to_string()), ("error", error.to_string())]);
}

/// The TLS handshake of `conn`, bounded by `HANDSHAKE_TIMEOUT`, and what its
/// requests can learn of it; None, logged as etcd logs it, when it fails.
pub async fn accept<IO>(acceptor: &TlsAcceptor, conn: IO, remote: Option<std::net::SocketAddr>) -> Option<(TlsStream<IO>, TlsConnectInfo)>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let refused = |e: &str| rejected(&remote.map(|a| a.to_string()).unwrap_or_default(), e);
    let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(conn)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => {
            refused(&e.to_string());
            return None;
        }
        Err(_) => {
            refused("TLS handshake timed out");
            return None;
        }
    };
    let peer_certificates = stream.get_ref().1.peer_certificates().map(|c| Arc::new(c.to_vec()));
    Some((stream, TlsConnectInfo { remote_addr: remote, peer_certificates }))
}

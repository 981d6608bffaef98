//! The connections of secure listeners, on the front-end thread they were dealt to (never on
//! the accepting thread): each gets a task that does its TLS handshake, bounded by
//! `HANDSHAKE_TIMEOUT`, and hands the TLS stream to that thread's TLS server. On a port
//! listed both as `http://` and `https://` the task first peeks at the first byte: a TLS
//! connection opens with a handshake record (0x16), and a plaintext HTTP/1 request or HTTP/2
//! preface never does, so anything else goes on to a shard's plaintext server
//! (`shard_front.rs`; etcd splits such a port with cmux the same way: HTTP/1 or HTTP/2
//! plaintext, else TLS).
//! Connections of plaintext listeners never come here.
//!
//! A failed handshake is logged as etcd logs it (`rejected connection`) and the connection
//! is closed: wrong or missing client certificate, revoked certificate, no common cipher
//! suite or protocol version.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

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

/// Takes `conns` until their senders are gone: handshakes each in a task of its own, then
/// sends it to `tls` (the TLS server's connections) or, when it is plaintext, to `plain`.
pub async fn run(
    conns: flume::Receiver<SecureConn>,
    acceptor: TlsAcceptor,
    plain: flume::Sender<std::net::TcpStream>,
    tls: flume::Sender<TlsConn>,
) {
    while let Ok(c) = conns.recv_async().await {
        tokio::spawn(one(c, acceptor.clone(), plain.clone(), tls.clone()));
    }
}

enum Next {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

async fn one(c: SecureConn, acceptor: TlsAcceptor, plain: flume::Sender<std::net::TcpStream>, tls: flume::Sender<TlsConn>) {
    let Ok(conn) = TcpStream::from_std(c.conn) else { return };
    let remote = conn.peer_addr().map(|a| a.to_string()).unwrap_or_default();
    let handshake = async {
        if c.sniff && !starts_tls(&conn).await? {
            return Ok(Next::Plain(conn));
        }
        acceptor.accept(conn).await.map(|s| Next::Tls(Box::new(s)))
    };
    let next = match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
        Ok(Ok(next)) => next,
        Ok(Err(e)) => return rejected(&remote, &e.to_string()),
        Err(_) => return rejected(&remote, "TLS handshake timed out"),
    };
    // A send fails only when the thread's server has stopped (shutting down).
    match next {
        Next::Plain(conn) => {
            if let Ok(conn) = conn.into_std() {
                let _ = plain.send_async(conn).await;
            }
        }
        Next::Tls(stream) => {
            let _ = tls.send_async(TlsConn(*stream)).await;
        }
    }
}

/// Whether the connection's first byte opens a TLS handshake (waits for that byte).
async fn starts_tls(conn: &TcpStream) -> std::io::Result<bool> {
    let mut first = [0u8; 1];
    let n = conn.peek(&mut first).await?;
    Ok(n == 1 && first[0] == TLS_HANDSHAKE_RECORD)
}

/// etcd's log line for a refused TLS connection (embed/config_logging.go).
fn rejected(remote: &str, error: &str) {
    log::warn("rejected connection", &[("remote-addr", remote.to_string()), ("error", error.to_string())]);
}

/// A handshaken TLS connection, as the TLS server serves it. A type of ballast's own, so that
/// tonic is built without its TLS features and the plaintext connections' I/O stays as it was.
pub struct TlsConn(TlsStream<TcpStream>);

/// What a request over TLS can learn of its connection (a tonic request extension).
#[derive(Clone)]
pub struct TlsConnectInfo {
    pub remote_addr: Option<std::net::SocketAddr>,
    /// The client's certificate chain, leaf first, when it presented one (verified).
    pub peer_certificates: Option<Arc<Vec<CertificateDer<'static>>>>,
}

impl tonic::transport::server::Connected for TlsConn {
    type ConnectInfo = TlsConnectInfo;

    fn connect_info(&self) -> TlsConnectInfo {
        let (tcp, session) = self.0.get_ref();
        TlsConnectInfo {
            remote_addr: tcp.peer_addr().ok(),
            peer_certificates: session.peer_certificates().map(|c| Arc::new(c.to_vec())),
        }
    }
}

impl AsyncRead for TlsConn {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConn {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_write_vectored(mut self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

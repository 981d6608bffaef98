//! The socket under a TLS connection, which moves from a front-end thread to a shard: the
//! handshake is done on the front-end thread (tokio), the requests are served on the shard
//! (glommio), and tokio-rustls's stream, which holds the session, is built once over one I/O
//! type. So the socket is that type: tokio's while the front end does the handshake, a plain
//! descriptor while the stream crosses to the shard (`detach`), glommio's on the shard
//! (`attach`).
//!
//! Why the handshake is not on the shard: it is a burst of CPU (an RSA 2048 signature is about
//! a millisecond) that nothing can interrupt, and clients reconnect together (a load balancer
//! or an apiserver restarting). Measured with `bench/probes/tls_storm.py` (256 clients at once
//! beside a writer at 500 puts/s, RSA 2048 certificates): with the handshakes on the shard the
//! writer's puts waited for the whole storm (p50 39-115 ms, max 101-213 ms in three runs), with
//! them on the front end p50 1.0-4.3 ms, max 8-50 ms in four (etcd 3.5.1: p50 201-316 ms).

use std::io;
use std::os::fd::{FromRawFd, IntoRawFd};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::thread::ThreadId;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_util::compat::{Compat, FuturesAsyncReadCompatExt};

/// A TLS connection's socket, wherever it is (see the module comment).
pub enum MovingSocket {
    /// On a front-end thread, for the handshake.
    FrontEnd(tokio::net::TcpStream),
    /// Between threads: no I/O until attached.
    InTransit(std::net::TcpStream),
    /// On the shard that serves it.
    Shard(OnShard),
    /// Taken out while changing place (a failed `detach`).
    Gone,
}

/// A glommio stream with the thread it was made on: it is used, and dropped, only there.
pub struct OnShard {
    stream: std::mem::ManuallyDrop<Compat<glommio::net::TcpStream>>,
    thread: ThreadId,
}

// SAFETY: a glommio stream holds `Rc`s into its thread's reactor, so it must never be touched on
// another thread. `OnShard` is made on the shard (`attach`) inside a connection served there,
// and every use checks the thread (`stream`, `drop`): moving the value without touching it is
// what `Send` allows, and a touch elsewhere panics (or, when dropped elsewhere, leaks) rather
// than race. It is `Send` only so that `MovingSocket` (and the TLS stream over it) can be,
// for the crossing made in the `InTransit` state.
unsafe impl Send for OnShard {}

impl OnShard {
    fn stream(&mut self) -> Pin<&mut Compat<glommio::net::TcpStream>> {
        assert_eq!(std::thread::current().id(), self.thread, "a shard's socket used on another thread");
        Pin::new(&mut self.stream)
    }
}

impl Drop for OnShard {
    fn drop(&mut self) {
        if std::thread::current().id() == self.thread {
            // SAFETY: dropped once, here, on the thread it belongs to.
            unsafe { std::mem::ManuallyDrop::drop(&mut self.stream) };
        } else {
            crate::log::warn("a shard's socket dropped on another thread; leaked", &[]);
        }
    }
}

impl MovingSocket {
    /// Leaves the front-end thread: the socket is no longer tokio's.
    pub fn detach(&mut self) -> io::Result<()> {
        match std::mem::replace(self, MovingSocket::Gone) {
            MovingSocket::FrontEnd(s) => {
                *self = MovingSocket::InTransit(s.into_std()?);
                Ok(())
            }
            other => {
                *self = other;
                Err(io::Error::other("detach: the socket is not on a front-end thread"))
            }
        }
    }

    /// Arrives on this thread, a shard's: the socket becomes glommio's.
    pub fn attach(&mut self) {
        if let MovingSocket::InTransit(s) = std::mem::replace(self, MovingSocket::Gone) {
            // SAFETY: the descriptor is taken out of the std stream, which no longer owns it.
            let stream = unsafe { glommio::net::TcpStream::from_raw_fd(s.into_raw_fd()) };
            let stream = std::mem::ManuallyDrop::new(stream.compat());
            *self = MovingSocket::Shard(OnShard { stream, thread: std::thread::current().id() });
        }
    }
}

fn not_here() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "a TLS connection's socket between threads")
}

impl AsyncRead for MovingSocket {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MovingSocket::FrontEnd(s) => Pin::new(s).poll_read(cx, buf),
            MovingSocket::Shard(s) => s.stream().poll_read(cx, buf),
            MovingSocket::InTransit(_) | MovingSocket::Gone => Poll::Ready(Err(not_here())),
        }
    }
}

impl AsyncWrite for MovingSocket {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MovingSocket::FrontEnd(s) => Pin::new(s).poll_write(cx, buf),
            MovingSocket::Shard(s) => s.stream().poll_write(cx, buf),
            MovingSocket::InTransit(_) | MovingSocket::Gone => Poll::Ready(Err(not_here())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MovingSocket::FrontEnd(s) => Pin::new(s).poll_flush(cx),
            MovingSocket::Shard(s) => s.stream().poll_flush(cx),
            MovingSocket::InTransit(_) | MovingSocket::Gone => Poll::Ready(Err(not_here())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MovingSocket::FrontEnd(s) => Pin::new(s).poll_shutdown(cx),
            MovingSocket::Shard(s) => s.stream().poll_shutdown(cx),
            MovingSocket::InTransit(_) | MovingSocket::Gone => Poll::Ready(Err(not_here())),
        }
    }
}

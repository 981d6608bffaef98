//! A client connection's writes, gathered so that several responses leave in one system call.
//!
//! Why: h2 (under hyper and tonic) holds at most one DATA frame whose payload it did not copy,
//! and on a connection that takes vectored writes it does not copy payloads of 256 bytes or
//! more. So every response larger than that (a range answer with one 256-byte value, say)
//! made the connection flush before the next response could be buffered: one `writev`, one
//! loopback or NIC send and one wake-up of the client per response (measured: 1.07 `writev`
//! per read at 100 clients on 10 connections, range serializable; puts, whose answers are
//! small, shared one `writev` among about ten).
//!
//! A connection wrapped here says it takes no vectored writes, so h2 copies payloads under
//! 1 KiB into its own buffer and frames many responses into one write. A larger payload
//! still makes h2 write its buffer and then the payload: this wrapper keeps a write of up to
//! `HOLD_BYTES` until the next write or the flush and sends both in one `writev`, so that
//! costs one system call rather than two. (On the shards' glommio streams, which have no
//! vectored write, the two still leave in two `send`s: a LIST's 16 KiB frames go as 1 KiB and
//! the rest. Copying them into one send instead cut the shard's sends at the Kubernetes load
//! by 12% and changed neither its CPU per request nor LIST latency measurably: not done.)
//! What a write accepted is always sent by the flush h2 makes at the end of every write-out,
//! so nothing waits for later traffic.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The most bytes held back for the next write or the flush (h2's write buffer is 16 KiB).
const HOLD_BYTES: usize = 16 << 10;
/// A held buffer grown beyond this is given back once sent (a connection sending large
/// answers once does not keep a large buffer while idle).
const KEEP_CAPACITY_BYTES: usize = 4 << 10;

/// A connection whose writes are gathered (see the module comment).
pub struct Coalesced<T> {
    io: T,
    /// Accepted bytes not yet sent, from `sent` on.
    held: Vec<u8>,
    sent: usize,
}

impl<T> Coalesced<T> {
    pub fn new(io: T) -> Coalesced<T> {
        Coalesced { io, held: Vec::new(), sent: 0 }
    }

    fn unsent(&self) -> &[u8] {
        &self.held[self.sent..]
    }

    /// Records that `n` held bytes left; forgets the held buffer once all have.
    fn advance(&mut self, n: usize) {
        self.sent += n;
        debug_assert!(self.sent <= self.held.len(), "sent more than was held");
        if self.sent == self.held.len() {
            self.held.clear();
            self.sent = 0;
            if self.held.capacity() > KEEP_CAPACITY_BYTES {
                self.held = Vec::new();
            }
        }
    }
}

impl<T: AsyncWrite + Unpin> Coalesced<T> {
    /// Sends the held bytes; Ready once none are left.
    fn poll_send_held(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.unsent().is_empty() {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &self.held[self.sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.advance(n);
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Coalesced<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Coalesced<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.held.len() + buf.len() <= HOLD_BYTES {
            this.held.extend_from_slice(buf);
            return Poll::Ready(Ok(buf.len()));
        }
        if this.unsent().is_empty() {
            return Pin::new(&mut this.io).poll_write(cx, buf);
        }
        // Too much to hold: the held bytes and `buf` in one call, the held ones first.
        loop {
            let held = this.unsent().len();
            let slices = [IoSlice::new(&this.held[this.sent..]), IoSlice::new(buf)];
            let n = ready!(Pin::new(&mut this.io).poll_write_vectored(cx, &slices))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            this.advance(n.min(held));
            if n > held {
                return Poll::Ready(Ok(n - held));
            }
            if n == held {
                // Only the held bytes left: `buf` goes on its own (or the socket is full).
                return Pin::new(&mut this.io).poll_write(cx, buf);
            }
        }
    }

    /// False, so that h2 copies small payloads and frames many responses into one write.
    fn is_write_vectored(&self) -> bool {
        false
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_send_held(cx))?;
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_send_held(cx))?;
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}

impl<T: tonic::transport::server::Connected> tonic::transport::server::Connected for Coalesced<T> {
    type ConnectInfo = T::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.io.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Chunks of every size class (held, too big to hold, larger than the hold) written through
    /// a pipe that takes 1 KiB at a time: every byte arrives, in order, and a flush delivers
    /// everything written before it.
    #[tokio::test]
    async fn delivers_every_byte_in_order_and_flush_sends_all() {
        let (client, mut server) = tokio::io::duplex(1024);
        let mut conn = Coalesced::new(client);
        assert!(!conn.is_write_vectored());
        let sizes = [1usize, 9, 300, 1100, 5000, HOLD_BYTES - 1, HOLD_BYTES, HOLD_BYTES + 1, 3 * HOLD_BYTES, 17, 2];
        let mut sent = Vec::new();
        for (round, &size) in sizes.iter().enumerate() {
            let chunk: Vec<u8> = (0..size).map(|i| (i * 31 + round * 7) as u8).collect();
            sent.extend_from_slice(&chunk);
            let writer = async {
                conn.write_all(&chunk).await.unwrap();
                conn.flush().await.unwrap();
            };
            let mut got = vec![0u8; chunk.len()];
            let reader = server.read_exact(&mut got);
            let ((), read) = tokio::time::timeout(std::time::Duration::from_secs(10), async { tokio::join!(writer, reader) }).await.expect("flush delivered the chunk");
            read.unwrap();
            assert_eq!(got, chunk, "chunk {round} of {size} bytes");
        }
        assert!(conn.held.is_empty(), "nothing held after a flush");
    }

    /// Small writes wait for the flush (or a write too big to hold); a shutdown sends them.
    #[tokio::test]
    async fn holds_small_writes_until_flush_or_shutdown() {
        let (client, mut server) = tokio::io::duplex(64 << 10);
        let mut conn = Coalesced::new(client);
        conn.write_all(b"abc").await.unwrap();
        conn.write_all(b"def").await.unwrap();
        let mut one = [0u8; 1];
        let early = tokio::time::timeout(std::time::Duration::from_millis(50), server.read(&mut one)).await;
        assert!(early.is_err(), "held bytes left before the flush");
        conn.write_all(b"ghi").await.unwrap();
        conn.shutdown().await.unwrap();
        let mut all = Vec::new();
        server.read_to_end(&mut all).await.unwrap();
        assert_eq!(all, b"abcdefghi");
        assert!(conn.held.capacity() <= KEEP_CAPACITY_BYTES);
    }
}

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
//! 1 KiB into its own buffer and frames many responses into one write. Larger payloads are
//! copied here: writes are held until the flush h2 makes at the end of every write-out, which
//! sends them in one system call.
//!
//! A large answer (a LIST's 16 KiB DATA frames) makes h2 flush after every frame. Once more than
//! `HOLD_BYTES` are held, a flush that follows new writes is put off (the task is woken, so that
//! h2's next poll flushes again) until `BATCH_BYTES` are held or a flush finds nothing new: the
//! frames leave 256 KiB at a time instead of in two sends each (the frame's header, then its
//! payload: the shards' glommio streams have no vectored write). Measured on an unpaginated
//! LIST of 100k keys × 1 KiB by etcdctl (bench/RESULTS.md, 2026-12-07): the shard's sends per
//! LIST 13,378 → 1,445, its CPU per LIST 155 → 106 ms.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Held bytes beyond which a flush that follows new writes is put off (h2's write buffer is
/// 16 KiB, so only a write-out with large payloads grows past it).
const HOLD_BYTES: usize = 16 << 10;
/// The most bytes held: a write that would grow the held bytes beyond this is sent with them.
const BATCH_BYTES: usize = 256 << 10;
/// A held buffer grown beyond this is given back once its write-out ends (a connection sending
/// large answers once does not keep a large buffer while idle).
const KEEP_CAPACITY_BYTES: usize = 4 << 10;

/// A connection whose writes are gathered (see the module comment).
pub struct Coalesced<T> {
    io: T,
    /// Accepted bytes not yet sent, from `sent` on.
    held: Vec<u8>,
    sent: usize,
    /// A write was held since the last flush.
    wrote_since_flush: bool,
}

impl<T> Coalesced<T> {
    pub fn new(io: T) -> Coalesced<T> {
        Coalesced { io, held: Vec::new(), sent: 0, wrote_since_flush: false }
    }

    fn unsent(&self) -> &[u8] {
        &self.held[self.sent..]
    }

    /// Records that `n` held bytes left; empties the held buffer once all have.
    fn advance(&mut self, n: usize) {
        self.sent += n;
        debug_assert!(self.sent <= self.held.len(), "sent more than was held");
        if self.sent == self.held.len() {
            self.held.clear();
            self.sent = 0;
        }
    }

    /// Gives back a large held buffer once a write-out is over (one that ends in the middle of a
    /// large answer is used again at once: allocating it anew cost a page fault per 4 KiB).
    fn release_if_large(&mut self) {
        if self.held.is_empty() && self.held.capacity() > KEEP_CAPACITY_BYTES {
            self.held = Vec::new();
        }
    }

    /// Holds `buf`; a buffer about to pass `HOLD_BYTES` takes room for a whole batch at once.
    fn hold(&mut self, buf: &[u8]) {
        let len = self.held.len() + buf.len();
        if len > HOLD_BYTES && self.held.capacity() < BATCH_BYTES {
            self.held.reserve_exact(BATCH_BYTES - self.held.len());
        }
        self.held.extend_from_slice(buf);
        self.wrote_since_flush = true;
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
        if this.held.len() + buf.len() <= BATCH_BYTES {
            this.hold(buf);
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

    /// Sends the held bytes, unless a large write-out is under way (see the module comment).
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let put_off = this.wrote_since_flush && this.unsent().len() > HOLD_BYTES;
        this.wrote_since_flush = false;
        if put_off {
            cx.waker().wake_by_ref();
            return Poll::Ready(Ok(()));
        }
        ready!(this.poll_send_held(cx))?;
        this.release_if_large();
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_send_held(cx))?;
        this.release_if_large();
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

    /// Chunks of every size class (held, past the hold, past the batch) written through a pipe
    /// that takes 1 KiB at a time: every byte arrives, in order, and a flush that finds nothing
    /// new (h2's last of a write-out) delivers everything written before it.
    #[tokio::test]
    async fn delivers_every_byte_in_order_and_flush_sends_all() {
        let (client, mut server) = tokio::io::duplex(1024);
        let mut conn = Coalesced::new(client);
        assert!(!conn.is_write_vectored());
        let sizes = [1usize, 9, 300, 1100, 5000, HOLD_BYTES - 1, HOLD_BYTES, HOLD_BYTES + 1, 3 * HOLD_BYTES, BATCH_BYTES, BATCH_BYTES + 1, 17, 2];
        let mut sent = Vec::new();
        for (round, &size) in sizes.iter().enumerate() {
            let chunk: Vec<u8> = (0..size).map(|i| (i * 31 + round * 7) as u8).collect();
            sent.extend_from_slice(&chunk);
            let writer = async {
                conn.write_all(&chunk).await.unwrap();
                conn.flush().await.unwrap();
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

    /// Past `HOLD_BYTES`, a flush after new writes is put off and wakes the task; the next flush
    /// sends everything, and no more than `BATCH_BYTES` are ever held.
    #[tokio::test]
    async fn a_large_write_out_leaves_in_batches() {
        let (client, mut server) = tokio::io::duplex(4 * BATCH_BYTES);
        let mut conn = Coalesced::new(client);
        let frame = vec![7u8; 9 + (16 << 10)]; // a DATA frame's header and payload
        let woken = std::sync::Arc::new(WakeCount(std::sync::atomic::AtomicUsize::new(0)));
        let waker = std::task::Waker::from(woken.clone());
        let mut cx = Context::from_waker(&waker);
        let mut written = 0;
        for _ in 0..BATCH_BYTES / frame.len() + 4 {
            let n = Pin::new(&mut conn).poll_write(&mut cx, &frame);
            assert!(matches!(n, Poll::Ready(Ok(n)) if n == frame.len()));
            written += frame.len();
            assert!(conn.held.len() <= BATCH_BYTES, "held {} bytes", conn.held.len());
            assert!(Pin::new(&mut conn).poll_flush(&mut cx).is_ready());
        }
        let sent_before_last = written - conn.unsent().len();
        assert!(sent_before_last >= BATCH_BYTES, "frames were sent in batches");
        assert!(!conn.unsent().is_empty(), "the last frames wait for a flush that finds nothing new");
        assert!(woken.0.load(std::sync::atomic::Ordering::Relaxed) > 0, "a put-off flush wakes the task");
        assert!(Pin::new(&mut conn).poll_flush(&mut cx).is_ready());
        assert!(conn.unsent().is_empty(), "a flush after no new writes sends everything");
        assert!(conn.held.capacity() <= KEEP_CAPACITY_BYTES, "the batch's buffer is given back");
        let mut got = vec![0u8; written];
        server.read_exact(&mut got).await.unwrap();
        assert!(got.iter().all(|&b| b == 7));
    }

    struct WakeCount(std::sync::atomic::AtomicUsize);

    impl std::task::Wake for WakeCount {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
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

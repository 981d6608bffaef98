//! The KV service's Range, Put, DeleteRange and Txn, answered past tonic's codec. This route
//! (the client service sends it the KV paths, `client_service.rs`; the router sends it Range
//! too, for the gateway's calls) reads the request's one message, decodes it, runs the KV
//! service's own handler (validation, errors unchanged) and encodes the answer itself.
//!
//! Why past tonic for the writes: tonic's unary call decodes through a streaming decoder,
//! encodes through a streaming encoder and copies a 1.9 KiB future into a box per call; this
//! route does the same work with one read of the body and one buffer for the answer. Put at
//! 1000 clients (perf, 100k keys): tonic's unary path was 16.1% of the server's CPU samples,
//! this route's is 13.8%; puts/s +2.6% over four alternated runs, CPU per put within the noise
//! (bench/RESULTS.md).
//!
//! And for Range, above all: tonic encodes a unary answer on the connection's front-end thread
//! in one synchronous call, into a buffer the answer is then sent from: a LIST of 100 000 keys
//! × 1 KiB held its thread 40-80 ms, and every other connection of that thread with it (a
//! writer's p99 was 39× its baseline while LISTs ran). A Range answer is encoded at once when
//! small, as one body chunk, and above `CHUNKED_ABOVE_BYTES` a chunk at a time as the
//! connection sends them (`ChunkedRange`), on a thread of lower priority (`OffThread`); hyper
//! hands each chunk to the socket without copying it again.
//!
//! A request this route does not expect (compressed, malformed) goes to tonic's KV service
//! unchanged, which answers it as before.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{BufMut, Bytes, BytesMut};
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use prost::Message;
use tower_service::Service;

use crate::api::kv::KvService;
use crate::proto::etcdserverpb::kv_server::{Kv, KvServer};
use crate::proto::etcdserverpb::RangeResponse;
use crate::proto::mvccpb::KeyValue;

pub const RANGE_PATH: &str = "/etcdserverpb.KV/Range";
/// Answers larger than this are sent in chunks (`ChunkedRange`).
const CHUNKED_ABOVE_BYTES: usize = 1 << 20;
/// The size of a chunk of a large answer (a key-value is not split: one may end past it).
const CHUNK_BYTES: usize = 256 << 10;
/// A gRPC message's prefix: compressed flag, then the length (big endian u32).
const PREFIX_BYTES: usize = 5;

/// The KV calls this route answers (Compact, rare, is left to tonic's server).
#[derive(Clone, Copy, Debug)]
pub enum KvCall {
    Range,
    Put,
    DeleteRange,
    Txn,
}

impl KvCall {
    /// The call a KV method's name names, if this route answers it.
    pub fn of(method: &str) -> Option<KvCall> {
        match method {
            "Range" => Some(KvCall::Range),
            "Put" => Some(KvCall::Put),
            "DeleteRange" => Some(KvCall::DeleteRange),
            "Txn" => Some(KvCall::Txn),
            _ => None,
        }
    }
}

type Answered = http::Response<tonic::body::Body>;

/// The route's handler state: the KV service, tonic's server of it (for what this route does
/// not handle) and the request size bound tonic's server applies.
#[derive(Clone)]
pub struct KvRoute {
    kv: Arc<KvService>,
    tonic: KvServer<KvService>,
    max_request_bytes: usize,
}

impl KvRoute {
    pub fn new(kv: Arc<KvService>, max_request_bytes: usize) -> KvRoute {
        let tonic = KvServer::from_arc(kv.clone()).max_decoding_message_size(max_request_bytes).max_encoding_message_size(usize::MAX).accept_compressed(tonic::codec::CompressionEncoding::Gzip);
        KvRoute { kv, tonic, max_request_bytes }
    }

    /// Answers one call.
    pub async fn serve<B>(self, call: KvCall, req: http::Request<B>) -> Answered
    where
        B: Body<Data = Bytes> + Unpin,
        B::Error: Into<tonic::codegen::StdError>,
    {
        match call {
            KvCall::Range => self.unary(req, |kv, r| async move { kv.range(r).await }, range_answer).await,
            KvCall::Put => self.unary(req, |kv, r| async move { kv.put(r).await }, answer).await,
            KvCall::DeleteRange => self.unary(req, |kv, r| async move { kv.delete_range(r).await }, answer).await,
            KvCall::Txn => self.unary(req, |kv, r| async move { kv.txn(r).await }, answer).await,
        }
    }

    /// Reads and decodes the request's message, runs `handle` on it and encodes its answer
    /// with `encode`; an error is a trailers-only answer, as tonic sends it.
    async fn unary<B, Q, R, F, Fut>(self, req: http::Request<B>, handle: F, encode: fn(R) -> Answered) -> Answered
    where
        B: Body<Data = Bytes> + Unpin,
        B::Error: Into<tonic::codegen::StdError>,
        Q: Message + Default,
        F: FnOnce(Arc<KvService>, tonic::Request<Q>) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<R>, tonic::Status>>,
    {
        let (parts, body) = req.into_parts();
        let compressed = parts.headers.get("grpc-encoding").is_some_and(|e| e != "identity");
        let read = read_message(body, self.max_request_bytes).await;
        let message = match read {
            Ok(Read::Message(m)) if !compressed && m[0] == 0 => m,
            Ok(Read::Message(m)) => match gzip_too_large(&parts.headers, &m, self.max_request_bytes) {
                Some(status) => return status.into_http(),
                None => return self.by_tonic(parts, m).await,
            },
            Ok(Read::Other(m)) => return self.by_tonic(parts, m).await,
            Ok(Read::TooLarge(status)) => return status.into_http(),
            Err(status) => return status.into_http(),
        };
        let Ok(decoded) = Q::decode(&message[PREFIX_BYTES..]) else { return self.by_tonic(parts, message).await };
        let request = tonic::Request::from_http(http::Request::from_parts(parts, decoded));
        match handle(self.kv.clone(), request).await {
            Ok(resp) => encode(resp.into_inner()),
            Err(status) => status.into_http(),
        }
    }

    /// Hands the call, as it came, to tonic's KV server.
    async fn by_tonic(mut self, parts: http::request::Parts, message: Bytes) -> Answered {
        let req = http::Request::from_parts(parts, tonic::body::Body::new(http_body_util::Full::new(message)));
        match self.tonic.call(req).await {
            Ok(resp) => resp,
            Err(never) => match never {},
        }
    }
}

enum Read {
    /// Exactly one whole message, with its prefix.
    Message(Bytes),
    /// What the body held otherwise.
    Other(Bytes),
    TooLarge(tonic::Status),
}

/// Reads one gRPC message (prefix included) from `body`, refusing one over `max_bytes` as
/// tonic's decoder does (same code and message), without reading it.
async fn read_message<B>(mut body: B, max_bytes: usize) -> Result<Read, tonic::Status>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<tonic::codegen::StdError>,
{
    let mut buf = BytesMut::new();
    let mut want = PREFIX_BYTES;
    // The whole body, to its end, as tonic reads a unary request (it waits for the trailers):
    // answered before the client's END_STREAM, the stream is reset by h2, and the client's late
    // END_STREAM frame, once h2 no longer remembers the stream (50 streams, 1 s), counts against
    // the connection's lifetime cap of locally detected stream errors (1024), past which h2 cuts
    // the connection off with GOAWAY ENHANCE_YOUR_CALM "too_many_internal_resets": a long-lived
    // client's connection, all its watches with it (`tests/bounds.rs` under a loaded CI run).
    // Reading stops at the first byte past the message (tonic is given what was read).
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| tonic::Status::internal(format!("error reading the request: {}", e.into())))?;
        if let Ok(data) = frame.into_data() {
            buf.extend_from_slice(&data);
        }
        if want == PREFIX_BYTES && buf.len() >= PREFIX_BYTES {
            let len = u32::from_be_bytes(buf[1..PREFIX_BYTES].try_into().expect("4 bytes")) as usize;
            if len > max_bytes {
                return Ok(Read::TooLarge(tonic::Status::out_of_range(format!(
                    "Error, decoded message length too large: found {len} bytes, the limit is: {max_bytes} bytes"
                ))));
            }
            want = PREFIX_BYTES + len;
        }
        if buf.len() > want {
            break;
        }
    }
    if buf.len() == want {
        Ok(Read::Message(buf.freeze()))
    } else {
        // Cut short, or more than one message: tonic answers it as it does.
        Ok(Read::Other(buf.freeze()))
    }
}

/// grpc-go's (etcd's) refusal of a gzip-compressed message (`message`, prefix included) that
/// says it decompresses to more than `max_bytes`: grpc-go reads the size from the gzip trailer
/// (ISIZE) before decompressing, and names it. tonic stops at the bound without knowing the
/// size, and says so in words of its own; a message whose trailer lies is left to it.
fn gzip_too_large(headers: &http::HeaderMap, message: &[u8], max_bytes: usize) -> Option<tonic::Status> {
    /// A gzip member's header (10 bytes) and trailer (CRC-32, then ISIZE: 4 bytes each).
    const GZIP_MIN_BYTES: usize = 18;
    let payload = &message[PREFIX_BYTES..];
    let gzip = message[0] == 1 && headers.get("grpc-encoding").is_some_and(|e| e == "gzip");
    if !gzip || payload.len() < GZIP_MIN_BYTES || payload[..2] != [0x1f, 0x8b] {
        return None;
    }
    let size = u32::from_le_bytes(payload[payload.len() - 4..].try_into().expect("4 bytes")) as usize;
    (size > max_bytes).then(|| tonic::Status::resource_exhausted(format!("grpc: received message larger than max ({size} vs. {max_bytes})")))
}

/// A Range's answer, then grpc-status 0: encoded at once when small, else a chunk at a time as
/// the connection takes it (`ChunkedRange`).
fn range_answer(resp: RangeResponse) -> Answered {
    let len = resp.encoded_len();
    if len <= CHUNKED_ABOVE_BYTES {
        return answer(resp);
    }
    let chunks = ChunkedRange::new(resp, len);
    let body = match OffThread::start(chunks) {
        Ok(body) => tonic::body::Body::new(body),
        Err(chunks) => tonic::body::Body::new(*chunks),
    };
    grpc_answer(body)
}

/// The answer, encoded at once, then grpc-status 0.
fn answer<R: Message>(resp: R) -> Answered {
    let len = resp.encoded_len();
    let mut buf = BytesMut::with_capacity(PREFIX_BYTES + len);
    put_prefix(&mut buf, len);
    resp.encode_raw(&mut buf);
    grpc_answer(tonic::body::Body::new(Answer { data: Some(buf.freeze()), trailers: Some(ok_trailers()) }))
}

fn grpc_answer(body: tonic::body::Body) -> Answered {
    let mut resp = http::Response::new(body);
    resp.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/grpc"));
    resp
}

fn put_prefix(buf: &mut BytesMut, len: usize) {
    buf.put_u8(0);
    buf.put_u32(u32::try_from(len).expect("an answer under 4 GiB"));
}

fn ok_trailers() -> http::HeaderMap {
    let mut trailers = http::HeaderMap::new();
    trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
    trailers
}

/// A large Range answer's body: one gRPC message, encoded `CHUNK_BYTES` at a time when the
/// connection asks for more (hyper asks as HTTP/2 flow control lets it send), each key-value
/// dropped once encoded; then the trailers. Encoding a LIST of 100 000 keys × 1 KiB whole took
/// a fresh 100 MiB buffer per answer (page faults of all of it, then an unmap) on top of the
/// key-values it copied: the server's heap peak during such LISTs was 138 MiB above its start,
/// now 32-37 MiB (bench/ pauses workload).
struct ChunkedRange {
    /// The prefix and the header field, sent first.
    head: Option<Bytes>,
    kvs: std::vec::IntoIter<KeyValue>,
    /// `more` and `count`, after the last key-value.
    tail: Option<(bool, i64)>,
    trailers: Option<http::HeaderMap>,
}

impl ChunkedRange {
    fn new(resp: RangeResponse, len: usize) -> ChunkedRange {
        let RangeResponse { header, kvs, more, count } = resp;
        let mut head = BytesMut::new();
        put_prefix(&mut head, len);
        if let Some(h) = &header {
            prost::encoding::message::encode(1, h, &mut head);
        }
        ChunkedRange { head: Some(head.freeze()), kvs: kvs.into_iter(), tail: Some((more, count)), trailers: Some(ok_trailers()) }
    }

    /// Whether every byte of the message has been handed out (the trailers may remain).
    fn message_sent(&self) -> bool {
        self.head.is_none() && self.kvs.len() == 0 && self.tail.is_none()
    }

    /// The next chunk of the message, if any is left: prost's encoding of the same fields in
    /// the same order as `RangeResponse::encode_raw`.
    fn next_chunk(&mut self) -> Option<Bytes> {
        if self.message_sent() {
            return None; // no buffer for nothing
        }
        let mut buf = BytesMut::with_capacity(CHUNK_BYTES);
        if let Some(head) = self.head.take() {
            buf.extend_from_slice(&head);
        }
        while buf.len() < CHUNK_BYTES {
            let Some(kv) = self.kvs.next() else { break };
            prost::encoding::message::encode(2, &kv, &mut buf);
        }
        if self.kvs.len() == 0 {
            if let Some((more, count)) = self.tail.take() {
                if more {
                    prost::encoding::bool::encode(3, &more, &mut buf);
                }
                if count != 0 {
                    prost::encoding::int64::encode(4, &count, &mut buf);
                }
            }
        }
        (!buf.is_empty()).then(|| buf.freeze())
    }
}

impl Body for ChunkedRange {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let frame = match self.next_chunk() {
            Some(data) => Some(Ok(Frame::data(data))),
            None => self.trailers.take().map(|t| Ok(Frame::trailers(t))),
        };
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.message_sent() && self.trailers.is_none()
    }
}

/// Large answers being encoded on threads of their own, at most `MAX_OFF_THREAD` (beyond,
/// an answer is encoded on its connection's thread as it is sent).
static OFF_THREAD: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
const MAX_OFF_THREAD: usize = 4;
/// The encoding threads' nice value: below the front end, the shards and the WAL, so that
/// the CPU they take is what the write path leaves. An unpaginated LIST of 100 MiB keeps
/// both CPUs of a 2-CPU box busy while it is sent (the shard, the encoding, the socket, its
/// client), and a writer's puts waited for a CPU: with its encoding at nice 10 their p99
/// during such LISTs fell from 4.80-5.06 ms to 3.14-3.55 (bench/ pauses, ballast alone).
const OFF_THREAD_NICE: libc::c_int = 10;
/// Chunks encoded ahead of the connection (each `CHUNK_BYTES`).
const OFF_THREAD_AHEAD_CHUNKS: usize = 2;

/// A large answer's body whose chunks a thread of lower priority encodes (`OFF_THREAD_NICE`),
/// a few ahead of the connection; then the trailers. The thread ends with the answer, or when
/// the connection drops the body.
struct OffThread {
    chunks: tokio::sync::mpsc::Receiver<Bytes>,
    trailers: Option<http::HeaderMap>,
    message_sent: bool,
}

/// Gives back its slot in `OFF_THREAD` when the encoding thread ends.
struct OffThreadSlot;

impl Drop for OffThreadSlot {
    fn drop(&mut self) {
        OFF_THREAD.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

impl OffThread {
    /// The body, or the chunks back when `MAX_OFF_THREAD` answers are being encoded already
    /// (or no thread can be started).
    fn start(mut chunks: ChunkedRange) -> Result<OffThread, Box<ChunkedRange>> {
        use std::sync::atomic::Ordering;
        if OFF_THREAD.fetch_add(1, Ordering::Relaxed) >= MAX_OFF_THREAD {
            OFF_THREAD.fetch_sub(1, Ordering::Relaxed);
            return Err(Box::new(chunks));
        }
        let slot = OffThreadSlot;
        let (tx, rx) = tokio::sync::mpsc::channel(OFF_THREAD_AHEAD_CHUNKS);
        // The chunks come back if the thread cannot start (they move in only once it runs).
        let (hand_tx, hand_rx) = std::sync::mpsc::sync_channel::<ChunkedRange>(1);
        let spawned = std::thread::Builder::new().name("range-encode".into()).spawn(move || {
            let _slot = slot;
            // SAFETY: setpriority with this thread's id only reads its arguments. Raising a
            // nice value needs no privilege; if it fails the thread just runs at the default.
            unsafe { libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, OFF_THREAD_NICE) };
            let Ok(mut chunks) = hand_rx.recv() else { return };
            while let Some(chunk) = chunks.next_chunk() {
                if tx.blocking_send(chunk).is_err() {
                    return; // the connection dropped the answer
                }
            }
        });
        if spawned.is_err() {
            return Err(Box::new(chunks)); // (the slot went with the closure, dropped: released)
        }
        let trailers = chunks.trailers.take();
        hand_tx.send(chunks).expect("the encoding thread waits for its chunks");
        Ok(OffThread { chunks: rx, trailers, message_sent: false })
    }
}

impl Body for OffThread {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if !self.message_sent {
            match self.chunks.poll_recv(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(data)) => return Poll::Ready(Some(Ok(Frame::data(data)))),
                Poll::Ready(None) => self.message_sent = true,
            }
        }
        Poll::Ready(self.trailers.take().map(|t| Ok(Frame::trailers(t))))
    }

    fn is_end_stream(&self) -> bool {
        self.message_sent && self.trailers.is_none()
    }
}

/// A unary gRPC answer's body: its message, then its trailers.
struct Answer {
    data: Option<Bytes>,
    trailers: Option<http::HeaderMap>,
}

impl Body for Answer {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let frame = match (self.data.take(), self.trailers.take()) {
            (Some(data), trailers) => {
                self.trailers = trailers;
                Some(Ok(Frame::data(data)))
            }
            (None, Some(trailers)) => Some(Ok(Frame::trailers(trailers))),
            (None, None) => None,
        };
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_none() && self.trailers.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::etcdserverpb::ResponseHeader;

    fn kv(i: usize, value_bytes: usize) -> KeyValue {
        KeyValue { key: format!("k{i:06}").into_bytes(), value: vec![b'v'; value_bytes].into(), create_revision: 2, mod_revision: 3 + i as i64, version: 1, lease: 0 }
    }

    /// The chunks of a large answer are the whole message as prost encodes it, with its prefix,
    /// cut into chunks of about `CHUNK_BYTES`, whatever `more` and `count` are.
    #[test]
    fn chunks_join_into_the_message_prost_encodes() {
        for (more, count, keys) in [(false, 3000, 3000), (true, 9000, 3000), (false, 0, 0), (false, 1, 1)] {
            let resp = RangeResponse {
                header: Some(ResponseHeader { cluster_id: 1, member_id: 2, revision: 3004, raft_term: 5 }),
                kvs: (0..keys).map(|i| kv(i, 1000)).collect(),
                more,
                count,
            };
            let whole = resp.encode_to_vec();
            let mut body = ChunkedRange::new(resp, whole.len());
            let mut joined = Vec::new();
            let mut chunks = 0;
            while let Some(chunk) = body.next_chunk() {
                assert!(chunk.len() < CHUNK_BYTES + 1100, "a chunk ends within a key-value past CHUNK_BYTES");
                joined.extend_from_slice(&chunk);
                chunks += 1;
            }
            assert!(!body.is_end_stream(), "the trailers are still to come");
            assert_eq!(&joined[..PREFIX_BYTES], &[&[0u8][..], &(whole.len() as u32).to_be_bytes()[..]].concat()[..]);
            assert_eq!(joined[PREFIX_BYTES..], whole[..], "{keys} keys, more {more}, count {count}");
            assert!(chunks <= whole.len() / CHUNK_BYTES + 1, "{chunks} chunks of {} bytes", whole.len());
        }
    }

    /// An answer encoded off the connection's thread is the same bytes, then grpc-status 0;
    /// its thread ends with it, and when the connection drops it half-sent.
    #[tokio::test]
    async fn an_answer_encoded_off_thread_is_the_same_message_and_its_thread_ends() {
        use std::sync::atomic::Ordering;
        let resp = || RangeResponse { header: Some(ResponseHeader { revision: 7, ..Default::default() }), kvs: (0..3000).map(|i| kv(i, 1000)).collect(), more: false, count: 3000 };
        let whole = resp().encode_to_vec();
        let body = OffThread::start(ChunkedRange::new(resp(), whole.len())).ok().expect("a thread for the answer");
        let collected = body.collect().await.expect("infallible");
        assert_eq!(collected.trailers().and_then(|t| t.get("grpc-status")).map(|v| v.as_bytes()), Some(&b"0"[..]));
        let joined = collected.to_bytes();
        assert_eq!(joined[PREFIX_BYTES..], whole[..]);
        let mut half = OffThread::start(ChunkedRange::new(resp(), whole.len())).ok().expect("a thread for the answer");
        assert!(half.frame().await.is_some(), "a first chunk");
        drop(half);
        for _ in 0..200 {
            if OFF_THREAD.load(Ordering::Relaxed) == 0 {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("{} encoding threads still running 2 s after their answers", OFF_THREAD.load(Ordering::Relaxed));
    }
}

//! The KV service's Range, answered past tonic's encoder. tonic encodes a unary answer on the
//! connection's front-end thread in one synchronous call, into a buffer the answer is then sent
//! from: a LIST of 100 000 keys × 1 KiB held its thread 40-80 ms, and every other connection of
//! that thread with it (a writer's p99 was 39× its baseline while LISTs ran). This route (the
//! client service sends it the exact path, `client_service.rs`; the router too, for the
//! gateway's calls) decodes the request, runs the KV service's own handler (`KvService::range`:
//! validation, reads, errors unchanged), and encodes the answer itself: inline when small, on a
//! blocking thread above `OFF_THREAD_BYTES`. The encoded answer goes out as one body chunk,
//! which hyper hands to the socket without copying it again. A request this route does not
//! expect (compressed, malformed) goes to tonic's KV service unchanged, which answers it as
//! before.

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
use crate::proto::etcdserverpb::RangeRequest;

pub const RANGE_PATH: &str = "/etcdserverpb.KV/Range";
/// Answers larger than this are encoded on a blocking thread.
const OFF_THREAD_BYTES: usize = 1 << 20;
/// A gRPC message's prefix: compressed flag, then the length (big endian u32).
const PREFIX_BYTES: usize = 5;

/// The route's handler state: the KV service, tonic's server of it (for what this route does
/// not handle) and the request size bound tonic's server applies.
#[derive(Clone)]
pub struct RangeRoute {
    kv: Arc<KvService>,
    tonic: KvServer<KvService>,
    max_request_bytes: usize,
}

impl RangeRoute {
    pub fn new(kv: Arc<KvService>, max_request_bytes: usize) -> RangeRoute {
        let tonic = KvServer::from_arc(kv.clone()).max_decoding_message_size(max_request_bytes).max_encoding_message_size(usize::MAX).accept_compressed(tonic::codec::CompressionEncoding::Gzip);
        RangeRoute { kv, tonic, max_request_bytes }
    }

    /// Answers one Range call.
    pub async fn serve<B>(self, req: http::Request<B>) -> http::Response<tonic::body::Body>
    where
        B: Body<Data = Bytes> + Unpin,
        B::Error: Into<tonic::codegen::StdError>,
    {
        let (parts, body) = req.into_parts();
        let compressed = parts.headers.get("grpc-encoding").is_some_and(|e| e != "identity");
        let read = read_message(body, self.max_request_bytes).await;
        let message = match read {
            Ok(Read::Message(m)) if !compressed && m[0] == 0 => m,
            Ok(Read::Message(m) | Read::Other(m)) => return self.by_tonic(parts, m).await,
            Ok(Read::TooLarge(status)) => return status.into_http(),
            Err(status) => return status.into_http(),
        };
        let Ok(range) = RangeRequest::decode(&message[PREFIX_BYTES..]) else { return self.by_tonic(parts, message).await };
        let request = tonic::Request::from_http(http::Request::from_parts(parts, range));
        match self.kv.range(request).await {
            Ok(resp) => answer(resp.into_inner()).await,
            Err(status) => status.into_http(),
        }
    }

    /// Hands the call, as it came, to tonic's KV server.
    async fn by_tonic(mut self, parts: http::request::Parts, message: Bytes) -> http::Response<tonic::body::Body> {
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
    while buf.len() < want {
        let frame = body.frame().await;
        let Some(frame) = frame else { break };
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
    }
    if buf.len() == want {
        Ok(Read::Message(buf.freeze()))
    } else {
        // Cut short, or more than one message: tonic answers it as it does.
        Ok(Read::Other(buf.freeze()))
    }
}

/// The answer: `msg` encoded (off the front-end thread when large), then grpc-status 0.
async fn answer<M: Message + Send + 'static>(msg: M) -> http::Response<tonic::body::Body> {
    let len = msg.encoded_len();
    let encode = move || {
        let mut buf = BytesMut::with_capacity(PREFIX_BYTES + len);
        buf.put_u8(0);
        buf.put_u32(u32::try_from(len).expect("an answer under 4 GiB"));
        msg.encode_raw(&mut buf);
        buf.freeze()
    };
    let data = if len > OFF_THREAD_BYTES {
        match tokio::task::spawn_blocking(encode).await {
            Ok(data) => data,
            Err(e) => return tonic::Status::internal(format!("encoding the answer: {e}")).into_http(),
        }
    } else {
        encode()
    };
    let mut trailers = http::HeaderMap::new();
    trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
    let mut resp = http::Response::new(tonic::body::Body::new(Answer { data: Some(data), trailers: Some(trailers) }));
    resp.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/grpc"));
    resp
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

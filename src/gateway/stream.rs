//! The gateway's streaming calls, as grpc-gateway v1 serves them: Watch and LeaseKeepAlive read
//! the request body as a stream of JSON values (each one request, sent as soon as it is whole),
//! Observe and Snapshot read one; the answers go out as they come, each as `{"result":…}` and a
//! newline, until the call ends or the client goes away. The HTTP head waits for the first
//! answer (etcd's gateway waits for the gRPC header, which comes with it); a request that
//! cannot be decoded gets the unary error answer, a call that fails (before its first answer
//! or later) a last `{"error":{"grpc_code":…,"http_code":…,"message":…,"http_status":…}}`,
//! with the HTTP status of its code when nothing was sent yet. When the server stops, open
//! calls end so too (Unavailable, `error reading from server: EOF`, as etcd's gateway's calls
//! do when its gRPC connection closes), so the client reads a whole chunked body.
//!
//! Bounds: at most `--max-concurrent-streams` calls open at once (more wait for a turn, as
//! etcd's gateway's streams wait on its one gRPC connection); answers are produced only as
//! the client reads them, so a slow reader leaves them with the watch hub, which moves its
//! watchers aside past their stream's byte budget, and never holds up other clients; a
//! request body holds at most `Gateway::max_body_bytes` unparsed.

use std::convert::Infallible;

use axum::body::Body;
use bytes::{Buf, Bytes, BytesMut};
use http::Response;
use http_body_util::BodyExt;
use prost_reflect::MessageDescriptor;

use super::call::{self, Call};
use super::{error, go_json, mapping, ok_json, Flow, Gateway, Route};

/// Requests read ahead of the service.
const REQUESTS_QUEUED: usize = 16;

pub async fn serve(gateway: &Gateway, route: &'static Route, meta: http::HeaderMap, body: Body) -> Response<Body> {
    let Ok(permit) = gateway.streams.clone().acquire_owned().await else {
        return error(&tonic::Status::unavailable("the gateway is shutting down"));
    };
    let requests = match route.flow {
        Flow::Bidi => {
            let mut reader = BodyReader::new(body, gateway.max_body_bytes());
            // etcd's gateway decodes the first request before calling; its error is not a gRPC
            // status, so it goes out as Unknown.
            match reader.next_request(&route.input).await {
                Err(msg) => return error(&tonic::Status::unknown(msg)),
                Ok(None) => Body::empty(),
                Ok(Some(first)) => {
                    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, Infallible>>(REQUESTS_QUEUED);
                    let _ = tx.try_send(Ok(call::frame(&first)));
                    tokio::spawn(forward(reader, route.input.clone(), tx));
                    Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx))
                }
            }
        }
        _ => match super::read_request(gateway, route, body).await {
            Ok(request) => Body::from(call::frame(&request)),
            Err(status) => return error(&status),
        },
    };
    let mut answers = Call::open(gateway, route, meta, requests).await;
    let mut stopping = gateway.stopping.clone();
    let first = match next_or_gone(&mut answers, &mut stopping).await {
        Some(Ok(msg)) => Some(msg),
        Some(Err(status)) => return failed(&status),
        None => None,
    };
    let state = Answers { call: answers, pending: first, desc: route.output.clone(), ended: false, stopping, _permit: permit };
    let chunks = futures_util::stream::unfold(state, |mut st| async move {
        let chunk = st.next_chunk().await?;
        Some((Ok::<_, Infallible>(chunk), st))
    });
    ok_json(Body::from_stream(chunks))
}

/// The answers of one streaming call, as the client reads them.
struct Answers {
    call: Call,
    pending: Option<Bytes>,
    desc: MessageDescriptor,
    ended: bool,
    stopping: tokio::sync::watch::Receiver<bool>,
    /// The call's place among `--max-concurrent-streams`, given back when the client goes.
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl Answers {
    async fn next_chunk(&mut self) -> Option<Bytes> {
        if self.ended {
            return None;
        }
        let next = match self.pending.take() {
            Some(msg) => Ok(msg),
            None => next_or_gone(&mut self.call, &mut self.stopping).await?,
        };
        let json = next.and_then(|msg| {
            let mut out = String::with_capacity(msg.len() * 2 + 16);
            out.push_str("{\"result\":");
            mapping::response_to_json(&self.desc, &msg, &mut out).map_err(tonic::Status::internal)?;
            out.push_str("}\n");
            Ok(out)
        });
        match json {
            Ok(chunk) => Some(Bytes::from(chunk)),
            Err(status) => {
                self.ended = true;
                Some(Bytes::from(error_chunk(&status)))
            }
        }
    }
}

/// The call's next answer, or, if the server stops first, what etcd's gateway's stream ends
/// with then (its gRPC connection to the server closed).
async fn next_or_gone(call: &mut Call, stopping: &mut tokio::sync::watch::Receiver<bool>) -> Option<Result<Bytes, tonic::Status>> {
    tokio::select! {
        next = call.next() => next,
        _ = stopping.wait_for(|&stop| stop) => Some(Err(tonic::Status::unavailable("error reading from server: EOF"))),
    }
}

/// A call that failed before its first answer, as grpc-gateway v1's ForwardResponseStream
/// answers it: the HTTP status of the code and the stream's error chunk (no gRPC metadata).
fn failed(status: &tonic::Status) -> Response<Body> {
    let chunk = Bytes::from(error_chunk(status));
    let mut resp = Response::new(Body::from_stream(futures_util::stream::iter([Ok::<_, Infallible>(chunk)])));
    *resp.status_mut() = super::http_status(status.code());
    resp.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
    resp
}

/// grpc-gateway v1's last chunk of a stream that failed.
fn error_chunk(status: &tonic::Status) -> String {
    let http = super::http_status(status.code());
    let mut out = format!("{{\"error\":{{\"grpc_code\":{},\"http_code\":{},\"message\":", status.code() as i32, http.as_u16());
    go_json::write_string(&mut out, status.message());
    out.push_str(",\"http_status\":");
    go_json::write_string(&mut out, http.canonical_reason().unwrap_or(""));
    out.push_str("}}");
    out
}

/// Sends the body's further requests to the call until the body ends, a value is bad (etcd's
/// gateway stops sending then too) or the call is gone.
async fn forward(mut reader: BodyReader, desc: MessageDescriptor, tx: tokio::sync::mpsc::Sender<Result<Bytes, Infallible>>) {
    while let Ok(Some(request)) = reader.next_request(&desc).await {
        if tx.send(Ok(call::frame(&request))).await.is_err() {
            return;
        }
    }
}

/// A request body read as a stream of JSON values (Go's `json.Decoder`).
struct BodyReader {
    body: Body,
    buf: BytesMut,
    ended: bool,
    max_bytes: usize,
    /// Where a value may end, tracked over the bytes as they arrive, so a value is parsed
    /// once it can be whole, not again at every chunk.
    shape: Shape,
}

impl BodyReader {
    fn new(body: Body, max_bytes: usize) -> BodyReader {
        BodyReader { body, buf: BytesMut::new(), ended: false, max_bytes, shape: Shape::default() }
    }

    /// The next request's protobuf encoding; None at the end of the body.
    async fn next_request(&mut self, desc: &MessageDescriptor) -> Result<Option<Vec<u8>>, String> {
        loop {
            if self.ended || self.shape.maybe_whole(&self.buf) {
                match go_json::decode_next(&self.buf, !self.ended) {
                    Ok(Some((v, end))) => {
                        let request = mapping::request_from_json(desc, &v);
                        self.buf.advance(end);
                        self.shape = Shape::default();
                        return request.map(Some);
                    }
                    Ok(None) => return Ok(None),
                    Err(go_json::Syntax::Eof) if !self.ended => {}
                    Err(e) => return Err(go_json::eof_as("unexpected EOF")(e)),
                }
            }
            if self.buf.len() > self.max_bytes {
                return Err(format!("a request of more than {} bytes", self.max_bytes));
            }
            match self.body.frame().await {
                None => self.ended = true,
                Some(Err(e)) => return Err(e.to_string()),
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.buf.extend_from_slice(&data);
                    }
                }
            }
        }
    }
}

/// Tracks, byte by byte as they arrive, whether the first value of the buffer can be whole:
/// an object or array whose brackets closed (strings skipped), a string that closed, or any
/// other first byte (a scalar or garbage: the parser decides at once).
#[derive(Default)]
struct Shape {
    seen: usize,
    depth: usize,
    started: bool,
    in_string: bool,
    escaped: bool,
    whole: bool,
}

impl Shape {
    fn maybe_whole(&mut self, buf: &[u8]) -> bool {
        while self.seen < buf.len() && !self.whole {
            let c = buf[self.seen];
            self.seen += 1;
            if self.in_string {
                match (self.escaped, c) {
                    (true, _) => self.escaped = false,
                    (false, b'\\') => self.escaped = true,
                    (false, b'"') => {
                        self.in_string = false;
                        self.whole = self.depth == 0;
                    }
                    _ => {}
                }
                continue;
            }
            match c {
                b' ' | b'\t' | b'\n' | b'\r' => continue,
                b'"' => self.in_string = true,
                b'{' | b'[' => self.depth += 1,
                b'}' | b']' => {
                    self.depth = self.depth.saturating_sub(1);
                    self.whole = self.depth == 0;
                }
                _ if !self.started => self.whole = true,
                _ => {}
            }
            self.started = true;
        }
        self.whole
    }
}

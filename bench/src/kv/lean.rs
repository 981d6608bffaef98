//! A lean unary gRPC client for the KV workloads' plaintext connections: hyper's HTTP/2 client
//! and prost, without tonic's channel. On this host the harness shares two CPUs with the server
//! it measures, so the harness's own CPU per request caps what a fast server can show: at 1000
//! clients it spent more per put than ballast did. tonic's channel sends every call through a
//! tower buffer to a worker task and through its origin, user-agent and timeout layers, and
//! its codec frames each message as a stream; here a call is one request on the connection's
//! `SendRequest` (what tonic's worker ends up calling) with the message framed in one buffer.
//! On a secure target the connection is TLS with the client certificate (rustls, ALPN h2, as
//! tonic's) and every call carries the login's token, so the plain and secure twins are measured
//! with the same client. The other workloads use tonic.
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::header::{HeaderValue, CONTENT_TYPE, TE};
use http::{Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};

/// Each call's bound, from its start to the end of its answer (the tonic endpoint's `timeout`,
/// `server::endpoint`, bounds the wait for the answer's headers).
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// The bound of a connection's setup: TCP, TLS and HTTP/2's handshake (the tonic endpoint's
/// `connect_timeout`, 5 s, bounds the TCP connect only).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// gRPC's message prefix: a compression flag and a 4-byte length.
const PREFIX_BYTES: usize = 5;

/// The KV methods the workloads call.
#[derive(Clone, Copy)]
pub enum Method {
    Range,
    Put,
    Txn,
    Authenticate,
}

/// Every method, in declaration order: `Conn::uris` is indexed by `method as usize`.
const METHODS: [Method; 4] = [Method::Range, Method::Put, Method::Txn, Method::Authenticate];
const _: () = {
    let mut i = 0;
    while i < METHODS.len() {
        assert!(METHODS[i] as usize == i, "METHODS lists the methods in declaration order");
        i += 1;
    }
};

impl Method {
    fn path(self) -> &'static str {
        match self {
            Method::Range => "/etcdserverpb.KV/Range",
            Method::Put => "/etcdserverpb.KV/Put",
            Method::Txn => "/etcdserverpb.KV/Txn",
            Method::Authenticate => "/etcdserverpb.Auth/Authenticate",
        }
    }
}

/// One HTTP/2 connection; its driving task runs on the runtime that connected it.
#[derive(Clone)]
pub struct Conn {
    tx: SendRequest<Full<Bytes>>,
    /// Each method's full URI (scheme and authority included, as h2 sends them).
    uris: [Uri; METHODS.len()],
    /// The login's token, sent in the `token` metadata of every call (secure targets).
    token: Option<HeaderValue>,
}

impl Conn {
    /// Connects to `url` (`http://host:port`, or `https://` with `tls`: the server's name and
    /// the client's settings), TCP_NODELAY as the tonic endpoint's.
    pub async fn connect(url: &str, tls: Option<(&str, Arc<rustls::ClientConfig>)>) -> Result<Conn, String> {
        let bad = |e: &dyn std::fmt::Display| format!("connect {url}: {e}");
        let authority = match tls {
            None => url.strip_prefix("http://"),
            Some(_) => url.strip_prefix("https://"),
        }
        .ok_or_else(|| bad(&"URL scheme does not match the target's security"))?;
        let setup = async {
            let tcp = tokio::net::TcpStream::connect(authority).await.map_err(|e| bad(&e))?;
            tcp.set_nodelay(true).map_err(|e| bad(&e))?;
            match tls {
                None => handshake(tcp).await,
                Some((name, cfg)) => {
                    let name = rustls::pki_types::ServerName::try_from(name.to_string()).map_err(|e| bad(&e))?;
                    let stream = tokio_rustls::TlsConnector::from(cfg).connect(name, tcp).await.map_err(|e| bad(&e))?;
                    // As tonic: a server that did not agree on HTTP/2 is refused here.
                    if stream.get_ref().1.alpn_protocol() != Some(b"h2") {
                        return Err(bad(&"the server did not negotiate h2 (ALPN)"));
                    }
                    handshake(stream).await
                }
            }
            .map_err(|e| bad(&e))
        };
        let tx = tokio::time::timeout(CONNECT_TIMEOUT, setup).await.map_err(|_| bad(&"timed out"))??;
        let uri = |m: Method| format!("{url}{}", m.path()).parse::<Uri>().map_err(|e| e.to_string());
        let uris = [uri(METHODS[0])?, uri(METHODS[1])?, uri(METHODS[2])?, uri(METHODS[3])?];
        Ok(Conn { tx, uris, token: None })
    }

    /// This connection's calls carry `token` (a login's, on this connection).
    pub fn with_token(self, token: &str) -> Result<Conn, String> {
        let token = HeaderValue::from_str(token).map_err(|e| format!("token {token:?}: {e}"))?;
        Ok(Conn { token: Some(token), ..self })
    }

    /// Calls `method` with `req`; the answer, or the call's gRPC status or transport error.
    pub async fn unary<Q: prost::Message, A: prost::Message + Default>(&self, method: Method, req: &Q) -> Result<A, String> {
        let body = frame(req);
        let mut request = Request::post(self.uris[method as usize].clone())
            .header(CONTENT_TYPE, "application/grpc")
            .header(TE, "trailers")
            .body(Full::new(body))
            .map_err(|e| e.to_string())?;
        if let Some(t) = &self.token {
            request.headers_mut().insert("token", t.clone());
        }
        let mut tx = self.tx.clone();
        let call = async move {
            tx.ready().await.map_err(|e| format!("transport: {e}"))?;
            let resp = tx.send_request(request).await.map_err(|e| format!("transport: {e}"))?;
            let (head, body) = resp.into_parts();
            if head.status != http::StatusCode::OK {
                return Err(format!("HTTP status {}", head.status));
            }
            let got = body.collect().await.map_err(|e| format!("transport: {e}"))?;
            // A trailers-only answer (an error before any message) has its status in the headers.
            let status = got.trailers().and_then(grpc_status).or_else(|| grpc_status(&head.headers));
            match status {
                Some((0, _)) => unframe(got.to_bytes()),
                Some((code, msg)) => Err(format!("status {code}: {msg}")),
                None => Err("answer without grpc-status".into()),
            }
        };
        tokio::time::timeout(CALL_TIMEOUT, call).await.map_err(|_| "call timed out".to_string())?
    }
}

/// HTTP/2's handshake on `io`; the connection's task is spawned on the current runtime.
async fn handshake<T>(io: T) -> hyper::Result<SendRequest<Full<Bytes>>>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (tx, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new()).handshake(TokioIo::new(io)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(tx)
}

/// `msg` with gRPC's prefix (uncompressed).
fn frame<Q: prost::Message>(msg: &Q) -> Bytes {
    let len = msg.encoded_len();
    let mut buf = BytesMut::with_capacity(PREFIX_BYTES + len);
    buf.put_u8(0);
    buf.put_u32(len as u32);
    msg.encode(&mut buf).expect("the buffer holds the encoded length");
    buf.freeze()
}

/// The one message of a unary answer.
fn unframe<A: prost::Message + Default>(mut data: Bytes) -> Result<A, String> {
    if data.len() < PREFIX_BYTES {
        return Err(format!("answer of {} bytes, no message", data.len()));
    }
    let compressed = data.get_u8();
    let len = data.get_u32() as usize;
    if compressed != 0 || len != data.len() {
        return Err(format!("answer framing: compressed {compressed}, length {len} of {} bytes", data.len()));
    }
    A::decode(data).map_err(|e| format!("answer decode: {e}"))
}

/// (grpc-status, grpc-message) from a header map.
fn grpc_status(h: &http::HeaderMap) -> Option<(i32, String)> {
    let code = h.get("grpc-status")?.to_str().ok()?.parse().ok()?;
    let msg = h.get("grpc-message").and_then(|m| m.to_str().ok()).unwrap_or("").to_string();
    Some((code, msg))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ballast_bench::proto::etcdserverpb::PutRequest;

    #[test]
    fn a_framed_message_reads_back() {
        let req = PutRequest { key: b"k".to_vec(), value: vec![7; 300], ..Default::default() };
        let framed = frame(&req);
        let len = prost::Message::encoded_len(&req);
        assert_eq!(len, 306, "key: 3 bytes; value: tag, 2-byte length, 300 bytes");
        assert_eq!(framed.len(), PREFIX_BYTES + len);
        assert_eq!(&framed[..5], &[0, 0, 0, 1, 50][..], "uncompressed, length 306 big-endian");
        assert_eq!(unframe::<PutRequest>(framed).unwrap(), req);
    }

    #[test]
    fn bad_framing_is_an_error() {
        let framed = frame(&PutRequest { key: b"k".to_vec(), ..Default::default() });
        assert!(unframe::<PutRequest>(framed.slice(..framed.len() - 1)).unwrap_err().contains("length"));
        assert!(unframe::<PutRequest>(Bytes::from_static(&[0, 0])).unwrap_err().contains("no message"));
        let mut compressed = BytesMut::from(&framed[..]);
        compressed[0] = 1;
        assert!(unframe::<PutRequest>(compressed.freeze()).unwrap_err().contains("compressed 1"));
    }

    #[test]
    fn status_comes_from_grpc_headers() {
        let mut h = http::HeaderMap::new();
        assert_eq!(grpc_status(&h), None);
        h.insert("grpc-status", "3".parse().unwrap());
        h.insert("grpc-message", "etcdserver: key is not provided".parse().unwrap());
        assert_eq!(grpc_status(&h), Some((3, "etcdserver: key is not provided".to_string())));
    }
}

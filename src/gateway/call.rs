//! The gateway's gRPC calls, in process: an HTTP request in gRPC's framing handed to the client
//! port's own gRPC router (as etcd's gateway dials its own gRPC server), the answer read back
//! message by message, its status from the trailers.

use axum::body::Body;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, Request};
use http_body_util::BodyExt;
use tower_service::Service;

use super::Route;

/// A gRPC message's prefix: compressed flag, then the length (big endian u32).
const PREFIX_BYTES: usize = 5;

/// `msg` in gRPC's framing.
pub fn frame(msg: &[u8]) -> Bytes {
    let mut buf = BytesMut::with_capacity(PREFIX_BYTES + msg.len());
    buf.put_u8(0);
    buf.put_u32(u32::try_from(msg.len()).expect("a request under 4 GiB"));
    buf.put_slice(msg);
    buf.freeze()
}

/// The gRPC metadata of a gateway request, as grpc-gateway v1 forwards headers:
/// `Authorization` as `authorization` (etcd reads the token there), `Grpc-Metadata-X` as `x`.
pub fn metadata(headers: &HeaderMap) -> HeaderMap {
    let mut meta = HeaderMap::new();
    for (name, value) in headers {
        let name = name.as_str();
        if name == "authorization" {
            meta.append(http::header::AUTHORIZATION, value.clone());
        } else if let Some(key) = name.strip_prefix("grpc-metadata-") {
            if let Ok(key) = http::HeaderName::from_bytes(key.as_bytes()) {
                meta.append(key, value.clone());
            }
        }
    }
    meta
}

/// An open call: its answer, read message by message.
pub struct Call {
    body: Option<Body>,
    buf: BytesMut,
    /// Set when the call failed before any answer (a trailers-only response).
    failed: Option<tonic::Status>,
    trailers: Option<HeaderMap>,
}

impl Call {
    /// Starts `route`'s call with `meta` and the request body `body` (gRPC frames), once this
    /// member has applied the entry its simple token names, if any (as the client port's calls,
    /// `server/client_service.rs`).
    pub async fn open(gateway: &super::Gateway, route: &Route, meta: HeaderMap, body: Body) -> Call {
        if gateway.status.is_learner() && !crate::api::learner_serves(&route.grpc_path) {
            let refused = tonic::Status::from(crate::error::Error::NotSupportedForLearner);
            return Call { body: None, buf: BytesMut::new(), failed: Some(refused), trailers: None };
        }
        if let Some(index) = gateway.auth.token_index_ahead(&meta, gateway.status.applied_index()) {
            crate::auth::wait_applied(index, || gateway.status.applied_index()).await;
        }
        let grpc = &gateway.grpc;
        let mut req = Request::new(body);
        *req.method_mut() = http::Method::POST;
        *req.uri_mut() = route.grpc_path.parse().expect("a gRPC path is a valid URI");
        *req.headers_mut() = meta;
        let h = req.headers_mut();
        h.insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
        h.insert(http::header::TE, HeaderValue::from_static("trailers"));
        let mut service = grpc.clone();
        let resp = match service.call(req).await {
            Ok(resp) => resp,
            Err(never) => match never {},
        };
        let failed = tonic::Status::from_header_map(resp.headers()).filter(|s| s.code() != tonic::Code::Ok);
        Call { body: Some(resp.into_body()), buf: BytesMut::new(), failed, trailers: None }
    }

    /// The next answer message; an error status ends the call; None: it ended well.
    pub async fn next(&mut self) -> Option<Result<Bytes, tonic::Status>> {
        if let Some(status) = self.failed.take() {
            self.body = None;
            return Some(Err(status));
        }
        loop {
            if self.buf.len() >= PREFIX_BYTES {
                let len = u32::from_be_bytes(self.buf[1..PREFIX_BYTES].try_into().expect("4 bytes")) as usize;
                if self.buf.len() >= PREFIX_BYTES + len {
                    self.buf.advance(PREFIX_BYTES);
                    return Some(Ok(self.buf.split_to(len).freeze()));
                }
            }
            let body = self.body.as_mut()?;
            match body.frame().await {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => self.buf.extend_from_slice(&data),
                    Err(frame) => self.trailers = frame.into_trailers().ok(),
                },
                Some(Err(e)) => {
                    self.body = None;
                    return Some(Err(tonic::Status::internal(e.to_string())));
                }
                None => {
                    self.body = None;
                    let status = self.trailers.take().and_then(|t| tonic::Status::from_header_map(&t));
                    return match status {
                        Some(s) if s.code() != tonic::Code::Ok => Some(Err(s)),
                        _ => None,
                    };
                }
            }
        }
    }
}

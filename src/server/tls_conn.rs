//! A TLS connection past its handshake, on its way to the shard that serves it, and what its
//! requests can learn of it.

use std::sync::Arc;

use rustls::pki_types::CertificateDer;

/// A TLS stream whose socket is between threads (`MovingSocket::detach`), and what its
/// requests can learn of it.
pub struct TlsConn {
    pub stream: tokio_rustls::server::TlsStream<super::moving_socket::MovingSocket>,
    pub info: TlsConnectInfo,
}

/// What a request over TLS can learn of its connection (a request extension).
#[derive(Clone)]
pub struct TlsConnectInfo {
    pub remote_addr: Option<std::net::SocketAddr>,
    /// The client's certificate chain, leaf first, when it presented one (verified).
    pub peer_certificates: Option<Arc<Vec<CertificateDer<'static>>>>,
}

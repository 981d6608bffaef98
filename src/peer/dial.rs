//! Dialling a peer URL: `http://` plainly, `https://` with rustls (the peer TLS flags,
//! `server/tls.rs: peer_client_config`) through tonic's custom connector (tonic is built without
//! its own TLS, as for the client listeners).

use std::sync::Arc;

use tonic::transport::{Channel, Endpoint};

use super::{DIAL_TIMEOUT, KEEPALIVE_INTERVAL, KEEPALIVE_TIMEOUT};

/// Why a dial failed: the error with its sources, and whether the peer's host refused the
/// connection (nothing listens at that address: its process is gone).
#[derive(Debug)]
pub struct DialError {
    pub text: String,
    pub refused: bool,
}

impl From<String> for DialError {
    fn from(text: String) -> DialError {
        DialError { text, refused: false }
    }
}

impl From<DialError> for String {
    fn from(e: DialError) -> String {
        e.text
    }
}

impl DialError {
    fn of(e: &(dyn std::error::Error + 'static)) -> DialError {
        let mut refused = false;
        let mut source = Some(e);
        while let Some(s) = source {
            refused |= s.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionRefused);
            source = s.source();
        }
        DialError { text: error_chain(e), refused }
    }
}

/// A connected channel to `url`.
pub async fn connect(url: &str, tls: Option<Arc<rustls::ClientConfig>>) -> Result<Channel, DialError> {
    // tonic is told `http://` in every case: the connector below does the TLS. (With tonic's
    // own TLS compiled in — feature unification does that in test builds, through etcd-client
    // — tonic refuses an `https://` endpoint that has no tonic TLS configuration.)
    let plain = match url.strip_prefix("https://") {
        Some(rest) => format!("http://{rest}"),
        None => url.to_string(),
    };
    let endpoint = Endpoint::from_shared(plain)
        .map_err(|e| DialError::from(e.to_string()))?
        .connect_timeout(DIAL_TIMEOUT)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
        .keep_alive_timeout(KEEPALIVE_TIMEOUT)
        .keep_alive_while_idle(true);
    if !url.starts_with("https://") {
        if !super::dns::resolves_dials() {
            return endpoint.connect().await.map_err(|e| DialError::of(&e));
        }
        let dial = tower::service_fn(|uri: http::Uri| async move {
            let tcp = tcp_connect(&uri, 80).await?;
            Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tcp))
        });
        return endpoint.connect_with_connector(dial).await.map_err(|e| DialError::of(&e));
    }
    let Some(tls) = tls else {
        return Err(format!("cannot dial {url}: an https:// peer needs --peer-cert-file and --peer-key-file").into());
    };
    let connector = tokio_rustls::TlsConnector::from(tls);
    let dial = tower::service_fn(move |uri: http::Uri| {
        let connector = connector.clone();
        async move {
            let host = uri.host().unwrap_or_default().trim_start_matches('[').trim_end_matches(']').to_string();
            let tcp = tcp_connect(&uri, 443).await?;
            let name = rustls::pki_types::ServerName::try_from(host).map_err(std::io::Error::other)?;
            let tls = connector.connect(name, tcp).await?;
            Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tls))
        }
    });
    endpoint.connect_with_connector(dial).await.map_err(|e| DialError::of(&e))
}

/// A TCP connection to `uri`'s host: resolved by the system, or by the test DNS server when
/// one is set (`dns.rs`).
async fn tcp_connect(uri: &http::Uri, default_port: u16) -> std::io::Result<tokio::net::TcpStream> {
    let host = uri.host().unwrap_or_default().trim_start_matches('[').trim_end_matches(']').to_string();
    let port = uri.port_u16().unwrap_or(default_port);
    let tcp = if super::dns::resolves_dials() {
        let addr = tokio::task::spawn_blocking(move || super::dns::resolve_tcp(&host, port)).await.map_err(std::io::Error::other)?.map_err(std::io::Error::other)?;
        tokio::net::TcpStream::connect(addr).await?
    } else {
        tokio::net::TcpStream::connect((host.as_str(), port)).await?
    };
    tcp.set_nodelay(true)?;
    Ok(tcp)
}

/// An error with its sources (tonic's transport error alone says only "transport error").
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

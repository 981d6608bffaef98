//! TLS for the client listeners, from etcd 3.5's flags to one rustls `ServerConfig` (with the
//! `ring` provider), shared by every `https://` listener. etcd's sources for each step:
//! `server/embed/etcd.go` (configurePeerListeners, configureClientListeners),
//! `server/embed/config.go` (ClientSelfCert, updateCipherSuites) and
//! `client/pkg/transport/listener.go` (TLSInfo.ServerConfig), with their error strings.
//!
//! * `--cipher-suites` takes Go's names; an unknown name refuses to start. They choose the TLS
//!   1.2 suites, in the given order (the server's order wins); as in Go, TLS 1.3 suites cannot
//!   be chosen, so a TLS 1.3 client is served whatever the list says. Go names rustls has no
//!   implementation of (CBC, RC4, 3DES, RSA key exchange) are skipped with a warning.
//! * `--tls-min-version` / `--tls-max-version`: TLS1.2 or TLS1.3 (checked in `config`).
//! * `--trusted-ca-file` or `--client-cert-auth` (either, as etcd's `ClientAuth =
//!   RequireAndVerifyClientCert`) require a client certificate signed by the CA file's
//!   certificates (the system's roots without a CA file, as Go's nil `ClientCAs`);
//!   `--client-crl-file` refuses revoked ones during the handshake;
//!   `--client-cert-allowed-hostname` requires one of its names, `--peer-cert-allowed-hostname`
//!   and `--peer-cert-allowed-cn` likewise on the peer listener (`allowed_names.rs`).
//! * `--auto-tls` without certificate and key: `self_cert.rs`. As in etcd, the generated
//!   certificate replaces all client TLS settings (no client certificates are asked for).
//! * ALPN offers `h2` and `http/1.1`: gRPC, and HTTP/1.1 for /health, /metrics and the rest.
//! * The certificate, key and CRL files are read again when they change (`cert_reload.rs`), as
//!   etcd reads them at each handshake; the CA file is read once at start, as etcd's.
//!
//! Differences from etcd: a changed file takes effect up to a second later, and one that does
//! not load is logged while the previous contents stay in use (etcd fails the handshakes); a
//! CRL must be signed by the certificate issuer it lists (etcd compares serial numbers only); a
//! bad file refuses to start where etcd refuses the handshakes.

use std::sync::Arc;

use rustls::crypto::ring::cipher_suite as suites;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig, SupportedCipherSuite};

use super::allowed_names::{Allowed, AllowedNames, AllowedServer};
use super::cert_reload::{Loader, Reloading, ReloadingCert, ReloadingCrl};
use super::self_cert;
use crate::config::{tls_version, Config, TlsFlags};
use crate::log;

/// What a Go cipher suite name means here.
#[derive(Clone, Copy)]
enum GoSuite {
    /// A TLS 1.2 suite rustls implements.
    Tls12(SupportedCipherSuite),
    /// A TLS 1.3 suite: Go ignores these in its configuration (always on), and so does ballast.
    Tls13,
    /// A suite Go knows and rustls does not implement.
    Unsupported,
}

/// Go's `crypto/tls` names (`tls.CipherSuites()`, `tls.InsecureCipherSuites()`) and etcd's two
/// aliases (`tlsutil.GetCipherSuite`); None for a name etcd does not know.
fn go_suite(name: &str) -> Option<GoSuite> {
    use GoSuite::*;
    Some(match name {
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256" => Tls12(suites::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256),
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384" => Tls12(suites::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384),
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256" => Tls12(suites::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256),
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384" => Tls12(suites::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384),
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256" | "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305" => {
            Tls12(suites::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256)
        }
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256" | "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305" => {
            Tls12(suites::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256)
        }
        "TLS_AES_128_GCM_SHA256" | "TLS_AES_256_GCM_SHA384" | "TLS_CHACHA20_POLY1305_SHA256" => Tls13,
        "TLS_RSA_WITH_RC4_128_SHA"
        | "TLS_RSA_WITH_3DES_EDE_CBC_SHA"
        | "TLS_RSA_WITH_AES_128_CBC_SHA"
        | "TLS_RSA_WITH_AES_256_CBC_SHA"
        | "TLS_RSA_WITH_AES_128_CBC_SHA256"
        | "TLS_RSA_WITH_AES_128_GCM_SHA256"
        | "TLS_RSA_WITH_AES_256_GCM_SHA384"
        | "TLS_ECDHE_ECDSA_WITH_RC4_128_SHA"
        | "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA"
        | "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA"
        | "TLS_ECDHE_RSA_WITH_RC4_128_SHA"
        | "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA"
        | "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA"
        | "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA"
        | "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256"
        | "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256" => Unsupported,
        _ => return None,
    })
}

/// The TLS 1.2 suites `--cipher-suites` chooses, in its order; None when it is not given (the
/// library's defaults). An unknown name is etcd's `unexpected TLS cipher suite "X"`.
fn chosen_tls12_suites(names: &[String]) -> Result<Option<Vec<SupportedCipherSuite>>, String> {
    if names.is_empty() {
        return Ok(None);
    }
    let mut chosen = Vec::new();
    for name in names {
        match go_suite(name) {
            None => return Err(format!("unexpected TLS cipher suite {name:?}")),
            Some(GoSuite::Tls12(s)) => chosen.push(s),
            Some(GoSuite::Tls13) => {}
            Some(GoSuite::Unsupported) => log::warn(
                "TLS cipher suite is not supported by ballast (rustls has no CBC, RC4, 3DES or RSA key exchange suites); ignored",
                &[("cipher-suite", name.clone())],
            ),
        }
    }
    Ok(Some(chosen))
}

/// The client listeners' TLS configuration: None when no client URL is `https://` (as etcd,
/// which then reads no certificate file at all). Also checks the peer TLS flags as etcd does
/// at start, before the client side. Errors are etcd's.
pub fn client_config(cfg: &Config) -> Result<Option<Arc<ServerConfig>>, String> {
    let tls12 = chosen_tls12_suites(&cfg.cipher_suites)?;
    check_peer_flags(cfg)?;
    let mut info = cfg.client_tls.clone();
    if info.auto_tls {
        if !info.is_empty() {
            log::warn("ignoring client auto TLS since certs given", &[]);
        } else {
            if info.client_cert_auth || !info.trusted_ca_file.is_empty() || !info.crl_file.is_empty() {
                log::warn(
                    "--auto-tls replaces the client TLS settings, as etcd's: client certificates are not required",
                    &[],
                );
            }
            let hosts = cfg.listen_client_urls.iter().filter_map(|u| url_host(u)).collect();
            let dir = cfg.data_dir.join("fixtures").join("client");
            let (cert, key) = self_cert::ensure(&dir, hosts, cfg.self_signed_cert_validity_years)
                .map_err(|e| format!("failed to get client self-signed certs: {e}"))?;
            info = TlsFlags { cert_file: cert, key_file: key, ..TlsFlags::default() };
        }
    }
    let mut secure = false;
    for url in &cfg.listen_client_urls {
        let scheme = url.split("://").next().unwrap_or("");
        match scheme {
            "https" | "unixs" if info.is_empty() => {
                return Err(format!(
                    "TLS key/cert (--cert-file, --key-file) must be provided for client url {url} with HTTPS scheme"
                ))
            }
            "https" | "unixs" => secure = true,
            _ => {
                if !info.is_empty() {
                    log::warn("scheme is HTTP while key and cert files are present; ignoring key and cert files", &[("client-url", url.clone())]);
                }
                if info.client_cert_auth {
                    log::warn("scheme is HTTP while --client-cert-auth is enabled; ignoring client cert auth for this URL", &[("client-url", url.clone())]);
                }
            }
        }
    }
    if !secure {
        return Ok(None);
    }
    if !info.crl_file.is_empty() && !requires_client_cert(&info) {
        log::warn("--client-crl-file has no effect: no client certificates are asked for (no --client-cert-auth or --trusted-ca-file)", &[]);
    }
    let config = server_config(&info, tls12, &cfg.tls_min_version, &cfg.tls_max_version, Side::Client)?;
    log::info(
        "starting with client TLS",
        &[
            ("tls-info", tls_info_text(&info)),
            ("cipher-suites", format!("[{}]", cfg.cipher_suites.join(" "))),
            ("client-cert-required", requires_client_cert(&info).to_string()),
        ],
    );
    Ok(Some(Arc::new(config)))
}

/// The peer listeners' TLS (etcd's configurePeerListeners): None when no --listen-peer-urls
/// is `https://`.
pub fn peer_server_config(cfg: &Config) -> Result<Option<Arc<ServerConfig>>, String> {
    if !cfg.listen_peer_urls.iter().any(|u| u.starts_with("https://")) {
        return Ok(None);
    }
    let Some((info, _)) = peer_tls_info(cfg)? else { return Ok(None) };
    let config = server_config(&info, None, &cfg.tls_min_version, &cfg.tls_max_version, Side::Peer)?;
    log::info("starting with peer TLS", &[("tls-info", tls_info_text(&info)), ("client-cert-required", requires_client_cert(&info).to_string())]);
    Ok(Some(Arc::new(config)))
}

/// The peer TLS settings in force, and whether they are --peer-auto-tls's self-signed
/// certificate (etcd's PeerSelfCert: made in `<data-dir>/fixtures/peer` for the
/// --listen-peer-urls hosts; it replaces every other peer TLS setting, and peers dialled with it
/// are not verified, as etcd's selfCert). None: no peer TLS.
fn peer_tls_info(cfg: &Config) -> Result<Option<(TlsFlags, bool)>, String> {
    let info = &cfg.peer_tls;
    if !info.auto_tls {
        return Ok((!info.is_empty()).then(|| (info.clone(), false)));
    }
    if !info.is_empty() {
        log::warn("ignoring peer auto TLS since certs given", &[]);
        return Ok(Some((info.clone(), false)));
    }
    let hosts = cfg.listen_peer_urls.iter().filter_map(|u| url_host(u)).collect();
    let dir = cfg.data_dir.join("fixtures").join("peer");
    let (cert, key) = self_cert::ensure(&dir, hosts, cfg.self_signed_cert_validity_years).map_err(|e| format!("failed to get peer self-signed certs: {e}"))?;
    Ok(Some((TlsFlags { cert_file: cert, key_file: key, ..TlsFlags::default() }, true)))
}

/// How this member dials `https://` peers (etcd's peer transport TLSInfo.ClientConfig): the peer
/// certificate and key as client certificate (read again when they change), --peer-trusted-ca-file's
/// certificates (the system's roots without one) to verify the peer, or no verification with
/// --peer-auto-tls's certificate. None without peer TLS settings.
pub fn peer_client_config(cfg: &Config) -> Result<Option<Arc<rustls::ClientConfig>>, String> {
    let Some((info, self_signed)) = peer_tls_info(cfg)? else { return Ok(None) };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let versions = protocol_versions(&provider, &cfg.tls_min_version, &cfg.tls_max_version)?;
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone()).with_protocol_versions(&versions).map_err(|e| format!("tls: {e}"))?;
    let builder = if self_signed {
        builder.dangerous().with_custom_certificate_verifier(Arc::new(self_cert::Unverified(provider.clone())))
    } else if let Some(allowed) = Allowed::parse(&info.allowed_hostnames, &info.allowed_cns, "peer")? {
        let roots = Arc::new(peer_roots(&info)?);
        let inner = rustls::client::WebPkiServerVerifier::builder_with_provider(roots, provider.clone()).build().map_err(|e| format!("tls: {e}"))?;
        builder.dangerous().with_custom_certificate_verifier(Arc::new(AllowedServer { inner, allowed }))
    } else {
        builder.with_root_certificates(peer_roots(&info)?)
    };
    let mut config = builder.with_client_cert_resolver(Arc::new(reloading_cert(&info, provider, Side::Peer)?));
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Some(Arc::new(config)))
}

/// The certificates a dialled peer's must chain to: --peer-trusted-ca-file's, or the system's.
fn peer_roots(info: &TlsFlags) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    if info.trusted_ca_file.is_empty() {
        roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    } else {
        for cert in load_certs(&info.trusted_ca_file, "CA certificate")? {
            roots.add(cert).map_err(|e| format!("tls: {e}"))?;
        }
    }
    Ok(roots)
}

/// etcd's configurePeerListeners, as far as it applies at start: an `https://` peer URL
/// needs a certificate and key (or --peer-auto-tls), and they must load. The configuration is
/// built and dropped (`peer_server_config` builds the one used).
fn check_peer_flags(cfg: &Config) -> Result<(), String> {
    let info = &cfg.peer_tls;
    if info.auto_tls && info.is_empty() {
        return Ok(()); // `peer_tls_info` makes the certificate
    }
    for url in cfg.listen_peer_urls.iter().filter(|u| u.starts_with("https://")) {
        if info.is_empty() {
            let addr = url_host(url).unwrap_or_default();
            return Err(format!("cannot listen on TLS for {addr}: KeyFile and CertFile are not presented"));
        }
        server_config(info, None, &cfg.tls_min_version, &cfg.tls_max_version, Side::Peer)?;
    }
    Ok(())
}

/// `host:port` of a URL (the part etcd's self-signed certificate and errors name).
fn url_host(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    Some(rest.split('/').next().unwrap_or("").to_string())
}

/// etcd's `TLSInfo.ServerConfig`: ClientAuth is RequireAndVerifyClientCert when a CA file is
/// given or --client-cert-auth is on.
fn requires_client_cert(info: &TlsFlags) -> bool {
    !info.trusted_ca_file.is_empty() || info.client_cert_auth
}

/// etcd's `TLSInfo.String`.
fn tls_info_text(info: &TlsFlags) -> String {
    format!(
        "cert = {}, key = {}, trusted-ca = {}, client-cert-auth = {}, crl-file = {}",
        info.cert_file, info.key_file, info.trusted_ca_file, info.client_cert_auth, info.crl_file
    )
}

/// One side's rustls configuration (etcd's `TLSInfo.ServerConfig`).
fn server_config(info: &TlsFlags, tls12: Option<Vec<SupportedCipherSuite>>, min: &str, max: &str, side: Side) -> Result<ServerConfig, String> {
    if info.key_file.is_empty() || info.cert_file.is_empty() {
        return Err(format!("KeyFile and CertFile must both be present[key: {}, cert: {}]", info.key_file, info.cert_file));
    }
    let mut provider = rustls::crypto::ring::default_provider();
    let server_order = tls12.is_some();
    if let Some(tls12) = tls12 {
        provider.cipher_suites.retain(|s| s.tls13().is_some());
        provider.cipher_suites.extend(tls12);
    }
    let versions = protocol_versions(&provider, min, max)?;
    let provider = Arc::new(provider);
    let key_provider = provider.clone();
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(|e| format!("tls: {e}"))?;
    let builder = if requires_client_cert(info) {
        builder.with_client_cert_verifier(client_verifier(info, provider, side)?)
    } else {
        builder.with_no_client_auth()
    };
    let mut config = builder.with_cert_resolver(Arc::new(reloading_cert(info, key_provider, side)?));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    config.ignore_client_order = server_order;
    Ok(config)
}

/// The certificate and key files of `info`, read again when they change (for serving, and
/// for a peer to dial with).
fn reloading_cert(info: &TlsFlags, provider: Arc<CryptoProvider>, side: Side) -> Result<ReloadingCert, String> {
    let (cert_file, key_file) = (info.cert_file.clone(), info.key_file.clone());
    let load: Loader<Arc<CertifiedKey>> = Box::new(move || {
        let certs = load_certs(&cert_file, "certificate")?;
        let key = load_key(&key_file)?;
        let key = CertifiedKey::from_der(certs, key, &provider).map_err(|e| match e {
            rustls::Error::InconsistentKeys(_) => "tls: private key does not match public key".to_string(),
            other => format!("tls: {other}"),
        })?;
        Ok(Arc::new(key))
    });
    let files = [info.cert_file.as_str(), info.key_file.as_str()];
    let what = match side {
        Side::Client => "client TLS certificate",
        Side::Peer => "peer TLS certificate",
    };
    Ok(ReloadingCert(Reloading::new(&files, what, load)?))
}

/// Which listeners a TLS configuration is for (flag names in errors, file names in the log).
#[derive(Clone, Copy)]
enum Side {
    Client,
    Peer,
}

/// The protocol versions --tls-min-version and --tls-max-version allow (TLS 1.2 by default
/// at least), less TLS 1.2 when --cipher-suites left it no suite.
fn protocol_versions(provider: &CryptoProvider, min: &str, max: &str) -> Result<Vec<&'static rustls::SupportedProtocolVersion>, String> {
    const TLS12: u16 = 0x0303;
    const TLS13: u16 = 0x0304;
    let min = tls_version(min)?.max(TLS12);
    let max = match tls_version(max)? {
        0 => TLS13,
        v => v,
    };
    let has_tls12_suites = provider.cipher_suites.iter().any(|s| s.tls13().is_none());
    let mut versions = Vec::new();
    if min <= TLS12 && TLS12 <= max {
        if has_tls12_suites {
            versions.push(&rustls::version::TLS12);
        } else {
            log::warn("no TLS 1.2 cipher suite is left from --cipher-suites; TLS 1.2 is off", &[]);
        }
    }
    if max >= TLS13 {
        versions.push(&rustls::version::TLS13);
    }
    if versions.is_empty() {
        return Err("none of --cipher-suites can be served by ballast with --tls-max-version TLS1.2".to_string());
    }
    Ok(versions)
}

/// Requires a client certificate signed by the CA file's certificates (the system's roots
/// when there is no CA file), not revoked by the CRL file's lists if one is given.
fn client_verifier(info: &TlsFlags, provider: Arc<CryptoProvider>, side: Side) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, String> {
    let mut roots = RootCertStore::empty();
    if info.trusted_ca_file.is_empty() {
        let native = rustls_native_certs::load_native_certs();
        for e in &native.errors {
            log::warn("cannot load a system root certificate", &[("error", e.to_string())]);
        }
        roots.add_parsable_certificates(native.certs);
    } else {
        for cert in load_certs(&info.trusted_ca_file, "CA certificate")? {
            roots.add(cert).map_err(|e| format!("x509: {e} ({})", info.trusted_ca_file))?;
        }
    }
    let (roots, info_) = (Arc::new(roots), info.clone());
    let build = move || -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, String> {
        let mut builder = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone());
        if !info_.crl_file.is_empty() {
            builder = builder.with_crls(load_crls(&info_.crl_file)?).allow_unknown_revocation_status();
        }
        builder.build().map_err(|e| match e {
            rustls::server::VerifierBuilderError::NoRootAnchors => {
                let from = if info_.trusted_ca_file.is_empty() { "the system" } else { info_.trusted_ca_file.as_str() };
                format!("no CA certificate to verify client certificates with (from {from})")
            }
            other => format!("{} ({})", other, info_.crl_file),
        })
    };
    let verifier = if info.crl_file.is_empty() {
        build()?
    } else {
        Arc::new(ReloadingCrl::new(Reloading::new(&[info.crl_file.as_str()], "client CRL file", Box::new(build))?))
    };
    let flag_side = match side {
        Side::Client => "client",
        Side::Peer => "peer",
    };
    Ok(match Allowed::parse(&info.allowed_hostnames, &info.allowed_cns, flag_side)? {
        Some(allowed) => Arc::new(AllowedNames { inner: verifier, allowed }),
        None => verifier,
    })
}

/// A file's bytes, or Go's `open <path>: <reason>` error.
fn read(path: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| {
        let reason = match e.kind() {
            std::io::ErrorKind::NotFound => "no such file or directory".to_string(),
            std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
            _ => e.to_string(),
        };
        format!("open {path}: {reason}")
    })
}

/// The PEM certificates of a file (Go's `tls.X509KeyPair` message when there are none).
fn load_certs(path: &str, what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("tls: cannot parse {what} file {path}: {e}"))?;
    if certs.is_empty() {
        return Err(format!("tls: failed to find any PEM data in certificate input ({path})"));
    }
    Ok(certs)
}

/// The private key of a PEM file: PKCS#8, PKCS#1 (RSA) or SEC1 (EC), as Go reads them.
fn load_key(path: &str) -> Result<PrivateKeyDer<'static>, String> {
    let pem = read(path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => format!("tls: failed to find any PEM data in key input ({path})"),
        other => format!("tls: failed to parse private key {path}: {other}"),
    })
}

/// The revocation lists of a CRL file, PEM or DER (as Go's `x509.ParseCRL` takes either).
fn load_crls(path: &str) -> Result<Vec<CertificateRevocationListDer<'static>>, String> {
    let bytes = read(path)?;
    let pem: Vec<_> = CertificateRevocationListDer::pem_slice_iter(&bytes)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("x509: cannot parse CRL file {path}: {e}"))?;
    if pem.is_empty() {
        return Ok(vec![CertificateRevocationListDer::from(bytes)]);
    }
    Ok(pem)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cipher_suite_names_are_go_names() {
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(chosen_tls12_suites(&[]).unwrap().is_none());
        let chosen = chosen_tls12_suites(&names(&[
            "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
            "TLS_AES_128_GCM_SHA256",
            "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305",
            "TLS_RSA_WITH_AES_128_CBC_SHA",
        ]))
        .unwrap()
        .unwrap();
        let chosen: Vec<_> = chosen.iter().map(|s| s.suite()).collect();
        assert_eq!(
            chosen,
            vec![
                rustls::CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
                rustls::CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256
            ]
        );
        assert_eq!(
            chosen_tls12_suites(&names(&["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "BOGUS"])).unwrap_err(),
            "unexpected TLS cipher suite \"BOGUS\""
        );
        // etcd's StringsValue: an explicitly empty flag is one empty name.
        assert_eq!(chosen_tls12_suites(&names(&[""])).unwrap_err(), "unexpected TLS cipher suite \"\"");
    }

    #[test]
    fn versions_follow_min_max_and_suites() {
        let all = rustls::crypto::ring::default_provider();
        let v = |p: &CryptoProvider, min, max| protocol_versions(p, min, max).map(|v| v.iter().map(|v| v.version).collect::<Vec<_>>());
        use rustls::ProtocolVersion::{TLSv1_2, TLSv1_3};
        assert_eq!(v(&all, "TLS1.2", ""), Ok(vec![TLSv1_2, TLSv1_3]));
        assert_eq!(v(&all, "", "TLS1.2"), Ok(vec![TLSv1_2]));
        assert_eq!(v(&all, "TLS1.3", ""), Ok(vec![TLSv1_3]));
        let mut only13 = rustls::crypto::ring::default_provider();
        only13.cipher_suites.retain(|s| s.tls13().is_some());
        assert_eq!(v(&only13, "TLS1.2", ""), Ok(vec![TLSv1_3]));
        assert!(v(&only13, "TLS1.2", "TLS1.2").is_err());
    }
}

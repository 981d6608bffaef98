//! TLS on the client listeners (issue 20, part 1): etcd's flags, driven with etcd 3.5's own
//! etcdctl, the etcd-client crate over TLS and a rustls client that can be limited to one
//! protocol version and cipher suite; refusals and error texts compared with etcd 3.5 where
//! that is cheap. Certificates are made here with rcgen in each test's temp dir.

mod common;
#[path = "common/certs.rs"]
mod certs;
#[path = "common/etcd.rs"]
mod etcd;

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

use certs::{Ca, Leaf};
use common::Server;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

// ---------------------------------------------------------------------------------------------
// Clients

/// etcd 3.5's etcdctl against `endpoint` (a URL), with `tls` flags, failing after 4 s.
fn etcdctl(endpoint: &str, tls: &[&str], args: &[&str]) -> Output {
    let ctl = etcd::find_etcdctl35().unwrap_or_else(|e| panic!("etcdctl 3.5 is needed for this test: {e}"));
    Command::new(ctl)
        .env("ETCDCTL_API", "3")
        .args(["--endpoints", endpoint, "--command-timeout", "4s", "--dial-timeout", "2s"])
        .args(tls)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// etcdctl that must succeed; its stdout.
fn ctl_ok(endpoint: &str, tls: &[&str], args: &[&str]) -> String {
    let out = etcdctl(endpoint, tls, args);
    assert!(out.status.success(), "etcdctl {tls:?} {args:?} against {endpoint} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// etcdctl that must fail; its stderr.
fn ctl_refused(endpoint: &str, tls: &[&str], args: &[&str]) -> String {
    let out = etcdctl(endpoint, tls, args);
    assert!(!out.status.success(), "etcdctl {tls:?} {args:?} against {endpoint} succeeded: {}", String::from_utf8_lossy(&out.stdout));
    String::from_utf8(out.stderr).unwrap()
}

static TLS12_ONLY: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS12];
static TLS13_ONLY: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];

/// A rustls client: which versions and suites it offers (None: rustls's defaults), what it
/// trusts, which certificate it presents.
struct Probe<'a> {
    ca: &'a str,
    /// The name the server's certificate must be valid for.
    server_name: &'static str,
    identity: Option<&'a Leaf>,
    versions: &'static [&'static rustls::SupportedProtocolVersion],
    suites: Option<Vec<rustls::SupportedCipherSuite>>,
}

impl Probe<'_> {
    fn new(ca: &str) -> Probe<'_> {
        Probe { ca, server_name: "localhost", identity: None, versions: rustls::ALL_VERSIONS, suites: None }
    }

    /// An HTTP/1.1 GET /health over TLS: the negotiated cipher suite and the response, or the
    /// error that ended the connection (handshake refused, alert after it, ...).
    fn health(&self, addr: &str) -> Result<(rustls::CipherSuite, String), String> {
        let mut provider = rustls::crypto::ring::default_provider();
        if let Some(suites) = &self.suites {
            provider.cipher_suites = suites.clone();
        }
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(self.ca).unwrap() {
            roots.add(cert.unwrap()).unwrap();
        }
        let builder = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
            .with_protocol_versions(self.versions)
            .unwrap()
            .with_root_certificates(roots);
        let config = match self.identity {
            None => builder.with_no_client_auth(),
            Some(leaf) => {
                let certs = CertificateDer::pem_file_iter(&leaf.cert).unwrap().map(Result::unwrap).collect();
                builder.with_client_auth_cert(certs, PrivateKeyDer::from_pem_file(&leaf.key).unwrap()).unwrap()
            }
        };
        let mut conn = rustls::ClientConnection::new(Arc::new(config), ServerName::try_from(self.server_name).unwrap()).unwrap();
        let mut tcp = std::net::TcpStream::connect(addr).map_err(|e| e.to_string())?;
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut tls = rustls::Stream::new(&mut conn, &mut tcp);
        write!(tls, "GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").map_err(|e| e.to_string())?;
        let mut response = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match tls.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => response.extend_from_slice(&buf[..n]),
                // The server may close without close_notify once it has answered.
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !response.is_empty() => break,
                Err(e) => return Err(e.to_string()),
            }
        }
        let suite = conn.negotiated_cipher_suite().map(|s| s.suite()).ok_or("no cipher suite")?;
        Ok((suite, String::from_utf8_lossy(&response).into_owned()))
    }

    /// Asserts /health answers healthy over TLS.
    fn healthy(&self, addr: &str) -> rustls::CipherSuite {
        let (suite, response) = self.health(addr).unwrap_or_else(|e| panic!("TLS GET /health on {addr}: {e}"));
        assert!(response.starts_with("HTTP/1.1 200") && response.contains(r#""health":"true""#), "{response}");
        suite
    }
}

async fn tls_client(port: u16, ca: &Ca, identity: Option<&Leaf>) -> Result<etcd_client::Client, etcd_client::Error> {
    let mut tls = etcd_client::TlsOptions::new()
        .ca_certificate(etcd_client::Certificate::from_pem(std::fs::read(&ca.cert_file).unwrap()))
        .domain_name("localhost");
    if let Some(leaf) = identity {
        tls = tls.identity(etcd_client::Identity::from_pem(std::fs::read(&leaf.cert).unwrap(), std::fs::read(&leaf.key).unwrap()));
    }
    let options = etcd_client::ConnectOptions::new().with_tls(tls).with_timeout(Duration::from_secs(4)).with_connect_timeout(Duration::from_secs(2));
    etcd_client::Client::connect([format!("https://127.0.0.1:{port}")], Some(options)).await
}

/// `--cacert` only: server authentication.
fn cacert(ca: &Ca) -> Vec<&str> {
    vec!["--insecure-transport=false", "--cacert", ca.ca()]
}

/// `--cacert --cert --key`: mutual TLS.
fn mutual<'a>(ca: &'a Ca, leaf: &'a Leaf) -> Vec<&'a str> {
    vec!["--insecure-transport=false", "--cacert", ca.ca(), "--cert", leaf.cert(), "--key", leaf.key()]
}

// ---------------------------------------------------------------------------------------------
// Serving

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_only_listener_serves_grpc_and_http_over_tls() {
    let dir = common::fresh_dir("tls-only");
    let ca = Ca::new(&dir, "main");
    let server_cert = ca.leaf("server", 10);
    let s = Server::start_urls(&["https://127.0.0.1:{port}"], &["--cert-file", server_cert.cert(), "--key-file", server_cert.key()]);
    let url = s.url("https://127.0.0.1:{port}");
    assert!(s.log().contains("serving client traffic securely"), "{}", s.log());

    assert_eq!(ctl_ok(&url, &cacert(&ca), &["put", "k1", "v1"]).trim(), "OK");
    assert_eq!(ctl_ok(&url, &cacert(&ca), &["get", "k1", "--print-value-only"]).trim(), "v1");
    let mut client = tls_client(s.port, &ca, None).await.expect("etcd-client over TLS");
    client.put("k2", "v2", None).await.unwrap();
    let got = client.get("k1", None).await.unwrap();
    assert_eq!(got.kvs()[0].value(), b"v1");
    assert_eq!(ctl_ok(&url, &cacert(&ca), &["get", "k2", "--print-value-only"]).trim(), "v2");
    // HTTP/1.1 endpoints over the same TLS, and the advertised URL is the https one.
    Probe::new(ca.ca()).healthy(&s.endpoint);
    assert!(ctl_ok(&url, &cacert(&ca), &["member", "list"]).contains(&url));

    // Plaintext is not served on a TLS-only port; a client that does not trust the CA fails.
    ctl_refused(&s.url("http://127.0.0.1:{port}"), &[], &["get", "k1"]);
    assert!(!s.http_get("/health").contains("health"), "plaintext HTTP answered on a TLS-only port");
    let other = Ca::new(&dir, "other");
    ctl_refused(&url, &cacert(&other), &["get", "k1"]);
    assert!(s.log().contains("rejected connection"), "{}", s.log());
}

/// Many clients connecting at once (a reconnect storm): each handshake is done on a front-end
/// thread and its stream handed to a shard mid-connection; every client's own writes and reads
/// come back, on one shard and on two, and a client still connected keeps being served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_clients_connecting_at_once_are_all_served() {
    const CLIENTS: usize = 48;
    let dir = common::fresh_dir("tls-storm");
    let ca = Ca::new(&dir, "main");
    let server_cert = ca.leaf("server", 10);
    for shards in ["1", "2"] {
        let s = Server::start_urls(&["https://127.0.0.1:{port}"], &["--cert-file", server_cert.cert(), "--key-file", server_cert.key(), "--shards", shards]);
        let mut before = tls_client(s.port, &ca, None).await.expect("etcd-client over TLS");
        before.put("storm/before", "b", None).await.unwrap();
        let storm = (0..CLIENTS).map(|i| {
            let ca = &ca;
            let port = s.port;
            async move {
                let mut c = tls_client(port, ca, None).await.map_err(|e| format!("client {i}: {e}"))?;
                let key = format!("storm/{i:03}");
                c.put(key.as_str(), format!("v{i}"), None).await.map_err(|e| format!("client {i} put: {e}"))?;
                let got = c.get(key.as_str(), None).await.map_err(|e| format!("client {i} get: {e}"))?;
                Ok::<Vec<u8>, String>(got.kvs()[0].value().to_vec())
            }
        });
        let answers = tokio::time::timeout(Duration::from_secs(60), futures_util::future::join_all(storm)).await.expect("the storm answered within 60 s");
        for (i, a) in answers.into_iter().enumerate() {
            assert_eq!(a.unwrap_or_else(|e| panic!("{shards} shard(s): {e}")), format!("v{i}").into_bytes());
        }
        let all = before.get("storm/", Some(etcd_client::GetOptions::new().with_prefix().with_count_only())).await.unwrap();
        assert_eq!(all.count(), CLIENTS as i64 + 1, "{shards} shard(s)");
        assert!(!s.log().contains("rejected connection"), "{}", s.log());
    }
}

#[test]
fn http_and_https_ports_side_by_side() {
    let dir = common::fresh_dir("tls-mixed");
    let ca = Ca::new(&dir, "main");
    let server_cert = ca.leaf("server", 10);
    let s = Server::start_urls(
        &["http://127.0.0.1:{port}", "https://127.0.0.1:{port2}"],
        &["--cert-file", server_cert.cert(), "--key-file", server_cert.key()],
    );
    let plain = s.url("http://127.0.0.1:{port}");
    let secure = s.url("https://127.0.0.1:{port2}");
    let log = s.log();
    assert!(log.contains("scheme is HTTP while key and cert files are present; ignoring key and cert files"), "{log}");

    ctl_ok(&plain, &[], &["put", "from-plain", "1"]);
    ctl_ok(&secure, &cacert(&ca), &["put", "from-tls", "2"]);
    assert_eq!(ctl_ok(&secure, &cacert(&ca), &["get", "from-plain", "--print-value-only"]).trim(), "1");
    assert_eq!(ctl_ok(&plain, &[], &["get", "from-tls", "--print-value-only"]).trim(), "2");
    assert!(s.http_get("/health").contains(r#""health":"true""#));
    Probe::new(ca.ca()).healthy(&format!("127.0.0.1:{}", s.port2));

    // Each port serves only its own scheme.
    ctl_refused(&s.url("https://127.0.0.1:{port}"), &cacert(&ca), &["get", "from-tls"]);
    ctl_refused(&s.url("http://127.0.0.1:{port2}"), &[], &["get", "from-tls"]);
    assert!(Probe::new(ca.ca()).health(&s.endpoint).is_err(), "TLS answered on the plaintext port");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_port_serves_plaintext_and_tls() {
    let dir = common::fresh_dir("tls-both");
    let ca = Ca::new(&dir, "main");
    let server_cert = ca.leaf("server", 10);
    let s = Server::start_urls(
        &["http://127.0.0.1:{port}", "https://127.0.0.1:{port}"],
        &["--cert-file", server_cert.cert(), "--key-file", server_cert.key()],
    );
    let log = s.log();
    assert!(log.contains("serving insecure client requests") && log.contains("serving client traffic securely"), "{log}");
    let plain = s.url("http://127.0.0.1:{port}");
    let secure = s.url("https://127.0.0.1:{port}");
    ctl_ok(&plain, &[], &["put", "a", "plain"]);
    ctl_ok(&secure, &cacert(&ca), &["put", "b", "tls"]);
    assert_eq!(ctl_ok(&plain, &[], &["get", "b", "--print-value-only"]).trim(), "tls");
    assert_eq!(ctl_ok(&secure, &cacert(&ca), &["get", "a", "--print-value-only"]).trim(), "plain");
    // gRPC from the etcd-client crate both ways, HTTP/1.1 both ways.
    let mut tls = tls_client(s.port, &ca, None).await.unwrap();
    assert_eq!(tls.get("a", None).await.unwrap().kvs()[0].value(), b"plain");
    let mut plain_client = s.client().await;
    assert_eq!(plain_client.get("b", None).await.unwrap().kvs()[0].value(), b"tls");
    assert!(s.http_get("/health").contains(r#""health":"true""#));
    Probe::new(ca.ca()).healthy(&s.endpoint);
    // Many connections of both kinds at once, dealt over both front-end threads.
    let mut clients = Vec::new();
    for i in 0..8 {
        clients.push(if i % 2 == 0 { tls_client(s.port, &ca, None).await.unwrap() } else { s.client().await });
    }
    for (i, c) in clients.iter_mut().enumerate() {
        c.put(format!("many/{i}"), "x", None).await.unwrap();
    }
    let many = tls.get("many/", Some(etcd_client::GetOptions::new().with_prefix().with_count_only())).await.unwrap();
    assert_eq!(many.count(), 8);
}

/// Replaces `to` with a copy of `from` in one rename (a new inode, as a rotation tool does).
fn replace_file(from: &Path, to: &Path) {
    let tmp = to.with_extension("tmp");
    std::fs::copy(from, &tmp).unwrap();
    std::fs::rename(&tmp, to).unwrap();
}

/// A rotated certificate and key are served without a restart (etcd reads them at each
/// handshake; ballast looks at the files at most once a second): the server's certificate
/// moves from one CA to another. A replacement that does not load keeps the current pair.
#[test]
fn rotated_certificate_is_served_without_a_restart() {
    let dir = common::fresh_dir("tls-rotate");
    let (old, new) = (Ca::new(&dir, "old"), Ca::new(&dir, "new"));
    let first = old.leaf("server", 10);
    let served = Leaf { cert: dir.join("served.pem"), key: dir.join("served-key.pem") };
    replace_file(&first.cert, &served.cert);
    replace_file(&first.key, &served.key);
    let s = Server::start_urls(&["https://127.0.0.1:{port}"], &["--cert-file", served.cert(), "--key-file", served.key()]);
    Probe::new(old.ca()).healthy(&s.endpoint);
    assert!(Probe::new(new.ca()).health(&s.endpoint).is_err(), "served a certificate of the new CA before the rotation");

    let second = new.leaf("server", 20);
    replace_file(&second.key, &served.key);
    replace_file(&second.cert, &served.cert);
    // Bounded: 50 handshakes 100 ms apart; the files are looked at once a second.
    let rotated = (0..50).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        Probe::new(new.ca()).health(&s.endpoint).is_ok()
    });
    assert!(rotated, "the rotated certificate was not served; log:\n{}", s.log());
    Probe::new(new.ca()).healthy(&s.endpoint);
    assert!(Probe::new(old.ca()).health(&s.endpoint).is_err(), "the old certificate is still served");
    assert!(s.log().contains("client TLS certificate reloaded"), "{}", s.log());

    std::fs::write(&served.key, "not a key").unwrap();
    let warned = (0..50).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        Probe::new(new.ca()).healthy(&s.endpoint);
        s.log().contains("cannot reload the client TLS certificate")
    });
    assert!(warned, "{}", s.log());
}

// ---------------------------------------------------------------------------------------------
// Client certificates

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_cert_auth_requires_a_certificate_from_the_trusted_ca() {
    let dir = common::fresh_dir("tls-mutual");
    let ca = Ca::new(&dir, "main");
    let server_cert = ca.leaf("server", 10);
    let client_cert = ca.leaf("client", 11);
    let other = Ca::new(&dir, "other");
    let stranger = other.leaf("client", 11);
    let s = Server::start_urls(
        &["https://127.0.0.1:{port}"],
        &["--cert-file", server_cert.cert(), "--key-file", server_cert.key(), "--client-cert-auth", "--trusted-ca-file", ca.ca()],
    );
    let url = s.url("https://127.0.0.1:{port}");
    ctl_ok(&url, &mutual(&ca, &client_cert), &["put", "k", "v"]);
    assert_eq!(ctl_ok(&url, &mutual(&ca, &client_cert), &["get", "k", "--print-value-only"]).trim(), "v");
    let mut client = tls_client(s.port, &ca, Some(&client_cert)).await.unwrap();
    assert_eq!(client.get("k", None).await.unwrap().kvs()[0].value(), b"v");

    // No certificate, or one from another CA: refused, by etcdctl, etcd-client and rustls.
    ctl_refused(&url, &cacert(&ca), &["get", "k"]);
    ctl_refused(&url, &mutual(&ca, &stranger), &["get", "k"]);
    let refused = match tls_client(s.port, &ca, None).await {
        Err(_) => true,
        Ok(mut c) => c.get("k", None).await.is_err(),
    };
    assert!(refused, "etcd-client without a certificate was served");
    let mut probe = Probe::new(ca.ca());
    probe.health(&s.endpoint).expect_err("no client certificate was accepted");
    probe.identity = Some(&stranger);
    probe.health(&s.endpoint).expect_err("a certificate of another CA was accepted");
    probe.identity = Some(&client_cert);
    probe.healthy(&s.endpoint);
    // TLS 1.2 refuses during the handshake proper.
    probe.versions = TLS12_ONLY;
    probe.identity = None;
    probe.health(&s.endpoint).expect_err("TLS 1.2 without a certificate was accepted");
    assert!(s.log().contains("rejected connection"));
}

/// etcd's ServerConfig asks for (and verifies) client certificates as soon as a CA file is
/// given, --client-cert-auth or not.
#[test]
fn trusted_ca_file_alone_requires_client_certificates() {
    let dir = common::fresh_dir("tls-ca-only");
    let ca = Ca::new(&dir, "main");
    let server_cert = ca.leaf("server", 10);
    let client_cert = ca.leaf("client", 11);
    let s = Server::start_urls(&["https://127.0.0.1:{port}"], &["--cert-file", server_cert.cert(), "--key-file", server_cert.key(), "--trusted-ca-file", ca.ca()]);
    let url = s.url("https://127.0.0.1:{port}");
    ctl_refused(&url, &cacert(&ca), &["put", "k", "v"]);
    ctl_ok(&url, &mutual(&ca, &client_cert), &["put", "k", "v"]);
}

#[test]
fn revoked_client_certificate_is_refused() {
    let dir = common::fresh_dir("tls-crl");
    let ca = Ca::new(&dir, "main");
    let server_cert = ca.leaf("server", 10);
    let good = ca.leaf("good", 11);
    let revoked = ca.leaf("revoked", 12);
    let crl = ca.crl(&[12]);
    let s = Server::start_urls(
        &["https://127.0.0.1:{port}"],
        &[
            "--cert-file",
            server_cert.cert(),
            "--key-file",
            server_cert.key(),
            "--client-cert-auth",
            "--trusted-ca-file",
            ca.ca(),
            "--client-crl-file",
            crl.to_str().unwrap(),
        ],
    );
    let url = s.url("https://127.0.0.1:{port}");
    ctl_ok(&url, &mutual(&ca, &good), &["put", "k", "v"]);
    ctl_refused(&url, &mutual(&ca, &revoked), &["get", "k"]);
    let mut probe = Probe::new(ca.ca());
    probe.identity = Some(&revoked);
    let err = probe.health(&s.endpoint).expect_err("a revoked certificate was accepted");
    assert!(err.contains("Revoked") || err.contains("revoked"), "{err}");
    probe.identity = Some(&good);
    probe.healthy(&s.endpoint);
    assert!(s.log().contains("Revoked"), "the refusal is logged: {}", s.log());

    // A new CRL file takes effect without a restart (etcd reads it after each handshake; the
    // file is looked at once a second here): bounded, 50 handshakes 100 ms apart.
    let crl_again = ca.crl(&[11, 12]);
    assert_eq!(crl_again, crl);
    let refused = (0..50).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        probe.health(&s.endpoint).is_err()
    });
    assert!(refused, "the new CRL was not used; log:\n{}", s.log());
    assert!(s.log().contains("client CRL file reloaded"), "{}", s.log());
}

/// `--client-cert-allowed-hostname`: a client certificate must be valid for the name in its
/// subject alternative names (its common name does not count), as etcd 3.5.1 decides for the
/// same certificates; a hostname or an IP address.
#[test]
fn client_cert_allowed_hostname_as_etcd() {
    let dir = common::fresh_dir("tls-allowed-host");
    let ca = Ca::new(&dir, "main");
    let server_cert = ca.leaf("server", 10);
    let named = ca.leaf_for("named", 11, &["allowed.example"]);
    let ip = ca.leaf_for("ip", 12, &["10.1.2.3"]);
    let cn_only = ca.leaf_for("allowed.example", 13, &["other.example"]);
    let outcomes = |addr: &str| -> Vec<bool> {
        [&named, &ip, &cn_only]
            .into_iter()
            .map(|leaf| {
                let mut probe = Probe::new(ca.ca());
                probe.identity = Some(leaf);
                probe.health(addr).is_ok()
            })
            .collect()
    };
    for (allowed, expected) in [("allowed.example", [true, false, false]), ("10.1.2.3", [false, true, false])] {
        let flags = [
            "--cert-file", server_cert.cert(), "--key-file", server_cert.key(), "--trusted-ca-file", ca.ca(), "--client-cert-auth",
            "--client-cert-allowed-hostname", allowed,
        ];
        let s = Server::start_urls(&["https://127.0.0.1:{port}"], &flags);
        let ours = outcomes(&s.endpoint);
        assert_eq!(ours, expected, "allowed {allowed}");
        assert!(s.log().contains("client certificate authentication failed"), "{}", s.log());
        assert!(!s.log().contains("not implemented"), "{}", s.log());
        drop(s);
        let etcd = etcd::Etcd::start_tls(&flags);
        assert_eq!(outcomes(&etcd.endpoint), ours, "etcd 3.5.1, allowed {allowed}");
    }
}

// ---------------------------------------------------------------------------------------------
// Cipher suites and versions

/// --cipher-suites limits TLS 1.2 to the listed suites; a TLS 1.2 client offering none of
/// them is refused, and TLS 1.3 is served whatever the list (Go cannot configure TLS 1.3
/// suites), as etcd 3.5.8 and later (--tls-max-version). The TLS 1.2 probes against etcd
/// 3.5.1 give the same outcomes; that etcd serves no TLS 1.3 at all (3.5.0-3.5.7 set the
/// maximum to TLS 1.2, so that the suites apply to every client).
#[test]
fn cipher_suite_mismatch_refuses_the_handshake_as_etcd() {
    use rustls::crypto::ring::cipher_suite::{TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256};
    use rustls::CipherSuite;
    let dir = common::fresh_dir("tls-ciphers");
    let ca = Ca::new(&dir, "main");
    let server_cert = ca.leaf("server", 10);
    let flags = ["--cert-file", server_cert.cert(), "--key-file", server_cert.key(), "--cipher-suites", "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"];
    let s = Server::start_urls(&["https://127.0.0.1:{port}"], &flags);
    let outcomes = |addr: &str| {
        let mut probe = Probe::new(ca.ca());
        probe.versions = TLS12_ONLY;
        probe.suites = Some(vec![TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256]);
        let mismatch = probe.health(addr).map(|r| r.0);
        probe.suites = Some(vec![TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256]);
        let listed = probe.health(addr).map(|r| r.0);
        probe.versions = TLS13_ONLY;
        probe.suites = None;
        let tls13 = probe.health(addr).map(|r| r.0);
        (mismatch, listed, tls13)
    };
    let (mismatch, listed, tls13) = outcomes(&s.endpoint);
    assert!(mismatch.is_err(), "a TLS 1.2 client without a listed suite was served: {mismatch:?}");
    assert_eq!(listed, Ok(CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256));
    assert!(tls13.is_ok(), "{tls13:?}");
    // etcdctl (Go's default suites include the listed one) works, TLS 1.2 only too.
    let url = s.url("https://127.0.0.1:{port}");
    ctl_ok(&url, &cacert(&ca), &["put", "k", "v"]);
    drop(s);
    let s12 = Server::start_urls(&["https://127.0.0.1:{port}"], &[&flags[..], &["--tls-max-version", "TLS1.2"]].concat());
    ctl_ok(&s12.url("https://127.0.0.1:{port}"), &cacert(&ca), &["put", "k", "v"]);
    let mut probe = Probe::new(ca.ca());
    probe.versions = TLS13_ONLY;
    probe.health(&s12.endpoint).expect_err("TLS 1.3 served above --tls-max-version TLS1.2");
    drop(s12);

    let etcd = etcd::Etcd::start_tls(&flags);
    let (e_mismatch, e_listed, e_tls13) = outcomes(&etcd.endpoint);
    assert!(e_mismatch.is_err(), "etcd served the mismatch: {e_mismatch:?}");
    assert_eq!(e_listed, listed);
    assert!(e_tls13.is_err(), "etcd 3.5.1 served TLS 1.3: {e_tls13:?}");
}

// ---------------------------------------------------------------------------------------------
// --auto-tls

#[test]
fn auto_tls_generates_a_certificate_in_the_data_dir() {
    let mut s = Server::start_urls(&["https://127.0.0.1:{port}"], &["--auto-tls", "--self-signed-cert-validity", "2"]);
    let skip = ["--insecure-transport=false", "--insecure-skip-tls-verify"];
    ctl_ok(&s.url("https://127.0.0.1:{port}"), &skip, &["put", "k", "v"]);
    assert_eq!(ctl_ok(&s.url("https://127.0.0.1:{port}"), &skip, &["get", "k", "--print-value-only"]).trim(), "v");
    let fixtures = s.data_dir.join("fixtures/client");
    let cert = std::fs::read(fixtures.join("cert.pem")).expect("fixtures/client/cert.pem");
    use std::os::unix::fs::PermissionsExt;
    let key_mode = std::fs::metadata(fixtures.join("key.pem")).unwrap().permissions().mode();
    assert_eq!(key_mode & 0o777, 0o600);
    // The certificate is for the listen host, signed by itself: trusting it as a CA works.
    let self_signed = fixtures.join("cert.pem").to_str().unwrap().to_string();
    let mut probe = Probe::new(&self_signed);
    probe.server_name = "127.0.0.1";
    probe.healthy(&s.endpoint);
    assert!(s.log().contains("automatically generate certificates"));
    // A restart keeps the pair.
    s.terminate();
    s.restart();
    ctl_ok(&s.url("https://127.0.0.1:{port}"), &skip, &["get", "k"]);
    assert_eq!(std::fs::read(fixtures.join("cert.pem")).unwrap(), cert, "the certificate was made again");
    assert!(!s.log().contains("automatically generate certificates"));
}

// ---------------------------------------------------------------------------------------------
// Bad flags

/// Flag combinations etcd refuses at start, with etcd 3.5's error texts (from the etcd
/// binary where it has the flags).
#[test]
fn bad_tls_flags_refuse_to_start_with_etcds_errors() {
    let dir = common::fresh_dir("tls-bad");
    let ca = Ca::new(&dir, "main");
    let server_cert = ca.leaf("server", 10);
    let missing = dir.join("missing.pem");
    let missing = missing.to_str().unwrap();
    let peer_port = common::free_port().to_string();
    let peer = format!("https://127.0.0.1:{peer_port}");
    let peer_cluster = format!("default={peer}");
    let https = ["https://127.0.0.1:{port}"];
    let http = ["http://127.0.0.1:{port}"];
    let cases: Vec<(&str, Vec<&str>)> = vec![
        ("https", vec![]),
        ("http", vec!["--cipher-suites", "TLS_BOGUS_SUITE"]),
        ("https", vec!["--cert-file", server_cert.cert()]),
        ("https", vec!["--cert-file", missing, "--key-file", server_cert.key()]),
        ("https", vec!["--auto-tls", "--self-signed-cert-validity", "0"]),
        ("http", vec!["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer, "--initial-cluster", &peer_cluster]),
    ];
    for (scheme, flags) in cases {
        let etcd_error = etcd::Etcd::start_error(scheme, &flags);
        let urls: &[&str] = if scheme == "https" { &https } else { &http };
        let (log, port) = Server::refused_urls(urls, &flags);
        let expected = etcd_error.replace("{port}", &port.to_string());
        assert!(log_says(&log, &expected), "flags {flags:?}: etcd says {expected:?}; ballast's log:\n{log}");
    }
    // etcd 3.5.23's own checks (the 3.5.1 binary here predates these flags).
    for (flags, error) in [
        (vec!["--tls-min-version", "TLS1.3", "--tls-max-version", "TLS1.2"], "min version (TLS1.3) is greater than max version (TLS1.2)"),
        (vec!["--tls-min-version", "TLS1.1"], "unexpected TLS version \"TLS1.1\" (must be one of: TLS1.2, TLS1.3)"),
        (
            vec!["--tls-min-version", "TLS1.3", "--cipher-suites", "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"],
            "cipher suites cannot be configured when only TLS1.3 is enabled",
        ),
    ] {
        let (log, _) = Server::refused_urls(&https, &flags);
        assert!(log_says(&log, error), "flags {flags:?}: expected {error:?}; log:\n{log}");
    }
}

/// Whether a line of the log says `text`: in the message of a JSON line, or a plain line
/// (configuration errors are printed as they are, as etcd's flag errors).
fn log_says(log: &str, text: &str) -> bool {
    log.lines().any(|line| match serde_json::from_str::<serde_json::Value>(line) {
        Ok(v) => v["msg"].as_str().is_some_and(|m| m.contains(text)),
        Err(_) => line.contains(text),
    })
}

// ---------------------------------------------------------------------------------------------
// Unix sockets (the other listener kind of etcd's client URLs)

/// etcd's socket names: `unix://localhost:<port>` is the file `localhost:<port>` in the
/// working directory. (An absolute `unix:///path` listens too, but etcdctl 3.5 then sends the
/// path as the HTTP/2 authority, which the HTTP/2 server here refuses as malformed.)
#[test]
fn unix_socket_listener_serves_beside_tcp() {
    let s = Server::start_urls(&["http://127.0.0.1:{port}", "unix://localhost:{port2}"], &[]);
    let name = format!("localhost:{}", s.port2);
    let unix_url = format!("unix://{name}");
    let ctl = etcd::find_etcdctl35().unwrap();
    let out = Command::new(ctl)
        .current_dir(&s.dir)
        .args(["--endpoints", &unix_url, "--command-timeout", "4s", "put", "over", "unix"])
        .output()
        .unwrap();
    assert!(out.status.success(), "etcdctl over {unix_url}: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(ctl_ok(&s.url("http://127.0.0.1:{port}"), &[], &["get", "over", "--print-value-only"]).trim(), "unix");
    // HTTP over the socket too.
    let mut conn = std::os::unix::net::UnixStream::connect(s.dir.join(&name)).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(conn, "GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").unwrap();
    let mut response = String::new();
    let _ = conn.read_to_string(&mut response);
    assert!(response.contains(r#""health":"true""#), "{response}");
    // Stopped, it removes its socket file, as etcd (Go's unix listener unlinks it on close).
    let mut s = s;
    assert!(s.dir.join(&name).exists());
    s.terminate();
    assert!(!s.dir.join(&name).exists(), "the socket file {name} is left after a graceful stop");
    // unixs:// is refused at start rather than served without TLS.
    let (log, _) = Server::refused_urls(&["http://127.0.0.1:{port}", "unixs://localhost:{port2}"], &["--auto-tls"]);
    assert!(log_says(&log, "unixs:// (TLS on a unix socket) is not supported yet"), "{log}");
}

// ---------------------------------------------------------------------------------------------
// Common names as users

/// A gRPC channel to `port` over TLS presenting `leaf`.
async fn tls_channel(port: u16, ca: &Ca, leaf: &Leaf) -> tonic::transport::Channel {
    use tonic::transport::{Certificate, ClientTlsConfig, Identity};
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(std::fs::read(&ca.cert_file).unwrap()))
        .domain_name("localhost")
        .identity(Identity::from_pem(std::fs::read(&leaf.cert).unwrap(), std::fs::read(&leaf.key).unwrap()));
    let endpoint = tonic::transport::Channel::from_shared(format!("https://127.0.0.1:{port}")).unwrap();
    endpoint.tls_config(tls).unwrap().connect_timeout(Duration::from_secs(4)).timeout(Duration::from_secs(10)).connect().await.unwrap()
}

/// "OK", or the error's code and message.
fn outcome<T>(r: Result<tonic::Response<T>, tonic::Status>) -> String {
    match r {
        Ok(_) => "OK".into(),
        Err(e) => format!("{:?}: {}", e.code(), e.message()),
    }
}

/// A request with the metadata `meta`.
fn request<T>(message: T, meta: &[(&'static str, &str)]) -> tonic::Request<T> {
    let mut req = tonic::Request::new(message);
    for (k, v) in meta {
        req.metadata_mut().insert(*k, v.parse().unwrap());
    }
    req
}

/// root (root role) and alice (readwrite on a/), auth on: set up as the certificate `root`.
async fn cn_users(port: u16, ca: &Ca, root: &Leaf) {
    use ballast::proto::authpb::{permission::Type, Permission};
    use ballast::proto::etcdserverpb::{auth_client::AuthClient, *};
    let mut auth = AuthClient::new(tls_channel(port, ca, root).await);
    auth.user_add(AuthUserAddRequest { name: "root".into(), password: "rootpw".into(), ..Default::default() }).await.unwrap();
    auth.user_grant_role(AuthUserGrantRoleRequest { user: "root".into(), role: "root".into() }).await.unwrap();
    auth.user_add(AuthUserAddRequest { name: "alice".into(), password: "alicepw".into(), ..Default::default() }).await.unwrap();
    auth.role_add(AuthRoleAddRequest { name: "a".into() }).await.unwrap();
    let perm = Permission { perm_type: Type::Readwrite as i32, key: b"a/".to_vec(), range_end: b"a0".to_vec() };
    auth.role_grant_permission(AuthRoleGrantPermissionRequest { name: "a".into(), perm: Some(perm) }).await.unwrap();
    auth.user_grant_role(AuthUserGrantRoleRequest { user: "alice".into(), role: "a".into() }).await.unwrap();
    auth.auth_enable(AuthEnableRequest {}).await.unwrap();
}

/// Who a certificate is, per call: UserList (root only), Range of x (root only) and of a/1
/// (alice too), each "OK" or the error.
async fn who_is(port: u16, ca: &Ca, leaf: &Leaf, meta: &[(&'static str, &str)]) -> String {
    use ballast::proto::etcdserverpb::{auth_client::AuthClient, kv_client::KvClient, AuthUserListRequest, RangeRequest};
    let channel = tls_channel(port, ca, leaf).await;
    let list = outcome(AuthClient::new(channel.clone()).user_list(request(AuthUserListRequest {}, meta)).await);
    let mut kv = KvClient::new(channel);
    let x = outcome(kv.range(request(RangeRequest { key: b"x".to_vec(), ..Default::default() }, meta)).await);
    let a = outcome(kv.range(request(RangeRequest { key: b"a/1".to_vec(), ..Default::default() }, meta)).await);
    format!("UserList {list}; get x {x}; get a/1 {a}")
}

/// With --client-cert-auth the user is the certificate's subject common name as Go's x509 reads
/// it (pkix.Name): the last CN attribute; a CN as UTF8String, PrintableString, TeletexString,
/// IA5String or BMPString (UTF-16) decoded. A certificate without a CN is the user "" (etcd's
/// AuthInfo{Username: ""}): permission denied on KV, `user name is empty` on admin calls; the
/// `grpcgateway-accept` metadata makes it nobody (etcd's AuthInfoFromTLS). Compared with etcd 3.5.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn common_name_is_read_as_go_reads_it() {
    use rcgen::{DistinguishedName, DnType, DnValue};
    let dir = common::fresh_dir("tls-cn");
    let ca = Ca::new(&dir, "cn");
    let server = ca.leaf("server", 1);
    // A second CN attribute: rcgen keeps one value per type, so the CN's OID as a custom type.
    let cn_again = || DnType::CustomDnType(vec![2, 5, 4, 3]);
    let subject = |attrs: Vec<(DnType, DnValue)>| {
        let mut dn = DistinguishedName::new();
        for (t, v) in attrs {
            dn.push(t, v);
        }
        dn
    };
    let utf8 = |s: &str| DnValue::Utf8String(s.into());
    let certs: Vec<(&str, Leaf)> = [
        ("root", subject(vec![(DnType::CommonName, utf8("root"))])),
        ("alice-then-root", subject(vec![(DnType::CommonName, utf8("alice")), (cn_again(), utf8("root"))])),
        ("root-then-alice", subject(vec![(DnType::CommonName, utf8("root")), (cn_again(), utf8("alice"))])),
        ("bmp-root", subject(vec![(DnType::CommonName, DnValue::BmpString("root".try_into().unwrap()))])),
        ("t61-root", subject(vec![(DnType::CommonName, DnValue::TeletexString("root".try_into().unwrap()))])),
        ("ia5-root", subject(vec![(DnType::CommonName, DnValue::Ia5String("root".try_into().unwrap()))])),
        ("printable-alice", subject(vec![(DnType::OrganizationName, utf8("org")), (DnType::CommonName, DnValue::PrintableString("alice".try_into().unwrap()))])),
        ("no-cn", subject(vec![(DnType::OrganizationName, utf8("org")), (DnType::OrganizationalUnitName, utf8("unit"))])),
    ]
    .into_iter()
    .enumerate()
    .map(|(i, (name, dn))| (name, ca.leaf_subject(name, dn, 10 + i as u64)))
    .collect();
    let flags = ["--cert-file", server.cert(), "--key-file", server.key(), "--trusted-ca-file", ca.ca(), "--client-cert-auth", "--bcrypt-cost", "4"];
    let etcd = etcd::Etcd::start_tls(&flags);
    let ballast = Server::start_urls(&["https://127.0.0.1:{port}"], &flags);
    let mut differences = Vec::new();
    for port in [etcd.port(), ballast.port] {
        cn_users(port, &ca, &certs[0].1).await;
    }
    let gateway_accept = [("grpcgateway-accept", "application/json")];
    let cases = certs.iter().map(|(name, leaf)| (name.to_string(), leaf, &[][..])).chain([("root +grpcgateway-accept".to_string(), &certs[0].1, &gateway_accept[..])]);
    let mut etcd_saw = Vec::new();
    for (name, leaf, meta) in cases {
        let want = who_is(etcd.port(), &ca, leaf, meta).await;
        let got = who_is(ballast.port, &ca, leaf, meta).await;
        if want != got {
            differences.push(format!("{name}:\n  etcd:    {want}\n  ballast: {got}"));
        }
        etcd_saw.push(format!("{name}: {want}"));
    }
    assert!(differences.is_empty(), "{}", differences.join("\n"));
    let etcd_saw = etcd_saw.join("\n");
    assert!(etcd_saw.contains("alice-then-root: UserList OK"), "{etcd_saw}");
    assert!(etcd_saw.contains("no-cn: UserList InvalidArgument: etcdserver: user name is empty; get x PermissionDenied"), "{etcd_saw}");
}

//! The secure targets (`etcd-3.5+tls-auth`, `ballast-1shard+tls-auth`, ...): mutual TLS on the
//! client URL and etcd's auth on, the same settings for etcd and ballast.
//!
//! * Certificates: made at the start of a run with rcgen into `<work-dir>/tls/` (a CA, a server
//!   certificate for 127.0.0.1 and localhost, a client certificate with common name
//!   `bench-client`, which names no user: every request is authorised by its token).
//! * Server flags: `--cert-file --key-file --trusted-ca-file --client-cert-auth --auth-token
//!   simple` (etcd's default token type) and an `https://` client URL.
//! * Auth: once the server answers, the harness adds `root` (role root), the role `bench` with
//!   READWRITE on the prefixes the KV workloads use (`pre/`, `cas/`, `bench/`), the user `bench`
//!   with that role, and enables auth (etcdctl's `user add`, `role add`, `role grant-permission
//!   --prefix`, `user grant-role`, `auth enable`), at the servers' default bcrypt cost.
//! * Clients: every connection is TLS with the client certificate, logs in once as `bench`
//!   (Authenticate on that connection) and sends the token in the `token` metadata of every
//!   request, as etcd's Go client does.
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ballast_bench::proto::authpb::{permission, Permission, UserAddOptions};
use ballast_bench::proto::etcdserverpb::auth_client::AuthClient;
use ballast_bench::proto::etcdserverpb::{
    AuthEnableRequest, AuthRoleAddRequest, AuthRoleGrantPermissionRequest, AuthUserAddRequest,
    AuthUserGrantRoleRequest, AuthenticateRequest,
};
use tonic::metadata::AsciiMetadataValue;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

/// The suffix of a secure target's name.
pub const SUFFIX: &str = "+tls-auth";
/// The user the load clients log in as, and its role.
const USER: &str = "bench";
const PASSWORD: &str = "bench-password";
const ROOT_PASSWORD: &str = "root-password";
/// The key prefixes of the KV workloads (preloaded keys, txn-cas keys, readiness and compactor).
const PREFIXES: [&str; 3] = ["pre/", "cas/", "bench/"];
/// The common name of the client certificate: not a user, so only the token authorises.
const CLIENT_CN: &str = "bench-client";

/// A token, as sent in the `token` metadata.
pub type Token = AsciiMetadataValue;

/// The certificate files of a run and the client's TLS settings.
pub struct Secure {
    ca: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
    tls: ClientTlsConfig,
    /// The same client settings for the KV workloads' lean client (`kv/lean.rs`).
    lean_tls: Arc<rustls::ClientConfig>,
}

/// The server name the clients check the server's certificate against.
const SERVER_NAME: &str = "localhost";

/// rustls settings equal to `ClientTlsConfig`'s: the run's CA, the client certificate, ALPN h2.
fn lean_tls(ca_pem: &str, client_pem: &str, client_key_pem: &str) -> Result<Arc<rustls::ClientConfig>, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let bad = |e: &dyn std::fmt::Display| format!("client TLS settings: {e}");
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).map_err(|e| bad(&e))?).map_err(|e| bad(&e))?;
    let chain = vec![CertificateDer::from_pem_slice(client_pem.as_bytes()).map_err(|e| bad(&e))?];
    let key = PrivateKeyDer::from_pem_slice(client_key_pem.as_bytes()).map_err(|e| bad(&e))?;
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(&e))?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|e| bad(&e))?;
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    // tonic builds a fresh config per connection, so no session is resumed; nor here.
    cfg.resumption = rustls::client::Resumption::disabled();
    Ok(Arc::new(cfg))
}

/// Writes `pem` to `dir/name`.
fn write(dir: &Path, name: &str, pem: &str) -> Result<PathBuf, String> {
    let p = dir.join(name);
    std::fs::write(&p, pem).map_err(|e| format!("write {}: {e}", p.display()))?;
    Ok(p)
}

/// A leaf certificate signed by `issuer` for 127.0.0.1 and localhost, good for server and client
/// authentication: (certificate PEM, key PEM).
fn leaf(cn: &str, issuer: &rcgen::Issuer<'_, &rcgen::KeyPair>) -> Result<(String, String), String> {
    let bad = |e: rcgen::Error| format!("certificate {cn}: {e}");
    let sans = vec!["127.0.0.1".to_string(), "localhost".to_string()];
    let mut params = rcgen::CertificateParams::new(sans).map_err(bad)?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    params.extended_key_usages = vec![
        rcgen::ExtendedKeyUsagePurpose::ServerAuth,
        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let key = rcgen::KeyPair::generate().map_err(bad)?;
    let cert = params.signed_by(&key, issuer).map_err(bad)?;
    Ok((cert.pem(), key.serialize_pem()))
}

impl Secure {
    /// Makes a CA, a server and a client certificate (ECDSA P-256) in `dir` (created).
    pub fn generate(dir: &Path) -> Result<Secure, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
        let bad = |e: rcgen::Error| format!("CA certificate: {e}");
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(bad)?;
        ca.distinguished_name
            .push(rcgen::DnType::CommonName, "ballast-bench CA");
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let ca_key = rcgen::KeyPair::generate().map_err(bad)?;
        let ca_pem = ca.self_signed(&ca_key).map_err(bad)?.pem();
        let issuer = rcgen::Issuer::from_params(&ca, &ca_key);
        let (server_pem, server_key_pem) = leaf("ballast-bench server", &issuer)?;
        let (client_pem, client_key_pem) = leaf(CLIENT_CN, &issuer)?;
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&ca_pem))
            .identity(Identity::from_pem(&client_pem, &client_key_pem))
            .domain_name(SERVER_NAME);
        let lean_tls = lean_tls(&ca_pem, &client_pem, &client_key_pem)?;
        write(dir, "client.pem", &client_pem)?;
        write(dir, "client-key.pem", &client_key_pem)?;
        Ok(Secure {
            ca: write(dir, "ca.pem", &ca_pem)?,
            server_cert: write(dir, "server.pem", &server_pem)?,
            server_key: write(dir, "server-key.pem", &server_key_pem)?,
            tls,
            lean_tls,
        })
    }

    /// The server name and client settings of a lean TLS connection (`kv/lean.rs`).
    pub fn lean_tls(&self) -> (&'static str, Arc<rustls::ClientConfig>) {
        (SERVER_NAME, self.lean_tls.clone())
    }

    /// The login of the bench user.
    pub fn login_request() -> AuthenticateRequest {
        AuthenticateRequest {
            name: USER.into(),
            password: PASSWORD.into(),
        }
    }

    /// The server's TLS and auth flags (the same for etcd and ballast).
    pub fn server_flags(&self) -> Vec<String> {
        let p = |p: &PathBuf| p.to_string_lossy().into_owned();
        vec![
            "--cert-file".into(),
            p(&self.server_cert),
            "--key-file".into(),
            p(&self.server_key),
            "--trusted-ca-file".into(),
            p(&self.ca),
            "--client-cert-auth".into(),
            "--auth-token".into(),
            "simple".into(),
        ]
    }

    /// A TLS connection to `url` (https) presenting the client certificate; not logged in.
    pub async fn channel(&self, url: &str) -> Result<Channel, String> {
        let endpoint = crate::server::endpoint(url)?.tls_config(self.tls.clone()).map_err(|e| format!("tls config: {e}"))?;
        crate::server::dial(endpoint, url).await
    }

    /// Logs in as the bench user on `ch`: the token its requests carry.
    pub async fn login(&self, ch: &Channel) -> Result<Token, String> {
        let req = Secure::login_request();
        let token = AuthClient::new(ch.clone())
            .authenticate(req)
            .await
            .map_err(|e| format!("authenticate as {USER}: {e}"))?
            .into_inner()
            .token;
        token
            .parse()
            .map_err(|e| format!("token {token:?} is not ASCII metadata: {e}"))
    }

    /// Adds root and the bench user and role, then enables auth, on the server at `url` (auth
    /// off: no token needed yet).
    pub async fn enable_auth(&self, url: &str) -> Result<(), String> {
        let mut a = AuthClient::new(self.channel(url).await?);
        let fail = |what: &str, e: tonic::Status| format!("auth setup: {what}: {e}");
        for (name, password) in [("root", ROOT_PASSWORD), (USER, PASSWORD)] {
            let req = AuthUserAddRequest {
                name: name.into(),
                password: password.into(),
                options: Some(UserAddOptions { no_password: false }),
                hashed_password: String::new(),
            };
            a.user_add(req).await.map_err(|e| fail("user add", e))?;
        }
        let role = AuthRoleAddRequest { name: USER.into() };
        a.role_add(role).await.map_err(|e| fail("role add", e))?;
        for prefix in PREFIXES {
            let perm = Permission {
                perm_type: permission::Type::Readwrite as i32,
                key: prefix.as_bytes().to_vec(),
                range_end: prefix_end(prefix.as_bytes()),
            };
            let req = AuthRoleGrantPermissionRequest {
                name: USER.into(),
                perm: Some(perm),
            };
            a.role_grant_permission(req)
                .await
                .map_err(|e| fail("role grant-permission", e))?;
        }
        for (user, role) in [("root", "root"), (USER, USER)] {
            let req = AuthUserGrantRoleRequest {
                user: user.into(),
                role: role.into(),
            };
            a.user_grant_role(req)
                .await
                .map_err(|e| fail("user grant-role", e))?;
        }
        a.auth_enable(AuthEnableRequest {})
            .await
            .map_err(|e| fail("auth enable", e))?;
        Ok(())
    }
}

/// The end of the range of keys starting with `p` (etcd's GetPrefixRangeEnd).
fn prefix_end(p: &[u8]) -> Vec<u8> {
    let mut end = p.to_vec();
    while let Some(&last) = end.last() {
        if last < 0xff {
            *end.last_mut().expect("not empty") += 1;
            return end;
        }
        end.pop();
    }
    vec![0]
}

/// `msg` as a request carrying `token` (none: exactly what tonic makes of a bare message).
pub fn with_token<T>(msg: T, token: &Option<Token>) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    if let Some(t) = token {
        req.metadata_mut().insert("token", t.clone());
    }
    req
}

/// How a client reaches a server: its URL, and on a secure target the TLS settings and login.
#[derive(Clone)]
pub struct Link {
    pub url: String,
    pub secure: Option<Arc<Secure>>,
}

impl Link {
    /// A connection, and on a secure target the token of a login on it.
    pub async fn open(&self) -> Result<(Channel, Option<Token>), String> {
        match &self.secure {
            None => Ok((crate::server::connect(&self.url).await?, None)),
            Some(s) => {
                let ch = s.channel(&self.url).await?;
                let token = s.login(&ch).await?;
                Ok((ch, Some(token)))
            }
        }
    }
}

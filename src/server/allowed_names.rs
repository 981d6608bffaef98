//! `--client-cert-allowed-hostname`, `--peer-cert-allowed-hostname` and
//! `--peer-cert-allowed-cn`: a client certificate must, besides being verified against the CA,
//! be valid for one of the hostnames or IP addresses (its subject alternative names; Go's
//! `VerifyHostname`, which ignores the common name), or carry one of the allowed common names
//! exactly (etcd 3.5's `TLSInfo.baseConfig` VerifyPeerCertificate; the two are mutually
//! exclusive, as there). It applies only where client certificates are asked for (etcd's check
//! runs while the client's certificates are processed, which Go does only then). The peer
//! flags also apply to the certificates of the peers a member dials (`AllowedServer`), as
//! etcd's baseConfig serves both ends. A refused certificate ends the handshake with etcd's
//! error text.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::verify_server_name;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::ParsedCertificate;
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, OtherError, SignatureScheme};

/// etcd's error when no allowed name matches (rustls shows it with `Debug`, so both print
/// etcd's text).
struct Refused;

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("client certificate authentication failed")
    }
}

impl std::fmt::Debug for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for Refused {}

/// What a peer's certificate must name.
#[derive(Debug)]
pub enum Allowed {
    Hostnames(Vec<ServerName<'static>>),
    CommonNames(Vec<String>),
}

impl Allowed {
    /// `hostnames`: the flag's hostnames or IP addresses (an invalid one refuses to start);
    /// `cns`: common names; at most one of them non-empty (etcd's error otherwise). None when
    /// both are empty: nothing to check.
    pub fn parse(hostnames: &[String], cns: &[String], side: &str) -> Result<Option<Allowed>, String> {
        Ok(Some(match (hostnames.is_empty(), cns.is_empty()) {
            (true, true) => return Ok(None),
            (false, false) => return Err(format!("AllowedCN and AllowedHostname are mutually exclusive (cn={:?}, hostname={:?})", cns.join(","), hostnames.join(","))),
            (true, false) => Allowed::CommonNames(cns.to_vec()),
            (false, true) => Allowed::Hostnames(
                hostnames
                    .iter()
                    .map(|n| ServerName::try_from(n.as_str()).map(|n| n.to_owned()).map_err(|e| format!("--{side}-cert-allowed-hostname {n:?}: {e}")))
                    .collect::<Result<_, _>>()?,
            ),
        }))
    }

    /// Ok when `end_entity` names one of the allowed names, else etcd's refusal.
    fn check(&self, end_entity: &CertificateDer<'_>) -> Result<(), rustls::Error> {
        let allowed = match self {
            Allowed::Hostnames(names) => {
                let cert = ParsedCertificate::try_from(end_entity)?;
                names.iter().any(|n| verify_server_name(&cert, n).is_ok())
            }
            Allowed::CommonNames(cns) => crate::auth::common_name(end_entity.as_ref()).is_some_and(|cn| cns.contains(&cn)),
        };
        if allowed {
            return Ok(());
        }
        Err(rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(Refused)))))
    }
}

/// A client certificate verifier that also requires one of the allowed names.
#[derive(Debug)]
pub struct AllowedNames {
    pub inner: Arc<dyn ClientCertVerifier>,
    pub allowed: Allowed,
}

/// A peer's server certificate verifier that also requires one of the allowed names (etcd's
/// baseConfig check applies to the peers a member dials too).
#[derive(Debug)]
pub struct AllowedServer {
    pub inner: Arc<dyn ServerCertVerifier>,
    pub allowed: Allowed,
}

impl ServerCertVerifier for AllowedServer {
    fn verify_server_cert(&self, end_entity: &CertificateDer<'_>, intermediates: &[CertificateDer<'_>], name: &ServerName<'_>, ocsp: &[u8], now: UnixTime) -> Result<ServerCertVerified, rustls::Error> {
        let verified = self.inner.verify_server_cert(end_entity, intermediates, name, ocsp, now)?;
        self.allowed.check(end_entity)?;
        Ok(verified)
    }

    fn verify_tls12_signature(&self, message: &[u8], cert: &CertificateDer<'_>, dss: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(&self, message: &[u8], cert: &CertificateDer<'_>, dss: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

impl ClientCertVerifier for AllowedNames {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(&self, end_entity: &CertificateDer<'_>, intermediates: &[CertificateDer<'_>], now: UnixTime) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self.inner.verify_client_cert(end_entity, intermediates, now)?;
        self.allowed.check(end_entity)?;
        Ok(verified)
    }

    fn verify_tls12_signature(&self, message: &[u8], cert: &CertificateDer<'_>, dss: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(&self, message: &[u8], cert: &CertificateDer<'_>, dss: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

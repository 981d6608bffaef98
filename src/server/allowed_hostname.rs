//! `--client-cert-allowed-hostname`: a client certificate must, besides being verified against
//! the CA, be valid for one of these hostnames or IP addresses (its subject alternative names;
//! etcd 3.5's `TLSInfo.baseConfig` VerifyPeerCertificate with Go's `VerifyHostname`, which
//! ignores the common name). It applies only where client certificates are asked for (etcd's
//! check runs while the client's certificates are processed, which Go does only then). A
//! refused certificate ends the handshake with etcd's error text.

use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
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

/// A client certificate verifier that also requires one of `names`.
#[derive(Debug)]
pub struct AllowedHostname {
    inner: Arc<dyn ClientCertVerifier>,
    names: Vec<ServerName<'static>>,
}

impl AllowedHostname {
    /// `names`: the flag's hostnames or IP addresses (an invalid one refuses to start).
    pub fn new(inner: Arc<dyn ClientCertVerifier>, names: &[String]) -> Result<AllowedHostname, String> {
        let names = names
            .iter()
            .map(|n| ServerName::try_from(n.as_str()).map(|n| n.to_owned()).map_err(|e| format!("--client-cert-allowed-hostname {n:?}: {e}")))
            .collect::<Result<_, _>>()?;
        Ok(AllowedHostname { inner, names })
    }
}

impl ClientCertVerifier for AllowedHostname {
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
        let cert = ParsedCertificate::try_from(end_entity)?;
        if self.names.iter().any(|n| verify_server_name(&cert, n).is_ok()) {
            return Ok(verified);
        }
        Err(rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(Refused)))))
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

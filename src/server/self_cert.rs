//! `--auto-tls`: a self-signed certificate made at start, as etcd's `transport.SelfCert`:
//! `<data-dir>/fixtures/client/cert.pem` and `key.pem` (0600), reused when both exist, valid
//! for `--self-signed-cert-validity` years from now, organization "etcd", server
//! authentication, the listen URLs' hosts as subject alternative names (IP addresses as IP
//! SANs). The one difference: an ECDSA P-256 key where etcd makes a P-521 one (ring, the
//! crypto library here, cannot sign with P-521).

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::log;

/// The certificate and key files in `dir`, made first unless both exist. `hosts` are
/// `host:port` (or bare hosts). Errors are etcd's where it has one.
pub fn ensure(dir: &Path, hosts: Vec<String>, validity_years: u64) -> Result<(String, String), String> {
    if validity_years == 0 {
        return Err("selfSignedCertValidity is invalid,it should be greater than 0".to_string());
    }
    create_private_dir(dir).map_err(|e| format!("cannot create cert directory {}: {e}", dir.display()))?;
    let absolute = |name: &str| std::path::absolute(dir.join(name)).map_err(|e| format!("{}: {e}", dir.display()));
    let (cert_path, key_path) = (absolute("cert.pem")?, absolute("key.pem")?);
    let text = |p: &Path| p.to_string_lossy().into_owned();
    if cert_path.exists() && key_path.exists() {
        return Ok((text(&cert_path), text(&key_path)));
    }
    let (cert_pem, key_pem, not_after) = generate(&hosts, validity_years)?;
    log::warn("automatically generate certificates", &[("certificate-validity-bound-not-after", not_after)]);
    write_file(&cert_path, cert_pem.as_bytes(), 0o644)?;
    log::info("created cert file", &[("path", text(&cert_path))]);
    write_file(&key_path, key_pem.as_bytes(), 0o600)?;
    log::info("created key file", &[("path", text(&key_path))]);
    Ok((text(&cert_path), text(&key_path)))
}

/// A self-signed certificate and its key, PEM, and when it expires (RFC 3339).
fn generate(hosts: &[String], validity_years: u64) -> Result<(String, String, String), String> {
    fn fail(what: &'static str) -> impl Fn(rcgen::Error) -> String {
        move |e| format!("cannot generate {what}: {e}")
    }
    let names: Vec<String> = hosts
        .iter()
        .map(|h| match h.rsplit_once(':') {
            // [::1]:2379 → ::1
            Some((host, _)) => host.trim_start_matches('[').trim_end_matches(']').to_string(),
            None => h.clone(),
        })
        .filter(|h| !h.is_empty())
        .collect();
    let mut params = rcgen::CertificateParams::new(names).map_err(fail("x509 certificate"))?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(rcgen::DnType::OrganizationName, "etcd");
    let now = time::OffsetDateTime::now_utc();
    // 365-day years, as etcd's `selfSignedCertValidity * 365 * 24h`.
    let days = i64::try_from(validity_years).unwrap_or(i64::MAX).saturating_mul(365).min(365 * 9000);
    params.not_before = now;
    params.not_after = now + time::Duration::days(days);
    params.key_usages = vec![rcgen::KeyUsagePurpose::KeyEncipherment, rcgen::KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    params.is_ca = rcgen::IsCa::ExplicitNoCa;
    params.serial_number = Some(random_serial()?);
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(fail("ECDSA key"))?;
    let cert = params.self_signed(&key).map_err(fail("x509 certificate"))?;
    let not_after = params
        .not_after
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    Ok((cert.pem(), key.serialize_pem(), not_after))
}

/// A random 128-bit serial number (etcd: `rand.Int(rand.Reader, 1<<128)`).
fn random_serial() -> Result<rcgen::SerialNumber, String> {
    use rustls::crypto::ring::default_provider;
    let mut bytes = [0u8; 16];
    default_provider()
        .secure_random
        .fill(&mut bytes)
        .map_err(|_| "cannot generate random number".to_string())?;
    bytes[0] &= 0x7f; // positive
    Ok(rcgen::SerialNumber::from_slice(&bytes))
}

/// etcd's `fileutil.TouchDirAll`: the directory and its parents, 0700.
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), String> {
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(mode).open(path)?;
        f.write_all(bytes)?;
        f.sync_all()
    };
    write().map_err(|e| format!("cannot write {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_once_then_reused() {
        let dir = std::env::temp_dir().join(format!("ballast-self-cert-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let hosts = vec!["127.0.0.1:2379".to_string(), "localhost:2379".to_string(), "[::1]:2379".to_string()];
        assert_eq!(ensure(&dir, hosts.clone(), 0).unwrap_err(), "selfSignedCertValidity is invalid,it should be greater than 0");
        let (cert, key) = ensure(&dir, hosts.clone(), 2).unwrap();
        assert!(Path::new(&cert).is_absolute() && cert.ends_with("/cert.pem"), "{cert}");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
        let first = std::fs::read(&cert).unwrap();
        assert!(String::from_utf8_lossy(&first).starts_with("-----BEGIN CERTIFICATE-----"));
        ensure(&dir, hosts, 2).unwrap();
        assert_eq!(std::fs::read(&cert).unwrap(), first, "an existing pair is reused");
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// How a member dials peers that present --peer-auto-tls certificates: self-signed, so no
/// chain or name is verified (etcd's selfCert sets InsecureSkipVerify); the handshake's
/// signatures still are, with `.0`'s algorithms.
#[derive(Debug)]
pub struct Unverified(pub std::sync::Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

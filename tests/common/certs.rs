//! Test certificates made with rcgen: a certificate authority that signs leaf certificates
//! (server and client authentication) and CRLs, written as files in a test's dir.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// A test certificate authority: its certificate file, and its key to sign leaves and CRLs.
pub struct Ca {
    dir: PathBuf,
    name: String,
    params: rcgen::CertificateParams,
    key: rcgen::KeyPair,
    pub cert_file: PathBuf,
}

/// A certificate and its key, as files.
pub struct Leaf {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Leaf {
    pub fn cert(&self) -> &str {
        self.cert.to_str().unwrap()
    }
    pub fn key(&self) -> &str {
        self.key.to_str().unwrap()
    }
}

impl Ca {
    pub fn new(dir: &Path, name: &str) -> Ca {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(rcgen::DnType::CommonName, format!("{name} test CA"));
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::CrlSign, rcgen::KeyUsagePurpose::DigitalSignature];
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let cert_file = dir.join(format!("{name}-ca.pem"));
        std::fs::write(&cert_file, cert.pem()).unwrap();
        Ca { dir: dir.to_path_buf(), name: name.to_string(), params, key, cert_file }
    }

    pub fn ca(&self) -> &str {
        self.cert_file.to_str().unwrap()
    }

    /// A certificate for 127.0.0.1 and localhost, good for server and client authentication,
    /// with common name `cn` and serial number `serial`.
    pub fn leaf(&self, cn: &str, serial: u64) -> Leaf {
        self.leaf_for(cn, serial, &["127.0.0.1", "localhost"])
    }

    /// Like `leaf`, for the subject alternative names `sans` (hostnames or IP addresses).
    pub fn leaf_for(&self, cn: &str, serial: u64, sans: &[&str]) -> Leaf {
        let mut subject = rcgen::DistinguishedName::new();
        subject.push(rcgen::DnType::CommonName, cn);
        self.leaf_with(cn, subject, serial, sans)
    }

    /// Like `leaf`, with the subject `subject` (its attributes in the order pushed), written
    /// under the name `file`.
    pub fn leaf_subject(&self, file: &str, subject: rcgen::DistinguishedName, serial: u64) -> Leaf {
        self.leaf_with(file, subject, serial, &["127.0.0.1", "localhost"])
    }

    fn leaf_with(&self, file: &str, subject: rcgen::DistinguishedName, serial: u64, sans: &[&str]) -> Leaf {
        let mut params = rcgen::CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        params.distinguished_name = subject;
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth, rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        params.serial_number = Some(rcgen::SerialNumber::from(serial));
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &rcgen::Issuer::from_params(&self.params, &self.key)).unwrap();
        let leaf = Leaf { cert: self.dir.join(format!("{}-{file}.pem", self.name)), key: self.dir.join(format!("{}-{file}-key.pem", self.name)) };
        std::fs::write(&leaf.cert, cert.pem()).unwrap();
        std::fs::write(&leaf.key, key.serialize_pem()).unwrap();
        leaf
    }

    /// A CRL file revoking `serials`.
    pub fn crl(&self, serials: &[u64]) -> PathBuf {
        let now = time::OffsetDateTime::now_utc();
        let params = rcgen::CertificateRevocationListParams {
            this_update: now - time::Duration::hours(1),
            next_update: now + time::Duration::days(1),
            crl_number: rcgen::SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: serials
                .iter()
                .map(|&s| rcgen::RevokedCertParams {
                    serial_number: rcgen::SerialNumber::from(s),
                    revocation_time: now - time::Duration::minutes(5),
                    reason_code: Some(rcgen::RevocationReason::KeyCompromise),
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        };
        let crl = params.signed_by(&rcgen::Issuer::from_params(&self.params, &self.key)).unwrap();
        let path = self.dir.join(format!("{}-crl.pem", self.name));
        std::fs::write(&path, crl.pem().unwrap()).unwrap();
        path
    }
}

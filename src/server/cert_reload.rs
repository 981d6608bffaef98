//! TLS files read again when they change, so a rotated certificate or a new CRL takes effect
//! without a restart, as in etcd, which reads the certificate and key at each handshake
//! (`TLSInfo.ServerConfig`'s GetCertificate → `tlsutil.NewCert`) and the CRL file after it
//! (`tlsListener.checkCRL`).
//!
//! * `Reloading<T>`: what a loader made of some files, made again when one of them changed. A
//!   handshake looks at the files' modification time, size and inode at most once a second
//!   (`CHECK_EVERY`), so it costs a lock and a clock reading.
//! * `ReloadingCert`: the server certificate and key (a rustls `ResolvesServerCert`), also a
//!   peer's client certificate (`ResolvesClientCert`).
//! * `ReloadingCrl`: the client certificate verifier of the CA and the CRL file (a rustls
//!   `ClientCertVerifier`); the CA file is read once, as etcd's.
//!
//! Changed files that do not load (half written, a key that does not match) are logged and the
//! previous contents are used meanwhile; they are tried again at the next check. etcd fails
//! those handshakes instead.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};

use crate::log;

/// How often a handshake may look at the files.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// What identifies a file's contents cheaply: modification time, length, inode.
type Stamp = Option<(SystemTime, u64, u64)>;

fn stamp(path: &PathBuf) -> Stamp {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len(), m.ino()))
}

/// Makes a `T` of the files (errors are etcd's texts).
pub type Loader<T> = Box<dyn Fn() -> Result<T, String> + Send + Sync>;

struct State<T> {
    current: T,
    stamps: Vec<Stamp>,
    checked: Instant,
}

/// What `load` made of `files`, made again when one of them changed.
pub struct Reloading<T> {
    files: Vec<PathBuf>,
    /// What the files are, for the log.
    what: &'static str,
    load: Loader<T>,
    state: Mutex<State<T>>,
}

impl<T: Clone> Reloading<T> {
    /// Loads once (an error refuses to start, as etcd refuses to start on unreadable files).
    pub fn new(files: &[&str], what: &'static str, load: Loader<T>) -> Result<Reloading<T>, String> {
        let files: Vec<PathBuf> = files.iter().map(PathBuf::from).collect();
        let stamps = files.iter().map(stamp).collect();
        let current = load()?;
        let state = Mutex::new(State { current, stamps, checked: Instant::now() });
        Ok(Reloading { files, what, load, state })
    }

    /// The files' contents as of at most `CHECK_EVERY` ago.
    pub fn current(&self) -> T {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if st.checked.elapsed() < CHECK_EVERY {
            return st.current.clone();
        }
        st.checked = Instant::now();
        let stamps: Vec<Stamp> = self.files.iter().map(stamp).collect();
        if stamps == st.stamps {
            return st.current.clone();
        }
        let file = self.files[0].display().to_string();
        match (self.load)() {
            Ok(t) => {
                st.current = t;
                st.stamps = stamps;
                log::info(&format!("{} reloaded", self.what), &[("file", file)]);
            }
            // The stamps stay: tried again at the next check.
            Err(e) => log::warn(&format!("cannot reload the {}; using the previous one", self.what), &[("file", file), ("error", e)]),
        }
        st.current.clone()
    }
}

impl<T> std::fmt::Debug for Reloading<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloading").field("files", &self.files).finish_non_exhaustive()
    }
}

/// The server certificate and key of their files.
#[derive(Debug)]
pub struct ReloadingCert(pub Reloading<Arc<CertifiedKey>>);

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.current())
    }
}

/// The same as the certificate a member dials its peers with.
impl rustls::client::ResolvesClientCert for ReloadingCert {
    fn resolve(&self, _root_hint_subjects: &[&[u8]], _sigschemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.0.current())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// A client certificate verifier made again when the CRL file changes.
#[derive(Debug)]
pub struct ReloadingCrl {
    inner: Reloading<Arc<dyn ClientCertVerifier>>,
    /// The CA's names, from the first verifier (the CA file is not read again).
    hints: Vec<DistinguishedName>,
}

impl ReloadingCrl {
    pub fn new(inner: Reloading<Arc<dyn ClientCertVerifier>>) -> ReloadingCrl {
        let hints = inner.current().root_hint_subjects().to_vec();
        ReloadingCrl { inner, hints }
    }
}

impl ClientCertVerifier for ReloadingCrl {
    fn offer_client_auth(&self) -> bool {
        self.inner.current().offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.current().client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.hints
    }

    fn verify_client_cert(&self, end_entity: &CertificateDer<'_>, intermediates: &[CertificateDer<'_>], now: UnixTime) -> Result<ClientCertVerified, rustls::Error> {
        self.inner.current().verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(&self, message: &[u8], cert: &CertificateDer<'_>, dss: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.current().verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(&self, message: &[u8], cert: &CertificateDer<'_>, dss: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.current().verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.current().supported_verify_schemes()
    }
}

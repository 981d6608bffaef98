//! etcd's authentication and role-based access control (etcd: server/auth).
//!
//! * `store` — the raft-applied auth state (users, roles, enabled flag, auth revision) and its
//!   changes with etcd's rules and errors; `AuthView`, the copy the front end checks against.
//! * `perm` — a user's permissions merged into key intervals (etcd's range permission cache).
//! * `token` — simple and JWT tokens (`--auth-token`).
//!
//! The applier on shard 0 owns the state; after each change it publishes a new `AuthView`
//! to the `AuthGuard` every front-end thread shares (an `ArcSwap`), before the change is
//! answered. A request is checked on its front-end thread against that view: no round trip to
//! the raft core. With auth disabled a request costs one atomic load (`AuthGuard::enabled`).
//! Writes carry who sent them and the auth revision they were checked at (`AuthHeader`); the
//! applier refuses one checked at an older revision (`etcdserver: revision of auth store is
//! old`), so a permission revoked between the check and the apply is never used.

pub mod perm;
pub mod store;
pub mod token;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::error::{Error, Result};
use crate::proto::ballastpb::AuthHeader;
pub use store::{AuthInfo, AuthState, AuthView};
use token::Tokens;

/// etcd's metadata keys for the token (rpctypes.TokenFieldNameGRPC, TokenFieldNameSwagger).
const TOKEN_KEYS: [&str; 2] = ["token", "authorization"];
/// The metadata etcd's gateway puts on its calls; with it a client certificate names nobody.
const GATEWAY_METADATA: &str = "grpcgateway-accept";
/// How long a request whose simple token names a raft entry this member has not applied yet
/// waits for it (etcd waits until the request's deadline), and how often it looks.
pub const TOKEN_APPLY_WAIT_MAX: std::time::Duration = std::time::Duration::from_secs(5);
const TOKEN_APPLY_POLL: std::time::Duration = std::time::Duration::from_millis(1);

pub struct AuthGuard {
    /// Mirrors `view.state.enabled`: the only thing a request reads while auth is off.
    on: AtomicBool,
    view: ArcSwap<AuthView>,
    pub tokens: Tokens,
    /// `--bcrypt-cost`.
    pub bcrypt_cost: u32,
    /// `--client-cert-auth`: a verified client certificate's common name is the user when
    /// a request carries no token.
    client_cert_auth: bool,
}

impl AuthGuard {
    pub fn new(tokens: Tokens, bcrypt_cost: u32, client_cert_auth: bool) -> AuthGuard {
        AuthGuard {
            on: AtomicBool::new(false),
            view: ArcSwap::from_pointee(AuthView::default()),
            tokens,
            bcrypt_cost,
            client_cert_auth,
        }
    }

    #[inline]
    pub fn enabled(&self) -> bool {
        self.on.load(Ordering::Acquire)
    }

    /// Whether `--client-cert-auth` makes a client certificate's common name a user.
    pub fn client_cert_auth(&self) -> bool {
        self.client_cert_auth
    }

    pub fn view(&self) -> Arc<AuthView> {
        self.view.load_full()
    }

    /// The applier publishes each new state before the change is answered.
    pub fn publish(&self, state: &AuthState) {
        let enabled = state.enabled;
        self.view.store(Arc::new(AuthView::new(state.clone())));
        self.on.store(enabled, Ordering::Release);
    }

    /// etcd's AuthInfoFromCtx: the sender of a request, from its token (metadata `token` or
    /// `authorization`) or else, with `--client-cert-auth`, its certificate's common name.
    /// None when auth is disabled or the request names nobody; an unknown token is an error.
    pub fn caller(&self, meta: &tonic::metadata::MetadataMap, ext: &http::Extensions) -> Result<Option<AuthInfo>> {
        if !self.enabled() {
            return Ok(None);
        }
        let token = TOKEN_KEYS.iter().find_map(|k| meta.get(*k));
        if let Some(token) = token {
            let token = token.to_str().map_err(|_| Error::InvalidAuthToken)?;
            let token = token.strip_prefix("Bearer ").unwrap_or(token);
            let (username, revision) = self.tokens.info(token).ok_or(Error::InvalidAuthToken)?;
            let revision = revision.unwrap_or_else(|| self.view.load().state.revision);
            return Ok(Some(AuthInfo { username, revision }));
        }
        if !self.client_cert_auth {
            return Ok(None);
        }
        let info = ext.get::<crate::server::tls_conn::TlsConnectInfo>();
        let Some(leaf) = info.and_then(|i| i.peer_certificates.as_ref()).and_then(|c| c.first()) else { return Ok(None) };
        // etcd's AuthInfoFromTLS: its gateway's calls carry this, and their certificate is
        // the gateway's own, not the client's.
        if meta.contains_key(GATEWAY_METADATA) {
            return Ok(None);
        }
        // Without a common name the user is "" (a user no permission names), as etcd's.
        let username = common_name(leaf.as_ref()).unwrap_or_default();
        Ok(Some(AuthInfo { username, revision: self.view.load().state.revision }))
    }

    /// The raft index of a request's simple token (`headers`) when this member has not applied
    /// it yet (`applied`): a token issued by another member, whose Authenticate this member
    /// has yet to apply. etcd's isValidSimpleToken waits for that index before it looks the
    /// token up (`wait_applied`); None: nothing to wait for.
    pub fn token_index_ahead(&self, headers: &http::HeaderMap, applied: u64) -> Option<u64> {
        if !self.enabled() {
            return None;
        }
        let token = TOKEN_KEYS.iter().find_map(|k| headers.get(*k))?.to_str().ok()?;
        let index = self.tokens.simple_index(token.strip_prefix("Bearer ").unwrap_or(token))?;
        (index > applied).then_some(index)
    }

    /// With auth on, the caller of a request or nobody (`AuthInfo::default()`); None when off.
    pub fn sender<T>(&self, req: &tonic::Request<T>) -> Result<Option<AuthInfo>> {
        if !self.enabled() {
            return Ok(None);
        }
        self.who(req).map(Some)
    }

    /// The caller of a request, or nobody (etcd: an empty AuthInfo).
    pub fn who<T>(&self, req: &tonic::Request<T>) -> Result<AuthInfo> {
        Ok(self.caller(req.metadata(), req.extensions())?.unwrap_or_default())
    }

    /// etcd's requireAuthInfo: with auth on, a request must name a user.
    pub fn require<T>(&self, req: &tonic::Request<T>) -> Result<Option<AuthInfo>> {
        if !self.enabled() {
            return Ok(None);
        }
        match self.caller(req.metadata(), req.extensions())? {
            Some(who) => Ok(Some(who)),
            None => Err(Error::UserEmpty),
        }
    }

    /// etcd's IsAdminPermitted for a request (Defragment, Hash, HashKV, Snapshot, MoveLeader…).
    pub fn admin<T>(&self, req: &tonic::Request<T>) -> Result<()> {
        if !self.enabled() {
            return Ok(());
        }
        let who = self.who(req)?;
        self.view().state.admin(&who)
    }

    /// etcd's authMaintenanceServer check (Snapshot, Hash, HashKV, Defragment): `admin`, its
    /// refusals answered with the auth package's errors as etcd sends them (code Unknown).
    pub fn maintenance_admin<T>(&self, req: &tonic::Request<T>) -> Result<()> {
        self.admin(req).map_err(|e| match e {
            Error::UserEmpty => Error::AdminRefused("auth: user name is empty"),
            Error::UserNotFound => Error::AdminRefused("auth: user not found"),
            Error::PermissionDenied => Error::AdminRefused("auth: permission denied"),
            Error::InvalidAuthToken => Error::AdminRefused("auth: invalid auth token"),
            other => other,
        })
    }
}

tokio::task_local! {
    /// The caller of the Lock or Election call being served (auth on; `AuthInfo::default()`
    /// when it names nobody): the recipes' reads, writes and watches act as it, as etcd's
    /// recipes run on an in-process client that carries the caller's token.
    static CALLER: AuthInfo;
}

/// Runs `f` as `who` (None: auth off, `f` runs as it is).
pub async fn as_caller<F: std::future::Future>(who: Option<AuthInfo>, f: F) -> F::Output {
    match who {
        Some(who) => CALLER.scope(who, f).await,
        None => f.await,
    }
}

/// The caller `as_caller` set for this task, if any.
pub fn scoped_caller() -> Option<AuthInfo> {
    CALLER.try_with(Clone::clone).ok()
}

/// The header a checked write carries into raft.
pub fn header(who: &AuthInfo) -> AuthHeader {
    AuthHeader { username: who.username.clone(), revision: who.revision }
}

/// The subject common name of a DER certificate as Go's x509 reads it (pkix.Name, which etcd
/// takes as the user): the last CN attribute, its string type decoded as Go's parseASN1String
/// does. None without a CN, or when the last one is no string Go decodes (Go then refuses the
/// certificate itself).
pub fn common_name(der: &[u8]) -> Option<String> {
    const CN_OID: &[u8] = &[0x55, 0x04, 0x03];
    let (_, cert, _) = tlv(der)?; // Certificate
    let (_, mut tbs, _) = tlv(cert)?; // TBSCertificate
    let mut fields = Vec::new();
    while !tbs.is_empty() && fields.len() < 7 {
        let (tag, body, rest) = tlv(tbs)?;
        fields.push((tag, body));
        tbs = rest;
    }
    // [0] version (optional), serial, signature, issuer, validity, subject.
    let skip = usize::from(fields.first()?.0 == 0xa0);
    let (_, mut subject) = *fields.get(skip + 4)?;
    let mut last = None;
    while !subject.is_empty() {
        let (_, mut set, rest) = tlv(subject)?;
        subject = rest;
        while !set.is_empty() {
            let (_, attr, more) = tlv(set)?;
            set = more;
            let (_, oid, value) = tlv(attr)?;
            if oid == CN_OID {
                let (tag, text, _) = tlv(value)?;
                last = Some((tag, text));
            }
        }
    }
    let (tag, text) = last?;
    go_asn1_string(tag, text)
}

/// Go's x509 parseASN1String: the string types a name attribute may have.
fn go_asn1_string(tag: u8, v: &[u8]) -> Option<String> {
    const UTF8: u8 = 0x0c;
    const NUMERIC: u8 = 0x12;
    const PRINTABLE: u8 = 0x13;
    const T61: u8 = 0x14;
    const IA5: u8 = 0x16;
    const BMP: u8 = 0x1e;
    // Go's isPrintable: PrintableString's letters, digits and ' ()+,-./:=?, and also * and &.
    let printable = |b: &u8| b.is_ascii_alphanumeric() || b" '()+,-./:=?*&".contains(b);
    let ascii = || String::from_utf8(v.to_vec()).ok();
    match tag {
        UTF8 => std::str::from_utf8(v).ok().map(str::to_string),
        PRINTABLE if v.iter().all(printable) => ascii(),
        NUMERIC if v.iter().all(|b| b.is_ascii_digit() || *b == b' ') => ascii(),
        IA5 if v.is_ascii() => ascii(),
        // Read as Latin-1, as Go (and BoringSSL) do.
        T61 => Some(v.iter().map(|&b| char::from(b)).collect()),
        BMP => bmp_string(v),
        _ => None,
    }
}

/// A BMPString (UCS-2, big endian) as Go decodes it: an even length, a final NUL dropped,
/// surrogates and the noncharacters U+FFFE, U+FFFF and U+FDD0..U+FDEF refused.
fn bmp_string(v: &[u8]) -> Option<String> {
    if !v.len().is_multiple_of(2) {
        return None;
    }
    let v = v.strip_suffix(&[0, 0]).unwrap_or(v);
    v.chunks_exact(2)
        .map(|p| u16::from_be_bytes([p[0], p[1]]))
        .map(|u| match u {
            0xfffe | 0xffff | 0xfdd0..=0xfdef => None,
            u => char::from_u32(u32::from(u)), // None for a surrogate
        })
        .collect()
}

/// One DER element: (tag, contents, what follows).
pub(crate) fn tlv(data: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let tag = *data.first()?;
    let first = *data.get(1)? as usize;
    let (len, header) = if first < 0x80 {
        (first, 2)
    } else {
        let n = first & 0x7f;
        if n == 0 || n > 4 {
            return None;
        }
        let len = data.get(2..2 + n)?.iter().fold(0usize, |acc, b| (acc << 8) | *b as usize);
        (len, 2 + n)
    };
    let body = data.get(header..header.checked_add(len)?)?;
    Some((tag, body, &data[header + len..]))
}

/// Waits until `applied()` reaches `index`, at most `TOKEN_APPLY_WAIT_MAX` (then the token is
/// looked up as it is: unknown, `etcdserver: invalid auth token`).
pub async fn wait_applied(index: u64, applied: impl Fn() -> u64) {
    let until = tokio::time::Instant::now() + TOKEN_APPLY_WAIT_MAX;
    while applied() < index && tokio::time::Instant::now() < until {
        tokio::time::sleep(TOKEN_APPLY_POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    /// A simple token naming an index past the applied one waits (`token_index_ahead` says
    /// which); one at or below it, a JWT-shaped one or auth off does not; the wait ends once the
    /// index is applied.
    #[tokio::test]
    async fn a_simple_token_ahead_of_the_applied_index_waits_for_it() {
        let tokens = super::Tokens::from_flag("simple", Duration::from_secs(300)).unwrap();
        let guard = super::AuthGuard::new(tokens, 4, false);
        let mut headers = http::HeaderMap::new();
        headers.insert("token", "abcdefghijklmnop.7".parse().unwrap());
        assert_eq!(guard.token_index_ahead(&headers, 0), None, "auth off: no token is looked at");
        guard.publish(&super::store::AuthState { enabled: true, ..Default::default() });
        assert_eq!(guard.token_index_ahead(&headers, 6), Some(7));
        assert_eq!(guard.token_index_ahead(&headers, 7), None);
        headers.insert("token", "eyJhbGciOiJSUzI1NiJ9.e30.c2ln".parse().unwrap());
        assert_eq!(guard.token_index_ahead(&headers, 0), None);
        let applied = Arc::new(AtomicU64::new(5));
        let later = applied.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            later.store(7, Ordering::Release);
        });
        let started = tokio::time::Instant::now();
        super::wait_applied(7, || applied.load(Ordering::Acquire)).await;
        assert_eq!(applied.load(Ordering::Acquire), 7, "returned before the index was applied");
        assert!(started.elapsed() < super::TOKEN_APPLY_WAIT_MAX, "waited out its bound");
    }

    #[test]
    fn common_name_of_a_generated_certificate() {
        let mut params = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap();
        params.distinguished_name.push(rcgen::DnType::OrganizationName, "ballast");
        params.distinguished_name.push(rcgen::DnType::CommonName, "alice");
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        assert_eq!(super::common_name(cert.der()).as_deref(), Some("alice"));
        assert_eq!(super::common_name(b"\x30\x03\x02\x01"), None);
    }

    /// Go's decoding of each string type; a bad encoding is no name.
    #[test]
    fn common_name_string_types_as_go() {
        use super::go_asn1_string as s;
        assert_eq!(s(0x1e, b"\0r\0o\0o\0t\0\0").as_deref(), Some("root"));
        assert_eq!(s(0x1e, b"\0r\0"), None);
        assert_eq!(s(0x1e, b"\xd8\x00"), None);
        assert_eq!(s(0x14, b"r\xe9").as_deref(), Some("r\u{e9}"));
        assert_eq!(s(0x13, b"a*b&c").as_deref(), Some("a*b&c"));
        assert_eq!(s(0x13, b"a_b"), None);
        assert_eq!(s(0x16, b"\xe9"), None);
        assert_eq!(s(0x0c, b"\xff"), None);
        assert_eq!(s(0x02, b"\x01"), None);
    }
}

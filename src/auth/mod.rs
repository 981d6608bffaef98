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
        let info = ext.get::<crate::server::handshake::TlsConnectInfo>();
        let cn = info.and_then(|i| i.peer_certificates.as_ref()).and_then(|c| c.first()).and_then(|c| common_name(c.as_ref()));
        Ok(cn.map(|username| AuthInfo { username, revision: self.view.load().state.revision }))
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

/// The subject common name of a DER certificate (the first CN attribute), if any.
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
    while !subject.is_empty() {
        let (_, mut set, rest) = tlv(subject)?;
        subject = rest;
        while !set.is_empty() {
            let (_, attr, more) = tlv(set)?;
            set = more;
            let (_, oid, value) = tlv(attr)?;
            if oid == CN_OID {
                let (_, text, _) = tlv(value)?;
                return String::from_utf8(text.to_vec()).ok();
            }
        }
    }
    None
}

/// One DER element: (tag, contents, what follows).
fn tlv(data: &[u8]) -> Option<(u8, &[u8], &[u8])> {
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

#[cfg(test)]
mod tests {
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
}

//! etcd's token providers (server/auth/simple_token.go, jwt.go), chosen by `--auth-token`.
//!
//! * `simple` (default): `<16 random letters>.<raft index of the Authenticate entry>`, kept in
//!   memory by every member as it applies that entry (so any member takes it, as etcd's; as
//!   etcd's, a restart forgets them: the entries it replays from the WAL issue none), valid for
//!   `--auth-token-ttl` seconds after its last use; deleting a user or changing its password
//!   drops its tokens, disabling auth drops all.
//! * `""`: etcd's tokenNop: no token is issued (Authenticate: `authentication failed`) or taken.
//! * `jwt,pub-key=…,priv-key=…,sign-method=…,ttl=…`: signed claims {username, revision, exp};
//!   nothing kept. A token from before an auth change carries the older revision, which the
//!   permission checks refuse (`etcdserver: revision of auth store is old`), as etcd's do.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::Rng;
use serde::Serialize;

/// etcd's DefaultSimpleTokenTTL.
const DEFAULT_SIMPLE_TTL: Duration = Duration::from_secs(300);

/// A simple token's life from `--auth-token-ttl`: etcd's tokenSimple.enable() takes a TTL
/// <= 0 as its default.
pub fn simple_ttl(secs: u64) -> Duration {
    if secs == 0 {
        DEFAULT_SIMPLE_TTL
    } else {
        Duration::from_secs(secs)
    }
}

/// Simple tokens kept at most (a bound on memory; the oldest expire first).
const MAX_SIMPLE_TOKENS: usize = 1 << 20;
const SIMPLE_TOKEN_LETTERS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
const SIMPLE_TOKEN_LENGTH: usize = 16;

pub enum Tokens {
    Simple(SimpleTokens),
    Jwt(Box<Jwt>),
    /// `--auth-token ""`: etcd's tokenNop, which issues no token (Authenticate fails with
    /// `authentication failed`) and takes none.
    Nop,
}

pub struct SimpleTokens {
    ttl: Duration,
    /// token → (user, expiry).
    tokens: Mutex<HashMap<String, (String, Instant)>>,
}

pub struct Jwt {
    alg: Algorithm,
    /// None: verify only (a public key alone).
    sign: Option<EncodingKey>,
    verify: DecodingKey,
    ttl: Duration,
}

#[derive(Serialize)]
struct Claims {
    username: String,
    revision: u64,
    exp: u64,
}

impl Tokens {
    /// Parses `--auth-token` (etcd's `simple` or `jwt,key=value,…`).
    pub fn from_flag(flag: &str, simple_ttl: Duration) -> Result<Tokens, String> {
        let mut parts = flag.split(',');
        match parts.next().unwrap_or("") {
            "" => Ok(Tokens::Nop),
            "simple" => Ok(Tokens::Simple(SimpleTokens { ttl: simple_ttl, tokens: Mutex::new(HashMap::new()) })),
            "jwt" => Jwt::from_options(parts).map(|j| Tokens::Jwt(Box::new(j))),
            other => Err(format!("unknown token type: {other}")),
        }
    }

    /// The random part of a new simple token (etcd's genTokenPrefix); empty with JWT.
    pub fn prefix(&self) -> String {
        match self {
            Tokens::Simple(_) => {
                let mut rng = rand::thread_rng();
                (0..SIMPLE_TOKEN_LENGTH).map(|_| SIMPLE_TOKEN_LETTERS[rng.gen_range(0..SIMPLE_TOKEN_LETTERS.len())] as char).collect()
            }
            Tokens::Jwt(_) | Tokens::Nop => String::new(),
        }
    }

    /// etcd's assign, on every member as it applies raft entry `index` (an Authenticate of
    /// `user` with the proposer's `prefix`): a simple token is then valid on any member, as
    /// etcd's. Nothing with JWT (a signed token is checked by its signature alone).
    pub fn remember(&self, user: &str, prefix: &str, index: u64) {
        if let Tokens::Simple(s) = self {
            s.add(&simple_token(prefix, index), user);
        }
    }

    /// The token the member that proposed the Authenticate answers with: the simple token
    /// `remember` made, or a JWT signed now for `user` at auth `revision`.
    pub fn token(&self, user: &str, revision: u64, prefix: &str, index: u64) -> crate::error::Result<String> {
        match self {
            Tokens::Simple(_) => Ok(simple_token(prefix, index)),
            Tokens::Jwt(j) => j.sign(user, revision),
            Tokens::Nop => Err(crate::error::Error::AuthFailed),
        }
    }

    /// The raft index a simple token names (`<prefix>.<index>`); None with JWT or a token not
    /// of that form.
    pub fn simple_index(&self, token: &str) -> Option<u64> {
        match self {
            Tokens::Simple(_) => simple_token_parts(token).map(|(_, index)| index),
            Tokens::Jwt(_) | Tokens::Nop => None,
        }
    }

    /// The user a token names (and, with JWT, the auth revision it was issued at); None: invalid.
    pub fn info(&self, token: &str) -> Option<(String, Option<u64>)> {
        match self {
            Tokens::Simple(s) => s.user(token).map(|u| (u, None)),
            Tokens::Jwt(j) => j.verify(token).map(|(u, r)| (u, Some(r))),
            Tokens::Nop => None,
        }
    }

    pub fn invalidate_user(&self, user: &str) {
        if let Tokens::Simple(s) = self {
            s.lock().retain(|_, (u, _)| u != user);
        }
    }

    pub fn clear(&self) {
        if let Tokens::Simple(s) = self {
            s.lock().clear();
        }
    }
}

fn simple_token(prefix: &str, index: u64) -> String {
    format!("{prefix}.{index}")
}

/// etcd's isValidSimpleToken's parse: `<prefix>.<index>`, the prefix of the generated length.
fn simple_token_parts(token: &str) -> Option<(&str, u64)> {
    let (prefix, index) = token.split_once('.')?;
    let index = index.parse::<u64>().ok()?;
    (prefix.len() == SIMPLE_TOKEN_LENGTH).then_some((prefix, index))
}

impl SimpleTokens {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (String, Instant)>> {
        self.tokens.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn add(&self, token: &str, user: &str) {
        let now = Instant::now();
        let mut tokens = self.lock();
        // Authenticate is rare and costs a bcrypt check: dropping expired tokens here is cheap.
        tokens.retain(|_, (_, until)| *until > now);
        if tokens.len() >= MAX_SIMPLE_TOKENS {
            if let Some(oldest) = tokens.iter().min_by_key(|(_, (_, until))| *until).map(|(t, _)| t.clone()) {
                tokens.remove(&oldest);
            }
        }
        tokens.insert(token.to_string(), (user.to_string(), now + self.ttl));
    }

    /// The token's user, its life renewed (etcd's resetSimpleToken).
    fn user(&self, token: &str) -> Option<String> {
        simple_token_parts(token)?;
        let now = Instant::now();
        let mut tokens = self.lock();
        match tokens.get_mut(token) {
            Some((user, until)) if *until > now => {
                *until = now + self.ttl;
                Some(user.clone())
            }
            Some(_) => {
                tokens.remove(token);
                None
            }
            None => None,
        }
    }
}

/// etcd's ErrMissingKey: neither pub-key nor priv-key (an HMAC method needs priv-key).
const MISSING_KEY: &str = "jwt: auth: missing key data";

/// The verifying key of the private key `pem` (PKCS#8, or PKCS#1 for RSA), as etcd verifies
/// with `priv.Public()` when only priv-key is given (auth/options.go rsaKey, ecKey).
fn derived_public(alg: Algorithm, pem: &[u8]) -> Result<DecodingKey, String> {
    use ring::signature::{self as sig, KeyPair};
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::PrivateKeyDer;
    let invalid = |e: &dyn std::fmt::Display| format!("jwt: invalid priv-key: {e}");
    let der = PrivateKeyDer::from_pem_slice(pem).map_err(|e| invalid(&e))?;
    let pkcs8 = match &der {
        PrivateKeyDer::Pkcs8(k) => Ok(k.secret_pkcs8_der()),
        _ => Err(invalid(&"not a PKCS#8 key")),
    };
    use Algorithm::*;
    match alg {
        RS256 | RS384 | RS512 | PS256 | PS384 | PS512 => {
            let kp = match &der {
                PrivateKeyDer::Pkcs1(k) => sig::RsaKeyPair::from_der(k.secret_pkcs1_der()),
                _ => sig::RsaKeyPair::from_pkcs8(pkcs8?),
            };
            Ok(DecodingKey::from_rsa_der(kp.map_err(|e| invalid(&e))?.public_key().as_ref()))
        }
        ES256 | ES384 => {
            let curve = if alg == ES256 { &sig::ECDSA_P256_SHA256_FIXED_SIGNING } else { &sig::ECDSA_P384_SHA384_FIXED_SIGNING };
            let kp = sig::EcdsaKeyPair::from_pkcs8(curve, pkcs8?, &ring::rand::SystemRandom::new()).map_err(|e| invalid(&e))?;
            Ok(DecodingKey::from_ec_der(kp.public_key().as_ref()))
        }
        EdDSA => {
            let kp = sig::Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8?).map_err(|e| invalid(&e))?;
            Ok(DecodingKey::from_ed_der(kp.public_key().as_ref()))
        }
        HS256 | HS384 | HS512 => Err("jwt: an HMAC method has no public key".into()),
    }
}

/// etcd's ErrKeyMismatch.
const KEY_MISMATCH: &str = "jwt: auth: public and private keys don't match";

/// The verifying key, as etcd's rsaKey/ecKey choose it: with priv-key, its own public half (etcd
/// keeps the private key and verifies with `&k.PublicKey`), pub-key then only parsed and held to
/// etcd's weak match check; pub-key alone verifies (and signs nothing).
fn verifying(alg: Algorithm, parsed: Option<DecodingKey>, public: &Option<Vec<u8>>, private: &Option<Vec<u8>>) -> Result<DecodingKey, String> {
    match (parsed, private) {
        (_, Some(k)) => {
            if public.as_deref().is_some_and(|p| keys_mismatch(alg, p, k)) {
                return Err(KEY_MISMATCH.into());
            }
            derived_public(alg, k)
        }
        (Some(p), None) => Ok(p),
        (None, None) => Err(MISSING_KEY.into()),
    }
}

/// etcd's match check of pub-key against priv-key, which refuses only keys that differ in
/// every part it compares (`pub.E != priv.E && pub.N != priv.N` for RSA; curve, X and Y for
/// ECDSA): two RSA keys with the usual exponent pass. pub-key as an SPKI `PUBLIC KEY`; another
/// form, or EdDSA (which etcd does not offer), is not compared.
fn keys_mismatch(alg: Algorithm, public_pem: &[u8], private_pem: &[u8]) -> bool {
    use rustls::pki_types::pem::PemObject;
    let Ok(spki) = rustls::pki_types::SubjectPublicKeyInfoDer::from_pem_slice(public_pem) else { return false };
    let Some(public) = spki_key(spki.as_ref()) else { return false };
    let Some(private) = derived_public_bytes(alg, private_pem) else { return false };
    use Algorithm::*;
    match alg {
        RS256 | RS384 | RS512 | PS256 | PS384 | PS512 => match (rsa_parts(&public), rsa_parts(&private)) {
            (Some((n1, e1)), Some((n2, e2))) => e1 != e2 && n1 != n2,
            _ => false,
        },
        // Uncompressed points (04 || X || Y): another length is another curve.
        ES256 | ES384 => {
            let half = |p: &[u8]| {
                let p = p.get(1..).unwrap_or_default();
                let (x, y) = p.split_at(p.len() / 2);
                (trim_zeros(x).to_vec(), trim_zeros(y).to_vec())
            };
            let ((x1, y1), (x2, y2)) = (half(&public), half(&private));
            public.len() != private.len() && x1 != x2 && y1 != y2
        }
        _ => false,
    }
}

fn trim_zeros(v: &[u8]) -> &[u8] {
    let i = v.iter().position(|b| *b != 0).unwrap_or(v.len());
    &v[i..]
}

/// The key bits of a DER SubjectPublicKeyInfo (its BIT STRING's contents).
fn spki_key(der: &[u8]) -> Option<Vec<u8>> {
    let (_, spki, _) = super::tlv(der)?;
    let (_, _, rest) = super::tlv(spki)?; // the algorithm
    let (_, bits, _) = super::tlv(rest)?;
    bits.get(1..).map(<[u8]>::to_vec) // after the unused-bits count
}

/// (modulus, exponent) of a DER RSAPublicKey, without leading zeros.
fn rsa_parts(der: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    let (_, seq, _) = super::tlv(der)?;
    let (_, n, rest) = super::tlv(seq)?;
    let (_, e, _) = super::tlv(rest)?;
    Some((trim_zeros(n).to_vec(), trim_zeros(e).to_vec()))
}

/// The public half of priv-key as ring gives it (RSAPublicKey DER, or an uncompressed point).
fn derived_public_bytes(alg: Algorithm, pem: &[u8]) -> Option<Vec<u8>> {
    use ring::signature::{self as sig, KeyPair};
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::PrivateKeyDer;
    let der = PrivateKeyDer::from_pem_slice(pem).ok()?;
    use Algorithm::*;
    match (alg, &der) {
        (RS256 | RS384 | RS512 | PS256 | PS384 | PS512, PrivateKeyDer::Pkcs1(k)) => Some(sig::RsaKeyPair::from_der(k.secret_pkcs1_der()).ok()?.public_key().as_ref().to_vec()),
        (RS256 | RS384 | RS512 | PS256 | PS384 | PS512, PrivateKeyDer::Pkcs8(k)) => Some(sig::RsaKeyPair::from_pkcs8(k.secret_pkcs8_der()).ok()?.public_key().as_ref().to_vec()),
        (ES256 | ES384, PrivateKeyDer::Pkcs8(k)) => {
            let curve = if alg == ES256 { &sig::ECDSA_P256_SHA256_FIXED_SIGNING } else { &sig::ECDSA_P384_SHA384_FIXED_SIGNING };
            Some(sig::EcdsaKeyPair::from_pkcs8(curve, k.secret_pkcs8_der(), &ring::rand::SystemRandom::new()).ok()?.public_key().as_ref().to_vec())
        }
        _ => None,
    }
}

impl Jwt {
    /// etcd's jwtOptions: pub-key, priv-key, sign-method, ttl (Go duration, default 5m).
    fn from_options<'a>(options: impl Iterator<Item = &'a str>) -> Result<Jwt, String> {
        let mut opts = HashMap::new();
        for o in options {
            let (k, v) = o.split_once('=').ok_or_else(|| format!("invalid jwt option {o:?}"))?;
            opts.insert(k.to_string(), v.to_string());
        }
        let method = opts.get("sign-method").ok_or("jwt: sign-method is required")?;
        let alg: Algorithm = method.parse().map_err(|_| format!("jwt: unsupported sign-method {method:?}"))?;
        let ttl = match opts.get("ttl") {
            Some(t) => crate::config::duration::parse(t).ok().and_then(|d| d.non_negative()).ok_or_else(|| format!("jwt: invalid ttl {t:?}"))?,
            None => Duration::from_secs(300),
        };
        let read = |k: &str| opts.get(k).map(|p| std::fs::read(p).map_err(|e| format!("jwt: cannot read {k} {p}: {e}"))).transpose();
        let (public, private) = (read("pub-key")?, read("priv-key")?);
        let bad = |e: jsonwebtoken::errors::Error| format!("jwt: invalid key: {e}");
        use Algorithm::*;
        let (sign, verify) = match alg {
            HS256 | HS384 | HS512 => {
                // etcd's hmacKey: the secret is priv-key; pub-key alone is ErrMissingKey.
                let key = private.ok_or(MISSING_KEY)?;
                (Some(EncodingKey::from_secret(&key)), DecodingKey::from_secret(&key))
            }
            RS256 | RS384 | RS512 | PS256 | PS384 | PS512 => (
                private.as_deref().map(EncodingKey::from_rsa_pem).transpose().map_err(bad)?,
                verifying(alg, public.as_deref().map(|p| DecodingKey::from_rsa_pem(p).map_err(bad)).transpose()?, &public, &private)?,
            ),
            ES256 | ES384 => (
                private.as_deref().map(EncodingKey::from_ec_pem).transpose().map_err(bad)?,
                verifying(alg, public.as_deref().map(|p| DecodingKey::from_ec_pem(p).map_err(bad)).transpose()?, &public, &private)?,
            ),
            EdDSA => (
                private.as_deref().map(EncodingKey::from_ed_pem).transpose().map_err(bad)?,
                verifying(alg, public.as_deref().map(|p| DecodingKey::from_ed_pem(p).map_err(bad)).transpose()?, &public, &private)?,
            ),
        };
        Ok(Jwt { alg, sign, verify, ttl })
    }

    fn sign(&self, user: &str, revision: u64) -> crate::error::Result<String> {
        use crate::error::Error;
        let key = self.sign.as_ref().ok_or(Error::VerifyOnly)?;
        let exp = (std::time::SystemTime::now() + self.ttl).duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs();
        let claims = Claims { username: user.to_string(), revision, exp };
        jsonwebtoken::encode(&Header::new(self.alg), &claims, key).map_err(|e| Error::Internal(e.to_string()))
    }

    /// etcd's tokenJWT.info: the signature (the configured method only), the time claims as
    /// golang-jwt v4's MapClaims.Valid judges them (`go_claims_valid`), then a string
    /// `username` and a number `revision`.
    fn verify(&self, token: &str) -> Option<(String, u64)> {
        let mut v = Validation::new(self.alg);
        v.validate_exp = false;
        v.validate_nbf = false;
        v.validate_aud = false;
        v.required_spec_claims.clear();
        let claims = jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(token, &self.verify, &v).ok()?.claims;
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).ok()?.as_secs();
        if !go_claims_valid(&claims, now as f64) {
            return None;
        }
        let username = claims.get("username")?.as_str()?.to_string();
        let revision = claims.get("revision")?.as_f64()?;
        Some((username, go_uint64(revision)))
    }
}

/// golang-jwt v4.5's MapClaims.Valid (etcd 3.5.33's): `exp`, `iat` and `nbf` are each optional,
/// must be numbers when present (0 counts as absent), are cut to whole seconds, and hold when
/// `now` is before `exp`, and at or after `iat` and `nbf`.
fn go_claims_valid(claims: &serde_json::Map<String, serde_json::Value>, now: f64) -> bool {
    let holds = |name: &str, ok: fn(f64, f64) -> bool| match claims.get(name) {
        None => true,
        Some(v) => match v.as_f64() {
            Some(0.0) => true,
            Some(t) => ok(now, t.floor()),
            None => false,
        },
    };
    holds("exp", |now, exp| now < exp) && holds("iat", |now, iat| now >= iat) && holds("nbf", |now, nbf| now >= nbf)
}

/// Go's `uint64(f)` of a float64 on amd64 (etcd's revision claim): truncated; a negative value
/// wraps through int64.
fn go_uint64(f: f64) -> u64 {
    if f < 0.0 {
        f as i64 as u64
    } else {
        f as u64
    }
}

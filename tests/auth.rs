//! etcd's auth (issue 20, part 2): users, roles and permissions replicated through raft and
//! checked on every call; simple and JWT tokens; common-name auth; survival across restarts.
//! Every error is etcd's gRPC code and text. Every loop is bounded.

mod common;

use std::time::Duration;

use common::Server;
use etcd_client::{Client, ConnectOptions, GetOptions, Permission, PutOptions, Txn, TxnOp, Compare, CompareOp, DeleteOptions};

/// The gRPC message of an etcd-client error, or panics with what it was.
fn message(e: etcd_client::Error) -> String {
    match e {
        etcd_client::Error::GRpcStatus(s) => s.message().to_string(),
        other => panic!("not a gRPC status: {other:?}"),
    }
}

fn code(e: &etcd_client::Error) -> tonic::Code {
    match e {
        etcd_client::Error::GRpcStatus(s) => s.code(),
        other => panic!("not a gRPC status: {other:?}"),
    }
}

async fn login(s: &Server, user: &str, password: &str) -> Result<Client, etcd_client::Error> {
    Client::connect([format!("http://{}", s.endpoint)], Some(ConnectOptions::new().with_user(user, password))).await
}

async fn login_err(s: &Server, user: &str, password: &str) -> etcd_client::Error {
    login(s, user, password).await.err().expect("login refused")
}

/// AuthStatus as root (etcd-client has no call for it): (enabled, auth revision).
async fn auth_status(s: &Server) -> (bool, u64) {
    use ballast::proto::etcdserverpb::{auth_client::AuthClient, AuthStatusRequest, AuthenticateRequest};
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", s.endpoint)).unwrap().connect().await.unwrap();
    let mut a = AuthClient::new(channel);
    let token = a.authenticate(AuthenticateRequest { name: "root".into(), password: "rootpw".into() }).await.unwrap().into_inner().token;
    let mut req = tonic::Request::new(AuthStatusRequest {});
    req.metadata_mut().insert("token", token.parse().unwrap());
    let st = a.auth_status(req).await.unwrap().into_inner();
    (st.enabled, st.auth_revision)
}

async fn root(s: &Server) -> Client {
    login(s, "root", "rootpw").await.expect("root logs in")
}

/// root (with the root role) and auth enabled; bcrypt at its minimum cost for speed.
async fn enable_auth(c: &mut Client) {
    c.user_add("root", "rootpw", None).await.unwrap();
    c.user_grant_role("root", "root").await.unwrap();
    c.auth_enable().await.unwrap();
}

const FAST: &[&str] = &["--bcrypt-cost", "4"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn management_errors_are_etcds() {
    let s = Server::start(FAST);
    let mut c = s.client().await;
    assert_eq!(message(c.auth_enable().await.unwrap_err()), "etcdserver: root user does not exist");
    c.user_add("root", "rootpw", None).await.unwrap();
    let e = c.auth_enable().await.unwrap_err();
    assert_eq!((code(&e), message(e)), (tonic::Code::FailedPrecondition, "etcdserver: root user does not have root role".into()));
    let e = c.user_add("", "x", None).await.unwrap_err();
    assert_eq!((code(&e), message(e)), (tonic::Code::InvalidArgument, "etcdserver: user name is empty".into()));
    assert_eq!(message(c.user_add("root", "x", None).await.unwrap_err()), "etcdserver: user name already exists");
    assert_eq!(message(c.user_delete("nobody").await.unwrap_err()), "etcdserver: user name not found");
    assert_eq!(message(c.user_get("nobody").await.unwrap_err()), "etcdserver: user name not found");
    assert_eq!(message(c.user_grant_role("root", "nosuch").await.unwrap_err()), "etcdserver: role name not found");
    assert_eq!(message(c.user_grant_role("nobody", "root").await.unwrap_err()), "etcdserver: user name not found");
    assert_eq!(message(c.user_revoke_role("root", "root").await.unwrap_err()), "etcdserver: role is not granted to the user");
    c.role_add("r").await.unwrap();
    assert_eq!(message(c.role_add("r").await.unwrap_err()), "etcdserver: role name already exists");
    assert_eq!(message(c.role_add("").await.unwrap_err()), "etcdserver: role name is empty");
    assert_eq!(message(c.role_get("nosuch").await.unwrap_err()), "etcdserver: role name not found");
    assert_eq!(message(c.role_delete("nosuch").await.unwrap_err()), "etcdserver: role name not found");
    assert_eq!(message(c.role_revoke_permission("r", "k", None).await.unwrap_err()), "etcdserver: permission is not granted to the role");
    assert_eq!(message(c.role_grant_permission("r", Permission::read("")).await.unwrap_err()), "etcdserver: invalid auth management");
    assert_eq!(message(c.role_grant_permission("r", Permission::read("b").with_range_end("a")).await.unwrap_err()), "etcdserver: invalid auth management");
    let e = c.auth_client().authenticate("root".into(), "rootpw".into()).await.unwrap_err();
    assert_eq!(message(e), "etcdserver: authentication is not enabled");
    c.user_grant_role("root", "root").await.unwrap();
    c.auth_enable().await.unwrap();
    // Now everything needs a user.
    let e = c.get("k", None).await.unwrap_err();
    assert_eq!((code(&e), message(e)), (tonic::Code::InvalidArgument, "etcdserver: user name is empty".into()));
    assert_eq!(message(c.user_list().await.unwrap_err()), "etcdserver: user name is empty");
    assert_eq!(message(c.put("k", "v", None).await.unwrap_err()), "etcdserver: user name is empty");
    let e = login_err(&s, "root", "wrong").await;
    assert_eq!((code(&e), message(e)), (tonic::Code::InvalidArgument, "etcdserver: authentication failed, invalid user ID or password".into()));
    let e = login_err(&s, "nobody", "x").await;
    assert_eq!(message(e), "etcdserver: authentication failed, invalid user ID or password");
    let mut r = root(&s).await;
    assert_eq!(message(r.user_delete("root").await.unwrap_err()), "etcdserver: invalid auth management");
    assert_eq!(message(r.user_revoke_role("root", "root").await.unwrap_err()), "etcdserver: invalid auth management");
    assert_eq!(message(r.role_delete("root").await.unwrap_err()), "etcdserver: invalid auth management");
    r.user_add("nopw", "", Some(etcd_client::UserAddOptions::new().with_no_pwd())).await.unwrap();
    let e = login_err(&s, "nopw", "").await;
    assert_eq!(message(e), "auth: authentication failed, password was given for no password user");
    // A non-root user may read itself and its roles, nothing else.
    r.user_add("u", "upw", None).await.unwrap();
    r.user_grant_role("u", "r").await.unwrap();
    let mut u = login(&s, "u", "upw").await.unwrap();
    assert_eq!(u.user_get("u").await.unwrap().roles(), ["r"]);
    assert_eq!(u.role_get("r").await.unwrap().permissions().len(), 0);
    let e = u.user_get("root").await.unwrap_err();
    assert_eq!((code(&e), message(e)), (tonic::Code::PermissionDenied, "etcdserver: permission denied".into()));
    assert_eq!(message(u.role_get("root").await.unwrap_err()), "etcdserver: permission denied");
    assert_eq!(message(u.user_add("v", "v", None).await.unwrap_err()), "etcdserver: permission denied");
    assert_eq!(message(u.auth_disable().await.unwrap_err()), "etcdserver: permission denied");
    // etcd's authMaintenanceServer answers the auth package's error unmapped (code Unknown).
    let e = u.defragment().await.unwrap_err();
    assert_eq!((code(&e), message(e)), (tonic::Code::Unknown, "auth: permission denied".into()));
    assert_eq!(message(u.hash_kv(0).await.unwrap_err()), "auth: permission denied");
    assert_eq!(message(u.snapshot().await.unwrap_err()), "auth: permission denied");
    u.status().await.unwrap();
    assert_eq!(message(c.status().await.unwrap_err()), "etcdserver: user name is empty");
    let users = r.user_list().await.unwrap();
    assert_eq!(users.users(), ["nopw", "root", "u"]);
    r.auth_disable().await.unwrap();
    c.put("k", "v", None).await.unwrap();
    assert!(s.log().contains("ready to serve"));
}

/// Users with every kind of permission against every kind of call: each either works or is
/// refused with `permission denied`, and a refused call changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permission_combinations() {
    let s = Server::start(FAST);
    let mut c = s.client().await;
    enable_auth(&mut c).await;
    let mut r = root(&s).await;
    for (role, perm) in [
        ("read-k", Permission::read("k")),
        ("write-k", Permission::write("k")),
        ("rw-prefix", Permission::read_write("p/").with_prefix()),
        ("read-from-m", Permission::read("m").with_from_key()),
        ("write-range", Permission::write("a").with_range_end("c")),
    ] {
        r.role_add(role).await.unwrap();
        r.role_grant_permission(role, perm).await.unwrap();
        r.user_add(role, "pw", None).await.unwrap();
        r.user_grant_role(role, role).await.unwrap();
    }
    r.user_add("none", "pw", None).await.unwrap();
    for k in ["k", "p/1", "m", "z", "b"] {
        r.put(k, "root", None).await.unwrap();
    }
    let rev = r.get("k", None).await.unwrap().header().unwrap().revision();
    let denied = "etcdserver: permission denied";
    // (user, key, may read, may write)
    let cases: &[(&str, &str, bool, bool)] = &[
        ("read-k", "k", true, false),
        ("read-k", "k2", false, false),
        ("write-k", "k", false, true),
        ("rw-prefix", "p/1", true, true),
        ("rw-prefix", "p/x/y", true, true),
        ("rw-prefix", "p", false, false),
        ("read-from-m", "m", true, false),
        ("read-from-m", "zzz", true, false),
        ("read-from-m", "l", false, false),
        ("write-range", "b", false, true),
        ("write-range", "c", false, false),
        ("none", "k", false, false),
    ];
    for &(user, key, read, write) in cases {
        let mut u = login(&s, user, "pw").await.unwrap();
        let ctx = format!("{user} on {key}");
        assert_eq!(u.get(key, None).await.map(|_| ()).map_err(message), if read { Ok(()) } else { Err(denied.into()) }, "get: {ctx}");
        let put = u.put(key, "user", None).await.map(|_| ()).map_err(message);
        assert_eq!(put, if write { Ok(()) } else { Err(denied.into()) }, "put: {ctx}");
        let put_prev = u.put(key, "user", Some(PutOptions::new().with_prev_key())).await.map(|_| ()).map_err(message);
        assert_eq!(put_prev, if write && read { Ok(()) } else { Err(denied.into()) }, "put prev_kv: {ctx}");
        // A txn: its compare is a read, its op a write.
        let txn = Txn::new().when([Compare::version(key, CompareOp::Greater, 0)]).and_then([TxnOp::put(key, "txn", None)]);
        assert_eq!(u.txn(txn).await.map(|_| ()).map_err(message), if read && write { Ok(()) } else { Err(denied.into()) }, "txn: {ctx}");
        let read_only = Txn::new().and_then([TxnOp::get(key, None)]);
        assert_eq!(u.txn(read_only).await.map(|_| ()).map_err(message), if read { Ok(()) } else { Err(denied.into()) }, "read txn: {ctx}");
        let mut w = u.watch(key, None).await.unwrap();
        let first = tokio::time::timeout(Duration::from_secs(10), w.message()).await.unwrap().unwrap().unwrap();
        assert_eq!(first.canceled(), !read, "watch: {ctx}");
        if !read {
            assert_eq!(first.cancel_reason(), "rpc error: code = PermissionDenied desc = etcdserver: permission denied");
        }
        let del = u.delete(key, None).await.map(|_| ()).map_err(message);
        assert_eq!(del, if write { Ok(()) } else { Err(denied.into()) }, "delete: {ctx}");
    }
    // Ranges: the whole range must be covered.
    let mut u = login(&s, "rw-prefix", "pw").await.unwrap();
    u.get("p/", Some(GetOptions::new().with_prefix())).await.unwrap();
    assert_eq!(message(u.get("p", Some(GetOptions::new().with_prefix())).await.unwrap_err()), denied);
    assert_eq!(message(u.delete("p/", Some(DeleteOptions::new().with_from_key())).await.unwrap_err()), denied);
    let mut u = login(&s, "read-from-m", "pw").await.unwrap();
    u.get("m", Some(GetOptions::new().with_from_key())).await.unwrap();
    assert_eq!(message(u.get("a", Some(GetOptions::new().with_from_key())).await.unwrap_err()), denied);
    // A denied request changed nothing: only the allowed writes moved the revision.
    let mut none = login(&s, "none", "pw").await.unwrap();
    let before = r.get("z", None).await.unwrap().header().unwrap().revision();
    assert!(before > rev);
    for _ in 0..5 {
        assert!(none.put("z", "x", None).await.is_err());
        assert!(none.delete("z", None).await.is_err());
    }
    let after = r.get("z", None).await.unwrap();
    assert_eq!(after.header().unwrap().revision(), before);
    assert_eq!(after.kvs()[0].value(), b"root");
    // Leases: revoking needs write permission on every key of the lease.
    let lease = r.lease_grant(60, None).await.unwrap().id();
    r.put("k", "leased", Some(PutOptions::new().with_lease(lease))).await.unwrap();
    let mut reader = login(&s, "read-k", "pw").await.unwrap();
    assert_eq!(message(reader.lease_revoke(lease).await.unwrap_err()), denied);
    let mut writer = login(&s, "write-k", "pw").await.unwrap();
    let own = writer.lease_grant(60, None).await.unwrap().id();
    assert_eq!(message(writer.put("p/1", "x", Some(PutOptions::new().with_lease(own))).await.unwrap_err()), denied);
    writer.lease_revoke(lease).await.unwrap();
    assert!(r.get("k", None).await.unwrap().kvs().is_empty());
    assert_eq!(message(c.lease_grant(60, None).await.unwrap_err()), "etcdserver: user name is empty");
}

/// A role revoked while a user writes: every write answered after the revoke is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_a_role_while_writing() {
    let s = Server::start(FAST);
    let mut c = s.client().await;
    enable_auth(&mut c).await;
    let mut r = root(&s).await;
    r.role_add("w").await.unwrap();
    r.role_grant_permission("w", Permission::read_write("x/").with_prefix()).await.unwrap();
    r.user_add("u", "pw", None).await.unwrap();
    r.user_grant_role("u", "w").await.unwrap();
    let u = login(&s, "u", "pw").await.unwrap();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let mut u = u.clone();
            let stop = stop_rx.clone();
            tokio::spawn(async move {
                let mut errors = Vec::new();
                for i in 0..5000 {
                    if *stop.borrow() {
                        break;
                    }
                    if let Err(e) = u.put(format!("x/{w}/{i}"), "v", None).await {
                        errors.push(message(e));
                    }
                }
                errors
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    r.user_revoke_role("u", "w").await.unwrap();
    let count_at_revoke = r.get("x/", Some(GetOptions::new().with_prefix().with_count_only())).await.unwrap().count();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ = stop_tx.send(true);
    for w in writers {
        for e in w.await.unwrap() {
            assert!(e == "etcdserver: permission denied" || e == "etcdserver: revision of auth store is old", "{e}");
        }
    }
    let count_after = r.get("x/", Some(GetOptions::new().with_prefix().with_count_only())).await.unwrap().count();
    assert_eq!(count_at_revoke, count_after, "a write landed after the revoke was answered");
    assert!(count_after > 0);
    let mut u = u.clone();
    assert_eq!(message(u.put("x/after", "v", None).await.unwrap_err()), "etcdserver: permission denied");
}

/// Deleting a user invalidates its tokens; a password change too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_user_during_operations() {
    let s = Server::start(FAST);
    let mut c = s.client().await;
    enable_auth(&mut c).await;
    let mut r = root(&s).await;
    r.role_add("w").await.unwrap();
    r.role_grant_permission("w", Permission::read_write("d/").with_prefix()).await.unwrap();
    for user in ["gone", "changed"] {
        r.user_add(user, "pw", None).await.unwrap();
        r.user_grant_role(user, "w").await.unwrap();
    }
    let mut gone = login(&s, "gone", "pw").await.unwrap();
    let mut changed = login(&s, "changed", "pw").await.unwrap();
    let writer = {
        let mut gone = gone.clone();
        tokio::spawn(async move {
            let mut last = Ok(());
            for i in 0..3000 {
                last = gone.put(format!("d/{i}"), "v", None).await.map(|_| ()).map_err(message);
                if last.is_err() {
                    break;
                }
            }
            last
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    r.user_delete("gone").await.unwrap();
    let end = writer.await.unwrap();
    let end = end.err().unwrap_or_default();
    assert!(["", "etcdserver: invalid auth token", "etcdserver: revision of auth store is old"].contains(&end.as_str()), "{end}");
    let e = gone.put("d/x", "v", None).await.unwrap_err();
    assert_eq!((code(&e), message(e)), (tonic::Code::Unauthenticated, "etcdserver: invalid auth token".into()));
    changed.put("d/c", "v", None).await.unwrap();
    r.user_change_password("changed", "new").await.unwrap();
    assert_eq!(message(changed.get("d/c", None).await.unwrap_err()), "etcdserver: invalid auth token");
    assert!(login(&s, "changed", "pw").await.is_err());
    login(&s, "changed", "new").await.unwrap().get("d/c", None).await.unwrap();
    assert!(login(&s, "gone", "pw").await.is_err());
}

/// Tokens that are not ballast's: etcd's `invalid auth token`, and the server keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_tokens() {
    use ballast::proto::etcdserverpb::{kv_client::KvClient, RangeRequest};
    let s = Server::start(FAST);
    let mut c = s.client().await;
    enable_auth(&mut c).await;
    let token = root(&s).await.auth_client().authenticate("root".into(), "rootpw".into()).await.unwrap().token().to_string();
    let (prefix, index) = token.split_once('.').unwrap();
    assert_eq!(prefix.len(), 16);
    assert!(prefix.chars().all(|c| c.is_ascii_alphabetic()));
    index.parse::<u64>().unwrap();
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", s.endpoint)).unwrap().connect().await.unwrap();
    let mut kv = KvClient::new(channel);
    let bearer = format!("Bearer {token}");
    for (key, value, ok) in [
        ("token", "garbage", false),
        ("token", "abcdefghijklmnop.1", false),
        ("token", "abcdefghijklmnop.x", false),
        ("token", ".", false),
        ("token", "eyJhbGciOiJSUzI1NiJ9.e30.c2ln", false),
        ("token", &token, true),
        ("authorization", &token, true),
        ("authorization", &bearer, true),
    ] {
        let mut req = tonic::Request::new(RangeRequest { key: b"k".to_vec(), ..Default::default() });
        req.metadata_mut().insert(key, value.parse().unwrap());
        match kv.range(req).await {
            Ok(_) => assert!(ok, "{key}: {value} accepted"),
            Err(e) => {
                assert!(!ok, "{key}: {value}: {e:?}");
                assert_eq!((e.code(), e.message()), (tonic::Code::Unauthenticated, "etcdserver: invalid auth token"));
            }
        }
    }
    c.status().await.unwrap_err();
    root(&s).await.status().await.unwrap();
}

/// JWT tokens: claims {username, revision, exp}; an expired token and one issued before an
/// auth change are refused with etcd's errors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_tokens_expire_and_carry_the_auth_revision() {
    let dir = common::fresh_dir("jwt");
    let key = rcgen::KeyPair::generate().unwrap();
    std::fs::write(dir.join("priv.pem"), key.serialize_pem()).unwrap();
    std::fs::write(dir.join("pub.pem"), key.public_key_pem()).unwrap();
    let flag = format!("jwt,pub-key={},priv-key={},sign-method=ES256,ttl=2s", dir.join("pub.pem").display(), dir.join("priv.pem").display());
    let s = Server::start(&["--bcrypt-cost", "4", "--auth-token", &flag]);
    let mut c = s.client().await;
    enable_auth(&mut c).await;
    let mut r = root(&s).await;
    let token = r.auth_client().authenticate("root".into(), "rootpw".into()).await.unwrap().token().to_string();
    assert_eq!(token.split('.').count(), 3, "a JWT: {token}");
    r.put("j", "1", None).await.unwrap();
    tokio::time::sleep(Duration::from_millis(3100)).await;
    assert_eq!(message(r.put("j", "2", None).await.unwrap_err()), "etcdserver: invalid auth token");
    let mut r = root(&s).await;
    r.role_add("another").await.unwrap(); // the auth revision moves on: r's token is older
    assert_eq!(message(r.get("j", None).await.unwrap_err()), "etcdserver: revision of auth store is old");
    root(&s).await.get("j", None).await.unwrap();
}

/// JWT with priv-key alone, as etcd (auth/options.go rsaKey, ecKey): the verifying key is the
/// private key's public half. RSA keys as PKCS#1 and PKCS#8 (openssl), ECDSA as PKCS#8 (rcgen);
/// tokens are signed and accepted, a token of another key is refused. An HMAC method with
/// pub-key alone refuses to start, as etcd's hmacKey (ErrMissingKey).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_public_key_derived_from_the_private_key() {
    let dir = common::fresh_dir("jwt-priv");
    let openssl = |args: &[&str]| {
        let out = std::process::Command::new("openssl").args(args).output().expect("openssl is needed for this test");
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    let pkcs1 = dir.join("rsa-pkcs1.pem");
    openssl(&["genrsa", "-traditional", "-out", pkcs1.to_str().unwrap(), "2048"]);
    let pkcs8 = dir.join("rsa-pkcs8.pem");
    openssl(&["pkcs8", "-topk8", "-nocrypt", "-in", pkcs1.to_str().unwrap(), "-out", pkcs8.to_str().unwrap()]);
    assert!(std::fs::read_to_string(&pkcs1).unwrap().starts_with("-----BEGIN RSA PRIVATE KEY-----"));
    let ec = dir.join("ec.pem");
    std::fs::write(&ec, rcgen::KeyPair::generate().unwrap().serialize_pem()).unwrap();
    let other_ec = dir.join("other-ec.pem");
    std::fs::write(&other_ec, rcgen::KeyPair::generate().unwrap().serialize_pem()).unwrap();
    let mut tokens = Vec::new();
    for (key, method) in [(&pkcs1, "RS256"), (&pkcs8, "PS384"), (&ec, "ES256"), (&other_ec, "ES256")] {
        let flag = format!("jwt,priv-key={},sign-method={method}", key.display());
        let s = Server::start(&["--bcrypt-cost", "4", "--auth-token", &flag]);
        let mut c = s.client().await;
        enable_auth(&mut c).await;
        let mut r = root(&s).await;
        let token = r.auth_client().authenticate("root".into(), "rootpw".into()).await.unwrap().token().to_string();
        assert_eq!(token.split('.').count(), 3, "a JWT: {token}");
        r.put("j", method, None).await.unwrap();
        assert_eq!(r.get("j", None).await.unwrap().kvs()[0].value(), method.as_bytes());
        tokens.push(token);
        if key == &other_ec {
            // The first ES256 server's token is signed by another key.
            use ballast::proto::etcdserverpb::{kv_client::KvClient, RangeRequest};
            let channel = tonic::transport::Channel::from_shared(format!("http://{}", s.endpoint)).unwrap().connect().await.unwrap();
            let mut req = tonic::Request::new(RangeRequest { key: b"j".to_vec(), ..Default::default() });
            req.metadata_mut().insert("token", tokens[2].parse().unwrap());
            let e = KvClient::new(channel).range(req).await.unwrap_err();
            assert_eq!((e.code(), e.message()), (tonic::Code::Unauthenticated, "etcdserver: invalid auth token"));
        }
    }
    let secret = dir.join("secret");
    std::fs::write(&secret, "a shared secret").unwrap();
    let flag = format!("jwt,pub-key={},sign-method=HS256", secret.display());
    let (log, _) = Server::refused_urls(&["http://127.0.0.1:{port}"], &["--auth-token", &flag]);
    assert!(log.contains("auth: missing key data"), "{log}");
    let flag = format!("jwt,priv-key={},sign-method=HS256", secret.display());
    let s = Server::start(&["--bcrypt-cost", "4", "--auth-token", &flag]);
    enable_auth(&mut s.client().await).await;
    root(&s).await.put("j", "hs", None).await.unwrap();
}

/// Users, roles, permissions and the enabled flag survive restarts: from the WAL, then from a
/// snapshot plus the WAL after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_state_survives_restart() {
    let mut s = Server::start(&["--bcrypt-cost", "4", "--snapshot-count", "20"]);
    let mut c = s.client().await;
    enable_auth(&mut c).await;
    let mut r = root(&s).await;
    r.role_add("reader").await.unwrap();
    r.role_grant_permission("reader", Permission::read("s/").with_prefix()).await.unwrap();
    r.user_add("u", "pw", None).await.unwrap();
    r.user_grant_role("u", "reader").await.unwrap();
    r.put("s/1", "v", None).await.unwrap();
    let before = auth_status(&s).await;
    assert!(before.0);
    s.terminate();
    s.restart();
    let mut u = login(&s, "u", "pw").await.unwrap();
    u.get("s/1", None).await.unwrap();
    assert_eq!(message(u.put("s/1", "x", None).await.unwrap_err()), "etcdserver: permission denied");
    let mut r = root(&s).await;
    assert_eq!(auth_status(&s).await, before);
    // Past a snapshot (--snapshot-count 20), then more changes in the WAL after it.
    for i in 0..40 {
        r.put(format!("s/{i}"), "v", None).await.unwrap();
    }
    r.role_grant_permission("reader", Permission::read_write("t/").with_prefix()).await.unwrap();
    r.user_add("later", "pw", None).await.unwrap();
    let before = auth_status(&s).await;
    s.terminate();
    assert!(common::read_checked_json(&s.data_dir.join("member/snap/manifest.json")).is_some_and(|m| m["auth"]["enabled"] == true));
    s.restart();
    let mut r = root(&s).await;
    assert_eq!(auth_status(&s).await, before);
    assert_eq!(r.user_list().await.unwrap().users(), ["later", "root", "u"]);
    let mut u = login(&s, "u", "pw").await.unwrap();
    u.put("t/1", "v", None).await.unwrap();
    login(&s, "later", "pw").await.unwrap();
}

/// A CA and certificates signed by it (common names as asked), as PEM files in `dir`.
fn certificates(dir: &std::path::Path, cns: &[&str]) -> Vec<(std::path::PathBuf, std::path::PathBuf)> {
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "auth test CA");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::DigitalSignature];
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let ca = ca_params.self_signed(&ca_key).unwrap();
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    let issuer = rcgen::Issuer::from_params(&ca_params, &ca_key);
    cns.iter()
        .map(|cn| {
            let mut params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
            params.distinguished_name.push(rcgen::DnType::CommonName, *cn);
            params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth, rcgen::ExtendedKeyUsagePurpose::ClientAuth];
            let key = rcgen::KeyPair::generate().unwrap();
            let cert = params.signed_by(&key, &issuer).unwrap();
            let (c, k) = (dir.join(format!("{cn}.pem")), dir.join(format!("{cn}-key.pem")));
            std::fs::write(&c, cert.pem()).unwrap();
            std::fs::write(&k, key.serialize_pem()).unwrap();
            (c, k)
        })
        .collect()
}

/// With --client-cert-auth, a verified client certificate's common name is the user when a
/// request carries no token; a token still wins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn common_name_is_the_user_without_a_token() {
    let dir = common::fresh_dir("cn");
    let certs = certificates(&dir, &["server", "alice", "root"]);
    let ca = dir.join("ca.pem");
    let (server_cert, server_key) = (certs[0].0.to_str().unwrap(), certs[0].1.to_str().unwrap());
    let s = Server::start_urls(
        &["https://127.0.0.1:{port}"],
        &["--bcrypt-cost", "4", "--cert-file", server_cert, "--key-file", server_key, "--trusted-ca-file", ca.to_str().unwrap(), "--client-cert-auth"],
    );
    let client = |leaf: &(std::path::PathBuf, std::path::PathBuf), user: Option<(&str, &str)>| {
        let tls = etcd_client::TlsOptions::new()
            .ca_certificate(etcd_client::Certificate::from_pem(std::fs::read(&ca).unwrap()))
            .domain_name("localhost")
            .identity(etcd_client::Identity::from_pem(std::fs::read(&leaf.0).unwrap(), std::fs::read(&leaf.1).unwrap()));
        let mut options = ConnectOptions::new().with_tls(tls);
        if let Some((u, p)) = user {
            options = options.with_user(u, p);
        }
        Client::connect([format!("https://127.0.0.1:{}", s.port)], Some(options))
    };
    // Auth off: the certificate changes nothing.
    let mut as_root = client(&certs[2], None).await.unwrap();
    as_root.user_add("root", "rootpw", None).await.unwrap();
    as_root.user_grant_role("root", "root").await.unwrap();
    as_root.user_add("alice", "alicepw", None).await.unwrap();
    as_root.role_add("a").await.unwrap();
    as_root.role_grant_permission("a", Permission::read_write("a/").with_prefix()).await.unwrap();
    as_root.user_grant_role("alice", "a").await.unwrap();
    as_root.auth_enable().await.unwrap();
    // Auth on: the certificate named "root" is root, without a password.
    as_root.put("x", "1", None).await.unwrap();
    as_root.user_list().await.unwrap();
    let mut alice = client(&certs[1], None).await.unwrap();
    alice.put("a/1", "1", None).await.unwrap();
    assert_eq!(alice.get("a/1", None).await.unwrap().kvs().len(), 1);
    assert_eq!(message(alice.get("x", None).await.unwrap_err()), "etcdserver: permission denied");
    assert_eq!(message(alice.put("x", "2", None).await.unwrap_err()), "etcdserver: permission denied");
    assert_eq!(message(alice.user_list().await.unwrap_err()), "etcdserver: permission denied");
    // A token wins over the certificate: alice's certificate, root's login.
    let mut alice_as_root = client(&certs[1], Some(("root", "rootpw"))).await.unwrap();
    alice_as_root.put("x", "3", None).await.unwrap();
    // The JSON gateway refuses a certificate with a common name while auth is on, as etcd's:
    // its calls would not carry it.
    let out = std::process::Command::new("curl")
        // The server binds 127.0.0.1 only: "localhost" must not go to ::1 (another process's port).
        .args(["--resolve", &format!("localhost:{}:127.0.0.1", s.port)])
        .args(["-sS", "--max-time", "10", "--cacert", ca.to_str().unwrap(), "--cert", certs[1].0.to_str().unwrap(), "--key", certs[1].1.to_str().unwrap()])
        .args(["-w", "\n%{http_code}", "-X", "POST", "-d", "{}", &format!("https://localhost:{}/v3/auth/status", s.port)])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("curl");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(stdout, "CommonName of client sending a request against gateway will be ignored and not used as expected\n\n400", "curl: {stderr}");
}

/// Lock and Election act as their caller: its permissions on the lock's keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_and_election_act_as_the_caller() {
    let s = Server::start(FAST);
    let mut c = s.client().await;
    enable_auth(&mut c).await;
    let mut r = root(&s).await;
    r.role_add("locker").await.unwrap();
    r.role_grant_permission("locker", Permission::read_write("locks/").with_prefix()).await.unwrap();
    r.user_add("u", "pw", None).await.unwrap();
    r.user_grant_role("u", "locker").await.unwrap();
    let mut u = login(&s, "u", "pw").await.unwrap();
    let lease = u.lease_grant(60, None).await.unwrap().id();
    let opts = || Some(etcd_client::LockOptions::new().with_lease(lease));
    let held = u.lock("locks/a", opts()).await.unwrap();
    u.unlock(held.key().to_vec()).await.unwrap();
    assert_eq!(message(u.lock("other/a", opts()).await.unwrap_err()), "etcdserver: permission denied");
    let e = u.campaign("other/e", "v", lease).await.unwrap_err();
    assert_eq!((code(&e), message(e)), (tonic::Code::Unknown, "etcdserver: permission denied".into()));
    u.campaign("locks/e", "v", lease).await.unwrap();
    assert_eq!(u.leader("locks/e").await.unwrap().kv().unwrap().value(), b"v");
    assert_eq!(message(c.lock("locks/b", None).await.unwrap_err()), "etcdserver: user name is empty");
    r.lock("anything", None).await.unwrap();
}

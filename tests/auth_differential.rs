//! etcdctl 3.5's auth commands against etcd 3.5.1 and ballast: the same script, every
//! command's exit status, stdout and error line compared (the client's JSON retry logs left
//! out). Revisions and auth revisions are compared as they are: ballast counts them as etcd.
//! `BALLAST_SHOW_STEPS=1` prints ballast's side of every step.

mod common;
#[path = "common/etcd.rs"]
mod etcd;
#[path = "common/http.rs"]
mod http;

use std::io::Write;
use std::process::{Command, Stdio};

use etcd::Etcd;
use common::Server;

/// (args, stdin) of each step.
const SCRIPT: &[(&[&str], &str)] = &[
    (&["auth", "enable"], ""),
    (&["user", "add", "root:rootpw"], ""),
    (&["user", "add", "alice:alicepw"], ""),
    (&["user", "add", "alice:again"], ""),
    (&["user", "add", "--no-password", "bob"], ""),
    (&["user", "add", "carol", "--interactive=false"], "carolpw\n"),
    (&["user", "list"], ""),
    (&["user", "get", "alice"], ""),
    (&["user", "get", "nobody"], ""),
    (&["role", "add", "reader"], ""),
    (&["role", "add", "reader"], ""),
    (&["role", "add", "writer"], ""),
    (&["role", "grant-permission", "reader", "read", "k1"], ""),
    (&["role", "grant-permission", "reader", "--prefix=true", "readwrite", "p/"], ""),
    (&["role", "grant-permission", "reader", "--from-key", "write", "m"], ""),
    (&["role", "grant-permission", "reader", "read", "a", "c"], ""),
    (&["role", "grant-permission", "reader", "write", "a", "c"], ""),
    (&["role", "grant-permission", "nosuch", "read", "x"], ""),
    (&["role", "get", "reader"], ""),
    (&["role", "get", "nosuch"], ""),
    (&["role", "list"], ""),
    (&["user", "grant-role", "alice", "reader"], ""),
    (&["user", "grant-role", "alice", "writer"], ""),
    (&["user", "grant-role", "alice", "nosuch"], ""),
    (&["user", "get", "alice"], ""),
    (&["user", "get", "alice", "--detail"], ""),
    (&["user", "revoke-role", "alice", "writer"], ""),
    (&["user", "revoke-role", "alice", "writer"], ""),
    (&["user", "grant-role", "root", "root"], ""),
    (&["auth", "enable"], ""),
    (&["auth", "enable"], ""),
    (&["--user", "root:rootpw", "auth", "status"], ""),
    (&["put", "k1", "v"], ""),
    (&["get", "k1"], ""),
    (&["--user", "root:wrong", "get", "k1"], ""),
    (&["--user", "nobody:x", "get", "k1"], ""),
    (&["--user", "root:rootpw", "put", "k1", "v1"], ""),
    (&["--user", "alice:alicepw", "get", "k1"], ""),
    (&["--user", "alice:alicepw", "put", "k1", "v2"], ""),
    (&["--user", "alice:alicepw", "put", "p/x", "px"], ""),
    (&["--user", "alice:alicepw", "get", "p/", "--prefix"], ""),
    (&["--user", "alice:alicepw", "get", "p", "--prefix"], ""),
    (&["--user", "alice:alicepw", "put", "zz", "z"], ""),
    (&["--user", "alice:alicepw", "del", "b"], ""),
    (&["--user", "alice:alicepw", "get", "m", "--from-key"], ""),
    (&["--user", "alice:alicepw", "user", "list"], ""),
    (&["--user", "alice:alicepw", "role", "get", "reader"], ""),
    (&["--user", "alice:alicepw", "role", "get", "root"], ""),
    (&["--user", "alice:alicepw", "user", "get", "root"], ""),
    (&["--user", "alice:alicepw", "auth", "disable"], ""),
    (&["--user", "bob:", "get", "k1"], ""),
    (&["--user", "carol:carolpw", "get", "k1"], ""),
    (&["--user", "root:rootpw", "role", "revoke-permission", "reader", "k1"], ""),
    (&["--user", "root:rootpw", "role", "revoke-permission", "reader", "k1"], ""),
    (&["--user", "root:rootpw", "role", "revoke-permission", "reader", "p/", "--prefix"], ""),
    (&["--user", "root:rootpw", "role", "revoke-permission", "reader", "m", "--from-key"], ""),
    (&["--user", "root:rootpw", "role", "get", "reader"], ""),
    (&["--user", "alice:alicepw", "get", "k1"], ""),
    (&["--user", "root:rootpw", "user", "passwd", "alice", "--interactive=false"], "newpw\n"),
    (&["--user", "alice:alicepw", "get", "a"], ""),
    (&["--user", "alice:newpw", "get", "a"], ""),
    (&["--user", "root:rootpw", "user", "delete", "root"], ""),
    (&["--user", "root:rootpw", "role", "delete", "root"], ""),
    (&["--user", "root:rootpw", "user", "revoke-role", "root", "root"], ""),
    (&["--user", "root:rootpw", "user", "delete", "alice"], ""),
    (&["--user", "root:rootpw", "user", "delete", "alice"], ""),
    (&["--user", "root:rootpw", "role", "delete", "reader"], ""),
    (&["--user", "root:rootpw", "role", "delete", "reader"], ""),
    (&["--user", "root:rootpw", "user", "list"], ""),
    (&["--user", "root:rootpw", "role", "list"], ""),
    (&["--user", "root:rootpw", "auth", "status"], ""),
    (&["--user", "root:rootpw", "auth", "disable"], ""),
    (&["auth", "status"], ""),
    (&["auth", "disable"], ""),
    (&["get", "k1"], ""),
];

/// One step's outcome: exit status, stdout, and stderr without the client's JSON log lines.
fn run(ctl: &std::path::Path, endpoint: &str, args: &[&str], stdin: &str) -> String {
    let mut child = Command::new(ctl)
        .env("ETCDCTL_API", "3")
        .args(["--endpoints", endpoint, "--command-timeout", "10s", "--dial-timeout", "3s"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr: Vec<String> = String::from_utf8_lossy(&out.stderr).lines().filter(|l| !l.starts_with('{')).map(str::to_string).collect();
    format!("exit {}\n{}{}", out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout), stderr.join("\n"))
}

#[test]
fn etcdctl_auth_commands_match_etcd() {
    let ctl = etcd::find_etcdctl35().unwrap_or_else(|e| panic!("etcdctl 3.5 is needed for this test: {e}"));
    let etcd = Etcd::start();
    let ballast = Server::start(&["--bcrypt-cost", "4"]);
    let etcd_url = format!("http://{}", etcd.endpoint);
    let ballast_url = format!("http://{}", ballast.endpoint);
    let mut differences = Vec::new();
    for (args, stdin) in SCRIPT {
        let want = run(&ctl, &etcd_url, args, stdin);
        let got = run(&ctl, &ballast_url, args, stdin);
        if std::env::var("BALLAST_SHOW_STEPS").is_ok() { eprintln!("$ {}\n{got}", args.join(" ")); }
        if want != got {
            differences.push(format!("etcdctl {}\n--- etcd 3.5:\n{want}\n--- ballast:\n{got}\n", args.join(" ")));
        }
    }
    assert!(differences.is_empty(), "{} of {} steps differ:\n{}", differences.len(), SCRIPT.len(), differences.join("\n"));
}

/// Simple tokens live in memory: after a restart (SIGTERM or SIGKILL) the token a client holds
/// is refused, on etcd and on ballast alike, though the Authenticate entry that issued it is
/// still in the WAL; logging in again works. (A login whose entry was not yet known applied on
/// disk is applied again at the restart and its token lives on, on both: etcd's backend records
/// its applied index every 100 ms, ballast's WAL the commit index with its next write. So a
/// write follows each login here, and a pause.)
#[test]
fn simple_tokens_are_lost_at_a_restart() {
    let ctl = etcd::find_etcdctl35().unwrap_or_else(|e| panic!("etcdctl 3.5 is needed for this test: {e}"));
    let mut etcd = Etcd::start();
    let mut ballast = Server::start(&["--bcrypt-cost", "4"]);
    let urls = |etcd: &Etcd, ballast: &Server| [format!("http://{}", etcd.endpoint), format!("http://{}", ballast.endpoint)];
    for url in urls(&etcd, &ballast) {
        for args in [&["user", "add", "root:rootpw"][..], &["user", "grant-role", "root", "root"], &["auth", "enable"]] {
            assert!(run(&ctl, &url, args, "").starts_with("exit 0"), "{url}: etcdctl {args:?}");
        }
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    for kill in [false, true] {
        let tokens: Vec<String> = urls(&etcd, &ballast).iter().map(|url| rt.block_on(authenticate(url))).collect();
        let before: Vec<String> = urls(&etcd, &ballast).iter().zip(&tokens).map(|(url, t)| rt.block_on(get_with(url, t))).collect();
        assert_eq!(before, ["ok", "ok"], "the fresh tokens (kill: {kill})");
        for (url, token) in urls(&etcd, &ballast).iter().zip(&tokens) {
            rt.block_on(put_with(url, token));
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
        etcd.restart();
        if kill {
            ballast.kill();
        } else {
            ballast.terminate();
        }
        ballast.restart();
        let after: Vec<String> = urls(&etcd, &ballast).iter().zip(&tokens).map(|(url, t)| rt.block_on(get_with(url, t))).collect();
        assert_eq!(after, ["Unauthenticated: etcdserver: invalid auth token"; 2], "the tokens after the restart (kill: {kill})");
    }
}

/// root's simple token from `url`'s Authenticate.
async fn authenticate(url: &str) -> String {
    use ballast::proto::etcdserverpb::{auth_client::AuthClient, AuthenticateRequest};
    let mut auth = AuthClient::connect(url.to_string()).await.unwrap();
    auth.authenticate(AuthenticateRequest { name: "root".into(), password: "rootpw".into() }).await.unwrap().into_inner().token
}

/// A Range with `token`: "ok", or the error's code and message.
async fn get_with(url: &str, token: &str) -> String {
    use ballast::proto::etcdserverpb::{kv_client::KvClient, RangeRequest};
    let mut kv = KvClient::connect(url.to_string()).await.unwrap();
    let mut req = tonic::Request::new(RangeRequest { key: b"k".to_vec(), ..Default::default() });
    req.metadata_mut().insert("token", token.parse().unwrap());
    match kv.range(req).await {
        Ok(_) => "ok".into(),
        Err(e) => format!("{:?}: {}", e.code(), e.message()),
    }
}

async fn put_with(url: &str, token: &str) {
    use ballast::proto::etcdserverpb::{kv_client::KvClient, PutRequest};
    let mut kv = KvClient::connect(url.to_string()).await.unwrap();
    let mut req = tonic::Request::new(PutRequest { key: b"k".to_vec(), value: b"v".to_vec(), ..Default::default() });
    req.metadata_mut().insert("token", token.parse().unwrap());
    kv.put(req).await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// gRPC and JSON gateway calls side by side (etcd 3.5.1, and ballast, which follows 3.5.33 where
// they differ: those answers are asserted on ballast alone).

/// `url`s set up alike with etcdctl: root (root role), alice:alicepw (role `ac`: readwrite on
/// [a, c)), carol:carolpw (no role), auth on.
fn set_up_users(ctl: &std::path::Path, url: &str) {
    for args in [
        &["user", "add", "root:rootpw"][..],
        &["user", "grant-role", "root", "root"],
        &["user", "add", "alice:alicepw"],
        &["user", "add", "carol:carolpw"],
        &["role", "add", "ac"],
        &["role", "grant-permission", "ac", "readwrite", "a", "c"],
        &["user", "grant-role", "alice", "ac"],
        &["auth", "enable"],
    ] {
        let out = run(ctl, url, args, "");
        assert!(out.starts_with("exit 0"), "{url}: etcdctl {args:?}: {out}");
    }
}

/// etcd 3.5.1 and ballast with `set_up_users` done on both.
fn users_pair(etcd_flags: &[&str], ballast_flags: &[&str]) -> (Etcd, Server) {
    let ctl = etcd::find_etcdctl35().unwrap_or_else(|e| panic!("etcdctl 3.5 is needed for this test: {e}"));
    let etcd = Etcd::start_with(etcd_flags);
    let ballast = Server::start(&[&["--bcrypt-cost", "4"], ballast_flags].concat());
    set_up_users(&ctl, &format!("http://{}", etcd.endpoint));
    set_up_users(&ctl, &format!("http://{}", ballast.endpoint));
    (etcd, ballast)
}

async fn channel(endpoint: &str) -> tonic::transport::Channel {
    tonic::transport::Channel::from_shared(format!("http://{endpoint}")).unwrap().connect().await.unwrap()
}

/// A request carrying `token` (none: anonymous).
fn with_token<T>(message: T, token: Option<&str>) -> tonic::Request<T> {
    let mut req = tonic::Request::new(message);
    if let Some(t) = token {
        req.metadata_mut().insert("token", t.parse().unwrap());
    }
    req
}

/// "OK", or the error's code and message.
fn outcome<T>(r: Result<tonic::Response<T>, tonic::Status>) -> String {
    match r {
        Ok(_) => "OK".into(),
        Err(e) => format!("{:?}: {}", e.code(), e.message()),
    }
}

/// Authenticate's outcome, and the token when it succeeded.
async fn login_as(endpoint: &str, name: &str, password: &str) -> (String, Option<String>) {
    use ballast::proto::etcdserverpb::{auth_client::AuthClient, AuthenticateRequest};
    let r = AuthClient::new(channel(endpoint).await).authenticate(AuthenticateRequest { name: name.into(), password: password.into() }).await;
    match r {
        Ok(resp) => ("OK".into(), Some(resp.into_inner().token)),
        Err(e) => (outcome::<()>(Err(e)), None),
    }
}

async fn token_of(endpoint: &str, name: &str, password: &str) -> String {
    let (said, token) = login_as(endpoint, name, password).await;
    token.unwrap_or_else(|| panic!("{endpoint}: {name} logs in: {said}"))
}

/// etcd 3.5.33's kvServer.Compact checks the root role (3.5.1 compacts for anyone): an invalid
/// token is refused by both (gRPC and the gateway, compared), no token and a user without the
/// root role are refused by ballast with 3.5.33's errors.
#[test]
fn compact_needs_the_root_role() {
    use ballast::proto::etcdserverpb::{kv_client::KvClient, CompactionRequest, PutRequest};
    let (etcd, ballast) = users_pair(&[], &[]);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let compact = |endpoint: &str, revision: i64, token: Option<&str>| {
        rt.block_on(async { outcome(KvClient::new(channel(endpoint).await).compact(with_token(CompactionRequest { revision, physical: false }, token)).await) })
    };
    for endpoint in [&etcd.endpoint, &ballast.endpoint] {
        rt.block_on(async {
            let root = token_of(endpoint, "root", "rootpw").await;
            let mut kv = KvClient::new(channel(endpoint).await);
            for i in 0..6 {
                kv.put(with_token(PutRequest { key: b"k".to_vec(), value: vec![b'0' + i], ..Default::default() }, Some(&root))).await.unwrap();
            }
        });
    }
    let bad = [&etcd.endpoint, &ballast.endpoint].map(|e| compact(e, 2, Some("garbage")));
    assert_eq!(bad, ["Unauthenticated: etcdserver: invalid auth token"; 2], "etcd, ballast");
    let gateway = [&etcd.endpoint, &ballast.endpoint].map(|e| {
        let a = http::request(e, "POST", "/v3/kv/compaction", r#"{"revision":"2"}"#, &[("Authorization", "garbage")]);
        (a.status, a.body)
    });
    assert_eq!(gateway[0].0, 401, "etcd: {:?}", gateway[0]);
    assert_eq!(gateway[1], gateway[0], "ballast, etcd");
    let carol = rt.block_on(token_of(&ballast.endpoint, "carol", "carolpw"));
    let root = rt.block_on(token_of(&ballast.endpoint, "root", "rootpw"));
    assert_eq!(compact(&ballast.endpoint, 3, None), "InvalidArgument: etcdserver: user name is empty");
    assert_eq!(compact(&ballast.endpoint, 3, Some(&carol)), "PermissionDenied: etcdserver: permission denied");
    assert_eq!(compact(&ballast.endpoint, 3, Some(&root)), "OK");
    assert_eq!(compact(&ballast.endpoint, 3, Some(&root)), "OutOfRange: etcdserver: mvcc: required revision has been compacted");
}

/// UserChangePassword as etcd's (v3_server.go, auth/store.go selectPassword): `password` is
/// hashed only when it is not empty; else the request's `hashedPassword` (base64 of a bcrypt
/// hash) is stored as it is: empty, and no password logs in; a hash, and its password does; not
/// base64, and auth's ErrNoPasswordUser. UserAdd hashes `password` whatever `hashedPassword`
/// says (and a no-password user ignores both). Every answer compared, and the gateway's login.
#[test]
fn change_password_stores_the_hashed_password_as_etcd() {
    use base64::Engine as _;
    use ballast::proto::authpb::UserAddOptions;
    use ballast::proto::etcdserverpb::{auth_client::AuthClient, AuthUserAddRequest, AuthUserChangePasswordRequest};
    let (etcd, ballast) = users_pair(&[], &[]);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let hash_of = |password: &str| {
        let hash = bcrypt::hash_with_result(password, 4).unwrap().format_for_version(bcrypt::Version::TwoA);
        base64::engine::general_purpose::STANDARD.encode(hash)
    };
    let steps = |endpoint: &str| -> Vec<String> {
        rt.block_on(async {
            let root = token_of(endpoint, "root", "rootpw").await;
            let mut auth = AuthClient::new(channel(endpoint).await);
            let mut seen = Vec::new();
            let mut changer = auth.clone();
            let mut change = async |name: &str, password: &str, hashed: &str| {
                let r = AuthUserChangePasswordRequest { name: name.into(), password: password.into(), hashed_password: hashed.into() };
                outcome(changer.user_change_password(with_token(r, Some(&root))).await)
            };
            let login = async |name: &str, password: &str| login_as(endpoint, name, password).await.0;
            seen.push(format!("alice '' '' -> {}", change("alice", "", "").await));
            seen.push(format!("alice logs in with '': {}, alicepw: {}", login("alice", "").await, login("alice", "alicepw").await));
            seen.push(format!("carol '' hash(prehashed) -> {}", change("carol", "", &hash_of("prehashed")).await));
            seen.push(format!("carol: prehashed {}, '' {}, carolpw {}", login("carol", "prehashed").await, login("carol", "").await, login("carol", "carolpw").await));
            seen.push(format!("alice '' '!!!' -> {}", change("alice", "", "!!!").await));
            seen.push(format!("alice '' 'YQ' (no padding) -> {}", change("alice", "", "YQ").await));
            seen.push(format!("alice logs in with '': {}", login("alice", "").await));
            seen.push(format!("alice newpw '!!!' -> {}", change("alice", "newpw", "!!!").await));
            seen.push(format!("alice: newpw {}", login("alice", "newpw").await));
            let add = AuthUserAddRequest { name: "dave".into(), password: "davepw".into(), hashed_password: hash_of("other"), options: None };
            seen.push(format!("add dave davepw hash(other) -> {}", outcome(auth.user_add(with_token(add, Some(&root))).await)));
            seen.push(format!("dave: davepw {}, other {}", login("dave", "davepw").await, login("dave", "other").await));
            let add = AuthUserAddRequest { name: "erin".into(), password: "x".into(), hashed_password: "!!!".into(), options: Some(UserAddOptions { no_password: true }) };
            seen.push(format!("add no-password erin x '!!!' -> {}", outcome(auth.user_add(with_token(add, Some(&root))).await)));
            seen.push(format!("erin '' '!!!' -> {}", change("erin", "", "!!!").await));
            seen.push(format!("erin: x {}", login("erin", "x").await));
            let gateway = http::request(endpoint, "POST", "/v3/auth/authenticate", r#"{"name":"carol","password":""}"#, &[]);
            seen.push(format!("gateway carol '': {} {}", gateway.status, gateway.body));
            seen
        })
    };
    let (want, got) = (steps(&etcd.endpoint), steps(&ballast.endpoint));
    assert_eq!(got, want, "ballast, etcd");
    assert!(want[1].starts_with("alice logs in with '': InvalidArgument"), "{want:?}");
}

/// `openssl args…`, which must succeed.
fn openssl(args: &[&str]) {
    let out = Command::new("openssl").args(args).output().expect("openssl is needed for this test");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A JWT for root at auth revision `revision`, signed with the RSA key `pem` (RS256).
fn rs256_token(pem: &std::path::Path, revision: u64) -> String {
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(&std::fs::read(pem).unwrap()).unwrap();
    let exp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 300;
    let claims = serde_json::json!({"username": "root", "revision": revision, "exp": exp});
    jsonwebtoken::encode(&jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256), &claims, &key).unwrap()
}

/// The `revision` claim of a JWT.
fn revision_claim(token: &str) -> u64 {
    use base64::Engine as _;
    let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(token.split('.').nth(1).unwrap()).unwrap();
    serde_json::from_slice::<serde_json::Value>(&payload).unwrap()["revision"].as_u64().unwrap()
}

/// JWT with both keys given, pub-key not priv-key's pair (with the usual exponent, which etcd's
/// match check lets through): etcd verifies with priv-key's own public half (jwt.go info), so its
/// own tokens and priv-key's pass and pub-key's pair's are refused. An ECDSA pub-key of another
/// curve fails etcd's check: neither server starts.
#[test]
fn jwt_verifies_with_the_private_keys_public_half() {
    use ballast::proto::etcdserverpb::{kv_client::KvClient, RangeRequest};
    let dir = common::fresh_dir("jwt-pair");
    let path = |name: &str| dir.join(name).to_str().unwrap().to_string();
    for name in ["a", "b"] {
        openssl(&["genrsa", "-out", &path(&format!("{name}.pem")), "2048"]);
        openssl(&["rsa", "-in", &path(&format!("{name}.pem")), "-pubout", "-out", &path(&format!("{name}.pub"))]);
    }
    let flag = format!("jwt,pub-key={},priv-key={},sign-method=RS256", path("b.pub"), path("a.pem"));
    let (etcd, ballast) = users_pair(&["--auth-token", &flag], &["--auth-token", &flag]);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let answers = |endpoint: &str| -> Vec<String> {
        rt.block_on(async {
            let own = token_of(endpoint, "root", "rootpw").await;
            let revision = revision_claim(&own);
            let mut kv = KvClient::new(channel(endpoint).await);
            let mut seen = Vec::new();
            for (what, token) in [("own", own), ("signed by b", rs256_token(&dir.join("b.pem"), revision)), ("signed by a", rs256_token(&dir.join("a.pem"), revision))] {
                let r = kv.range(with_token(RangeRequest { key: b"k".to_vec(), ..Default::default() }, Some(&token))).await;
                seen.push(format!("{what}: {}", outcome(r)));
            }
            seen
        })
    };
    let want = answers(&etcd.endpoint);
    assert_eq!(want, ["own: OK", "signed by b: Unauthenticated: etcdserver: invalid auth token", "signed by a: OK"], "etcd");
    assert_eq!(answers(&ballast.endpoint), want, "ballast");
    openssl(&["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", &path("p256-sec1.pem")]);
    openssl(&["pkcs8", "-topk8", "-nocrypt", "-in", &path("p256-sec1.pem"), "-out", &path("p256.pem")]);
    openssl(&["ecparam", "-name", "secp384r1", "-genkey", "-noout", "-out", &path("p384.pem")]);
    openssl(&["ec", "-in", &path("p384.pem"), "-pubout", "-out", &path("p384.pub")]);
    let flag = format!("jwt,pub-key={},priv-key={},sign-method=ES256", path("p384.pub"), path("p256.pem"));
    let refused = Etcd::start_error("http", &["--auth-token", &flag]);
    assert!(refused.contains("public and private keys don't match"), "etcd: {refused}");
    let (log, _) = Server::refused_urls(&["http://127.0.0.1:{port}"], &["--auth-token", &flag]);
    assert!(log.contains("public and private keys don't match"), "ballast: {log}");
}

/// `--auth-token-ttl 0`: etcd's tokenSimple.enable() takes a TTL <= 0 as its 300 s default, so
/// a simple token still works after a pause longer than a 1 s TTL would allow.
#[test]
fn simple_token_ttl_zero_is_the_default() {
    use ballast::proto::etcdserverpb::{kv_client::KvClient, RangeRequest};
    let (etcd, ballast) = users_pair(&["--auth-token-ttl", "0"], &["--auth-token-ttl", "0"]);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let tokens = [&etcd.endpoint, &ballast.endpoint].map(|e| rt.block_on(token_of(e, "root", "rootpw")));
    std::thread::sleep(std::time::Duration::from_millis(2500));
    let answers = [&etcd.endpoint, &ballast.endpoint].map(|e| {
        let i = usize::from(e == &ballast.endpoint);
        rt.block_on(async { outcome(KvClient::new(channel(e).await).range(with_token(RangeRequest { key: b"k".to_vec(), ..Default::default() }, Some(&tokens[i]))).await) })
    });
    assert_eq!(answers, ["OK", "OK"], "etcd, ballast");
}

/// A range whose end is not after its key (not "\0"): etcd's interval tree `Contains` visits
/// the permissions holding the key, so it is permitted exactly when the key is (alice may
/// read and write [a, c)). Range, DeleteRange, Txn and Watch compared.
#[test]
fn ranges_ending_at_or_before_their_key_are_checked_at_the_key() {
    use ballast::proto::etcdserverpb::{kv_client::KvClient, request_op, watch_client::WatchClient, watch_request, DeleteRangeRequest, RangeRequest, RequestOp, TxnRequest, WatchCreateRequest, WatchRequest};
    let (etcd, ballast) = users_pair(&[], &[]);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let answers = |endpoint: &str| -> Vec<String> {
        rt.block_on(async {
            let alice = token_of(endpoint, "alice", "alicepw").await;
            let t = Some(alice.as_str());
            let mut kv = KvClient::new(channel(endpoint).await);
            let mut seen = Vec::new();
            for (key, end) in [("b", "a"), ("b", "b"), ("b1", "b0"), ("d", "c"), ("d", "a"), ("a", "\0\0")] {
                let range = RangeRequest { key: key.into(), range_end: end.into(), ..Default::default() };
                seen.push(format!("range {key:?}..{end:?}: {}", outcome(kv.range(with_token(range.clone(), t)).await)));
                let del = DeleteRangeRequest { key: key.into(), range_end: end.into(), ..Default::default() };
                seen.push(format!("delete {key:?}..{end:?}: {}", outcome(kv.delete_range(with_token(del, t)).await)));
                let txn = TxnRequest { success: vec![RequestOp { request: Some(request_op::Request::RequestRange(range)) }], ..Default::default() };
                seen.push(format!("txn get {key:?}..{end:?}: {}", outcome(kv.txn(with_token(txn, t)).await)));
                let create = WatchCreateRequest { key: key.into(), range_end: end.into(), ..Default::default() };
                let req = WatchRequest { request_union: Some(watch_request::RequestUnion::CreateRequest(create)) };
                let mut watch = WatchClient::new(channel(endpoint).await);
                let mut stream = watch.watch(with_token(tokio_stream::iter(vec![req]), t)).await.unwrap().into_inner();
                let first = tokio::time::timeout(std::time::Duration::from_secs(10), stream.message()).await.expect("a watch answer in 10 s");
                let w = first.unwrap().expect("a watch answer");
                // A refused watch's id: the request's on 3.5.1, -1 on 3.5.33 (and ballast).
                let id = if w.cancel_reason.contains("PermissionDenied") { "(refused)".to_string() } else { w.watch_id.to_string() };
                seen.push(format!("watch {key:?}..{end:?}: created {} canceled {} id {id} reason {:?}", w.created, w.canceled, w.cancel_reason));
            }
            seen
        })
    };
    let want = answers(&etcd.endpoint);
    assert!(want[0].ends_with(": OK"), "{want:?}");
    assert_eq!(answers(&ballast.endpoint), want, "ballast, etcd");
}

/// Hash, HashKV, Defragment and Snapshot with an invalid token: etcd's authMaintenanceServer
/// returns the auth package's error unmapped, code Unknown `auth: invalid auth token` (the
/// gateway: 500, code 2). Compared, gRPC and gateway.
#[test]
fn maintenance_with_an_invalid_token_is_the_auth_packages_error() {
    use ballast::proto::etcdserverpb::{maintenance_client::MaintenanceClient, DefragmentRequest, HashKvRequest, HashRequest, SnapshotRequest};
    let (etcd, ballast) = users_pair(&[], &[]);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let answers = |endpoint: &str| -> Vec<String> {
        let mut seen: Vec<String> = rt.block_on(async {
            let bad = Some("garbage");
            let mut m = MaintenanceClient::new(channel(endpoint).await);
            let snapshot = match m.snapshot(with_token(SnapshotRequest {}, bad)).await {
                Ok(s) => match s.into_inner().message().await {
                    Ok(_) => "OK".to_string(),
                    Err(e) => outcome::<()>(Err(e)),
                },
                Err(e) => outcome::<()>(Err(e)),
            };
            vec![
                format!("hash: {}", outcome(m.hash(with_token(HashRequest {}, bad)).await)),
                format!("hashkv: {}", outcome(m.hash_kv(with_token(HashKvRequest { revision: 0 }, bad)).await)),
                format!("defragment: {}", outcome(m.defragment(with_token(DefragmentRequest {}, bad)).await)),
                format!("snapshot: {snapshot}"),
            ]
        });
        for path in ["/v3/maintenance/hash", "/v3/maintenance/defragment"] {
            let a = http::request(endpoint, "POST", path, "{}", &[("Authorization", "garbage")]);
            seen.push(format!("gateway {path}: {} {}", a.status, a.body));
        }
        seen
    };
    let want = answers(&etcd.endpoint);
    assert_eq!(want[0], "hash: Unknown: auth: invalid auth token", "etcd");
    assert_eq!(answers(&ballast.endpoint), want, "ballast, etcd");
}

/// A Txn with no compares and no ops checks nothing: etcd serves it without a token (an
/// invalid token is still refused).
#[test]
fn an_empty_txn_needs_no_user() {
    use ballast::proto::etcdserverpb::{kv_client::KvClient, request_op, RequestOp, TxnRequest};
    let (etcd, ballast) = users_pair(&[], &[]);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let answers = |endpoint: &str| -> Vec<String> {
        rt.block_on(async {
            let mut kv = KvClient::new(channel(endpoint).await);
            let nested = TxnRequest { success: vec![RequestOp { request: Some(request_op::Request::RequestTxn(TxnRequest::default())) }], ..Default::default() };
            vec![
                format!("empty: {}", outcome(kv.txn(with_token(TxnRequest::default(), None)).await)),
                format!("empty, bad token: {}", outcome(kv.txn(with_token(TxnRequest::default(), Some("garbage"))).await)),
                format!("an empty txn in one: {}", outcome(kv.txn(with_token(nested, None)).await)),
            ]
        })
    };
    let want = answers(&etcd.endpoint);
    assert_eq!(want[0], "empty: OK", "etcd");
    assert_eq!(answers(&ballast.endpoint), want, "ballast, etcd");
}

/// Claims made of (now, the auth revision).
type ClaimsAt = fn(u64, u64) -> serde_json::Value;

/// A JWT with the claims `claims`, signed with the RSA key `pem` (RS256).
fn rs256_claims(pem: &std::path::Path, claims: &serde_json::Value) -> String {
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(&std::fs::read(pem).unwrap()).unwrap();
    jsonwebtoken::encode(&jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256), claims, &key).unwrap()
}

/// JWT claims signed with the servers' key, judged as etcd's jwt.go with golang-jwt v4's
/// MapClaims.Valid: nbf or iat in the future refused; no exp, a float exp or a float revision
/// accepted; an aud claim ignored. Compared with etcd 3.5.1 (whose jwt-go v3 agrees on these);
/// an exp that is a string is refused by 3.5.33's v4.5 (3.5.1 took it): ballast alone.
#[test]
fn jwt_claims_are_judged_as_golang_jwt() {
    use ballast::proto::etcdserverpb::{kv_client::KvClient, RangeRequest};
    let dir = common::fresh_dir("jwt-claims");
    let key = dir.join("a.pem");
    openssl(&["genrsa", "-out", key.to_str().unwrap(), "2048"]);
    let flag = format!("jwt,priv-key={},sign-method=RS256", key.display());
    let (etcd, ballast) = users_pair(&["--auth-token", &flag], &["--auth-token", &flag]);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let answers = |endpoint: &str, cases: &[(&str, ClaimsAt)]| -> Vec<String> {
        rt.block_on(async {
            let revision = revision_claim(&token_of(endpoint, "root", "rootpw").await);
            let mut kv = KvClient::new(channel(endpoint).await);
            let mut seen = Vec::new();
            for (what, claims) in cases {
                let token = rs256_claims(&key, &claims(now, revision));
                let r = kv.range(with_token(RangeRequest { key: b"k".to_vec(), ..Default::default() }, Some(&token))).await;
                seen.push(format!("{what}: {}", outcome(r)));
            }
            seen
        })
    };
    let compared: &[(&str, ClaimsAt)] = &[
        ("valid", |now, rev| serde_json::json!({"username": "root", "revision": rev, "exp": now + 600})),
        ("nbf in an hour", |now, rev| serde_json::json!({"username": "root", "revision": rev, "exp": now + 600, "nbf": now + 3600})),
        ("iat in an hour", |now, rev| serde_json::json!({"username": "root", "revision": rev, "exp": now + 600, "iat": now + 3600})),
        ("nbf and iat past", |now, rev| serde_json::json!({"username": "root", "revision": rev, "exp": now + 600, "nbf": now - 60, "iat": now - 60})),
        ("no exp", |_, rev| serde_json::json!({"username": "root", "revision": rev})),
        ("float exp", |now, rev| serde_json::json!({"username": "root", "revision": rev, "exp": now as f64 + 600.5})),
        ("expired", |now, rev| serde_json::json!({"username": "root", "revision": rev, "exp": now - 60})),
        ("float revision", |_, rev| serde_json::json!({"username": "root", "revision": rev as f64 + 0.5})),
        ("aud", |now, rev| serde_json::json!({"username": "root", "revision": rev, "exp": now + 600, "aud": "someone"})),
    ];
    let want = answers(&etcd.endpoint, compared);
    assert_eq!(want[..2], ["valid: OK".to_string(), "nbf in an hour: Unauthenticated: etcdserver: invalid auth token".to_string()], "etcd");
    assert_eq!(answers(&ballast.endpoint, compared), want, "ballast, etcd");
    let string_exp: &[(&str, ClaimsAt)] =
        &[("string exp", |now, rev| serde_json::json!({"username": "root", "revision": rev, "exp": (now + 600).to_string()}))];
    assert_eq!(answers(&ballast.endpoint, string_exp), ["string exp: Unauthenticated: etcdserver: invalid auth token"], "3.5.33's golang-jwt v4.5");
}

/// `--auth-token ""` is etcd's tokenNop: a login is refused with `authentication failed`; with
/// a JWT pub-key alone a login is etcd's unmapped ErrVerifyOnly (code Unknown). Compared.
#[test]
fn logins_without_a_token_provider_that_signs() {
    let dir = common::fresh_dir("jwt-verify-only");
    let (key, public) = (dir.join("a.pem"), dir.join("a.pub"));
    openssl(&["genrsa", "-out", key.to_str().unwrap(), "2048"]);
    openssl(&["rsa", "-in", key.to_str().unwrap(), "-pubout", "-out", public.to_str().unwrap()]);
    let verify_only = format!("jwt,pub-key={},sign-method=RS256", public.display());
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    for flag in ["", verify_only.as_str()] {
        let (etcd, ballast) = users_pair(&["--auth-token", flag], &["--auth-token", flag]);
        let answers = [&etcd.endpoint, &ballast.endpoint].map(|e| rt.block_on(login_as(e, "root", "rootpw")).0);
        assert_eq!(answers[1], answers[0], "--auth-token {flag:?}: ballast, etcd");
        assert_ne!(answers[0], "OK", "--auth-token {flag:?}: etcd");
    }
}

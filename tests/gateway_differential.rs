//! The JSON gateway side by side with etcd 3.5's: the same HTTP requests to a real etcd 3.5 and
//! to ballast, the answers compared — status, the headers etcd's gateway sets, and the body
//! byte for byte after masking what differs by design (member and cluster ids, peer and client
//! URLs, sizes and raft indexes, hashes, auth tokens). Both servers start empty, so revisions
//! must match too.

mod common;
#[path = "common/bolt.rs"]
mod bolt;
#[path = "common/etcd.rs"]
mod etcd;
#[path = "common/http.rs"]
mod http;

use std::time::Duration;

use common::Server;
use etcd::Etcd;
use http::Answer;

/// Header values that must match (Date and Content-Length aside: masked values change the length).
const HEADERS: &[&str] = &[
    "content-type",
    "grpc-metadata-content-type",
    "transfer-encoding",
    "x-content-type-options",
    "location",
    "access-control-allow-origin",
    "access-control-allow-methods",
    "access-control-allow-headers",
];

/// Fields whose values differ by design wherever they appear: the ids (etcd's peer URL differs
/// here) and the raft term (a single ballast node elects itself in term 1, etcd in term 2).
const IDS: &[&str] = &["cluster_id", "member_id", "raft_term"];

struct Pair {
    etcd: Etcd,
    ballast: Server,
}

impl Pair {
    fn start() -> Pair {
        Pair { etcd: Etcd::start(), ballast: Server::start(&["--compat-version", "3.5.1"]) }
    }

    /// The same request to both; asserts the answers match with `mask`ed fields' values
    /// hidden; returns (etcd's, ballast's).
    fn same_with(&self, method: &str, path: &str, body: &str, headers: &[(&str, &str)], mask: &[&str]) -> (Answer, Answer) {
        let e = http::request(&self.etcd.endpoint, method, path, body, headers);
        let b = http::request(&self.ballast.endpoint, method, path, body, headers);
        compare(&format!("{method} {path} {body}"), &e, &b, mask);
        (e, b)
    }

    fn same(&self, path: &str, body: &str) -> (Answer, Answer) {
        self.same_with("POST", path, body, &[], &[])
    }

    /// `same` with the auth tokens `tokens` (etcd's, ballast's) in `Authorization`.
    fn same_as(&self, tokens: &(String, String), path: &str, body: &str) -> (Answer, Answer) {
        let e = http::request(&self.etcd.endpoint, "POST", path, body, &[("Authorization", &tokens.0)]);
        let b = http::request(&self.ballast.endpoint, "POST", path, body, &[("Authorization", &tokens.1)]);
        compare(&format!("POST {path} {body} (as a user)"), &e, &b, &[]);
        (e, b)
    }
}

fn compare(what: &str, e: &Answer, b: &Answer, mask: &[&str]) {
    let pick = |a: &Answer| HEADERS.iter().map(|h| (h.to_string(), a.header(h).map(str::to_string))).collect::<Vec<_>>();
    let keys: Vec<&str> = IDS.iter().chain(mask).copied().collect();
    assert_eq!(
        (e.status, pick(e), masked(&e.body, &keys)),
        (b.status, pick(b), masked(&b.body, &keys)),
        "{what}\n etcd:    {e:?}\n ballast: {b:?}"
    );
}

/// `body` with the value of every `"key":` of `keys` replaced by `*`.
fn masked(body: &str, keys: &[&str]) -> String {
    let b = body.as_bytes();
    let mut out = String::new();
    let mut i = 0;
    'outer: while i < b.len() {
        for key in keys {
            let pat = format!("\"{key}\":");
            if body[i..].starts_with(&pat) {
                out.push_str(&pat);
                out.push('*');
                i += pat.len();
                i = skip_value(b, i);
                continue 'outer;
            }
        }
        let c = body[i..].chars().next().unwrap();
        out.push(c);
        i += c.len_utf8();
    }
    out
}

/// The offset after the JSON value starting at `i`.
fn skip_value(b: &[u8], mut i: usize) -> usize {
    let mut depth = 0usize;
    let mut in_string = false;
    while i < b.len() {
        let c = b[i];
        i += 1;
        if in_string {
            match c {
                b'\\' => i += 1,
                b'"' => {
                    in_string = false;
                    if depth == 0 {
                        return i;
                    }
                }
                _ => {}
            }
            continue;
        }
        match c {
            b'"' => in_string = true,
            b'{' | b'[' => depth += 1,
            b'}' | b']' if depth == 0 => return i - 1,
            b'}' | b']' => {
                depth -= 1;
                if depth == 0 {
                    return i;
                }
            }
            b',' if depth == 0 => return i - 1,
            _ => {}
        }
    }
    i
}

#[test]
fn kv_answers_match_etcds() {
    let p = Pair::start();
    p.same("/v3/kv/put", r#"{"key":"Zm9v","value":"YmFy"}"#);
    p.same("/v3/kv/put", r#"{"key":"Zm9v","value":"YmF6","prev_kv":true}"#);
    p.same("/v3/kv/put", r#"{"key":"Zm9vMg==","value":"","lease":"0"}"#);
    p.same("/v3/kv/range", r#"{"key":"Zm9v"}"#);
    p.same("/v3/kv/range", r#"{"key":"Zm9v","range_end":"Zm9w","count_only":true}"#);
    p.same("/v3/kv/range", r#"{"key":"Zm9v","range_end":"Zm9w","limit":"1","sort_order":"DESCEND","sortTarget":"KEY"}"#);
    p.same("/v3/kv/range", r#"{"key":"Zm9v","range_end":"Zm9w","keys_only":true,"serializable":true}"#);
    p.same("/v3/kv/range", r#"{"key":"bm9uZQ=="}"#);
    p.same("/v3/kv/range", r#"{"key":"Zm9v","revision":"2"}"#);
    p.same(
        "/v3/kv/txn",
        r#"{"compare":[{"key":"Zm9v","result":"EQUAL","target":"VALUE","value":"YmF6"}],"success":[{"request_range":{"key":"Zm9v"}},{"request_put":{"key":"YmFy","value":"MQ=="}}],"failure":[{"request_delete_range":{"key":"Zm9v"}}]}"#,
    );
    p.same("/v3/kv/txn", r#"{"compare":[{"key":"Zm9v","target":"VERSION","result":"GREATER","version":"5"}],"failure":[{"request_txn":{"success":[{"request_range":{"key":"YmFy"}}]}}]}"#);
    p.same("/v3/kv/deleterange", r#"{"key":"YmFy","prev_kv":true}"#);
    p.same("/v3/kv/deleterange", r#"{"key":"YmFy"}"#);
    p.same("/v3/kv/compaction", r#"{"revision":"3","physical":true}"#);
    p.same("/v3/kv/range", r#"{"key":"Zm9v","revision":"2"}"#);
    p.same("/v3/kv/range", r#"{"key":"Zm9v","revision":"100"}"#);
    p.same("/v3beta/kv/range", r#"{"key":"Zm9v"}"#);
    p.same("/v3/kv/put", r#"{"key":"Zm9v"} {"key":"YmFy"}"#);
    p.same("/v3/kv/put", r#"{"key":"Zm9v","value":"YmFy","lease":"123"}"#);
    p.same("/v3/kv/put", r#"{"key":"PD4m","value":"AAEC/w=="}"#);
    p.same("/v3/kv/range", r#"{"key":"PD4m"}"#);
}

#[test]
fn bad_requests_are_refused_as_etcd_refuses_them() {
    let p = Pair::start();
    for body in [
        "",
        "{}",
        "null",
        "nonsense",
        "garbage",
        "[1,2]",
        "12",
        "\"str\"",
        r#"{"key":"Zm9v""#,
        r#"{"key":"Zm9v","bogus":1}"#,
        r#"{"key":"!!!"}"#,
        r#"{"key":"YmF"}"#,
        r#"{"key":"Zm9v_-"}"#,
        r#"{"key":"Zm9v","limit":"x"}"#,
        r#"{"key":"Zm9v","limit":1.5}"#,
        r#"{"key":"Zm9v","limit":true}"#,
        r#"{"key":"Zm9v","limit":[1]}"#,
        r#"{"key":"Zm9v","sort_order":"BAD"}"#,
        r#"{"key":"Zm9v","sort_order":1}"#,
        r#"{"key":"Zm9v","sort_order":true}"#,
        r#"{"key":"Zm9v","serializable":"true"}"#,
        r#"{"key":5}"#,
        r#"{"key":"Zm9v" "x"}"#,
        r#"{"key":"Zm9v",}"#,
        r#"{key:1}"#,
        "{\"key\":\"a\nb\"}",
        r#"{"key":"Zm9v","revision":-1}"#,
    ] {
        p.same("/v3/kv/range", body);
    }
    p.same("/v3/kv/put", r#"{"key":""}"#);
    p.same("/v3/kv/put", r#"{"key":"Zm9v","prev_kv":"true"}"#);
    p.same("/v3/kv/txn", r#"{"compare":{"key":"Zm9v"}}"#);
    p.same("/v3/kv/txn", r#"{"success":[{"request_put":{"key":"Zm9v"}},{"request_put":{"key":"Zm9v"}}]}"#);
    for (method, path) in [
        ("GET", "/v3/kv/range"),
        ("PUT", "/v3/kv/put"),
        ("DELETE", "/v3/watch"),
        ("POST", "/v3/kv/nothing"),
        ("POST", "/v3/nothing"),
        ("POST", "/v3/maintenance/hashkv"),
        ("POST", "/v3alpha/kv/range"),
        ("POST", "/v3"),
        ("POST", "/v3/"),
        ("POST", "/v3beta/"),
        ("POST", "/v3beta"),
        ("POST", "/v3/kv/range/"),
        ("POST", "/v3//kv/range"),
        ("POST", "/v3/kv/../kv/range?x=1"),
        ("OPTIONS", "/v3/kv/range"),
    ] {
        p.same_with(method, path, "{}", &[], &[]);
    }
    // gRPC over HTTP/1: not served (etcd's HTTP mux has no such route); ballast's tonic once
    // applied the put and answered without a grpc-status.
    let grpc = [("Content-Type", "application/grpc"), ("TE", "trailers")];
    let empty_put = "\0\0\0\0\0"; // one gRPC frame: an empty PutRequest
    for path in ["/etcdserverpb.KV/Put", "/etcdserverpb.KV/Range", "/etcdserverpb.Lease/LeaseGrant"] {
        p.same_with("POST", path, empty_put, &grpc, &[]);
    }
}

#[test]
fn lease_lock_and_election_answer_as_etcds() {
    let p = Pair::start();
    p.same("/v3/lease/grant", r#"{"TTL":"60","ID":"1000"}"#);
    p.same("/v3/lease/grant", r#"{"TTL":60,"ID":"1000"}"#);
    p.same("/v3/kv/put", r#"{"key":"bGVhc2Vk","value":"eA==","lease":"1000"}"#);
    p.same("/v3/lease/timetolive", r#"{"ID":"1000","keys":true}"#);
    p.same("/v3/kv/lease/timetolive", r#"{"ID":"1001"}"#);
    p.same("/v3/lease/leases", "{}");
    p.same("/v3/kv/lease/leases", "");
    // A keepalive stream answers each request, then ends with the body.
    let (e, b) = p.same("/v3/lease/keepalive", r#"{"ID":"1000"} {"ID":"1001"}"#);
    assert_eq!(e.body.lines().count(), 2, "{e:?}");
    assert!(b.body.contains(r#""TTL":"60""#), "{b:?}");
    p.same("/v3/lease/keepalive", "garbage");
    p.same("/v3/lease/revoke", r#"{"ID":"1000"}"#);
    p.same("/v3/kv/range", r#"{"key":"bGVhc2Vk"}"#);
    p.same("/v3/kv/lease/revoke", r#"{"ID":"1000"}"#);

    p.same("/v3/lease/grant", r#"{"TTL":60,"ID":"2000"}"#);
    p.same("/v3/lock/lock", r#"{"name":"bXlsb2Nr","lease":"2000"}"#);
    p.same("/v3/kv/range", r#"{"key":"bXlsb2Nr","range_end":"bXlsb2Ns"}"#);
    p.same("/v3/lock/unlock", r#"{"key":"bXlsb2NrLzdkMA=="}"#);
    p.same("/v3/lock/lock", r#"{"name":"bXlsb2Nr","lease":"99"}"#);

    p.same("/v3/lease/grant", r#"{"TTL":60,"ID":"3000"}"#);
    p.same("/v3/election/leader", r#"{"name":"ZWxlY3Q="}"#);
    let (e, _) = p.same("/v3/election/campaign", r#"{"name":"ZWxlY3Q=","lease":"3000","value":"djE="}"#);
    let leader = e.body.split("\"leader\":").nth(1).and_then(|s| s.strip_suffix('}')).expect("a leader key").to_string();
    p.same("/v3/election/leader", r#"{"name":"ZWxlY3Q="}"#);
    p.same("/v3/election/proclaim", &format!(r#"{{"leader":{leader},"value":"djI="}}"#));
    let mut observers = (
        http::Stream::open(&p.etcd.endpoint, "/v3/election/observe", r#"{"name":"ZWxlY3Q="}"#),
        http::Stream::open(&p.ballast.endpoint, "/v3/election/observe", r#"{"name":"ZWxlY3Q="}"#),
    );
    let wait = Duration::from_secs(5);
    let first = (observers.0.line(wait), observers.1.line(wait));
    assert_eq!(first.0.as_deref().map(|l| masked(l, IDS)), first.1.as_deref().map(|l| masked(l, IDS)));
    assert!(first.0.is_some_and(|l| l.starts_with("{\"result\":")));
    p.same("/v3/election/resign", &format!(r#"{{"leader":{leader}}}"#));
    p.same("/v3/election/proclaim", &format!(r#"{{"leader":{leader},"value":"djM="}}"#));
}

#[test]
fn watch_streams_answer_as_etcds() {
    let p = Pair::start();
    let wait = Duration::from_secs(5);
    let open = |body: &str| (http::Stream::open(&p.etcd.endpoint, "/v3/watch", body), http::Stream::open(&p.ballast.endpoint, "/v3/watch", body));
    let same_line = |streams: &mut (http::Stream, http::Stream)| {
        let lines = (streams.0.line(wait), streams.1.line(wait));
        let (e, b) = (lines.0.map(|l| masked(&l, IDS)), lines.1.map(|l| masked(&l, IDS)));
        assert_eq!(e, b);
        assert!(e.is_some(), "etcd sent nothing");
        e.unwrap()
    };
    let mut w = open(r#"{"create_request":{"key":"Zm9v","prev_kv":true}}"#);
    assert_eq!((w.0.status, w.1.status), (200, 200));
    let pick = |s: &http::Stream| HEADERS.iter().map(|h| s.headers.iter().find(|(n, _)| n == h).map(|(_, v)| v.clone())).collect::<Vec<_>>();
    assert_eq!(pick(&w.0), pick(&w.1));
    assert!(same_line(&mut w).contains("\"created\":true"));
    p.same("/v3/kv/put", r#"{"key":"Zm9v","value":"YmFy"}"#);
    same_line(&mut w);
    p.same("/v3/kv/put", r#"{"key":"Zm9v","value":"YmF6"}"#);
    assert!(same_line(&mut w).contains("\"prev_kv\""));
    p.same("/v3/kv/deleterange", r#"{"key":"Zm9v"}"#);
    assert!(same_line(&mut w).contains("\"type\":\"DELETE\""));

    // Several requests in one body: create, progress, cancel; then a history watch.
    let mut w = open(r#"{"create_request":{"key":"Zm9v"}} {"progress_request":{}} {"cancel_request":{"watch_id":"0"}}"#);
    for _ in 0..3 {
        same_line(&mut w);
    }
    let mut w = open(r#"{"create_request":{"key":"Zm9v","start_revision":"2","filters":["NODELETE"]}}"#);
    same_line(&mut w);
    same_line(&mut w);
    // Bad bodies.
    p.same("/v3/watch", "garbage");
    p.same("/v3/watch", r#"{"create_request":{"key":"!!"}}"#);
    let mut w = open(r#"{"create_request":{"key":""}}"#);
    same_line(&mut w);
}

#[test]
fn auth_cluster_and_maintenance_answer_as_etcds() {
    let p = Pair::start();
    p.same("/v3/auth/status", "{}");
    p.same("/v3/auth/user/add", r#"{"name":"root","password":"pw"}"#);
    p.same("/v3/auth/user/grant", r#"{"user":"root","role":"root"}"#);
    p.same("/v3/auth/role/add", r#"{"name":"r"}"#);
    p.same("/v3/auth/role/grant", r#"{"name":"r","perm":{"permType":"READWRITE","key":"YQ==","range_end":"Yg=="}}"#);
    p.same("/v3/auth/user/add", r#"{"name":"alice","password":"pa"}"#);
    p.same("/v3/auth/user/grant", r#"{"user":"alice","role":"r"}"#);
    p.same("/v3/auth/enable", "{}");
    p.same("/v3/auth/authenticate", r#"{"name":"root","password":"wrong"}"#);
    let (e, b) = p.same_with("POST", "/v3/auth/authenticate", r#"{"name":"root","password":"pw"}"#, &[], &["token"]);
    let token = |a: &Answer| a.body.split("\"token\":\"").nth(1).and_then(|s| s.split('"').next()).expect("a token").to_string();
    let root = (token(&e), token(&b));
    let (e, b) = p.same_with("POST", "/v3/auth/authenticate", r#"{"name":"alice","password":"pa"}"#, &[], &["token"]);
    let alice = (token(&e), token(&b));
    p.same("/v3/kv/put", r#"{"key":"YQ==","value":"MQ=="}"#);
    p.same_with("POST", "/v3/kv/put", r#"{"key":"YQ==","value":"MQ=="}"#, &[("Authorization", "nonsense")], &[]);
    // A watch with a token that is no token: the same head; the refused create names watch id
    // -1 and the token error since etcd 3.5.13 (3.5.1: id 0, `permission denied`).
    let bad = [("Authorization", "nonsense")];
    let body = r#"{"create_request":{"key":"YQ=="}}"#;
    let mut w = (http::Stream::open_with(&p.etcd.endpoint, "/v3/watch", body, &bad), http::Stream::open_with(&p.ballast.endpoint, "/v3/watch", body, &bad));
    let wait = Duration::from_secs(5);
    let (e, b) = (w.0.line(wait).unwrap_or_default(), w.1.line(wait).unwrap_or_default());
    let newest = e.replace(r#""created":true"#, r#""watch_id":"-1","created":true"#).replace(
        "code = PermissionDenied desc = etcdserver: permission denied",
        "code = Unauthenticated desc = etcdserver: invalid auth token",
    );
    let answer = |s: &http::Stream, body: String| Answer { status: s.status, headers: s.headers.clone(), body };
    compare("a watch with a bad token", &answer(&w.0, newest), &answer(&w.1, b), &[]);
    p.same_with("POST", "/v3/kv/range", r#"{"key":"YQ=="}"#, &[("Grpc-Metadata-Token", "nonsense")], &[]);
    p.same_as(&alice, "/v3/kv/put", r#"{"key":"YQ==","value":"MQ=="}"#);
    p.same_as(&alice, "/v3/kv/put", r#"{"key":"eg==","value":"MQ=="}"#);
    p.same_as(&alice, "/v3/kv/range", r#"{"key":"YQ=="}"#);
    p.same_as(&alice, "/v3/auth/user/list", "{}");
    // A watch stream carries its opener's token: a range alice cannot read is refused.
    for key in ["eg==", "YQ=="] {
        let body = format!(r#"{{"create_request":{{"key":"{key}"}}}}"#);
        let mut w = (
            http::Stream::open_with(&p.etcd.endpoint, "/v3/watch", &body, &[("Authorization", &alice.0)]),
            http::Stream::open_with(&p.ballast.endpoint, "/v3/watch", &body, &[("Authorization", &alice.1)]),
        );
        let wait = Duration::from_secs(5);
        // A refused create names watch id -1 since etcd 3.5.13 (ballast's watch follows the
        // newest 3.5); 3.5.1 leaves it 0.
        let ballast = w.1.line(wait).map(|l| masked(&l, IDS).replace(r#""watch_id":"-1","#, ""));
        assert_eq!(w.0.line(wait).map(|l| masked(&l, IDS)), ballast, "watch of {key} as alice");
    }
    p.same_as(&root, "/v3/auth/user/list", "{}");
    p.same_as(&root, "/v3/auth/user/get", r#"{"name":"alice"}"#);
    p.same_as(&root, "/v3/auth/role/get", r#"{"role":"r"}"#);
    p.same_as(&root, "/v3/auth/role/list", "{}");
    p.same_as(&root, "/v3/auth/role/revoke", r#"{"role":"r","key":"YQ==","range_end":"Yg=="}"#);
    p.same_as(&root, "/v3/auth/user/changepw", r#"{"name":"alice","password":"pb"}"#);
    p.same_as(&root, "/v3/auth/user/revoke", r#"{"name":"alice","role":"r"}"#);
    p.same_as(&root, "/v3/auth/role/delete", r#"{"role":"r"}"#);
    p.same_as(&root, "/v3/auth/user/delete", r#"{"name":"alice"}"#);
    p.same_as(&root, "/v3/auth/status", "{}");
    p.same_as(&root, "/v3/auth/disable", "{}");
    p.same("/v3/auth/status", "{}");

    let member = &["ID", "peerURLs", "clientURLs", "leader"];
    p.same_with("POST", "/v3/cluster/member/list", "{}", &[], member);
    let status = &["dbSize", "dbSizeInUse", "leader", "raftIndex", "raftTerm", "raftAppliedIndex"];
    p.same_with("POST", "/v3/maintenance/status", "{}", &[], status);
    p.same("/v3/maintenance/alarm", "{}");
    p.same("/v3/maintenance/alarm", r#"{"action":"GET"}"#);
    p.same_with("POST", "/v3/maintenance/hash", "{}", &[], &["hash"]);
    p.same("/v3/maintenance/defragment", "{}");
    p.same("/v3/maintenance/transfer-leadership", r#"{"targetID":"1"}"#);
}

/// The decoded stream of `/v3/maintenance/snapshot`: checks that every chunk's
/// `remaining_bytes` counts what follows it and that the last message is the SHA-256 of the
/// rest (`bolt::strip_digest`); the bolt file's buckets.
fn snapshot_stream(body: &str) -> bolt::Buckets {
    use base64::Engine as _;
    let mut chunks = Vec::new();
    for line in body.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        let result = &v["result"];
        let blob = base64::engine::general_purpose::STANDARD.decode(result["blob"].as_str().expect("a blob")).unwrap();
        let remaining: u64 = result["remaining_bytes"].as_str().map_or(0, |r| r.parse().unwrap());
        chunks.push((blob, remaining));
    }
    let (sha, data) = chunks.split_last().expect("chunks and a digest");
    let total: u64 = data.iter().map(|(b, _)| b.len() as u64).sum();
    let mut sent = 0;
    for (blob, remaining) in data {
        sent += blob.len() as u64;
        assert_eq!(*remaining, total - sent, "remaining_bytes");
    }
    assert_eq!(sha.1, 0);
    let mut saved: Vec<u8> = data.iter().flat_map(|(b, _)| b.clone()).collect();
    saved.extend_from_slice(&sha.0);
    bolt::buckets(&bolt::strip_digest(&saved))
}

#[test]
fn snapshot_streams_as_etcds() {
    let p = Pair::start();
    use base64::Engine as _;
    let value = base64::engine::general_purpose::STANDARD.encode(vec![b'v'; 3000]);
    for i in 0..40 {
        let key = base64::engine::general_purpose::STANDARD.encode(format!("key{i:02}"));
        p.same("/v3/kv/put", &format!(r#"{{"key":"{key}","value":"{value}"}}"#));
    }
    p.same("/v3/kv/deleterange", r#"{"key":"a2V5MDA="}"#);
    let (e, b) = (http::post(&p.etcd.endpoint, "/v3/maintenance/snapshot", "{}"), http::post(&p.ballast.endpoint, "/v3/maintenance/snapshot", "{}"));
    // The same head; the same messages (blobs and counts aside): chunks with what remains,
    // the last chunk (nothing remains) and the digest; no header, as etcd sends none.
    let shape = |a: &Answer| {
        let mut lines: Vec<String> = a.body.lines().map(|l| masked(l, &["blob", "remaining_bytes"])).collect();
        lines.dedup();
        Answer { body: lines.join("\n"), ..a.clone() }
    };
    compare("POST /v3/maintenance/snapshot", &shape(&e), &shape(&b), &[]);
    assert!(e.body.lines().count() > 3, "several chunks: {}", shape(&e).body);
    let (want, got) = (snapshot_stream(&e.body), snapshot_stream(&b.body));
    assert_eq!(got["key"], want["key"], "the same history");
    // Refused without the root role once auth is on (etcd's auth package's error, code
    // Unknown): the stream's error chunk with the status of its code, as etcd's gateway
    // answers a stream that fails before its first message. Without a token too.
    p.same("/v3/auth/user/add", r#"{"name":"root","password":"pw"}"#);
    p.same("/v3/auth/user/grant", r#"{"user":"root","role":"root"}"#);
    p.same("/v3/auth/user/add", r#"{"name":"alice","password":"pa"}"#);
    p.same("/v3/auth/enable", "{}");
    let (e, b) = p.same_with("POST", "/v3/auth/authenticate", r#"{"name":"alice","password":"pa"}"#, &[], &["token"]);
    let token = |a: &Answer| a.body.split("\"token\":\"").nth(1).and_then(|s| s.split('"').next()).expect("a token").to_string();
    let alice = (token(&e), token(&b));
    p.same_as(&alice, "/v3/maintenance/snapshot", "{}");
    p.same("/v3/maintenance/snapshot", "{}");
    p.same_as(&alice, "/v3/maintenance/hash", "{}");
    p.same_as(&alice, "/v3/maintenance/defragment", "{}");
}

/// A server stopping (SIGTERM) ends the gateway's open streams as etcd's does: a last error
/// chunk (Unavailable, its gateway's gRPC connection closed) and the chunked body's end, so a
/// client reads a whole answer rather than a cut connection. Watch and Observe, one each.
#[test]
fn open_streams_end_whole_when_the_server_stops() {
    let mut p = Pair::start();
    p.same("/v3/lease/grant", r#"{"TTL":60,"ID":7}"#);
    p.same("/v3/election/campaign", r#"{"name":"ZQ==","lease":7,"value":"dg=="}"#);
    let wait = Duration::from_secs(5);
    let mut streams = Vec::new();
    for (path, body) in [("/v3/watch", r#"{"create_request":{"key":"Zm9v"}}"#), ("/v3/election/observe", r#"{"name":"ZQ=="}"#)] {
        let (mut e, mut b) = (http::Stream::open(&p.etcd.endpoint, path, body), http::Stream::open(&p.ballast.endpoint, path, body));
        let (le, lb) = (e.line(wait).map(|l| masked(&l, IDS)), b.line(wait).map(|l| masked(&l, IDS)));
        assert!(le.is_some(), "etcd's first answer on {path}");
        assert_eq!(le, lb, "first answer on {path}");
        streams.push((path, e, b));
    }
    // The answers stay in the sockets' buffers while the servers exit.
    p.etcd.terminate();
    p.ballast.terminate();
    for (path, e, b) in &mut streams {
        let (end_e, end_b) = (e.finish(Duration::from_secs(10)), b.finish(Duration::from_secs(10)));
        assert!(end_e.1, "etcd's {path} body ended whole: {end_e:?}");
        assert_eq!(end_b, end_e, "{path}: the stream's last chunk and end");
    }
}

/// /health, /version and /metrics on the client port: etcd's statuses, content types, CORS
/// headers and 405s (GET only, as Go's handlers allow), and /health's body, healthy and with
/// NOSPACE raised (Go's `http.Error`: the JSON and a newline).
#[test]
fn health_version_and_metrics_answer_as_etcds() {
    let p = Pair::start();
    p.same_with("GET", "/health", "", &[], &[]);
    for path in ["/health", "/version"] {
        for method in ["HEAD", "POST", "PUT"] {
            let (e, b) = p.same_with(method, path, "", &[], &[]);
            assert_eq!(e.status, 405, "{method} {path}");
            assert_eq!(b.header("allow"), e.header("allow"), "{method} {path}: Allow");
        }
    }
    // /version's body names ballast too, and /metrics's differ: their heads match.
    for path in ["/version", "/metrics"] {
        let (e, b) = (http::request(&p.etcd.endpoint, "GET", path, "", &[]), http::request(&p.ballast.endpoint, "GET", path, "", &[]));
        assert_eq!(e.status, b.status, "GET {path}");
        // (Go chunks a body past its 2 KiB buffer: /metrics's framing differs.)
        for h in HEADERS.iter().filter(|&&h| h != "transfer-encoding") {
            assert_eq!(b.header(h), e.header(h), "GET {path}: {h}");
        }
    }
    for server in [&p.etcd.endpoint, &p.ballast.endpoint] {
        let status: serde_json::Value = serde_json::from_str(&http::post(server, "/v3/maintenance/status", "{}").body).unwrap();
        let id = status["header"]["member_id"].as_str().expect("member id").to_string();
        let raised = http::post(server, "/v3/maintenance/alarm", &format!(r#"{{"action":"ACTIVATE","memberID":"{id}","alarm":"NOSPACE"}}"#));
        assert_eq!(raised.status, 200, "{raised:?}");
    }
    let (e, _) = p.same_with("GET", "/health", "", &[], &[]);
    assert_eq!((e.status, e.body.as_str()), (503, "{\"health\":\"false\",\"reason\":\"ALARM NOSPACE\"}\n"));
    let (e, _) = p.same_with("GET", "/health?exclude=NOSPACE", "", &[], &[]);
    assert_eq!(e.status, 200);
}

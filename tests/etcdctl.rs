//! etcdctl (Debian's 3.4 client) against a real ballast process. Every expected output here
//! was recorded from `/usr/bin/etcdctl` 3.4.23 talking to a fresh etcd 3.5 on loopback, so a
//! failing assertion means ballast differs from etcd, not that the expectation is loose.
//! Cluster ids, member ids and raft terms are never asserted raw: they legitimately differ.
//!
//! Most scenarios run twice, with `--shards 1` and `--shards 2` (see `shard_tests!` at the end),
//! and use keys that spread over shards so ranges and transactions cross shard boundaries.

mod common;

use common::Server;
use serde_json::Value;

// ---------------------------------------------------------------------------------------------
// helpers

fn start(shards: u32) -> Server {
    Server::start(&["--shards", &shards.to_string()])
}

/// `etcdctl <args> -w json`, parsed.
fn json(s: &Server, args: &[&str]) -> Value {
    let mut a = args.to_vec();
    a.extend(["-w", "json"]);
    let out = s.ctl(&a);
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("etcdctl {a:?}: bad json ({e}): {out}"))
}

/// The `Error: ...` line etcdctl prints last on stderr when a command fails.
fn error_line(stderr: &str) -> String {
    stderr
        .lines()
        .rev()
        .find(|l| l.starts_with("Error: "))
        .unwrap_or_else(|| panic!("no `Error:` line in stderr:\n{stderr}"))
        .to_string()
}

/// Runs an etcdctl command that must fail and returns its `Error: ...` line.
fn ctl_error(s: &Server, args: &[&str]) -> String {
    error_line(&s.ctl_err(args))
}

/// `etcdctl txn [extra]` fed `stdin`; must succeed; returns stdout.
fn txn(s: &Server, extra: &[&str], stdin: &str) -> String {
    let mut a = vec!["txn"];
    a.extend_from_slice(extra);
    let out = s.etcdctl_stdin(&a, stdin);
    assert!(out.status.success(), "etcdctl {a:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// `etcdctl txn` fed `stdin`; must fail; returns the `Error: ...` line.
fn txn_error(s: &Server, stdin: &str) -> String {
    let out = s.etcdctl_stdin(&["txn"], stdin);
    assert!(!out.status.success(), "etcdctl txn unexpectedly succeeded: {}", String::from_utf8_lossy(&out.stdout));
    error_line(&String::from_utf8(out.stderr).unwrap())
}

fn b64_decode(s: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bits = 0u32;
    let mut n = 0;
    let mut out = Vec::new();
    for c in s.bytes().filter(|&c| c != b'=') {
        let v = ALPHABET.iter().position(|&a| a == c).unwrap_or_else(|| panic!("bad base64 {s:?}")) as u32;
        bits = (bits << 6) | v;
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push((bits >> n) as u8);
            bits &= (1 << n) - 1;
        }
    }
    String::from_utf8(out).unwrap()
}

/// One key-value of a json response: (key, value, create_revision, mod_revision, version).
/// etcd omits zero fields from json, so absent numbers read as 0.
type Kv = (String, String, i64, i64, i64);

fn kv_of(v: &Value) -> Kv {
    let n = |f: &str| v.get(f).map(|x| x.as_i64().unwrap()).unwrap_or(0);
    let s = |f: &str| v.get(f).map(|x| b64_decode(x.as_str().unwrap())).unwrap_or_default();
    (s("key"), s("value"), n("create_revision"), n("mod_revision"), n("version"))
}

fn kvs(resp: &Value) -> Vec<Kv> {
    resp.get("kvs").map(|a| a.as_array().unwrap().iter().map(kv_of).collect()).unwrap_or_default()
}

fn kv(key: &str, value: &str, create: i64, modr: i64, version: i64) -> Kv {
    (key.into(), value.into(), create, modr, version)
}

fn header_rev(resp: &Value) -> i64 {
    resp["header"]["revision"].as_i64().unwrap_or(0)
}

fn int(v: &Value, field: &str) -> i64 {
    v.get(field).map(|x| x.as_i64().unwrap()).unwrap_or(0)
}

fn put(s: &Server, k: &str, v: &str) {
    assert_eq!(s.ctl(&["put", k, v]), "OK\n", "put {k} {v}");
}

/// Keys for the range tests; written in this order, so a/b/c get revisions 2..=6 in a fresh store.
fn seed_ranges(s: &Server) {
    put(s, "k1", "vk1"); // 2
    put(s, "k2", "vk2"); // 3
    put(s, "k3", "vk3"); // 4
    put(s, "x", "vx"); // 5
    put(s, "y", "vy"); // 6
    put(s, "k2", "zz"); // 7
}

// ---------------------------------------------------------------------------------------------
// scenarios (each takes the shard count)

fn revision_sequence(shards: u32) {
    let s = start(shards);
    // A fresh store is at revision 1.
    let r = json(&s, &["get", "a"]);
    assert_eq!(header_rev(&r), 1);
    assert!(r.get("kvs").is_none() && r.get("count").is_none(), "{r}");

    put(&s, "a", "1");
    assert_eq!(kvs(&json(&s, &["get", "a"])), vec![kv("a", "1", 2, 2, 1)]);
    put(&s, "b", "2");
    put(&s, "a", "3");
    let r = json(&s, &["get", "a"]);
    assert_eq!(header_rev(&r), 4);
    assert_eq!(int(&r, "count"), 1);
    assert_eq!(kvs(&r), vec![kv("a", "3", 2, 4, 2)]);

    assert_eq!(s.ctl(&["del", "a"]), "1\n");
    let r = json(&s, &["get", "a"]);
    assert_eq!(header_rev(&r), 5);
    assert_eq!(kvs(&r), vec![]);

    put(&s, "a", "4");
    let r = json(&s, &["get", "", "--prefix"]);
    assert_eq!(header_rev(&r), 6);
    assert_eq!(int(&r, "count"), 2);
    assert!(r.get("more").is_none(), "{r}");
    assert_eq!(kvs(&r), vec![kv("a", "4", 6, 6, 1), kv("b", "2", 3, 3, 1)]);

    // Simple output of the same.
    assert_eq!(s.ctl(&["get", "", "--prefix"]), "a\n4\nb\n2\n");
    assert_eq!(s.ctl(&["get", "a"]), "a\n4\n");
    assert_eq!(s.ctl(&["get", "missing"]), "");
}

fn get_ranges(shards: u32) {
    let s = start(shards);
    seed_ranges(&s);
    assert_eq!(s.ctl(&["get", "k", "--prefix"]), "k1\nvk1\nk2\nzz\nk3\nvk3\n");
    assert_eq!(s.ctl(&["get", "k", "--from-key"]), "k1\nvk1\nk2\nzz\nk3\nvk3\nx\nvx\ny\nvy\n");
    assert_eq!(s.ctl(&["get", "", "--from-key", "--keys-only"]), "k1\n\nk2\n\nk3\n\nx\n\ny\n\n");
    // [k1, k3): range end is exclusive.
    assert_eq!(s.ctl(&["get", "k1", "k3"]), "k1\nvk1\nk2\nzz\n");
    assert_eq!(s.ctl(&["get", "k", "--prefix", "--keys-only"]), "k1\n\nk2\n\nk3\n\n");
    assert_eq!(s.ctl(&["get", "k", "--prefix", "--print-value-only"]), "vk1\nzz\nvk3\n");
    assert_eq!(s.ctl(&["get", "k", "--prefix", "--consistency", "s"]), "k1\nvk1\nk2\nzz\nk3\nvk3\n");

    // --limit: `more` and the full `count`.
    let r = json(&s, &["get", "k", "--prefix", "--limit", "2"]);
    assert_eq!(header_rev(&r), 7);
    assert_eq!(r["more"], Value::Bool(true), "{r}");
    assert_eq!(int(&r, "count"), 3);
    assert_eq!(kvs(&r), vec![kv("k1", "vk1", 2, 2, 1), kv("k2", "zz", 3, 7, 2)]);
    assert_eq!(s.ctl(&["get", "k", "--prefix", "--limit", "2"]), "k1\nvk1\nk2\nzz\n");
    let r = json(&s, &["get", "k", "--prefix", "--limit", "3"]);
    assert!(r.get("more").is_none(), "{r}");
    assert_eq!(int(&r, "count"), 3);
    let r = json(&s, &["get", "", "--prefix", "--limit", "1", "--sort-by", "KEY", "--order", "DESCEND"]);
    assert_eq!(r["more"], Value::Bool(true), "{r}");
    assert_eq!(int(&r, "count"), 5);
    assert_eq!(kvs(&r), vec![kv("y", "vy", 6, 6, 1)]);
    assert_eq!(s.ctl(&["get", "", "--from-key", "--limit", "2", "--order", "DESCEND"]), "y\nvy\nx\nvx\n");
}

fn get_sorting(shards: u32) {
    let s = start(shards);
    seed_ranges(&s);
    let get = |extra: &[&str]| {
        let mut a = vec!["get", "k", "--prefix"];
        a.extend_from_slice(extra);
        // Simple output alternates key and value lines; keep the keys.
        s.ctl(&a).lines().step_by(2).collect::<Vec<_>>().join(" ")
    };
    assert_eq!(get(&["--order", "ASCEND"]), "k1 k2 k3");
    assert_eq!(get(&["--order", "DESCEND"]), "k3 k2 k1");
    assert_eq!(get(&["--sort-by", "KEY"]), "k1 k2 k3");
    assert_eq!(get(&["--sort-by", "KEY", "--order", "DESCEND"]), "k3 k2 k1");
    assert_eq!(get(&["--sort-by", "VERSION", "--order", "DESCEND"]), "k2 k1 k3");
    assert_eq!(get(&["--sort-by", "VALUE"]), "k1 k3 k2");
    assert_eq!(get(&["--sort-by", "VALUE", "--order", "DESCEND"]), "k2 k3 k1");
    assert_eq!(get(&["--sort-by", "CREATE", "--order", "DESCEND"]), "k3 k2 k1");
    assert_eq!(get(&["--sort-by", "MODIFY"]), "k1 k3 k2");
    assert_eq!(get(&["--sort-by", "MODIFY", "--order", "DESCEND"]), "k2 k3 k1");
    // Sort, then limit: `more` and `count` describe the whole range.
    let r = json(&s, &["get", "k", "--prefix", "--sort-by", "VALUE", "--limit", "2"]);
    assert_eq!(kvs(&r), vec![kv("k1", "vk1", 2, 2, 1), kv("k3", "vk3", 4, 4, 1)], "{r}");
    assert_eq!((r["more"].clone(), int(&r, "count")), (Value::Bool(true), 3), "{r}");
    let r = json(&s, &["get", "k", "--prefix", "--sort-by", "MODIFY", "--order", "DESCEND", "--limit", "1"]);
    assert_eq!(kvs(&r), vec![kv("k2", "zz", 3, 7, 2)], "{r}");
    assert_eq!((r["more"].clone(), int(&r, "count")), (Value::Bool(true), 3), "{r}");
    assert_eq!(s.ctl(&["get", "", "--from-key", "--sort-by", "CREATE", "--order", "DESCEND", "--limit", "2"]), "y\nvy\nx\nvx\n");
    // Full simple output of one sorted read.
    assert_eq!(s.ctl(&["get", "k", "--prefix", "--sort-by", "VALUE"]), "k1\nvk1\nk3\nvk3\nk2\nzz\n");
    // Sorting by value with --keys-only still sorts by the (stripped) values.
    let r = json(&s, &["get", "k", "--prefix", "--sort-by", "VALUE", "--keys-only", "--limit", "2"]);
    assert_eq!(kvs(&r), vec![kv("k1", "", 2, 2, 1), kv("k3", "", 4, 4, 1)], "{r}");
    assert_eq!((r["more"].clone(), int(&r, "count")), (Value::Bool(true), 3), "{r}");
    assert_eq!(s.ctl(&["get", "k", "--prefix", "--sort-by", "VALUE", "--keys-only"]), "k1\n\nk3\n\nk2\n\n");
    assert_eq!(s.ctl(&["get", "k", "--prefix", "--sort-by", "VALUE", "--order", "DESCEND", "--keys-only"]), "k2\n\nk3\n\nk1\n\n");
}

fn historical_reads(shards: u32) {
    let s = start(shards);
    seed_ranges(&s);
    assert_eq!(s.ctl(&["get", "k2", "--rev", "3"]), "k2\nvk2\n");
    assert_eq!(s.ctl(&["get", "k2", "--rev", "7"]), "k2\nzz\n");
    assert_eq!(s.ctl(&["get", "k2", "--rev", "2"]), "");
    assert_eq!(s.ctl(&["get", "k", "--prefix", "--rev", "3"]), "k1\nvk1\nk2\nvk2\n");
    assert_eq!(s.ctl(&["get", "k2", "--rev", "1"]), "");
    // The header carries the current revision, the kvs the historical state.
    let r = json(&s, &["get", "k2", "--rev", "3"]);
    assert_eq!(header_rev(&r), 7);
    assert_eq!(kvs(&r), vec![kv("k2", "vk2", 3, 3, 1)]);
    let r = json(&s, &["get", "", "--from-key", "--rev", "5"]);
    assert_eq!(int(&r, "count"), 4);
    assert_eq!(kvs(&r).iter().map(|k| k.0.as_str()).collect::<Vec<_>>(), ["k1", "k2", "k3", "x"]);
    // Deleted keys are still visible at older revisions.
    assert_eq!(s.ctl(&["del", "x"]), "1\n"); // 8
    assert_eq!(s.ctl(&["get", "x"]), "");
    assert_eq!(s.ctl(&["get", "x", "--rev", "7"]), "x\nvx\n");
    assert_eq!(
        ctl_error(&s, &["get", "k2", "--rev", "100"]),
        "Error: etcdserver: mvcc: required revision is a future revision"
    );
    assert_eq!(
        ctl_error(&s, &["get", "k2", "--rev", "9"]),
        "Error: etcdserver: mvcc: required revision is a future revision"
    );
}

fn put_flags(shards: u32) {
    let s = start(shards);
    put(&s, "k2", "zz"); // 2
    assert_eq!(s.ctl(&["put", "k2", "new", "--prev-kv"]), "OK\nk2\nzz\n"); // 3
    assert_eq!(s.ctl(&["put", "newkey", "nv", "--prev-kv"]), "OK\n"); // 4
    let r = json(&s, &["put", "k2", "third", "--prev-kv"]); // 5
    assert_eq!(header_rev(&r), 5);
    assert_eq!(kv_of(&r["prev_kv"]), kv("k2", "new", 2, 3, 2));
    let r = json(&s, &["put", "fresh", "v"]); // 6
    assert_eq!(header_rev(&r), 6);
    assert!(r.get("prev_kv").is_none(), "{r}");

    // --ignore-value keeps the value but bumps mod revision and version.
    assert_eq!(s.ctl(&["put", "k2", "--ignore-value"]), "OK\n"); // 7
    assert_eq!(kvs(&json(&s, &["get", "k2"])), vec![kv("k2", "third", 2, 7, 4)]);
    assert_eq!(ctl_error(&s, &["put", "missing", "--ignore-value"]), "Error: etcdserver: key not found");
    assert_eq!(s.ctl(&["get", "missing"]), "");
    // A failed put does not advance the revision.
    assert_eq!(header_rev(&json(&s, &["get", "k2"])), 7);
}

fn delete_variants(shards: u32) {
    let s = start(shards);
    seed_ranges(&s); // rev 7
    assert_eq!(s.ctl(&["del", "nothing"]), "0\n");
    assert_eq!(s.ctl(&["del", "nothing", "--prefix"]), "0\n");
    // Deleting nothing does not advance the revision.
    assert_eq!(header_rev(&json(&s, &["get", "k1"])), 7);
    let r = json(&s, &["del", "zz"]);
    assert_eq!(header_rev(&r), 7);
    assert!(r.get("deleted").is_none() && r.get("prev_kvs").is_none(), "{r}");

    assert_eq!(s.ctl(&["del", "k", "--prefix", "--prev-kv"]), "3\nk1\nvk1\nk2\nzz\nk3\nvk3\n"); // 8
    assert_eq!(s.ctl(&["get", "k", "--prefix"]), "");
    assert_eq!(s.ctl(&["del", "x", "--from-key"]), "2\n"); // 9
    assert_eq!(s.ctl(&["get", "", "--from-key"]), "");
    assert_eq!(header_rev(&json(&s, &["get", "k1"])), 9);

    put(&s, "a", "1"); // 10
    put(&s, "b", "2"); // 11
    put(&s, "c", "3"); // 12
    assert_eq!(s.ctl(&["del", "a", "c"]), "2\n"); // 13, range [a, c)
    assert_eq!(s.ctl(&["get", "", "--from-key"]), "c\n3\n");
    let r = json(&s, &["del", "c", "--prev-kv"]); // 14
    assert_eq!(header_rev(&r), 14);
    assert_eq!(int(&r, "deleted"), 1);
    let prev: Vec<Kv> = r["prev_kvs"].as_array().unwrap().iter().map(kv_of).collect();
    assert_eq!(prev, vec![kv("c", "3", 12, 12, 1)]);
    assert_eq!(s.ctl(&["del", "c"]), "0\n");
}

const TXN_T: &str = "value(\"t1\") = \"one\"\nversion(\"t2\") = \"1\"\n\nput t1 uno\nget t2\ndel t2\n\nput fail x\n\n";

fn txn_interactive(shards: u32) {
    let s = start(shards);
    put(&s, "t1", "one"); // 2
    put(&s, "t2", "two"); // 3
    let prompts = "compares:\nsuccess requests (get, put, del):\nfailure requests (get, put, del):\n";
    // Success: both compares hold.
    assert_eq!(txn(&s, &["-i"], TXN_T), format!("{prompts}SUCCESS\n\nOK\n\nt2\ntwo\n\n1\n")); // 4
    assert_eq!(s.ctl(&["get", "t", "--prefix"]), "t1\nuno\n");
    assert_eq!(kvs(&json(&s, &["get", "t1"])), vec![kv("t1", "uno", 2, 4, 2)]);
    // Failure: t1 is no longer "one".
    assert_eq!(txn(&s, &["-i"], TXN_T), format!("{prompts}FAILURE\n\nOK\n")); // 5
    assert_eq!(s.ctl(&["get", "fail"]), "fail\nx\n");
    // Non-interactive mode prints no prompts.
    assert_eq!(txn(&s, &[], TXN_T), "FAILURE\n\nOK\n"); // 6
    assert_eq!(header_rev(&json(&s, &["get", "t1"])), 6);
}

fn txn_compares(shards: u32) {
    let s = start(shards);
    put(&s, "t1", "one"); // 2
    put(&s, "t2", "two"); // 3
    put(&s, "t1", "uno"); // 4: t1 create 2, mod 4, version 2
    // Read-only branches first: success reads t1, failure reads t2.
    let probe = |cmp: &str| txn(&s, &[], &format!("{cmp}\n\nget t1\n\nget t2\n\n"));
    let (yes, no) = ("SUCCESS\n\nt1\nuno\n", "FAILURE\n\nt2\ntwo\n");
    for (cmp, holds) in [
        ("mod(\"t1\") > \"3\"", true),
        ("mod(\"t1\") > \"4\"", false),
        ("mod(\"t1\") = \"4\"", true),
        ("mod(\"t1\") < \"4\"", false),
        ("create(\"t1\") = \"2\"", true),
        ("create(\"t1\") != \"2\"", false),
        ("create(\"nokey\") = \"0\"", true),
        ("create(\"nokey\") > \"0\"", false),
        ("version(\"t1\") = \"2\"", true),
        ("version(\"t1\") < \"2\"", false),
        ("version(\"t2\") > \"0\"", true),
        ("version(\"nokey\") != \"0\"", false),
        ("value(\"t1\") = \"uno\"", true),
        ("value(\"t1\") = \"one\"", false),
        ("value(\"t1\") != \"one\"", true),
        ("value(\"t1\") < \"zz\"", true),
        ("value(\"t1\") > \"zz\"", false),
        // Several compares are ANDed; keys on different shards.
        ("value(\"t1\") = \"uno\"\nversion(\"t2\") = \"1\"\ncreate(\"nokey\") = \"0\"", true),
        ("value(\"t1\") = \"uno\"\nversion(\"t2\") = \"2\"", false),
    ] {
        assert_eq!(probe(cmp), if holds { yes } else { no }, "compare {cmp:?}");
    }
    assert_eq!(header_rev(&json(&s, &["get", "t1"])), 4, "read-only txns must not write");

    // A writing success branch across shards; later reads in the txn see earlier writes.
    let t = "mod(\"t1\") > \"3\"\ncreate(\"nokey\") = \"0\"\nvalue(\"t1\") != \"x\"\nversion(\"t1\") < \"3\"\ncreate(\"t1\") = \"2\"\n\n\
             get t --prefix\nput nokey v\ndel t2\nget --prefix --keys-only t\n\nget t1\n\n";
    assert_eq!(txn(&s, &[], t), "SUCCESS\n\nt1\nuno\nt2\ntwo\n\nOK\n\n1\n\nt1\n\n"); // 5
    let r = json(&s, &["get", "", "--prefix"]);
    assert_eq!(header_rev(&r), 5);
    assert_eq!(kvs(&r), vec![kv("nokey", "v", 5, 5, 1), kv("t1", "uno", 2, 4, 2)]);
    // Now create("nokey") = "0" is false.
    assert_eq!(txn(&s, &[], t), "FAILURE\n\nt1\nuno\n");

    // --prev-kv inside a txn, and a historical get.
    put(&s, "fail", "y"); // 6
    let t = "value(\"t1\") = \"uno\"\n\nput --prev-kv t1 cuatro\ndel --prev-kv fail\nget --rev 3 t2\n\n\n";
    assert_eq!(txn(&s, &[], t), "SUCCESS\n\nOK\nt1\nuno\n\n1\nfail\ny\n\nt2\ntwo\n"); // 7
    assert_eq!(kvs(&json(&s, &["get", "t1"])), vec![kv("t1", "cuatro", 2, 7, 3)]);
}

fn txn_json(shards: u32) {
    let s = start(shards);
    put(&s, "t2", "two"); // 2
    let t = "version(\"t2\") = \"1\"\n\nput t1 uno\nget t2\ndel t2\n\nput fail x\n\n";
    // Success: {"header":{..,"revision":3,..},"succeeded":true,"responses":[
    //   {"Response":{"ResponsePut":{"header":{"revision":3}}}},
    //   {"Response":{"ResponseRange":{"header":{"revision":3},"kvs":[t2],"count":1}}},
    //   {"Response":{"ResponseDeleteRange":{"header":{"revision":3},"deleted":1}}}]}
    let r: Value = serde_json::from_str(txn(&s, &["-w", "json"], t).trim()).unwrap();
    assert_eq!(header_rev(&r), 3, "{r}");
    assert_eq!(r["succeeded"], Value::Bool(true), "{r}");
    let resp = r["responses"].as_array().unwrap();
    assert_eq!(resp.len(), 3, "{r}");
    let p = &resp[0]["Response"]["ResponsePut"];
    assert_eq!(p["header"], serde_json::json!({"revision": 3}), "{r}");
    assert!(p.get("prev_kv").is_none(), "{r}");
    let g = &resp[1]["Response"]["ResponseRange"];
    assert_eq!(g["header"], serde_json::json!({"revision": 3}), "{r}");
    assert_eq!(kvs(g), vec![kv("t2", "two", 2, 2, 1)]);
    assert_eq!(int(g, "count"), 1);
    assert!(g.get("more").is_none(), "{r}");
    let d = &resp[2]["Response"]["ResponseDeleteRange"];
    assert_eq!(d["header"], serde_json::json!({"revision": 3}), "{r}");
    assert_eq!(int(d, "deleted"), 1);
    assert!(d.get("prev_kvs").is_none(), "{r}");

    // Failure: "succeeded" is omitted (false), the put runs at revision 4.
    let r: Value = serde_json::from_str(txn(&s, &["-w", "json"], t).trim()).unwrap();
    assert_eq!(header_rev(&r), 4, "{r}");
    assert!(r.get("succeeded").is_none(), "{r}");
    assert_eq!(
        r["responses"],
        serde_json::json!([{"Response":{"ResponsePut":{"header":{"revision":4}}}}]),
        "{r}"
    );

    // prev_kv / prev_kvs inside a txn.
    let t = "value(\"t1\") = \"uno\"\n\nput --prev-kv t1 tres\ndel --prev-kv fail\n\n\n";
    let r: Value = serde_json::from_str(txn(&s, &["-w", "json"], t).trim()).unwrap();
    assert_eq!(header_rev(&r), 5, "{r}");
    assert_eq!(r["succeeded"], Value::Bool(true), "{r}");
    let resp = r["responses"].as_array().unwrap();
    assert_eq!(kv_of(&resp[0]["Response"]["ResponsePut"]["prev_kv"]), kv("t1", "uno", 3, 3, 1), "{r}");
    let d = &resp[1]["Response"]["ResponseDeleteRange"];
    assert_eq!(int(d, "deleted"), 1, "{r}");
    assert_eq!(kvs(&serde_json::json!({"kvs": d["prev_kvs"]})), vec![kv("fail", "x", 4, 4, 1)]);
    // A read-only txn that fails does not advance the revision.
    let r: Value = serde_json::from_str(txn(&s, &["-w", "json"], "value(\"t1\") = \"no\"\n\n\nget t1\n\n").trim()).unwrap();
    assert_eq!(header_rev(&r), 5, "{r}");
    assert_eq!(kvs(&r["responses"][0]["Response"]["ResponseRange"]), vec![kv("t1", "tres", 3, 5, 2)]);
}

fn txn_errors(shards: u32) {
    let s = start(shards);
    let puts = |n: usize| (1..=n).map(|i| format!("put k{i} v\n")).collect::<String>();
    assert_eq!(txn_error(&s, &format!("\n{}\n\n", puts(129))), "Error: etcdserver: too many operations in txn request");
    assert_eq!(s.ctl(&["get", "k1"]), "");
    // 128 operations are allowed, and commit as one revision.
    let out = txn(&s, &[], &format!("\n{}\n\n", puts(128)));
    assert_eq!(out, format!("SUCCESS\n{}", "\nOK\n".repeat(128)));
    let r = json(&s, &["get", "k", "--prefix", "--limit", "1"]);
    assert_eq!(header_rev(&r), 2);
    assert_eq!(int(&r, "count"), 128);

    let dup = "Error: etcdserver: duplicate key given in txn request";
    assert_eq!(txn_error(&s, "\nput d 1\nput d 2\n\n\n"), dup);
    assert_eq!(txn_error(&s, "\nput d 1\ndel d\n\n\n"), dup);
    assert_eq!(txn_error(&s, "\nput d 1\ndel c e\n\n\n"), dup); // range [c, e) covers d
    assert_eq!(txn_error(&s, "\nput k5 1\ndel k --prefix\n\n\n"), dup);
    assert_eq!(header_rev(&json(&s, &["get", "d"])), 2);
    // Not duplicates: put + get of one key, two deletes of one key.
    assert_eq!(txn(&s, &[], "\nput d 1\nget d\n\n\n"), "SUCCESS\n\nOK\n\nd\n1\n"); // 3
    assert_eq!(txn(&s, &[], "\ndel d\ndel d\n\n\n"), "SUCCESS\n\n1\n\n0\n"); // 4
    assert_eq!(txn(&s, &[], "\ndel d\ndel d\n\n\n"), "SUCCESS\n\n0\n\n0\n");
    assert_eq!(header_rev(&json(&s, &["get", "d"])), 4);
}

fn compaction(shards: u32) {
    let s = start(shards);
    seed_ranges(&s); // rev 7; k2 = vk2 at 3, zz at 7
    assert_eq!(s.ctl(&["compaction", "5"]), "compacted revision 5\n");
    let compacted = "Error: etcdserver: mvcc: required revision has been compacted";
    let future = "Error: etcdserver: mvcc: required revision is a future revision";
    assert_eq!(ctl_error(&s, &["get", "k2", "--rev", "4"]), compacted);
    assert_eq!(ctl_error(&s, &["get", "k", "--prefix", "--rev", "1"]), compacted);
    // The compacted revision itself stays readable, and so does everything after it.
    assert_eq!(s.ctl(&["get", "k2", "--rev", "5"]), "k2\nvk2\n");
    assert_eq!(s.ctl(&["get", "", "--from-key", "--rev", "5", "--keys-only"]), "k1\n\nk2\n\nk3\n\nx\n\n");
    assert_eq!(s.ctl(&["get", "k2"]), "k2\nzz\n");
    // Compacting again at or below the compacted revision fails; beyond the head too.
    assert_eq!(ctl_error(&s, &["compaction", "5"]), compacted);
    assert_eq!(ctl_error(&s, &["compaction", "3"]), compacted);
    assert_eq!(ctl_error(&s, &["compaction", "1000"]), future);
    assert_eq!(ctl_error(&s, &["get", "k2", "--rev", "1000"]), future);
    // Compaction does not advance the revision.
    assert_eq!(header_rev(&json(&s, &["get", "k2"])), 7);
    assert_eq!(s.ctl(&["compaction", "7", "--physical"]), "compacted revision 7\n");
    assert_eq!(ctl_error(&s, &["get", "k2", "--rev", "6"]), compacted);
    assert_eq!(kvs(&json(&s, &["get", "k2", "--rev", "7"])), vec![kv("k2", "zz", 3, 7, 2)]);
    put(&s, "k2", "after"); // 8
    assert_eq!(kvs(&json(&s, &["get", "k2"])), vec![kv("k2", "after", 3, 8, 3)]);
}

fn empty_key(shards: u32) {
    let s = start(shards);
    let msg = "Error: etcdserver: key is not provided";
    assert_eq!(ctl_error(&s, &["put", "", "v"]), msg);
    assert_eq!(ctl_error(&s, &["get", ""]), msg);
    // An empty key with --prefix / --from-key means "everything", which is fine.
    assert_eq!(s.ctl(&["get", "", "--prefix"]), "");
    assert_eq!(header_rev(&json(&s, &["get", "", "--from-key"])), 1);
}

/// Starts a server, writes two keys (revision 3) and returns it with its member id.
fn started_with_two_keys(shards: u32) -> (Server, u64) {
    let s = start(shards);
    put(&s, "a", "1"); // 2
    put(&s, "b", "2"); // 3
    let r = json(&s, &["get", "a"]);
    let member = r["header"]["member_id"].as_u64().unwrap();
    (s, member)
}

fn endpoint_status(shards: u32) {
    let (s, member0) = started_with_two_keys(shards);

    // endpoint status, -w json
    let r = json(&s, &["endpoint", "status"]);
    let arr = r.as_array().unwrap();
    assert_eq!(arr.len(), 1, "{r}");
    assert_eq!(arr[0]["Endpoint"], Value::String(s.endpoint.clone()));
    let st = &arr[0]["Status"];
    assert_eq!(st["version"], Value::String("3.5.23".into()), "{st}");
    assert_eq!(header_rev(st), 3);
    let member = st["header"]["member_id"].as_u64().unwrap();
    assert!(member != 0 && st["header"]["cluster_id"].as_u64().unwrap() != 0, "{st}");
    assert_eq!(member, member0, "{st}");
    assert_eq!(st["leader"].as_u64().unwrap(), member, "single member must lead: {st}");
    let term = int(st, "raftTerm");
    assert!(term >= 1, "{st}");
    assert_eq!(term, st["header"]["raft_term"].as_i64().unwrap(), "{st}");
    let index = int(st, "raftIndex");
    let applied = int(st, "raftAppliedIndex");
    assert!(applied >= 3 && index >= applied, "two puts were applied: {st}");
    assert!(int(st, "dbSize") > 0 && int(st, "dbSizeInUse") <= int(st, "dbSize"), "{st}");
    assert!(st.get("errors").is_none() && st.get("isLearner").is_none(), "{st}");

    // endpoint status, simple: "ep, id, version, size, leader, learner, term, index, applied, errors"
    let line = s.ctl(&["endpoint", "status"]);
    let fields: Vec<&str> = line.trim_end_matches('\n').split(", ").collect();
    assert_eq!(fields.len(), 10, "{line:?}");
    assert_eq!(fields[0], s.endpoint);
    assert_eq!(fields[1], format!("{member:x}"));
    assert_eq!(fields[2], "3.5.23");
    assert_eq!(&fields[4..6], ["true", "false"]);
    assert!(fields[6].parse::<u64>().unwrap() >= 1);
    assert!(fields[8].parse::<u64>().unwrap() >= 3);
    assert_eq!(fields[9], "");
    assert!(line.ends_with(", \n"), "{line:?}");

    // endpoint status, table
    let table = s.ctl(&["endpoint", "status", "-w", "table"]);
    assert!(table.contains("|    ENDPOINT     |        ID        | VERSION | DB SIZE | IS LEADER |"), "{table}");
    let want = format!("| {} | {member:x} |  3.5.23 |", s.endpoint);
    assert!(table.contains(&want), "{want:?} not in\n{table}");

}

fn endpoint_health(shards: u32) {
    let (s, _) = started_with_two_keys(shards);
    // etcdctl 3.4 prints the simple health line on stderr, and nothing on stdout.
    let out = s.etcdctl(&["endpoint", "health"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "");
    let health = String::from_utf8(out.stderr).unwrap();
    let prefix = format!("{} is healthy: successfully committed proposal: took = ", s.endpoint);
    assert!(health.starts_with(&prefix) && health.ends_with('\n') && health.lines().count() == 1, "{health:?}");
    let h = json(&s, &["endpoint", "health"]);
    assert_eq!(h[0]["endpoint"], Value::String(s.endpoint.clone()), "{h}");
    assert_eq!(h[0]["health"], Value::Bool(true), "{h}");
    assert!(h[0].get("error").is_none(), "{h}");

}

fn member_list(shards: u32) {
    let (s, member) = started_with_two_keys(shards);
    let url = format!("http://{}", s.endpoint);
    let ml = s.ctl(&["member", "list"]);
    let f: Vec<&str> = ml.trim_end().split(", ").collect();
    assert_eq!(ml.lines().count(), 1, "{ml}");
    assert_eq!(f.len(), 6, "{ml}");
    assert_eq!(f[0], format!("{member:x}"));
    assert_eq!(f[1], "started");
    assert_eq!(f[2], "default");
    assert_eq!(f[4], url);
    assert_eq!(f[5], "false");
    let m = json(&s, &["member", "list"]);
    let members = m["members"].as_array().unwrap();
    assert_eq!(members.len(), 1, "{m}");
    assert_eq!(members[0]["ID"].as_u64().unwrap(), member, "{m}");
    assert_eq!(members[0]["name"], Value::String("default".into()), "{m}");
    assert_eq!(members[0]["clientURLs"], serde_json::json!([url]), "{m}");
    assert_eq!(members[0]["peerURLs"].as_array().unwrap().len(), 1, "{m}");
    assert_eq!(m["header"]["member_id"].as_u64().unwrap(), member, "{m}");
    // etcd's Cluster service header carries no revision (ClusterServer.header()).
    assert!(m["header"].get("revision").is_none(), "member list header must not carry a revision: {m}");
}

/// Recorded from etcd 3.5.1: a lone member may "move" leadership to itself; any other id (or
/// a learner's) is a bad transferee, before raft is asked.
fn move_leader(shards: u32) {
    let (s, member) = started_with_two_keys(shards);
    assert_eq!(s.ctl(&["move-leader", &format!("{member:x}")]), format!("Leadership transferred from {member:x} to {member:x}\n"));
    assert_eq!(ctl_error(&s, &["move-leader", "1"]), "Error: etcdserver: bad leader transferee");
    let st = json(&s, &["endpoint", "status"]);
    assert_eq!(st[0]["Status"]["leader"].as_u64().unwrap(), member, "{st}");
}

fn alarm_list(shards: u32) {
    let (s, _) = started_with_two_keys(shards);
    assert_eq!(s.ctl(&["alarm", "list"]), "");
    let r = json(&s, &["alarm", "list"]);
    assert_eq!(header_rev(&r), 3, "{r}");
    assert!(r.get("alarms").is_none(), "{r}");
}

fn fields_output(shards: u32) {
    let s = start(shards);
    let out = s.ctl(&["put", "f1", "v", "-w", "fields"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    assert!(lines[0].starts_with("\"ClusterID\" : ") && lines[1].starts_with("\"MemberID\" : "), "{out}");
    assert_eq!(lines[2], "\"Revision\" : 2");
    assert!(lines[3].starts_with("\"RaftTerm\" : "), "{out}");

    let out = s.ctl(&["get", "f1", "-w", "fields"]);
    let tail: Vec<&str> = out.lines().skip(4).collect();
    assert_eq!(
        tail,
        [
            "\"Key\" : \"f1\"",
            "\"CreateRevision\" : 2",
            "\"ModRevision\" : 2",
            "\"Version\" : 1",
            "\"Value\" : \"v\"",
            "\"Lease\" : 0",
            "\"More\" : false",
            "\"Count\" : 1",
        ],
        "{out}"
    );
}

fn odd_keys_and_values(shards: u32) {
    let s = start(shards);
    assert_eq!(s.ctl(&["put", "--", "sp ace", "-neg"]), "OK\n"); // 2
    assert_eq!(s.ctl(&["get", "sp ace"]), "sp ace\n-neg\n");
    assert_eq!(s.ctl(&["get", "sp ace", "--hex"]), "\\x73\\x70\\x20\\x61\\x63\\x65\n\\x2d\\x6e\\x65\\x67\n");
    assert_eq!(s.ctl(&["get", "sp", "--prefix", "--print-value-only"]), "-neg\n");
    // Without a value argument, etcdctl reads the value from stdin.
    let out = s.etcdctl_stdin(&["put", "stdinkey"], "from-stdin");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "OK\n"); // 3
    assert_eq!(s.ctl(&["get", "stdinkey"]), "stdinkey\nfrom-stdin\n");
    // An empty value is a value.
    assert_eq!(s.ctl(&["put", "empty", ""]), "OK\n"); // 4
    assert_eq!(kvs(&json(&s, &["get", "empty"])), vec![kv("empty", "", 4, 4, 1)]);
    assert_eq!(s.ctl(&["get", "empty"]), "empty\n\n");
    // Deleting everything.
    assert_eq!(s.ctl(&["del", "", "--from-key"]), "3\n"); // 5
    let r = json(&s, &["get", "", "--from-key"]);
    assert_eq!(header_rev(&r), 5);
    assert!(r.get("kvs").is_none(), "{r}");
}

// ---------------------------------------------------------------------------------------------

macro_rules! shard_tests {
    ($($name:ident),* $(,)?) => {
        mod shards_1 { $( #[test] fn $name() { super::$name(1) } )* }
        mod shards_2 { $( #[test] fn $name() { super::$name(2) } )* }
    };
}

shard_tests!(
    revision_sequence,
    get_ranges,
    get_sorting,
    historical_reads,
    put_flags,
    delete_variants,
    txn_interactive,
    txn_compares,
    txn_json,
    txn_errors,
    compaction,
    empty_key,
    endpoint_status,
    endpoint_health,
    member_list,
    move_leader,
    alarm_list,
    fields_output,
    odd_keys_and_values,
);

//! etcdctl 3.5's member commands against a 1-member etcd 3.5.1 and a 1-member ballast: the same
//! script, every command's exit status, stdout and error line compared (the client's JSON
//! retry logs left out), then the same through the JSON gateway's /v3/cluster/member/* paths.
//! Ids differ between the two (a member's id hashes its peer URLs and, when added, the time),
//! so each side's ids and URLs are masked by name, and lines and JSON member lists are compared
//! as sets (etcd lists members by id). `BALLAST_SHOW_STEPS=1` prints ballast's side.
//!
//! The script follows etcd 3.5's rules on one member: a learner that never started may be
//! added but not promoted (not in sync), one learner at most, peer URLs unique, the lone
//! member may not remove itself (strict reconfig check), an unknown id is not found, and
//! `member update` clears the learner flag (etcd 3.5 replaces the raft attributes whole), after
//! which the never-started "voter" makes any voter add lose quorum and any learner add
//! "unhealthy". Last, the lone started voter adds a voter (etcd's restore-a-cluster case),
//! which leaves both without quorum.

mod common;
#[path = "common/etcd.rs"]
mod etcd;
#[path = "common/http.rs"]
mod http;

use std::process::{Command, Stdio};

use common::Server;
use etcd::Etcd;

/// Each step's arguments; `{learner}`, `{voter}`, `{self}` and `{peer}` stand for each side's
/// own ids (hex) and peer URL.
const SCRIPT: &[&[&str]] = &[
    &["member", "list"],
    &["member", "list", "-w", "json"],
    &["member", "list", "-w", "table"],
    &["member", "add", "l1", "--learner", "--peer-urls=http://127.0.0.1:1"],
    &["member", "list", "-w", "table"],
    &["member", "list", "-w", "json"],
    &["member", "promote", "{learner}"],
    &["member", "add", "l2", "--learner", "--peer-urls=http://127.0.0.1:2"],
    &["member", "add", "l3", "--learner", "--peer-urls={peer}"],
    &["member", "add", "l4", "--learner", "--peer-urls=127.0.0.1:2"],
    &["member", "remove", "1234"],
    &["member", "remove", "{self}"],
    &["member", "promote", "{self}"],
    &["member", "promote", "1234"],
    &["member", "update", "1234", "--peer-urls=http://127.0.0.1:3"],
    &["member", "update", "{learner}", "--peer-urls={peer}"],
    &["member", "update", "{learner}", "--peer-urls=http://127.0.0.1:4"],
    &["member", "list", "-w", "json"],
    &["member", "add", "v1", "--peer-urls=http://127.0.0.1:5"],
    &["member", "add", "l5", "--learner", "--peer-urls=http://127.0.0.1:6"],
    &["member", "promote", "{learner}"],
    &["member", "remove", "{learner}"],
    &["member", "remove", "{learner}"],
    &["member", "list", "-w", "table"],
    &["member", "list", "-w", "json"],
    &["member", "add", "v2", "--peer-urls=http://127.0.0.1:7"],
    &["member", "list"],
];

/// One side: its endpoint, its ids and URLs to mask, and the ids it added.
struct Side {
    endpoint: String,
    /// (text, mask), longest first when applied.
    masks: Vec<(String, String)>,
    self_id: u64,
    peer: String,
    learner: Option<u64>,
    added: u32,
}

impl Side {
    fn new(endpoint: String, self_id: u64, cluster_id: u64, peer: String) -> Side {
        let mut s = Side { endpoint: endpoint.clone(), masks: Vec::new(), self_id, peer: peer.clone(), learner: None, added: 0 };
        s.mask_id(self_id, "SELF");
        s.mask_id(cluster_id, "CLUSTER");
        s.masks.push((endpoint, "CLIENT".into()));
        s.masks.push((peer, "PEER".into()));
        s
    }

    fn mask_id(&mut self, id: u64, name: &str) {
        self.masks.push((format!("{id:x}"), format!("ID-{name}")));
        self.masks.push((id.to_string(), format!("ID-{name}")));
    }

    fn args(&self, step: &[&str]) -> Vec<String> {
        let learner = self.learner.map_or_else(|| "none".into(), |id| format!("{id:x}"));
        step.iter().map(|a| a.replace("{learner}", &learner).replace("{self}", &format!("{:x}", self.self_id)).replace("{peer}", &self.peer)).collect()
    }

    /// Learns the ids a step added ("Member <hex> added to cluster ...").
    fn learn(&mut self, out: &str) {
        for line in out.lines() {
            let Some(rest) = line.strip_prefix("Member ") else { continue };
            let Some((hex, _)) = rest.split_once(" added") else { continue };
            let id = u64::from_str_radix(hex.trim(), 16).unwrap();
            self.added += 1;
            if self.learner.is_none() {
                self.learner = Some(id);
                self.mask_id(id, "LEARNER");
            } else {
                self.mask_id(id, &format!("ADDED{}", self.added));
            }
        }
    }

    /// The output with ids and URLs masked, JSON member lists sorted, lines sorted.
    fn normalize(&self, out: &str) -> String {
        let mut masks = self.masks.clone();
        masks.sort_by_key(|(text, _)| std::cmp::Reverse(text.len()));
        let mut lines: Vec<String> = out
            .lines()
            .map(|line| {
                let mut line = line.to_string();
                for (text, mask) in &masks {
                    line = line.replace(text.as_str(), mask);
                }
                sorted_json(&line).unwrap_or_else(|| sorted_list(&line))
            })
            .collect();
        lines.sort();
        lines.join("\n")
    }
}

/// A JSON line with its member lists sorted (etcd lists members by id; masked ids sort otherwise).
fn sorted_json(line: &str) -> Option<String> {
    let mut v: serde_json::Value = serde_json::from_str(line).ok()?;
    for key in ["members", "Members"] {
        if let Some(serde_json::Value::Array(members)) = v.get_mut(key) {
            members.sort_by_key(|m| m.to_string());
        }
    }
    Some(v.to_string())
}

/// `ETCD_INITIAL_CLUSTER="a=u,b=v"` with its items sorted (they follow the members' ids).
fn sorted_list(line: &str) -> String {
    let Some(list) = line.strip_prefix("ETCD_INITIAL_CLUSTER=\"").and_then(|l| l.strip_suffix('"')) else { return line.to_string() };
    let mut items: Vec<&str> = list.split(',').collect();
    items.sort();
    format!("ETCD_INITIAL_CLUSTER=\"{}\"", items.join(","))
}

/// One step's outcome: exit status, stdout, and stderr without the client's JSON log lines.
fn run(ctl: &std::path::Path, endpoint: &str, args: &[String]) -> String {
    let out = Command::new(ctl)
        .env("ETCDCTL_API", "3")
        .args(["--endpoints", endpoint, "--command-timeout", "10s", "--dial-timeout", "3s"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr: Vec<String> = String::from_utf8_lossy(&out.stderr).lines().filter(|l| !l.starts_with('{')).map(str::to_string).collect();
    format!("exit {}\n{}{}", out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout), stderr.join("\n"))
}

/// The gateway's answer to a POST: status and body.
fn post(endpoint: &str, path: &str, body: &str) -> String {
    let a = http::request(endpoint, "POST", path, body, &[("Content-Type", "application/json")]);
    format!("{} {}", a.status, a.body)
}

fn member_ids(ctl: &std::path::Path, endpoint: &str) -> (u64, u64) {
    let out = run(ctl, endpoint, &["member".into(), "list".into(), "-w".into(), "json".into()]);
    let json = out.lines().find(|l| l.starts_with('{')).unwrap_or_else(|| panic!("member list: {out}"));
    let v: serde_json::Value = serde_json::from_str(json).unwrap();
    (v["header"]["member_id"].as_u64().unwrap(), v["header"]["cluster_id"].as_u64().unwrap())
}

#[test]
fn etcdctl_member_commands_match_etcd() {
    let ctl = etcd::find_etcdctl35().unwrap_or_else(|e| panic!("etcdctl 3.5 is needed for this test: {e}"));
    let etcd = Etcd::start();
    // A peer URL nobody listens on (ballast has no peer listener yet; the string is what counts).
    let peer = format!("http://127.0.0.1:{}", common::free_port());
    let initial = format!("default={peer}");
    let ballast = Server::start(&["--initial-advertise-peer-urls", &peer, "--initial-cluster", &initial]);
    let etcd_log = etcd.log();
    let etcd_peer = etcd_log.split("\"initial-advertise-peer-urls\":[\"").nth(1).and_then(|s| s.split('"').next()).expect("etcd's peer URL in its log").to_string();
    let mut sides = [("etcd 3.5", etcd.endpoint.clone(), etcd_peer), ("ballast", ballast.endpoint.clone(), peer)].map(|(name, endpoint, peer)| {
        let (self_id, cluster_id) = member_ids(&ctl, &endpoint);
        (name, Side::new(format!("http://{endpoint}"), self_id, cluster_id, peer))
    });
    let mut differences = Vec::new();
    for step in SCRIPT {
        let outs: Vec<String> = sides
            .iter_mut()
            .map(|(_, side)| {
                let out = run(&ctl, &side.endpoint, &side.args(step));
                side.learn(&out);
                side.normalize(&out)
            })
            .collect();
        if std::env::var("BALLAST_SHOW_STEPS").is_ok() {
            eprintln!("$ {}\n{}", step.join(" "), outs[1]);
        }
        if outs[0] != outs[1] {
            differences.push(format!("etcdctl {}\n--- {}:\n{}\n--- {}:\n{}\n", step.join(" "), sides[0].0, outs[0], sides[1].0, outs[1]));
        }
    }
    // The JSON gateway's paths, answered by the same handlers.
    let gateway: &[(&str, &str)] = &[
        ("/v3/cluster/member/list", "{}"),
        ("/v3/cluster/member/promote", "{\"ID\":\"1234\"}"),
        ("/v3/cluster/member/remove", "{\"ID\":\"1234\"}"),
        ("/v3/cluster/member/update", "{\"ID\":\"1234\",\"peerURLs\":[\"http://127.0.0.1:8\"]}"),
        ("/v3/cluster/member/add", "{\"peerURLs\":[\"not a url\"]}"),
    ];
    for (path, body) in gateway {
        let outs: Vec<String> = sides.iter().map(|(_, side)| side.normalize(&post(side.endpoint.trim_start_matches("http://"), path, body))).collect();
        if outs[0] != outs[1] {
            differences.push(format!("POST {path} {body}\n--- {}:\n{}\n--- {}:\n{}\n", sides[0].0, outs[0], sides[1].0, outs[1]));
        }
    }
    assert!(differences.is_empty(), "{} of {} steps differ:\n{}", differences.len(), SCRIPT.len() + gateway.len(), differences.join("\n"));
    drop(etcd);
}

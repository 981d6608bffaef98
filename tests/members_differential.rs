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
    &[GATEWAY],
    // The last: both are left without quorum (the new voter never starts).
    &["member", "add", "v2", "--peer-urls=http://127.0.0.1:7"],
    &[WAIT_LEADER_LOST],
    // No leader for the whole request timeout (7 s, under the client's 10 s): etcd's raft takes
    // no proposal, and its `Propose` returns the context's error unmapped: Unknown "context
    // deadline exceeded". clientv3 retries "request timed out" (Unavailable) on lease grant
    // until its own deadline, but not this (etcdctl lock and elect then hung for ever).
    &["put", "k", "v"],
    &["lease", "grant", "10"],
    // etcd's auth reads go through raft too: no answer from a state that may be stale.
    &["auth", "status"],
    &["user", "list"],
    &["role", "get", "root"],
    // The strict reconfig check comes before the proposal, leader or not.
    &["member", "add", "v3", "--peer-urls=http://127.0.0.1:10"],
    &["member", "remove", "1234"],
    // A change the check lets through waits for a leader until the client's deadline.
    &["member", "update", "1234", "--peer-urls=http://127.0.0.1:11"],
    &["member", "promote", "1234"],
];

/// A pause in the script: the leader steps down an election timeout (1 s) after it lost its
/// quorum (check_quorum).
const WAIT_LEADER_LOST: &str = "wait-leader-lost";

/// The step that runs `GATEWAY_STEPS` (before the last add leaves both without quorum).
const GATEWAY: &str = "gateway";

/// The JSON gateway's paths, answered by the same handlers: (path, body).
const GATEWAY_STEPS: &[(&str, &str)] = &[
    ("/v3/cluster/member/list", "{}"),
    ("/v3/cluster/member/list", "{\"linearizable\":true}"),
    ("/v3/cluster/member/promote", "{\"ID\":\"1234\"}"),
    ("/v3/cluster/member/remove", "{\"ID\":\"1234\"}"),
    ("/v3/cluster/member/update", "{\"ID\":\"1234\",\"peerURLs\":[\"http://127.0.0.1:8\"]}"),
    ("/v3/cluster/member/add", "{\"peerURLs\":[\"not a url\"]}"),
    ("/v3/cluster/member/add", "{\"peerURLs\":[\"http://127.0.0.1:9\"],\"isLearner\":true}"),
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

    /// Learns the id a gateway MemberAdd added (`"member":{"ID":"<decimal>"`).
    fn learn_json(&mut self, out: &str) {
        let Some(json) = out.split_once(' ').map(|(_, body)| body) else { return };
        let Ok(v) = serde_json::from_str::<serde_json::Value>(json) else { return };
        if let Some(id) = v["member"]["ID"].as_str().and_then(|id| id.parse().ok()) {
            self.added += 1;
            self.mask_id(id, &format!("ADDED{}", self.added));
        }
    }

    /// The output with ids and URLs masked, table padding and raft terms (etcd's single member
    /// campaigns once more at boot) left out, JSON member lists sorted, lines sorted.
    fn normalize(&self, out: &str) -> String {
        let mut lines: Vec<String> = out.lines().map(|line| self.normalize_line(line)).collect();
        lines.sort();
        lines.join("\n")
    }

    fn normalize_line(&self, line: &str) -> String {
        let (prefix, json) = match line.find('{') {
            Some(at) => line.split_at(at),
            None => (line, ""),
        };
        if let Ok(mut v) = serde_json::from_str::<serde_json::Value>(json) {
            if let Some(h) = v.get_mut("header").and_then(|h| h.as_object_mut()) {
                h.remove("raft_term");
            }
            // Decimal ids become numbers that stay valid JSON; then member lists are sorted.
            let mut v: serde_json::Value = serde_json::from_str(&self.mask(&v.to_string(), true)).expect("masked JSON");
            for key in ["members", "Members"] {
                if let Some(serde_json::Value::Array(members)) = v.get_mut(key) {
                    members.sort_by_key(|m| m.to_string());
                }
            }
            return format!("{}{v}", self.mask(prefix, false));
        }
        let masked = self.mask(line, false);
        let squeezed: String = masked.split(' ').filter(|w| !w.is_empty()).collect::<Vec<_>>().join(" ");
        let squeezed = if squeezed.starts_with('+') { squeezed.split('-').filter(|w| !w.is_empty()).collect::<Vec<_>>().join("-") } else { squeezed };
        sorted_list(&squeezed)
    }

    /// Ids and URLs replaced by their names (decimal ids by numbers in JSON).
    fn mask(&self, text: &str, json: bool) -> String {
        // Both sides register their masks in the same order: the index names one.
        let mut masks: Vec<(usize, &(String, String))> = self.masks.iter().enumerate().collect();
        masks.sort_by_key(|(_, (text, _))| std::cmp::Reverse(text.len()));
        let mut text = text.to_string();
        for (i, (from, to)) in masks {
            let decimal = from.bytes().all(|b| b.is_ascii_digit());
            let to = if json && decimal { (9000 + i).to_string() } else { to.clone() };
            text = text.replace(from.as_str(), &to);
        }
        text
    }
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

/// The gateway's answers on both sides, compared as the etcdctl steps are.
fn gateway_steps(sides: &mut [(&str, Side); 2], differences: &mut Vec<String>) {
    for (path, body) in GATEWAY_STEPS {
        let outs: Vec<String> = sides
            .iter_mut()
            .map(|(_, side)| {
                let out = post(side.endpoint.trim_start_matches("http://"), path, body);
                side.learn_json(&out);
                side.normalize(&out)
            })
            .collect();
        if std::env::var("BALLAST_SHOW_STEPS").is_ok() {
            eprintln!("POST {path} {body}\n{}", outs[1]);
        }
        if outs[0] != outs[1] {
            differences.push(format!("POST {path} {body}\n--- {}:\n{}\n--- {}:\n{}\n", sides[0].0, outs[0], sides[1].0, outs[1]));
        }
    }
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
        if step == &[GATEWAY] {
            gateway_steps(&mut sides, &mut differences);
            continue;
        }
        if step == &[WAIT_LEADER_LOST] {
            std::thread::sleep(std::time::Duration::from_secs(3));
            continue;
        }
        let outs: Vec<String> = sides
            .iter_mut()
            .map(|(_, side)| {
                let out = run(&ctl, &side.endpoint, &side.args(step));
                side.learn(&out);
                let out = side.normalize(&out);
                // etcd's change waits for a leader on the request's context, which ends on the
                // server and on the client at the same instant: either answer comes first.
                if step.starts_with(&["member", "update"]) {
                    out.replace("Error: context deadline exceeded", "Error: rpc error: code = Unknown desc = context deadline exceeded")
                } else {
                    out
                }
            })
            .collect();
        if std::env::var("BALLAST_SHOW_STEPS").is_ok() {
            eprintln!("$ {}\n{}", step.join(" "), outs[1]);
        }
        if outs[0] != outs[1] {
            differences.push(format!("etcdctl {}\n--- {}:\n{}\n--- {}:\n{}\n", step.join(" "), sides[0].0, outs[0], sides[1].0, outs[1]));
        }
    }
    assert!(differences.is_empty(), "{} of {} steps differ:\n{}", differences.len(), SCRIPT.len() + GATEWAY_STEPS.len(), differences.join("\n"));
    drop(etcd);
}

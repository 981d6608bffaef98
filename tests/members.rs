//! The member list is applied state: changed only through raft, it survives a restart from the
//! WAL alone and from a snapshot (the manifest keeps it with raft's voters and learners), and
//! every member's published client URLs are listed. Behaviour against etcd itself:
//! `tests/members_differential.rs`; under faults with several members: `tests/raft_sim_cluster.rs`.

mod common;

use common::Server;

/// A listed member: (id, name, peer URLs, client URLs, learner).
type Listed = (u64, String, Vec<String>, Vec<String>, bool);

/// `member list -w json`'s members.
fn members(s: &Server) -> Vec<Listed> {
    let out = s.ctl(&["member", "list", "-w", "json"]);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
    let strings = |m: &serde_json::Value, k: &str| m[k].as_array().map_or_else(Vec::new, |a| a.iter().map(|u| u.as_str().unwrap().to_string()).collect());
    v["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["ID"].as_u64().unwrap(), m["name"].as_str().unwrap_or("").to_string(), strings(m, "peerURLs"), strings(m, "clientURLs"), m["isLearner"].as_bool().unwrap_or(false)))
        .collect()
}

fn added_id(out: &str) -> u64 {
    let hex = out.split_whitespace().nth(1).unwrap_or_else(|| panic!("member add: {out}"));
    u64::from_str_radix(hex, 16).unwrap()
}

#[test]
fn the_member_list_survives_restarts_from_the_wal_and_from_a_snapshot() {
    let mut s = Server::start(&[]);
    let me = s.member_id_dec();
    let listed = members(&s);
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].0, me);
    assert_eq!(listed[0].3, vec![format!("http://{}", s.endpoint)], "the member published its client URLs through raft");
    assert!(s.log().contains("published {Name:default ClientURLs:["), "{}", s.log());

    let learner = added_id(&s.ctl(&["member", "add", "l1", "--learner", "--peer-urls=http://127.0.0.1:1"]));
    let with_learner = members(&s);
    assert_eq!(with_learner.len(), 2);
    assert!(with_learner.iter().any(|m| m.0 == learner && m.4 && m.2 == ["http://127.0.0.1:1"]), "{with_learner:?}");

    // From the WAL alone (killed: no snapshot at exit): the conf change entry is applied again.
    s.kill();
    s.restart();
    let after = members(&s);
    assert_eq!(after.len(), 2, "{after:?}");
    assert!(after.iter().any(|m| m.0 == learner && m.4), "{after:?}");
    assert!(after.iter().any(|m| m.0 == me && m.3 == [format!("http://{}", s.endpoint)]), "{after:?}");

    // From a snapshot (Defragment takes one): the manifest holds the list and raft's learners.
    s.ctl(&["defrag"]);
    let manifest = common::read_checked_json(&s.data_dir.join("member/snap/manifest.json")).expect("a manifest");
    assert_eq!(manifest["learners"], serde_json::json!([learner]), "{manifest}");
    assert_eq!(manifest["voters"], serde_json::json!([me]), "{manifest}");
    assert_eq!(manifest["members"]["members"].as_array().map(Vec::len), Some(2), "{manifest}");
    s.terminate();
    s.restart();
    assert_eq!(members(&s).iter().map(|m| (m.0, m.4)).collect::<Vec<_>>(), after.iter().map(|m| (m.0, m.4)).collect::<Vec<_>>());

    // A removal after the snapshot, replayed from the WAL; the id can never come back.
    assert!(s.ctl(&["member", "remove", &format!("{learner:x}")]).contains("removed from cluster"));
    s.kill();
    s.restart();
    assert_eq!(members(&s).iter().map(|m| m.0).collect::<Vec<_>>(), vec![me]);
    let err = s.ctl_err(&["member", "promote", &format!("{learner:x}")]);
    assert!(err.contains("etcdserver: member not found"), "{err}");
}

#[test]
fn strict_reconfig_check_can_be_turned_off() {
    // With the check, the lone member may not remove itself; without it etcd proposes the
    // removal, which raft refuses (no voter would be left) and nothing changes.
    let s = Server::start(&["--strict-reconfig-check=false"]);
    let me = format!("{:x}", s.member_id_dec());
    let err = s.ctl_err(&["member", "remove", &me]);
    assert!(!err.contains("not enough started members"), "{err}");
    assert_eq!(members(&s).len(), 1);
    let s = Server::start(&[]);
    let me = format!("{:x}", s.member_id_dec());
    let err = s.ctl_err(&["member", "remove", &me]);
    assert!(err.contains("etcdserver: re-configuration failed due to not enough started members"), "{err}");
}

//! The bootstrap paths besides static `--initial-cluster` (which `tests/cluster.rs` covers),
//! with real ballast processes on loopback: `--force-new-cluster` after quorum loss, a data dir
//! of another cluster (its flags ignored, its peers refusing it), DNS SRV discovery against a
//! real dnsmasq, and etcd's v2 discovery protocol against a real etcd 3.5.

mod common;
#[path = "common/cluster.rs"]
mod cluster;
#[path = "common/etcd.rs"]
mod etcd;

use std::time::{Duration, Instant};

use cluster::{Cluster, READY_TIMEOUT};

const ELECTION_BOUND: Duration = Duration::from_secs(20);

/// `member list -w json`: (id, name) of each member.
fn member_list(m: &cluster::Member) -> Vec<(u64, String)> {
    let out = m.ctl(&["member", "list", "-w", "json"]);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
    v["members"].as_array().unwrap().iter().map(|m| (m["ID"].as_u64().unwrap(), m["name"].as_str().unwrap_or("").to_string())).collect()
}

fn header(m: &cluster::Member, field: &str) -> u64 {
    m.status().unwrap_or_else(|| panic!("{} answers no status; log:\n{}", m.name, m.log()))["header"][field].as_u64().unwrap()
}

/// Waits (bounded) until `what` is in `m`'s log.
fn wait_log(m: &cluster::Member, what: &str) {
    let deadline = Instant::now() + READY_TIMEOUT;
    while !m.log().contains(what) {
        assert!(Instant::now() < deadline, "{} never logged {what:?}; log:\n{}", m.name, m.log());
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A put that may meet an election (a killed leader): tried again, bounded by `ELECTION_BOUND`.
fn put_after_election(m: &cluster::Member, key: &str, value: &str) {
    let deadline = Instant::now() + ELECTION_BOUND;
    loop {
        let out = m.etcdctl(&["put", key, value]);
        if out.status.success() {
            return;
        }
        assert!(Instant::now() < deadline, "put on {} failed: {}", m.name, String::from_utf8_lossy(&out.stderr));
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn force_new_cluster_keeps_a_survivors_data_as_a_one_member_cluster() {
    // Snapshots every 10 entries: the survivor restarts from a snapshot (whose configuration
    // names three voters) and the entries after it.
    let mut c = Cluster::unstarted(3, "force-cluster");
    c.extra = vec!["--snapshot-count".into(), "10".into()];
    for i in 0..3 {
        c.spawn(i);
    }
    for m in &mut c.members {
        m.wait_ready(READY_TIMEOUT);
    }
    let leader = c.wait_leader(ELECTION_BOUND);
    // Writes through every member; each one acknowledged.
    for i in 0..30 {
        c.members[i % 3].ctl(&["put", &format!("k/{i:02}"), &format!("v{i}")]);
    }
    // The survivor is a follower: its WAL's commit index may lag what it acknowledged.
    let survivor = (leader + 1) % 3;
    // A linearizable read there first: it has applied (hence holds durably) every write
    // acknowledged so far. force-new-cluster keeps what the survivor holds, as etcd's; a write
    // committed by the two others alone would not be there.
    assert_eq!(c.members[survivor].ctl(&["get", "k/29", "--print-value-only"]), "v29\n");
    let (cluster_id, member_id) = (header(&c.members[survivor], "cluster_id"), header(&c.members[survivor], "member_id"));
    for i in (0..3).filter(|&i| i != survivor) {
        c.members[i].kill();
    }
    c.members[survivor].kill();
    assert!(c.members[survivor].data_dir.join("member/snap/manifest.json").exists(), "the survivor took a snapshot");
    c.extra = vec!["--force-new-cluster".into()];
    c.restart(survivor);
    let m = &c.members[survivor];
    assert!(m.log().contains("\"msg\":\"forcing restart member\""), "{}", m.log());
    let keys = m.ctl(&["get", "k/", "--prefix", "--keys-only"]);
    assert_eq!(keys.split_whitespace().count(), 30, "every acknowledged key is kept: {keys}");
    assert_eq!(m.ctl(&["get", "k/29", "--print-value-only"]), "v29\n");
    m.ctl(&["put", "after", "force"]);
    assert_eq!(m.ctl(&["get", "after", "--print-value-only"]), "force\n");
    assert_eq!(member_list(m), vec![(member_id, m.name.clone())], "one member left");
    assert_eq!(header(m, "cluster_id"), cluster_id, "the cluster id is kept, as etcd keeps it");
    assert_eq!(m.status().unwrap()["leader"].as_u64(), Some(member_id));

    // The removals are in its WAL: a restart without the flag is still a one-member cluster.
    c.extra.clear();
    c.members[survivor].kill();
    c.restart(survivor);
    let m = &c.members[survivor];
    assert!(!m.log().contains("forcing restart member"), "{}", m.log());
    assert_eq!(member_list(m), vec![(member_id, m.name.clone())]);
    assert_eq!(m.ctl(&["get", "k/", "--prefix", "--keys-only"]).split_whitespace().count(), 30);
    assert_eq!(m.ctl(&["get", "after", "--print-value-only"]), "force\n");
    m.ctl(&["put", "after", "restart"]);
    // A removed member that comes back is refused and stops, as etcd's.
    let other = (survivor + 1) % 3;
    c.spawn(other);
    let status = c.members[other].wait_exit(READY_TIMEOUT);
    assert!(c.members[other].log().contains("the member has been permanently removed from the cluster"), "{status}: {}", c.members[other].log());
}

#[test]
fn a_data_dir_of_another_cluster_keeps_its_cluster_and_is_refused_by_the_peers() {
    // Cluster B: the same names and peer URLs as A, another token (other ids).
    let mut c = Cluster::unstarted(3, "cluster-b");
    let a_dirs: Vec<_> = c.members.iter().map(|m| m.data_dir.clone()).collect();
    for m in &mut c.members {
        m.data_dir = m.data_dir.with_extension("b");
    }
    let b_dirs: Vec<_> = c.members.iter().map(|m| m.data_dir.clone()).collect();
    for i in 0..3 {
        c.spawn(i);
    }
    for m in &mut c.members {
        m.wait_ready(READY_TIMEOUT);
    }
    c.members[0].ctl(&["put", "from", "b"]);
    let b_id = header(&c.members[2], "cluster_id");
    for m in &mut c.members {
        m.kill();
    }
    // Cluster A on the same ports.
    c.token = "cluster-a".into();
    for (m, dir) in c.members.iter_mut().zip(&a_dirs) {
        m.data_dir = dir.clone();
    }
    for i in 0..3 {
        c.spawn(i);
    }
    for m in &mut c.members {
        m.wait_ready(READY_TIMEOUT);
    }
    c.members[0].ctl(&["put", "from", "a"]);
    let a_id = header(&c.members[0], "cluster_id");
    let a_members = member_list(&c.members[0]);
    assert_ne!(a_id, b_id);

    // infra3 comes back on B's data dir with A's flags: the data dir wins (etcd ignores the
    // --initial-cluster* flags once it has a WAL), and A's members refuse it.
    c.members[2].kill();
    c.members[2].data_dir = b_dirs[2].clone();
    c.spawn(2);
    let rogue = &c.members[2];
    wait_log(rogue, &format!("\"cluster-id\":\"{b_id:x}\""));
    for line in ["\"msg\":\"server has been already initialized\"", "\"msg\":\"restarting local member\""] {
        assert!(rogue.log().contains(line), "{line}: {}", rogue.log());
    }
    wait_log(rogue, "request sent was ignored due to cluster ID mismatch");
    let deadline = Instant::now() + READY_TIMEOUT;
    while !c.members[..2].iter().any(|m| m.log().contains("\"msg\":\"request cluster ID mismatch\"")) {
        assert!(Instant::now() < deadline, "no member of A logged the mismatch");
        std::thread::sleep(Duration::from_millis(100));
    }
    // A goes on with two members (infra3 may have led A: a new election first); the rogue
    // never gets a leader, so it never serves.
    put_after_election(&c.members[1], "still", "a");
    assert_eq!(c.members[0].ctl(&["get", "still", "--print-value-only"]), "a\n");
    assert_eq!(member_list(&c.members[0]), a_members);
    assert!(!c.members[2].log().contains("ready to serve client requests"), "{}", c.members[2].log());
}

/// A dnsmasq on a free loopback port serving `records` (its flags), killed by PID when dropped.
struct Dnsmasq {
    child: Option<std::process::Child>,
    port: u16,
    log: std::path::PathBuf,
}

impl Dnsmasq {
    fn start(dir: &std::path::Path, records: &[String]) -> Dnsmasq {
        let port = common::free_port();
        let log = dir.join("dnsmasq.log");
        let child = std::process::Command::new("/usr/sbin/dnsmasq")
            .args(["--no-resolv", "--no-hosts", "--keep-in-foreground", "--conf-file=/dev/null", "--bind-interfaces", "--listen-address=127.0.0.1", "--log-facility=-", "--pid-file="])
            .arg(format!("--port={port}"))
            .args(records)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("run dnsmasq (apt-get install dnsmasq-base)");
        let d = Dnsmasq { child: Some(child), port, log };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !std::fs::read_to_string(&d.log).unwrap_or_default().contains("started") {
            assert!(Instant::now() < deadline, "dnsmasq did not start: {}", std::fs::read_to_string(&d.log).unwrap_or_default());
            std::thread::sleep(Duration::from_millis(50));
        }
        d
    }

    /// The environment that sends ballast's lookups here (test-only, `src/peer/dns.rs`).
    fn env(&self) -> Vec<(&'static str, String)> {
        vec![("BALLAST_TEST_DNS_SERVER", format!("127.0.0.1:{}", self.port))]
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        common::kill_child(&mut self.child);
    }
}

#[test]
fn three_members_bootstrap_from_dns_srv_records() {
    let mut c = Cluster::unstarted(3, "srv-cluster");
    // _etcd-server-prod._tcp.ballast.test names the members by host name (m1..m3.ballast.test,
    // each 127.0.0.1) and peer port; a record under another service name is not read.
    let mut records = Vec::new();
    for (i, m) in c.members.iter().enumerate() {
        records.push(format!("--srv-host=_etcd-server-prod._tcp.ballast.test,m{}.ballast.test,{}", i + 1, m.peer_port));
        records.push(format!("--host-record=m{}.ballast.test,127.0.0.1", i + 1));
    }
    records.push(format!("--srv-host=_etcd-server._tcp.ballast.test,m9.ballast.test,{}", common::free_port()));
    let dns = Dnsmasq::start(c.dir(), &records);
    let flags = |name: &str| -> Vec<String> {
        ["--discovery-srv", "ballast.test", "--discovery-srv-name", name, "--initial-cluster-token", "srv-cluster", "--initial-cluster-state", "new"].iter().map(|s| s.to_string()).collect()
    };
    for m in &mut c.members {
        m.spawn_with(&flags("prod"), &dns.env());
    }
    for m in &mut c.members {
        m.wait_ready(READY_TIMEOUT);
    }
    let m = &c.members[0];
    assert!(m.log().contains("\"msg\":\"got bootstrap from DNS for etcd-server\""), "{}", m.log());
    c.wait_leader(ELECTION_BOUND);
    for m in &c.members {
        m.ctl(&["put", &format!("srv/{}", m.name), "ok"]);
    }
    for m in &c.members {
        assert_eq!(m.ctl(&["get", "srv/", "--prefix", "--keys-only"]).split_whitespace().count(), 3);
    }
    // The members' peer URLs are the SRV targets' names; every member published its name.
    let out = c.members[2].ctl(&["member", "list", "-w", "json"]);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let mut listed: Vec<(String, String)> = v["members"].as_array().unwrap().iter().map(|m| (m["name"].as_str().unwrap_or("").to_string(), m["peerURLs"][0].as_str().unwrap().to_string())).collect();
    listed.sort();
    let expected: Vec<(String, String)> = c.members.iter().enumerate().map(|(i, m)| (m.name.clone(), format!("http://m{}.ballast.test:{}", i + 1, m.peer_port))).collect();
    assert_eq!(listed, expected);

    // A member the records do not name is refused with etcd's error.
    let mut stranger = c.outsider("stranger");
    stranger.spawn_with(&flags("prod"), &dns.env());
    let log = stranger.wait_refused(READY_TIMEOUT);
    assert!(log.contains("cannot find local etcd member \\\"stranger\\\" in SRV records"), "{log}");
    // No record at all for the service name: etcd's lookup error for both services.
    let mut lost = c.outsider("lost");
    lost.spawn_with(&flags("none"), &dns.env());
    let log = lost.wait_refused(READY_TIMEOUT);
    assert!(log.contains("error querying DNS SRV records for _etcd-server-ssl-none"), "{log}");
    // dnsmasq refuses a name it has no record for (no upstream): Go's "server misbehaving".
    let expected = format!("error querying DNS SRV records for _etcd-server-none lookup _etcd-server-none._tcp.ballast.test on 127.0.0.1:{}: server misbehaving", dns.port);
    assert!(log.contains(&expected), "{expected}: {log}");
}

/// curl against the discovery service's v2 keys API: its JSON answer.
fn v2(method: &str, url: &str, value: Option<&str>) -> serde_json::Value {
    let mut cmd = std::process::Command::new("curl");
    cmd.args(["-sS", "--max-time", "10", "-X", method, url]);
    if let Some(v) = value {
        cmd.args(["--data-urlencode", &format!("value={v}")]);
    }
    let out = cmd.output().expect("run curl");
    assert!(out.status.success(), "curl {url}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

#[test]
fn three_members_bootstrap_through_the_v2_discovery_protocol_of_a_real_etcd() {
    let discovery = etcd::Etcd::start_with(&["--enable-v2=true"]);
    let token = |t: &str| format!("http://{}/v2/keys/discovery/{t}", discovery.endpoint);
    let size = v2("PUT", &format!("{}/_config/size", token("three")), Some("3"));
    assert_eq!(size["node"]["value"], "3", "{size}");
    let mut c = Cluster::unstarted(3, "unused");
    let flags = |url: &str| -> Vec<String> { vec!["--discovery".into(), url.into(), "--initial-cluster-state".into(), "new".into()] };
    for m in &mut c.members {
        m.spawn_with(&flags(&token("three")), &[]);
    }
    for m in &mut c.members {
        m.wait_ready(READY_TIMEOUT);
    }
    assert!(c.members[0].log().contains("\"msg\":\"found all needed peers from discovery server\""), "{}", c.members[0].log());
    c.wait_leader(ELECTION_BOUND);
    for m in &c.members {
        m.ctl(&["put", &format!("disc/{}", m.name), "ok"]);
    }
    for m in &c.members {
        assert_eq!(m.ctl(&["get", "disc/", "--prefix", "--keys-only"]).split_whitespace().count(), 3);
    }
    // Each registered its id (computed with the discovery URL as the token) and name=peer-url.
    let registered = v2("GET", &token("three"), None);
    let mut values: Vec<String> = registered["node"]["nodes"].as_array().unwrap().iter().filter(|n| !n["key"].as_str().unwrap().ends_with("_config")).map(|n| n["value"].as_str().unwrap().to_string()).collect();
    values.sort();
    assert_eq!(values, c.members.iter().map(|m| format!("{}={}", m.name, m.peer_url())).collect::<Vec<_>>());
    let mut ids: Vec<String> = member_list(&c.members[0]).iter().map(|(id, _)| format!("{id:x}")).collect();
    ids.sort();
    let mut keys: Vec<String> = registered["node"]["nodes"].as_array().unwrap().iter().map(|n| n["key"].as_str().unwrap().rsplit('/').next().unwrap().to_string()).filter(|k| k != "_config").collect();
    keys.sort();
    assert_eq!(ids, keys);

    // A fourth member finds the cluster full.
    let mut late = c.outsider("late");
    late.spawn_with(&flags(&token("three")), &[]);
    let log = late.wait_refused(READY_TIMEOUT);
    assert!(log.contains("failed to join discovery cluster (discovery: cluster is full)"), "{log}");
    // A token without a size.
    let mut early = c.outsider("early");
    early.spawn_with(&flags(&token("nosize")), &[]);
    let log = early.wait_refused(READY_TIMEOUT);
    assert!(log.contains("failed to join discovery cluster (discovery: size key not found)"), "{log}");
    // A name registered already (under another id).
    v2("PUT", &format!("{}/_config/size", token("dup")), Some("2"));
    v2("PUT", &format!("{}/0123456789abcdef", token("dup")), Some("twin=http://127.0.0.1:1"));
    let mut twin = c.outsider("twin");
    twin.spawn_with(&flags(&token("dup")), &[]);
    let log = twin.wait_refused(READY_TIMEOUT);
    assert!(log.contains("failed to join discovery cluster (discovery: found duplicate name)"), "{log}");
    assert!(log.contains("member with duplicated name has already been registered"), "{log}");
    // Its id is registered now: starting again on an empty data dir is a duplicate id.
    twin.spawn_with(&flags(&token("dup")), &[]);
    let log = twin.wait_refused(READY_TIMEOUT);
    assert!(log.contains("failed to join discovery cluster (discovery: found duplicate id)"), "{log}");
}

#[test]
fn a_member_registers_under_the_id_etcd_computes_for_the_same_discovery_url() {
    let discovery = etcd::Etcd::start_with(&["--enable-v2=true"]);
    let token = format!("http://{}/v2/keys/discovery/same-id", discovery.endpoint);
    v2("PUT", &format!("{token}/_config/size"), Some("1"));
    // A real etcd 3.5 member bootstraps from the token first.
    let c = Cluster::unstarted(1, "unused");
    let mut twin = c.outsider("twin");
    let bin = etcd::find_etcd35().unwrap_or_else(|e| panic!("etcd 3.5 is needed for this test: {e}"));
    let client = format!("http://{}", twin.endpoint());
    let log = std::fs::File::create(c.dir().join("etcd-twin.log")).unwrap();
    let mut real = Some(
        std::process::Command::new(bin)
            .args(["--name", "twin", "--data-dir", c.dir().join("twin.etcd").to_str().unwrap()])
            .args(["--listen-client-urls", &client, "--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &twin.peer_url(), "--initial-advertise-peer-urls", &twin.peer_url()])
            .args(["--discovery", &token])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn etcd"),
    );
    let deadline = Instant::now() + READY_TIMEOUT;
    let registered = loop {
        let listed = v2("GET", &token, None);
        let nodes: Vec<serde_json::Value> = listed["node"]["nodes"].as_array().cloned().unwrap_or_default().into_iter().filter(|n| !n["key"].as_str().unwrap_or("").ends_with("_config")).collect();
        if let Some(n) = nodes.first() {
            break n.clone();
        }
        assert!(Instant::now() < deadline, "etcd never registered: {listed}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(registered["value"], format!("twin={}", twin.peer_url()));
    common::kill_child(&mut real);
    // ballast with the same name, peer URL and discovery URL computes the same id: its
    // registration is refused as a duplicate id (another id would find the cluster full).
    twin.spawn_with(&["--discovery".into(), token.clone()], &[]);
    let log = twin.wait_refused(READY_TIMEOUT);
    assert!(log.contains("failed to join discovery cluster (discovery: found duplicate id)"), "{log}");
    assert!(log.contains("member has been registered with discovery service"), "{log}");
}

#[test]
fn a_member_that_lost_its_data_dir_is_refused_as_already_bootstrapped() {
    let mut c = Cluster::start(3);
    c.wait_leader(ELECTION_BOUND);
    let id = header(&c.members[2], "member_id");
    c.members[2].kill();
    std::fs::remove_dir_all(&c.members[2].data_dir).unwrap();
    // The same flags on an empty data dir: the peers list it with client URLs already.
    c.spawn(2);
    let log = c.members[2].wait_refused(READY_TIMEOUT);
    assert!(log.contains(&format!("member {id:x} has already been bootstrapped")), "{log}");
    put_after_election(&c.members[0], "still", "two");
    assert_eq!(c.members[1].ctl(&["get", "still", "--print-value-only"]), "two\n");
}

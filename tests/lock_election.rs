//! etcd's Lock and Election services on a real ballast: mutual exclusion among concurrent
//! clients, a lock that goes with its lease, one leader at a time, Observe seeing every
//! change, Resign handing over, and etcd's errors (code Unknown, etcd's messages); a waiter
//! whose call ends early (deadline, cancel) leaves no key behind, as on etcd 3.5.

mod common;
#[path = "common/etcd.rs"]
mod etcd;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ballast::proto::etcdserverpb::lease_client::LeaseClient;
use ballast::proto::etcdserverpb::{LeaseGrantRequest, LeaseRevokeRequest};
use ballast::proto::v3electionpb::election_client::ElectionClient;
use ballast::proto::v3electionpb::*;
use ballast::proto::v3lockpb::lock_client::LockClient;
use ballast::proto::v3lockpb::*;
use tokio_stream::StreamExt;
use tonic::transport::{Channel, Endpoint};

const CALL_TIMEOUT: Duration = Duration::from_secs(20);

async fn channel(s: &common::Server) -> Channel {
    Endpoint::from_shared(format!("http://{}", s.endpoint)).unwrap().connect().await.expect("connect")
}

async fn lease(ch: &Channel, ttl: i64) -> i64 {
    LeaseClient::new(ch.clone()).lease_grant(LeaseGrantRequest { ttl, id: 0 }).await.unwrap().into_inner().id
}

async fn within<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(CALL_TIMEOUT, f).await.expect("answered in time")
}

#[tokio::test]
async fn the_lock_excludes_concurrent_holders_and_goes_with_its_lease() {
    let s = common::Server::start(&[]);
    let ch = channel(&s).await;
    let holders = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..6)
        .map(|_| {
            let (ch, holders, most) = (ch.clone(), holders.clone(), most.clone());
            tokio::spawn(async move {
                let id = lease(&ch, 30).await;
                let mut c = LockClient::new(ch);
                let key = within(c.lock(LockRequest { name: b"mtx".to_vec(), lease: id })).await.unwrap().into_inner().key;
                assert!(key.starts_with(b"mtx/"));
                let now = holders.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(30)).await;
                holders.fetch_sub(1, Ordering::SeqCst);
                within(c.unlock(UnlockRequest { key })).await.unwrap();
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(most.load(Ordering::SeqCst), 1, "two clients held the lock at once");

    // A holder whose lease is revoked loses the lock to the next waiter.
    let (first, second) = (lease(&ch, 30).await, lease(&ch, 30).await);
    let mut c = LockClient::new(ch.clone());
    within(c.lock(LockRequest { name: b"l2".to_vec(), lease: first })).await.unwrap();
    let waiter = tokio::spawn({
        let mut c = c.clone();
        async move { within(c.lock(LockRequest { name: b"l2".to_vec(), lease: second })).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiter.is_finished(), "the second lock waits for the first");
    LeaseClient::new(ch.clone()).lease_revoke(LeaseRevokeRequest { id: first }).await.unwrap();
    let got = waiter.await.unwrap().unwrap().into_inner();
    assert_eq!(got.key, format!("l2/{second:x}").into_bytes());

    // A lock on a lease that does not exist: etcd's message, code Unknown.
    let err = within(c.lock(LockRequest { name: b"l3".to_vec(), lease: 12345 })).await.unwrap_err();
    assert_eq!((err.code(), err.message()), (tonic::Code::Unknown, "etcdserver: requested lease not found"));
}

#[tokio::test]
async fn one_leader_at_a_time_observe_sees_every_change_and_resign_hands_over() {
    let s = common::Server::start(&[]);
    let ch = channel(&s).await;
    let mut e = ElectionClient::new(ch.clone());
    let err = within(e.leader(LeaderRequest { name: b"el".to_vec() })).await.unwrap_err();
    assert_eq!((err.code(), err.message()), (tonic::Code::Unknown, "election: no leader"));

    let mut observed = within(e.observe(LeaderRequest { name: b"el".to_vec() })).await.unwrap().into_inner();
    let (la, lb) = (lease(&ch, 30).await, lease(&ch, 30).await);
    let a = within(e.campaign(CampaignRequest { name: b"el".to_vec(), lease: la, value: b"a1".to_vec() })).await.unwrap().into_inner().leader.unwrap();
    let b_campaign = tokio::spawn({
        let mut e = e.clone();
        async move { within(e.campaign(CampaignRequest { name: b"el".to_vec(), lease: lb, value: b"b1".to_vec() })).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!b_campaign.is_finished(), "one leader at a time");
    within(e.proclaim(ProclaimRequest { leader: Some(a.clone()), value: b"a2".to_vec() })).await.unwrap();
    let leader = within(e.leader(LeaderRequest { name: b"el".to_vec() })).await.unwrap().into_inner().kv.unwrap();
    assert_eq!(leader.value, &b"a2"[..]);
    within(e.resign(ResignRequest { leader: Some(a.clone()) })).await.unwrap();
    let b = b_campaign.await.unwrap().unwrap().into_inner().leader.unwrap();
    assert_eq!(b.key, format!("el/{lb:x}").into_bytes());
    // A resigned leader proclaims nothing.
    let err = within(e.proclaim(ProclaimRequest { leader: Some(a), value: b"late".to_vec() })).await.unwrap_err();
    assert_eq!((err.code(), err.message()), (tonic::Code::Unknown, "election: not leader"));
    let err = within(e.resign(ResignRequest { leader: None })).await.unwrap_err();
    assert_eq!(err.message(), "\"leader\" field must be provided");
    // A campaign on a revoked lease: etcd's answer, and no key is left behind.
    LeaseClient::new(ch.clone()).lease_revoke(LeaseRevokeRequest { id: la }).await.unwrap();
    let err = within(e.campaign(CampaignRequest { name: b"el".to_vec(), lease: la, value: b"x".to_vec() })).await.unwrap_err();
    assert_eq!((err.code(), err.message()), (tonic::Code::Unknown, "etcdserver: requested lease not found"));
    let leader = within(e.leader(LeaderRequest { name: b"el".to_vec() })).await.unwrap().into_inner().kv.unwrap();
    assert_eq!(leader.key, b.key, "the leader is unchanged");

    let mut values = Vec::new();
    while values.len() < 3 {
        let r = within(observed.next()).await.unwrap().unwrap();
        values.push(r.kv.unwrap().value);
    }
    assert_eq!(values, [b"a1".to_vec(), b"a2".to_vec(), b"b1".to_vec()], "Observe sees the leader, its proclamation, then the next leader");
}

#[test]
fn etcdctl_lock_and_elect_behave_as_with_etcd() {
    let s = common::Server::start(&[]);
    let ctl = common::etcdctl_path();
    let endpoints = format!("--endpoints={}", s.endpoint);
    let run = |secs: &str, args: &[&str]| {
        std::process::Command::new("timeout").args([secs, &ctl, &endpoints]).args(args).stdout(std::process::Stdio::piped()).spawn().unwrap()
    };
    // `lock <name> -- <command>`: the second holder runs only after the first is done.
    let a = run("8", &["lock", "mylock", "--", "sh", "-c", "echo A got; sleep 1; echo A done"]);
    std::thread::sleep(Duration::from_millis(400));
    let b = run("8", &["lock", "mylock", "--", "sh", "-c", "echo B got; echo B done"]);
    let a = String::from_utf8(a.wait_with_output().unwrap().stdout).unwrap();
    let b = String::from_utf8(b.wait_with_output().unwrap().stdout).unwrap();
    assert_eq!(a, "A got\nA done\n");
    assert_eq!(b, "B got\nB done\n");
    // `elect -l` sees the proposal of `elect <name> <proposal>`.
    let listen = run("4", &["elect", "-l", "myelect"]);
    std::thread::sleep(Duration::from_millis(400));
    let campaign = run("3", &["elect", "myelect", "p1"]);
    let campaign = String::from_utf8(campaign.wait_with_output().unwrap().stdout).unwrap();
    let listen = String::from_utf8(listen.wait_with_output().unwrap().stdout).unwrap();
    let lines: Vec<&str> = campaign.lines().collect();
    assert!(lines.len() == 2 && lines[0].starts_with("myelect/") && lines[1] == "p1", "{campaign:?}");
    assert_eq!(listen, campaign, "the listener prints the leader key and its proposal");
}

/// Keys under `prefix`.
async fn keys_under(ch: &Channel, prefix: &str) -> usize {
    use ballast::proto::etcdserverpb::{kv_client::KvClient, RangeRequest};
    let mut end = prefix.as_bytes().to_vec();
    *end.last_mut().unwrap() += 1;
    let req = RangeRequest { key: prefix.into(), range_end: end, count_only: true, ..Default::default() };
    KvClient::new(ch.clone()).range(req).await.unwrap().into_inner().count as usize
}

/// Waits (at most 5 s) until `prefix` holds `n` keys; the count then.
async fn settles_at(ch: &Channel, prefix: &str, n: usize) -> usize {
    for _ in 0..50 {
        if keys_under(ch, prefix).await == n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    keys_under(ch, prefix).await
}

/// A Lock that waits past its deadline (grpc-timeout), and a Campaign its client gives up on
/// (the call dropped), each behind a holder: the waiter's key goes with the call, so once the
/// holder leaves the next waiter gets the lock, or leads, at once. Same steps on etcd 3.5.
async fn abandoned_waiters(ch: &Channel) -> Vec<String> {
    let mut steps = Vec::new();
    let mut lock = LockClient::new(ch.clone());
    let held = within(lock.lock(LockRequest { name: b"l".to_vec(), lease: 0 })).await.unwrap().into_inner().key;
    let mut late = tonic::Request::new(LockRequest { name: b"l".to_vec(), lease: 0 });
    late.set_timeout(Duration::from_secs(1));
    steps.push(format!("late lock refused: {}", within(lock.lock(late)).await.is_err()));
    steps.push(format!("lock waiters' keys after it: {}", settles_at(ch, "l/", 1).await));
    within(lock.unlock(UnlockRequest { key: held })).await.unwrap();
    steps.push(format!("next lock at once: {}", tokio::time::timeout(Duration::from_secs(3), lock.lock(LockRequest { name: b"l".to_vec(), lease: 0 })).await.is_ok_and(|r| r.is_ok())));

    let mut election = ElectionClient::new(ch.clone());
    let campaign = |value: &str| CampaignRequest { name: b"e".to_vec(), lease: 0, value: value.as_bytes().to_vec() };
    let leader = within(election.campaign(campaign("a"))).await.unwrap().into_inner().leader;
    let given_up = tokio::time::timeout(Duration::from_secs(1), election.campaign(campaign("b"))).await;
    steps.push(format!("late campaign given up: {}", given_up.is_err()));
    steps.push(format!("candidates' keys after it: {}", settles_at(ch, "e/", 1).await));
    within(election.resign(ResignRequest { leader })).await.unwrap();
    steps.push(format!("next campaign leads at once: {}", tokio::time::timeout(Duration::from_secs(3), election.campaign(campaign("c"))).await.is_ok_and(|r| r.is_ok())));
    steps
}

#[tokio::test]
async fn a_waiter_whose_call_ends_early_leaves_no_key_as_with_etcd() {
    let etcd = etcd::Etcd::start();
    let ballast = common::Server::start(&[]);
    let etcd_ch = Endpoint::from_shared(format!("http://{}", etcd.endpoint)).unwrap().connect().await.expect("connect");
    let want = abandoned_waiters(&etcd_ch).await;
    let got = abandoned_waiters(&channel(&ballast).await).await;
    assert_eq!(got, want, "ballast, then etcd 3.5");
    assert!(want.iter().all(|s| s.ends_with("true") || s.ends_with(": 1")), "{want:?}");
}

//! Fault tests of a 3-member cluster of real processes under a recorded KV load: the leader
//! killed (SIGKILL) and restarted, a follower partitioned from both others and healed. Every
//! client operation's call, return and answer (or unknown outcome) is recorded from concurrent
//! workers on every member, final linearizable reads of every key on every member are added,
//! and the whole history must be linearizable (`common/linearizability.rs`): with the final
//! reads in it, that is also "no acknowledged write lost" and "every member caught up".
//!
//! The target is `BALLAST_FAULTS_TARGET=ballast|etcd` (ballast by default; etcd 3.5 is the
//! reference the harness is proven on; `BALLAST_FAULTS_BIN` may name another ballast binary than this build's);
//! `BALLAST_FAULTS_SECONDS` sets each phase's length (2 s by default:
//! the whole file runs in well under 2 minutes; `scripts/faults.sh` runs longer). The clusters
//! run one at a time.

mod common;
#[path = "common/etcd.rs"]
mod etcd;
#[path = "common/kv_load.rs"]
mod kv_load;
#[path = "common/linearizability.rs"]
mod linearizability;
#[path = "common/peer_proxy.rs"]
mod peer_proxy;
#[path = "common/procs3.rs"]
mod procs3;
#[path = "common/rng.rs"]
mod rng;

use std::time::{Duration, Instant};

use etcd_client::{GetOptions, PutOptions};
use kv_load::{acked_writes_between, final_reads, Load, Recorder};
use linearizability::{assert_linearizable, Budget, Op, Operation, Ret};
use procs3::{Cluster, Target};

const WORKERS: usize = 9;
const KEYS: usize = 12;
/// A new leader after the old one is killed, and the first write it takes.
const NEW_LEADER_BOUND: Duration = Duration::from_secs(15);
/// A member back (restarted or healed) holding the latest write.
const CATCH_UP_BOUND: Duration = Duration::from_secs(30);
/// After a cut, how long connections already carrying data may still deliver it.
const CUT_GRACE_NS: u64 = 200_000_000;
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);
const CHECK_BUDGET: Budget = Budget { steps: 500_000_000, time: Duration::from_secs(60) };
/// Client ids of the recorded operations that are not the workers'.
const PROBE_CLIENT: usize = 1000;
const FINAL_READS_CLIENT: usize = 2000;

/// One cluster at a time: the machine is small and fault timings are what is tested.
static ONE_CLUSTER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn phase() -> Duration {
    let secs = std::env::var("BALLAST_FAULTS_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(2.0);
    Duration::from_secs_f64(secs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leader_killed_under_write_load() {
    let _one = ONE_CLUSTER.lock().await;
    let mut cluster = Cluster::start(Target::from_env(), 3).await;
    let recorder = Recorder::new();
    let load = Load::start(recorder.clone(), &cluster.endpoints(), WORKERS, KEYS, 0).await;
    tokio::time::sleep(phase()).await;

    let (old, _) = cluster.wait_leader(None, NEW_LEADER_BOUND).await.unwrap_or_else(|e| panic!("{e}"));
    let killed = Instant::now();
    let killed_ns = recorder.now_ns();
    cluster.kill(old);
    let survivors = cluster.followers(old);
    let (new, elected_in) =
        cluster.wait_leader_among(&survivors, Some(old), NEW_LEADER_BOUND).await.unwrap_or_else(|e| panic!("{e}"));
    let written_in = first_write(&cluster, &recorder, &survivors, killed).await;
    eprintln!("leader m{old} killed: m{new} leads after {elected_in:?}, first write after {written_in:?}");

    tokio::time::sleep(phase()).await;
    let restarted_ns = recorder.now_ns();
    cluster.restart(old);
    tokio::time::sleep(phase()).await;
    let counts = load.stop().await;
    let caught_up_in = wait_caught_up(&cluster, old, &recorder).await;
    eprintln!("m{old} restarted, caught up in {caught_up_in:?}; load: {counts:?}");

    let answered = final_reads(&recorder, &cluster.endpoints(), KEYS, FINAL_READS_CLIENT).await;
    assert_eq!(answered, 3 * KEYS, "every member answers a linearizable read of every key at the end");
    let history = recorder.history();
    let acked_while_down = acked_writes_between(&history, killed_ns, restarted_ns);
    assert!(acked_while_down > 0, "no write acknowledged while the old leader was down");
    assert!(counts.ok > 100, "the load barely ran: {counts:?}");
    assert_linearizable(&history, CHECK_BUDGET);
    assert_stale_final_read_caught(&history);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn follower_partitioned_then_healed() {
    let _one = ONE_CLUSTER.lock().await;
    let cluster = Cluster::start(Target::from_env(), 3).await;
    let recorder = Recorder::new();
    let load = Load::start(recorder.clone(), &cluster.endpoints(), WORKERS, KEYS, 0).await;
    tokio::time::sleep(phase()).await;

    let (leader, _) = cluster.wait_leader(None, NEW_LEADER_BOUND).await.unwrap_or_else(|e| panic!("{e}"));
    let cut = cluster.followers(leader)[0];
    cluster.proxies.isolate(cut);
    let cut_ns = recorder.now_ns();
    let majority = cluster.followers(cut);
    let (majority_leader, _) =
        cluster.wait_leader_among(&majority, None, NEW_LEADER_BOUND).await.unwrap_or_else(|e| panic!("{e}"));
    tokio::time::sleep(phase()).await;
    let heal_ns = recorder.now_ns();
    cluster.proxies.heal();
    let caught_up_in = wait_caught_up(&cluster, cut, &recorder).await;
    eprintln!(
        "m{cut} isolated (majority led by m{majority_leader}), healed, caught up in {caught_up_in:?}; \
         connections of unknown source: {}",
        cluster.proxies.unknown_sources()
    );
    tokio::time::sleep(phase()).await;
    let counts = load.stop().await;
    eprintln!("load: {counts:?}");

    let answered = final_reads(&recorder, &cluster.endpoints(), KEYS, FINAL_READS_CLIENT).await;
    assert_eq!(answered, 3 * KEYS, "every member answers a linearizable read of every key at the end");
    let history = recorder.history();
    assert!(acked_writes_between(&history, cut_ns, heal_ns) > 0, "the majority acknowledged no write while cut off");
    let acked_by_isolated: Vec<&Operation> = history
        .iter()
        .filter(|o| o.client < WORKERS && o.client % 3 == cut && o.ret != Ret::Unknown)
        .filter(|o| o.call_ns > cut_ns + CUT_GRACE_NS && o.ret_ns < heal_ns)
        .collect();
    assert!(acked_by_isolated.is_empty(), "the isolated member answered {acked_by_isolated:?}");
    assert_linearizable(&history, CHECK_BUDGET);
    assert_stale_final_read_caught(&history);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn member_added_promoted_and_leader_removed_under_load() {
    let _one = ONE_CLUSTER.lock().await;
    let mut cluster = Cluster::start(Target::from_env(), 3).await;
    let recorder = Recorder::new();
    let load = Load::start(recorder.clone(), &cluster.endpoints(), WORKERS, KEYS, 0).await;
    tokio::time::sleep(phase()).await;

    let added = cluster.add_learner().await;
    let caught_up_in = wait_caught_up(&cluster, added, &recorder).await;
    let promoted_in = promote(&cluster, added).await;
    eprintln!("learner m{added} caught up in {caught_up_in:?}, promoted after {promoted_in:?} more");
    let new_load = Load::start(recorder.clone(), &[cluster.members[added].endpoint()], 3, KEYS, WORKERS).await;
    tokio::time::sleep(phase()).await;

    let (leader, _) = cluster.wait_leader(None, NEW_LEADER_BOUND).await.unwrap_or_else(|e| panic!("{e}"));
    let removed_id = cluster.members[leader].id;
    cluster.remove(leader).await;
    let removed_ns = recorder.now_ns();
    let remaining = cluster.running();
    let (new_leader, elected_in) =
        cluster.wait_leader_among(&remaining, Some(leader), NEW_LEADER_BOUND).await.unwrap_or_else(|e| panic!("{e}"));
    eprintln!("leader m{leader} removed: m{new_leader} leads after {elected_in:?}");
    tokio::time::sleep(phase()).await;
    let counts = load.stop().await;
    let new_counts = new_load.stop().await;
    eprintln!("load: {counts:?}, on the added member: {new_counts:?}");

    let list = cluster.member_list(new_leader).await;
    assert_eq!(list.len(), 3, "three members after one added and one removed: {list:?}");
    assert!(list.contains(&(cluster.members[added].id, false)), "m{added} is a voting member: {list:?}");
    assert!(list.iter().all(|&(id, _)| id != removed_id), "m{leader} is gone: {list:?}");
    let endpoints: Vec<String> = remaining.iter().map(|&i| cluster.members[i].endpoint()).collect();
    let answered = final_reads(&recorder, &endpoints, KEYS, FINAL_READS_CLIENT).await;
    assert_eq!(answered, remaining.len() * KEYS, "every member answers a linearizable read of every key");
    let history = recorder.history();
    assert!(acked_writes_between(&history, removed_ns, u64::MAX) > 0, "no write acknowledged after the removal");
    assert!(new_counts.ok > 0, "the added member answered nothing: {new_counts:?}");
    assert_linearizable(&history, CHECK_BUDGET);
    assert_stale_final_read_caught(&history);
}

/// Promotes learner `i`, retrying (bounded) while it is refused as not in sync: how long it took.
async fn promote(cluster: &Cluster, i: usize) -> Duration {
    let started = Instant::now();
    loop {
        match cluster.promote(i).await {
            Ok(()) => return started.elapsed(),
            Err(e) if started.elapsed() < CATCH_UP_BOUND => {
                eprintln!("promote m{i}: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("m{i} not promoted within {CATCH_UP_BOUND:?}: {e}"),
        }
    }
}

/// The checker is not vacuous on this history: one of the first member's final reads changed to
/// an older acknowledged value of that key (overwritten by the acknowledged write the later
/// final reads see) must make it fail.
fn assert_stale_final_read_caught(history: &[Operation]) {
    let acked_put = |o: &Operation| matches!(o.op, Op::Put { .. }) && matches!(o.ret, Ret::Put { .. });
    let written = |o: &Operation| match &o.op {
        Op::Put { value, .. } | Op::Cas { value, .. } => Some(value.clone()),
        _ => None,
    };
    let mutated = history.iter().enumerate().find_map(|(i, read)| {
        let Ret::Get { value: Some(v) } = &read.ret else { return None };
        if read.client != FINAL_READS_CLIENT {
            return None;
        }
        // The value read was written by an acknowledged put, and another one acknowledged
        // earlier gives the stale value.
        let writes: Vec<&Operation> = history.iter().filter(|o| o.key == read.key && acked_put(o)).collect();
        writes.iter().find(|o| written(o).as_ref() == Some(v))?;
        let stale = writes.iter().filter_map(|o| written(o)).find(|w| w != v)?;
        Some((i, stale))
    });
    let (i, stale) = mutated.expect("a final read of a key with two acknowledged puts");
    let mut corrupted = history.to_vec();
    corrupted[i].ret = Ret::Get { value: Some(stale) };
    let verdict = linearizability::check(&corrupted, CHECK_BUDGET);
    assert!(matches!(verdict, linearizability::Verdict::Violation { .. }), "a stale final read passed: {verdict:?}");
}

/// Puts to the survivors in turn until one is acknowledged (bounded by `NEW_LEADER_BOUND`),
/// recording them: the time from `since` to that acknowledgement.
async fn first_write(cluster: &Cluster, recorder: &Recorder, survivors: &[usize], since: Instant) -> Duration {
    let key = "faults/probe";
    for attempt in 0.. {
        assert!(since.elapsed() < NEW_LEADER_BOUND, "no write acknowledged within {NEW_LEADER_BOUND:?}");
        let member = survivors[attempt % survivors.len()];
        let mut c = cluster.client(member, PROBE_TIMEOUT).await;
        let value = format!("probe-{attempt}");
        let call_ns = recorder.now_ns();
        let r = c.put(key, value.as_str(), Some(PutOptions::new())).await;
        let ret_ns = recorder.now_ns();
        let ret = if r.is_ok() { Ret::Put { prev: None } } else { Ret::Unknown };
        let op = Op::Put { value, prev_kv: false };
        recorder.record(Operation { client: PROBE_CLIENT, key: key.into(), op, call_ns, ret_ns, ret });
        if r.is_ok() {
            return since.elapsed();
        }
    }
    unreachable!()
}

/// Writes a marker through the leader, then waits (bounded) until member `i` serves it from its
/// own state (a serializable read): how long that took.
async fn wait_caught_up(cluster: &Cluster, i: usize, recorder: &Recorder) -> Duration {
    let started = Instant::now();
    let (leader, _) = cluster.wait_leader(None, CATCH_UP_BOUND).await.unwrap_or_else(|e| panic!("{e}"));
    let key = "faults/marker";
    let value = format!("marker-{}", recorder.now_ns());
    let mut c = cluster.client(leader, kv_load::OP_TIMEOUT).await;
    let call_ns = recorder.now_ns();
    c.put(key, value.as_str(), None).await.expect("a put through the leader");
    let op = Op::Put { value: value.clone(), prev_kv: false };
    let ret = Ret::Put { prev: None };
    recorder.record(Operation { client: PROBE_CLIENT, key: key.into(), op, call_ns, ret_ns: recorder.now_ns(), ret });
    let mut member = cluster.client(i, PROBE_TIMEOUT).await;
    while started.elapsed() < CATCH_UP_BOUND {
        if let Ok(r) = member.get(key, Some(GetOptions::new().with_serializable())).await {
            if r.kvs().first().is_some_and(|kv| kv.value() == value.as_bytes()) {
                return started.elapsed();
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("m{i} did not catch up within {CATCH_UP_BOUND:?}");
}

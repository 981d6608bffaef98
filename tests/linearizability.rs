//! The linearizability checker (`tests/common/linearizability.rs`) checked on its own:
//! hand-written histories that are and are not linearizable (stale read, lost write, a read of
//! a value never written, overlapping operations, unknown outcomes, compare-and-swap), the
//! budget's undecided result, and a randomized self-check: histories made from a sequential
//! execution with jittered call and return times must pass, and the same histories with one
//! answer corrupted must fail.

#[path = "common/linearizability.rs"]
mod linearizability;
#[path = "common/rng.rs"]
mod rng;

use std::time::Duration;

use linearizability::{assert_linearizable, check, Budget, Op, Operation, Ret, Verdict};
use rng::Rng;

fn put(client: usize, call: u64, ret: u64, value: &str) -> Operation {
    let op = Op::Put { value: value.into(), prev_kv: false };
    Operation { client, key: "k".into(), op, call_ns: call, ret_ns: ret, ret: Ret::Put { prev: None } }
}

fn put_prev(client: usize, call: u64, ret: u64, value: &str, prev: Option<&str>) -> Operation {
    let op = Op::Put { value: value.into(), prev_kv: true };
    let ret_v = Ret::Put { prev: prev.map(String::from) };
    Operation { client, key: "k".into(), op, call_ns: call, ret_ns: ret, ret: ret_v }
}

fn get(client: usize, call: u64, ret: u64, value: Option<&str>) -> Operation {
    let ret_v = Ret::Get { value: value.map(String::from) };
    Operation { client, key: "k".into(), op: Op::Get, call_ns: call, ret_ns: ret, ret: ret_v }
}

fn delete(client: usize, call: u64, ret: u64, deleted: bool) -> Operation {
    Operation { client, key: "k".into(), op: Op::Delete, call_ns: call, ret_ns: ret, ret: Ret::Delete { deleted } }
}

fn cas(client: usize, call: u64, ret: u64, expect: Option<&str>, value: &str, succeeded: bool) -> Operation {
    let op = Op::Cas { expect: expect.map(String::from), value: value.into() };
    Operation { client, key: "k".into(), op, call_ns: call, ret_ns: ret, ret: Ret::Cas { succeeded } }
}

fn unknown(mut o: Operation) -> Operation {
    o.ret = Ret::Unknown;
    o.ret_ns = 0;
    o
}

fn on_key(mut o: Operation, key: &str) -> Operation {
    o.key = key.into();
    o
}

fn verdict(history: &[Operation]) -> Verdict {
    check(history, Budget::default())
}

fn is_violation(v: &Verdict) -> bool {
    matches!(v, Verdict::Violation { .. })
}

#[test]
fn sequential_history_passes() {
    let h = [
        get(0, 0, 1, None),
        put(0, 2, 3, "a"),
        get(1, 4, 5, Some("a")),
        put_prev(1, 6, 7, "b", Some("a")),
        delete(0, 8, 9, true),
        delete(0, 10, 11, false),
        get(2, 12, 13, None),
    ];
    assert_eq!(verdict(&h), Verdict::Linearizable);
}

#[test]
fn stale_read_fails() {
    let h = [put(0, 0, 1, "a"), put(0, 2, 3, "b"), get(1, 4, 5, Some("a"))];
    assert!(is_violation(&verdict(&h)), "{:?}", verdict(&h));
}

#[test]
fn lost_write_fails() {
    let h = [put(0, 0, 1, "a"), get(1, 2, 3, None)];
    assert!(is_violation(&verdict(&h)));
}

#[test]
fn read_of_a_value_never_written_fails() {
    let h = [put(0, 0, 1, "a"), get(1, 2, 3, Some("z"))];
    assert!(is_violation(&verdict(&h)));
}

#[test]
fn wrong_prev_kv_fails() {
    let h = [put(0, 0, 1, "a"), put_prev(1, 2, 3, "b", None)];
    assert!(is_violation(&verdict(&h)));
}

#[test]
fn overlapping_operations_may_take_either_order() {
    // A read concurrent with a write may see the value before it or after it.
    for seen in [None, Some("a")] {
        assert_eq!(verdict(&[put(0, 0, 10, "a"), get(1, 5, 6, seen)]), Verdict::Linearizable);
    }
    // Two overlapping puts; later reads see the one linearized last, consistently.
    let h = [put(0, 0, 10, "a"), put(1, 1, 9, "b"), get(2, 11, 12, Some("a")), get(2, 13, 14, Some("a"))];
    assert_eq!(verdict(&h), Verdict::Linearizable);
    let h = [put(0, 0, 10, "a"), put(1, 1, 9, "b"), get(2, 11, 12, Some("b"))];
    assert_eq!(verdict(&h), Verdict::Linearizable);
}

#[test]
fn reads_that_disagree_on_the_order_fail() {
    // The first read saw the concurrent write, a later one did not: the write cannot be undone.
    let h = [put(0, 0, 10, "a"), get(1, 2, 3, Some("a")), get(2, 4, 5, None)];
    assert!(is_violation(&verdict(&h)));
    // Two overlapping puts seen in both orders by reads that follow each other.
    let h = [
        put(0, 0, 10, "a"),
        put(1, 1, 9, "b"),
        get(2, 11, 12, Some("a")),
        get(2, 13, 14, Some("b")),
    ];
    assert!(is_violation(&verdict(&h)));
}

#[test]
fn unknown_outcomes_may_take_effect_or_not() {
    let lost = unknown(put(0, 0, 0, "a"));
    assert_eq!(verdict(&[lost.clone(), get(1, 10, 11, None)]), Verdict::Linearizable);
    assert_eq!(verdict(&[lost.clone(), get(1, 10, 11, Some("a"))]), Verdict::Linearizable);
    // ... even long after the call, but once seen it stays.
    let h = [lost.clone(), get(1, 10, 11, None), get(1, 1000, 1001, Some("a"))];
    assert_eq!(verdict(&h), Verdict::Linearizable);
    let h = [lost.clone(), get(1, 10, 11, Some("a")), get(1, 12, 13, None)];
    assert!(is_violation(&verdict(&h)));
    // It cannot take effect before it was called.
    let h = [get(1, 0, 1, Some("a")), unknown(put(0, 2, 0, "a"))];
    assert!(is_violation(&verdict(&h)));
    // A read with no answer says nothing.
    let h = [put(0, 0, 1, "a"), unknown(get(1, 2, 0, None)), get(1, 3, 4, Some("a"))];
    assert_eq!(verdict(&h), Verdict::Linearizable);
}

#[test]
fn compare_and_swap() {
    // Two swaps from "absent" cannot both succeed, concurrent or not.
    let h = [cas(0, 0, 1, None, "a", true), cas(1, 2, 3, None, "b", true)];
    assert!(is_violation(&verdict(&h)));
    let h = [cas(0, 0, 10, None, "a", true), cas(1, 1, 9, None, "b", true)];
    assert!(is_violation(&verdict(&h)));
    let h = [cas(0, 0, 10, None, "a", true), cas(1, 1, 9, None, "b", false), get(2, 11, 12, Some("a"))];
    assert_eq!(verdict(&h), Verdict::Linearizable);
    // A failed swap changes nothing; a successful one needs the expected value.
    let h = [put(0, 0, 1, "a"), cas(1, 2, 3, Some("x"), "b", false), get(1, 4, 5, Some("a"))];
    assert_eq!(verdict(&h), Verdict::Linearizable);
    let h = [put(0, 0, 1, "a"), cas(1, 2, 3, Some("x"), "b", true)];
    assert!(is_violation(&verdict(&h)));
    let h = [put(0, 0, 1, "a"), cas(1, 2, 3, Some("a"), "b", false)];
    assert!(is_violation(&verdict(&h)));
    // A swap of unknown outcome may win the race.
    let h = [put(0, 0, 1, "a"), unknown(cas(1, 2, 0, Some("a"), "b", false)), get(2, 5, 6, Some("b"))];
    assert_eq!(verdict(&h), Verdict::Linearizable);
}

#[test]
fn deletes() {
    let h = [delete(0, 0, 1, true)];
    assert!(is_violation(&verdict(&h)));
    let h = [put(0, 0, 1, "a"), delete(1, 2, 3, true), get(0, 4, 5, Some("a"))];
    assert!(is_violation(&verdict(&h)));
    let h = [put(0, 0, 1, "a"), unknown(delete(1, 2, 0, false)), get(0, 4, 5, None)];
    assert_eq!(verdict(&h), Verdict::Linearizable);
}

#[test]
fn keys_are_checked_apart_and_the_failing_one_is_named() {
    let h = [
        on_key(put(0, 0, 1, "a"), "x"),
        on_key(put(0, 0, 1, "b"), "y"),
        on_key(get(1, 2, 3, Some("a")), "x"),
        on_key(get(1, 2, 3, Some("a")), "y"),
    ];
    match verdict(&h) {
        Verdict::Violation { key, detail } => {
            assert_eq!(key, "y");
            assert!(detail.contains("Get"), "{detail}");
        }
        other => panic!("expected a violation on y, got {other:?}"),
    }
}

/// Many concurrent writes of unknown outcome and reads make the search wide.
fn wide_history(ops: usize) -> Vec<Operation> {
    let mut h: Vec<Operation> = (0..ops).map(|i| unknown(put(i, i as u64, 0, &format!("v{i}")))).collect();
    h.push(get(ops, 1000, 1001, Some("never")));
    h
}

#[test]
fn an_exhausted_budget_is_undecided_not_a_pass() {
    let tiny = Budget { steps: 50, time: Duration::from_secs(10) };
    assert!(matches!(check(&wide_history(20), tiny), Verdict::Undecided { .. }));
    let no_time = Budget { steps: u64::MAX, time: Duration::ZERO };
    assert!(matches!(check(&wide_history(20), no_time), Verdict::Undecided { .. }));
}

#[test]
#[should_panic(expected = "could not decide")]
fn assert_linearizable_fails_when_undecided() {
    assert_linearizable(&wide_history(20), Budget { steps: 50, time: Duration::from_secs(10) });
}

/// A random history of up to `ops` operations by `clients` sequential clients on `keys` keys:
/// each operation takes effect at its own instant (10 ns apart), by a client free then, its
/// call and return jittered up to `jitter_ns` around that instant, its answer computed
/// sequentially; `unknown_permille` of them end unknown (those that are writes take effect or
/// not, at random), and their client goes on at once.
fn random_history(rng: &mut Rng, ops: usize, keys: u64, jitter_ns: u64, unknown_permille: u64) -> Vec<Operation> {
    const CLIENTS: usize = 8;
    let mut values: Vec<Option<String>> = vec![None; keys as usize];
    let mut free_at = [0u64; CLIENTS];
    let mut h = Vec::with_capacity(ops);
    for n in 0..ops {
        let at = 1_000_000 + 10 * n as u64;
        let free: Vec<usize> = (0..CLIENTS).filter(|&c| free_at[c] < at).collect();
        if free.is_empty() {
            continue;
        }
        let client = rng.pick(&free);
        let k = rng.below(keys) as usize;
        let state = values[k].clone();
        let (op, ret, after) = random_op(rng, n, &state);
        let (ret, after) = if rng.below(1000) < unknown_permille {
            // No answer: a write may or may not have happened.
            (Ret::Unknown, if rng.chance(50) { after } else { state })
        } else {
            (ret, after)
        };
        values[k] = after;
        let call_ns = (at - rng.below(jitter_ns)).max(free_at[client] + 1);
        let ret_ns = at + rng.below(jitter_ns);
        free_at[client] = ret_ns;
        h.push(Operation { client, key: format!("k{k}"), op, call_ns, ret_ns, ret });
    }
    h
}

/// A random operation numbered `n` on a key holding `state`: the operation, its answer and the
/// state after it.
fn random_op(rng: &mut Rng, n: usize, state: &Option<String>) -> (Op, Ret, Option<String>) {
    let fresh = format!("v{n}");
    match rng.below(5) {
        0 => (Op::Get, Ret::Get { value: state.clone() }, state.clone()),
        1 => {
            let op = Op::Put { value: fresh.clone(), prev_kv: rng.chance(50) };
            (op, Ret::Put { prev: state.clone() }, Some(fresh))
        }
        2 => (Op::Delete, Ret::Delete { deleted: state.is_some() }, None),
        _ => {
            let expect = if rng.chance(50) { state.clone() } else { Some(format!("v{}", rng.below(n as u64 + 1))) };
            let succeeded = &expect == state;
            let after = if succeeded { Some(fresh.clone()) } else { state.clone() };
            (Op::Cas { expect, value: fresh }, Ret::Cas { succeeded }, after)
        }
    }
}

#[test]
fn random_sequential_histories_pass_and_corrupted_ones_fail() {
    let mut rng = Rng(0x5eed_0001);
    for round in 0..60 {
        let keys = 1 + round % 4;
        let jitter_ns = [5, 40, 200][round as usize % 3];
        let mut h = random_history(&mut rng, 300, keys, jitter_ns, 50);
        assert_eq!(check(&h, Budget::default()), Verdict::Linearizable, "round {round}");
        // Corrupt one known answer so that no linearization can explain it.
        let known: Vec<usize> = (0..h.len())
            .filter(|&i| match (&h[i].op, &h[i].ret) {
                (Op::Get, Ret::Get { .. }) => true,
                (Op::Cas { .. }, Ret::Cas { succeeded }) => *succeeded,
                _ => false,
            })
            .collect();
        let i = known[rng.below(known.len() as u64) as usize];
        match &mut h[i] {
            Operation { ret: Ret::Get { value }, .. } => *value = Some("never-written".into()),
            Operation { op: Op::Cas { expect, .. }, .. } => *expect = Some("never-written".into()),
            _ => unreachable!(),
        }
        assert!(is_violation(&check(&h, Budget::default())), "round {round}: corrupted op {i} {:?} passed", h[i]);
    }
}

#[test]
fn a_large_concurrent_history_is_decided_quickly() {
    let mut rng = Rng(0x5eed_0002);
    let h = random_history(&mut rng, 40_000, 8, 100, 5);
    let started = std::time::Instant::now();
    assert_linearizable(&h, Budget { steps: 50_000_000, time: Duration::from_secs(30) });
    eprintln!("{} operations by 8 clients on 8 keys: {:?}", h.len(), started.elapsed());
}


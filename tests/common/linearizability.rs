//! A linearizability checker for histories of single-key KV operations (put, linearizable get,
//! delete, compare-and-swap on the value), after Wing & Gong with Lowe's memoization, as
//! Porcupine does it: the history is a list of call and return events in time order; the search
//! linearizes a pending call (applies it to the model, removes its call and return from the list)
//! whenever the model accepts its result, and backtracks when it reaches a return whose call it
//! could not linearize. A cache of (set of linearized operations, model state) cuts every branch
//! already explored. Keys are independent in this model, so the history is checked key by key
//! (P-compositionality: a history is linearizable iff each key's sub-history is).
//!
//! An operation whose outcome is unknown (a timeout, a connection lost) may take effect at any
//! time after its call or never: its return is at infinity and the model accepts any result for
//! it (linearized after every other return, it has no visible effect). A read with an unknown
//! outcome says nothing and is dropped.
//!
//! The search is bounded by a step budget and a deadline: when either runs out the result is
//! `Undecided`, which `assert_linearizable` treats as a failure, never as a pass.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

/// What a client asked, on one key.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// Put `value`; `prev_kv` when the client asked for the previous value.
    Put { value: String, prev_kv: bool },
    /// A linearizable read.
    Get,
    /// DeleteRange of the one key.
    Delete,
    /// Txn: if the value is `expect` (None: the key is absent) then put `value`.
    Cas { expect: Option<String>, value: String },
}

/// What the server answered.
#[derive(Clone, Debug, PartialEq)]
pub enum Ret {
    /// The previous value (checked only when the put asked for it).
    Put { prev: Option<String> },
    Get { value: Option<String> },
    Delete { deleted: bool },
    Cas { succeeded: bool },
    /// No answer (timeout, connection error): it may have taken effect or not.
    Unknown,
}

/// One operation of the history: times in nanoseconds from any common origin.
#[derive(Clone, Debug)]
pub struct Operation {
    pub client: usize,
    pub key: String,
    pub op: Op,
    pub call_ns: u64,
    /// Ignored when `ret` is `Unknown` (then the return is at infinity).
    pub ret_ns: u64,
    pub ret: Ret,
}

/// The search's bounds.
#[derive(Clone, Copy, Debug)]
pub struct Budget {
    /// Steps (linearization attempts and backtracks) over the whole history.
    pub steps: u64,
    pub time: Duration,
}

impl Default for Budget {
    fn default() -> Budget {
        Budget { steps: 200_000_000, time: Duration::from_secs(60) }
    }
}

#[derive(Debug, PartialEq)]
pub enum Verdict {
    Linearizable,
    /// No linearization of this key's operations exists; `detail` names the return the search
    /// could never get past and the operations around it.
    Violation { key: String, detail: String },
    /// The budget ran out on this key: not decided, which is not a pass.
    Undecided { key: String, steps: u64 },
}

/// The model's state of one key: its value, None when absent.
type State = Option<String>;

/// The state after `op` answered `ret` from `state`, or None if the model could not answer so.
fn step(state: &State, op: &Op, ret: &Ret) -> Option<State> {
    match (op, ret) {
        (Op::Put { value, .. }, Ret::Unknown) => Some(Some(value.clone())),
        (Op::Put { value, prev_kv }, Ret::Put { prev }) => {
            (!prev_kv || prev == state).then(|| Some(value.clone()))
        }
        (Op::Get, Ret::Get { value }) => (value == state).then(|| state.clone()),
        (Op::Delete, Ret::Unknown) => Some(None),
        (Op::Delete, Ret::Delete { deleted }) => (*deleted == state.is_some()).then_some(None),
        (Op::Cas { expect, value }, ret) => {
            let matches = expect == state;
            match ret {
                Ret::Unknown => Some(if matches { Some(value.clone()) } else { state.clone() }),
                Ret::Cas { succeeded } if *succeeded == matches => {
                    Some(if matches { Some(value.clone()) } else { state.clone() })
                }
                _ => None,
            }
        }
        _ => None,
    }
}

/// Checks every key's sub-history (in key order) with one shared budget.
pub fn check(history: &[Operation], budget: Budget) -> Verdict {
    let mut by_key: BTreeMap<&str, Vec<&Operation>> = BTreeMap::new();
    for op in history {
        if op.op == Op::Get && op.ret == Ret::Unknown {
            continue;
        }
        by_key.entry(&op.key).or_default().push(op);
    }
    let deadline = Instant::now() + budget.time;
    let mut steps_left = budget.steps;
    for (key, ops) in by_key {
        let verdict = check_key(key, &ops, &mut steps_left, deadline);
        if verdict != Verdict::Linearizable {
            return verdict;
        }
    }
    Verdict::Linearizable
}

/// Panics unless the history is linearizable (a violation or an undecided check both fail).
pub fn assert_linearizable(history: &[Operation], budget: Budget) {
    let started = Instant::now();
    match check(history, budget) {
        Verdict::Linearizable => {
            eprintln!("linearizable: {} operations checked in {:?}", history.len(), started.elapsed())
        }
        Verdict::Violation { key, detail } => panic!("history not linearizable on key {key:?}: {detail}"),
        Verdict::Undecided { key, steps } => {
            panic!("linearizability check could not decide key {key:?} within its budget ({steps} steps left)")
        }
    }
}

/// The doubly linked list of one key's events in time order, in arrays (node 0 the head, the
/// last node the tail): a known operation has a call node and a return node, an operation of
/// unknown outcome only a call node (its return is at infinity: it never blocks the search).
/// Removing nodes and putting them back in reverse order is Knuth's dancing links.
struct Events {
    next: Vec<usize>,
    prev: Vec<usize>,
    what: Vec<Node>,
    tail: usize,
}

#[derive(Clone, Copy, PartialEq)]
enum Node {
    Sentinel,
    /// The call of operation `op`; `ret` its return node when its outcome is known.
    Call { op: usize, ret: Option<usize> },
    Return { op: usize },
}

impl Events {
    fn new(ops: &[&Operation]) -> Events {
        // (time, return after call at equal times: equal times count as concurrent, node).
        let mut order: Vec<(u64, bool, usize)> = Vec::with_capacity(2 * ops.len());
        let mut what = vec![Node::Sentinel];
        for (i, op) in ops.iter().enumerate() {
            let call = what.len();
            if op.ret == Ret::Unknown {
                what.push(Node::Call { op: i, ret: None });
            } else {
                what.push(Node::Call { op: i, ret: Some(call + 1) });
                what.push(Node::Return { op: i });
                order.push((op.ret_ns.max(op.call_ns), true, call + 1));
            }
            order.push((op.call_ns, false, call));
        }
        order.sort();
        let tail = what.len();
        what.push(Node::Sentinel);
        let mut next = vec![tail; tail + 1];
        let mut prev = vec![0; tail + 1];
        let mut last = 0;
        for &(_, _, node) in &order {
            next[last] = node;
            prev[node] = last;
            last = node;
        }
        next[last] = tail;
        prev[tail] = last;
        Events { next, prev, what, tail }
    }

    fn unlink(&mut self, node: usize) {
        let (p, n) = (self.prev[node], self.next[node]);
        self.next[p] = n;
        self.prev[n] = p;
    }

    fn relink(&mut self, node: usize) {
        let (p, n) = (self.prev[node], self.next[node]);
        self.next[p] = node;
        self.prev[n] = node;
    }
}

/// A set of operations as a bitset.
#[derive(Clone, PartialEq, Eq, Hash)]
struct Bits(Vec<u64>);

impl Bits {
    fn new(n: usize) -> Bits {
        Bits(vec![0; n.div_ceil(64)])
    }
    /// Flips membership of `i`; true if it is now in the set.
    fn flip(&mut self, i: usize) -> bool {
        self.0[i / 64] ^= 1 << (i % 64);
        self.0[i / 64] >> (i % 64) & 1 == 1
    }
    fn is_subset_of(&self, other: &Bits) -> bool {
        self.0.iter().zip(&other.0).all(|(a, b)| a & !b == 0)
    }
}

/// The configurations already explored: for each (known operations linearized, state), the
/// sets of unknown-outcome operations linearized with them. A configuration is dominated by an
/// explored one with the same known set and state and a subset of its unknown ones (what is
/// left of the unknown ones can always go last, where any outcome is accepted), so it is cut.
#[derive(Default)]
struct Explored(HashMap<(Bits, State), Vec<Bits>>);

impl Explored {
    /// Records the configuration; false when it is dominated by one explored before.
    fn insert(&mut self, known: &Bits, state: &State, unknown: &Bits) -> bool {
        let sets = self.0.entry((known.clone(), state.clone())).or_default();
        if sets.iter().any(|s| s.is_subset_of(unknown)) {
            return false;
        }
        sets.push(unknown.clone());
        true
    }
}

/// Which candidates the scan tries: known outcomes first, then unknown ones, so that a
/// configuration with fewer unknown operations linearized is explored (and dominates) first.
#[derive(Clone, Copy, PartialEq)]
enum Phase {
    Known,
    Unknown,
}

/// The search of one key: a linearized call on the stack, with the state before it and the
/// phase it was tried in.
struct Search<'a> {
    ops: &'a [&'a Operation],
    events: Events,
    known: Bits,
    unknown: Bits,
    /// Each operation's index within the known or the unknown ones.
    slot: Vec<usize>,
    explored: Explored,
    stack: Vec<(usize, State, Phase)>,
    state: State,
    known_left: usize,
}

impl<'a> Search<'a> {
    fn new(ops: &'a [&'a Operation]) -> Search<'a> {
        let (mut nk, mut nu) = (0, 0);
        let slot = ops
            .iter()
            .map(|o| {
                let n = if o.ret == Ret::Unknown { &mut nu } else { &mut nk };
                *n += 1;
                *n - 1
            })
            .collect();
        Search {
            ops,
            events: Events::new(ops),
            known: Bits::new(nk),
            unknown: Bits::new(nu),
            slot,
            explored: Explored::default(),
            stack: Vec::new(),
            state: None,
            known_left: nk,
        }
    }

    fn flip(&mut self, op: usize) {
        if self.ops[op].ret == Ret::Unknown {
            self.unknown.flip(self.slot[op]);
        } else {
            if self.known.flip(self.slot[op]) {
                self.known_left -= 1;
            } else {
                self.known_left += 1;
            }
        }
    }

    /// Linearizes the call at `node` if the model accepts its answer and the configuration is
    /// new; true if it did.
    fn try_linearize(&mut self, node: usize, op: usize, ret: Option<usize>, phase: Phase) -> bool {
        let Some(after) = step(&self.state, &self.ops[op].op, &self.ops[op].ret) else { return false };
        self.flip(op);
        if !self.explored.insert(&self.known, &after, &self.unknown) {
            self.flip(op);
            return false;
        }
        self.stack.push((node, std::mem::replace(&mut self.state, after), phase));
        self.events.unlink(node);
        if let Some(r) = ret {
            self.events.unlink(r);
        }
        true
    }

    /// Undoes the last linearization: where to scan on from, in which phase; None if none is left.
    fn backtrack(&mut self) -> Option<(usize, Phase)> {
        let (node, before, phase) = self.stack.pop()?;
        let Node::Call { op, ret } = self.events.what[node] else { unreachable!("only calls are linearized") };
        self.flip(op);
        self.state = before;
        if let Some(r) = ret {
            self.events.relink(r);
        }
        self.events.relink(node);
        Some((self.events.next[node], phase))
    }
}

fn check_key(key: &str, ops: &[&Operation], steps_left: &mut u64, deadline: Instant) -> Verdict {
    let mut s = Search::new(ops);
    let mut node = s.events.next[0];
    let mut phase = Phase::Known;
    // The deepest point reached: (linearized count, the return that stopped the search there).
    let mut deepest = (0usize, usize::MAX);
    // Once every known operation is linearized, the unknown ones left go last, any outcome.
    while s.known_left > 0 {
        if *steps_left == 0 || (steps_left.is_multiple_of(4096) && Instant::now() > deadline) {
            return Verdict::Undecided { key: key.to_string(), steps: *steps_left };
        }
        *steps_left -= 1;
        match s.events.what[node] {
            Node::Call { op, ret } => {
                let wanted = (ret.is_some()) == (phase == Phase::Known);
                if wanted && s.try_linearize(node, op, ret, phase) {
                    node = s.events.next[0];
                    phase = Phase::Known;
                } else {
                    node = s.events.next[node];
                }
            }
            Node::Return { .. } if phase == Phase::Known => {
                node = s.events.next[0];
                phase = Phase::Unknown;
            }
            Node::Return { op } => {
                if s.stack.len() >= deepest.0 {
                    deepest = (s.stack.len(), op);
                }
                match s.backtrack() {
                    Some((from, p)) => (node, phase) = (from, p),
                    None => return violation(key, ops, deepest.1),
                }
            }
            Node::Sentinel => unreachable!("a known operation is left, so a return precedes the tail"),
        }
    }
    Verdict::Linearizable
}

/// Operations shown around the one the search could not get past.
const DETAIL_OPS: usize = 12;

fn violation(key: &str, ops: &[&Operation], stuck: usize) -> Verdict {
    let at = &ops[stuck];
    let end_ns = |o: &Operation| if o.ret == Ret::Unknown { u64::MAX } else { o.ret_ns };
    let mut around: Vec<&&Operation> =
        ops.iter().filter(|o| o.call_ns <= end_ns(at) && end_ns(o) >= at.call_ns).collect();
    around.sort_by_key(|o| o.call_ns);
    let mut detail = format!(
        "{} operations; no linearization gets past the return of {} (and {} operations overlap it)",
        ops.len(),
        describe(at),
        around.len()
    );
    for o in around.iter().take(DETAIL_OPS) {
        detail.push_str(&format!("\n  {}", describe(o)));
    }
    Verdict::Violation { key: key.to_string(), detail }
}

fn describe(o: &Operation) -> String {
    let ret_ns = if o.ret == Ret::Unknown { "inf".to_string() } else { o.ret_ns.to_string() };
    format!("client {} [{} .. {}] {:?} -> {:?}", o.client, o.call_ns, ret_ns, o.op, o.ret)
}

//! A recorded KV load for fault tests: concurrent workers, each with its own etcd-client bound to
//! one member, issue puts (some with prev_kv), linearizable gets, deletes and compare-and-swap
//! txns on a few keys, and record every operation's call time, return time and answer — or
//! that the answer is unknown (a timeout or a broken connection: it may have taken effect). A
//! request refused at TCP connect never left the client and is not recorded. The history goes to
//! `linearizability::check`. Values are unique per write, so a read of a value never written is
//! caught.
#![allow(dead_code)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use etcd_client::{Client, Compare, CompareOp, ConnectOptions, PutOptions, Txn, TxnOp};

use crate::linearizability::{Op, Operation, Ret};
use crate::rng::Rng;

/// Each request's bound: past it the answer is unknown.
pub const OP_TIMEOUT: Duration = Duration::from_secs(2);
/// A worker's pause after a failed request, so that a member down yields few unknown outcomes.
const ERROR_PAUSE: Duration = Duration::from_millis(200);

/// The history being recorded, with its time origin.
pub struct Recorder {
    origin: Instant,
    ops: Mutex<Vec<Operation>>,
}

impl Recorder {
    pub fn new() -> Arc<Recorder> {
        Arc::new(Recorder { origin: Instant::now(), ops: Mutex::new(Vec::new()) })
    }

    /// Nanoseconds since the origin.
    pub fn now_ns(&self) -> u64 {
        self.origin.elapsed().as_nanos() as u64
    }

    pub fn record(&self, op: Operation) {
        self.ops.lock().unwrap().push(op);
    }

    pub fn history(&self) -> Vec<Operation> {
        self.ops.lock().unwrap().clone()
    }
}

pub fn key_name(k: usize) -> String {
    format!("faults/k{k:02}")
}

/// Counts of one worker's requests.
#[derive(Default, Debug, Clone, Copy)]
pub struct Counts {
    pub ok: u64,
    pub unknown: u64,
    /// Refused at connect: never sent.
    pub refused: u64,
}

pub struct Load {
    stop: Arc<AtomicBool>,
    workers: Vec<tokio::task::JoinHandle<Counts>>,
    pub recorder: Arc<Recorder>,
}

impl Load {
    /// Starts `workers` workers on `keys` keys, numbered from `first_id` (ids must not repeat
    /// within one history: they make the written values unique), worker `first_id + w` bound
    /// to `endpoints[w % len]`.
    pub async fn start(recorder: Arc<Recorder>, endpoints: &[String], workers: usize, keys: usize, first_id: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let mut handles = Vec::new();
        for w in 0..workers {
            let client = connect(&endpoints[w % endpoints.len()]).await;
            let id = first_id + w;
            let worker = Worker { id, client, keys, rng: Rng(0xfa17_0000 + id as u64), seq: 0, seen: vec![None; keys] };
            handles.push(tokio::spawn(worker.run(recorder.clone(), stop.clone())));
        }
        Load { stop, workers: handles, recorder }
    }

    /// Stops the workers (each finishes its request in flight, bounded by `OP_TIMEOUT`): their
    /// counts added up.
    pub async fn stop(self) -> Counts {
        self.stop.store(true, Ordering::Relaxed);
        let mut total = Counts::default();
        for h in self.workers {
            let c = h.await.expect("a worker panicked");
            total.ok += c.ok;
            total.unknown += c.unknown;
            total.refused += c.refused;
        }
        total
    }
}

pub async fn connect(endpoint: &str) -> Client {
    let opts = ConnectOptions::new().with_timeout(OP_TIMEOUT).with_connect_timeout(OP_TIMEOUT);
    Client::connect([endpoint], Some(opts)).await.expect("a client (connects lazily)")
}

struct Worker {
    id: usize,
    client: Client,
    keys: usize,
    rng: Rng,
    seq: u64,
    /// The last value this worker saw or wrote per key: what its swaps expect.
    seen: Vec<Option<String>>,
}

/// How a request ended.
enum Outcome {
    Answered(Ret),
    Unknown,
    NotSent,
}

impl Worker {
    async fn run(mut self, recorder: Arc<Recorder>, stop: Arc<AtomicBool>) -> Counts {
        let mut counts = Counts::default();
        while !stop.load(Ordering::Relaxed) {
            let k = self.rng.below(self.keys as u64) as usize;
            let op = self.next_op(k);
            let call_ns = recorder.now_ns();
            let outcome = self.issue(&key_name(k), &op).await;
            let ret_ns = recorder.now_ns();
            let ret = match outcome {
                Outcome::Answered(ret) => {
                    counts.ok += 1;
                    self.note(k, &op, &ret);
                    ret
                }
                Outcome::Unknown => {
                    counts.unknown += 1;
                    Ret::Unknown
                }
                Outcome::NotSent => {
                    counts.refused += 1;
                    tokio::time::sleep(ERROR_PAUSE).await;
                    continue;
                }
            };
            let failed = ret == Ret::Unknown;
            recorder.record(Operation { client: self.id, key: key_name(k), op, call_ns, ret_ns, ret });
            if failed {
                tokio::time::sleep(ERROR_PAUSE).await;
            }
        }
        counts
    }

    fn next_op(&mut self, k: usize) -> Op {
        self.seq += 1;
        let value = format!("w{}-{}", self.id, self.seq);
        match self.rng.below(20) {
            0..=7 => Op::Put { value, prev_kv: self.rng.chance(50) },
            8..=14 => Op::Get,
            15..=16 => Op::Delete,
            _ => Op::Cas { expect: self.seen[k].clone(), value },
        }
    }

    /// Remembers what the answer says the key holds.
    fn note(&mut self, k: usize, op: &Op, ret: &Ret) {
        match (op, ret) {
            (Op::Put { value, .. }, _) => self.seen[k] = Some(value.clone()),
            (Op::Get, Ret::Get { value }) => self.seen[k] = value.clone(),
            (Op::Delete, _) => self.seen[k] = None,
            (Op::Cas { value, .. }, Ret::Cas { succeeded: true }) => self.seen[k] = Some(value.clone()),
            _ => {}
        }
    }

    async fn issue(&mut self, key: &str, op: &Op) -> Outcome {
        let c = &mut self.client;
        let result = match op {
            Op::Put { value, prev_kv } => {
                let opts = prev_kv.then(|| PutOptions::new().with_prev_key());
                c.put(key, value.as_str(), opts).await.map(|r| Ret::Put { prev: r.prev_key().map(value_of) })
            }
            Op::Get => c.get(key, None).await.map(|r| Ret::Get { value: r.kvs().first().map(value_of) }),
            Op::Delete => c.delete(key, None).await.map(|r| Ret::Delete { deleted: r.deleted() > 0 }),
            Op::Cas { expect, value } => {
                let cmp = match expect {
                    Some(v) => Compare::value(key, CompareOp::Equal, v.as_str()),
                    None => Compare::version(key, CompareOp::Equal, 0),
                };
                let txn = Txn::new().when([cmp]).and_then([TxnOp::put(key, value.as_str(), None)]);
                c.txn(txn).await.map(|r| Ret::Cas { succeeded: r.succeeded() })
            }
        };
        match result {
            Ok(ret) => Outcome::Answered(ret),
            Err(e) if never_sent(&e) => Outcome::NotSent,
            Err(_) => Outcome::Unknown,
        }
    }
}

fn value_of(kv: &etcd_client::KeyValue) -> String {
    String::from_utf8_lossy(kv.value()).into_owned()
}

/// An error that proves the request never reached a server: the TCP connect was refused.
fn never_sent(e: &etcd_client::Error) -> bool {
    let text = format!("{e:?}");
    text.contains("Connection refused") || text.contains("ConnectionRefused")
}

/// Reads every key with a linearizable get on every member in `endpoints`, recording each read
/// (client ids from `first_client` on): how many reads were answered.
pub async fn final_reads(recorder: &Recorder, endpoints: &[String], keys: usize, first_client: usize) -> usize {
    let mut answered = 0;
    for (m, endpoint) in endpoints.iter().enumerate() {
        let mut c = connect(endpoint).await;
        for k in 0..keys {
            let call_ns = recorder.now_ns();
            let r = c.get(key_name(k), None).await;
            let ret_ns = recorder.now_ns();
            if let Ok(r) = r {
                answered += 1;
                let ret = Ret::Get { value: r.kvs().first().map(value_of) };
                recorder.record(Operation { client: first_client + m, key: key_name(k), op: Op::Get, call_ns, ret_ns, ret });
            }
        }
    }
    answered
}

/// Acknowledged writes (puts, deletes, successful swaps) called within [from_ns, to_ns).
pub fn acked_writes_between(history: &[Operation], from_ns: u64, to_ns: u64) -> usize {
    history
        .iter()
        .filter(|o| o.call_ns >= from_ns && o.call_ns < to_ns)
        .filter(|o| matches!(o.ret, Ret::Put { .. } | Ret::Delete { .. } | Ret::Cas { succeeded: true }))
        .count()
}

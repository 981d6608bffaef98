//! The steady traffic, open loop: every operation type is a stream of requests due at times
//! fixed in advance; each is sent when due whatever the earlier ones take, and its latency
//! counts from when it was due, so a stall of the server (or a wait for the object's previous
//! write) counts in full (only the timer's own slack, ≤ `TIMER_SLACK`, does not count). Requests that clients cause (pods, events, lists) arrive as Poisson
//! processes at their rates (exponential gaps from a seeded generator: the same schedule for
//! every target); the periodic ones (heartbeats, node status, the compactor) are evenly spaced,
//! each type at a phase of its own so that types do not fire together. The traffic runs on a thread and current-thread
//! runtime of its own, over three connections as an apiserver's clients: pods; events and lists;
//! nodes, node leases and the compactor.
//!
//! * pods: creates, GuaranteedUpdates and deletes in the ratio 1 : 5 : 1 (a pod's life:
//!   created, bound, its status updated a few times, marked for deletion, deleted), at
//!   `pod_rate` in all; updates and deletes pick a random live pod;
//! * events: creates at `event_rate`, each with the lease manager's lease (TTL 1 h);
//! * node heartbeats: every node's Lease object renewed every `HEARTBEAT_SECS` (the nodes in
//!   turn, evenly spread), and its Node object's status every `NODE_STATUS_SECS`;
//! * lists: a paginated LIST of one namespace's pods at `list_rate`;
//! * the compactor: a step every `compact_secs` from the start (the first only records the
//!   revision, as the apiserver's first step after its start), each later one compacting at the
//!   revision the previous step saw.
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ballast_bench::proto::etcdserverpb::kv_client::KvClient;
use ballast_bench::proto::etcdserverpb::lease_client::LeaseClient;
use tonic::transport::Channel;

use super::ledger::{Ledger, OpKind, Write, SLOW_US};
use super::objects::{mix, namespace_prefix, Held, Resource, NAMESPACES};
use super::store::{self, Outcome};
use super::World;
use crate::watch::connect;

/// kubelet's node lease renew interval (a quarter of the 40 s lease duration).
pub const HEARTBEAT_SECS: f64 = 10.0;
/// How often each node's status is written.
pub const NODE_STATUS_SECS: f64 = 60.0;
/// The harness's timer wakes up to ~1 ms after a due time (tokio's timer has 1 ms ticks): a
/// request sent at most this late counts from its send; later, from its due time.
const TIMER_SLACK: Duration = Duration::from_millis(2);
/// A request not answered within this fails.
const OP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the end of the traffic waits for the answers of the requests in flight.
const ACK_SECS: u64 = 30;

#[derive(Clone)]
pub struct Rates {
    pub secs: f64,
    pub nodes: u64,
    pub pod_rate: f64,
    pub event_rate: f64,
    pub list_rate: f64,
    pub compact_secs: f64,
    pub list_limit: i64,
}

/// One operation type's schedule: ops due from `phase` s after the start, `every` s apart on
/// average (exactly, unless `poisson`), while < `until`.
struct Class {
    kind: OpKind,
    every: f64,
    phase: f64,
    poisson: bool,
    until: f64,
}

impl Class {
    /// Seconds from the start to op k + 1, given op k's.
    fn next(&self, off: f64, k: u64) -> f64 {
        if !self.poisson {
            return off + self.every;
        }
        // Uniform in (0, 1] from 53 bits of the hash, then an exponential gap.
        let u =
            ((mix(k ^ (self.kind.index() as u64) << 58) >> 11) + 1) as f64 / (1u64 << 53) as f64;
        off - u.ln() * self.every
    }
}

fn classes(o: &Rates) -> Vec<Class> {
    let pods = o.pod_rate / 7.0;
    let mut v: Vec<Class> = [
        (OpKind::Create, pods),
        (OpKind::Update, 5.0 * pods),
        (OpKind::Delete, pods),
        (OpKind::EventCreate, o.event_rate),
        (OpKind::Heartbeat, o.nodes as f64 / HEARTBEAT_SECS),
        (OpKind::NodeStatus, o.nodes as f64 / NODE_STATUS_SECS),
        (OpKind::List, o.list_rate),
    ]
    .into_iter()
    .filter(|(_, rate)| *rate > 0.0)
    .map(|(kind, rate)| {
        let periodic = matches!(kind, OpKind::Heartbeat | OpKind::NodeStatus);
        Class {
            kind,
            every: 1.0 / rate,
            // The periodic types start a golden-ratio fraction of their gap apart.
            phase: if periodic {
                (kind.index() as f64 * 0.618_034).fract() / rate
            } else {
                0.0
            },
            poisson: !periodic,
            until: o.secs,
        }
    })
    .collect();
    if o.compact_secs > 0.0 {
        // Steps at 0, c, 2c, ... up to and including the end.
        v.push(Class {
            kind: OpKind::Compaction,
            every: o.compact_secs,
            phase: 0.0,
            poisson: false,
            until: o.secs + 1e-6,
        });
    }
    v
}

/// What the traffic did, and how late its own scheduling ran.
pub struct Done {
    pub ledger: Ledger,
    /// Largest delay of a request's send behind its due time (the harness's own lag).
    pub max_lag_ms: f64,
    /// Requests sent per operation type.
    pub sent: Vec<u64>,
}

struct Cx {
    world: Arc<World>,
    pods: KvClient<Channel>,
    misc: KvClient<Channel>,
    lease: LeaseClient<Channel>,
    lists: Channel,
    nodes: KvClient<Channel>,
    list_limit: i64,
    ledger: Mutex<Ledger>,
    base: Instant,
    /// The start of the traffic.
    t0: Instant,
    sent: Vec<AtomicU64>,
    inflight: Vec<AtomicU64>,
}

impl Cx {
    fn now_ns(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64
    }

    fn wrote(&self, w: Write) {
        self.ledger.lock().expect("ledger").writes.push(w);
    }
}

/// What one request came to.
enum Did {
    Applied,
    Conflict,
    /// Nothing to measure (the compactor's first step).
    Nothing,
}

/// GuaranteedUpdate of the held object of `res`, from the mod_revision the apiserver knows.
async fn update(
    cx: &Cx,
    kv: &KvClient<Channel>,
    res: Resource,
    mut o: Held,
) -> Result<Did, String> {
    let key = res.key(o.i);
    let value = res.value(o.i, o.gen);
    let sent_ns = cx.now_ns();
    match store::update(&mut kv.clone(), &key, value, o.mod_rev).await? {
        Outcome::Done(rev) => {
            cx.wrote(Write {
                res,
                rev,
                key,
                delete: false,
                prev_rev: o.mod_rev,
                sent_ns,
            });
            o.mod_rev = rev;
            o.gen += 1;
            Ok(Did::Applied)
        }
        Outcome::Conflict(now) => {
            o.mod_rev = now;
            Ok(Did::Conflict)
        }
    }
}

/// A create of object `i` of `res` with `lease`; adds it to `pool` once applied.
async fn create(
    cx: &Cx,
    kv: &KvClient<Channel>,
    res: Resource,
    i: u64,
    lease: i64,
) -> Result<(Did, i64), String> {
    let key = res.key(i);
    let sent_ns = cx.now_ns();
    match store::create(&mut kv.clone(), &key, res.value(i, 0), lease).await? {
        Outcome::Done(rev) => {
            cx.wrote(Write {
                res,
                rev,
                key,
                delete: false,
                prev_rev: 0,
                sent_ns,
            });
            Ok((Did::Applied, rev))
        }
        Outcome::Conflict(_) => Ok((Did::Conflict, 0)),
    }
}

async fn exec(cx: &Cx, kind: OpKind, k: u64) -> Result<Did, String> {
    let w = &cx.world;
    let seed = mix(k ^ (kind.index() as u64) << 56);
    match kind {
        OpKind::Create => {
            let i = w.pods.next_index();
            let (did, rev) = create(cx, &cx.pods, Resource::Pods, i, 0).await?;
            if rev > 0 {
                w.pods.add(i, rev);
            }
            Ok(did)
        }
        OpKind::Update => {
            let o = w.pods.pick(seed).await.ok_or("no pod left to update")?;
            update(cx, &cx.pods, Resource::Pods, o).await
        }
        OpKind::Delete => {
            let mut o = w.pods.take(seed).await.ok_or("no pod left to delete")?;
            let key = Resource::Pods.key(o.i);
            let sent_ns = cx.now_ns();
            match store::delete(&mut cx.pods.clone(), &key, o.mod_rev).await? {
                Outcome::Done(rev) => {
                    cx.wrote(Write {
                        res: Resource::Pods,
                        rev,
                        key,
                        delete: true,
                        prev_rev: o.mod_rev,
                        sent_ns,
                    });
                    o.alive = false;
                    Ok(Did::Applied)
                }
                Outcome::Conflict(now) => {
                    if now > 0 {
                        w.pods.add(o.i, now);
                    }
                    o.alive = false;
                    Ok(Did::Conflict)
                }
            }
        }
        OpKind::EventCreate => {
            let lease = w.leases.get(&mut cx.lease.clone()).await?;
            let i = w.events.next_index();
            Ok(create(cx, &cx.misc, Resource::Events, i, lease).await?.0)
        }
        OpKind::Heartbeat | OpKind::NodeStatus => {
            let (pool, res) = if kind == OpKind::Heartbeat {
                (&w.node_leases, Resource::NodeLeases)
            } else {
                (&w.nodes, Resource::Nodes)
            };
            let o = pool.nth(k).ok_or("no nodes")?.lock_owned().await;
            update(cx, &cx.nodes, res, o).await
        }
        OpKind::List => {
            let prefix = namespace_prefix(Resource::Pods, k % NAMESPACES);
            store::list(&cx.lists, prefix.as_bytes(), cx.list_limit).await?;
            Ok(Did::Applied)
        }
        OpKind::Compaction => {
            let mut c = w.compactor.lock().await;
            Ok(match c.step(&mut cx.nodes.clone()).await? {
                Some(_) => Did::Applied,
                None => Did::Nothing,
            })
        }
        OpKind::InitialList => Err("initial lists are not traffic".into()),
    }
}

/// Runs op k of `kind` and records its outcome, its latency counted `from` (its due time, or
/// its send if the timer's slack was all that delayed it).
async fn run_op(cx: Arc<Cx>, kind: OpKind, k: u64, from: Instant) {
    let r = tokio::time::timeout(OP_TIMEOUT, exec(&cx, kind, k)).await;
    let lat_us = from.elapsed().as_micros() as u64;
    {
        let mut l = cx.ledger.lock().expect("ledger");
        let due = from.duration_since(cx.t0);
        if lat_us >= SLOW_US {
            l.slow_secs.push(due.as_secs());
        }
        if kind.is_write() && matches!(r, Ok(Ok(Did::Applied))) {
            l.write_lats.push((due.as_micros() as u64, lat_us));
        }
        let s = l.op(kind);
        match r {
            Ok(Ok(Did::Applied)) => s.ok(lat_us),
            Ok(Ok(Did::Conflict)) => s.conflicts += 1,
            Ok(Ok(Did::Nothing)) => {}
            Ok(Err(e)) => s.error(e),
            Err(_) => s.error(format!("no answer within {OP_TIMEOUT:?}")),
        }
    }
    cx.inflight[kind.index()].fetch_sub(1, Ordering::Relaxed);
}

/// Sends the ops of `c` when due; returns the largest lag behind a due time (ms).
async fn schedule(cx: Arc<Cx>, c: Class, t0: Instant) -> f64 {
    let mut max_lag: f64 = 0.0;
    let mut off = c.phase;
    for k in 0u64.. {
        if off >= c.until {
            break;
        }
        let due = t0 + Duration::from_secs_f64(off);
        tokio::time::sleep_until(due.into()).await;
        let lag = due.elapsed();
        max_lag = max_lag.max(lag.as_secs_f64() * 1e3);
        let from = if lag <= TIMER_SLACK {
            Instant::now()
        } else {
            due
        };
        cx.sent[c.kind.index()].fetch_add(1, Ordering::Relaxed);
        cx.inflight[c.kind.index()].fetch_add(1, Ordering::Relaxed);
        tokio::spawn(run_op(cx.clone(), c.kind, k, from));
        off = c.next(off, k);
    }
    max_lag
}

async fn drive(url: &str, world: Arc<World>, o: &Rates, base: Instant) -> Result<Done, String> {
    let (pods, misc, nodes) = (
        connect(url).await?,
        connect(url).await?,
        connect(url).await?,
    );
    let n = OpKind::ALL.len();
    let cx = Arc::new(Cx {
        world,
        pods: KvClient::new(pods),
        misc: KvClient::new(misc.clone()),
        lease: LeaseClient::new(misc.clone()),
        lists: misc,
        nodes: KvClient::new(nodes),
        list_limit: o.list_limit,
        ledger: Mutex::new(Ledger::default()),
        base,
        t0: Instant::now(),
        sent: (0..n).map(|_| AtomicU64::new(0)).collect(),
        inflight: (0..n).map(|_| AtomicU64::new(0)).collect(),
    });
    let mut set = tokio::task::JoinSet::new();
    for c in classes(o) {
        set.spawn(schedule(cx.clone(), c, cx.t0));
    }
    let max_lag_ms = set.join_all().await.into_iter().fold(0.0, f64::max);
    let until = Instant::now() + Duration::from_secs(ACK_SECS);
    let busy = |cx: &Cx| cx.inflight.iter().any(|a| a.load(Ordering::Relaxed) > 0);
    while busy(&cx) && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut ledger = std::mem::take(&mut *cx.ledger.lock().expect("ledger"));
    for kind in OpKind::ALL {
        let late = cx.inflight[kind.index()].load(Ordering::Relaxed);
        for _ in 0..late {
            ledger
                .op(kind)
                .error(format!("unanswered {ACK_SECS} s after the traffic ended"));
        }
    }
    let sent = cx.sent.iter().map(|a| a.load(Ordering::Relaxed)).collect();
    Ok(Done {
        ledger,
        max_lag_ms,
        sent,
    })
}

/// Runs the traffic for `o.secs` on a thread of its own; write send times count from `base`.
pub async fn run(url: &str, world: Arc<World>, o: &Rates, base: Instant) -> Result<Done, String> {
    let (url, o) = (url.to_string(), o.clone());
    tokio::task::spawn_blocking(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("traffic runtime: {e}"))?;
        rt.block_on(drive(&url, world, &o, base))
    })
    .await
    .map_err(|e| format!("traffic thread: {e}"))?
}

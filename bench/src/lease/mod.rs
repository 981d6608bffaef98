//! lease-keepalive (see bench/README.md, "Lease"): `--leases` leases granted with TTL `TTL`,
//! then one client keeps them all alive over ONE LeaseKeepAlive stream on one connection, as
//! etcd's clientv3 does (one stream per client for all its leases). Closed loop: every lease has
//! exactly one keepalive in flight, re-sent as soon as its answer arrives, so `--leases`
//! keepalives are in flight at all times. After `WARMUP`, answers, latency and server CPU are
//! measured for `--lease-secs`; every answer must carry its lease's granted TTL.
pub mod expiry;
mod table;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use ballast_bench::hist::Hist;
use ballast_bench::procstat::{cpu_ticks, cpu_us_per, rss_mib};
use ballast_bench::proto::etcdserverpb::lease_client::LeaseClient;
use ballast_bench::proto::etcdserverpb::{
    LeaseGrantRequest, LeaseKeepAliveRequest, LeaseKeepAliveResponse,
};
use ballast_bench::report::Cells;
use tokio::sync::mpsc;
use tonic::codegen::tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::Streaming;

use crate::watch::connect;
pub use table::{notes, table, LeaseRow, LEGEND};

pub const ID: &str = "lease-keepalive";
/// The TTL asked for at grant (well above the run, so no lease expires during it).
pub const TTL: i64 = 60;
/// Keepalives answered before the measured window opens.
const WARMUP: Duration = Duration::from_secs(1);
/// Concurrent LeaseGrant calls while granting.
const GRANTERS: usize = 16;

pub struct LeaseOpts {
    pub leases: usize,
    pub secs: f64,
    pub max_secs: f64,
}

pub struct LeaseRes {
    pub leases: usize,
    pub grant_secs: f64,
    /// Answers received in the measured window.
    pub answers: u64,
    pub per_sec: f64,
    /// Latency (keepalive sent → its answer), CPU per answer, RSS at the end.
    pub m: Cells,
    /// Answers (whole run, warmup included) whose TTL differs from the lease's granted TTL, or
    /// whose ID is not one of ours.
    pub bad: u64,
    pub first_bad: Option<String>,
}

/// The leases: id and the TTL the grant answered.
struct Granted {
    ids: Vec<i64>,
    ttls: Vec<i64>,
}

/// Grants `n` leases of `ttl` seconds with `granters` concurrent LeaseGrant calls, granter g on
/// connection g mod `chans.len()`; bounded by `max_secs`.
async fn grant(
    chans: &[Channel],
    n: usize,
    ttl: i64,
    granters: usize,
    max_secs: f64,
) -> Result<Granted, String> {
    let mut tasks = tokio::task::JoinSet::new();
    for g in 0..granters {
        let mut c = LeaseClient::new(chans[g % chans.len()].clone());
        let count = n / granters + usize::from(g < n % granters);
        tasks.spawn(async move {
            let mut got = Vec::with_capacity(count);
            for _ in 0..count {
                let r = c
                    .lease_grant(LeaseGrantRequest { ttl, id: 0 })
                    .await
                    .map_err(|e| format!("LeaseGrant: {e}"))?
                    .into_inner();
                if !r.error.is_empty() || r.id == 0 {
                    return Err(format!("LeaseGrant: id {} error {:?}", r.id, r.error));
                }
                got.push((r.id, r.ttl));
            }
            Ok::<_, String>(got)
        });
    }
    let all = tokio::time::timeout(Duration::from_secs_f64(max_secs), tasks.join_all())
        .await
        .map_err(|_| format!("granting {n} leases took over {max_secs} s"))?;
    let mut g = Granted {
        ids: Vec::with_capacity(n),
        ttls: Vec::with_capacity(n),
    };
    for (id, ttl) in all
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .flatten()
    {
        g.ids.push(id);
        g.ttls.push(ttl);
    }
    Ok(g)
}

/// Opens the one keepalive stream with a keepalive for every lease already queued (a server may
/// send its response headers only with its first message).
async fn open(
    ch: Channel,
    ids: &[i64],
) -> Result<
    (
        mpsc::Sender<LeaseKeepAliveRequest>,
        Streaming<LeaseKeepAliveResponse>,
    ),
    String,
> {
    let (tx, rx) = mpsc::channel(ids.len() + 64);
    for id in ids {
        tx.try_send(LeaseKeepAliveRequest { id: *id })
            .map_err(|e| format!("queue keepalive: {e}"))?;
    }
    let resp = LeaseClient::new(ch)
        .lease_keep_alive(ReceiverStream::new(rx))
        .await
        .map_err(|e| format!("open LeaseKeepAlive stream: {e}"))?;
    Ok((tx, resp.into_inner()))
}

/// Readings at the start of the measured window.
struct Window {
    at: Instant,
    server: Option<u64>,
    client: Option<u64>,
}

impl Window {
    fn open(pid: i32) -> Window {
        Window {
            at: Instant::now(),
            server: cpu_ticks(pid),
            client: cpu_ticks(std::process::id() as i32),
        }
    }
}

/// What the keepalive loop saw.
#[derive(Default)]
struct Seen {
    lat: Hist,
    answers: u64,
    bad: u64,
    first_bad: Option<String>,
}

impl Seen {
    fn bad(&mut self, e: String) {
        self.bad += 1;
        self.first_bad.get_or_insert(e);
    }

    /// The index of the lease `r` answers, if ours; counts a wrong TTL or a foreign ID as bad.
    fn check(
        &mut self,
        index: &HashMap<i64, usize>,
        ttls: &[i64],
        r: &LeaseKeepAliveResponse,
    ) -> Option<usize> {
        let Some(&i) = index.get(&r.id) else {
            self.bad(format!("answer for unknown lease {} (TTL {})", r.id, r.ttl));
            return None;
        };
        if r.ttl != ttls[i] {
            self.bad(format!(
                "lease {}: TTL {} in the answer, {} granted",
                r.id, r.ttl, ttls[i]
            ));
        }
        Some(i)
    }
}

pub async fn run(o: &LeaseOpts, url: &str, pid: i32) -> Result<LeaseRes, String> {
    let ch = connect(url).await?;
    let t0 = Instant::now();
    let g = grant(
        std::slice::from_ref(&ch),
        o.leases,
        TTL,
        GRANTERS,
        o.max_secs,
    )
    .await?;
    let grant_secs = t0.elapsed().as_secs_f64();
    let index: HashMap<i64, usize> = g.ids.iter().enumerate().map(|(i, id)| (*id, i)).collect();
    let mut sent = vec![Instant::now(); g.ids.len()];
    let (tx, mut stream) = open(ch, &g.ids).await?;
    let start = Instant::now();
    let (measure_at, end_at) = (
        start + WARMUP,
        start + WARMUP + Duration::from_secs_f64(o.secs),
    );
    let mut window: Option<Window> = None;
    let mut seen = Seen::default();
    let stall = Duration::from_secs(5);
    loop {
        let r = match tokio::time::timeout(stall, stream.message()).await {
            Ok(Ok(Some(r))) => r,
            Ok(Ok(None)) => return Err("LeaseKeepAlive stream ended by the server".into()),
            Ok(Err(e)) => return Err(format!("LeaseKeepAlive stream: {e}")),
            Err(_) => return Err(format!("no keepalive answer for {stall:?}")),
        };
        let now = Instant::now();
        let Some(i) = seen.check(&index, &g.ttls, &r) else {
            continue;
        };
        if window.is_some() {
            seen.lat
                .record(now.duration_since(sent[i]).as_micros() as u64);
            seen.answers += 1;
        } else if now >= measure_at {
            window = Some(Window::open(pid));
        }
        if now >= end_at {
            break;
        }
        sent[i] = now;
        tx.send(LeaseKeepAliveRequest { id: r.id })
            .await
            .map_err(|_| "LeaseKeepAlive request stream closed".to_string())?;
    }
    let w = window.expect("the window opens before it ends");
    let (server1, client1) = (cpu_ticks(pid), cpu_ticks(std::process::id() as i32));
    let span = w.at.elapsed().as_secs_f64();
    drop(tx);
    Ok(LeaseRes {
        leases: g.ids.len(),
        grant_secs,
        answers: seen.answers,
        per_sec: seen.answers as f64 / span,
        m: Cells {
            p50_us: seen.lat.quantile(0.50),
            p99_us: seen.lat.quantile(0.99),
            p999_us: seen.lat.quantile(0.999),
            server_cpu_us: cpu_us_per(w.server, server1, seen.answers),
            client_cpu_us: cpu_us_per(w.client, client1, seen.answers),
            rss_mib: rss_mib(pid),
        },
        bad: seen.bad,
        first_bad: seen.first_bad,
    })
}

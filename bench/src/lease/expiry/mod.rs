//! lease-expiry (see bench/README.md, "Lease expiry"): `--expiring-leases` leases are granted
//! with TTL `--expiry-ttl` (many concurrent LeaseGrant calls, so they expire close together), one
//! key is put under each (with its lease), and no keepalive is ever sent. A fixed-rate writer puts
//! other keys from the end of the setup on; from the first lease's possible expiry (first grant
//! sent + TTL) a count-only Range over the leased keys' prefix is polled every `POLL` until no key
//! is left (bounded). Reported: time until every leased key is gone, the writer's put latency
//! during that window (and before it), server CPU over it, RSS; afterwards the writer's keys, the
//! revisions the revokes used and the leases left are checked.
mod table;

use std::time::{Duration, Instant};

use ballast_bench::procstat::{clk_tck, cpu_ticks, rss_mib};
use ballast_bench::proto::etcdserverpb::kv_client::KvClient;
use ballast_bench::proto::etcdserverpb::lease_client::LeaseClient;
use ballast_bench::proto::etcdserverpb::{LeaseLeasesRequest, PutRequest, RangeRequest};
use tonic::transport::Channel;

use crate::watch::{connect, prefix_end};
pub use table::{notes, table, ExpiryRow, LEGEND};
use crate::writer::{Lat, Writer};

/// The writer's keys.
const WRITER_PREFIX: &str = "lxw/";

pub const ID: &str = "lease-expiry";
/// The leased keys: `KEY_PREFIX` + the lease's index, zero-padded.
const KEY_PREFIX: &str = "lxk/";
const VALUE_LEN: usize = 256;
/// Connections and concurrent calls of the setup (grants, then the leased puts).
const SETUP_CONNS: usize = 8;
const SETUP_CALLS: usize = 256;
/// How often the leased keys are counted while they expire.
const POLL: Duration = Duration::from_millis(500);
/// A count-only Range slower than this counts as a failed poll (the next one follows).
const POLL_TIMEOUT: Duration = Duration::from_secs(5);

pub struct ExpiryOpts {
    pub leases: usize,
    pub ttl: i64,
    /// Puts per second of the writer.
    pub rate: f64,
    /// Bound of each setup phase (grants, puts).
    pub max_secs: f64,
    /// Bound of the wait for the leased keys to go, from the first possible expiry.
    pub removal_secs: f64,
}

pub struct ExpiryRes {
    pub leases: usize,
    pub ttl: i64,
    pub grant_secs: f64,
    pub put_secs: f64,
    /// First possible expiry (first grant sent + TTL) → first poll that saw fewer keys.
    pub first_removal_secs: Option<f64>,
    /// First possible expiry → first poll that saw no leased key (None: the bound passed).
    pub removed_secs: Option<f64>,
    /// Leased keys at the last poll (0 when all were removed).
    pub keys_left: u64,
    /// Writer puts sent during the window (first possible expiry → all keys removed or the
    /// bound), and before it (end of the setup → first possible expiry).
    pub during: Lat,
    pub before: Lat,
    pub writer_errors: u64,
    pub writer_lag_ms: f64,
    pub first_error: Option<String>,
    /// Server utime+stime over the window, seconds.
    pub server_cpu_secs: Option<f64>,
    pub rss_setup_mib: Option<f64>,
    pub rss_end_mib: Option<f64>,
    /// Revisions from the end of the setup to the end, less the writer's applied puts: one per
    /// revoke of a lease with keys, so the revoked leases.
    pub revoke_revs: i64,
    /// Of our leases, those LeaseLeases still lists at the end.
    pub leases_left: usize,
    pub polls_failed: u64,
}

impl ExpiryRes {
    /// Whatever went wrong: keys or leases left, writer errors, revisions not one per revoke.
    pub fn errors(&self) -> u64 {
        let revoked = self.leases as i64 - self.keys_left as i64;
        self.keys_left
            + self.leases_left as u64
            + self.writer_errors
            + u64::from(self.revoke_revs != revoked)
    }
}

fn key(i: usize) -> Vec<u8> {
    format!("{KEY_PREFIX}{i:08}").into_bytes()
}

/// Puts key i with lease `ids[i]`, `SETUP_CALLS` puts in flight over `chans`.
async fn put_leased(chans: &[Channel], ids: &[i64], max_secs: f64) -> Result<(), String> {
    let mut tasks = tokio::task::JoinSet::new();
    for g in 0..SETUP_CALLS {
        let mut kv = KvClient::new(chans[g % chans.len()].clone());
        let mine: Vec<(usize, i64)> = ids
            .iter()
            .copied()
            .enumerate()
            .skip(g)
            .step_by(SETUP_CALLS)
            .collect();
        tasks.spawn(async move {
            for (i, lease) in mine {
                let req = PutRequest {
                    key: key(i),
                    value: vec![b'x'; VALUE_LEN],
                    lease,
                    ..Default::default()
                };
                kv.put(req)
                    .await
                    .map_err(|e| format!("Put {i} with lease {lease}: {e}"))?;
            }
            Ok::<_, String>(())
        });
    }
    let all = tokio::time::timeout(Duration::from_secs_f64(max_secs), tasks.join_all())
        .await
        .map_err(|_| format!("putting {} leased keys took over {max_secs} s", ids.len()))?;
    all.into_iter().collect()
}

/// Keys under `prefix` (count-only, linearizable) and the revision of the answer.
async fn count(kv: &mut KvClient<Channel>, prefix: &str) -> Result<(u64, i64), String> {
    let req = RangeRequest {
        key: prefix.as_bytes().to_vec(),
        range_end: prefix_end(prefix),
        count_only: true,
        ..Default::default()
    };
    let r = tokio::time::timeout(POLL_TIMEOUT, kv.range(req))
        .await
        .map_err(|_| format!("count of {prefix} took over {POLL_TIMEOUT:?}"))?
        .map_err(|e| format!("count of {prefix}: {e}"))?
        .into_inner();
    Ok((r.count as u64, r.header.map_or(0, |h| h.revision)))
}

/// What the polls saw from the first possible expiry on.
struct Removal {
    first_removal_secs: Option<f64>,
    removed_secs: Option<f64>,
    keys_left: u64,
    failed: u64,
}

/// Polls the leased keys every `POLL` from `from` until none is left or `bound_secs` passed.
async fn await_removal(
    kv: &mut KvClient<Channel>,
    n: u64,
    from: Instant,
    bound_secs: f64,
) -> Removal {
    let until = from + Duration::from_secs_f64(bound_secs);
    let mut r = Removal {
        first_removal_secs: None,
        removed_secs: None,
        keys_left: n,
        failed: 0,
    };
    let mut next = from;
    while Instant::now() < until {
        tokio::time::sleep_until(next.into()).await;
        next += POLL;
        let Ok((left, _)) = count(kv, KEY_PREFIX).await else {
            r.failed += 1;
            continue;
        };
        let at = from.elapsed().as_secs_f64();
        r.keys_left = left;
        if left < n {
            r.first_removal_secs.get_or_insert(at);
        }
        if left == 0 {
            r.removed_secs = Some(at);
            break;
        }
    }
    r
}

/// How many of `ids` LeaseLeases still lists.
async fn leases_left(ch: Channel, ids: &[i64]) -> Result<usize, String> {
    let listed = LeaseClient::new(ch)
        .lease_leases(LeaseLeasesRequest {})
        .await
        .map_err(|e| format!("LeaseLeases: {e}"))?
        .into_inner()
        .leases;
    let ours: std::collections::HashSet<i64> = ids.iter().copied().collect();
    Ok(listed.iter().filter(|l| ours.contains(&l.id)).count())
}

pub async fn run(o: &ExpiryOpts, url: &str, pid: i32) -> Result<ExpiryRes, String> {
    let mut chans = Vec::with_capacity(SETUP_CONNS);
    for _ in 0..SETUP_CONNS {
        chans.push(connect(url).await?);
    }
    let t0 = Instant::now();
    let g = super::grant(&chans, o.leases, o.ttl, SETUP_CALLS, o.max_secs).await?;
    let grant_secs = t0.elapsed().as_secs_f64();
    put_leased(&chans, &g.ids, o.max_secs).await?;
    let put_secs = t0.elapsed().as_secs_f64() - grant_secs;
    // The earliest a lease can expire: its grant was sent at t0 or later.
    let expiry = t0 + Duration::from_secs(o.ttl as u64);
    let mut kv = KvClient::new(chans[0].clone());
    let (have, setup_rev) = count(&mut kv, KEY_PREFIX).await?;
    let n = g.ids.len() as u64;
    if Instant::now() >= expiry || have != n {
        return Err(format!(
            "the setup (grants {grant_secs:.1} s, puts {put_secs:.1} s) outlasted the TTL of {} s ({have} of {n} keys left): raise --expiry-ttl",
            o.ttl
        ));
    }
    let rss_setup_mib = rss_mib(pid);
    let writer = Writer::start(url, WRITER_PREFIX, t0, o.rate);
    tokio::time::sleep_until(expiry.into()).await;
    let cpu0 = cpu_ticks(pid);
    let removal = await_removal(&mut kv, n, expiry, o.removal_secs).await;
    let (cpu1, rss_end_mib) = (cpu_ticks(pid), rss_mib(pid));
    let window_end = Instant::now();
    let wrote = writer.finish().await?;
    let (expiry_ns, end_ns) = (
        expiry.duration_since(t0).as_nanos() as u64,
        window_end.duration_since(t0).as_nanos() as u64,
    );
    let (writer_keys, end_rev) = count(&mut kv, WRITER_PREFIX).await?;
    Ok(ExpiryRes {
        leases: g.ids.len(),
        ttl: o.ttl,
        grant_secs,
        put_secs,
        first_removal_secs: removal.first_removal_secs,
        removed_secs: removal.removed_secs,
        keys_left: removal.keys_left,
        during: Lat::of(
            wrote
                .samples
                .iter()
                .filter(|s| (expiry_ns..end_ns).contains(&s.sent_ns)),
        ),
        before: Lat::of(wrote.samples.iter().filter(|s| s.sent_ns < expiry_ns)),
        writer_errors: wrote.errors,
        writer_lag_ms: wrote.max_lag_ms,
        first_error: wrote.first_error,
        server_cpu_secs: cpu0
            .zip(cpu1)
            .map(|(a, b)| b.saturating_sub(a) as f64 / clk_tck()),
        rss_setup_mib,
        rss_end_mib,
        revoke_revs: end_rev - setup_rev - writer_keys as i64,
        leases_left: leases_left(chans[0].clone(), &g.ids).await?,
        polls_failed: removal.failed,
    })
}

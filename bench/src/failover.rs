//! The failover workload of a cluster target: on a fresh cluster, find the leader
//! (Maintenance.Status of every member), SIGKILL it, and time how long until a Put is
//! acknowledged, sent to the surviving members in turn with a short timeout each. Repeated on
//! `--failover-rounds` fresh clusters; the table shows min / median / max and the mean.
//! Single-server targets have no failover and skip it.
use std::fmt::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use ballast_bench::proto::etcdserverpb::kv_client::KvClient;
use ballast_bench::proto::etcdserverpb::maintenance_client::MaintenanceClient;
use ballast_bench::proto::etcdserverpb::{PutRequest, StatusRequest};
use ballast_bench::report::ms;

use crate::server::{connect, start, wait_ready, Server};
use crate::targets::Target;

pub const ID: &str = "failover";
/// Each Put's bound: past it the next survivor is tried.
const PUT_TIMEOUT: Duration = Duration::from_millis(250);
/// The bound of a round: the leader found, then a write acknowledged after the kill.
const ROUND_BOUND: Duration = Duration::from_secs(30);

pub struct FailoverRow {
    pub target: String,
    /// Kill → first acknowledged write, per round, in µs.
    pub res: Result<Vec<f64>, String>,
}

pub const LEGEND: &str = "failover: on a fresh cluster with no load, the leader (found with \
Maintenance.Status) is SIGKILLed; the time is from the kill to the first acknowledged Put, sent to \
the survivors in turn with a 250 ms timeout each. Min / median / max and mean over --failover-rounds fresh clusters (3 unless stated).";

/// The failover rounds of cluster target `t` in `dir` (one fresh cluster each).
pub async fn run_failover(t: &Target, bin: &Path, dir: &Path, rounds: usize, keep_data: bool) -> FailoverRow {
    let mut times = Vec::with_capacity(rounds);
    let mut res = Ok(());
    for round in 0..rounds {
        let rdir = dir.join(format!("round{round}"));
        match one_round(t, bin, &rdir).await {
            Ok(us) => {
                eprintln!("bench: {:<16} failover round {round}: first write after {} ms", t.name, ms(us));
                times.push(us);
            }
            Err(e) => res = Err(format!("round {round}: {e}")),
        }
        if !keep_data {
            let _ = std::fs::remove_dir_all(rdir.join("data"));
        }
        if res.is_err() {
            break;
        }
    }
    FailoverRow { target: t.name.to_string(), res: res.map(|()| times) }
}

async fn one_round(t: &Target, bin: &Path, dir: &Path) -> Result<f64, String> {
    let mut s = start(t, bin, dir)?;
    let res = kill_leader_and_write(&mut s).await;
    s.stop();
    res
}

/// Kills the leader of the (ready) cluster `s`: the time to the first acknowledged write, in µs.
async fn kill_leader_and_write(s: &mut Server) -> Result<f64, String> {
    wait_ready(s).await?;
    let urls: Vec<String> = s.links().into_iter().map(|l| l.url).collect();
    let leader = leader_of(&urls).await?;
    let killed = Instant::now();
    // SAFETY: plain kill(2) on the pid of a child the harness spawned and has not reaped yet.
    unsafe { libc::kill(s.pids()[leader], libc::SIGKILL) };
    let survivors: Vec<&String> = urls.iter().enumerate().filter(|&(i, _)| i != leader).map(|(_, u)| u).collect();
    for attempt in 0.. {
        if killed.elapsed() > ROUND_BOUND {
            break;
        }
        if put(survivors[attempt % survivors.len()], attempt).await.is_ok() {
            return Ok(killed.elapsed().as_secs_f64() * 1e6);
        }
    }
    Err(format!("no write acknowledged within {ROUND_BOUND:?} of killing the leader"))
}

/// The index in `urls` of the member every answering member names leader (bounded).
async fn leader_of(urls: &[String]) -> Result<usize, String> {
    let started = Instant::now();
    let mut last = String::new();
    while started.elapsed() < ROUND_BOUND {
        let mut ids = Vec::new();
        let mut leaders = Vec::new();
        for url in urls {
            match status(url).await {
                Ok((id, leader)) => {
                    ids.push(id);
                    leaders.push(leader);
                }
                Err(e) => last = e,
            }
        }
        let agreed = leaders.first().filter(|&&l| l != 0 && leaders.iter().all(|x| x == &l));
        if let Some(i) = agreed.and_then(|l| ids.iter().position(|id| id == l)).filter(|_| ids.len() == urls.len()) {
            return Ok(i);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(format!("no leader agreed within {ROUND_BOUND:?} ({last})"))
}

/// (member id, leader id) from Maintenance.Status of the member at `url`.
async fn status(url: &str) -> Result<(u64, u64), String> {
    let ch = connect(url).await?;
    let mut client = MaintenanceClient::new(ch);
    let call = client.status(StatusRequest {});
    let r = tokio::time::timeout(PUT_TIMEOUT, call).await.map_err(|_| "status timed out".to_string())?;
    let r = r.map_err(|e| e.to_string())?.into_inner();
    Ok((r.header.map_or(0, |h| h.member_id), r.leader))
}

async fn put(url: &str, attempt: usize) -> Result<(), String> {
    let ch = tokio::time::timeout(PUT_TIMEOUT, connect(url)).await.map_err(|_| "connect timed out".to_string())??;
    let req = PutRequest { key: b"bench/failover".to_vec(), value: attempt.to_string().into_bytes(), ..Default::default() };
    let mut kv = KvClient::new(ch);
    match tokio::time::timeout(PUT_TIMEOUT, kv.put(req)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("put timed out".into()),
    }
}

/// The failover table: a line per cluster target.
pub fn table(rows: &[FailoverRow]) -> String {
    let mut s = String::from("| target | failover: kill → first write, ms (min / median / max) | rounds | mean ms |\n|---|--:|--:|--:|\n");
    for r in rows {
        let (cell, rounds, mean) = match &r.res {
            Ok(t) if !t.is_empty() => {
                let mut t = t.clone();
                t.sort_by(f64::total_cmp);
                let mean = t.iter().sum::<f64>() / t.len() as f64;
                (format!("{} / {} / {}", ms(t[0]), ms(t[t.len() / 2]), ms(t[t.len() - 1])), t.len().to_string(), ms(mean))
            }
            Ok(_) => ("—".into(), "0".into(), "—".into()),
            Err(_) => ("failed".into(), "—".into(), "—".into()),
        };
        let _ = writeln!(s, "| {} | {cell} | {rounds} | {mean} |", r.target);
    }
    s
}

/// Failed rounds, one note each.
pub fn notes(rows: &[FailoverRow]) -> String {
    let mut s = String::new();
    for r in rows {
        if let Err(e) = &r.res {
            let _ = writeln!(s, "- failover / {}: failed: {}", r.target, e.replace('\n', " ⏎ "));
        }
    }
    s
}

//! The list phase of pauses: one client LISTs the LIST set again and again, rotating over
//! unpaginated and paginated (limit 500, later pages at the first page's revision, as
//! kube-apiserver pages) at the current revision and at the revision the set was complete at.
//! Every answer must hold every key of the set, in order, with its whole value.
use std::time::{Duration, Instant};

use ballast_bench::procstat::rss_mib;
use ballast_bench::proto::etcdserverpb::kv_client::KvClient;
use ballast_bench::proto::etcdserverpb::RangeRequest;
use tonic::transport::Channel;

use crate::watch::{connect, prefix_end};

/// Keys per page of a paginated LIST (kube-apiserver's default page).
const PAGE: i64 = 500;
/// A LIST slower than this fails the phase.
const LIST_TIMEOUT: Duration = Duration::from_secs(60);

/// What is listed: `keys` keys under `prefix`, values of `value_len` bytes, complete at `past_rev`.
#[derive(Clone)]
pub struct ListSet {
    pub prefix: &'static str,
    pub keys: usize,
    pub value_len: usize,
    pub past_rev: i64,
}

/// The four kinds, in rotation: (paginated, at the past revision).
const KINDS: [(bool, bool); 4] = [(false, false), (false, true), (true, false), (true, true)];

fn kind_name(k: usize) -> &'static str {
    [
        "unpaginated",
        "unpaginated at a past revision",
        "paginated",
        "paginated at a past revision",
    ][k]
}

#[derive(Default)]
pub struct ListSeen {
    /// Per kind: LISTs done and their slowest, ms.
    pub lists: [u64; 4],
    pub max_ms: [f64; 4],
    pub errors: u64,
    pub first_error: Option<String>,
    /// Server RSS at the phase's start and its peak during the phase (VmHWM after a reset).
    pub rss_start_mib: Option<f64>,
    pub rss_peak_mib: Option<f64>,
    /// Anonymous RSS (heap, not mapped files) at the start and its highest sample (every
    /// `SAMPLE_EVERY`) during the phase.
    pub anon_start_mib: Option<f64>,
    pub anon_peak_mib: Option<f64>,
    /// Encoded size of one unpaginated answer, MiB.
    pub answer_mib: f64,
    /// Each LIST done: (kind, start, end), ns since the writer's base.
    pub spans: Vec<(usize, u64, u64)>,
    /// Per kind, once the writer is done: (puts sent during such LISTs, their p99 in µs).
    pub during: [Option<(u64, u64)>; 4],
    /// The writer's baseline p99, µs (for the ratios per kind).
    pub baseline_p99_us: u64,
}

impl ListSeen {
    pub fn describe(&self) -> String {
        let kinds: Vec<String> = (0..4)
            .map(|k| {
                format!(
                    "{} {} (slowest {:.0} ms)",
                    self.lists[k],
                    kind_name(k),
                    self.max_ms[k]
                )
            })
            .collect();
        let during: Vec<String> = (0..4)
            .filter_map(|k| {
                let (puts, p99_us) = self.during[k]?;
                let secs: u64 = self.spans.iter().filter(|s| s.0 == k).map(|s| s.2 - s.1).sum();
                Some(format!(
                    "{} {:.2} ms ({:.2}× baseline; {puts} puts in {:.1} s)",
                    kind_name(k),
                    p99_us as f64 / 1e3,
                    p99_us as f64 / self.baseline_p99_us.max(1) as f64,
                    secs as f64 / 1e9
                ))
            })
            .collect();
        let during = if during.is_empty() {
            String::new()
        } else {
            format!("; writer's p99 during each kind: {}", during.join(", "))
        };
        let growth = |start: Option<f64>, peak: Option<f64>| match (start, peak) {
            (Some(a), Some(b)) => format!("{:.0}", b - a),
            _ => "—".into(),
        };
        format!(
            "LISTs: {}; server RSS peak {} MiB above the phase's start, of which anonymous (heap) {} MiB (one unpaginated answer: {:.0} MiB)",
            kinds.join(", "),
            growth(self.rss_start_mib, self.rss_peak_mib),
            growth(self.anon_start_mib, self.anon_peak_mib),
            self.answer_mib
        ) + &during
    }
}

/// Resets the peak RSS the kernel keeps for `pid` (VmHWM), so the phase reads its own peak.
fn reset_peak_rss(pid: i32) -> bool {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
}

/// A `/proc/<pid>/status` line's value in MiB (`field` is e.g. "VmHWM:").
fn status_mib(pid: i32, field: &str) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with(field))?;
    Some(line.split_whitespace().nth(1)?.parse::<f64>().ok()? / 1024.0)
}

/// How often the anonymous RSS is sampled during the phase.
const SAMPLE_EVERY: Duration = Duration::from_millis(10);

/// Samples the anonymous RSS of `pid` until `stop` is set; returns the highest sample.
async fn sample_anon_peak(
    pid: i32,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> Option<f64> {
    let mut peak: Option<f64> = None;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        if let Some(v) = status_mib(pid, "RssAnon:") {
            peak = Some(peak.map_or(v, |p| p.max(v)));
        }
        tokio::time::sleep(SAMPLE_EVERY).await;
    }
    peak
}

/// One LIST of the set; checks it and returns its encoded size.
async fn list_once(
    kv: &mut KvClient<Channel>,
    set: &ListSet,
    paginated: bool,
    past: bool,
) -> Result<usize, String> {
    let end = prefix_end(set.prefix);
    let mut key = set.prefix.as_bytes().to_vec();
    let mut rev = if past { set.past_rev } else { 0 };
    let (mut seen, mut bytes) = (0usize, 0usize);
    let mut last: Option<Vec<u8>> = None;
    loop {
        let req = RangeRequest {
            key: key.clone(),
            range_end: end.clone(),
            revision: rev,
            limit: if paginated { PAGE } else { 0 },
            ..Default::default()
        };
        let r = kv
            .range(req)
            .await
            .map_err(|e| format!("LIST: {e}"))?
            .into_inner();
        bytes += prost::Message::encoded_len(&r);
        rev = r
            .header
            .as_ref()
            .map_or(rev, |h| if rev == 0 { h.revision } else { rev });
        for kv in &r.kvs {
            if kv.value.len() != set.value_len || last.as_ref().is_some_and(|l| *l >= kv.key) {
                return Err(format!(
                    "LIST: key {:?} out of order or with a {} B value",
                    String::from_utf8_lossy(&kv.key),
                    kv.value.len()
                ));
            }
            last = Some(kv.key.clone());
        }
        seen += r.kvs.len();
        match (r.more, r.kvs.last()) {
            (true, Some(kv)) => key = [kv.key.as_slice(), b"\0"].concat(),
            _ => break,
        }
    }
    if seen != set.keys {
        return Err(format!("LIST returned {seen} keys, not {}", set.keys));
    }
    Ok(bytes)
}

/// Confines the calling thread (the LIST client) to one CPU, the first the harness may use, at
/// SCHED_IDLE (which any other thread that wakes preempts at once). A kube-apiserver runs on
/// other CPUs than its etcd's; here the client decodes and checks 100 MiB answers, a CPU's worth
/// of work while it lasts, and it showed in the writer's latency as the server's (`perf sched
/// timehist` of list phases on a 2-CPU box): at the harness's default priority it held the
/// writer's own thread off a CPU for 1-5 ms several times a second (71 of its 129 waits over
/// 1 ms; at nice 19, 145 of 166), and on CPU 1, where that box's disk interrupts land, it held
/// the kernel worker that completes the server's durable writes (501 waits over 0.3 ms in 14 s,
/// 623 ms in all, even at SCHED_IDLE), so WAL writes took longer. Neither the server nor the
/// writer is pinned: they may still run on that CPU, ahead of the client. What cannot be set
/// (no permission) is reported and left as it was.
fn confine_list_client() {
    // SAFETY: the CPU set is a plain bit set filled by the kernel and libc's macros; every call
    // names the calling thread (0) and passes a valid pointer and size.
    let (pinned, idle) = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        let mut pinned = libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) == 0;
        if let Some(first) = (0..libc::CPU_SETSIZE as usize).find(|&c| pinned && libc::CPU_ISSET(c, &set)) {
            let mut one: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(first, &mut one);
            pinned = libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &one) == 0;
        }
        let param = libc::sched_param { sched_priority: 0 };
        (pinned, libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) == 0)
    };
    if !(pinned && idle) {
        eprintln!("bench: the LIST client could not be confined (one CPU: {pinned}, SCHED_IDLE: {idle})");
    }
}

/// LISTs the set for `secs` (the LIST under way finishes), rotating over the kinds, from a
/// thread of its own confined to one CPU at the lowest priority; samples the server's memory
/// meanwhile.
pub async fn run(url: &str, pid: i32, set: &ListSet, secs: f64, base: Instant) -> Result<ListSeen, String> {
    let seen = ListSeen {
        rss_start_mib: rss_mib(pid),
        anon_start_mib: status_mib(pid, "RssAnon:"),
        ..ListSeen::default()
    };
    let reset = reset_peak_rss(pid);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = tokio::spawn(sample_anon_peak(pid, stop.clone()));
    let (url, set) = (url.to_string(), set.clone());
    let lists = crate::writer::own_thread("bench-list", move || {
        confine_list_client();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("LIST client runtime: {e}"))?;
        rt.block_on(list_for(&url, &set, secs, base, seen))
    })
    .await
    .map_err(|_| "the LIST client's thread did not start or ended without an answer".to_string());
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let anon_peak_mib = sampler.await.unwrap_or(None);
    let mut seen = lists??;
    seen.anon_peak_mib = anon_peak_mib;
    seen.rss_peak_mib = if reset {
        status_mib(pid, "VmHWM:")
    } else {
        None
    };
    Ok(seen)
}

/// The LIST client's loop: LISTs the set for `secs`, each checked, recorded in `seen`.
async fn list_for(url: &str, set: &ListSet, secs: f64, base: Instant, mut seen: ListSeen) -> Result<ListSeen, String> {
    let mut kv = KvClient::new(connect(url).await?).max_decoding_message_size(usize::MAX);
    let until = Instant::now() + Duration::from_secs_f64(secs);
    let mut k = 0;
    while Instant::now() < until {
        let (paginated, past) = KINDS[k % KINDS.len()];
        let t0 = Instant::now();
        match tokio::time::timeout(LIST_TIMEOUT, list_once(&mut kv, set, paginated, past)).await {
            Ok(Ok(bytes)) => {
                let i = k % KINDS.len();
                seen.lists[i] += 1;
                seen.max_ms[i] = seen.max_ms[i].max(t0.elapsed().as_secs_f64() * 1e3);
                let since = |t: Instant| t.duration_since(base).as_nanos() as u64;
                seen.spans.push((i, since(t0), since(Instant::now())));
                if !paginated {
                    seen.answer_mib = bytes as f64 / (1 << 20) as f64;
                }
            }
            Ok(Err(e)) => {
                seen.errors += 1;
                seen.first_error.get_or_insert(e);
            }
            Err(_) => {
                seen.errors += 1;
                seen.first_error
                    .get_or_insert(format!("a LIST took over {LIST_TIMEOUT:?}"));
            }
        }
        k += 1;
    }
    Ok(seen)
}

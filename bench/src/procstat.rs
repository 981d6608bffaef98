//! Server (and load generator) resource readings from /proc: CPU ticks and resident memory,
//! a ballast server's CPU and context switches by kind of thread; and the size of a data dir.

use std::path::Path;

/// utime+stime of `pid` in clock ticks.
pub fn cpu_ticks(pid: i32) -> Option<u64> {
    stat_ticks(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Clock ticks per second (the unit of `cpu_ticks`).
pub fn clk_tck() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// VmRSS of `pid` in MiB.
pub fn rss_mib(pid: i32) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// CPU µs per unit of work between two tick readings (None without readings or work).
pub fn cpu_us_per(before: Option<u64>, after: Option<u64>, units: u64) -> Option<f64> {
    match (before, after) {
        (Some(a), Some(b)) if units > 0 => {
            Some(b.saturating_sub(a) as f64 * 1e6 / clk_tck() / units as f64)
        }
        _ => None,
    }
}

/// Sum of the lengths of the files under `p` (du --apparent-size), without following symlinks.
pub fn dir_bytes(p: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![p.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let Ok(m) = e.path().symlink_metadata() else {
                continue;
            };
            if m.is_dir() {
                stack.push(e.path());
            } else if m.is_file() {
                total += m.len();
            }
        }
    }
    total
}

/// One kind of server thread's CPU ticks and context switches (voluntary and not), and of
/// those the involuntary ones (the thread preempted: on this 2-CPU host mostly by a client
/// thread its `send` woke).
#[derive(Clone, Copy, Default, Debug, PartialEq)]
pub struct ThreadUse {
    pub ticks: u64,
    pub switches: u64,
    pub preempted: u64,
}

impl std::ops::AddAssign for ThreadUse {
    fn add_assign(&mut self, other: ThreadUse) {
        self.ticks += other.ticks;
        self.switches += other.switches;
        self.preempted += other.preempted;
    }
}

/// The kinds of threads a ballast server names, by the start of the thread's name, and what a
/// note calls them. A server whose threads match none (etcd's are all "etcd") gets no split.
pub const THREAD_KINDS: [(&str, &str); 2] = [("front-end", "front end"), ("shard", "shards")];

/// A reading of a server's threads: the whole process's ticks and, per `THREAD_KINDS`, the
/// threads of that kind alive now.
#[derive(Clone, Copy, Default, Debug)]
pub struct ThreadReading {
    pub total_ticks: u64,
    pub kinds: [ThreadUse; THREAD_KINDS.len()],
}

/// Reads `pid`'s threads (None if the process cannot be read).
pub fn thread_reading(pid: i32) -> Option<ThreadReading> {
    let mut r = ThreadReading { total_ticks: cpu_ticks(pid)?, ..ThreadReading::default() };
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()?.flatten() {
        let dir = task.path();
        let Ok(name) = std::fs::read_to_string(dir.join("comm")) else { continue };
        let Some(kind) = THREAD_KINDS.iter().position(|(prefix, _)| name.starts_with(prefix)) else { continue };
        let ticks = std::fs::read_to_string(dir.join("stat")).ok().and_then(|s| stat_ticks(&s));
        let switches = std::fs::read_to_string(dir.join("status")).ok().map(|s| status_switches(&s));
        if let (Some(ticks), Some((switches, preempted))) = (ticks, switches) {
            r.kinds[kind] += ThreadUse { ticks, switches, preempted };
        }
    }
    Some(r)
}

/// The readings of several processes (a cluster's members) added up.
pub fn thread_reading_of(pids: &[i32]) -> Option<ThreadReading> {
    let mut sum = ThreadReading::default();
    for &pid in pids {
        let r = thread_reading(pid)?;
        sum.total_ticks += r.total_ticks;
        for (s, k) in sum.kinds.iter_mut().zip(r.kinds) {
            *s += k;
        }
    }
    Some(sum)
}

/// utime+stime from a /proc stat line (a process's or a thread's).
fn stat_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After "pid (comm) ", field 0 is state (stat field 3): utime is field 14, stime field 15.
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// Voluntary plus involuntary context switches from a /proc status file, and the involuntary.
fn status_switches(status: &str) -> (u64, u64) {
    let count = |name: &str| status.lines().find_map(|l| l.strip_prefix(name)?.split_whitespace().next()?.parse::<u64>().ok()).unwrap_or(0);
    let involuntary = count("nonvoluntary_ctxt_switches:");
    (count("voluntary_ctxt_switches:") + involuntary, involuntary)
}

/// Where the server's CPU per op went between two readings, by kind of thread: "server CPU by
/// thread, per op: front end 23.4 µs (0.43 switches, 0.10 preempted), shards 21.1 µs (0.38
/// switches, 0.05 preempted), other 0.3 µs".
/// "Other" is the rest of the process's CPU, threads that ended in between included. None
/// when no thread is of a known kind (not ballast) or nothing was done.
pub fn thread_note(before: &ThreadReading, after: &ThreadReading, ops: u64) -> Option<String> {
    if ops == 0 || after.kinds.iter().all(|k| k.ticks == 0 && k.switches == 0) {
        return None;
    }
    let us = |ticks: u64| ticks as f64 * 1e6 / clk_tck() / ops as f64;
    let mut parts = Vec::new();
    let mut named = 0;
    for ((b, a), (_, label)) in before.kinds.iter().zip(&after.kinds).zip(THREAD_KINDS) {
        let ticks = a.ticks.saturating_sub(b.ticks);
        named += ticks;
        let per_op = |after: u64, before: u64| after.saturating_sub(before) as f64 / ops as f64;
        let (switches, preempted) = (per_op(a.switches, b.switches), per_op(a.preempted, b.preempted));
        parts.push(format!("{label} {:.1} µs ({switches:.2} switches, {preempted:.2} preempted)", us(ticks)));
    }
    let other = after.total_ticks.saturating_sub(before.total_ticks).saturating_sub(named);
    parts.push(format!("other {:.1} µs", us(other)));
    Some(format!("server CPU by thread, per op: {}", parts.join(", ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_reads_as_no_kind_and_a_split_adds_up() {
        let me = std::process::id() as i32;
        let r = thread_reading(me).expect("own /proc");
        assert!(r.kinds.iter().all(|k| *k == ThreadUse::default()), "the test's threads are of no kind: {r:?}");
        assert_eq!(thread_note(&r, &r, 10), None, "no kind: no split");
        let hz = clk_tck() as u64;
        let before = ThreadReading::default();
        let after = ThreadReading { total_ticks: 3 * hz, kinds: [ThreadUse { ticks: hz, switches: 500, preempted: 0 }, ThreadUse { ticks: hz, switches: 1000, preempted: 250 }] };
        let note = thread_note(&before, &after, 1000).expect("a split");
        assert_eq!(note, "server CPU by thread, per op: front end 1000.0 µs (0.50 switches, 0.00 preempted), shards 1000.0 µs (1.00 switches, 0.25 preempted), other 1000.0 µs");
    }

    #[test]
    fn switches_are_voluntary_and_involuntary() {
        let status = "Name:\tx\nvoluntary_ctxt_switches:\t7\nnonvoluntary_ctxt_switches:\t5\n";
        assert_eq!(status_switches(status), (12, 5));
        assert_eq!(stat_ticks("12 (a b) S 1 2 3 4 5 6 7 8 9 10 30 40 0"), Some(70));
    }
}

//! Server (and load generator) resource readings from /proc: CPU ticks and resident memory;
//! and the size of a data dir.

use std::path::Path;

/// utime+stime of `pid` in clock ticks.
pub fn cpu_ticks(pid: i32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After "pid (comm) ", field 0 is state (stat field 3): utime is field 14, stime field 15.
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
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

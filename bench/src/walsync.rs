//! The server's own account of its durable WAL writes: etcd's
//! `etcd_disk_wal_fsync_duration_seconds` histogram (ballast exports it with etcd's buckets),
//! read from /metrics before and after a workload. A write the disk holds for 40 ms holds every
//! request waiting on it as long, whatever the server does, so a run's slow requests are
//! reported beside the disk's slow writes.

use std::io::{Read, Write};
use std::time::Duration;

const METRIC: &str = "etcd_disk_wal_fsync_duration_seconds";
/// The bucket bound above which a durable write counts as slow (etcd's buckets: 1 ms × 2^n).
pub const SLOW_BUCKET: &str = "0.032";
const READ_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct WalSyncs {
    /// Durable writes observed.
    pub count: u64,
    /// Those that took at most `SLOW_BUCKET` seconds.
    pub fast: u64,
}

impl WalSyncs {
    /// Writes slower than `SLOW_BUCKET`.
    pub fn slow(&self) -> u64 {
        self.count.saturating_sub(self.fast)
    }

    /// What was observed between `before` and this reading.
    pub fn since(&self, before: &WalSyncs) -> WalSyncs {
        WalSyncs { count: self.count.saturating_sub(before.count), fast: self.fast.saturating_sub(before.fast) }
    }
}

/// The histogram's count and slow bucket in a /metrics text, if it holds them.
pub fn parse(text: &str) -> Option<WalSyncs> {
    let value = |line: &str| line.split_whitespace().last()?.parse::<f64>().ok().map(|v| v as u64);
    let bucket = format!("{METRIC}_bucket{{le=\"{SLOW_BUCKET}\"}}");
    let count = format!("{METRIC}_count");
    let (mut fast, mut total) = (None, None);
    for line in text.lines() {
        if line.starts_with(&bucket) {
            fast = value(line);
        } else if line.split_whitespace().next() == Some(count.as_str()) {
            total = value(line);
        }
    }
    Some(WalSyncs { count: total?, fast: fast? })
}

/// Reads the histogram from the server at `url` (`http://host:port`; HTTP/1.0, so the answer is
/// not chunked). None if the server does not answer or has no such metric.
pub fn read(url: &str) -> Option<WalSyncs> {
    let host = url.strip_prefix("http://")?.trim_end_matches('/');
    let mut conn = std::net::TcpStream::connect(host).ok()?;
    conn.set_read_timeout(Some(READ_TIMEOUT)).ok()?;
    conn.set_write_timeout(Some(READ_TIMEOUT)).ok()?;
    write!(conn, "GET /metrics HTTP/1.0\r\nHost: {host}\r\n\r\n").ok()?;
    let mut answer = String::new();
    conn.read_to_string(&mut answer).ok()?;
    parse(&answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_count_and_the_slow_bucket() {
        let text = "# TYPE etcd_disk_wal_fsync_duration_seconds histogram\n\
            etcd_disk_wal_fsync_duration_seconds_bucket{le=\"0.016\"} 90\n\
            etcd_disk_wal_fsync_duration_seconds_bucket{le=\"0.032\"} 97\n\
            etcd_disk_wal_fsync_duration_seconds_bucket{le=\"+Inf\"} 100\n\
            etcd_disk_wal_fsync_duration_seconds_sum 0.5\n\
            etcd_disk_wal_fsync_duration_seconds_count 100\n\
            etcd_disk_wal_fsync_duration_seconds_count_other 7\n";
        let r = parse(text).unwrap();
        assert_eq!((r.count, r.fast, r.slow()), (100, 97, 3));
        let later = WalSyncs { count: 150, fast: 140 };
        assert_eq!(later.since(&r), WalSyncs { count: 50, fast: 43 });
        assert_eq!(parse("etcd_disk_wal_fsync_duration_seconds_count 5\n"), None, "no bucket, no reading");
    }
}

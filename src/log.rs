//! Structured log lines on stderr in etcd's zap JSON shape
//! (`{"level":"info","ts":"...","caller":"...","msg":"...",...}`), because scripts and test
//! harnesses written for etcd grep these lines (e.g. for readiness).

use std::io::Write;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Clone, Copy, PartialEq, PartialOrd)]
#[repr(u8)]
pub enum Level {
    Debug = 0,
    Info = 1,
    Warn = 2,
    Error = 3,
}

static MIN_LEVEL: AtomicU8 = AtomicU8::new(Level::Info as u8);

/// Sets the level from etcd's `--log-level` names; unknown names are rejected by config.
pub fn set_level(name: &str) {
    let level = match name {
        "debug" => Level::Debug,
        "warn" => Level::Warn,
        "error" | "dpanic" | "panic" | "fatal" => Level::Error,
        _ => Level::Info,
    };
    MIN_LEVEL.store(level as u8, Ordering::Relaxed);
}

pub fn debug(msg: &str, fields: &[(&str, String)]) {
    write(Level::Debug, msg, fields)
}
pub fn info(msg: &str, fields: &[(&str, String)]) {
    write(Level::Info, msg, fields)
}
pub fn warn(msg: &str, fields: &[(&str, String)]) {
    write(Level::Warn, msg, fields)
}
pub fn error(msg: &str, fields: &[(&str, String)]) {
    write(Level::Error, msg, fields)
}
/// zap's fatal line, written whatever the level (the caller then exits 1, as zap's Fatal).
pub fn fatal(msg: &str, fields: &[(&str, String)]) {
    line("fatal", msg, fields)
}

fn write(level: Level, msg: &str, fields: &[(&str, String)]) {
    if (level as u8) < MIN_LEVEL.load(Ordering::Relaxed) {
        return;
    }
    line(["debug", "info", "warn", "error"][level as usize], msg, fields)
}

fn line(name: &str, msg: &str, fields: &[(&str, String)]) {
    let mut obj = serde_json::Map::new();
    obj.insert("level".into(), name.into());
    obj.insert("ts".into(), rfc3339_now().into());
    obj.insert("caller".into(), "ballast".into());
    obj.insert("msg".into(), msg.into());
    for (k, v) in fields {
        obj.insert((*k).into(), v.clone().into());
    }
    // A closed stderr must not take the server down.
    let _ = writeln!(std::io::stderr(), "{}", serde_json::Value::Object(obj));
}

/// A duration as Go's `time.Duration.String` writes it (`1.8s`, `2m3.5s`, `250ms`), which is
/// how etcd's zap lines show durations (`"took":"1.8s"`).
pub fn go_duration(d: std::time::Duration) -> String {
    const S: u128 = 1_000_000_000;
    let ns = d.as_nanos();
    match ns {
        0 => "0s".into(),
        1..=999 => format!("{ns}ns"),
        1_000..=999_999 => format!("{}µs", decimal(ns, 1_000)),
        1_000_000..=999_999_999 => format!("{}ms", decimal(ns, 1_000_000)),
        _ => {
            let (h, m, s) = (ns / (3600 * S), ns / (60 * S) % 60, decimal(ns % (60 * S), S));
            match (h, m) {
                (0, 0) => format!("{s}s"),
                (0, _) => format!("{m}m{s}s"),
                _ => format!("{h}h{m}m{s}s"),
            }
        }
    }
}

/// `n / unit` with its fraction, trailing zeros dropped (`unit` a power of ten).
fn decimal(n: u128, unit: u128) -> String {
    let (whole, fraction) = (n / unit, n % unit);
    if fraction == 0 {
        return whole.to_string();
    }
    let digits = unit.ilog10() as usize;
    format!("{whole}.{}", format!("{fraction:0digits$}").trim_end_matches('0'))
}

/// UTC time as `2006-01-02T15:04:05.000Z` (civil-from-days, Howard Hinnant's algorithm).
fn rfc3339_now() -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = now.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        now.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use super::go_duration;
    use std::time::Duration;

    #[test]
    fn durations_read_as_go_writes_them() {
        let cases = [
            (Duration::ZERO, "0s"),
            (Duration::from_nanos(15), "15ns"),
            (Duration::from_nanos(1_500), "1.5µs"),
            (Duration::from_micros(250_000), "250ms"),
            (Duration::from_nanos(12_345_678), "12.345678ms"),
            (Duration::from_millis(1_800), "1.8s"),
            (Duration::from_secs(1), "1s"),
            (Duration::from_millis(123_500), "2m3.5s"),
            (Duration::from_secs(60), "1m0s"),
            (Duration::from_secs(3_723), "1h2m3s"),
        ];
        for (d, want) in cases {
            assert_eq!(go_duration(d), want, "{d:?}");
        }
    }
}

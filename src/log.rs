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

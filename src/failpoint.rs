//! Failpoints for crash and fault tests, in debug builds only (release builds compile every
//! check to nothing). `BALLAST_FAILPOINTS=name[=arg],name...` turns them on in the process
//! that reads it at start; the tests set it on the ballast they spawn.
//!
//! * `crash(name)`: the process aborts there, as if killed (no cleanup, no flush): crash tests
//!   name a point between two steps of a snapshot, a segment roll, a recycle or a release.
//! * `arg(name)`: the failpoint's argument, for faults with a parameter (the key whose put
//!   panics a shard, say).

/// The argument of failpoint `name` if it is on (`""` when it has none).
pub fn arg(name: &str) -> Option<&'static str> {
    if !cfg!(debug_assertions) {
        return None;
    }
    active().iter().find(|(n, _)| n == name).map(|(_, a)| a.as_str())
}

pub fn on(name: &str) -> bool {
    arg(name).is_some()
}

/// Aborts the process at failpoint `name` if it is on.
pub fn crash(name: &str) {
    if on(name) {
        abort_at(name, "");
    }
}

/// Aborts at failpoint `name` if it is on and its argument is empty or part of `subject` (a
/// file name, say: `atomic-write-before-rename=manifest.json`).
pub fn crash_for(name: &str, subject: &str) {
    if arg(name).is_some_and(|a| subject.contains(a)) {
        abort_at(name, subject);
    }
}

fn abort_at(name: &str, subject: &str) -> ! {
    crate::log::warn("failpoint: crashing here", &[("failpoint", name.to_string()), ("subject", subject.to_string())]);
    std::process::abort()
}

fn active() -> &'static [(String, String)] {
    static ACTIVE: std::sync::OnceLock<Vec<(String, String)>> = std::sync::OnceLock::new();
    ACTIVE.get_or_init(|| {
        let spec = std::env::var("BALLAST_FAILPOINTS").unwrap_or_default();
        spec.split(',')
            .filter(|s| !s.is_empty())
            .map(|s| match s.split_once('=') {
                Some((n, a)) => (n.to_string(), a.to_string()),
                None => (s.to_string(), String::new()),
            })
            .collect()
    })
}

//! One phase for a shard's periodic timers. Raft's tick and the watch hub's sync both come
//! every 100 ms by default; on phases of their own they woke an idle shard twice per period,
//! and on this VM a wake-up of an idle thread costs ~150 µs of CPU (an idle server: 21 shard
//! wake-ups and 3.3 ms of CPU a second). Deadlines on one grid, counted from one process-wide
//! epoch, expire together and are run in one wake-up.
//!
//! A job due at a beat runs in the first turn of its task after the beat; its timer fires only
//! `LATE_BY_AT_MOST` after it, for when nothing else woke the shard by then. Under load (a
//! request every few ms) the jobs so ride on wake-ups the shard has anyway.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

static EPOCH: OnceLock<Instant> = OnceLock::new();

/// How late after its beat a periodic job may run when nothing but its timer wakes the shard.
pub const LATE_BY_AT_MOST: Duration = Duration::from_millis(20);

/// What a periodic job's timer is set to at `now` for a job due at `due`.
pub fn timer_for(due: Instant, now: Instant) -> Duration {
    (due + LATE_BY_AT_MOST).saturating_duration_since(now)
}

/// The first instant after `now` that is a whole number of `period`s after the process's epoch.
pub fn next_beat(period: Duration, now: Instant) -> Instant {
    assert!(!period.is_zero(), "a beat needs a period");
    let epoch = *EPOCH.get_or_init(Instant::now);
    let since = now.saturating_duration_since(epoch).as_nanos();
    let periods = since / period.as_nanos() + 1;
    epoch + Duration::from_nanos(u64::try_from(periods * period.as_nanos()).expect("a beat within 584 years"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beats_of_one_period_coincide_and_lie_ahead() {
        let p = Duration::from_millis(100);
        let now = Instant::now();
        let a = next_beat(p, now);
        assert!(a > now && a <= now + p);
        assert_eq!(next_beat(p, a - Duration::from_nanos(1)), a, "every instant before a beat leads to it");
        assert_eq!(next_beat(p, a), a + p, "a beat at `now` is not ahead of it");
        // A multiple of the period lands on the shorter period's beats.
        let b = next_beat(p * 5, now);
        assert_eq!(next_beat(p, b - Duration::from_nanos(1)), b);
    }
}

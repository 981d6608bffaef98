//! Every applied write must reach its resource's watch: matched by revision (one key per txn,
//! so one event per revision), with the same key, the same type (put / delete) and the prev_kv
//! of the mod_revision the write replaced (none for a create). A delete of an event object that
//! carries the prev_kv of its create (preloaded or by the traffic) is its lease's expiry (the
//! traffic never deletes events), counted apart. Any other event no write accounts for is
//! unexpected. Event latency = write sent → its event received.
use std::collections::HashMap;

use ballast_bench::hist::Hist;

use super::ledger::Write;
use super::objects::Resource;
use super::watch::WatchLog;

#[derive(Default)]
pub struct EventCheck {
    /// Applied writes (each must produce one event).
    pub expected: u64,
    /// Of those, events received intact.
    pub delivered: u64,
    pub missing: u64,
    /// Received for a write, but with another key, type or prev_kv.
    pub wrong: u64,
    /// Received, for no write of ours.
    pub unexpected: u64,
    /// Deletes of event objects whose lease expired (not errors).
    pub expired: u64,
    /// Per stream: revisions not increasing.
    pub disorder: u64,
    pub progress: u64,
    pub progress_behind: u64,
    /// Events at or below the revision of an earlier progress answer on their stream.
    pub after_progress: u64,
    /// Write sent → event received, µs.
    pub lat: Hist,
    pub first_problem: Option<String>,
}

impl EventCheck {
    pub fn errors(&self) -> u64 {
        self.missing
            + self.wrong
            + self.unexpected
            + self.disorder
            + self.progress_behind
            + self.after_progress
    }
}

fn show(k: &[u8]) -> String {
    String::from_utf8_lossy(k).into_owned()
}

/// `preloaded_events`: the event objects the preload wrote (key, create revision).
pub fn check(writes: &[Write], preloaded_events: &[(Vec<u8>, i64)], log: &WatchLog) -> EventCheck {
    let mut c = EventCheck::default();
    let created: HashMap<&[u8], i64> = preloaded_events
        .iter()
        .map(|(k, rev)| (k.as_slice(), *rev))
        .chain(
            writes
                .iter()
                .filter(|w| w.res == Resource::Events && !w.delete)
                .map(|w| (w.key.as_slice(), w.rev)),
        )
        .collect();
    for r in Resource::ALL {
        let st = &log.streams[r.index()];
        c.disorder += st.disorder;
        c.progress += st.progress;
        c.progress_behind += st.progress_behind;
        c.after_progress += st.after_progress;
        if let Some(o) = &st.first_odd {
            c.first_problem.get_or_insert_with(|| o.clone());
        }
        let by_rev: HashMap<i64, usize> = st
            .events
            .iter()
            .enumerate()
            .map(|(n, e)| (e.rev, n))
            .collect();
        let mut matched = vec![false; st.events.len()];
        for w in writes.iter().filter(|w| w.res == r) {
            c.expected += 1;
            let Some(&n) = by_rev.get(&w.rev) else {
                c.missing += 1;
                c.first_problem.get_or_insert_with(|| {
                    format!("no event for revision {} ({})", w.rev, show(&w.key))
                });
                continue;
            };
            matched[n] = true;
            let e = &st.events[n];
            if e.key != w.key || e.delete != w.delete || e.prev_rev != w.prev_rev {
                c.wrong += 1;
                c.first_problem.get_or_insert_with(|| {
                    format!(
                        "event at revision {}: key {} delete {} prev_kv rev {}, the write: key {} delete {} replaced rev {}",
                        w.rev,
                        show(&e.key),
                        e.delete,
                        e.prev_rev,
                        show(&w.key),
                        w.delete,
                        w.prev_rev
                    )
                });
                continue;
            }
            c.delivered += 1;
            c.lat.record(e.at_ns.saturating_sub(w.sent_ns) / 1000);
        }
        let unmatched = st.events.iter().zip(&matched).filter(|(_, m)| !**m).map(|(e, _)| e);
        let (mut expired, mut extra) = (0, 0);
        for e in unmatched {
            if r == Resource::Events && e.delete && created.get(e.key.as_slice()) == Some(&e.prev_rev) {
                expired += 1;
            } else {
                extra += 1;
            }
        }
        c.expired += expired;
        if extra > 0 {
            c.unexpected += extra;
            c.first_problem.get_or_insert_with(|| {
                format!("{extra} events on {} for no write of ours", r.prefix())
            });
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::k8s::watch::{Seen, StreamLog};

    fn seen(rev: i64, key: &str, delete: bool, prev_rev: i64) -> Seen {
        Seen { rev, key: key.as_bytes().to_vec(), delete, prev_rev, at_ns: 0 }
    }

    fn write(rev: i64, key: &str) -> Write {
        Write { res: Resource::Events, rev, key: key.as_bytes().to_vec(), delete: false, prev_rev: 0, sent_ns: 0 }
    }

    #[test]
    fn an_expired_events_delete_is_counted_apart_and_any_other_stray_event_is_an_error() {
        let mut log = WatchLog { streams: Resource::ALL.iter().map(|_| StreamLog::default()).collect(), ..Default::default() };
        let st = &mut log.streams[Resource::Events.index()];
        st.events.push(seen(10, "/registry/events/a", false, 0));
        // The lease of a (written at 10) and of the preloaded p (at 3) expired at 20.
        st.events.push(seen(20, "/registry/events/a", true, 10));
        st.events.push(seen(20, "/registry/events/p", true, 3));
        let c = check(&[write(10, "/registry/events/a")], &[(b"/registry/events/p".to_vec(), 3)], &log);
        assert_eq!((c.expected, c.delivered, c.expired, c.errors()), (1, 1, 2, 0));

        // A delete whose prev_kv is not the create, or of a key never written: errors.
        log.streams[Resource::Events.index()].events.push(seen(21, "/registry/events/p", true, 4));
        log.streams[Resource::Events.index()].events.push(seen(22, "/registry/events/z", true, 1));
        let c = check(&[write(10, "/registry/events/a")], &[(b"/registry/events/p".to_vec(), 3)], &log);
        assert_eq!((c.expired, c.unexpected), (2, 2));
    }
}

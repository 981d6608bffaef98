//! Every applied write must reach its resource's watch: matched by revision (one key per txn,
//! so one event per revision), with the same key, the same type (put / delete) and the prev_kv
//! of the mod_revision the write replaced (none for a create). Events no write accounts for are
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

pub fn check(writes: &[Write], log: &WatchLog) -> EventCheck {
    let mut c = EventCheck::default();
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
        let mut matched = 0u64;
        for w in writes.iter().filter(|w| w.res == r) {
            c.expected += 1;
            let Some(e) = by_rev.get(&w.rev).map(|n| &st.events[*n]) else {
                c.missing += 1;
                c.first_problem.get_or_insert_with(|| {
                    format!("no event for revision {} ({})", w.rev, show(&w.key))
                });
                continue;
            };
            matched += 1;
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
        let extra = st.events.len() as u64 - matched;
        if extra > 0 {
            c.unexpected += extra;
            c.first_problem.get_or_insert_with(|| {
                format!("{extra} events on {} for no write of ours", r.prefix())
            });
        }
    }
    c
}

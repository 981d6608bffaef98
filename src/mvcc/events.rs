//! Watch events from one shard's store: what changed in a window of main revisions, as etcd's
//! watchers see it — a PUT with the key's record, a DELETE with the key and the deleting
//! revision, and on request the key's previous state (its value at the revision before, as
//! etcd reads it; none when that revision is compacted). From the change log while it covers
//! the window, else by scanning the watched range's histories.

use super::index::{KeyHistory, RecordRef};
use super::store::Store;
use super::{KeyRange, Rev};
use crate::error::{Error, Result};
use crate::proto::mvccpb::KeyValue;

/// One change, as a watcher receives it.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangeEvent {
    pub rev: Rev,
    pub delete: bool,
    pub kv: KeyValue,
    pub prev: Option<KeyValue>,
}

/// The events of keys in `range` (every key when `None`) at main revisions `from..=to`.
#[derive(Debug, Clone)]
pub struct EventQuery {
    pub range: Option<KeyRange>,
    pub from: i64,
    pub to: i64,
    /// Fill `ChangeEvent::prev`.
    pub prev: bool,
    /// Answer the events of at most this many main revisions (each whole, however many
    /// events it has).
    pub max_revisions: usize,
}

/// Events in revision order, complete up to main revision `to` (the query's, or less when
/// `max_revisions` cut it short).
#[derive(Debug, Default)]
pub struct EventsPart {
    pub events: Vec<ChangeEvent>,
    pub to: i64,
}

impl Store {
    /// The events of `q`, at most `q.max_revisions` main revisions of them. Only those are
    /// built: a watcher far behind is caught up a step at a time, and each step used to build
    /// every event of its whole window and keep the first 1000 revisions (a shard busy for a
    /// second a step, a million revisions behind).
    pub fn events(&self, q: &EventQuery) -> Result<EventsPart> {
        if q.from < self.compact_rev() {
            return Err(Error::Compacted);
        }
        Ok(if self.changes().covers(q.from) { self.logged_events(q) } else { self.scanned_events(q) })
    }

    /// From the change log, in revision order: stops at the first revision past the limit.
    fn logged_events(&self, q: &EventQuery) -> EventsPart {
        let mut events = Vec::new();
        let mut limit = RevisionLimit::new(q.max_revisions);
        for (rev, key) in self.changes().between(q.from, q.to) {
            if !q.range.as_ref().is_none_or(|r| r.contains(key)) {
                continue;
            }
            let Some(e) = self.history(key).and_then(|h| self.event(key, h, h.record(*rev)?, q.prev)) else { continue };
            if !limit.admits(e.rev.main) {
                return EventsPart { events, to: limit.last() };
            }
            events.push(e);
        }
        EventsPart { events, to: q.to }
    }

    /// From the range's histories (a window the log no longer covers): the records' revisions
    /// first, to find where the answer ends, then the events up to there.
    fn scanned_events(&self, q: &EventQuery) -> EventsPart {
        let all = KeyRange::new(b"\0", b"\0");
        let range = q.range.as_ref().unwrap_or(&all);
        let limit = q.max_revisions.max(1);
        // The window's first `limit + 1` main revisions with an event, no more kept at a time:
        // one past the answer's says whether the answer is cut short.
        let mut first = std::collections::BTreeSet::new();
        for (_, hist) in self.histories(range) {
            for rec in hist.between(q.from - 1, q.to).iter().filter(|rec| self.is_event(hist, *rec)) {
                if first.len() <= limit || first.last().is_some_and(|&l| rec.mod_rev < l) {
                    first.insert(rec.mod_rev);
                    if first.len() > limit.saturating_add(1) {
                        first.pop_last();
                    }
                }
            }
        }
        let to = if first.len() > limit { *first.iter().nth(limit - 1).expect("more than the limit") } else { q.to };
        let mut events = Vec::new();
        for (key, hist) in self.histories(range) {
            events.extend(hist.between(q.from - 1, to).iter().filter_map(|rec| self.event(key, hist, rec, q.prev)));
        }
        events.sort_by_key(|e| e.rev);
        EventsPart { events, to }
    }

    /// etcd's compaction keeps, of the records at the compaction revision, only each key's
    /// newest there, and not even that when it is a tombstone (`keyIndex.compact`): a watch
    /// from exactly that revision sees neither, whether this store dropped them yet or not (it
    /// keeps a tombstone until a snapshot segment holds it).
    fn is_event(&self, hist: KeyHistory<'_>, rec: RecordRef<'_>) -> bool {
        rec.mod_rev != self.compact_rev() || hist.at(rec.mod_rev).map(|r| r.rev()) == Some(rec.rev())
    }

    fn event(&self, key: &[u8], hist: KeyHistory<'_>, rec: RecordRef<'_>, with_prev: bool) -> Option<ChangeEvent> {
        if !self.is_event(hist, rec) {
            return None;
        }
        let delete = rec.is_tombstone();
        let kv = if delete { KeyValue { key: key.to_vec(), mod_revision: rec.mod_rev, ..Default::default() } } else { rec.to_kv(key, false) };
        // etcd gives no prev_kv to a put that creates the key (create revision = its revision).
        let creates = !delete && rec.create_rev == rec.mod_rev;
        let before = rec.mod_rev - 1;
        let prev = (with_prev && !creates && before >= self.compact_rev()).then(|| hist.at(before).map(|p| p.to_kv(key, false))).flatten();
        Some(ChangeEvent { rev: rec.rev(), delete, kv, prev })
    }
}

/// Keeps the events of the first `max_revisions` main revisions (etcd batches history by
/// revisions: watchBatchMaxRevs).
pub fn cut(mut events: Vec<ChangeEvent>, to: i64, max_revisions: usize) -> EventsPart {
    let mut limit = RevisionLimit::new(max_revisions);
    if let Some(i) = events.iter().position(|e| !limit.admits(e.rev.main)) {
        events.truncate(i);
        return EventsPart { events, to: limit.last() };
    }
    EventsPart { events, to }
}

/// Counts the main revisions of events taken in revision order, up to a limit (at least 1).
struct RevisionLimit {
    left: usize,
    last: Option<i64>,
}

impl RevisionLimit {
    fn new(max_revisions: usize) -> RevisionLimit {
        RevisionLimit { left: max_revisions.max(1), last: None }
    }

    /// Whether an event at main revision `main` (not below the last taken) still fits.
    fn admits(&mut self, main: i64) -> bool {
        if self.last == Some(main) {
            return true;
        }
        if self.left == 0 {
            return false;
        }
        self.left -= 1;
        self.last = Some(main);
        true
    }

    /// The last revision taken: where an answer cut short ends.
    fn last(&self) -> i64 {
        self.last.expect("a revision was taken before one did not fit")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mvcc::store::WriteOp;

    fn put(s: &mut Store, k: &str, v: &str, rev: Rev) {
        s.write(WriteOp::Put { key: k.into(), value: Some(v.into()), lease: Some(0), prev_kv: false }, rev).unwrap();
    }

    fn query(range: Option<KeyRange>, from: i64, to: i64) -> EventQuery {
        EventQuery { range, from, to, prev: true, max_revisions: usize::MAX }
    }

    #[test]
    fn events_from_the_log_and_from_a_scan_agree() {
        let mut s = Store::default();
        put(&mut s, "a", "1", Rev::main(2));
        put(&mut s, "b", "1", Rev::main(3));
        s.write(WriteOp::DeleteRange { range: KeyRange::new(b"a", b""), prev_kv: false }, Rev::new(4, 0)).unwrap();
        put(&mut s, "a", "2", Rev::new(4, 1));
        let logged = s.events(&query(None, 3, 4)).unwrap();
        let kinds: Vec<_> = logged.events.iter().map(|e| (e.kv.key.clone(), e.rev, e.delete)).collect();
        assert_eq!(kinds, [(b"b".to_vec(), Rev::main(3), false), (b"a".to_vec(), Rev::new(4, 0), true), (b"a".to_vec(), Rev::new(4, 1), false)]);
        // The delete of the txn at 4 carries the state at 3 as prev; its put creates the key
        // again, and a creating put has none, as in etcd.
        assert_eq!(logged.events[1].prev.as_ref().unwrap().value, &b"1"[..]);
        assert!(logged.events[2].prev.is_none());
        assert_eq!(logged.events[1].kv, KeyValue { key: b"a".to_vec(), mod_revision: 4, ..Default::default() });
        assert_eq!(s.scanned_events(&query(None, 3, 4)).events, logged.events);
        assert_eq!(s.scanned_events(&query(Some(KeyRange::new(b"b", b"")), 3, 4)).events, logged.events[..1]);
    }

    /// Cut short, both reads end at the same whole revision with the same events, however the
    /// window and the limit fall (and whichever revisions the range has events at).
    #[test]
    fn both_reads_cut_a_long_window_at_the_same_revision() {
        let mut s = Store::default();
        for rev in 2..40 {
            let key = ["a", "b", "c"][(rev as usize * 7) % 3];
            if rev % 5 == 0 {
                s.write(WriteOp::DeleteRange { range: KeyRange::new(key.as_bytes(), b""), prev_kv: false }, Rev::new(rev, 0)).unwrap();
                put(&mut s, "c", &rev.to_string(), Rev::new(rev, 1));
            } else {
                put(&mut s, key, &rev.to_string(), Rev::main(rev));
            }
        }
        for range in [None, Some(KeyRange::new(b"a", b"")), Some(KeyRange::new(b"b", b"d"))] {
            for from in [2, 3, 10, 25, 39] {
                for max_revisions in [1, 2, 3, 7, 100] {
                    let q = EventQuery { range: range.clone(), from, to: 39, prev: true, max_revisions };
                    let (logged, scanned) = (s.logged_events(&q), s.scanned_events(&q));
                    let all = cut(s.logged_events(&EventQuery { max_revisions: usize::MAX, ..q.clone() }).events, 39, max_revisions);
                    let what = format!("{range:?} from {from}, {max_revisions} revisions");
                    assert_eq!((&logged.events, logged.to), (&all.events, all.to), "logged: {what}");
                    assert_eq!((&scanned.events, scanned.to), (&all.events, all.to), "scanned: {what}");
                }
            }
        }
    }

    #[test]
    fn at_the_compaction_revision_only_each_keys_newest_live_record_is_an_event() {
        let mut s = Store::default();
        put(&mut s, "x", "1", Rev::main(2));
        put(&mut s, "y", "1", Rev::main(3));
        // One txn at 4: x deleted; y put, deleted and put again; z put then deleted.
        s.write(WriteOp::DeleteRange { range: KeyRange::new(b"x", b""), prev_kv: false }, Rev::new(4, 0)).unwrap();
        put(&mut s, "y", "2", Rev::new(4, 1));
        s.write(WriteOp::DeleteRange { range: KeyRange::new(b"y", b""), prev_kv: false }, Rev::new(4, 2)).unwrap();
        put(&mut s, "y", "3", Rev::new(4, 3));
        put(&mut s, "z", "1", Rev::new(4, 4));
        s.write(WriteOp::DeleteRange { range: KeyRange::new(b"z", b""), prev_kv: false }, Rev::new(4, 5)).unwrap();
        put(&mut s, "w", "1", Rev::main(5));
        let before: Vec<_> = s.events(&query(None, 4, 5)).unwrap().events.iter().map(|e| (e.rev, e.delete)).collect();
        assert_eq!(before.len(), 7, "before the compaction every record is an event: {before:?}");
        s.set_compact_rev(4); // logical only: the records are all still there
        let kinds = |s: &Store| -> Vec<_> { s.events(&query(None, 4, 5)).unwrap().events.iter().map(|e| (e.kv.key.clone(), e.rev, e.delete)).collect() };
        let expected = [(b"y".to_vec(), Rev::new(4, 3), false), (b"w".to_vec(), Rev::main(5), false)];
        assert_eq!(kinds(&s), expected);
        assert_eq!(s.scanned_events(&query(None, 4, 5)).events.len(), 2, "the scan agrees with the log");
        s.compact_physical(4);
        assert_eq!(kinds(&s), expected, "and so after the physical compaction");
    }

    #[test]
    fn a_compacted_window_is_refused_and_long_answers_end_at_a_whole_revision() {
        let mut s = Store::default();
        for rev in 2..10 {
            put(&mut s, "k", "v", Rev::main(rev));
        }
        s.compact(5);
        assert_eq!(s.events(&query(None, 4, 9)).unwrap_err(), Error::Compacted);
        let part = s.events(&EventQuery { max_revisions: 2, ..query(None, 5, 9) }).unwrap();
        assert_eq!((part.events.len(), part.to), (2, 6));
        assert!(part.events[0].prev.is_none(), "the state before 5 is compacted");
    }
}

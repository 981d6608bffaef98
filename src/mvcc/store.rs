//! One shard's MVCC store: the keys whose hash maps to this shard, each with its history.
//! Reads name a main revision; writes carry the revision the applier assigned (all writes of
//! one txn share its main revision and are ordered by their sub revision). The store checks
//! revisions against its compaction point itself, so a read racing a compaction gets etcd's
//! "compacted" error rather than a partial answer.

use std::cell::RefCell;

use super::changes::ChangeLog;
use super::index::{KeyHistory, Record};
use super::key_entry::{KeyEntry, KeySet};
use super::page_ends::PageEnds;
use super::segment::{ChunkSink, SegKey};
use super::value::Value;
use super::{KeyRange, Rev};
use crate::error::{Error, Result};
use crate::proto::mvccpb::KeyValue;

/// A read of one range on one shard.
#[derive(Debug, Clone)]
pub struct RangeQuery {
    pub range: KeyRange,
    /// Revision to read at; must be >= the compaction point. Callers resolve 0 to "current".
    pub rev: i64,
    /// Return at most this many keys (in key order); 0 = all. `count` is always the full count.
    pub limit: usize,
    pub count_only: bool,
    pub keys_only: bool,
    /// Nothing more is written at `rev` (the front end's reads; not a txn's, whose later ops
    /// still write at its revision): the read may take and leave its count at a page end
    /// (`page_ends.rs`).
    pub sealed: bool,
}

#[derive(Debug, Default)]
pub struct RangePart {
    pub kvs: Vec<KeyValue>,
    pub count: usize,
    /// The revision the part was read at (set by the shard's read; 0 elsewhere).
    pub rev: i64,
    /// The count of the whole range, told by a page end: the read ends once it has its keys.
    known_count: Option<usize>,
}

/// A write on one shard, at the revision carried by the batch.
#[derive(Debug, Clone)]
pub enum WriteOp {
    /// `value`/`lease` `None` keep the key's current one (ignore_value / ignore_lease).
    Put { key: Vec<u8>, value: Option<Vec<u8>>, lease: Option<i64>, prev_kv: bool },
    DeleteRange { range: KeyRange, prev_kv: bool },
}

#[derive(Debug)]
pub enum WriteResult {
    Put { prev: Option<KeyValue> },
    Deleted { count: i64, prev_kvs: Vec<KeyValue> },
}

#[derive(Debug, Default)]
pub struct Store {
    /// Each key with its history in one block (`key_entry.rs`).
    keys: KeySet,
    compact_rev: i64,
    /// Bytes held by all records (live and historical): dbSizeInUse.
    size_bytes: u64,
    /// Bytes of every record written since the store was built (never decreases; compaction
    /// does not shrink what the disk holds until the next segment replaces the old one).
    written_bytes: u64,
    /// Keys live at the newest revision.
    live_keys: u64,
    /// Revision of the newest snapshot segment holding this store's records. A key deleted
    /// after it keeps its tombstone through physical compaction until a segment holds it:
    /// otherwise the next delta segment would not say the key is gone, and the older segment
    /// holding its last put would bring it back at boot.
    segment_rev: i64,
    /// The last writes, for the watch hub (`changes.rs`).
    changes: ChangeLog,
    /// Where recent paginated reads ended (`page_ends.rs`).
    page_ends: RefCell<PageEnds>,
}

/// Where the next chunk of a snapshot starts: at `key`, whose first `written` records (of those
/// the snapshot holds) are in earlier chunks.
pub struct SnapCursor {
    pub key: Vec<u8>,
    pub written: usize,
}

impl RangePart {
    /// An empty part of a read at `rev`.
    pub fn at(rev: i64) -> RangePart {
        RangePart { rev, ..RangePart::default() }
    }
}

impl Store {
    pub fn size_bytes(&self) -> u64 {
        self.size_bytes
    }

    pub fn written_bytes(&self) -> u64 {
        self.written_bytes
    }

    pub fn live_keys(&self) -> u64 {
        self.live_keys
    }

    pub(super) fn changes(&self) -> &ChangeLog {
        &self.changes
    }

    pub(super) fn history(&self, key: &[u8]) -> Option<KeyHistory<'_>> {
        self.keys.get(key).map(KeyEntry::history)
    }

    pub(super) fn histories<'a>(&'a self, range: &'a KeyRange) -> impl Iterator<Item = (&'a [u8], KeyHistory<'a>)> + 'a {
        range.bounds().into_iter().flat_map(move |b| self.keys.range(b)).map(|e| (e.key(), e.history()))
    }

    /// Every key from `lower` on, in key order, with its history.
    pub(super) fn keys_from<'a>(&'a self, lower: std::ops::Bound<&'a [u8]>) -> impl Iterator<Item = (&'a [u8], KeyHistory<'a>)> + 'a {
        self.keys.range((lower, std::ops::Bound::Unbounded)).map(|e| (e.key(), e.history()))
    }

    /// (lease, key) of every live key put with a lease: the lessor's keys after a restart.
    pub fn leased_keys(&self) -> Vec<(i64, Vec<u8>)> {
        self.keys.iter().filter_map(|e| e.history().latest().filter(|r| r.lease != 0).map(|r| (r.lease, e.key().to_vec()))).collect()
    }

    pub fn range(&self, q: &RangeQuery) -> Result<RangePart> {
        let mut part = RangePart::default();
        let mut after = self.range_step(q, &mut part, None, StepBound::UNBOUNDED)?;
        while let Some(last) = after {
            after = self.range_step(q, &mut part, Some(&last), StepBound::UNBOUNDED)?;
        }
        Ok(part)
    }

    /// One step of a read: adds to `part` what `q` finds among the next keys of its range after
    /// `after` (from its start with `None`) within `bound`, and returns the last key visited
    /// while the range may go on. The first step checks the revision against the compaction
    /// point; a caller continuing after others ran in between must hold back physical compaction
    /// beyond `q.rev` meanwhile (the shard's `reading`), and then reads what the first step
    /// would have read.
    pub fn range_step(&self, q: &RangeQuery, part: &mut RangePart, after: Option<&[u8]>, bound: StepBound) -> Result<Option<Vec<u8>>> {
        if after.is_none() && q.rev < self.compact_rev {
            return Err(Error::Compacted);
        }
        assert!(bound.max_keys > 0, "a read step visits at least one key");
        if let (Some(key), None) = (q.range.single_key(), after) {
            // One descent of the tree; a range over [key, key] makes two (both ends).
            if let Some(rec) = self.keys.get(key).and_then(|e| e.history().at(q.rev)) {
                found(q, part, key, rec);
            }
            return Ok(None);
        }
        let Some((start, end)) = q.range.bounds() else { return Ok(None) };
        let pages = q.sealed && q.limit > 0 && !q.count_only;
        if pages && after.is_none() {
            part.known_count = self.page_ends.borrow().count_of(&q.range, q.rev);
        }
        let start = after.map_or(start, std::ops::Bound::Excluded);
        let mut last: Option<&[u8]> = None;
        // The clock starts here: a single-key read (above) never looks at it.
        let until = bound.time.map(|t| std::time::Instant::now() + t);
        for (visited, e) in self.keys.range_prefetched((start, end)).enumerate() {
            if visited > 0 && bound.ends_before(visited, until) {
                return Ok(last.map(<[u8]>::to_vec));
            }
            let key = e.key();
            last = Some(key);
            let Some(rec) = e.history().at(q.rev) else { continue };
            found(q, part, key, rec);
            if let (Some(count), true) = (part.known_count, part.kvs.len() == q.limit) {
                part.count = count;
                break;
            }
        }
        debug_assert!(part.known_count.is_none_or(|n| n == part.count), "a page end told {:?}, counted {}", part.known_count, part.count);
        if pages && part.kvs.len() == q.limit {
            self.page_ends.borrow_mut().record(&q.range, q.rev, &part.kvs, part.count);
        }
        Ok(None)
    }

    pub fn write(&mut self, op: WriteOp, rev: Rev) -> Result<WriteResult> {
        match op {
            WriteOp::Put { key, value, lease, prev_kv } => self.put(key, value, lease, prev_kv, rev),
            WriteOp::DeleteRange { range, prev_kv } => Ok(self.delete_range(&range, prev_kv, rev)),
        }
    }

    fn put(
        &mut self,
        key: Vec<u8>,
        value: Option<Vec<u8>>,
        lease: Option<i64>,
        prev_kv: bool,
        rev: Rev,
    ) -> Result<WriteResult> {
        // A key new to the store costs a second descent of the tree to insert it; the first
        // one brought the nodes and keys on the path into the cache.
        let mut entry = self.keys.get_mut(&key);
        let prev = entry.as_ref().and_then(|e| e.history().latest());
        let (value, lease) = match (prev, value, lease) {
            (_, Some(v), Some(l)) => (Value::from(v), l),
            (None, _, _) => return Err(Error::KeyNotFound),
            (Some(p), v, l) => (v.map_or_else(|| p.value.clone(), Value::from), l.unwrap_or(p.lease)),
        };
        let (create_rev, version) = prev.map_or((rev.main, 1), |p| (p.create_rev, p.version + 1));
        let prev_out = prev.filter(|_| prev_kv).map(|p| p.to_kv(&key, false));
        let new_key = prev.is_none();
        let rec = Record { mod_rev: rev.main, sub: rev.sub, create_rev, version, lease, value };
        let size = rec.size_bytes();
        self.changes.record(rev, &key);
        match &mut entry {
            Some(e) => e.push(rec),
            None => self.keys.insert(KeyEntry::new(&key, vec![rec])),
        }
        if new_key {
            self.live_keys += 1;
        }
        self.size_bytes += size;
        self.written_bytes += size;
        Ok(WriteResult::Put { prev: prev_out })
    }

    fn delete_range(&mut self, range: &KeyRange, prev_kv: bool, rev: Rev) -> WriteResult {
        let mut count = 0;
        let mut prev_kvs = Vec::new();
        let Some(bounds) = range.bounds() else { return WriteResult::Deleted { count, prev_kvs } };
        for mut e in self.keys.range_mut(bounds) {
            let Some(live) = e.history().latest() else { continue };
            if prev_kv {
                prev_kvs.push(live.to_kv(e.key(), false));
            }
            // One sub revision per deleted key, in key order, as etcd numbers them.
            let sub = rev.sub + count as u32;
            let tomb = Record { mod_rev: rev.main, sub, create_rev: 0, version: 0, lease: 0, value: Vec::new().into() };
            self.size_bytes += tomb.size_bytes();
            self.written_bytes += tomb.size_bytes();
            self.changes.record(Rev::new(rev.main, sub), e.key());
            e.push(tomb);
            count += 1;
        }
        self.live_keys -= count as u64;
        WriteResult::Deleted { count, prev_kvs }
    }

    pub fn compact_rev(&self) -> i64 {
        self.compact_rev
    }

    /// Logical compaction: reads below `rev` fail with `Compacted` from now on. The history
    /// stays until `compact_physical`, which may run later (e.g. after a snapshot finishes).
    pub fn set_compact_rev(&mut self, rev: i64) {
        self.compact_rev = self.compact_rev.max(rev);
    }

    /// Both steps at once.
    pub fn compact(&mut self, rev: i64) {
        self.set_compact_rev(rev);
        self.compact_physical(rev);
    }

    /// One step of listing the keys written at main revisions `since + 1..=rev`, for a delta
    /// snapshot (`since > 0`) to visit instead of every key: adds up to `max` of them (as the
    /// change log has them, after the write `after`; from the first with `None`) to `out`, and
    /// returns `Some(None)` when that was the last, `Some(Some(write))` to go on after `write`.
    /// `None`: the delta walks every key instead, because the change log no longer holds every
    /// such write, or because they are many beside the keys (a walk reads the blocks in order,
    /// a lookup descends the tree). The caller sorts `out` and drops repeats.
    pub fn keys_written_step(&self, since: i64, rev: i64, after: Option<Rev>, max: usize, out: &mut Vec<Box<[u8]>>) -> Option<Option<Rev>> {
        assert!(max > 0, "a step lists at least one write");
        if since == 0 || !self.changes.covers(since + 1) {
            return None;
        }
        let mut last = None;
        for (n, (at, key)) in self.changes.after(after.unwrap_or(Rev::new(since, u32::MAX)), rev).enumerate() {
            if n == max {
                return Some(last);
            }
            if out.len() * WALK_BELOW_KEYS_PER_WRITTEN >= self.keys.len() {
                return None;
            }
            out.push(key.clone());
            last = Some(*at);
        }
        Some(None)
    }

    /// One chunk of a snapshot at `rev` holding the records after `since` (0: a full snapshot),
    /// from `from` on (the first key when `None`): up to `max_keys` keys that have such records,
    /// each with them, about `max_bytes` of records at most (a key with more history is split
    /// over several chunks, its records in order: loading joins them), looking at no more than
    /// `max_keys * SCAN_PER_KEY` keys: every key, or only those of `written` (sorted; from
    /// `keys_written_step`, which must name every key with records in `since + 1..=rev`), and
    /// for no longer than `bound.time` (at least one key: then the next call goes on). Also
    /// returns where to continue (`None` once no key is left to look at). Needs the records up
    /// to `rev` unchanged between calls (physical compaction waits for snapshots).
    pub fn snapshot_chunk<C: ChunkSink>(&self, from: Option<&SnapCursor>, since: i64, rev: i64, written: Option<&[Box<[u8]>]>, bound: ChunkBound) -> (C, Option<SnapCursor>) {
        use std::ops::Bound;
        const SCAN_PER_KEY: usize = 16;
        let ChunkBound { max_keys, max_bytes, time } = bound;
        let until = time.map(|t| std::time::Instant::now() + t);
        let lower = from.map_or(Bound::Unbounded, |c| Bound::Included(c.key.as_slice()));
        let (mut keys, mut bytes) = (C::default(), 0u64);
        // A walk reads every key's block (a delta's walk of 1M keys reads 1M blocks for the 100k
        // keys it writes): asking ahead overlaps the misses (put at 1000 clients on 1M keys,
        // 21.6 → 20.8 µs of server CPU per put, four rounds).
        let entries: Box<dyn Iterator<Item = &KeyEntry>> = match written {
            None => Box::new(self.keys.range_prefetched((lower, Bound::Unbounded))),
            Some(list) => {
                let start = from.map_or(0, |c| list.partition_point(|k| **k < *c.key));
                Box::new(list[start..].iter().filter_map(|k| {
                    let e = self.keys.get(k);
                    debug_assert!(e.is_some(), "a key written since the last snapshot left the store before the next one");
                    e
                }))
            }
        };
        for (scanned, e) in entries.enumerate() {
            let (k, all) = (e.key(), e.history().between(since, rev));
            let done = from.filter(|c| c.key == k).map_or(0, |c| c.written);
            let mut end = done;
            while end < all.len() && (end == done || bytes < max_bytes) {
                bytes += all.get(end).size_bytes() + k.len() as u64;
                end += 1;
            }
            if end > done {
                keys.add_key(k, all.slice(done, end));
            }
            let cursor = || Some(SnapCursor { key: k.to_vec(), written: end });
            if end < all.len() || keys.keys() == max_keys || bytes >= max_bytes || scanned + 1 == max_keys * SCAN_PER_KEY || out_of_time(scanned + 1, CHUNK_CLOCK_KEYS, until) {
                return (keys, cursor());
            }
        }
        (keys, None)
    }

    /// Points the values of `key`'s `records` (as read back from the segment just written,
    /// values in `map`) into that mapping, off the heap and out of older segments. Records gone
    /// since are left alone.
    pub fn adopt_mapped(&mut self, map: &std::sync::Arc<super::value::Mapping>, key: &[u8], records: &[Record]) {
        let Some(mut entry) = self.keys.get_mut(key) else { return };
        for r in records {
            let Some(value) = entry.value_mut(r.rev()) else { continue };
            // A record is immutable once written: same key and revision, same value. Values
            // in an older segment move too, so the older mapping (and its deleted file) goes.
            let elsewhere = match value {
                Value::Inline(_) => true,
                Value::Mapped(m) => !m.is_in(map),
            };
            if elsewhere && value.len() == r.value.len() {
                debug_assert!(match &r.value {
                    Value::Inline(_) => true,
                    Value::Mapped(m) => m.is_in(map),
                });
                *value = r.value.clone();
            }
        }
    }

    /// A segment holding every record up to `rev` is durable (see `segment_rev`).
    pub fn set_segment_rev(&mut self, rev: i64) {
        self.segment_rev = self.segment_rev.max(rev);
    }

    /// Rebuilds a store from snapshot contents (a snapshot at `rev`).
    pub fn restore(keys: impl IntoIterator<Item = SegKey>, compact_rev: i64, rev: i64) -> Store {
        let mut s = Store { compact_rev, segment_rev: rev, changes: ChangeLog::starting_after(rev), ..Store::default() };
        let (mut size_bytes, mut live_keys) = (0, 0);
        // Built in one go (sorted, then bulk-loaded into full nodes): inserting keys in order
        // one by one leaves every node half full.
        s.keys = keys
            .into_iter()
            .filter(|k| !k.records.is_empty())
            .map(|k| {
                let entry = KeyEntry::new(&k.key, k.records);
                size_bytes += entry.history().size_bytes();
                live_keys += u64::from(entry.history().latest().is_some());
                entry
            })
            .collect();
        (s.size_bytes, s.live_keys) = (size_bytes, live_keys);
        s
    }

    /// Drops all history no read at or above `rev` can see; keys deleted at or before `rev`
    /// disappear.
    pub fn compact_physical(&mut self, rev: i64) {
        let mut cursor = None;
        while let Some(next) = self.compact_chunk(rev, cursor.as_deref(), CompactBound::UNBOUNDED) {
            cursor = Some(next);
        }
    }

    /// Physical compaction of the keys after `after`, as many as `bound` allows; returns where
    /// to continue (`None` when the last key was done). Chunks let a shard compact between writes.
    pub fn compact_chunk(&mut self, rev: i64, after: Option<&[u8]>, bound: CompactBound) -> Option<Vec<u8>> {
        use std::ops::Bound;
        let CompactBound { max_keys, max_records, time } = bound;
        assert!(rev <= self.compact_rev, "physical compaction beyond the logical one");
        assert!(max_keys > 0 && max_records > 0, "a compaction step visits at least one key");
        let until = time.map(|t| std::time::Instant::now() + t);
        let lower = after.map_or(Bound::Unbounded, Bound::Excluded);
        let (mut freed, mut visited, mut records, mut dropped, mut last) = (0, 0, 0, 0, None);
        let mut emptied = Vec::new();
        let mut more = false;
        let segment_rev = self.segment_rev;
        for mut e in self.keys.range_mut((lower, Bound::Unbounded)) {
            if visited == max_keys || records >= max_records || (visited > 0 && out_of_time(visited, COMPACT_CLOCK_KEYS, until)) {
                more = true;
                break;
            }
            let before = e.history().len();
            records += before;
            freed += e.compact(rev, segment_rev);
            dropped += (before - e.history().len()) as u64;
            if e.history().is_empty() {
                emptied.push(e.key().to_vec());
            }
            visited += 1;
            last = Some(e.key().to_vec());
        }
        for key in emptied {
            self.keys.remove(&key);
        }
        self.size_bytes -= freed;
        crate::metrics::handles().compaction_keys.increment(dropped);
        if more {
            last
        } else {
            None
        }
    }
}

/// A delta visits only the keys written since the last snapshot while they are fewer than one
/// in this many keys; above that, walking every key in order costs less than a lookup each.
/// Measured on 1M keys of 32 bytes (a release unit test, 52k of them written): a lookup in key
/// order 1.2 µs, a walk 73 ns a key (it asks for blocks ahead).
const WALK_BELOW_KEYS_PER_WRITTEN: usize = 16;

/// Where a read step ends: after `max_keys` keys, or once it has run for `time` (the clock
/// looked at every `STEP_CLOCK_KEYS` keys), whichever comes first; at least one key is visited.
#[derive(Debug, Clone, Copy)]
pub struct StepBound {
    pub max_keys: usize,
    pub time: Option<std::time::Duration>,
}

/// Keys visited between two looks at the clock.
const STEP_CLOCK_KEYS: usize = 64;

impl StepBound {
    pub const UNBOUNDED: StepBound = StepBound { max_keys: usize::MAX, time: None };

    /// Whether the step (ending at `until`, from its `time`) ends before visiting its
    /// `visited`th key (counting from 0).
    fn ends_before(&self, visited: usize, until: Option<std::time::Instant>) -> bool {
        visited >= self.max_keys || out_of_time(visited, STEP_CLOCK_KEYS, until)
    }
}

/// Whether a step that has visited `visited` keys is past `until`, the clock looked at only
/// every `every_keys` keys (a read step's, a snapshot chunk's, a compaction step's).
fn out_of_time(visited: usize, every_keys: usize, until: Option<std::time::Instant>) -> bool {
    visited.is_multiple_of(every_keys) && until.is_some_and(|t| std::time::Instant::now() >= t)
}

/// Where a snapshot chunk ends: after `max_keys` keys with records, about `max_bytes` of
/// records, or once it has run for `time` (the clock looked at every `CHUNK_CLOCK_KEYS` keys
/// visited), whichever comes first; at least one key is visited.
#[derive(Debug, Clone, Copy)]
pub struct ChunkBound {
    pub max_keys: usize,
    pub max_bytes: u64,
    pub time: Option<std::time::Duration>,
}

/// Keys a snapshot chunk visits between two looks at the clock (~25 ns a look: ~6 ms over a
/// delta's walk of 1M keys, which takes ~70 ms). Often, because a key can be slow: a delta
/// after a million revisions took 48 ms for its first 290 keys (800 records: ~165 µs a key),
/// where the same walk seconds after the keys were written takes ~0.3 µs a key: memory that
/// has not been touched for a while is slow on this VM.
const CHUNK_CLOCK_KEYS: usize = 4;

/// Where a physical compaction step ends: after `max_keys` keys, once the keys visited held
/// `max_records` records, or once it has run for `time` (the clock looked at every
/// `COMPACT_CLOCK_KEYS` keys), whichever comes first; at least one key is visited.
#[derive(Debug, Clone, Copy)]
pub struct CompactBound {
    pub max_keys: usize,
    pub max_records: usize,
    pub time: Option<std::time::Duration>,
}

impl CompactBound {
    pub const UNBOUNDED: CompactBound = CompactBound { max_keys: usize::MAX, max_records: usize::MAX, time: None };
}

/// Keys a compaction step visits between two looks at the clock: a key with a long history
/// frees many records (and their values) at once.
const COMPACT_CLOCK_KEYS: usize = 8;

/// Counts a key `q` finds at its revision, and keeps it while `q`'s limit allows.
fn found(q: &RangeQuery, part: &mut RangePart, key: &[u8], rec: crate::mvcc::index::RecordRef<'_>) {
    part.count += 1;
    if !q.count_only && (q.limit == 0 || part.kvs.len() < q.limit) {
        part.kvs.push(rec.to_kv(key, q.keys_only));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(s: &mut Store, k: &str, v: &str, rev: i64) {
        let op = WriteOp::Put { key: k.into(), value: Some(v.into()), lease: Some(0), prev_kv: false };
        s.write(op, Rev::main(rev)).unwrap();
    }

    fn get(s: &Store, k: &str, rev: i64) -> Result<Vec<KeyValue>> {
        let q = RangeQuery { range: KeyRange::new(k.as_bytes(), b""), rev, limit: 0, count_only: false, keys_only: false, sealed: false };
        s.range(&q).map(|p| p.kvs)
    }

    #[test]
    fn versions_reset_after_delete_and_compaction_keeps_visible_state() {
        let mut s = Store::default();
        put(&mut s, "a", "1", 2);
        put(&mut s, "a", "2", 3);
        let kv = &get(&s, "a", 3).unwrap()[0];
        assert_eq!((kv.create_revision, kv.mod_revision, kv.version), (2, 3, 2));
        s.write(WriteOp::DeleteRange { range: KeyRange::new(b"a", b""), prev_kv: false }, Rev::main(4)).unwrap();
        put(&mut s, "a", "3", 5);
        let kv = &get(&s, "a", 5).unwrap()[0];
        assert_eq!((kv.create_revision, kv.mod_revision, kv.version), (5, 5, 1));
        s.compact(4);
        assert_eq!(get(&s, "a", 3), Err(Error::Compacted));
        assert!(get(&s, "a", 4).unwrap().is_empty());
        assert_eq!(get(&s, "a", 5).unwrap()[0].value, &b"3"[..]);
        assert_eq!(s.live_keys(), 1);
    }

    #[test]
    fn ignore_value_needs_existing_key() {
        let mut s = Store::default();
        let op = WriteOp::Put { key: b"x".to_vec(), value: None, lease: Some(0), prev_kv: false };
        assert!(matches!(s.write(op, Rev::main(2)), Err(Error::KeyNotFound)));
        assert_eq!(s.live_keys(), 0);
    }

    #[test]
    fn a_read_in_steps_sees_its_revision_whatever_is_written_between_steps() {
        let mut s = Store::default();
        for i in 0..25 {
            put(&mut s, &format!("k{i:02}"), "old", 2 + i);
        }
        let q = RangeQuery { range: KeyRange::new(b"k", b"l"), rev: 26, limit: 12, count_only: false, keys_only: false, sealed: false };
        let whole = s.range(&q).unwrap();
        let (mut part, mut after, mut steps) = (RangePart::default(), None, 0);
        loop {
            after = s.range_step(&q, &mut part, after.as_deref(), StepBound { max_keys: 4, time: None }).unwrap();
            steps += 1;
            // Between steps: overwrites, a delete, new keys, all after the read's revision.
            put(&mut s, &format!("k{:02}", steps * 3), "new", 100 + 3 * steps);
            put(&mut s, &format!("k{:02}x", steps * 3), "new", 101 + 3 * steps);
            s.write(WriteOp::DeleteRange { range: KeyRange::new(format!("k{:02}", steps * 3 + 1).as_bytes(), b""), prev_kv: false }, Rev::main(102 + 3 * steps)).unwrap();
            if after.is_none() {
                break;
            }
        }
        assert!(steps >= 6, "25 keys, 4 a step, and more keys inserted: {steps} steps");
        assert_eq!((part.count, part.kvs.len()), (25, 12), "count covers the range, kvs stop at the limit");
        assert_eq!(part.kvs, whole.kvs);
        assert!(part.kvs.iter().all(|kv| kv.value == b"old"[..]));
    }

    /// A read in steps of 3 keys.
    fn read_in_steps(s: &Store, q: &RangeQuery) -> RangePart {
        let (mut part, mut after) = (RangePart::at(q.rev), None);
        loop {
            after = s.range_step(q, &mut part, after.as_deref(), StepBound { max_keys: 3, time: None }).unwrap();
            if after.is_none() {
                return part;
            }
        }
    }

    /// Pages read at a sealed revision, each from just after the last key the one before gave
    /// out (as kube-apiserver pages, one key more fetched than given out): every page has the
    /// keys and the count of an unsealed read, which counts the whole rest of the range, at the
    /// newest revision and at past ones, while writes go on between the pages; and from the
    /// second page on, the count came from the page before.
    #[test]
    fn pages_at_a_sealed_revision_count_what_a_walk_of_the_range_counts() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(19);
        let mut s = Store::default();
        let mut rev = 1;
        let mut write = |s: &mut Store, rng: &mut rand::rngs::StdRng| {
            rev += 1;
            let key = format!("k{:04}", rng.gen_range(0..800));
            if rng.gen_bool(0.2) {
                s.write(WriteOp::DeleteRange { range: KeyRange::new(key.as_bytes(), b""), prev_kv: false }, Rev::main(rev)).unwrap();
            } else {
                put(s, &key, "v", rev);
            }
            rev
        };
        let mut newest = 0;
        for _ in 0..3000 {
            newest = write(&mut s, &mut rng);
        }
        for (read_rev, limit) in [(newest, 7), (newest / 2, 50), (newest, 1), (newest / 3, 200)] {
            let (mut start, mut pages) = (b"k".to_vec(), 0);
            loop {
                let q = |sealed| RangeQuery { range: KeyRange::new(&start, b"l"), rev: read_rev, limit: limit + 1, count_only: false, keys_only: true, sealed };
                if pages > 0 {
                    assert!(s.page_ends.borrow().count_of(&q(true).range, read_rev).is_some(), "page {pages} of {limit} at {read_rev} counted from the page before");
                }
                let got = read_in_steps(&s, &q(true));
                let want = read_in_steps(&s, &q(false));
                assert_eq!((got.count, &got.kvs), (want.count, &want.kvs), "page {pages} of {limit} at {read_rev}");
                for _ in 0..5 {
                    write(&mut s, &mut rng);
                }
                if got.kvs.len() <= limit {
                    break;
                }
                start = [&got.kvs[limit - 1].key[..], &[0]].concat();
                pages += 1;
            }
            assert!(pages >= 1, "{limit} at {read_rev}: {pages} pages");
        }
    }

    #[test]
    fn a_compaction_step_stops_at_its_record_budget() {
        let mut s = Store::default();
        let mut rev = 1;
        for k in ["a", "b", "c"] {
            for _ in 0..10 {
                rev += 1;
                put(&mut s, k, "v", rev);
            }
        }
        s.set_compact_rev(rev);
        // 15 records a step: "a" (10 records), then "b" reaches the budget; "c" waits.
        let bound = CompactBound { max_keys: 100, max_records: 15, time: None };
        let after = s.compact_chunk(rev, None, bound);
        assert_eq!(after.as_deref(), Some(&b"b"[..]));
        assert_eq!(s.keys.get(&b"c"[..]).unwrap().history().len(), 10, "untouched");
        assert_eq!(s.compact_chunk(rev, after.as_deref(), bound), None, "the last step");
        assert!(s.keys.iter().all(|e| e.history().len() == 1));
    }

    #[test]
    fn a_compaction_step_out_of_time_stops_at_its_next_look_at_the_clock() {
        let mut s = Store::default();
        let mut rev = 1;
        let keys: Vec<String> = (0..20).map(|i| format!("k{i:02}")).collect();
        for k in &keys {
            for _ in 0..2 {
                rev += 1;
                put(&mut s, k, "v", rev);
            }
        }
        s.set_compact_rev(rev);
        let bound = CompactBound { max_keys: 100, max_records: 1000, time: Some(std::time::Duration::ZERO) };
        let mut steps = vec![s.compact_chunk(rev, None, bound)];
        while let Some(after) = steps.last().cloned().flatten() {
            assert!(steps.len() < 10, "a step visits keys");
            steps.push(s.compact_chunk(rev, Some(&after), bound));
        }
        let ends: Vec<Option<Vec<u8>>> = [Some("k07"), Some("k15"), None].iter().map(|k| k.map(|k| k.as_bytes().to_vec())).collect();
        assert_eq!(steps, ends, "{COMPACT_CLOCK_KEYS} keys a step");
        assert!(s.keys.iter().all(|e| e.history().len() == 1));
    }

    /// Every snapshot chunk, cut with `max_bytes`: the keys' records in order, each once.
    fn chunks(s: &Store, since: i64, rev: i64, max_bytes: u64) -> Vec<Vec<SegKey>> {
        chunks_of(s, since, rev, max_bytes, keys_written(s, since, rev, 3).as_deref())
    }

    /// Every step of `keys_written_step`, `max` writes a step, then sorted.
    fn keys_written(s: &Store, since: i64, rev: i64, max: usize) -> Option<Vec<Box<[u8]>>> {
        let (mut out, mut after) = (Vec::new(), None);
        while let Some(next) = s.keys_written_step(since, rev, after, max, &mut out)? {
            after = Some(next);
        }
        out.sort_unstable();
        out.dedup();
        Some(out)
    }

    fn chunks_of(s: &Store, since: i64, rev: i64, max_bytes: u64, written: Option<&[Box<[u8]>]>) -> Vec<Vec<SegKey>> {
        let (mut out, mut from) = (Vec::new(), None);
        loop {
            let (chunk, next) = s.snapshot_chunk(from.as_ref(), since, rev, written, ChunkBound { max_keys: 4, max_bytes, time: None });
            out.push(chunk);
            match next {
                Some(c) => from = Some(c),
                None => return out,
            }
        }
    }

    #[test]
    fn a_chunk_out_of_time_ends_at_the_next_look_at_the_clock_and_the_next_goes_on() {
        let mut s = Store::default();
        for i in 0..100 {
            put(&mut s, &format!("k{i:03}"), "v", 2 + i);
        }
        let bound = ChunkBound { max_keys: 512, max_bytes: u64::MAX, time: Some(std::time::Duration::ZERO) };
        let (mut seen, mut from, mut chunks) = (Vec::new(), None, 0);
        loop {
            let (chunk, next): (Vec<SegKey>, _) = s.snapshot_chunk(from.as_ref(), 0, 101, None, bound);
            assert!(chunk.len() <= CHUNK_CLOCK_KEYS, "a chunk of {} keys", chunk.len());
            seen.extend(chunk.into_iter().map(|k| k.key));
            chunks += 1;
            match next {
                Some(c) => from = Some(c),
                None => break,
            }
        }
        let all: Vec<Vec<u8>> = (0..100).map(|i| format!("k{i:03}").into_bytes()).collect();
        assert_eq!(seen, all, "every key once, in order");
        assert!(chunks >= 100 / CHUNK_CLOCK_KEYS, "{chunks} chunks");
    }

    #[test]
    fn a_key_with_a_long_history_is_split_over_chunks_in_order() {
        let mut s = Store::default();
        for rev in 2..=401 {
            put(&mut s, "hot", &format!("{rev:0>200}"), rev);
        }
        put(&mut s, "a", "1", 402);
        put(&mut s, "z", "1", 403);
        let cut = chunks(&s, 100, 402, 4096);
        let biggest = cut.iter().map(|c| c.iter().map(|k| k.records.len()).sum::<usize>()).max().unwrap();
        assert!(biggest < 20, "chunks stay near the byte bound: {biggest} records");
        let mut seen: Vec<(Vec<u8>, i64)> = Vec::new();
        for k in cut.iter().flatten() {
            seen.extend(k.records.iter().map(|r| (k.key.clone(), r.mod_rev)));
        }
        let mut want: Vec<(Vec<u8>, i64)> = vec![(b"a".to_vec(), 402)];
        want.extend((101..=401).map(|rev| (b"hot".to_vec(), rev)));
        assert_eq!(seen, want, "records after `since` up to `rev`, each once, in key then revision order");
        // A bound no chunk reaches cuts by keys only, as before.
        let whole = chunks(&s, 0, 403, u64::MAX);
        assert_eq!(whole.iter().flatten().map(|k| k.records.len()).sum::<usize>(), 402);
    }
    #[test]
    fn a_delta_visits_only_the_keys_written_and_cuts_what_a_walk_cuts() {
        let mut s = Store::default();
        let mut rev = 1;
        for i in 0..200 {
            rev += 1;
            put(&mut s, &format!("k{i:03}"), "old", rev);
        }
        // A range delete: many writes at one revision (a step may end inside them).
        rev += 1;
        s.write(WriteOp::DeleteRange { range: KeyRange::new(b"k190", b"k194"), prev_kv: false }, Rev::main(rev)).unwrap();
        let since = rev;
        // Written since: overwrites (one key twice, with a long value to split chunks), a
        // delete, new keys.
        for k in ["k150", "k007", "k150", "new1", "k099", "a"] {
            rev += 1;
            put(&mut s, k, &format!("{rev:0>300}"), rev);
        }
        rev += 1;
        s.write(WriteOp::DeleteRange { range: KeyRange::new(b"k120", b"k123"), prev_kv: false }, Rev::main(rev)).unwrap();
        let snap = rev;
        rev += 1;
        put(&mut s, "k180", "after the snapshot", rev);
        let written = keys_written(&s, since, snap, 2).expect("9 writes to 202 keys: a list");
        let names: Vec<&[u8]> = written.iter().map(|k| &k[..]).collect();
        assert_eq!(names, [&b"a"[..], b"k007", b"k099", b"k120", b"k121", b"k122", b"k150", b"new1"], "sorted, each once, none after the snapshot");
        for max in [1, 4, 100] {
            assert_eq!(keys_written(&s, since, snap, max), Some(written.clone()), "{max} writes a step");
        }
        // A walk also ends a chunk after looking at 64 keys without records: compare what the
        // chunks hold, in order.
        let held = |cut: Vec<Vec<SegKey>>| cut.into_iter().flatten().flat_map(|k| k.records.into_iter().map(move |r| (k.key.clone(), r))).collect::<Vec<_>>();
        for max_bytes in [400, 4096, u64::MAX] {
            let listed = held(chunks_of(&s, since, snap, max_bytes, Some(&written)));
            assert!(listed == held(chunks_of(&s, since, snap, max_bytes, None)), "what a walk cuts (max_bytes {max_bytes})");
            assert_eq!(listed.len(), 9);
        }
        assert!(keys_written(&s, 0, snap, 10).is_none(), "a full snapshot walks");
        assert!(keys_written(&s, since - 10, snap, 10).is_none(), "22 writes to 202 keys (over 1 in 16): a walk");
    }
}

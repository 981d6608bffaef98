//! The history of one key: its records in increasing revision order, (main, sub) as etcd's
//! keyIndex keeps them. A tombstone is a record with `version == 0`; the next put starts a new
//! generation (version 1, create_revision = that revision), possibly at the same main revision
//! (a txn that deletes the key and puts it again). A read at main revision `r` sees the last
//! record with `mod_rev <= r`: within one txn the last write of the key wins.
//!
//! Stored compactly (in a `KeyEntry`'s block, `key_entry.rs`): a 32-byte `Slot` per record
//! (revision, value, and a tag) and, only for records whose create revision, version and lease
//! are not implied by the tag, a 24-byte `Extra`. Implied: a "plain" put (version 1, created at
//! its own revision, no lease: every key of a load, most objects until updated) and a plain
//! tombstone (version, create revision and lease 0). Reads get `RecordRef`s decoded from them.

use super::value::Value;
use super::Rev;
use crate::proto::mvccpb::KeyValue;

/// What a record counts for in the store's size, beside its value's bytes.
const ACCOUNTED_RECORD_BYTES: u64 = 64;

/// A record as written (and as snapshot segments load it).
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub mod_rev: i64,
    /// Orders the writes of one txn (`Rev::sub`).
    pub sub: u32,
    pub create_rev: i64,
    /// 0 marks a tombstone (the key was deleted at `mod_rev`).
    pub version: i64,
    pub lease: i64,
    pub value: Value,
}

impl Record {
    pub fn rev(&self) -> Rev {
        Rev::new(self.mod_rev, self.sub)
    }

    pub fn size_bytes(&self) -> u64 {
        // Logical size (wherever the value lives): what db size and the quota count. The
        // record's own part is counted as the 64 bytes it took before `Value` shrank, so db
        // sizes and quotas stay as they were.
        self.value.len() as u64 + ACCOUNTED_RECORD_BYTES
    }
}

/// A stored record read back: the fields of its `Record`, the value borrowed.
#[derive(Debug, Clone, Copy)]
pub struct RecordRef<'a> {
    pub mod_rev: i64,
    pub sub: u32,
    pub create_rev: i64,
    pub version: i64,
    pub lease: i64,
    pub value: &'a Value,
}

impl RecordRef<'_> {
    pub fn is_tombstone(&self) -> bool {
        self.version == 0
    }

    pub fn rev(&self) -> Rev {
        Rev::new(self.mod_rev, self.sub)
    }

    pub fn size_bytes(&self) -> u64 {
        self.value.len() as u64 + ACCOUNTED_RECORD_BYTES
    }

    pub fn to_record(&self) -> Record {
        Record { mod_rev: self.mod_rev, sub: self.sub, create_rev: self.create_rev, version: self.version, lease: self.lease, value: self.value.clone() }
    }

    pub fn to_kv(&self, key: &[u8], keys_only: bool) -> KeyValue {
        debug_assert!(!self.is_tombstone());
        KeyValue {
            key: key.to_vec(),
            create_revision: self.create_rev,
            mod_revision: self.mod_rev,
            version: self.version,
            value: if keys_only { bytes::Bytes::new() } else { self.value.to_bytes() },
            lease: self.lease,
        }
    }
}

/// Tag bits of a `Slot`: which fields it implies; above them, how many `Extra`s the key's
/// earlier records use (where this record's is, if it has one).
const TAG_EXTRA: u32 = 1;
const TAG_TOMBSTONE: u32 = 2;
const TAG_SHIFT: u32 = 2;

/// One record's fixed part in a key's block.
#[repr(C)]
#[derive(Debug)]
pub struct Slot {
    pub mod_rev: i64,
    pub sub: u32,
    tag: u32,
    pub value: Value,
}

/// The fields of a record that its tag does not imply.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct Extra {
    create_rev: i64,
    version: i64,
    lease: i64,
}

impl Slot {
    /// `rec` stored after records using `extras_before` extras; and its own extra, if needed.
    pub fn encode(rec: Record, extras_before: u32) -> (Slot, Option<Extra>) {
        assert!(extras_before < u32::MAX >> TAG_SHIFT, "under 2^30 records with extras");
        let Record { mod_rev, sub, create_rev, version, lease, value } = rec;
        let (flags, extra) = match (create_rev, version, lease) {
            (c, 1, 0) if c == mod_rev => (0, None),
            (0, 0, 0) => (TAG_TOMBSTONE, None),
            _ => (TAG_EXTRA, Some(Extra { create_rev, version, lease })),
        };
        (Slot { mod_rev, sub, tag: flags | extras_before << TAG_SHIFT, value }, extra)
    }

    /// How many extras the key's records up to and including this one use.
    pub fn extras_through(&self) -> u32 {
        self.extras_before() + (self.tag & TAG_EXTRA)
    }

    pub fn extras_before(&self) -> u32 {
        self.tag >> TAG_SHIFT
    }

    /// The same record after the key's first `n` extras were dropped.
    pub fn drop_extras(&mut self, n: u32) {
        self.tag -= n << TAG_SHIFT;
    }

    fn rev(&self) -> Rev {
        Rev::new(self.mod_rev, self.sub)
    }

    fn is_tombstone(&self, extras: &[Extra]) -> bool {
        self.decode(extras).version == 0
    }

    fn decode<'a>(&'a self, extras: &[Extra]) -> RecordRef<'a> {
        let (create_rev, version, lease) = if self.tag & TAG_EXTRA != 0 {
            let e = extras[self.extras_before() as usize];
            (e.create_rev, e.version, e.lease)
        } else if self.tag & TAG_TOMBSTONE != 0 {
            (0, 0, 0)
        } else {
            (self.mod_rev, 1, 0)
        };
        RecordRef { mod_rev: self.mod_rev, sub: self.sub, create_rev, version, lease, value: &self.value }
    }
}

/// A key's records (or some of them), oldest first: a view of what a `KeyEntry` holds.
#[derive(Debug, Clone, Copy)]
pub struct KeyHistory<'a> {
    slots: &'a [Slot],
    /// All of the key's extras (slots name them by their index among the key's).
    extras: &'a [Extra],
}

impl<'a> KeyHistory<'a> {
    pub fn of(slots: &'a [Slot], extras: &'a [Extra]) -> KeyHistory<'a> {
        KeyHistory { slots, extras }
    }

    /// The `i`th record.
    pub fn get(&self, i: usize) -> RecordRef<'a> {
        self.slots[i].decode(self.extras)
    }

    pub fn iter(&self) -> impl DoubleEndedIterator<Item = RecordRef<'a>> + ExactSizeIterator + 'a {
        let extras = self.extras;
        self.slots.iter().map(move |s| s.decode(extras))
    }

    /// The records from `from` up to `to` (exclusive).
    pub fn slice(&self, from: usize, to: usize) -> KeyHistory<'a> {
        KeyHistory { slots: &self.slots[from..to], extras: self.extras }
    }

    /// The live record visible at `rev`, if the key exists then.
    pub fn at(&self, rev: i64) -> Option<RecordRef<'a>> {
        let visible = self.slots.partition_point(|r| r.mod_rev <= rev);
        let rec = self.slots[..visible].last()?.decode(self.extras);
        (!rec.is_tombstone()).then_some(rec)
    }

    /// The newest live record.
    pub fn latest(&self) -> Option<RecordRef<'a>> {
        self.slots.last().map(|s| s.decode(self.extras)).filter(|r| !r.is_tombstone())
    }

    /// How many of the oldest records no read at or above `rev` can see: compaction drops them.
    /// The key's history up to a tombstone visible at `rev` goes too (the whole key when nothing
    /// follows), unless that tombstone is newer than `keep_tombstones_after`: no snapshot
    /// segment holds it yet, and an older segment's put would otherwise come back at boot (see
    /// `Store::segment_rev`).
    pub fn compactable(&self, rev: i64, keep_tombstones_after: i64) -> usize {
        let visible = self.slots.partition_point(|r| r.mod_rev <= rev);
        if visible == 0 {
            return 0;
        }
        let mut drop_upto = visible - 1; // keep the record visible at `rev`...
        let last = &self.slots[drop_upto];
        if last.is_tombstone(self.extras) && last.mod_rev <= keep_tombstones_after {
            drop_upto += 1; // ...unless it is a saved tombstone: nothing below needs it.
        }
        drop_upto
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Where the record written at exactly `rev` is.
    pub fn index_of(&self, rev: Rev) -> Option<usize> {
        self.slots.binary_search_by_key(&rev, Slot::rev).ok()
    }

    /// The record written at exactly `rev`.
    pub fn record(&self, rev: Rev) -> Option<RecordRef<'a>> {
        Some(self.get(self.index_of(rev)?))
    }

    /// The records written after `since` and at or before `rev`: with `since` 0, those a read
    /// at or below `rev` may need (a full snapshot at `rev`); else what a delta snapshot adds.
    pub fn between(&self, since: i64, rev: i64) -> KeyHistory<'a> {
        let from = self.slots.partition_point(|r| r.mod_rev <= since);
        let to = self.slots.partition_point(|r| r.mod_rev <= rev);
        self.slice(from, to.max(from))
    }

    pub fn size_bytes(&self) -> u64 {
        self.slots.iter().map(|s| s.value.len() as u64 + ACCOUNTED_RECORD_BYTES).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_records_and_plain_tombstones_need_no_extra() {
        assert_eq!(std::mem::size_of::<Slot>(), 32);
        assert_eq!(std::mem::size_of::<Extra>(), 24);
        let rec = |mod_rev, create_rev, version, lease| Record { mod_rev, sub: 3, create_rev, version, lease, value: vec![7].into() };
        let cases = [(rec(5, 5, 1, 0), false), (rec(5, 0, 0, 0), false), (rec(5, 4, 1, 0), true), (rec(5, 5, 2, 0), true), (rec(5, 5, 1, 9), true), (rec(5, 5, 0, 0), true), (rec(5, 0, 1, 0), true)];
        let mut slots = Vec::new();
        let mut extras = Vec::new();
        for (r, needs_extra) in cases.iter().cloned() {
            let before = slots.last().map_or(0, Slot::extras_through);
            let (slot, extra) = Slot::encode(r, before);
            assert_eq!(extra.is_some(), needs_extra);
            slots.push(slot);
            extras.extend(extra);
        }
        let h = KeyHistory::of(&slots, &extras);
        let back: Vec<Record> = h.iter().map(|r| r.to_record()).collect();
        assert_eq!(back, cases.iter().map(|c| c.0.clone()).collect::<Vec<_>>());
        assert_eq!(slots.last().unwrap().extras_through(), 5);
    }
}

//! The history of one key: its records in increasing revision order, (main, sub) as etcd's
//! keyIndex keeps them. A tombstone is a record with `version == 0`; the next put starts a new
//! generation (version 1, create_revision = that revision), possibly at the same main revision
//! (a txn that deletes the key and puts it again). A read at main revision `r` sees the last
//! record with `mod_rev <= r`: within one txn the last write of the key wins.

use super::value::Value;
use super::Rev;
use crate::proto::mvccpb::KeyValue;

/// What a record counts for in the store's size, beside its value's bytes.
const ACCOUNTED_RECORD_BYTES: u64 = 64;

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
    pub fn is_tombstone(&self) -> bool {
        self.version == 0
    }

    pub fn rev(&self) -> Rev {
        Rev::new(self.mod_rev, self.sub)
    }

    pub fn size_bytes(&self) -> u64 {
        // Logical size (wherever the value lives): what db size and the quota count. The
        // record's own part is counted as the 64 bytes it took before `Value` shrank, so db
        // sizes and quotas stay as they were.
        self.value.len() as u64 + ACCOUNTED_RECORD_BYTES
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

/// A key's records, oldest first: a view of the records a `KeyEntry` (`key_entry.rs`) holds,
/// which also does the writing.
#[derive(Debug)]
#[repr(transparent)]
pub struct KeyHistory {
    records: [Record],
}

impl KeyHistory {
    pub fn of(records: &[Record]) -> &KeyHistory {
        // SAFETY: KeyHistory is a transparent wrapper of [Record]: same layout and metadata.
        unsafe { &*(records as *const [Record] as *const KeyHistory) }
    }

    /// The live record visible at `rev`, if the key exists then.
    pub fn at(&self, rev: i64) -> Option<&Record> {
        let visible = self.records.partition_point(|r| r.mod_rev <= rev);
        let rec = self.records[..visible].last()?;
        (!rec.is_tombstone()).then_some(rec)
    }

    /// The newest live record.
    pub fn latest(&self) -> Option<&Record> {
        self.records.last().filter(|r| !r.is_tombstone())
    }

    /// How many of the oldest records no read at or above `rev` can see: compaction drops them.
    /// The key's history up to a tombstone visible at `rev` goes too (the whole key when nothing
    /// follows), unless that tombstone is newer than `keep_tombstones_after`: no snapshot
    /// segment holds it yet, and an older segment's put would otherwise come back at boot (see
    /// `Store::segment_rev`).
    pub fn compactable(&self, rev: i64, keep_tombstones_after: i64) -> usize {
        let visible = self.records.partition_point(|r| r.mod_rev <= rev);
        if visible == 0 {
            return 0;
        }
        let mut drop_upto = visible - 1; // keep the record visible at `rev`...
        let last = &self.records[drop_upto];
        if last.is_tombstone() && last.mod_rev <= keep_tombstones_after {
            drop_upto += 1; // ...unless it is a saved tombstone: nothing below needs it.
        }
        drop_upto
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Where the record written at exactly `rev` is.
    pub fn index_of(&self, rev: Rev) -> Option<usize> {
        self.records.binary_search_by_key(&rev, Record::rev).ok()
    }

    /// The record written at exactly `rev`.
    pub fn record(&self, rev: Rev) -> Option<&Record> {
        Some(&self.records[self.index_of(rev)?])
    }

    /// The records written after `since` and at or before `rev`: with `since` 0, those a read
    /// at or below `rev` may need (a full snapshot at `rev`); else what a delta snapshot adds.
    pub fn between(&self, since: i64, rev: i64) -> &[Record] {
        let from = self.records.partition_point(|r| r.mod_rev <= since);
        let to = self.records.partition_point(|r| r.mod_rev <= rev);
        &self.records[from..to.max(from)]
    }

    pub fn size_bytes(&self) -> u64 {
        self.records.iter().map(Record::size_bytes).sum()
    }
}

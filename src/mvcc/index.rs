//! The history of one key: its records in increasing revision order, (main, sub) as etcd's
//! keyIndex keeps them. A tombstone is a record with `version == 0`; the next put starts a new
//! generation (version 1, create_revision = that revision), possibly at the same main revision
//! (a txn that deletes the key and puts it again). A read at main revision `r` sees the last
//! record with `mod_rev <= r`: within one txn the last write of the key wins.
//!
//! Stored compactly (in a `KeyEntry`'s block, `key_entry.rs`): a 24-byte `Slot` per record
//! (main revision, value, and a tombstone bit) and, in a block where some record is not
//! "plain", a 32-byte `Extra` per record (sub revision, create revision, version, lease). Plain,
//! so implied by the slot: a put at sub revision 0 with version 1, created at its own revision,
//! without lease (every key of a load, most objects until updated), and a tombstone at sub
//! revision 0 (version, create revision and lease 0). The tombstone bit is bit 62 of the
//! revision: a revision must stay below 2^62 (etcd's is an int64, one more per write). Reads get
//! `RecordRef`s decoded from them.

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

    #[cfg(test)]
    pub fn borrowed(&self) -> RecordRef<'_> {
        RecordRef { mod_rev: self.mod_rev, sub: self.sub, create_rev: self.create_rev, version: self.version, lease: self.lease, value: &self.value }
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

/// The bit of `Slot::rev_bits` that marks a plain tombstone; the revision is the bits below.
const TOMBSTONE_BIT: u64 = 1 << 62;

/// One record's fixed part in a key's block: its main revision and its value. The rest of the
/// record is implied (a "plain" block: every record a plain put or a plain tombstone at sub
/// revision 0), or in the `Extra` of the same index (a "full" block: one per record).
#[repr(C)]
#[derive(Debug)]
pub struct Slot {
    /// The main revision, and `TOMBSTONE_BIT` for a plain tombstone.
    rev_bits: u64,
    pub value: Value,
}

/// A record's fields beside its main revision and value, in a full block.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct Extra {
    sub: u32,
    create_rev: i64,
    version: i64,
    lease: i64,
}

impl Slot {
    /// `rec` as a slot and its extra; whether a plain block can hold it without the extra.
    pub fn encode(rec: Record) -> (Slot, Extra, bool) {
        let Record { mod_rev, sub, create_rev, version, lease, value } = rec;
        assert!((0..TOMBSTONE_BIT as i64).contains(&mod_rev), "a revision in 0..2^62: {mod_rev}");
        let (plain, tomb) = match (sub, create_rev, version, lease) {
            (0, c, 1, 0) if c == mod_rev => (true, false),
            (0, 0, 0, 0) => (true, true),
            _ => (false, version == 0),
        };
        let rev_bits = mod_rev as u64 | if tomb { TOMBSTONE_BIT } else { 0 };
        (Slot { rev_bits, value }, Extra { sub, create_rev, version, lease }, plain)
    }

    pub fn mod_rev(&self) -> i64 {
        (self.rev_bits & !TOMBSTONE_BIT) as i64
    }

    /// The extra a plain slot implies (to make its block full).
    pub fn implied_extra(&self) -> Extra {
        let mod_rev = self.mod_rev();
        if self.rev_bits & TOMBSTONE_BIT != 0 {
            Extra { sub: 0, create_rev: 0, version: 0, lease: 0 }
        } else {
            Extra { sub: 0, create_rev: mod_rev, version: 1, lease: 0 }
        }
    }

    fn decode<'a>(&'a self, extra: Option<&Extra>) -> RecordRef<'a> {
        let e = extra.copied().unwrap_or_else(|| self.implied_extra());
        RecordRef { mod_rev: self.mod_rev(), sub: e.sub, create_rev: e.create_rev, version: e.version, lease: e.lease, value: &self.value }
    }
}

/// A key's records (or some of them), oldest first: a view of what a `KeyEntry` holds.
#[derive(Debug, Clone, Copy)]
pub struct KeyHistory<'a> {
    slots: &'a [Slot],
    /// A full block's extras, one per slot; none in a plain block.
    extras: Option<&'a [Extra]>,
}

impl<'a> KeyHistory<'a> {
    pub fn of(slots: &'a [Slot], extras: Option<&'a [Extra]>) -> KeyHistory<'a> {
        assert!(extras.is_none_or(|x| x.len() == slots.len()), "a full block has an extra per record");
        KeyHistory { slots, extras }
    }

    /// The `i`th record.
    pub fn get(&self, i: usize) -> RecordRef<'a> {
        self.slots[i].decode(self.extras.map(|x| &x[i]))
    }

    pub fn iter(&self) -> impl DoubleEndedIterator<Item = RecordRef<'a>> + ExactSizeIterator + 'a {
        let h = *self;
        (0..self.slots.len()).map(move |i| h.get(i))
    }

    /// The records from `from` up to `to` (exclusive).
    pub fn slice(&self, from: usize, to: usize) -> KeyHistory<'a> {
        KeyHistory { slots: &self.slots[from..to], extras: self.extras.map(|x| &x[from..to]) }
    }

    /// The live record visible at `rev`, if the key exists then.
    pub fn at(&self, rev: i64) -> Option<RecordRef<'a>> {
        let visible = self.slots.partition_point(|r| r.mod_rev() <= rev);
        let rec = self.get(visible.checked_sub(1)?);
        (!rec.is_tombstone()).then_some(rec)
    }

    /// The newest live record.
    pub fn latest(&self) -> Option<RecordRef<'a>> {
        let rec = self.get(self.slots.len().checked_sub(1)?);
        (!rec.is_tombstone()).then_some(rec)
    }

    /// How many of the oldest records no read at or above `rev` can see: compaction drops them.
    /// The key's history up to a tombstone visible at `rev` goes too (the whole key when nothing
    /// follows), unless that tombstone is newer than `keep_tombstones_after`: no snapshot
    /// segment holds it yet, and an older segment's put would otherwise come back at boot (see
    /// `Store::segment_rev`).
    pub fn compactable(&self, rev: i64, keep_tombstones_after: i64) -> usize {
        let visible = self.slots.partition_point(|r| r.mod_rev() <= rev);
        if visible == 0 {
            return 0;
        }
        let mut drop_upto = visible - 1; // keep the record visible at `rev`...
        let last = self.get(drop_upto);
        if last.is_tombstone() && last.mod_rev <= keep_tombstones_after {
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
        // The records with its main revision, then the one with its sub revision among them.
        let from = self.slots.partition_point(|r| r.mod_rev() < rev.main);
        let to = self.slots.partition_point(|r| r.mod_rev() <= rev.main);
        (from..to).find(|&i| self.get(i).sub == rev.sub)
    }

    /// The record written at exactly `rev`.
    pub fn record(&self, rev: Rev) -> Option<RecordRef<'a>> {
        Some(self.get(self.index_of(rev)?))
    }

    /// The records written after `since` and at or before `rev`: with `since` 0, those a read
    /// at or below `rev` may need (a full snapshot at `rev`); else what a delta snapshot adds.
    pub fn between(&self, since: i64, rev: i64) -> KeyHistory<'a> {
        let from = self.slots.partition_point(|r| r.mod_rev() <= since);
        let to = self.slots.partition_point(|r| r.mod_rev() <= rev);
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
        assert_eq!(std::mem::size_of::<Slot>(), 24);
        assert_eq!(std::mem::size_of::<Extra>(), 32);
        let rec = |mod_rev, sub, create_rev, version, lease| Record { mod_rev, sub, create_rev, version, lease, value: vec![7].into() };
        let cases = [
            (rec(5, 0, 5, 1, 0), true),
            (rec(6, 0, 0, 0, 0), true),
            (rec(7, 3, 7, 1, 0), false),
            (rec(8, 0, 4, 1, 0), false),
            (rec(9, 0, 9, 2, 0), false),
            (rec(10, 0, 10, 1, 9), false),
            (rec(11, 0, 11, 0, 0), false),
            (rec(12, 1, 0, 0, 0), false),
            (rec((1 << 62) - 1, 0, 0, 0, 0), true),
        ];
        let (mut slots, mut extras) = (Vec::new(), Vec::new());
        for (r, plain) in cases.iter().cloned() {
            let (slot, extra, is_plain) = Slot::encode(r.clone());
            assert_eq!(is_plain, plain, "{r:?}");
            if plain {
                let implied = slot.implied_extra();
                assert_eq!((implied.sub, implied.create_rev, implied.version, implied.lease), (extra.sub, extra.create_rev, extra.version, extra.lease));
            }
            slots.push(slot);
            extras.push(extra);
        }
        let h = KeyHistory::of(&slots, Some(&extras));
        let back: Vec<Record> = h.iter().map(|r| r.to_record()).collect();
        assert_eq!(back, cases.iter().map(|c| c.0.clone()).collect::<Vec<_>>());
        assert_eq!(h.index_of(Rev::new(7, 3)), Some(2));
        assert_eq!(h.index_of(Rev::new(7, 0)), None);
        let plain: Vec<Slot> = cases.iter().filter(|c| c.1).map(|c| Slot::encode(c.0.clone()).0).collect();
        let back: Vec<Record> = KeyHistory::of(&plain, None).iter().map(|r| r.to_record()).collect();
        assert_eq!(back, cases.iter().filter(|c| c.1).map(|c| c.0.clone()).collect::<Vec<_>>());
    }
}

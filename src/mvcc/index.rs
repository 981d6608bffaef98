//! The history of one key: its records in increasing revision order, (main, sub) as etcd's
//! keyIndex keeps them. A tombstone is a record with `version == 0`; the next put starts a new
//! generation (version 1, create_revision = that revision), possibly at the same main revision
//! (a txn that deletes the key and puts it again). A read at main revision `r` sees the last
//! record with `mod_rev <= r`: within one txn the last write of the key wins.

use super::value::Value;
use super::Rev;
use crate::proto::mvccpb::KeyValue;

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
        // Logical size (wherever the value lives): what db size and the quota count.
        (self.value.len() + std::mem::size_of::<Record>()) as u64
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

#[derive(Debug, Default, Clone)]
pub struct KeyHistory {
    records: Vec<Record>,
}

impl KeyHistory {
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

    pub fn push(&mut self, rec: Record) {
        if let Some(last) = self.records.last() {
            assert!(rec.rev() > last.rev(), "revisions of a key must increase: {:?} after {:?}", rec.rev(), last.rev());
        }
        // Most keys keep one or two records: grow exactly while short (Vec would jump to 4).
        if self.records.len() < 4 {
            self.records.reserve_exact(1);
        }
        self.records.push(rec);
    }

    /// Drops history that no read at or above `rev` can see. Returns the bytes freed.
    /// The key's history up to a tombstone visible at `rev` goes too (the whole key when nothing
    /// follows), unless that tombstone is newer than `keep_tombstones_after`: no snapshot
    /// segment holds it yet, and an older segment's put would otherwise come back at boot (see
    /// `Store::segment_rev`).
    pub fn compact(&mut self, rev: i64, keep_tombstones_after: i64) -> u64 {
        let visible = self.records.partition_point(|r| r.mod_rev <= rev);
        if visible == 0 {
            return 0;
        }
        let mut drop_upto = visible - 1; // keep the record visible at `rev`...
        let last = &self.records[drop_upto];
        if last.is_tombstone() && last.mod_rev <= keep_tombstones_after {
            drop_upto += 1; // ...unless it is a saved tombstone: nothing below needs it.
        }
        self.records.drain(..drop_upto).map(|r| r.size_bytes()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// The record written at exactly `rev`.
    pub fn record(&self, rev: Rev) -> Option<&Record> {
        let i = self.records.binary_search_by_key(&rev, Record::rev).ok()?;
        Some(&self.records[i])
    }

    /// The record written at exactly `rev`.
    pub fn record_mut(&mut self, rev: Rev) -> Option<&mut Record> {
        let i = self.records.binary_search_by_key(&rev, Record::rev).ok()?;
        Some(&mut self.records[i])
    }

    /// The records written after `since` and at or before `rev`: with `since` 0, those a read
    /// at or below `rev` may need (a full snapshot at `rev`); else what a delta snapshot adds.
    pub fn between(&self, since: i64, rev: i64) -> &[Record] {
        let from = self.records.partition_point(|r| r.mod_rev <= since);
        let to = self.records.partition_point(|r| r.mod_rev <= rev);
        &self.records[from..to.max(from)]
    }

    pub fn from_records(records: Vec<Record>) -> KeyHistory {
        assert!(records.windows(2).all(|w| w[0].rev() < w[1].rev()), "revisions of a key must increase");
        KeyHistory { records }
    }

    pub fn size_bytes(&self) -> u64 {
        self.records.iter().map(Record::size_bytes).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(mod_rev: i64, version: i64) -> Record {
        Record { mod_rev, sub: 0, create_rev: 2, version, lease: 0, value: vec![1].into() }
    }

    #[test]
    fn reads_at_revision_and_compacts() {
        let mut h = KeyHistory::default();
        h.push(rec(2, 1));
        h.push(rec(4, 2));
        h.push(rec(6, 0));
        assert!(h.at(1).is_none());
        assert_eq!(h.at(3).unwrap().mod_rev, 2);
        assert_eq!(h.at(5).unwrap().mod_rev, 4);
        assert!(h.at(6).is_none());
        h.compact(5, 0);
        assert!(h.at(5).is_some());
        h.compact(6, 6); // the tombstone is in a segment: the key goes
        assert!(h.is_empty());
    }

    #[test]
    fn a_tombstone_no_segment_holds_survives_compaction() {
        let mut h = KeyHistory::default();
        h.push(rec(2, 1));
        h.push(rec(6, 0));
        h.compact(6, 5);
        assert_eq!(h.between(0, 6).len(), 1, "the tombstone stays for the next delta segment");
        assert!(h.at(6).is_none() && h.latest().is_none());
        h.compact(6, 6);
        assert!(h.is_empty());
        // Followed by a new generation: the tombstone still marks the gap until it is saved.
        h.push(rec(8, 1));
        h.push(rec(9, 0));
        h.push(rec(11, 1));
        h.compact(10, 8);
        assert!(h.at(10).is_none(), "deleted at 9, put again at 11");
        assert_eq!(h.between(0, 11).len(), 2);
        h.compact(10, 9);
        assert_eq!(h.between(0, 11).len(), 1);
        assert!(h.at(10).is_none());
    }

    #[test]
    fn one_txn_deletes_and_puts_again_at_one_main_revision() {
        let mut h = KeyHistory::default();
        h.push(rec(2, 1));
        h.push(Record { sub: 0, ..rec(5, 0) }); // deleted by the txn at 5...
        h.push(Record { sub: 1, create_rev: 5, ..rec(5, 1) }); // ...and put again by it
        assert_eq!(h.at(4).unwrap().mod_rev, 2);
        let now = h.at(5).unwrap();
        assert_eq!((now.create_rev, now.version, now.sub), (5, 1, 1));
        assert!(h.record_mut(Rev::new(5, 0)).unwrap().is_tombstone());
        h.compact(5, 5);
        assert_eq!(h.between(0, 5).len(), 1, "the put that ends the txn is what a read at 5 sees");
    }
}

//! One key of a shard's store and its history in a single heap block, held in the store's
//! B-tree by an 8-byte pointer. Why: with 1M keys the index was most of the resident memory,
//! and most of it was bookkeeping around the records rather than the records: a B-tree entry
//! of a boxed key and a `Vec` (40 bytes, nodes about 2/3 full: ~68 bytes a key), the key's own
//! allocation and the records' (`Vec` header, capacity). Here a key with one record (the common
//! case) is one 112-byte block (8-byte header, the 56-byte record, the 32 key bytes: 96 bytes) and 8 bytes
//! in a tree node.
//!
//! Block layout: `Header { key_len, len }`, then room for `capacity(len)` records, then the
//! key's bytes. The records are in revision order (`KeyHistory` reads them); the room is exact
//! while short (most keys keep one or two records) and a power of two after, so it follows from
//! `len` and the header is 8 bytes; compaction shrinks the block with the history. Growing
//! moves the key bytes behind the new records.
//!
//! The tree (`KeySet`) orders entries by their key bytes, which never change. Records change in
//! place through a shared reference to the entry (the tree hands out no other), so `KeySet`
//! only gives that access from `&mut self`: no reader can hold a record meanwhile.

use std::alloc::Layout;
use std::cell::Cell;
use std::collections::BTreeSet;
use std::ptr::NonNull;

use super::index::{KeyHistory, Record};
use super::{KeyBounds, Rev};

#[repr(C)]
#[derive(Clone, Copy)]
struct Header {
    key_len: u32,
    len: u32,
}

const HEADER_BYTES: usize = std::mem::size_of::<Header>();
const RECORD_BYTES: usize = std::mem::size_of::<Record>();
/// Records grow one at a time up to this many, then by doubling.
const EXACT_GROWTH_RECORDS: u32 = 4;

/// The records a block has room for when it holds `len`.
fn capacity(len: u32) -> u32 {
    if len <= EXACT_GROWTH_RECORDS {
        len.max(1)
    } else {
        len.checked_next_power_of_two().expect("under 2^31 records")
    }
}

/// A key and its history in one block; the tree's element. `Cell`: the block moves when it
/// grows or shrinks (see the module comment for why that is sound).
pub struct KeyEntry {
    block: Cell<NonNull<Header>>,
}

// SAFETY: a KeyEntry owns its block as a Box owns its contents (records hold only Send data);
// it is not Sync (Cell), so no two threads reach one at once.
unsafe impl Send for KeyEntry {}

fn layout(cap: u32, key_len: u32) -> Layout {
    let size = HEADER_BYTES + cap as usize * RECORD_BYTES + key_len as usize;
    Layout::from_size_align(size, std::mem::align_of::<Header>().max(std::mem::align_of::<Record>())).expect("a key entry's size fits")
}

impl KeyEntry {
    /// A key with `records` (in increasing revision order, possibly none).
    pub fn new(key: &[u8], records: Vec<Record>) -> KeyEntry {
        assert!(records.windows(2).all(|w| w[0].rev() < w[1].rev()), "revisions of a key must increase");
        let key_len = u32::try_from(key.len()).expect("a key under 4 GiB");
        let len = u32::try_from(records.len()).expect("under 2^32 records");
        let l = layout(capacity(len), key_len);
        // SAFETY: the layout is non-zero sized (a header at least).
        let Some(block) = NonNull::new(unsafe { std::alloc::alloc(l) }.cast::<Header>()) else { std::alloc::handle_alloc_error(l) };
        // SAFETY: the block is fresh and large enough for the header, its records and the key;
        // the records are moved in (the Vec forgets them: set_len(0) below).
        unsafe {
            block.as_ptr().write(Header { key_len, len });
            let mut records = records;
            std::ptr::copy_nonoverlapping(records.as_ptr(), records_ptr(block), len as usize);
            records.set_len(0);
            std::ptr::copy_nonoverlapping(key.as_ptr(), key_ptr(block), key.len());
        }
        KeyEntry { block: Cell::new(block) }
    }

    fn header(&self) -> &Header {
        // SAFETY: the block is live while self is, and its header initialized.
        unsafe { self.block.get().as_ref() }
    }

    pub fn key(&self) -> &[u8] {
        // SAFETY: key_len bytes at key_ptr were written in `new` and moved along since.
        unsafe { std::slice::from_raw_parts(key_ptr(self.block.get()), self.header().key_len as usize) }
    }

    pub fn history(&self) -> &KeyHistory {
        KeyHistory::of(self.records())
    }

    fn records(&self) -> &[Record] {
        // SAFETY: the first `len` records are initialized.
        unsafe { std::slice::from_raw_parts(records_ptr(self.block.get()), self.header().len as usize) }
    }

    /// Moves the block from room for `old_cap` records to room for `cap` (at least its
    /// records), the key bytes following.
    ///
    /// # Safety
    /// No reference into this entry's records may be alive meanwhile.
    unsafe fn set_cap(&self, old_cap: u32, cap: u32) {
        let old = self.block.get();
        // SAFETY: the header is live; no reference into the block is held (caller's promise).
        let Header { key_len, len } = unsafe { *old.as_ptr() };
        assert!(cap >= len.max(1), "a key entry keeps its records");
        let (old_layout, new_layout) = (layout(old_cap, key_len), layout(cap, key_len));
        // SAFETY: moving the key within, then reallocating, the block allocated with
        // `old_layout`; each copy stays within the larger of the old and new sizes.
        unsafe {
            if cap < old_cap {
                std::ptr::copy(key_ptr_at(old, old_cap), key_ptr_at(old, cap), key_len as usize);
            }
            let p = std::alloc::realloc(old.as_ptr().cast(), old_layout, new_layout.size());
            let Some(new) = NonNull::new(p.cast::<Header>()) else { std::alloc::handle_alloc_error(new_layout) };
            if cap > old_cap {
                std::ptr::copy(key_ptr_at(new, old_cap), key_ptr_at(new, cap), key_len as usize);
            }
            self.block.set(new);
        }
    }

    /// Appends a record newer than every other.
    ///
    /// # Safety
    /// As `set_cap`.
    unsafe fn push(&self, rec: Record) {
        if let Some(last) = self.records().last() {
            assert!(rec.rev() > last.rev(), "revisions of a key must increase: {:?} after {:?}", rec.rev(), last.rev());
        }
        let len = self.header().len;
        let (cap, grown) = (capacity(len), capacity(len + 1));
        if grown != cap {
            // SAFETY: the caller's promise.
            unsafe { self.set_cap(cap, grown) };
        }
        let block = self.block.get();
        // SAFETY: len < cap now: the slot is allocated and free.
        unsafe {
            records_ptr(block).add(len as usize).write(rec);
            (*block.as_ptr()).len = len + 1;
        }
    }

    /// Drops the oldest `n` records, shrinking the block to the room the rest need.
    /// Returns the bytes they held (`Record::size_bytes`).
    ///
    /// # Safety
    /// As `set_cap`.
    unsafe fn drop_oldest(&self, n: usize) -> u64 {
        let len = self.header().len;
        assert!(n <= len as usize, "dropping more records than a key has");
        if n == 0 {
            return 0;
        }
        let freed = self.records()[..n].iter().map(Record::size_bytes).sum();
        let block = self.block.get();
        let left = len - n as u32;
        let mut dropped: Vec<Record> = Vec::with_capacity(n);
        // SAFETY: records 0..n are moved out (into `dropped`, which drops them after the block
        // is consistent again), the rest move down, and the header then counts only those; the
        // key moves with the room (`set_cap`).
        unsafe {
            std::ptr::copy_nonoverlapping(records_ptr(block), dropped.as_mut_ptr(), n);
            dropped.set_len(n);
            std::ptr::copy(records_ptr(block).add(n), records_ptr(block), left as usize);
            (*block.as_ptr()).len = left;
            if capacity(left) != capacity(len) {
                self.set_cap(capacity(len), capacity(left));
            }
        }
        drop(dropped);
        freed
    }
}

fn records_ptr(block: NonNull<Header>) -> *mut Record {
    // SAFETY: the records start right after the header, inside the block.
    unsafe { block.as_ptr().cast::<u8>().add(HEADER_BYTES).cast() }
}

fn key_ptr_at(block: NonNull<Header>, cap: u32) -> *mut u8 {
    // SAFETY: the key follows `cap` records; within the block for its current or next layout.
    unsafe { block.as_ptr().cast::<u8>().add(HEADER_BYTES + cap as usize * RECORD_BYTES) }
}

fn key_ptr(block: NonNull<Header>) -> *mut u8 {
    // SAFETY: the header is live.
    key_ptr_at(block, capacity(unsafe { (*block.as_ptr()).len }))
}

impl Drop for KeyEntry {
    fn drop(&mut self) {
        let block = self.block.get();
        let Header { key_len, len } = *self.header();
        // SAFETY: the first `len` records are initialized and owned by this entry; the block was
        // allocated (or last reallocated) with `layout(capacity(len), key_len)`.
        unsafe {
            std::ptr::drop_in_place(std::ptr::slice_from_raw_parts_mut(records_ptr(block), len as usize));
            std::alloc::dealloc(block.as_ptr().cast(), layout(capacity(len), key_len));
        }
    }
}

impl Clone for KeyEntry {
    fn clone(&self) -> KeyEntry {
        KeyEntry::new(self.key(), self.records().to_vec())
    }
}

impl std::fmt::Debug for KeyEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyEntry").field("key", &self.key()).field("records", &self.records()).finish()
    }
}

impl PartialEq for KeyEntry {
    fn eq(&self, other: &KeyEntry) -> bool {
        self.key() == other.key()
    }
}

impl Eq for KeyEntry {}

impl PartialOrd for KeyEntry {
    fn partial_cmp(&self, other: &KeyEntry) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for KeyEntry {
    fn cmp(&self, other: &KeyEntry) -> std::cmp::Ordering {
        self.key().cmp(other.key())
    }
}

impl std::borrow::Borrow<[u8]> for KeyEntry {
    fn borrow(&self) -> &[u8] {
        self.key()
    }
}

/// Write access to one entry's records, only to be had from `&mut KeySet`.
pub struct EntryMut<'a> {
    entry: &'a KeyEntry,
}

impl EntryMut<'_> {
    pub fn key(&self) -> &[u8] {
        self.entry.key()
    }

    pub fn history(&self) -> &KeyHistory {
        self.entry.history()
    }

    pub fn push(&mut self, rec: Record) {
        // SAFETY: `&mut self` (from `&mut KeySet`): no reference into the records is alive.
        unsafe { self.entry.push(rec) }
    }

    /// Drops history no read at or above `rev` can see (`KeyHistory::compactable`); returns
    /// the bytes freed.
    pub fn compact(&mut self, rev: i64, keep_tombstones_after: i64) -> u64 {
        let n = self.history().compactable(rev, keep_tombstones_after);
        // SAFETY: as in `push`.
        unsafe { self.entry.drop_oldest(n) }
    }

    /// The record written at exactly `rev`.
    pub fn record_mut(&mut self, rev: Rev) -> Option<&mut Record> {
        let i = self.history().index_of(rev)?;
        // SAFETY: record i < len is initialized; exclusive as in `push`, for as long as the
        // borrow of self.
        Some(unsafe { &mut *records_ptr(self.entry.block.get()).add(i) })
    }
}

/// A shard's keys in order, each with its history.
#[derive(Debug, Default)]
pub struct KeySet {
    entries: BTreeSet<KeyEntry>,
}

impl KeySet {
    pub fn get(&self, key: &[u8]) -> Option<&KeyEntry> {
        self.entries.get(key)
    }

    pub fn get_mut(&mut self, key: &[u8]) -> Option<EntryMut<'_>> {
        self.entries.get(key).map(|entry| EntryMut { entry })
    }

    pub fn insert(&mut self, entry: KeyEntry) {
        let fresh = self.entries.insert(entry);
        assert!(fresh, "a key is inserted once");
    }

    pub fn remove(&mut self, key: &[u8]) {
        self.entries.remove(key);
    }

    pub fn range<'a>(&'a self, bounds: KeyBounds<'a>) -> impl Iterator<Item = &'a KeyEntry> + 'a {
        self.entries.range::<[u8], _>(bounds)
    }

    pub fn range_mut<'a>(&'a mut self, bounds: KeyBounds<'a>) -> impl Iterator<Item = EntryMut<'a>> + 'a {
        self.entries.range::<[u8], _>(bounds).map(|entry| EntryMut { entry })
    }

    pub fn iter(&self) -> impl Iterator<Item = &KeyEntry> {
        self.entries.iter()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Built in one go: sorted, then bulk-loaded into full nodes (inserting keys in order one by
/// one leaves every node half full).
impl FromIterator<KeyEntry> for KeySet {
    fn from_iter<I: IntoIterator<Item = KeyEntry>>(iter: I) -> KeySet {
        KeySet { entries: iter.into_iter().collect() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(mod_rev: i64, version: i64) -> Record {
        Record { mod_rev, sub: 0, create_rev: 2, version, lease: 0, value: vec![mod_rev as u8; 3].into() }
    }

    fn revs(e: &KeyEntry) -> Vec<i64> {
        e.history().between(0, i64::MAX).iter().map(|r| r.mod_rev).collect()
    }

    #[test]
    fn a_key_with_one_record_is_one_small_block() {
        assert_eq!(std::mem::size_of::<Record>(), 56);
        assert_eq!(std::mem::size_of::<KeyEntry>(), 8);
        assert_eq!(layout(capacity(1), 32).size(), 96, "header, one record, a 32-byte key");
        let rooms: Vec<u32> = (0..=9).map(capacity).collect();
        assert_eq!(rooms, vec![1, 1, 2, 3, 4, 8, 8, 8, 8, 16]);
    }

    #[test]
    fn a_key_with_no_one_or_many_records() {
        let mut set = KeySet::default();
        set.insert(KeyEntry::new(b"none", vec![]));
        set.insert(KeyEntry::new(b"one", vec![rec(2, 1)]));
        set.insert(KeyEntry::new(b"many", (2..40).map(|r| rec(r, r - 1)).collect()));
        assert!(set.get(b"none").unwrap().history().is_empty());
        assert_eq!(revs(set.get(b"one").unwrap()), vec![2]);
        assert_eq!(revs(set.get(b"many").unwrap()), (2..40).collect::<Vec<_>>());
        assert_eq!(set.iter().map(|e| e.key().to_vec()).collect::<Vec<_>>(), vec![b"many".to_vec(), b"none".to_vec(), b"one".to_vec()]);
        // Growing one record at a time, then by doubling: the key and the records survive moves.
        let mut e = set.get_mut(b"none").unwrap();
        for r in 2..100 {
            e.push(rec(r, r - 1));
            assert_eq!(e.key(), b"none");
        }
        assert_eq!(e.history().len(), 98);
        assert_eq!(e.history().at(50).unwrap().value.as_slice(), &[50; 3]);
        assert_eq!(set.get(b"none").unwrap().history().latest().unwrap().mod_rev, 99);
        let cloned = set.get(b"many").unwrap().clone();
        assert_eq!(revs(&cloned), (2..40).collect::<Vec<_>>());
    }

    #[test]
    fn compaction_drops_old_records_and_shrinks_the_block() {
        let mut set = KeySet::default();
        let key = vec![b'k'; 33]; // not a multiple of 8
        set.insert(KeyEntry::new(&key, vec![]));
        let mut e = set.get_mut(&key).unwrap();
        for r in 2..200 {
            e.push(rec(r, r - 1));
        }
        let freed = e.compact(150, 0);
        assert_eq!(freed, 148 * rec(0, 1).size_bytes(), "records 2..150 go, 150 stays visible");
        assert_eq!(e.history().len(), 50);
        assert_eq!(e.key(), key.as_slice());
        let mut e = set.get_mut(&key).unwrap();
        e.push(Record { version: 0, create_rev: 0, ..rec(200, 0) }); // deleted
        assert!(e.history().latest().is_none());
        assert_eq!(e.compact(250, 199), 50 * rec(0, 1).size_bytes(), "the puts before the tombstone go");
        assert_eq!(e.history().len(), 1, "a tombstone no segment holds yet keeps the key");
        e.compact(250, 250);
        assert!(e.history().is_empty());
        assert_eq!(e.key(), key.as_slice());
        set.remove(&key);
        assert!(set.is_empty());
    }

    #[test]
    fn records_change_in_place_and_ranges_follow_key_order() {
        let mut set: KeySet = ["b", "a", "c"].iter().map(|k| KeyEntry::new(k.as_bytes(), vec![rec(2, 1), rec(3, 2)])).collect();
        for mut e in set.range_mut((std::ops::Bound::Included(b"b"), std::ops::Bound::Unbounded)) {
            e.record_mut(Rev::main(2)).unwrap().lease = 7;
        }
        let leases: Vec<(Vec<u8>, i64)> = set.iter().map(|e| (e.key().to_vec(), e.history().record(Rev::main(2)).unwrap().lease)).collect();
        assert_eq!(leases, vec![(b"a".to_vec(), 0), (b"b".to_vec(), 7), (b"c".to_vec(), 7)]);
        assert_eq!(set.len(), 3);
    }

    fn hrec(mod_rev: i64, version: i64) -> Record {
        Record { mod_rev, sub: 0, create_rev: 2, version, lease: 0, value: vec![1].into() }
    }

    /// One key's history, written through its entry.
    struct History(KeySet);

    impl History {
        fn new() -> History {
            let mut set = KeySet::default();
            set.insert(KeyEntry::new(b"k", vec![]));
            History(set)
        }

        fn push(&mut self, rec: Record) {
            self.0.get_mut(b"k").unwrap().push(rec);
        }

        fn compact(&mut self, rev: i64, keep_tombstones_after: i64) -> u64 {
            self.0.get_mut(b"k").unwrap().compact(rev, keep_tombstones_after)
        }

        fn h(&self) -> &KeyHistory {
            self.0.get(b"k").unwrap().history()
        }
    }

    #[test]
    fn reads_at_revision_and_compacts() {
        let mut h = History::new();
        h.push(hrec(2, 1));
        h.push(hrec(4, 2));
        h.push(hrec(6, 0));
        assert!(h.h().at(1).is_none());
        assert_eq!(h.h().at(3).unwrap().mod_rev, 2);
        assert_eq!(h.h().at(5).unwrap().mod_rev, 4);
        assert!(h.h().at(6).is_none());
        h.compact(5, 0);
        assert!(h.h().at(5).is_some());
        h.compact(6, 6); // the tombstone is in a segment: the key goes
        assert!(h.h().is_empty());
    }

    #[test]
    fn a_tombstone_no_segment_holds_survives_compaction() {
        let mut h = History::new();
        h.push(hrec(2, 1));
        h.push(hrec(6, 0));
        h.compact(6, 5);
        assert_eq!(h.h().between(0, 6).len(), 1, "the tombstone stays for the next delta segment");
        assert!(h.h().at(6).is_none() && h.h().latest().is_none());
        h.compact(6, 6);
        assert!(h.h().is_empty());
        // Followed by a new generation: the tombstone still marks the gap until it is saved.
        h.push(hrec(8, 1));
        h.push(hrec(9, 0));
        h.push(hrec(11, 1));
        h.compact(10, 8);
        assert!(h.h().at(10).is_none(), "deleted at 9, put again at 11");
        assert_eq!(h.h().between(0, 11).len(), 2);
        h.compact(10, 9);
        assert_eq!(h.h().between(0, 11).len(), 1);
        assert!(h.h().at(10).is_none());
    }

    #[test]
    fn one_txn_deletes_and_puts_again_at_one_main_revision() {
        let mut h = History::new();
        h.push(hrec(2, 1));
        h.push(Record { sub: 0, ..hrec(5, 0) }); // deleted by the txn at 5...
        h.push(Record { sub: 1, create_rev: 5, ..hrec(5, 1) }); // ...and put again by it
        assert_eq!(h.h().at(4).unwrap().mod_rev, 2);
        let now = h.h().at(5).unwrap();
        assert_eq!((now.create_rev, now.version, now.sub), (5, 1, 1));
        assert!(h.h().record(Rev::new(5, 0)).unwrap().is_tombstone());
        h.compact(5, 5);
        assert_eq!(h.h().between(0, 5).len(), 1, "the put that ends the txn is what a read at 5 sees");
    }
}

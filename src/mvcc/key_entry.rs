//! One key of a shard's store and its history in a single heap block, held in the store's
//! B-tree by an 8-byte pointer. Why: with 1M keys the index was most of the resident memory,
//! and most of it was bookkeeping around the records rather than the records: a B-tree entry
//! of a boxed key and a `Vec` (40 bytes, nodes about 2/3 full: ~68 bytes a key), the key's own
//! allocation and the records' (`Vec` header, capacity). Here a key with one plain record (the
//! common case: see `index.rs`) is one 64-byte block (8-byte header, the 32 key bytes, the
//! 24-byte slot: the allocator's 64-byte class, where a 72-byte block took 80) and 8 bytes in
//! a tree node.
//!
//! Block layout: `Header { key_len_bits, len }`, then the key's bytes (padded to the slots'
//! alignment), then room for `capacity(len)` slots (one a record), then, in a full block (the
//! header's `FULL_BIT`), as much room for extras, one per record at its slot's index. A plain
//! block holds only plain records (each implied by its slot); its first record that is not
//! plain makes it full (`relocate`: the plain records get the extras they imply), and it stays
//! full. An updated key's block is full: the same 56 bytes a record as a 32-byte slot with a
//! 24-byte extra took before. The key comes first because a tree search compares it with a
//! dozen or more entries' keys, each in a block of its own: right after the header it is one
//! load from the entry's pointer, mostly in the header's cache line, where after the records it
//! took the header, then the last slot (for the extras' room), then the key (measured: put at
//! 1000 clients on 100k keys, the tree search was 9% of the server's CPU). The records are in
//! revision order (`KeyHistory` reads them); the rooms are exact while short (most keys keep
//! one or two records) and a power of two after, so they follow from the count and the full
//! bit, and the header is 8 bytes; compaction shrinks the block with the history. A block
//! whose rooms change moves to a new allocation.
//!
//! The tree (`KeySet`) orders entries by their key bytes, which never change. Records change in
//! place through a shared reference to the entry (the tree hands out no other), so `KeySet`
//! only gives that access from `&mut self`: no reader can hold a record meanwhile.

use std::alloc::Layout;
use std::cell::Cell;
use std::collections::BTreeSet;
use std::ptr::NonNull;

use super::index::{Extra, KeyHistory, Record, Slot};
use super::value::Value;
use super::{KeyBounds, Rev};

#[repr(C)]
#[derive(Clone, Copy)]
struct Header {
    /// The key's length, and `FULL_BIT` for a full block (an extra per record).
    key_len_bits: u32,
    len: u32,
}

/// The bit of `Header::key_len_bits` that marks a full block.
const FULL_BIT: u32 = 1 << 31;

impl Header {
    fn key_len(&self) -> u32 {
        self.key_len_bits & !FULL_BIT
    }

    fn is_full(&self) -> bool {
        self.key_len_bits & FULL_BIT != 0
    }
}

const HEADER_BYTES: usize = std::mem::size_of::<Header>();
const SLOT_BYTES: usize = std::mem::size_of::<Slot>();
const EXTRA_BYTES: usize = std::mem::size_of::<Extra>();
/// How many keys ahead a scan asks for a key's block (`KeySet::range_prefetched`).
const PREFETCH_AHEAD_KEYS: usize = 8;
/// Records grow one at a time up to this many, then by doubling.
const EXACT_GROWTH_RECORDS: u32 = 4;

/// The slots a block has room for when it holds `len`.
fn capacity(len: u32) -> u32 {
    if len <= EXACT_GROWTH_RECORDS {
        len.max(1)
    } else {
        len.checked_next_power_of_two().expect("under 2^31 records")
    }
}

/// Room in a block: (slots, extras).
type Rooms = (u32, u32);

/// The rooms of a block holding `len` records: a full block has as much room for extras.
fn rooms(len: u32, full: bool) -> Rooms {
    let cap = capacity(len);
    (cap, if full { cap } else { 0 })
}

/// A key and its history in one block; the tree's element. `Cell`: the block moves when it
/// grows or shrinks (see the module comment for why that is sound).
pub struct KeyEntry {
    block: Cell<NonNull<Header>>,
}

// SAFETY: a KeyEntry owns its block as a Box owns its contents (records hold only Send data);
// it is not Sync (Cell), so no two threads reach one at once.
unsafe impl Send for KeyEntry {}

/// The alignment of a block: its header's, slots' and extras'.
const BLOCK_ALIGN: usize = {
    let (h, s, x) = (std::mem::align_of::<Header>(), std::mem::align_of::<Slot>(), std::mem::align_of::<Extra>());
    let hs = if h > s { h } else { s };
    if hs > x { hs } else { x }
};
const _: () = assert!(HEADER_BYTES.is_multiple_of(BLOCK_ALIGN) && SLOT_BYTES.is_multiple_of(BLOCK_ALIGN) && EXTRA_BYTES.is_multiple_of(BLOCK_ALIGN));

/// The key's room: its bytes padded so that the slots after it are aligned (`key_len_bits` as
/// the header has it).
fn key_room(key_len_bits: u32) -> usize {
    ((key_len_bits & !FULL_BIT) as usize).next_multiple_of(BLOCK_ALIGN)
}

fn layout((cap, xcap): Rooms, key_len_bits: u32) -> Layout {
    let size = HEADER_BYTES + key_room(key_len_bits) + cap as usize * SLOT_BYTES + xcap as usize * EXTRA_BYTES;
    Layout::from_size_align(size, BLOCK_ALIGN).expect("a key entry's size fits")
}

fn key_ptr(block: NonNull<Header>) -> *mut u8 {
    // SAFETY: the key starts right after the header, inside the block.
    unsafe { block.as_ptr().cast::<u8>().add(HEADER_BYTES) }
}

fn slots_ptr(block: NonNull<Header>) -> *mut Slot {
    // SAFETY: the block's header is initialized (`allocate`); the slots follow the key's
    // room, inside the block.
    unsafe { key_ptr(block).add(key_room(block.as_ref().key_len_bits)).cast() }
}

fn extras_ptr_at(block: NonNull<Header>, cap: u32) -> *mut Extra {
    // SAFETY: the extras follow `cap` slots, inside the block.
    unsafe { slots_ptr(block).add(cap as usize).cast() }
}

/// Allocates a block for `rooms` with its header.
fn allocate(rooms: Rooms, key_len_bits: u32, len: u32) -> NonNull<Header> {
    let l = layout(rooms, key_len_bits);
    // SAFETY: the layout is non-zero sized (a header at least).
    let Some(block) = NonNull::new(unsafe { std::alloc::alloc(l) }.cast::<Header>()) else { std::alloc::handle_alloc_error(l) };
    // SAFETY: the block is fresh and holds a header.
    unsafe { block.as_ptr().write(Header { key_len_bits, len }) };
    block
}

impl KeyEntry {
    /// A key with `records` (in increasing revision order, possibly none).
    pub fn new(key: &[u8], records: Vec<Record>) -> KeyEntry {
        assert!(records.windows(2).all(|w| w[0].rev() < w[1].rev()), "revisions of a key must increase");
        let key_len = u32::try_from(key.len()).ok().filter(|&l| l < FULL_BIT).expect("a key under 2 GiB");
        let len = u32::try_from(records.len()).expect("under 2^32 records");
        let (mut slots, mut extras, mut full) = (Vec::with_capacity(records.len()), Vec::with_capacity(records.len()), false);
        for rec in records {
            let (slot, extra, plain) = Slot::encode(rec);
            full |= !plain;
            slots.push(slot);
            extras.push(extra);
        }
        let rooms = rooms(len, full);
        let block = allocate(rooms, key_len | if full { FULL_BIT } else { 0 }, len);
        // SAFETY: the block is large enough for its slots, extras (a full block's) and the
        // key; the slots are moved in (the Vec forgets them: set_len(0) below).
        unsafe {
            std::ptr::copy_nonoverlapping(slots.as_ptr(), slots_ptr(block), slots.len());
            slots.set_len(0);
            if full {
                std::ptr::copy_nonoverlapping(extras.as_ptr(), extras_ptr_at(block, rooms.0), extras.len());
            }
            std::ptr::copy_nonoverlapping(key.as_ptr(), key_ptr(block), key.len());
        }
        KeyEntry { block: Cell::new(block) }
    }

    fn header(&self) -> &Header {
        // SAFETY: the block is live while self is, and its header initialized.
        unsafe { self.block.get().as_ref() }
    }

    /// Asks the CPU to bring the block's first cache line (its header and the start of the key)
    /// into the cache: a scan over many keys touches each one's block, a cache miss each, and
    /// asking a few keys ahead overlaps those misses instead of waiting for each in turn.
    pub fn prefetch(&self) {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: a prefetch is a hint: it reads nothing the program sees and never faults.
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(self.block.get().as_ptr().cast::<i8>());
        }
    }

    pub fn key(&self) -> &[u8] {
        // SAFETY: key_len bytes at the key's place were written in `new` and moved along since.
        unsafe { std::slice::from_raw_parts(key_ptr(self.block.get()), self.header().key_len() as usize) }
    }

    pub fn history(&self) -> KeyHistory<'_> {
        KeyHistory::of(self.slots(), self.extras())
    }

    fn slots(&self) -> &[Slot] {
        // SAFETY: the first `len` slots are initialized.
        unsafe { std::slice::from_raw_parts(slots_ptr(self.block.get()), self.header().len as usize) }
    }

    /// A full block's extras, one per record.
    fn extras(&self) -> Option<&[Extra]> {
        let Header { len, .. } = *self.header();
        // SAFETY: a full block's first `len` extras are initialized.
        self.header().is_full().then(|| unsafe { std::slice::from_raw_parts(extras_ptr_at(self.block.get(), capacity(len)), len as usize) })
    }

    /// The rooms the block has for what it holds.
    fn rooms(&self) -> Rooms {
        rooms(self.header().len, self.header().is_full())
    }

    /// Moves the block from `old` rooms to `new` ones (room for at least what it holds): its
    /// slots, extras and key are copied to a new allocation. Rooms for extras in a plain block
    /// make it full: its records get the extras their slots imply (a full block stays full).
    ///
    /// # Safety
    /// No reference into this entry's records may be alive meanwhile.
    unsafe fn relocate(&self, old: Rooms, new: Rooms) {
        let block = self.block.get();
        let Header { key_len_bits, len } = *self.header();
        let (was_full, full) = (self.header().is_full(), new.1 > 0);
        assert!(new.0 >= len.max(1) && (!full || new.1 >= len) && (full || !was_full), "a key entry keeps its records");
        let moved = allocate(new, key_len_bits | if full { FULL_BIT } else { 0 }, len);
        // SAFETY: both blocks are live and large enough for what is copied or written; the
        // slots move (the old block is freed without dropping them).
        unsafe {
            std::ptr::copy_nonoverlapping(slots_ptr(block), slots_ptr(moved), len as usize);
            if was_full {
                std::ptr::copy_nonoverlapping(extras_ptr_at(block, old.0), extras_ptr_at(moved, new.0), len as usize);
            } else if full {
                for i in 0..len as usize {
                    extras_ptr_at(moved, new.0).add(i).write((*slots_ptr(block).add(i)).implied_extra());
                }
            }
            std::ptr::copy_nonoverlapping(key_ptr(block), key_ptr(moved), self.header().key_len() as usize);
            std::alloc::dealloc(block.as_ptr().cast(), layout(old, key_len_bits));
        }
        self.block.set(moved);
    }

    /// Appends a record newer than every other. The first record a plain block cannot imply
    /// makes it full.
    ///
    /// # Safety
    /// As `relocate`.
    unsafe fn push(&self, rec: Record) {
        if let Some(last) = self.history().iter().next_back() {
            assert!(rec.rev() > last.rev(), "revisions of a key must increase: {:?} after {:?}", rec.rev(), last.rev());
        }
        let len = self.header().len;
        let (slot, extra, plain) = Slot::encode(rec);
        let full = self.header().is_full() || !plain;
        let (old, new) = (self.rooms(), rooms(len + 1, full));
        if new != old {
            // SAFETY: the caller's promise.
            unsafe { self.relocate(old, new) };
        }
        let block = self.block.get();
        // SAFETY: len < cap now (and a full block's extras room as large): the places are
        // allocated and free.
        unsafe {
            slots_ptr(block).add(len as usize).write(slot);
            if full {
                extras_ptr_at(block, new.0).add(len as usize).write(extra);
            }
            (*block.as_ptr()).len = len + 1;
        }
    }

    /// Drops the oldest `n` records, shrinking the block to the room the rest need.
    /// Returns the bytes they held (`Record::size_bytes`).
    ///
    /// # Safety
    /// As `relocate`.
    unsafe fn drop_oldest(&self, n: usize) -> u64 {
        let len = self.header().len;
        assert!(n <= len as usize, "dropping more records than a key has");
        if n == 0 {
            return 0;
        }
        let freed = self.history().slice(0, n).size_bytes();
        let (old, full) = (self.rooms(), self.header().is_full());
        let block = self.block.get();
        let left = len - n as u32;
        let mut dropped: Vec<Slot> = Vec::with_capacity(n);
        // SAFETY: slots 0..n are moved out (into `dropped`, which drops them after the block
        // is consistent again), the rest move down, and a full block's extras with them; the
        // header then counts only those.
        unsafe {
            std::ptr::copy_nonoverlapping(slots_ptr(block), dropped.as_mut_ptr(), n);
            dropped.set_len(n);
            std::ptr::copy(slots_ptr(block).add(n), slots_ptr(block), left as usize);
            if full {
                let xs = extras_ptr_at(block, old.0);
                std::ptr::copy(xs.add(n), xs, left as usize);
            }
            (*block.as_ptr()).len = left;
            // The extras now start after the room for `left` slots, if that is smaller.
            let new = rooms(left, full);
            if new != old {
                self.relocate(old, new);
            }
        }
        drop(dropped);
        freed
    }
}
impl Drop for KeyEntry {
    fn drop(&mut self) {
        let block = self.block.get();
        let Header { key_len_bits, len } = *self.header();
        let rooms = self.rooms();
        // SAFETY: the first `len` slots are initialized and owned by this entry (extras are
        // plain data); the block was allocated with `layout(rooms, key_len_bits)`.
        unsafe {
            std::ptr::drop_in_place(std::ptr::slice_from_raw_parts_mut(slots_ptr(block), len as usize));
            std::alloc::dealloc(block.as_ptr().cast(), layout(rooms, key_len_bits));
        }
    }
}

impl Clone for KeyEntry {
    fn clone(&self) -> KeyEntry {
        KeyEntry::new(self.key(), self.history().iter().map(|r| r.to_record()).collect())
    }
}

impl std::fmt::Debug for KeyEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyEntry").field("key", &self.key()).field("records", &self.history().iter().collect::<Vec<_>>()).finish()
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

    pub fn history(&self) -> KeyHistory<'_> {
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

    /// The value of the record written at exactly `rev`.
    pub fn value_mut(&mut self, rev: Rev) -> Option<&mut Value> {
        let i = self.history().index_of(rev)?;
        // SAFETY: slot i < len is initialized; exclusive as in `push`, for as long as the
        // borrow of self.
        Some(unsafe { &mut (*slots_ptr(self.entry.block.get()).add(i)).value })
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

    pub fn range<'a>(&'a self, bounds: KeyBounds<'a>) -> impl Iterator<Item = &'a KeyEntry> + Clone + 'a {
        self.entries.range::<[u8], _>(bounds)
    }

    /// `range`, asking for each entry's block `PREFETCH_AHEAD_KEYS` entries before the caller
    /// reaches it (`KeyEntry::prefetch`): for scans that read every key's block.
    pub fn range_prefetched<'a>(&'a self, bounds: KeyBounds<'a>) -> impl Iterator<Item = &'a KeyEntry> + 'a {
        let entries = self.range(bounds);
        let mut ahead = entries.clone();
        ahead.by_ref().take(PREFETCH_AHEAD_KEYS).for_each(KeyEntry::prefetch);
        entries.inspect(move |_| {
            if let Some(next) = ahead.next() {
                next.prefetch();
            }
        })
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
        assert_eq!(std::mem::size_of::<KeyEntry>(), 8);
        let plain = Record { mod_rev: 9, sub: 0, create_rev: 9, version: 1, lease: 0, value: vec![1; 3].into() };
        let e = KeyEntry::new(&[b'k'; 32], vec![plain]);
        assert_eq!(e.rooms(), (1, 0));
        assert_eq!(layout(e.rooms(), 32).size(), 64, "header, one slot, a 32-byte key");
        let updated = Record { mod_rev: 12, version: 2, create_rev: 9, ..e.history().get(0).to_record() };
        let e = KeyEntry::new(&[b'k'; 32], vec![updated]);
        assert_eq!(e.rooms(), (1, 1));
        assert_eq!(layout(e.rooms(), 32).size(), 96, "an updated key's one record needs its extra too");
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
            *e.value_mut(Rev::main(2)).unwrap() = vec![7].into();
        }
        let values: Vec<(Vec<u8>, Vec<u8>)> = set.iter().map(|e| (e.key().to_vec(), e.history().record(Rev::main(2)).unwrap().value.as_slice().to_vec())).collect();
        assert_eq!(values, vec![(b"a".to_vec(), vec![2; 3]), (b"b".to_vec(), vec![7]), (b"c".to_vec(), vec![7])]);
        assert_eq!(set.len(), 3);
    }

    /// Plain puts, updates, leased puts and tombstones in a pattern, pushed, compacted and
    /// cloned: the entry reads back exactly what a plain list of the records holds.
    #[test]
    fn mixed_records_read_back_through_pushes_and_compactions() {
        // From a full block, and from plain blocks that become full at their first update.
        for first in [1, 4, 5, 0] {
            mixed_records_from(first);
        }
    }

    fn mixed_records_from(first: i64) {
        let kind = |r: i64| match r % 7 {
            0 => Record { mod_rev: r, sub: 1, create_rev: 0, version: 0, lease: 0, value: Vec::new().into() },
            1 | 4 => Record { mod_rev: r, sub: 0, create_rev: r, version: 1, lease: 0, value: vec![r as u8; 2].into() },
            2 => Record { mod_rev: r, sub: 2, create_rev: r - 1, version: 2, lease: 0, value: vec![r as u8; 5].into() },
            3 => Record { mod_rev: r, sub: 0, create_rev: r, version: 1, lease: r * 1000, value: vec![r as u8].into() },
            5 => Record { mod_rev: r, sub: 0, create_rev: 0, version: 0, lease: 0, value: Vec::new().into() },
            _ => Record { mod_rev: r, sub: 0, create_rev: r - 2, version: 3, lease: 5, value: vec![1; 70].into() },
        };
        let mut set = KeySet::default();
        let key = vec![b'x'; 13];
        let start: Vec<Record> = (first..first + 1).map(kind).collect();
        set.insert(KeyEntry::new(&key, start.clone()));
        let mut model = start;
        let check = |set: &KeySet, model: &[Record]| {
            let e = set.get(&key).unwrap();
            assert_eq!(e.key(), key.as_slice());
            assert_eq!(e.history().iter().map(|r| r.to_record()).collect::<Vec<_>>(), model);
            assert_eq!(e.clone().history().iter().map(|r| r.to_record()).collect::<Vec<_>>(), model);
        };
        for r in first + 1..first + 300 {
            set.get_mut(&key).unwrap().push(kind(r));
            model.push(kind(r));
            check(&set, &model);
            if r % 37 == 0 {
                let (upto, saved) = (r - 20 + r % 3, r - 25);
                let n = set.get(&key).unwrap().history().compactable(upto, saved);
                let freed = set.get_mut(&key).unwrap().compact(upto, saved);
                assert_eq!(freed, model.drain(..n).map(|r| r.size_bytes()).sum::<u64>());
                check(&set, &model);
            }
        }
        // Everything a read can no longer see: all of a deleted key, all but the last record
        // of a live one.
        let n = set.get(&key).unwrap().history().compactable(i64::MAX, i64::MAX);
        let freed = set.get_mut(&key).unwrap().compact(i64::MAX, i64::MAX);
        assert_eq!(freed, model.drain(..n).map(|r| r.size_bytes()).sum::<u64>());
        assert_eq!(model.len(), usize::from(model.last().is_some_and(|r| r.version != 0)));
        check(&set, &model);
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

        fn h(&self) -> KeyHistory<'_> {
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

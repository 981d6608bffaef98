//! Which watchers an event concerns, found from its key without looking at the others (etcd's
//! watcherGroup keeps single keys in a map and ranges in an interval tree). A thousand idle
//! watchers of keys nobody writes must cost a write nothing. Ranges of three kinds, each found
//! its own way:
//! * a single key: by hash;
//! * a prefix (`etcdctl --prefix`, kube-apiserver's watches): by hashing the key's own
//!   prefixes, of the lengths some watcher's prefix has;
//! * any other range: by a walk of those ranges in order of their start, up to the key.
//!
//! The index holds every watcher, synced or not; the hub skips those that are not following
//! the live events.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::mvcc::KeyRange;

/// A watcher: its stream and its watch id.
pub type WatcherRef = (u64, i64);

/// The watchers of one range.
pub struct Entry {
    pub range: KeyRange,
    pub watchers: Vec<WatcherRef>,
}

#[derive(Default)]
pub struct WatcherIndex {
    /// Ranges in use, by slot (freed slots are reused).
    entries: Vec<Option<Entry>>,
    free: Vec<usize>,
    by_range: HashMap<KeyRange, usize>,
    singles: HashMap<Vec<u8>, usize>,
    prefixes: HashMap<Vec<u8>, usize>,
    /// How many watched prefixes have each length.
    prefix_lens: BTreeMap<usize, usize>,
    /// Other ranges by (start, end).
    others: BTreeMap<(Vec<u8>, Option<Vec<u8>>), usize>,
    watchers: usize,
    with_prev_kv: usize,
}

impl WatcherIndex {
    pub fn insert(&mut self, range: &KeyRange, w: WatcherRef, prev_kv: bool) {
        let slot = match self.by_range.get(range) {
            Some(&slot) => slot,
            None => self.add_range(range),
        };
        self.entry_mut(slot).watchers.push(w);
        self.watchers += 1;
        self.with_prev_kv += usize::from(prev_kv);
    }

    pub fn remove(&mut self, range: &KeyRange, w: WatcherRef, prev_kv: bool) {
        if self.remove_from(range, |&x| x == w) > 0 {
            self.with_prev_kv -= usize::from(prev_kv);
        }
    }

    /// Removes every watcher of `stream` (`watchers`: their ranges and prev_kv), one pass over
    /// each range's list rather than one per watcher (10 000 watchers of one prefix on a
    /// closing stream would cost 50M steps).
    pub fn remove_stream<'a>(&mut self, stream: u64, watchers: impl Iterator<Item = (&'a KeyRange, bool)>) {
        let mut ranges: HashSet<&KeyRange> = HashSet::new();
        for (range, prev_kv) in watchers {
            ranges.insert(range);
            self.with_prev_kv -= usize::from(prev_kv);
        }
        for range in ranges {
            self.remove_from(range, |&(s, _)| s == stream);
        }
    }

    /// Removes the watchers of `range` that `gone` picks (and the range once none is left);
    /// returns how many went.
    fn remove_from(&mut self, range: &KeyRange, gone: impl Fn(&WatcherRef) -> bool) -> usize {
        let Some(&slot) = self.by_range.get(range) else { return 0 };
        let entry = self.entry_mut(slot);
        let before = entry.watchers.len();
        entry.watchers.retain(|w| !gone(w));
        let (removed, now_empty) = (before - entry.watchers.len(), entry.watchers.is_empty());
        self.watchers -= removed;
        if now_empty {
            self.drop_range(slot);
        }
        removed
    }

    /// `Some(whether any wants prev_kv)` when there is a watcher.
    pub fn any(&self) -> Option<bool> {
        (self.watchers > 0).then_some(self.with_prev_kv > 0)
    }

    pub fn entry(&self, slot: usize) -> &Entry {
        self.entries[slot].as_ref().expect("a slot in use")
    }

    /// Calls `hit` with the slot of every range that holds `key`.
    pub fn find(&self, key: &[u8], mut hit: impl FnMut(usize)) {
        if let Some(&slot) = self.singles.get(key) {
            hit(slot);
        }
        for (&len, _) in self.prefix_lens.range(..=key.len()) {
            if let Some(&slot) = self.prefixes.get(&key[..len]) {
                hit(slot);
            }
        }
        for ((start, _), &slot) in &self.others {
            if start.as_slice() > key {
                break;
            }
            if self.entry(slot).range.contains(key) {
                hit(slot);
            }
        }
    }

    fn entry_mut(&mut self, slot: usize) -> &mut Entry {
        self.entries[slot].as_mut().expect("a slot in use")
    }

    fn add_range(&mut self, range: &KeyRange) -> usize {
        let entry = Some(Entry { range: range.clone(), watchers: Vec::new() });
        let slot = match self.free.pop() {
            Some(slot) => {
                self.entries[slot] = entry;
                slot
            }
            None => {
                self.entries.push(entry);
                self.entries.len() - 1
            }
        };
        self.by_range.insert(range.clone(), slot);
        if let Some(key) = range.single_key() {
            self.singles.insert(key.to_vec(), slot);
        } else if let Some(prefix) = range.prefix() {
            self.prefixes.insert(prefix.to_vec(), slot);
            *self.prefix_lens.entry(prefix.len()).or_default() += 1;
        } else if let KeyRange::Span { start, end } = range {
            self.others.insert((start.clone(), end.clone()), slot);
        }
        slot
    }

    fn drop_range(&mut self, slot: usize) {
        let entry = self.entries[slot].take().expect("a slot in use");
        let range = entry.range;
        self.by_range.remove(&range);
        if let Some(key) = range.single_key() {
            self.singles.remove(key);
        } else if let Some(prefix) = range.prefix() {
            self.prefixes.remove(prefix);
            let n = self.prefix_lens.get_mut(&prefix.len()).expect("counted when added");
            *n -= 1;
            if *n == 0 {
                self.prefix_lens.remove(&prefix.len());
            }
        } else if let KeyRange::Span { start, end } = range {
            self.others.remove(&(start, end));
        }
        self.free.push(slot);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(ix: &WatcherIndex, key: &[u8]) -> Vec<WatcherRef> {
        let mut out = Vec::new();
        ix.find(key, |slot| out.extend(ix.entry(slot).watchers.iter().copied()));
        out.sort();
        out
    }

    #[test]
    fn finds_the_watchers_of_single_keys_prefixes_and_other_ranges() {
        let mut ix = WatcherIndex::default();
        ix.insert(&KeyRange::new(b"a/b", b""), (1, 0), false);
        ix.insert(&KeyRange::new(b"a/", b"a0"), (1, 1), true);
        ix.insert(&KeyRange::new(b"a/", b"a0"), (2, 0), false);
        ix.insert(&KeyRange::new(b"a\xff", b"b"), (2, 1), false); // a prefix ending in 0xff
        ix.insert(&KeyRange::new(b"a/a", b"a/c"), (3, 0), false);
        ix.insert(&KeyRange::new(b"m", b"\0"), (3, 1), false); // from m on
        ix.insert(&KeyRange::new(b"\xff", b"\0"), (3, 2), false); // "prefix" 0xff: from 0xff on
        assert_eq!(found(&ix, b"a/b"), vec![(1, 0), (1, 1), (2, 0), (3, 0)]);
        assert_eq!(found(&ix, b"a/bc"), vec![(1, 1), (2, 0), (3, 0)]);
        assert_eq!(found(&ix, b"a/c"), vec![(1, 1), (2, 0)]);
        assert_eq!(found(&ix, b"a\xff\x01"), vec![(2, 1)]);
        assert_eq!(found(&ix, b"z"), vec![(3, 1)]);
        assert_eq!(found(&ix, b"\xff\xff"), vec![(3, 1), (3, 2)]);
        assert_eq!(found(&ix, b"a"), vec![]);
        assert_eq!(ix.any(), Some(true));
        ix.remove(&KeyRange::new(b"a/", b"a0"), (1, 1), true);
        assert_eq!(ix.any(), Some(false));
        assert_eq!(found(&ix, b"a/c"), vec![(2, 0)]);
        ix.remove(&KeyRange::new(b"a/", b"a0"), (2, 0), false);
        // A stream's watchers go in one call; the others' stay.
        ix.insert(&KeyRange::new(b"a/", b"a0"), (5, 0), true);
        ix.insert(&KeyRange::new(b"a/", b"a0"), (6, 0), false);
        ix.insert(&KeyRange::new(b"a/b", b""), (5, 1), false);
        let (p, k) = (KeyRange::new(b"a/", b"a0"), KeyRange::new(b"a/b", b""));
        ix.remove_stream(5, [(&p, true), (&k, false)].into_iter());
        assert_eq!(found(&ix, b"a/b"), vec![(1, 0), (3, 0), (6, 0)]);
        assert_eq!(ix.any(), Some(false));
        ix.remove(&p, (6, 0), false);
        ix.remove(&KeyRange::new(b"a/a", b"a/c"), (3, 0), false);
        assert_eq!(found(&ix, b"a/b"), vec![(1, 0)]);
        // A freed slot is reused by the next range.
        ix.insert(&KeyRange::new(b"q", b""), (4, 0), false);
        assert_eq!(found(&ix, b"q"), vec![(3, 1), (4, 0)]);
        assert_eq!(ix.entries.len(), 6);
        for (r, w) in [(KeyRange::new(b"a/b", b""), (1, 0)), (KeyRange::new(b"a\xff", b"b"), (2, 1)), (KeyRange::new(b"m", b"\0"), (3, 1)), (KeyRange::new(b"\xff", b"\0"), (3, 2)), (KeyRange::new(b"q", b""), (4, 0))] {
            ix.remove(&r, w, false);
        }
        assert_eq!(ix.any(), None);
        assert!(ix.by_range.is_empty() && ix.singles.is_empty() && ix.prefixes.is_empty() && ix.prefix_lens.is_empty() && ix.others.is_empty());
    }
}

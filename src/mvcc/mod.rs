//! Multi-version key-value state of one shard. Each key keeps its history of revisions
//! (`index.rs`, as etcd's keyIndex); `store.rs` answers ranges at a revision and applies
//! writes at the revision the applier assigns. Compaction drops history below a revision.
//! `segment.rs` is the codec of an immutable rkyv snapshot segment (no IO runtime, no store);
//! `persist.rs` writes a shard's store to one; `key_set.rs` is a set of keys and spans for txn
//! checks; `page_ends.rs` remembers where paginated reads ended, for the next page's count.
//! `export.rs` lists the history as etcd's bolt `key` bucket holds it.

pub mod changes;
pub mod events;
pub mod export;
pub mod hash;
pub mod index;
pub mod key_entry;
pub mod key_set;
pub mod page_ends;
pub mod persist;
pub mod segment;
pub mod store;
pub mod value;

use std::ops::Bound;

/// A revision as etcd's mvcc keeps it: `main` is the revision clients see (one per change
/// request; every write of a txn shares it), `sub` orders the writes within one `main` (the
/// n-th write of a txn), so one txn may delete a key and put it again (a new generation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Rev {
    pub main: i64,
    pub sub: u32,
}

impl Rev {
    pub fn new(main: i64, sub: u32) -> Rev {
        Rev { main, sub }
    }

    /// The first (often only) write of revision `main`.
    pub fn main(main: i64) -> Rev {
        Rev { main, sub: 0 }
    }
}

/// Lower and upper bound of a key range, as BTreeMap::range takes them.
pub type KeyBounds<'a> = (Bound<&'a [u8]>, Bound<&'a [u8]>);

/// The keys a request names, decoded from etcd's (key, range_end) convention.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum KeyRange {
    /// `range_end` empty: exactly `key`.
    Single(Vec<u8>),
    /// `[start, end)`; `end == None` means no upper bound (`range_end == "\0"`).
    Span { start: Vec<u8>, end: Option<Vec<u8>> },
}

impl KeyRange {
    pub fn new(key: &[u8], range_end: &[u8]) -> KeyRange {
        match range_end {
            [] => KeyRange::Single(key.to_vec()),
            [0] => KeyRange::Span { start: key.to_vec(), end: None },
            end => KeyRange::Span { start: key.to_vec(), end: Some(end.to_vec()) },
        }
    }

    /// The BTreeMap bounds; `None` when the range is empty (end <= start).
    pub fn bounds(&self) -> Option<KeyBounds<'_>> {
        match self {
            KeyRange::Single(k) => Some((Bound::Included(k), Bound::Included(k))),
            KeyRange::Span { start, end: None } => Some((Bound::Included(start), Bound::Unbounded)),
            KeyRange::Span { start, end: Some(end) } if end.as_slice() > start.as_slice() => {
                Some((Bound::Included(start), Bound::Excluded(end)))
            }
            KeyRange::Span { .. } => None,
        }
    }

    pub fn contains(&self, key: &[u8]) -> bool {
        match self.bounds() {
            None => false,
            Some(b) => std::ops::RangeBounds::<[u8]>::contains(&b, key),
        }
    }

    pub fn single_key(&self) -> Option<&[u8]> {
        match self {
            KeyRange::Single(k) => Some(k),
            KeyRange::Span { .. } => None,
        }
    }

    /// The prefix when the range is exactly the keys that start with it (`etcdctl --prefix`).
    pub fn prefix(&self) -> Option<&[u8]> {
        match self {
            KeyRange::Span { start, end: Some(end) } if !start.is_empty() && *end == prefix_end(start) => Some(start),
            _ => None,
        }
    }
}

/// The end of the range of keys that start with `prefix` (clientv3's GetPrefixRangeEnd): its
/// last byte below 0xff plus one, or "\0" (every key) when there is none.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_etcd_range_conventions() {
        assert!(KeyRange::new(b"a", b"").contains(b"a"));
        assert!(!KeyRange::new(b"a", b"").contains(b"ab"));
        assert!(KeyRange::new(b"a", b"\0").contains(b"zzz"));
        assert!(KeyRange::new(b"\0", b"\0").contains(b"\x01"));
        assert!(KeyRange::new(b"a", b"b").contains(b"azz"));
        assert!(!KeyRange::new(b"a", b"b").contains(b"b"));
        assert!(KeyRange::new(b"b", b"a").bounds().is_none());
    }
}

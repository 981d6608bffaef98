//! Where a shard's recent paginated reads ended, so that the next page's count costs nothing.
//!
//! etcd answers every page of a paginated range with the count of the whole rest of its range,
//! and kube-apiserver pages its LISTs by 500 keys, every page after the first at the first
//! page's revision. So each page visits every key from its start to the range's end: a LIST of
//! n keys visits about n² / 1000 of them (100k keys: 10 million, 250 ms of a shard at ~25 ns a
//! key counted; etcd's index walk does the same). ballast remembers where pages ended instead.
//!
//! What a page end knows: a read of `[start, end)` at a revision nothing more is written at
//! (a *sealed* one: the front end's reads, never a txn's, whose later ops still write at its
//! revision) gathered the first live keys of its range, `k_1 < … < k_m`, and counted `count`.
//! The keys a read at that revision sees never change until compaction passes it, and then the
//! read fails before it asks here. So for any `s` in `[start, k_m]` the count of `[s, end)` is
//! `count − |{k_i < s}|` (every live key below `s` was gathered); beyond `k_m` only when the
//! read gathered every key (`m == count`). The next page starts just after the last key given
//! out, inside the gathered keys (the read fetched one more than its limit, as etcd's does for
//! `more`): on each shard holding part of the range, since every key of a shard below it was
//! given out.

use std::collections::VecDeque;

use super::KeyRange;
use crate::proto::mvccpb::KeyValue;

/// Page ends remembered per shard (kube-apiserver lists several resources at once).
const PAGE_ENDS_KEPT: usize = 16;
/// Pages with more keys than this are not remembered (their keys would be kept meanwhile).
const MAX_PAGE_KEYS: usize = 10_000;

/// A shard's recent page ends, newest last.
#[derive(Debug, Default)]
pub struct PageEnds {
    ends: VecDeque<PageEnd>,
}

#[derive(Debug)]
struct PageEnd {
    start: Vec<u8>,
    /// The range's end; `None`: no upper bound.
    end: Option<Vec<u8>>,
    rev: i64,
    /// The gathered keys, in order, one after another (`key_ends[i]` is where key i ends).
    keys: Vec<u8>,
    key_ends: Vec<usize>,
    count: usize,
}

impl PageEnd {
    fn key(&self, i: usize) -> &[u8] {
        let from = if i == 0 { 0 } else { self.key_ends[i - 1] };
        &self.keys[from..self.key_ends[i]]
    }

    /// The count of `[s, end)`, if this page end knows it (see the module comment).
    fn count_from(&self, s: &[u8]) -> Option<usize> {
        if s < self.start.as_slice() {
            return None;
        }
        let gathered = self.key_ends.len();
        // The gathered keys below `s`: a binary search over their indexes.
        let (mut lo, mut hi) = (0, gathered);
        while lo < hi {
            let mid = (lo + hi) / 2;
            if self.key(mid) < s {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        (lo < gathered || gathered == self.count).then(|| self.count - lo)
    }
}

impl PageEnds {
    /// The count of `range` at the sealed revision `rev`, if a page end knows it.
    pub fn count_of(&self, range: &KeyRange, rev: i64) -> Option<usize> {
        let KeyRange::Span { start, end } = range else { return None };
        self.ends.iter().rev().filter(|e| e.rev == rev && e.end == *end).find_map(|e| e.count_from(start))
    }

    /// Remembers a finished read of `range` at the sealed revision `rev` that gathered `kvs`
    /// (the first live keys of the range, in order) and counted `count`.
    pub fn record(&mut self, range: &KeyRange, rev: i64, kvs: &[KeyValue], count: usize) {
        let KeyRange::Span { start, end } = range else { return };
        if kvs.len() > MAX_PAGE_KEYS {
            return;
        }
        debug_assert!(kvs.len() <= count, "gathered {} of {count} keys", kvs.len());
        debug_assert!(kvs.windows(2).all(|w| w[0].key < w[1].key), "gathered keys in order");
        let mut keys = Vec::with_capacity(kvs.iter().map(|kv| kv.key.len()).sum());
        let key_ends = kvs
            .iter()
            .map(|kv| {
                keys.extend_from_slice(&kv.key);
                keys.len()
            })
            .collect();
        if self.ends.len() == PAGE_ENDS_KEPT {
            self.ends.pop_front();
        }
        self.ends.push_back(PageEnd { start: start.clone(), end: end.clone(), rev, keys, key_ends, count });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kvs(keys: &[&str]) -> Vec<KeyValue> {
        keys.iter().map(|k| KeyValue { key: k.as_bytes().to_vec(), ..Default::default() }).collect()
    }

    fn span(start: &str, end: &str) -> KeyRange {
        KeyRange::new(start.as_bytes(), end.as_bytes())
    }

    /// A page of [a, z) at revision 5 that gathered b, d, f of 10 keys: it knows the count from
    /// any start in [a, f], not beyond f, nor at another revision or range end.
    #[test]
    fn a_page_end_knows_the_count_up_to_its_last_key() {
        let mut p = PageEnds::default();
        p.record(&span("a", "z"), 5, &kvs(&["b", "d", "f"]), 10);
        assert_eq!(p.count_of(&span("a", "z"), 5), Some(10));
        assert_eq!(p.count_of(&span("b", "z"), 5), Some(10));
        assert_eq!(p.count_of(&span("b\0", "z"), 5), Some(9));
        assert_eq!(p.count_of(&span("d\0", "z"), 5), Some(8));
        assert_eq!(p.count_of(&span("f", "z"), 5), Some(8));
        assert_eq!(p.count_of(&span("f\0", "z"), 5), None, "beyond the last gathered key");
        assert_eq!(p.count_of(&span("\0", "z"), 5), None, "before the page's start");
        assert_eq!(p.count_of(&span("b\0", "z"), 6), None, "another revision");
        assert_eq!(p.count_of(&span("b\0", "y"), 5), None, "another range end");
        assert_eq!(p.count_of(&span("b\0", "\0"), 5), None, "no upper bound is another end");
        assert_eq!(p.count_of(&KeyRange::Single(b"b".to_vec()), 5), None);
    }

    /// A read that gathered every key of its range knows the count from anywhere after it.
    #[test]
    fn a_page_with_every_key_knows_the_rest_is_empty() {
        let mut p = PageEnds::default();
        p.record(&span("a", "\0"), 7, &kvs(&["b", "c"]), 2);
        assert_eq!(p.count_of(&span("c\0", "\0"), 7), Some(0));
        assert_eq!(p.count_of(&span("x", "\0"), 7), Some(0));
    }

    /// Only `PAGE_ENDS_KEPT` page ends are kept, the oldest dropped; a page too large is not.
    #[test]
    fn page_ends_are_bounded() {
        let mut p = PageEnds::default();
        for rev in 0..PAGE_ENDS_KEPT as i64 + 1 {
            p.record(&span("a", "z"), rev, &kvs(&["b"]), 3);
        }
        assert_eq!(p.ends.len(), PAGE_ENDS_KEPT);
        assert_eq!(p.count_of(&span("a", "z"), 0), None, "the oldest was dropped");
        assert_eq!(p.count_of(&span("a", "z"), PAGE_ENDS_KEPT as i64), Some(3));
        let big: Vec<String> = (0..=MAX_PAGE_KEYS).map(|i| format!("k{i:06}")).collect();
        let refs: Vec<&str> = big.iter().map(String::as_str).collect();
        p.record(&span("k", "l"), 99, &kvs(&refs), big.len());
        assert_eq!(p.count_of(&span("k", "l"), 99), None);
    }
}

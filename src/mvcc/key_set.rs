//! A set of keys given as single keys and `[start, end)` spans (`end` `None`: no upper bound),
//! with a membership test in O(log n): spans are merged as they are added. Txn checks use it to
//! ask "does an earlier op delete this key?" for every op of a txn of any size without a
//! quadratic scan (100k ops in one nested txn are within the request size limit).

use std::collections::{BTreeMap, HashSet};
use std::ops::Bound;

use super::KeyRange;

#[derive(Debug, Default, Clone)]
pub struct KeySet {
    points: HashSet<Vec<u8>>,
    /// Disjoint spans, start → end (`None`: unbounded); touching spans are merged too.
    spans: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
}

impl KeySet {
    pub fn insert_key(&mut self, key: &[u8]) {
        if !self.points.contains(key) {
            self.points.insert(key.to_vec());
        }
    }

    /// Adds the keys `KeyRange` names (etcd's delete semantics: `"\0"` as end is unbounded).
    pub fn insert_range(&mut self, range: &KeyRange) {
        match range {
            KeyRange::Single(k) => self.insert_key(k),
            KeyRange::Span { start, end } => self.insert_span(start, end.as_deref()),
        }
    }

    /// Adds `[start, end)`; an empty span (end <= start) adds nothing.
    pub fn insert_span(&mut self, start: &[u8], end: Option<&[u8]>) {
        if end.is_some_and(|e| e <= start) {
            return;
        }
        let mut start = start.to_vec();
        let mut end = end.map(<[u8]>::to_vec);
        // A span starting at or before `start` that reaches it absorbs the new one's start.
        if let Some((s, e)) = self.spans.range::<[u8], _>((Bound::Unbounded, Bound::Included(start.as_slice()))).next_back() {
            if e.as_deref().is_none_or(|e| e >= start.as_slice()) {
                start = s.clone();
                end = later_end(end, e.clone());
            }
        }
        // Spans starting inside (or touching) the new one are merged into it.
        let absorbed: Vec<Vec<u8>> = self
            .spans
            .range::<[u8], _>((Bound::Included(start.as_slice()), Bound::Unbounded))
            .take_while(|(s, _)| end.as_deref().is_none_or(|e| s.as_slice() <= e))
            .map(|(s, _)| s.clone())
            .collect();
        for s in absorbed {
            let e = self.spans.remove(&s).expect("listed above");
            end = later_end(end, e);
        }
        self.spans.insert(start, end);
    }

    /// Adds every key of `other`.
    pub fn extend(&mut self, other: &KeySet) {
        for k in &other.points {
            self.insert_key(k);
        }
        for (s, e) in &other.spans {
            self.insert_span(s, e.as_deref());
        }
    }

    pub fn contains(&self, key: &[u8]) -> bool {
        if self.points.contains(key) {
            return true;
        }
        let before = self.spans.range::<[u8], _>((Bound::Unbounded, Bound::Included(key))).next_back();
        before.is_some_and(|(_, e)| e.as_deref().is_none_or(|e| key < e))
    }
}

fn later_end(a: Option<Vec<u8>>, b: Option<Vec<u8>>) -> Option<Vec<u8>> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_and_merged_spans() {
        let mut s = KeySet::default();
        s.insert_key(b"k");
        s.insert_span(b"b", Some(b"d"));
        s.insert_span(b"c", Some(b"f"));
        s.insert_span(b"x", None);
        s.insert_span(b"z", Some(b"a")); // empty
        assert!(s.contains(b"k") && !s.contains(b"kk"));
        assert!(s.contains(b"b") && s.contains(b"e") && !s.contains(b"f") && !s.contains(b"a"));
        assert!(s.contains(b"x") && s.contains(b"\xff\xff"));
        assert_eq!(s.spans.len(), 2, "overlapping spans merge: {:?}", s.spans);
        s.insert_span(b"a", Some(b"y"));
        assert_eq!(s.spans.len(), 1);
        assert!(s.contains(b"a") && s.contains(b"g"));
        let mut t = KeySet::default();
        t.extend(&s);
        assert!(t.contains(b"k") && t.contains(b"q") && !t.contains(b"0"));
    }
}

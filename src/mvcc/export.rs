//! A shard's history as etcd's bolt `key` bucket holds it, for Maintenance.Snapshot
//! (`src/export/`): each stored revision up to the exported one under its revision key
//! (`BE64 main | '_' | BE64 sub`, plus 't' for a tombstone) with its protobuf `KeyValue` (a
//! tombstone's holds only the key). At or below the compaction only what etcd's compaction
//! keeps stays: the newest revision of each key there, unless it is a tombstone.

use prost::Message as _;

use super::index::RecordRef;
use super::store::Store;
use super::Rev;
use crate::proto::mvccpb::KeyValue;

/// One entry of the `key` bucket.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportRecord {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
}

impl ExportRecord {
    /// The entry of `key`'s record `r`: its revision key and its protobuf `KeyValue` (a
    /// tombstone's holds only the key).
    pub fn of(key: &[u8], r: &RecordRef<'_>) -> ExportRecord {
        let kv = if r.is_tombstone() { KeyValue { key: key.to_vec(), ..Default::default() } } else { r.to_kv(key, false) };
        ExportRecord { key: rev_key(r.rev(), r.is_tombstone()), value: kv.encode_to_vec() }
    }
}

/// etcd's revision key (revision.go revToBytes, plus kvstore's tombstone mark).
pub fn rev_key(rev: Rev, tombstone: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(18);
    out.extend_from_slice(&(rev.main as u64).to_be_bytes());
    out.push(b'_');
    out.extend_from_slice(&u64::from(rev.sub).to_be_bytes());
    if tombstone {
        out.push(b't');
    }
    out
}

impl Store {
    /// The entries of up to `max_keys` keys after `after` (from the first key when `None`),
    /// stopping early past `max_bytes`; and the last key looked at, to continue after (`None`
    /// once every key was).
    pub fn export_chunk(&self, after: Option<&[u8]>, rev: i64, compact_rev: i64, max_keys: usize, max_bytes: usize) -> (Vec<ExportRecord>, Option<Vec<u8>>) {
        use std::ops::Bound;
        let lower = after.map_or(Bound::Unbounded, Bound::Excluded);
        let (mut out, mut bytes) = (Vec::new(), 0);
        for (n, (key, hist)) in self.keys_from(lower).enumerate() {
            let kept = hist.at(compact_rev).map(|r| r.rev());
            for r in hist.between(0, rev).iter() {
                if r.mod_rev <= compact_rev && Some(r.rev()) != kept {
                    continue;
                }
                let entry = ExportRecord::of(key, &r);
                bytes += entry.value.len() + 18;
                out.push(entry);
            }
            if n + 1 == max_keys || bytes >= max_bytes {
                return (out, Some(key.to_vec()));
            }
        }
        (out, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mvcc::store::WriteOp;
    use crate::mvcc::KeyRange;

    fn put(s: &mut Store, k: &str, v: &str, rev: i64) {
        s.write(WriteOp::Put { key: k.into(), value: Some(v.into()), lease: Some(0), prev_kv: false }, Rev::main(rev)).unwrap();
    }

    /// The history of etcd's own snapshot after put a, put b, put a, del b, put c, compact 3.
    #[test]
    fn keeps_what_etcds_compaction_keeps() {
        let mut s = Store::default();
        put(&mut s, "a", "1", 2);
        put(&mut s, "b", "2", 3);
        put(&mut s, "a", "3", 4);
        s.write(WriteOp::DeleteRange { range: KeyRange::new(b"b", b""), prev_kv: false }, Rev::main(5)).unwrap();
        put(&mut s, "c", "4", 6);
        put(&mut s, "c", "5", 7);
        s.compact(3);
        let (records, next) = s.export_chunk(None, 6, 3, 100, 1 << 20);
        assert_eq!(next, None);
        let mut keys: Vec<_> = records.iter().map(|r| r.key.clone()).collect();
        keys.sort();
        assert_eq!(keys, [rev_key(Rev::main(2), false), rev_key(Rev::main(3), false), rev_key(Rev::main(4), false), rev_key(Rev::main(5), true), rev_key(Rev::main(6), false)]);
        let tomb = records.iter().find(|r| r.key.ends_with(b"t")).unwrap();
        assert_eq!(tomb.value, b"\n\x01b");
        let a2 = records.iter().find(|r| r.key == rev_key(Rev::main(2), false)).unwrap();
        assert_eq!(a2.value, b"\n\x01a\x10\x02\x18\x02 \x01*\x011", "etcd's bytes for a=1 at 2");
        // One key at a time, continuing after the last.
        let (first, next) = s.export_chunk(None, 6, 3, 1, 1 << 20);
        assert_eq!((first.len(), next.as_deref()), (2, Some(&b"a"[..])));
        let (second, _) = s.export_chunk(next.as_deref(), 6, 3, 1, 1 << 20);
        assert_eq!(second.len(), 2, "b at 3 and its tombstone at 5");
    }
}

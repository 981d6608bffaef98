//! etcd's HashKV: a CRC-32C (Castagnoli) over "key" and then, in revision order, every stored
//! revision up to the hashed one — its revision key (`BE64 main | '_' | BE64 sub`, plus 't' for
//! a tombstone) and its protobuf `KeyValue` (a tombstone's holds only the key). Revisions at or
//! below the compaction are hashed only if they are the newest of a key live at the hashed
//! revision (etcd's `keep`; with no live key at all, etcd hashes every stored one), and a
//! tombstone at exactly the compaction never is. Each shard lists its records (`records`);
//! `hash` joins them. Sub revisions are etcd's (a range delete takes one per key it deletes).

use prost::Message as _;

use super::store::Store;
use super::Rev;
use crate::proto::mvccpb::KeyValue;

/// One stored revision of one key, as etcd's backend holds it.
#[derive(Debug, Clone)]
pub struct HashRecord {
    pub rev: Rev,
    pub key: Vec<u8>,
    pub tombstone: bool,
    /// The newest record of a key live at the hashed revision.
    pub kept: bool,
    pub value: Vec<u8>,
}

impl Store {
    /// The records at main revisions up to `rev`.
    pub fn hash_records(&self, rev: i64) -> Vec<HashRecord> {
        let all = super::KeyRange::new(b"\0", b"\0");
        let mut out = Vec::new();
        for (key, hist) in self.histories(&all) {
            let kept = hist.at(rev).map(|r| r.rev());
            for r in hist.between(0, rev).iter() {
                let kv = if r.is_tombstone() { KeyValue { key: key.to_vec(), ..Default::default() } } else { r.to_kv(key, false) };
                out.push(HashRecord { rev: r.rev(), key: key.to_vec(), tombstone: r.is_tombstone(), kept: kept == Some(r.rev()), value: kv.encode_to_vec() });
            }
        }
        out
    }
}

/// etcd's HashKV of `records` (every shard's) at revision `rev` with compaction `compact_rev`.
pub fn hash(mut records: Vec<HashRecord>, compact_rev: i64) -> u32 {
    records.sort_by_key(|r| r.rev);
    let any_kept = records.iter().any(|r| r.kept);
    let mut crc = crc32c::crc32c(b"key");
    for r in records {
        if r.rev.main <= compact_rev && any_kept && !r.kept {
            continue;
        }
        if r.rev.main == compact_rev && r.tombstone {
            continue;
        }
        let mut revkey = Vec::with_capacity(18);
        revkey.extend_from_slice(&(r.rev.main as u64).to_be_bytes());
        revkey.push(b'_');
        revkey.extend_from_slice(&u64::from(r.rev.sub).to_be_bytes());
        if r.tombstone {
            revkey.push(b't');
        }
        crc = crc32c::crc32c_append(crc, &revkey);
        crc = crc32c::crc32c_append(crc, &r.value);
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mvcc::store::WriteOp;
    use crate::mvcc::KeyRange;

    /// etcd's values for the same history (modelled on etcd's own pinned vectors).
    #[test]
    fn matches_etcds_hashes() {
        let mut s = Store::default();
        assert_eq!(hash(s.hash_records(1), -1), 1084519789);
        s.write(WriteOp::Put { key: b"foo".to_vec(), value: Some(b"bar".to_vec()), lease: Some(0), prev_kv: false }, Rev::main(2)).unwrap();
        assert_eq!(hash(s.hash_records(2), -1), 3305255506);
        s.write(WriteOp::DeleteRange { range: KeyRange::new(b"foo", b""), prev_kv: false }, Rev::main(3)).unwrap();
        assert_eq!(hash(s.hash_records(3), -1), 2489925301);
        s.write(WriteOp::Put { key: b"k".to_vec(), value: Some(b"v".to_vec()), lease: Some(0x694d77aa9e38260f), prev_kv: false }, Rev::main(4)).unwrap();
        assert_eq!(hash(s.hash_records(4), -1), 1714982513);
        s.compact(3);
        assert_eq!(hash(s.hash_records(4), 3), 1618605361);
    }
}

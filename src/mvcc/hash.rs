//! etcd's HashKV: a CRC-32C (Castagnoli) over "key" and then, in revision order, every stored
//! revision up to the hashed one — its revision key (`BE64 main | '_' | BE64 sub`, plus 't' for
//! a tombstone) and its protobuf `KeyValue` (a tombstone's holds only the key). Revisions at or
//! below the compaction are hashed only if they are the newest of a key live at the hashed
//! revision (etcd's `keep`; with no live key at all, etcd hashes every stored one), and a
//! tombstone at exactly the compaction never is. Sub revisions are etcd's (a range delete takes
//! one per key it deletes).
//!
//! The store is in key order and the hash in revision order, so each shard lists its records a
//! chunk of keys at a time (`hash_chunk`, between which the shard serves others), each record
//! by its own CRC and length (32 bytes, not its key and value), and `hash` sorts them all and
//! joins their CRCs (as `segment::crc32c_combine` does): a HashKV over a million records holds
//! 32 MB, and never the shard for longer than a chunk.

use super::export::ExportRecord;
use super::segment::{multiply_mod_p, x_pow_8n_mod_p};
use super::store::Store;
use super::Rev;

/// One stored revision of one key, as etcd's backend holds it, by the CRC-32C of its entry (the
/// revision key, then the protobuf `KeyValue`) and the entry's length.
#[derive(Debug, Clone, Copy)]
pub struct HashRecord {
    pub rev: Rev,
    pub tombstone: bool,
    /// The newest record of a key live at the hashed revision.
    pub kept: bool,
    pub crc: u32,
    pub len: u32,
}

impl Store {
    /// The records at main revisions up to `rev` of the keys after `after` (from the first key
    /// when `None`): at most `max_keys` keys, ending after the key that reaches `max_records`;
    /// and the last key listed when more may follow.
    pub fn hash_chunk(&self, after: Option<&[u8]>, rev: i64, max_keys: usize, max_records: usize) -> (Vec<HashRecord>, Option<Vec<u8>>) {
        let lower = after.map_or(std::ops::Bound::Unbounded, std::ops::Bound::Excluded);
        let mut out = Vec::new();
        for (n, (key, hist)) in self.keys_from(lower).enumerate() {
            let kept = hist.at(rev).map(|r| r.rev());
            for r in hist.between(0, rev).iter() {
                let entry = ExportRecord::of(key, &r);
                let crc = crc32c::crc32c_append(crc32c::crc32c(&entry.key), &entry.value);
                let len = u32::try_from(entry.key.len() + entry.value.len()).expect("an entry under 4 GiB");
                out.push(HashRecord { rev: r.rev(), tombstone: r.is_tombstone(), kept: kept == Some(r.rev()), crc, len });
            }
            if n + 1 == max_keys || out.len() >= max_records {
                return (out, Some(key.to_vec()));
            }
        }
        (out, None)
    }

    /// Every record at main revisions up to `rev`, listed in chunks of `max_keys` /
    /// `max_records`.
    #[cfg(test)]
    pub fn hash_records(&self, rev: i64, (max_keys, max_records): (usize, usize)) -> Vec<HashRecord> {
        let (mut all, mut after) = (Vec::new(), None);
        loop {
            let (chunk, next) = self.hash_chunk(after.as_deref(), rev, max_keys, max_records);
            all.extend(chunk);
            match next {
                Some(key) => after = Some(key),
                None => return all,
            }
        }
    }
}

/// etcd's HashKV of `records` (every shard's) at revision `rev` with compaction `compact_rev`.
pub fn hash(mut records: Vec<HashRecord>, compact_rev: i64) -> u32 {
    records.sort_unstable_by_key(|r| r.rev);
    let any_kept = records.iter().any(|r| r.kept);
    let mut crc = crc32c::crc32c(b"key");
    // Joining a record's CRC shifts the CRC so far by its length (`segment::crc32c_combine`);
    // entries of one length share the shift, which costs ~0.5 µs to compute.
    let mut shifts: std::collections::HashMap<u32, u32> = std::collections::HashMap::new();
    for r in records {
        if r.rev.main <= compact_rev && any_kept && !r.kept {
            continue;
        }
        if r.rev.main == compact_rev && r.tombstone {
            continue;
        }
        let shift = *shifts.entry(r.len).or_insert_with(|| x_pow_8n_mod_p(u64::from(r.len)));
        crc = multiply_mod_p(shift, crc) ^ r.crc;
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
        assert_eq!(hash(s.hash_records(1, (3, 5)), -1), 1084519789);
        s.write(WriteOp::Put { key: b"foo".to_vec(), value: Some(b"bar".to_vec()), lease: Some(0), prev_kv: false }, Rev::main(2)).unwrap();
        assert_eq!(hash(s.hash_records(2, (3, 5)), -1), 3305255506);
        s.write(WriteOp::DeleteRange { range: KeyRange::new(b"foo", b""), prev_kv: false }, Rev::main(3)).unwrap();
        assert_eq!(hash(s.hash_records(3, (3, 5)), -1), 2489925301);
        s.write(WriteOp::Put { key: b"k".to_vec(), value: Some(b"v".to_vec()), lease: Some(0x694d77aa9e38260f), prev_kv: false }, Rev::main(4)).unwrap();
        assert_eq!(hash(s.hash_records(4, (3, 5)), -1), 1714982513);
        s.compact(3);
        assert_eq!(hash(s.hash_records(4, (3, 5)), 3), 1618605361);
    }

    /// etcd's HashKV computed straight from every entry's bytes in revision order.
    fn hash_of_entries(s: &Store, rev: i64, compact_rev: i64) -> u32 {
        let all = KeyRange::new(b"\0", b"\0");
        let mut entries = Vec::new();
        for (key, hist) in s.histories(&all) {
            let kept = hist.at(rev).map(|r| r.rev());
            for r in hist.between(0, rev).iter() {
                let entry = ExportRecord::of(key, &r);
                entries.push((r.rev(), r.is_tombstone(), kept == Some(r.rev()), [entry.key, entry.value].concat()));
            }
        }
        entries.sort_by_key(|e| e.0);
        let any_kept = entries.iter().any(|e| e.2);
        let mut crc = crc32c::crc32c(b"key");
        for (r, tombstone, kept, bytes) in entries {
            if (r.main <= compact_rev && any_kept && !kept) || (r.main == compact_rev && tombstone) {
                continue;
            }
            crc = crc32c::crc32c_append(crc, &bytes);
        }
        crc
    }

    /// Records listed a chunk at a time, by CRC and length, hash as the entries' bytes do: a
    /// seeded history of puts (values of many lengths, some leased) and range deletes over 40
    /// keys, hashed at every tenth revision before and after a compaction, with chunks of every
    /// size from one key up.
    #[test]
    fn chunked_records_hash_as_the_entries_bytes() {
        let mut s = Store::default();
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for rev in 2..400 {
            let key = format!("k{:02}", next(40)).into_bytes();
            let op = if next(8) == 0 {
                WriteOp::DeleteRange { range: KeyRange::new(&key, format!("k{:02}", next(40) + 1).as_bytes()), prev_kv: false }
            } else {
                WriteOp::Put { key, value: Some(vec![b'v'; next(700) as usize]), lease: Some(next(3) as i64), prev_kv: false }
            };
            s.write(op, Rev::main(rev)).unwrap();
        }
        let check = |s: &Store, compact_rev: i64| {
            for rev in (compact_rev.max(1)..400).step_by(10) {
                let want = hash_of_entries(s, rev, compact_rev);
                for chunks in [(1, 1), (3, 5), (7, 1000), (4096, 16_384)] {
                    assert_eq!(hash(s.hash_records(rev, chunks), compact_rev), want, "rev {rev}, compaction {compact_rev}, chunks of {chunks:?} keys / records");
                }
            }
        };
        check(&s, -1);
        s.compact(200);
        check(&s, 200);
    }
}

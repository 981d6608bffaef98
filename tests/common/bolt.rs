//! A reader of bbolt files for the snapshot tests: every top-level bucket's entries in key
//! order, walking branch and leaf pages (inline buckets too, as etcd writes small ones), and
//! the checks a snapshot from `etcdctl snapshot save` must pass (size, trailing SHA-256,
//! metas). Independent of ballast's writer.
#![allow(dead_code)]

use std::collections::BTreeMap;

const PAGE: usize = 4096;

pub type Buckets = BTreeMap<String, Vec<(Vec<u8>, Vec<u8>)>>;

fn u16_at(b: &[u8], at: usize) -> usize {
    u16::from_le_bytes(b[at..at + 2].try_into().unwrap()) as usize
}
fn u32_at(b: &[u8], at: usize) -> usize {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap()) as usize
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

/// The database of a saved snapshot: checks that it ends with the SHA-256 of the rest (as
/// `etcdutl snapshot restore` does) and gives the bolt file without it.
pub fn strip_digest(saved: &[u8]) -> Vec<u8> {
    assert_eq!(saved.len() % 512, 32, "a saved snapshot is the db (whole pages) and a 32-byte digest");
    let (db, sha) = saved.split_at(saved.len() - 32);
    assert_eq!(ring::digest::digest(&ring::digest::SHA256, db).as_ref(), sha, "the trailing SHA-256");
    db.to_vec()
}

/// Every bucket of the bolt file `db`, from its newer valid meta.
pub fn buckets(db: &[u8]) -> Buckets {
    assert_eq!(db.len() % PAGE, 0);
    let meta = |p: usize| {
        let m = p * PAGE + 16;
        assert_eq!(u32_at(db, m), 0xED0C_DAED, "magic of meta {p}");
        assert_eq!(u32_at(db, m + 8), PAGE, "page size");
        (u64_at(db, m + 48), u64_at(db, m + 16), u64_at(db, m + 40))
    };
    let (txid, root, pages) = meta(0).max(meta(1));
    let _ = txid;
    assert!(pages as usize * PAGE <= db.len(), "the high-water mark is within the file");
    let mut out = Buckets::new();
    for (flags, name, value) in entries(db, &db[root as usize * PAGE..]) {
        assert_eq!(flags & 1, 1, "top-level entries are buckets");
        out.insert(String::from_utf8(name).unwrap(), bucket(db, &value));
    }
    out
}

fn bucket(db: &[u8], header: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    let root = u64_at(header, 0);
    let page = if root == 0 { &header[16..] } else { &db[root as usize * PAGE..] };
    entries(db, page).into_iter().map(|(_, k, v)| (k, v)).collect()
}

/// The leaf entries under `page` (flags, key, value), in order.
fn entries(db: &[u8], page: &[u8]) -> Vec<(u32, Vec<u8>, Vec<u8>)> {
    let (flags, count) = (u16_at(page, 8), u16_at(page, 10));
    let mut out = Vec::new();
    for i in 0..count {
        let e = 16 + i * 16;
        if flags & 0x01 != 0 {
            let child = u64_at(page, e + 8) as usize;
            out.extend(entries(db, &db[child * PAGE..]));
        } else {
            assert_eq!(flags & 0x02, 0x02, "a leaf or branch page");
            let (pos, ksize, vsize) = (u32_at(page, e + 4), u32_at(page, e + 8), u32_at(page, e + 12));
            let k = page[e + pos..e + pos + ksize].to_vec();
            let v = page[e + pos + ksize..e + pos + ksize + vsize].to_vec();
            out.push((u32_at(page, e) as u32, k, v));
        }
    }
    assert!(out.windows(2).all(|w| w[0].1 < w[1].1), "keys in order");
    out
}

//! WAL recovery rules (src/wal/recover.rs): only a torn tail — what a crash during the last
//! write can leave — is truncated; damage anywhere else, a gap no in-flight write explains,
//! committed entries missing, a segment cut short, or a snapshot whose WAL is missing (a changed
//! `--wal-dir`), a WAL lost or zeroed before the first snapshot, or a lost segment (zeroed with
//! a later one prepared, or missing) refuse to start, naming file and offset, and the data is
//! still there for a boot once the damage is repaired. Stale bytes past the tail never make a boot
//! refuse.

mod common;

use std::collections::BTreeMap;

use etcd_client::GetOptions;

/// Sequential puts `{prefix}{i}`; returns key → (mod revision, value) of each.
async fn put_all(s: &common::Server, prefix: &str, n: usize) -> BTreeMap<String, (i64, String)> {
    let mut c = s.client().await;
    let mut acked = BTreeMap::new();
    for i in 0..n {
        let (k, v) = (format!("{prefix}{i:04}"), format!("value-{i}"));
        let rev = c.put(k.clone(), v.clone(), None).await.unwrap().header().unwrap().revision();
        acked.insert(k, (rev, v));
    }
    acked
}

async fn assert_present(s: &common::Server, acked: &BTreeMap<String, (i64, String)>) {
    let mut c = s.client().await;
    let all = c.get("", Some(GetOptions::new().with_from_key())).await.unwrap();
    let served: BTreeMap<String, (i64, String)> = all
        .kvs()
        .iter()
        .map(|kv| (kv.key_str().unwrap().to_string(), (kv.mod_revision(), kv.value_str().unwrap().to_string())))
        .collect();
    for (k, want) in acked {
        assert_eq!(served.get(k), Some(want), "acknowledged key {k}");
    }
}

/// Zeroes `seg` from `from` on (records vanish cleanly), expects the boot to refuse with `why`,
/// then restores the segment and expects every acknowledged write to be served.
async fn zeroed_tail_refuses(s: &mut common::Server, seg: &std::path::Path, from: usize, why: &str, acked: &BTreeMap<String, (i64, String)>) {
    let saved = std::fs::read(seg).unwrap();
    common::write_at(seg, from as u64, &vec![0u8; saved.len() - from]);
    let log = s.restart_refused();
    assert!(log.contains(why), "{log}");
    std::fs::write(seg, &saved).unwrap();
    s.restart();
    assert_present(s, acked).await;
}

/// The newest segment of stripe 0 and the end of its written records.
fn tail_of_stripe0(s: &common::Server) -> (std::path::PathBuf, Vec<(usize, usize)>) {
    let seg = s.newest_written_wal_segment(0).expect("a wal segment with records");
    let records = common::wal_records(&seg);
    assert!(!records.is_empty(), "the wal holds records");
    (seg, records)
}

#[tokio::test]
async fn a_flipped_byte_inside_the_wal_refuses_to_start_naming_file_and_offset() {
    // Finding 2: this used to truncate as a torn tail and serve 101 of 300 keys.
    let mut s = common::Server::start(&["--shards", "1"]);
    let acked = put_all(&s, "k", 300).await;
    s.kill();
    let (seg, records) = tail_of_stripe0(&s);
    let end = records.last().map(|&(at, size)| at + size).unwrap();
    let third = end / 3;
    common::flip_byte(&seg, third as u64, 0x20);
    let log = s.restart_refused();
    assert!(log.contains(&seg.display().to_string()) && log.contains("at offset"), "names file and offset:\n{log}");
    assert!(log.contains("not a torn tail"), "{log}");
    // Nothing was destroyed by refusing: with the byte restored every write is served.
    common::flip_byte(&seg, third as u64, 0x20);
    s.restart();
    assert_present(&s, &acked).await;
}

#[tokio::test]
async fn a_flipped_byte_in_the_last_record_refuses_to_start() {
    let mut s = common::Server::start(&["--shards", "1"]);
    let acked = put_all(&s, "k", 20).await;
    s.kill();
    let (seg, records) = tail_of_stripe0(&s);
    let (at, size) = *records.last().unwrap();
    common::flip_byte(&seg, (at + size - 2) as u64, 0x01);
    let log = s.restart_refused();
    assert!(log.contains(&format!("at offset {at}")) && log.contains("complete record"), "{log}");
    common::flip_byte(&seg, (at + size - 2) as u64, 0x01);
    s.restart();
    assert_present(&s, &acked).await;
}

#[tokio::test]
async fn a_torn_last_write_is_truncated() {
    let mut s = common::Server::start(&["--shards", "1"]);
    let acked = put_all(&s, "k", 50).await;
    s.kill();
    let (seg, records) = tail_of_stripe0(&s);
    let end = records.last().map(|&(at, size)| at + size).unwrap();
    // A write of a 3000-byte record that crashed after its first sectors: a header and 600
    // bytes landed, the later sectors still hold the zeros the segment was filled with.
    let mut torn = Vec::new();
    torn.extend_from_slice(&3000u32.to_le_bytes());
    torn.extend_from_slice(&[1, 2, 3, 4, 1]);
    torn.extend_from_slice(&[0x55; 600]);
    common::write_at(&seg, end as u64, &torn);
    s.restart();
    assert!(s.log().contains("truncated torn wal tail"), "{}", s.log());
    assert_present(&s, &acked).await;
    // Writing resumes where the torn record was; a later boot reads it all back.
    let more = put_all(&s, "m", 20).await;
    s.kill();
    s.restart();
    assert_present(&s, &acked).await;
    assert_present(&s, &more).await;
}

#[tokio::test]
async fn stale_bytes_past_the_tail_never_make_a_boot_refuse() {
    let mut s = common::Server::start(&["--shards", "1"]);
    let acked = put_all(&s, "k", 30).await;
    s.kill();
    let (seg, records) = tail_of_stripe0(&s);
    let end = records.last().map(|&(at, size)| at + size).unwrap();
    let block = (end / 4096 + 3) * 4096;
    let stale: Vec<u8> = (0..4096u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8 | 1).collect();
    common::write_at(&seg, block as u64, &stale);
    s.restart();
    assert_present(&s, &acked).await;
    let more = put_all(&s, "m", 200).await; // writes run over the block the stale bytes were in
    s.kill();
    s.restart();
    assert_present(&s, &acked).await;
    assert_present(&s, &more).await;
}

#[tokio::test]
async fn a_gap_no_in_flight_write_explains_refuses() {
    let mut s = common::Server::start(&["--shards", "2"]);
    let acked = put_all(&s, "k", 60).await;
    s.kill();
    // Three batches vanish cleanly from the end of stripe 0 while stripe 1 holds later ones:
    // at most two batches (one per stripe) can be in flight, so acknowledged writes are gone.
    let (seg, records) = tail_of_stripe0(&s);
    zeroed_tail_refuses(&mut s, &seg, records[records.len() - 3].0, "more than the 2 batches that can be in flight", &acked).await;
}

#[tokio::test]
async fn committed_entries_missing_refuses() {
    // One client, so each batch is written after the one before it was durable and applied:
    // the last batch of stripe 1 records the entries of stripe 0's last batch as committed.
    let mut s = common::Server::start(&["--shards", "2"]);
    let acked = put_all(&s, "k", 40).await;
    s.kill();
    let seqs = |seg: &std::path::Path| -> Vec<u64> {
        let data = std::fs::read(seg).unwrap();
        common::wal_records(seg).iter().map(|&(at, _)| u64::from_le_bytes(data[at + 9..at + 17].try_into().unwrap())).collect()
    };
    let (seg0, seg1) = (s.newest_written_wal_segment(0).unwrap(), s.newest_written_wal_segment(1).unwrap());
    // Remove the last batch of whichever stripe does not hold the very last one.
    let (last0, last1) = (*seqs(&seg0).last().unwrap(), *seqs(&seg1).last().unwrap());
    let seg = if last0 < last1 { seg0 } else { seg1 };
    let &(at, _) = common::wal_records(&seg).last().unwrap();
    zeroed_tail_refuses(&mut s, &seg, at, "committed entries are missing", &acked).await;
}

#[tokio::test]
async fn a_segment_cut_short_refuses() {
    let mut s = common::Server::start(&["--shards", "1"]);
    let acked = put_all(&s, "k", 40).await;
    s.kill();
    let (seg, records) = tail_of_stripe0(&s);
    let saved = std::fs::read(&seg).unwrap();
    for cut in [records[20].0, records[20].0 + 5] {
        std::fs::write(&seg, &saved[..cut]).unwrap();
        let log = s.restart_refused();
        assert!(log.contains(&seg.display().to_string()) && log.contains(&format!("at offset {}", records[20].0)), "{log}");
    }
    std::fs::write(&seg, &saved).unwrap();
    s.restart();
    assert_present(&s, &acked).await;
}

#[tokio::test]
async fn a_changed_wal_dir_refuses_instead_of_rolling_back() {
    // Finding 4: this used to start a new empty WAL and serve the snapshot: 200 of 250 keys.
    let wal = common::fresh_dir("wal");
    let wal_flag = wal.join("log");
    let flags = ["--wal-dir", wal_flag.to_str().unwrap(), "--snapshot-count", "100"];
    let mut s = common::Server::start(&flags);
    let acked = put_all(&s, "k", 250).await;
    assert!(common::died_of_sigterm(s.terminate()));
    assert!(s.data_dir.join("member/snap/manifest.json").exists(), "a snapshot was saved");
    s.set_args(&["--snapshot-count", "100"]);
    let log = s.restart_refused();
    assert!(log.contains("--wal-dir"), "{log}");
    // The right WAL dir, but emptied: refused too.
    let moved = wal.join("moved");
    std::fs::rename(&wal_flag, &moved).unwrap();
    std::fs::create_dir_all(&wal_flag).unwrap();
    s.set_args(&flags);
    let log = s.restart_refused();
    assert!(log.contains("--wal-dir"), "{log}");
    std::fs::remove_dir_all(&wal_flag).unwrap();
    std::fs::rename(&moved, &wal_flag).unwrap();
    s.restart();
    assert_present(&s, &acked).await;
    drop(s);
    let _ = std::fs::remove_dir_all(&wal);
}

/// A server killed after 50 acknowledged puts, before its first snapshot.
async fn killed_before_the_first_snapshot() -> (common::Server, BTreeMap<String, (i64, String)>) {
    let mut s = common::Server::start(&[]);
    let acked = put_all(&s, "k", 50).await;
    s.kill();
    assert!(!s.data_dir.join("member/snap/manifest.json").exists(), "no snapshot yet");
    (s, acked)
}

/// Before the first snapshot the WAL is all a member has: one initialized before (its
/// membership file is there) whose WAL dir is gone refuses to start instead of serving an empty
/// store (it did: every acknowledged write gone, revisions handed out again).
#[tokio::test]
async fn a_wal_lost_before_the_first_snapshot_refuses() {
    let (mut s, acked) = killed_before_the_first_snapshot().await;
    let (wal, moved) = (s.data_dir.join("member/wal"), s.data_dir.join("wal.moved"));
    std::fs::rename(&wal, &moved).unwrap();
    let log = s.restart_refused();
    assert!(log.contains("holds no WAL, but this member was initialized before"), "{log}");
    std::fs::rename(&moved, &wal).unwrap();
    s.restart();
    assert_present(&s, &acked).await;
}

/// Before the first snapshot, the WAL's only segment zeroed in place: it looks like the WAL of a
/// first boot that crashed before its first write, but the WAL was written (`wal::marker`), so
/// the boot refuses naming the segment instead of serving an empty store (it did).
#[tokio::test]
async fn a_wal_zeroed_before_the_first_snapshot_refuses() {
    let (mut s, acked) = killed_before_the_first_snapshot().await;
    let segments = s.wal_segments(0);
    assert_eq!(segments.len(), 1, "{segments:?}");
    let saved = std::fs::read(&segments[0]).unwrap();
    std::fs::write(&segments[0], vec![0u8; saved.len()]).unwrap();
    let log = s.restart_refused();
    let name = segments[0].file_name().unwrap().to_str().unwrap();
    assert!(log.contains("holds no record") && log.contains(name) && log.contains("was written before"), "{log}");
    std::fs::write(&segments[0], &saved).unwrap();
    s.restart();
    assert_present(&s, &acked).await;
}

/// The newest written segment zeroed while the next one is already prepared: a written
/// segment lost, refused naming it (it used to be dropped with the prepared one, silently
/// serving an older revision); a segment missing between two others likewise.
#[tokio::test]
async fn a_lost_segment_refuses() {
    let mut s = common::Server::start(&["--wal-segment-bytes", "131072"]);
    let mut c = s.client().await;
    let mut acked = BTreeMap::new();
    for i in 0..400 {
        let (k, v) = (format!("k{i:04}"), format!("{i}-{}", "v".repeat(1000)));
        let rev = c.put(k.clone(), v.clone(), None).await.unwrap().header().unwrap().revision();
        acked.insert(k, (rev, v));
    }
    drop(c);
    s.kill();
    let segments = s.wal_segments(0);
    let newest = s.newest_written_wal_segment(0).unwrap();
    assert!(segments.len() >= 3, "{segments:?}");
    // The next segment, prepared once an eighth of the newest was written.
    let prepared = {
        let name = newest.file_name().unwrap().to_str().unwrap();
        let n = u64::from_str_radix(name.strip_suffix(".wal").unwrap(), 16).unwrap() + 1;
        newest.with_file_name(format!("{n:016x}.wal"))
    };
    let saved = std::fs::read(&newest).unwrap();
    if !prepared.exists() {
        // The kill came before the next segment was prepared: make it as the stripe would.
        std::fs::write(&prepared, vec![0u8; 131072]).unwrap();
    }
    std::fs::write(&newest, vec![0u8; saved.len()]).unwrap();
    let log = s.restart_refused();
    assert!(log.contains("a written segment was lost") && log.contains(newest.file_name().unwrap().to_str().unwrap()), "{log}");
    std::fs::write(&newest, &saved).unwrap();
    // A middle segment missing.
    let middle = &segments[segments.len() / 2];
    let kept = std::fs::read(middle).unwrap();
    std::fs::remove_file(middle).unwrap();
    let log = s.restart_refused();
    assert!(log.contains("is missing"), "{log}");
    std::fs::write(middle, &kept).unwrap();
    s.restart();
    assert_present(&s, &acked).await;
}

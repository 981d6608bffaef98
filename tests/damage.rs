//! The damage matrix: for each kind of file ballast writes — a WAL segment (its records, its
//! tail block, the zeros after it), a full snapshot segment, a delta segment, the snapshot
//! manifest, the membership file — cut it short and flip bytes at sampled offsets, then boot a
//! copy of the data dir. The server must either serve every acknowledged write (same keys,
//! values, revisions and history) or refuse to start naming the file and an offset. It must
//! never serve less.

mod common;

use std::path::{Path, PathBuf};

use etcd_client::{DeleteOptions, GetOptions};

const FLAGS: &[&str] = &["--shards", "2", "--snapshot-count", "60", "--wal-segment-bytes", "65536"];

/// What a client sees: every key now, and the keyspace at two past revisions.
async fn fingerprint(s: &common::Server, past: [i64; 2]) -> Vec<String> {
    let mut c = s.client().await;
    let mut out = Vec::new();
    for rev in [0, past[0], past[1]] {
        let r = c.get("", Some(GetOptions::new().with_from_key().with_revision(rev))).await.unwrap();
        out.push(format!("rev {rev}: header {} {:?}", r.header().unwrap().revision(), r.kvs()));
    }
    out
}

/// A data dir with a full snapshot, delta snapshots, compacted history and a WAL after them;
/// the server SIGKILLed. Returns it with the revisions `fingerprint` reads at.
async fn build() -> (common::Server, [i64; 2]) {
    let mut s = common::Server::start(FLAGS);
    let mut c = s.client().await;
    for i in 0..300 {
        c.put(format!("k/{:03}", i % 90), format!("v{i}-{}", "y".repeat(i % 40)), None).await.unwrap();
    }
    c.delete("k/01", Some(DeleteOptions::new().with_prefix())).await.unwrap();
    let compacted = c.put("mark", "1", None).await.unwrap().header().unwrap().revision();
    c.compact(compacted - 50, None).await.unwrap();
    c.defragment().await.unwrap(); // a full snapshot
    let manifest = s.data_dir.join("member/snap/manifest.json");
    for i in 0..200 {
        c.put(format!("k/{:03}", i % 60), format!("w{i}"), None).await.unwrap();
        let deltas = common::read_checked_json(&manifest).and_then(|m| m["deltas"].as_u64()).unwrap_or(0);
        if deltas >= 1 && i >= 80 {
            break;
        }
    }
    let later = c.get("mark", None).await.unwrap().header().unwrap().revision() - 20;
    drop(c);
    s.kill();
    (s, [compacted, later])
}

struct Damage {
    file: PathBuf,
    what: String,
    apply: Box<dyn Fn(&Path)>,
}

fn cut(file: &Path, len: usize) -> Damage {
    Damage { file: file.to_path_buf(), what: format!("cut to {len} bytes"), apply: Box::new(move |p| std::fs::write(p, &std::fs::read(p).unwrap()[..len]).unwrap()) }
}

fn flip(file: &Path, offset: usize) -> Damage {
    Damage { file: file.to_path_buf(), what: format!("byte {offset} flipped"), apply: Box::new(move |p| common::flip_byte(p, offset as u64, 0x5a)) }
}

/// Cuts and flips sampled over a file of `len` bytes, plus `extra` flip offsets.
fn sampled(file: &Path, extra: &[usize]) -> Vec<Damage> {
    let len = std::fs::metadata(file).unwrap().len() as usize;
    let mut out: Vec<Damage> = [0, len / 2, len - 1].iter().map(|&l| cut(file, l)).collect();
    let mut offsets: Vec<usize> = vec![0, 5, len / 3, len / 2, len * 2 / 3, len - 1];
    offsets.extend(extra.iter().filter(|&&o| o < len));
    offsets.sort_unstable();
    offsets.dedup();
    out.extend(offsets.into_iter().map(|o| flip(file, o)));
    out
}

fn snap_file(data_dir: &Path, name: &str) -> PathBuf {
    data_dir.join("member/snap").join(name)
}

#[tokio::test]
async fn every_damaged_file_is_served_whole_or_refused_by_name() {
    let (base, past) = build().await;
    let undamaged = common::fresh_dir("undamaged").join("data");
    common::copy_dir(&base.data_dir, &undamaged);
    let mut intact = common::Server::on_data_dir(&undamaged, FLAGS);
    intact.try_restart().expect("the undamaged data dir boots");
    let expected = fingerprint(&intact, past).await;
    drop(intact);
    let _ = std::fs::remove_dir_all(undamaged.parent().unwrap());

    let manifest = common::read_checked_json(&snap_file(&base.data_dir, "manifest.json")).expect("a snapshot");
    let segments: Vec<String> = manifest["segments"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect();
    assert!(manifest["deltas"].as_u64().unwrap() >= 1, "a delta snapshot exists: {manifest}");
    let (full, delta) = (&segments[0], segments.last().unwrap());
    let wal = base.newest_written_wal_segment(0).expect("a wal segment with records");
    let records = common::wal_records(&wal);
    let end = records.last().map(|&(at, size)| at + size).unwrap();
    let tail_block = end / 4096 * 4096;
    let mut damages = Vec::new();
    // The WAL: record headers and bodies, the tail block, the zeros right after the records.
    let mut wal_offsets = vec![records[records.len() / 2].0 + 2, records.last().unwrap().0 + 4, tail_block, end - 1, end, end + 300];
    wal_offsets.extend((1..8).map(|k| end * k / 8));
    damages.extend(sampled(&wal, &wal_offsets));
    for other in base.wal_segments(0).iter().filter(|s| **s != wal).chain(base.wal_segments(1).last()) {
        let end = common::wal_records(other).last().map_or(0, |&(at, size)| at + size);
        damages.extend(sampled(other, &(1..4).map(|k| end * k / 4).collect::<Vec<_>>()));
    }
    damages.push(cut(&wal, end));
    damages.push(cut(&wal, tail_block));
    damages.extend(sampled(&snap_file(&base.data_dir, full), &[16, 64]));
    damages.extend(sampled(&snap_file(&base.data_dir, delta), &[16, 64]));
    damages.extend(sampled(&snap_file(&base.data_dir, "manifest.json"), &[]));
    damages.extend(sampled(&base.data_dir.join("member/membership.json"), &[]));

    let (mut served, mut refused) = (0, 0);
    for d in &damages {
        let copy = common::fresh_dir("damaged").join("data");
        common::copy_dir(&base.data_dir, &copy);
        let target = copy.join(d.file.strip_prefix(&base.data_dir).unwrap());
        (d.apply)(&target);
        let mut s = common::Server::on_data_dir(&copy, FLAGS);
        let name = d.file.file_name().unwrap().to_string_lossy().to_string();
        let outcome = s.try_restart();
        eprintln!("{name}, {}: {}", d.what, if outcome.is_ok() { "served" } else { "refused" });
        match outcome {
            Ok(()) => {
                let got = fingerprint(&s, past).await;
                assert_eq!(got, expected, "{name}, {}: served, but not every acknowledged write", d.what);
                served += 1;
            }
            Err(log) => {
                let line = log.lines().find(|l| l.contains("\"level\":\"error\"")).unwrap_or_default();
                assert!(line.contains(&name) && line.contains("offset"), "{name}, {}: refused without naming file and offset:\n{log}", d.what);
                refused += 1;
            }
        }
        drop(s);
        let _ = std::fs::remove_dir_all(copy.parent().unwrap());
    }
    eprintln!("damage matrix: {} cases, {served} served whole, {refused} refused by name", damages.len());
    assert!(refused > 0 && served > 0);
}

/// A valid segment file in another's place (here the full snapshot's copied over the delta's
/// name) passes every block's check, and booting it served the full snapshot's records twice
/// and none of the delta's. The manifest keeps each segment file's CRC-32C: boot refuses it,
/// naming the file.
#[tokio::test]
async fn a_valid_segment_in_anothers_place_is_refused_by_name() {
    let (base, _) = build().await;
    let manifest = common::read_checked_json(&snap_file(&base.data_dir, "manifest.json")).expect("a snapshot");
    let segments: Vec<String> = manifest["segments"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect();
    assert_eq!(manifest["segment_crcs"].as_array().map(|c| c.len()), Some(segments.len()), "{manifest}");
    let (full, delta) = (&segments[0], segments.last().unwrap());
    let copy = common::fresh_dir("swapped").join("data");
    common::copy_dir(&base.data_dir, &copy);
    std::fs::copy(snap_file(&copy, full), snap_file(&copy, delta)).unwrap();
    let mut s = common::Server::on_data_dir(&copy, FLAGS);
    let log = s.try_restart().expect_err("a swapped segment is refused");
    let line = log.lines().find(|l| l.contains("\"level\":\"error\"")).unwrap_or_default();
    assert!(line.contains(delta.as_str()) && line.contains("not the file this snapshot wrote"), "{log}");
    drop(s);
    let _ = std::fs::remove_dir_all(copy.parent().unwrap());
}

//! Installing another member's snapshot (`snapshot::fetch`, `snapshot::install`): the files a
//! real server wrote are fetched from its snapshot directory (the `LocalDir` source; the peer
//! transport will be another `Source`), checked, placed in a lagging data dir with the
//! manifest written last, and a real ballast booted on that dir serves the sender's state —
//! keys, history, revision, compaction point, leases and auth. Interrupted before the
//! manifest, the lagging dir boots its old state, never a mix. A fetch of a snapshot the
//! sender no longer holds, or of damaged files, fails before anything the boot reads changes.

mod common;

use std::path::Path;

use ballast::snapshot::descriptor::Descriptor;
use ballast::snapshot::fetch::{fetch, LocalDir};
use ballast::snapshot::install::{commit, place, Placement};
use ballast::snapshot::manifest::{load, Manifest};
use etcd_client::{GetOptions, PutOptions};

const FLAGS: &[&str] = &["--snapshot-count", "40", "--wal-segment-bytes", "65536", "--shards", "2"];
const WAL_SEGMENT_BYTES: u64 = 65536;

fn snap_dir(data_dir: &Path) -> std::path::PathBuf {
    data_dir.join("member/snap")
}

/// Where the installed snapshot stands in the lagging dir: its next snapshot number, and the
/// WAL after everything it holds (as the raft core's install order gives it).
fn placement(lagging: &Path, sender: &Manifest) -> Placement {
    let own = load(&snap_dir(lagging)).unwrap();
    let (from, index) = own.as_ref().map_or((1, 0), |m| (m.wal_seq_from, m.index));
    let rec = ballast::wal::recover::recover(&lagging.join("member/wal"), 2, WAL_SEGMENT_BYTES, from, index).unwrap();
    Placement {
        seq: own.map_or(0, |m| m.seq) + 1,
        index: sender.index,
        term: sender.term,
        voters: sender.voters.clone(),
        learners: sender.learners.clone(),
        local_id: sender.members.as_ref().map_or(0, |c| c.local_id),
        wal_seq_from: rec.max_seq_found + 1,
        wal_seq_kept: rec.max_seq_found,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_data_dir_installs_a_servers_snapshot_and_boots_its_state() {
    // The sender writes a little, the lagging copy is taken, then the sender goes far ahead.
    let mut sender = common::Server::start(FLAGS);
    let mut c = sender.client().await;
    for i in 0..60 {
        c.put(format!("k/{i:03}"), "early", None).await.unwrap();
    }
    drop(c);
    sender.kill();
    let lagging_root = common::fresh_dir("lagging");
    let lagging = lagging_root.join("data.ballast");
    common::copy_dir(&sender.data_dir, &lagging);
    let old_rev = 61;

    sender.restart();
    let mut c = sender.client().await;
    let lease = c.lease_grant(600, None).await.unwrap().id();
    c.put("leased", "v", Some(PutOptions::new().with_lease(lease))).await.unwrap();
    for i in 0..400 {
        c.put(format!("k/{:03}", i % 120), format!("late-{i}"), None).await.unwrap();
    }
    c.compact(300, None).await.unwrap();
    c.user_add("alice", "secret", None).await.unwrap();
    for i in 0..80 {
        c.put(format!("z/{i:03}"), "tail", None).await.unwrap();
    }
    // Defragment: a full snapshot of everything applied, so the snapshot holds every write.
    c.defragment().await.unwrap();
    let before = c.get("", Some(GetOptions::new().with_from_key())).await.unwrap();
    let rev = before.header().unwrap().revision();
    drop(c);
    sender.kill();
    let m = load(&snap_dir(&sender.data_dir)).unwrap().expect("the sender snapshotted");
    assert!(m.rev > 400 && m.compact_rev == 300 && !m.leases.is_empty(), "{m:?}");
    let d = Descriptor::of(&m);

    // Fetch and place, then stop before the manifest: the lagging dir boots its old state.
    let fetched = fetch(&mut LocalDir::new(snap_dir(&sender.data_dir)), &d, &snap_dir(&lagging)).await.unwrap();
    assert_eq!(fetched, m);
    let p = placement(&lagging, &m);
    let installed = place(&snap_dir(&lagging), &fetched, &p).unwrap();
    let mut follower = common::Server::on_data_dir(&lagging, FLAGS);
    follower.try_restart().unwrap();
    let mut fc = follower.client().await;
    let got = fc.get("", Some(GetOptions::new().with_from_key())).await.unwrap();
    assert_eq!(got.header().unwrap().revision(), old_rev, "interrupted before the manifest: the old state");
    assert_eq!(got.count(), 60);
    drop(fc);
    follower.kill();

    // Again, to the end: the manifest written last makes the sender's state the lagging dir's.
    fetch(&mut LocalDir::new(snap_dir(&sender.data_dir)), &d, &snap_dir(&lagging)).await.unwrap();
    let p = placement(&lagging, &m);
    let installed_again = place(&snap_dir(&lagging), &fetched, &p).unwrap();
    assert_eq!(installed_again.segments.len(), installed.segments.len());
    commit(&snap_dir(&lagging), &installed_again).unwrap();
    assert!(!snap_dir(&lagging).join("incoming").exists(), "the staging dir goes with the commit");

    follower.try_restart().unwrap();
    assert!(follower.log().contains("loaded snapshot"), "{}", follower.log());
    let mut fc = follower.client().await;
    let got = fc.get("", Some(GetOptions::new().with_from_key())).await.unwrap();
    assert_eq!((m.rev, got.header().unwrap().revision()), (rev, rev));
    assert_eq!(format!("{:?}", got.kvs()), format!("{:?}", before.kvs()));
    // History above the compaction, the compaction point, the lease, the user.
    let old = fc.get("k/000", Some(GetOptions::new().with_revision(301))).await.unwrap();
    assert_eq!(old.count(), 1);
    let e = fc.get("k/000", Some(GetOptions::new().with_revision(299))).await.unwrap_err();
    assert!(e.to_string().contains("required revision has been compacted"), "{e}");
    let ttl = fc.lease_time_to_live(lease, None).await.unwrap();
    assert!(ttl.ttl() > 0, "the lease lives on: {ttl:?}");
    let users = fc.user_list().await.unwrap();
    assert_eq!(users.users(), ["alice".to_string()]);
    // And it goes on from the sender's revision.
    assert_eq!(fc.put("after", "v", None).await.unwrap().header().unwrap().revision(), m.rev + 1);
    drop(fc);
    follower.kill();
    std::fs::remove_dir_all(&lagging_root).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetch_fails_without_touching_the_manifest_when_the_snapshot_is_gone_or_damaged() {
    let mut sender = common::Server::start(FLAGS);
    let mut c = sender.client().await;
    for i in 0..100 {
        c.put(format!("k/{i:03}"), vec![b'v'; 300], None).await.unwrap();
    }
    drop(c);
    sender.kill();
    let m = load(&snap_dir(&sender.data_dir)).unwrap().expect("a snapshot");
    let target = common::fresh_dir("fetch-target");
    std::fs::create_dir_all(&target).unwrap();

    // A snapshot the sender no longer holds (a newer one replaced it).
    let mut gone = Descriptor::of(&m);
    gone.seq -= 1;
    let e = fetch(&mut LocalDir::new(snap_dir(&sender.data_dir)), &gone, &target).await.unwrap_err();
    assert!(e.contains("no longer held"), "{e}");

    // A damaged segment: the segment format's checksum refuses it.
    let seg = snap_dir(&sender.data_dir).join(&m.segments[0]);
    let len = std::fs::metadata(&seg).unwrap().len();
    common::flip_byte(&seg, len / 2, 0x40);
    let e = fetch(&mut LocalDir::new(snap_dir(&sender.data_dir)), &Descriptor::of(&m), &target).await.unwrap_err();
    assert!(e.contains("checksum mismatch") || e.contains("offset"), "{e}");
    assert!(load(&target).unwrap().is_none(), "a failed fetch writes no manifest");
    std::fs::remove_dir_all(&target).ok();
}

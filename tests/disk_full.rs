//! A full disk: the data dir on a small tmpfs this test mounts (CI runs as root; where mounting
//! is not allowed the test says so and skips). When the WAL cannot prepare its next segment (or
//! a snapshot cannot be written) the NOSPACE alarm is raised: writes are refused with etcd's
//! error, reads are served, nothing is corrupted, and writes resume once space is freed and the
//! alarm disarmed. A SIGKILL and restart then find every acknowledged write.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use etcd_client::{AlarmAction, AlarmType, GetOptions};

const NOSPACE: &str = "etcdserver: mvcc: database space exceeded";

/// A mounted tmpfs, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(size: &str) -> Option<Tmpfs> {
        let dir = common::fresh_dir("tmpfs");
        let out = Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"]).arg(&dir).output().ok()?;
        if !out.status.success() {
            eprintln!("SKIPPED: cannot mount a tmpfs here ({}); run as root to test a full disk", String::from_utf8_lossy(&out.stderr).trim());
            return None;
        }
        Some(Tmpfs(dir))
    }

    fn free_bytes(&self) -> u64 {
        let path = std::ffi::CString::new(self.0.to_str().unwrap()).unwrap();
        // SAFETY: statvfs writes into the zeroed struct it is given.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        assert_eq!(unsafe { libc::statvfs(path.as_ptr(), &mut st) }, 0);
        st.f_bavail * st.f_frsize
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn fill(path: &Path, bytes: u64) {
    use std::io::Write;
    let mut f = std::fs::File::create(path).unwrap();
    let chunk = vec![7u8; 1 << 16];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        if f.write_all(&chunk[..n]).is_err() {
            break; // already full
        }
        left -= n as u64;
    }
}

async fn served(c: &mut etcd_client::Client) -> BTreeMap<String, (i64, Vec<u8>)> {
    let r = c.get("k/", Some(GetOptions::new().with_prefix())).await.unwrap();
    r.kvs().iter().map(|kv| (kv.key_str().unwrap().to_string(), (kv.mod_revision(), kv.value().to_vec()))).collect()
}

#[tokio::test]
async fn a_full_disk_raises_nospace_refuses_writes_and_recovers() {
    let Some(fs) = Tmpfs::mount("24m") else { return };
    let data_dir = fs.0.join("data");
    let mut s = common::Server::on_data_dir(&data_dir, &["--shards", "1", "--wal-segment-bytes", "1048576", "--snapshot-count", "400"]);
    s.try_restart().expect("ballast starts on the tmpfs");
    let mut c = s.client().await;
    // Leave about 1.5 MiB free: one more WAL segment (1 MiB) fits, the one after it does not.
    let filler = fs.0.join("filler");
    fill(&filler, fs.free_bytes().saturating_sub(1536 << 10));
    let value = vec![b'v'; 4096];
    let mut acked = BTreeMap::new();
    let mut refused = None;
    for i in 0..5000 {
        let key = format!("k/{i:05}");
        match c.put(key.clone(), value.clone(), None).await {
            Ok(r) => {
                acked.insert(key, (r.header().unwrap().revision(), value.clone()));
            }
            Err(e) => {
                refused = Some(e.to_string());
                break;
            }
        }
    }
    let refused = refused.expect("writes were refused before 5000 puts of 4 KiB filled a 24 MiB disk");
    assert!(refused.contains(NOSPACE), "{refused}; log:\n{}", s.log());
    assert!(s.log().contains("disk full"), "{}", s.log());
    // The alarm is raised and listed; reads are served; /health says why it is unhealthy.
    let alarms = c.alarm(AlarmAction::Get, AlarmType::None, None).await.unwrap();
    assert!(alarms.alarms().iter().any(|a| a.alarm() == AlarmType::Nospace), "{alarms:?}");
    assert_eq!(served(&mut c).await, acked);
    assert!(s.http_get("/health").contains("ALARM NOSPACE"));
    let e = c.put("k/more", "x", None).await.unwrap_err();
    assert!(e.to_string().contains(NOSPACE), "{e}");
    c.delete("k/00000", None).await.expect("deletes are served on a full disk");
    acked.remove("k/00000");

    // Free the space and disarm: writes resume (the stripe retries its segment every 0.5 s;
    // until it has it, a disarmed alarm may be raised again, so disarm and retry, bounded).
    std::fs::remove_file(&filler).unwrap();
    let mut options = etcd_client::AlarmOptions::new();
    options.with_member(s.member_id_dec());
    let mut resumed = false;
    for _ in 0..40 {
        c.alarm(AlarmAction::Deactivate, AlarmType::Nospace, Some(options.clone())).await.unwrap();
        if let Ok(r) = c.put("k/resumed", "1", None).await {
            acked.insert("k/resumed".into(), (r.header().unwrap().revision(), b"1".to_vec()));
            resumed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(resumed, "writes never resumed after the space was freed; log:\n{}", s.log());
    for i in 0..300 {
        let key = format!("k/after/{i:04}");
        let r = c.put(key.clone(), value.clone(), None).await.unwrap();
        acked.insert(key, (r.header().unwrap().revision(), value.clone()));
    }
    assert!(s.http_get("/health").contains(r#""health":"true""#));
    drop(c);
    s.kill();
    s.restart();
    let mut c = s.client().await;
    assert_eq!(served(&mut c).await, acked, "after a SIGKILL and restart");
    drop(c);
    drop(s);
    drop(fs);
}

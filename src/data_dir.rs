//! The data dir as etcd keeps it: private (directories 0700, files 0600, as etcd's
//! `fileutil.PrivateDirMode` / `PrivateFileMode`: a store of Kubernetes Secrets must not be
//! readable by other local users) and owned by one process at a time. etcd holds an flock
//! on its bolt file and WAL files, so a second etcd on the same data dir never serves; ballast
//! holds one on the data dir itself (and on `--wal-dir` when that is elsewhere) for as long as
//! it runs. Two servers on one data dir would each append to the WAL and overwrite each
//! other's snapshots: acknowledged writes lost.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

/// How long a start waits for a data dir another process holds (a previous server still
/// stopping) before it gives up. etcd waits without bound, warning after 10 s.
pub const LOCK_WAIT_MAX: Duration = Duration::from_secs(10);
const LOCK_POLL: Duration = Duration::from_millis(100);

/// The locks on the data dir (and the WAL dir); released when dropped (the process exits).
pub struct DirLocks {
    _held: Vec<File>,
}

/// Makes every file and directory the process creates private, creates `data_dir` (and
/// `wal_dir`) if missing, warns as etcd does when an existing one is open to others, and
/// locks them.
pub fn prepare(data_dir: &Path, wal_dir: Option<&Path>) -> Result<DirLocks, String> {
    // SAFETY: umask has no preconditions; set before any thread creates a file.
    unsafe { libc::umask(0o077) };
    let mut held = Vec::new();
    for dir in std::iter::once(data_dir).chain(wal_dir) {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create data dir {}: {e}", dir.display()))?;
        warn_if_open_to_others(dir);
        held.push(lock(dir)?);
    }
    Ok(DirLocks { _held: held })
}

/// etcd's `fileutil.CheckDirPermission` warning.
fn warn_if_open_to_others(dir: &Path) {
    let Ok(meta) = std::fs::metadata(dir) else { return };
    let mode = meta.permissions().mode() & 0o777;
    if mode != 0o700 {
        let error = format!(
            "directory {:?} exist, but the permission is {:?}. The recommended permission is \"-rwx------\" to prevent possible unprivileged access to the data",
            dir.display().to_string(),
            format!("d{}", rwx(mode))
        );
        crate::log::warn("check file permission", &[("error", error)]);
    }
}

/// Go's `os.FileMode` letters for the permission bits.
fn rwx(mode: u32) -> String {
    (0..9).map(|i| if mode & (0o400 >> i) != 0 { ['r', 'w', 'x'][i % 3] } else { '-' }).collect()
}

/// An exclusive flock on `dir`, waiting at most `LOCK_WAIT_MAX` for another holder to go.
fn lock(dir: &Path) -> Result<File, String> {
    let f = File::open(dir).map_err(|e| format!("cannot open data dir {}: {e}", dir.display()))?;
    let until = Instant::now() + LOCK_WAIT_MAX;
    loop {
        // SAFETY: flock on a descriptor this function owns.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return Ok(f);
        }
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EWOULDBLOCK) {
            return Err(format!("cannot lock data dir {}: {e}", dir.display()));
        }
        if Instant::now() >= until {
            return Err(format!("data dir {} is locked by another process (another ballast serving it?), waited {LOCK_WAIT_MAX:?}", dir.display()));
        }
        std::thread::sleep(LOCK_POLL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_mode_letters() {
        assert_eq!(rwx(0o755), "rwxr-xr-x");
        assert_eq!(rwx(0o700), "rwx------");
    }

    #[test]
    fn a_locked_dir_is_refused_and_free_again_once_dropped() {
        let dir = std::env::temp_dir().join(format!("ballast-dirlock-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let first = lock(&dir).unwrap();
        // flock locks belong to the open file description: a second open of the dir conflicts.
        let second = File::open(&dir).unwrap();
        // SAFETY: flock on a descriptor this test owns.
        assert_ne!(unsafe { libc::flock(second.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) }, 0);
        drop(first);
        assert!(lock(&dir).is_ok());
        let _ = std::fs::remove_dir_all(&dir);
    }
}

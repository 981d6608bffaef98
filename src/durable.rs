//! Durable file-system steps shared by the WAL, the snapshots and the membership file: a small
//! file replaced atomically (temp file, fsync, rename, fsync the directory), a directory fsynced
//! after an unlink or rename (otherwise a crash may bring the old name back), and small JSON
//! files that carry a checksum, so one flipped byte (a digit of a revision, say) is refused
//! with the file's name instead of being believed.
//!
//! ```text
//! checked JSON file = json | "\ncrc32c " hex8(crc32c(json)) "\n"
//! ```

use std::io::Write;
use std::path::{Path, PathBuf};

const CRC_LINE: &str = "\ncrc32c ";

/// Makes the directory's entries (creates, renames, unlinks) durable.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Whether an I/O error means the file system is full.
pub fn is_disk_full(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::StorageFull || e.kind() == std::io::ErrorKind::QuotaExceeded
}

/// Replaces `path` with `bytes` atomically: after a crash it holds the old or the new bytes.
/// A failed write removes its temp file (on a full disk it would hold space).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = temp_path(path);
    let written = std::fs::File::create(&tmp).and_then(|mut f| {
        f.write_all(bytes)?;
        f.sync_all()
    });
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    rename_into_place(&tmp, path)
}

/// Where the new content of `path` is written before it replaces `path`: `<path>.tmp`.
pub fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(".tmp");
    PathBuf::from(name)
}

/// The last step of an atomic replace: `tmp`, written and synced, is renamed to `path` and the
/// rename made durable.
pub fn rename_into_place(tmp: &Path, path: &Path) -> std::io::Result<()> {
    let dir = path.parent().ok_or_else(|| std::io::Error::other("a file needs a directory"))?;
    crate::failpoint::crash_for("atomic-write-before-rename", &path.to_string_lossy());
    std::fs::rename(tmp, path)?;
    sync_dir(dir)
}

/// Writes `value` as JSON with a checksum line, atomically.
pub fn write_checked_json<T: serde::Serialize>(path: &Path, value: &T) -> std::io::Result<()> {
    let mut bytes = serde_json::to_vec_pretty(value)?;
    let crc = crc32c::crc32c(&bytes);
    bytes.extend_from_slice(format!("{CRC_LINE}{crc:08x}\n").as_bytes());
    write_atomic(path, &bytes)
}

/// Reads a file written by `write_checked_json`; `None` if it does not exist. A missing or
/// wrong checksum, or JSON that does not parse, is an error naming the file.
pub fn read_checked_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>, String> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let bad = |why: String| format!("{}: {why}; refusing to start", path.display());
    let at = bytes
        .windows(CRC_LINE.len())
        .rposition(|w| w == CRC_LINE.as_bytes())
        .ok_or_else(|| bad(format!("no checksum line in its {} bytes from offset 0 (damaged, or written by an older ballast)", bytes.len())))?;
    let (json, trailer) = bytes.split_at(at);
    let want = std::str::from_utf8(&trailer[CRC_LINE.len()..])
        .ok()
        .and_then(|t| u32::from_str_radix(t.trim_end_matches('\n'), 16).ok())
        .ok_or_else(|| bad(format!("damaged checksum line at offset {at}")))?;
    if crc32c::crc32c(json) != want {
        return Err(bad(format!("checksum mismatch (bytes 0..{at} against the checksum line at offset {at})")));
    }
    serde_json::from_slice(json).map(Some).map_err(|e| bad(format!("{e} (line and column of the JSON from offset 0)")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checked_json_round_trips_and_refuses_any_flipped_byte() {
        let dir = std::env::temp_dir().join(format!("ballast-durable-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("f.json");
        write_checked_json(&path, &vec![1u64, 22, 333]).unwrap();
        assert_eq!(read_checked_json::<Vec<u64>>(&path).unwrap(), Some(vec![1, 22, 333]));
        let good = std::fs::read(&path).unwrap();
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x04;
            std::fs::write(&path, &bad).unwrap();
            assert!(read_checked_json::<Vec<u64>>(&path).is_err(), "flip at {i} was accepted");
        }
        std::fs::write(&path, &good[..good.len() / 2]).unwrap();
        assert!(read_checked_json::<Vec<u64>>(&path).is_err());
        assert_eq!(read_checked_json::<Vec<u64>>(&dir.join("none")).unwrap(), None);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

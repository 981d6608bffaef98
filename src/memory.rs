//! Giving freed memory back to the system. The binary's allocator, mimalloc, hands a thread's
//! emptied pages back to the OS only when that same thread next calls into it (after a purge
//! delay), and blocks freed by another thread (a put's key and value arrive on a front-end
//! thread and are freed on a shard when a snapshot maps the value or compaction drops it) wait
//! for their owner thread to collect them. A thread that then goes quiet keeps all of it
//! resident: booting from a 350 MB full segment left 314 MiB resident where 147 MiB were live.
//! Purging at once instead (`MIMALLOC_PURGE_DELAY=0`) costs every put: loading 1M keys took
//! 27.1 instead of 19.3 µs of server CPU per put. So each busy thread collects on a timer
//! (`release_freed`), and boot collects once everything it read is dropped (`release_all`).
//! With another global allocator (tests, tools linking the library) these do nothing useful
//! and cost little.

use std::time::Duration;

/// How often a shard or front-end thread collects what it and others freed.
pub const RELEASE_INTERVAL: Duration = Duration::from_secs(1);

/// Returns this thread's freed pages (and blocks freed for it by other threads) to the OS.
pub fn release_freed() {
    // SAFETY: mi_collect only walks the calling thread's own heap; it has no preconditions.
    unsafe { libmimalloc_sys::mi_collect(false) }
}

/// Like `release_freed`, and also what mimalloc keeps cached across threads (boot, once).
pub fn release_all() {
    // SAFETY: as in `release_freed`.
    unsafe { libmimalloc_sys::mi_collect(true) }
}

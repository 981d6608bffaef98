//! Shards: one glommio executor pinned per core, each owning an MVCC store for its part of the
//! keyspace. `router.rs` maps a key to its shard; `mailbox.rs` is the message protocol other
//! threads use to reach a shard; `threads.rs` starts and pins the executors; `actor.rs` is the
//! shard's loop, with its side tasks `segments.rs` (snapshot segments) and `compaction.rs`
//! (background physical compaction) and `export.rs` (history for Maintenance.Snapshot).
//! `beat.rs` puts the periodic timers of a shard on one phase.

pub mod actor;
pub mod beat;
pub mod compaction;
pub mod export;
pub mod hash;
pub mod mailbox;
pub mod reads;
pub mod router;
pub mod segments;
pub mod threads;

//! Shards: one glommio executor pinned per core, each owning an MVCC segment of the keyspace.
//! `router.rs` maps a key to its shard, `mailbox.rs` is the message protocol other threads use
//! to reach a shard, `executor.rs` starts and pins the executors and runs a shard's loop.

pub mod executor;
pub mod mailbox;
pub mod router;

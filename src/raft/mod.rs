//! The raft core: one raft-rs group for the whole cluster, giving etcd's single global
//! revision order. `node.rs` is the Ready loop (the write path: read it first), `storage.rs`
//! rebuilds raft's log storage from the WAL at boot. A single-node server is a one-voter
//! group on exactly this path.

pub mod node;
pub mod storage;

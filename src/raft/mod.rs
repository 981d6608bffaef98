//! The raft core: one raft-rs group for the whole cluster, giving etcd's single global
//! revision order. A single-node server is a one-voter group on exactly this path.
//!
//! * `core` — the core as a state machine without I/O (read it first: the write path's
//!   decisions), built of one concept per file:
//!   `proposals` (batching, matching committed entries to waiters), `reads` (ReadIndex),
//!   `log_writer` (WAL batches and which readies are durable), `snapshots` (when to snapshot).
//! * `driver` — the glommio loop that feeds the core and carries out its outputs (WAL writes,
//!   apply, answers, snapshots).
//! * `handle` — the front end's handle: the messages it sends and etcd's request timeout.
//! * `storage` — raft's log storage rebuilt from the snapshot and the WAL at boot.
//!
//! `tests/raft_sim.rs` drives `core` under a seeded deterministic simulation.

pub mod core;
pub mod driver;
pub mod handle;
pub mod log_writer;
pub mod proposals;
pub mod reads;
pub mod snapshots;
pub mod storage;

//! The raft core: one raft-rs group for the whole cluster, giving etcd's single global
//! revision order. A single-node server is a one-voter group on exactly this path.
//!
//! * `core` — the core as a state machine without I/O (read it first: the write path's
//!   decisions), built of one concept per file:
//!   `proposals` (batching, matching committed entries to waiters), `reads` (ReadIndex),
//!   `log_writer` (WAL batches and which readies are durable), `snapshots` (when to snapshot),
//!   `installs` (raft snapshots from the leader), `conf_change` (membership changes as entries,
//!   etcd's validation, the member list), `reconfig` (etcd's strict reconfig checks before a
//!   change is proposed).
//! * `driver` — the glommio loop that feeds the core and carries out its outputs (WAL writes,
//!   apply, answers, snapshots).
//! * `handle` — the front end's handle: the messages it sends and etcd's request timeout.
//! * `heartbeats` — etcd's warning when the leader sends a heartbeat late.
//! * `storage` — raft's log storage rebuilt from the snapshot and the WAL at boot.
//! * `force_new` — `--force-new-cluster`: the other members' removal appended at boot.
//!
//! The core is one member of N: `step` takes peers' messages, its output carries messages to
//! them (a follower's only once the ready they came with is durable), each WAL batch carries
//! the hard state. A follower forwards its clients' writes to the leader and serves
//! linearizable reads by ReadIndex; no leader: "no leader"; a new leader fails ReadIndex
//! requests in flight with "leader changed"; every client waiting in the core is answered
//! within etcd's request timeout. A follower behind the leader's first entry is sent a raft
//! snapshot and installs it (`installs`: fetch the files, then install them while raft's ready
//! waits), its configuration and member list included. The driver hands the messages to the
//! peer transport (`peer/`) and steps the peers' messages it receives into the core.
//!
//! `tests/raft_sim.rs` drives `core` as a lone voter under a seeded deterministic simulation;
//! `tests/raft_sim_cluster.rs` drives 3 or 5 of them through a lossy, duplicating, reordering,
//! partitioned network, crashes and slow disks, checking raft's safety properties,
//! linearizable reads and liveness once the faults stop.

pub mod conf_change;
pub mod core;
pub mod driver;
pub mod force_new;
pub mod handle;
pub mod heartbeats;
pub mod installs;
pub mod log_writer;
pub mod proposals;
pub mod reads;
pub mod reconfig;
pub mod snapshots;
pub mod storage;

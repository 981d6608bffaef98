//! ballast: an etcd v3 compatible key-value store on a thread-per-core architecture.
//! See docs/design.md for the picture; the modules, in the order a request meets them:
//!
//! * `config` — etcd's command-line flags, `ETCD_*` environment variables and YAML config file.
//! * `server` — start-up and shutdown: WAL recovery, shard executors, raft core, listeners;
//!   `server::http` serves /health, /livez, /readyz, /version and /metrics.
//! * `api` — the gRPC front end, one file per etcd service (KV, Maintenance, Cluster): thin
//!   tonic adapters over `kv` and the raft core.
//! * `kv` — etcd's KV semantics without gRPC: `Kv` validates with etcd's exact errors, then
//!   calls the raft core or the shards. Inside: `apply` (a committed request → revision
//!   assignment, quota, alarms), `txn` (put / delete / txn semantics over a view), `range`
//!   (Range semantics: scatter, merge, filter, sort, limit), `view` (the keyspace seen through
//!   the shards or one shard's store), and the answers the raft core and shards deliver.
//! * `raft` — the raft core (one raft-rs group, hosted on shard 0): batching proposals,
//!   persisting to the WAL before acknowledging, applying committed entries in order.
//! * `reply` — answers to the front end, batched per front-end thread.
//! * `shard` — glommio executors pinned per core, each owning an MVCC segment; key routing and
//!   the message protocol that reaches them.
//! * `mvcc` — per-shard multi-version store: key histories, ranges at a revision, compaction.
//! * `snapshot` — the snapshot manifest: which rkyv segments (a full snapshot's and the deltas
//!   after it) hold the state up to which raft index; written by rename after every shard
//!   wrote its segment.
//! * `wal` — the write-ahead log: record format, io_uring stripe writer, recovery.
//! * `compactor` — auto-compaction (`--auto-compaction-mode/-retention`), as etcd's.
//! * `cluster` — membership from `--initial-cluster`, etcd-compatible member and cluster ids.
//! * `quota` — `--quota-backend-bytes` and etcd's request cost model (NOSPACE alarm).
//! * `status` — the atomics shared between threads (applied revision, raft progress, sizes).
//! * `durable` — atomic small files with checksums, directory fsyncs after renames and unlinks.
//! * `error` — the one error type, mapped once to etcd's gRPC codes and messages.
//! * `failpoint` — crash and fault points for tests (debug builds only).
//! * `metrics` — every metric name, and the Prometheus recorder.
//! * `log` — etcd-shaped (zap JSON) log lines.
//! * `proto` — generated code for etcd's v3 API and ballast's raft entry format.

pub mod api;
pub mod cluster;
pub mod compactor;
pub mod config;
pub mod durable;
pub mod error;
pub mod failpoint;
pub mod kv;
pub mod log;
pub mod metrics;
pub mod mvcc;
pub mod proto;
pub mod quota;
pub mod raft;
pub mod reply;
pub mod server;
pub mod shard;
pub mod snapshot;
pub mod status;
pub mod wal;

/// What `ballast --version` prints.
pub fn version_text() -> String {
    format!(
        "ballast Version: {}\netcd API Version: {}\nOS/Arch: {}/{}",
        env!("CARGO_PKG_VERSION"),
        config::DEFAULT_COMPAT_VERSION,
        std::env::consts::OS,
        std::env::consts::ARCH
    )
}

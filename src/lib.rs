//! ballast: an etcd v3 compatible key-value store on a thread-per-core architecture.
//! See docs/design.md for the picture; the modules, in the order a request meets them:
//!
//! * `config` — etcd's command-line flags, `ETCD_*` environment variables and YAML config file:
//!   `flags` (the table), `command_line`, `env`, `file`, `values`/`url`/`validate` (etcd's
//!   checks and messages), `duration` (Go's ParseDuration, the one parser).
//! * `server` — start-up and shutdown: WAL recovery, shard executors, raft core, listeners;
//!   `front_end` (tokio threads), `http` (/health, /livez, /readyz, /version, /metrics),
//!   `grpc_metrics` (go-grpc-prometheus's series for the served services).
//! * `api` — the gRPC front end, one file per etcd service (KV, Watch, Lease, Lock, Election,
//!   Maintenance, Cluster, Auth): thin
//!   tonic adapters over `kv` and the raft core.
//! * `gateway` — etcd's JSON gateway (`/v3/kv/put`, `/v3/watch`, ...): JSON read and written
//!   as etcd 3.5's grpc-gateway does (`go_json`, `mapping`), each call made in process to the
//!   gRPC routes above (`call`), streams as newline-delimited JSON (`stream`).
//! * `auth` — etcd's auth: the raft-applied store of users, roles and permissions (`store`), a
//!   user's merged key ranges (`perm`), simple and JWT tokens (`token`), and the guard every
//!   front-end thread checks requests with (a copy of the store, swapped on each change).
//! * `kv` — etcd's KV semantics without gRPC: `Kv` (mod.rs) validates (`validate`) with etcd's
//!   exact errors, then calls the raft core or the shards; `apply` (a committed request →
//!   revision assignment, quota, alarms), `txn` (put / delete / txn semantics over a view),
//!   `range` (scatter, merge, filter, sort, limit), `view` (the keyspace seen through the
//!   shards or one shard's store), `response` and `delivery` (the answers raft and the shards
//!   deliver).
//! * `raft` — the raft core (one raft-rs group, driven on shard 0): `core` is a state machine
//!   without I/O built of `proposals`, `reads`, `log_writer` and `snapshots`; `driver` is the
//!   glommio loop that carries out its outputs; `handle` is the front end's way in; `storage`
//!   rebuilds raft's log at boot.
//! * `concurrency` — etcd's lock and election recipes (`mutex`, `election`) over `kv` and the
//!   watch hub, which the Lock and Election services serve.
//! * `lease` — etcd's leases: the lessor (raft-applied leases, the keys put with them, the
//!   leader's expiry clocks), lease ids and TTL bounds.
//! * `watch` — etcd's watch: the hub on shard 0 that owns every watcher and fans the shards'
//!   events out in revision order (`hub`), and the watcher (`watcher`).
//! * `reply` — answers to the front end, batched per front-end thread (any `Deliver` type).
//! * `shard` — glommio executors pinned per core (`threads`), each running a shard actor
//!   (`actor`, with `segments` and `compaction` as side tasks) that owns an MVCC store; key
//!   routing (`router`) and the message protocol that reaches them (`mailbox`).
//! * `background` — how background work on a shard's executor steps aside between chunks.
//! * `mvcc` — per-shard multi-version store: key histories (`index`), ranges at a revision,
//!   compaction (`store`); values on the heap or mapped from a segment (`value`); the segment
//!   file format (`segment`, no runtime) and writing a store into one (`persist`); the recent
//!   changes and watch events (`changes`, `events`); etcd's HashKV (`hash`).
//! * `snapshot` — the manifest (`manifest`: which segments hold the state up to which raft
//!   index), loading it at boot (`load`), and carrying out the core's snapshot orders
//!   (`coordinator`).
//! * `export` — etcd's bbolt snapshot file for Maintenance.Snapshot: page layout (`page`),
//!   B+trees written bottom-up (`tree`), the external sort of the history (`runs`), etcd's
//!   buckets (`schema`) and the chunked stream with its SHA-256 (`stream`).
//! * `wal` — the write-ahead log: record format (`record`), io_uring stripe writer (`stripe`),
//!   recovery (`recover`), retired stripes (`retire`).
//! * `compactor` — auto-compaction (`--auto-compaction-mode/-retention`), as etcd's.
//! * `cluster` — membership from `--initial-cluster`, etcd-compatible member and cluster ids.
//! * `peer` — the peer transport: raft messages between members over gRPC streams (`outbox`
//!   on the driver's side, a `sender` per peer, the `server` on `--listen-peer-urls`, and
//!   `members`, which follows the live membership), on a thread of its own.
//! * `quota` — `--quota-backend-bytes` and etcd's request cost model (NOSPACE alarm).
//! * `status` — the atomics shared between threads (applied revision, raft progress, sizes).
//! * `writeback` — paced writeback of background files (snapshot and WAL segments).
//! * `data_dir` — the data dir private (0700 / 0600) and locked by one process.
//! * `durable` — atomic files (temp, fsync, rename, fsync the directory), small files with
//!   checksums.
//! * `error` — the one error type, mapped once to etcd's gRPC codes and messages.
//! * `failpoint` — crash and fault points for tests (debug builds only).
//! * `metrics` — every metric name in one table, the Prometheus recorder, cached handles.
//! * `log` — etcd-shaped (zap JSON) log lines; `slow_request` — etcd's "apply request took too
//!   long" warning for slow reads, with the request as etcd writes it (`request_text`).
//! * `listener` — TCP listeners as Go's net.Listen makes them (the kernel's largest accept queue).
//! * `proto` — generated code for etcd's v3 API and ballast's raft entry format.

pub mod api;
pub mod auth;
pub mod background;
pub mod cluster;
pub mod compactor;
pub mod concurrency;
pub mod config;
pub mod data_dir;
pub mod durable;
pub mod error;
pub mod export;
pub mod failpoint;
pub mod gateway;
pub mod kv;
pub mod lease;
pub mod listener;
pub mod log;
pub mod memory;
pub mod metrics;
pub mod mvcc;
pub mod peer;
pub mod proto;
pub mod quota;
pub mod raft;
pub mod reply;
pub mod request_text;
pub mod server;
pub mod shard;
pub mod slow_request;
pub mod snapshot;
pub mod status;
pub mod wal;
pub mod watch;
pub mod writeback;

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

//! Every metric name ballast exports, in one place, with etcd's names, types, labels and
//! buckets where etcd has the metric (etcd: server/etcdserver/metrics.go, server/storage/wal,
//! server/storage/backend, server/storage/mvcc, go-grpc-prometheus), plus `ballast_*` metrics
//! for what etcd cannot show. `install` sets up the recorder behind /metrics and registers
//! every series known at start-up; `handles` are the cached handles of the hot paths' metrics;
//! `refresh` samples the gauges derived from shared state on each scrape.

use std::sync::{LazyLock, OnceLock};

use metrics::{Counter, Gauge, Histogram, KeyName, SharedString, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

// --- etcd: disk
pub const WAL_FSYNC_SECONDS: &str = "etcd_disk_wal_fsync_duration_seconds";
pub const BACKEND_COMMIT_SECONDS: &str = "etcd_disk_backend_commit_duration_seconds";
pub const DEFRAG_SECONDS: &str = "etcd_disk_backend_defrag_duration_seconds";
pub const DEFRAG_INFLIGHT: &str = "etcd_disk_defrag_inflight";
pub const BACKEND_SNAPSHOT_SECONDS: &str = "etcd_disk_backend_snapshot_duration_seconds";
// --- etcd: server
pub const HAS_LEADER: &str = "etcd_server_has_leader";
pub const IS_LEADER: &str = "etcd_server_is_leader";
pub const LEADER_CHANGES: &str = "etcd_server_leader_changes_seen_total";
pub const PROPOSALS_COMMITTED: &str = "etcd_server_proposals_committed_total";
pub const PROPOSALS_APPLIED: &str = "etcd_server_proposals_applied_total";
pub const PROPOSALS_PENDING: &str = "etcd_server_proposals_pending";
pub const PROPOSALS_FAILED: &str = "etcd_server_proposals_failed_total";
pub const SERVER_VERSION: &str = "etcd_server_version";
pub const QUOTA_BACKEND_BYTES: &str = "etcd_server_quota_backend_bytes";
pub const SLOW_APPLIES: &str = "etcd_server_slow_apply_total";
pub const SLOW_READ_INDEXES: &str = "etcd_server_slow_read_indexes_total";
pub const READ_INDEXES_FAILED: &str = "etcd_server_read_indexes_failed_total";
pub const CLIENT_REQUESTS: &str = "etcd_server_client_requests_total";
pub const APPLY_SECONDS: &str = "etcd_server_apply_duration_seconds";
pub const HEARTBEAT_SEND_FAILURES: &str = "etcd_server_heartbeat_send_failures_total";
pub const SNAPSHOT_APPLY_IN_PROGRESS: &str = "etcd_server_snapshot_apply_in_progress_total";
pub const LEARNER_PROMOTE_SUCCESSES: &str = "etcd_server_learner_promote_successes";
pub const LEARNER_PROMOTE_FAILURES: &str = "etcd_server_learner_promote_failures";
pub const FD_USED: &str = "os_fd_used";
pub const FD_LIMIT: &str = "os_fd_limit";
// --- etcd: mvcc
pub const DB_TOTAL_SIZE: &str = "etcd_mvcc_db_total_size_in_bytes";
pub const DB_TOTAL_SIZE_IN_USE: &str = "etcd_mvcc_db_total_size_in_use_in_bytes";
pub const HASH_SECONDS: &str = "etcd_mvcc_hash_duration_seconds";
pub const HASH_REV_SECONDS: &str = "etcd_mvcc_hash_rev_duration_seconds";
pub const KEYS_TOTAL: &str = "etcd_debugging_mvcc_keys_total";
pub const WATCHERS: &str = "etcd_debugging_mvcc_watcher_total";
pub const CURRENT_REVISION: &str = "etcd_debugging_mvcc_current_revision";
pub const COMPACTED_REVISION: &str = "etcd_debugging_mvcc_compact_revision";
pub const PUTS: &str = "etcd_mvcc_put_total";
pub const DELETES: &str = "etcd_mvcc_delete_total";
pub const RANGES: &str = "etcd_mvcc_range_total";
pub const RANGES_DEBUG: &str = "etcd_debugging_mvcc_range_total";
pub const COMPACTION_KEYS: &str = "etcd_debugging_mvcc_db_compaction_keys_total";
pub const COMPACTION_LAST: &str = "etcd_debugging_mvcc_db_compaction_last";
pub const COMPACTION_PAUSE_MS: &str = "etcd_debugging_mvcc_db_compaction_pause_duration_milliseconds";
pub const COMPACTION_TOTAL_MS: &str = "etcd_debugging_mvcc_db_compaction_total_duration_milliseconds";
pub const SNAP_SAVE_SECONDS: &str = "etcd_debugging_snap_save_total_duration_seconds";
pub const TXNS: &str = "etcd_mvcc_txn_total";
pub const AUTH_REVISION: &str = "etcd_debugging_auth_revision";
pub const SERVER_ID: &str = "etcd_server_id";
pub const IS_LEARNER: &str = "etcd_server_is_learner";
pub const CLUSTER_VERSION: &str = "etcd_cluster_version";
pub const HEALTH_SUCCESS: &str = "etcd_server_health_success";
pub const HEALTH_FAILURES: &str = "etcd_server_health_failures";
pub const WAL_WRITE_BYTES: &str = "etcd_disk_wal_write_bytes_total";
// --- etcd: lease
pub const LEASES_GRANTED: &str = "etcd_debugging_lease_granted_total";
pub const LEASES_REVOKED: &str = "etcd_debugging_lease_revoked_total";
pub const LEASES_RENEWED: &str = "etcd_debugging_lease_renewed_total";
pub const LEASE_TTLS: &str = "etcd_debugging_lease_ttl_total";
pub const LEASES_EXPIRED: &str = "etcd_debugging_server_lease_expired_total";
pub const SLOW_WATCHERS: &str = "etcd_debugging_mvcc_slow_watcher_total";
pub const WATCH_STREAMS: &str = "etcd_debugging_mvcc_watch_stream_total";
pub const WATCH_EVENTS: &str = "etcd_debugging_mvcc_events_total";
// --- etcd: network (peers appear with multi-member clusters; clients always)
pub const PEER_RTT_SECONDS: &str = "etcd_network_peer_round_trip_time_seconds";
pub const PEER_SENT_BYTES: &str = "etcd_network_peer_sent_bytes_total";
pub const PEER_RECEIVED_BYTES: &str = "etcd_network_peer_received_bytes_total";
pub const PEER_SENT_FAILURES: &str = "etcd_network_peer_sent_failures_total";
pub const PEER_RECEIVED_FAILURES: &str = "etcd_network_peer_received_failures_total";
pub const ACTIVE_PEERS: &str = "etcd_network_active_peers";
pub const DISCONNECTED_PEERS: &str = "etcd_network_disconnected_peers_total";
pub const SNAPSHOT_SEND_SUCCESS: &str = "etcd_network_snapshot_send_success";
pub const SNAPSHOT_SEND_FAILURES: &str = "etcd_network_snapshot_send_failures";
pub const SNAPSHOT_SEND_INFLIGHTS: &str = "etcd_network_snapshot_send_inflights_total";
pub const SNAPSHOT_SEND_SECONDS: &str = "etcd_network_snapshot_send_total_duration_seconds";
pub const SNAPSHOT_RECEIVE_SUCCESS: &str = "etcd_network_snapshot_receive_success";
pub const SNAPSHOT_RECEIVE_FAILURES: &str = "etcd_network_snapshot_receive_failures";
pub const SNAPSHOT_RECEIVE_INFLIGHTS: &str = "etcd_network_snapshot_receive_inflights_total";
pub const SNAPSHOT_RECEIVE_SECONDS: &str = "etcd_network_snapshot_receive_total_duration_seconds";
pub const CLIENT_GRPC_SENT_BYTES: &str = "etcd_network_client_grpc_sent_bytes_total";
pub const CLIENT_GRPC_RECEIVED_BYTES: &str = "etcd_network_client_grpc_received_bytes_total";
// --- go-grpc-prometheus (labels grpc_type, grpc_service, grpc_method[, grpc_code])
pub const GRPC_STARTED: &str = "grpc_server_started_total";
pub const GRPC_HANDLED: &str = "grpc_server_handled_total";
pub const GRPC_MSG_RECEIVED: &str = "grpc_server_msg_received_total";
pub const GRPC_MSG_SENT: &str = "grpc_server_msg_sent_total";
pub const GRPC_HANDLING_SECONDS: &str = "grpc_server_handling_seconds";
// --- Prometheus process collector
pub const PROCESS_RESIDENT_MEMORY: &str = "process_resident_memory_bytes";
pub const PROCESS_VIRTUAL_MEMORY: &str = "process_virtual_memory_bytes";
pub const PROCESS_VIRTUAL_MEMORY_MAX: &str = "process_virtual_memory_max_bytes";
pub const PROCESS_CPU_SECONDS: &str = "process_cpu_seconds_total";
pub const PROCESS_OPEN_FDS: &str = "process_open_fds";
pub const PROCESS_MAX_FDS: &str = "process_max_fds";
pub const PROCESS_START_TIME: &str = "process_start_time_seconds";
// --- ballast's own
pub const BUILD_INFO: &str = "ballast_build_info";
pub const SHARD_QUEUE_DEPTH: &str = "ballast_shard_queue_depth";
pub const SHARD_APPLY_SECONDS: &str = "ballast_shard_apply_duration_seconds";
pub const SHARD_KEYS: &str = "ballast_shard_keys";
pub const SHARD_SIZE_BYTES: &str = "ballast_shard_size_bytes";
pub const WAL_BATCH_ENTRIES: &str = "ballast_wal_fsync_batch_entries";
pub const WAL_BATCH_BYTES: &str = "ballast_wal_fsync_batch_bytes";
pub const IO_URING_SUBMISSIONS: &str = "ballast_io_uring_submissions_total";
pub const RAFT_PROPOSAL_BATCH: &str = "ballast_raft_proposal_batch_requests";
pub const APPLIED_REVISION: &str = "ballast_applied_revision";
pub const COMPACT_REVISION: &str = "ballast_compact_revision";
pub const SNAPSHOT_SECONDS: &str = "ballast_snapshot_duration_seconds";
pub const WATCH_LAG_REVISIONS: &str = "ballast_watch_lag_revisions";
pub const WATCH_HELD_BYTES: &str = "ballast_watch_held_bytes";

/// Prometheus's `ExponentialBuckets(start, 2, count)`.
fn exponential(start: f64, count: i32) -> Vec<f64> {
    (0..count).map(|i| start * f64::powi(2.0, i)).collect()
}

/// etcd's disk histograms: prometheus.ExponentialBuckets(0.001, 2, 14).
fn disk_buckets() -> Vec<f64> {
    exponential(0.001, 14)
}

/// etcd's db compaction pause histogram: prometheus.ExponentialBuckets(1, 2, 13).
fn compaction_pause_buckets() -> Vec<f64> {
    exponential(1.0, 13)
}
/// etcd's db compaction total histogram: prometheus.ExponentialBuckets(100, 2, 14).
fn compaction_total_buckets() -> Vec<f64> {
    exponential(100.0, 14)
}
/// etcd's defrag histogram: prometheus.ExponentialBuckets(.1, 2, 13).
fn defrag_buckets() -> Vec<f64> {
    exponential(0.1, 13)
}
/// etcd's backend snapshot histogram: prometheus.ExponentialBuckets(.01, 2, 17).
fn backend_snapshot_buckets() -> Vec<f64> {
    exponential(0.01, 17)
}
/// etcd's hash histograms: prometheus.ExponentialBuckets(.01, 2, 15).
fn hash_buckets() -> Vec<f64> {
    exponential(0.01, 15)
}
/// etcd's peer RTT histogram: ExponentialBuckets(0.0001, 2, 16).
fn rtt_buckets() -> Vec<f64> {
    exponential(0.0001, 16)
}

/// etcd's snapshot send and receive histograms: ExponentialBuckets(0.1, 2, 10).
fn snapshot_transfer_buckets() -> Vec<f64> {
    exponential(0.1, 10)
}

/// go-grpc-prometheus defaults (prometheus.DefBuckets).
fn grpc_buckets() -> Vec<f64> {
    vec![0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]
}
/// etcd's lease TTL histogram: ExponentialBuckets(1, 2, 24).
fn lease_ttl_buckets() -> Vec<f64> {
    exponential(1.0, 24)
}
/// Batch sizes: 1 .. 4096 by powers of two.
fn batch_buckets() -> Vec<f64> {
    exponential(1.0, 13)
}
fn batch_bytes_buckets() -> Vec<f64> {
    exponential(256.0, 18)
}
/// etcd's apply histogram: prometheus.ExponentialBuckets(0.0001, 2, 20).
fn apply_duration_buckets() -> Vec<f64> {
    exponential(0.0001, 20)
}
/// Shard apply latency: 10 µs .. ~80 ms.
fn apply_buckets() -> Vec<f64> {
    exponential(0.00001, 14)
}

#[derive(Clone, Copy)]
pub enum Kind {
    Counter,
    Gauge,
    /// With the bucket bounds.
    Histogram(fn() -> Vec<f64>),
}

/// One exported metric. An unlabeled metric's series is registered at `install`, so it is
/// exported from the first scrape (counters and gauges at 0, histograms with empty buckets), as
/// etcd's are; a labeled one's series appear where their label values are known.
pub struct Metric {
    pub name: &'static str,
    pub kind: Kind,
    pub unit: Option<Unit>,
    pub help: &'static str,
    pub labeled: bool,
}

impl Metric {
    const fn new(name: &'static str, kind: Kind, help: &'static str) -> Metric {
        Metric { name, kind, unit: None, help, labeled: false }
    }
    const fn unit(self, unit: Unit) -> Metric {
        Metric { unit: Some(unit), ..self }
    }
    const fn labeled(self) -> Metric {
        Metric { labeled: true, ..self }
    }

    fn describe(&self) {
        let (name, unit, help) = (KeyName::from_const_str(self.name), self.unit, SharedString::const_str(self.help));
        metrics::with_recorder(|r| match self.kind {
            Kind::Counter => r.describe_counter(name, unit, help),
            Kind::Gauge => r.describe_gauge(name, unit, help),
            Kind::Histogram(_) => r.describe_histogram(name, unit, help),
        });
    }

    fn register(&self) {
        match self.kind {
            Kind::Counter => drop(metrics::counter!(self.name)),
            Kind::Gauge => drop(metrics::gauge!(self.name)),
            Kind::Histogram(_) => drop(metrics::histogram!(self.name)),
        }
    }
}

use Kind::{Counter as C, Gauge as G, Histogram as H};
const SECONDS: Unit = Unit::Seconds;
const BYTES: Unit = Unit::Bytes;

/// Every metric ballast exports, with etcd's help text where etcd has it.
pub const METRICS: &[Metric] = &[
    Metric::new(WAL_FSYNC_SECONDS, H(disk_buckets), "The latency distributions of fsync called by WAL.").unit(SECONDS),
    Metric::new(BACKEND_COMMIT_SECONDS, H(disk_buckets), "The latency distributions of commit called by backend (ballast: snapshot segment writes).").unit(SECONDS),
    Metric::new(DEFRAG_SECONDS, H(defrag_buckets), "The latency distribution of backend defragmentation (ballast: a full snapshot).").unit(SECONDS),
    Metric::new(DEFRAG_INFLIGHT, G, "Whether or not defrag is active on the member. 1 means active, 0 means not."),
    Metric::new(BACKEND_SNAPSHOT_SECONDS, H(backend_snapshot_buckets), "The latency distribution of backend snapshots (ballast: a snapshot download, from the request to its last chunk).").unit(SECONDS),
    Metric::new(HASH_SECONDS, H(hash_buckets), "The latency distribution of storage hash operation.").unit(SECONDS),
    Metric::new(HASH_REV_SECONDS, H(hash_buckets), "The latency distribution of storage hash by revision operation.").unit(SECONDS),
    Metric::new(HAS_LEADER, G, "Whether or not a leader exists. 1 is existence, 0 is not."),
    Metric::new(IS_LEADER, G, "Whether or not this member is a leader. 1 if is, 0 otherwise."),
    Metric::new(LEADER_CHANGES, C, "The number of leader changes seen."),
    Metric::new(PROPOSALS_COMMITTED, G, "The total number of consensus proposals committed."),
    Metric::new(PROPOSALS_APPLIED, G, "The total number of consensus proposals applied."),
    Metric::new(PROPOSALS_PENDING, G, "The current number of pending proposals to commit."),
    Metric::new(PROPOSALS_FAILED, C, "The total number of failed proposals seen."),
    Metric::new(SERVER_VERSION, G, "Which version is running. 1 for 'server_version' label with current version.").labeled(),
    Metric::new(SLOW_APPLIES, C, "The total number of slow apply requests (likely overloaded from slow disk)."),
    Metric::new(SLOW_READ_INDEXES, C, "The total number of pending read indexes not in sync with leader's or timed out read index requests."),
    Metric::new(READ_INDEXES_FAILED, C, "The total number of failed read indexes seen."),
    Metric::new(APPLY_SECONDS, H(apply_duration_buckets), "The latency distributions of v2 apply called by backend.").unit(SECONDS).labeled(),
    Metric::new(HEARTBEAT_SEND_FAILURES, C, "The total number of leader heartbeat send failures (likely overloaded from slow disk)."),
    Metric::new(SNAPSHOT_APPLY_IN_PROGRESS, G, "1 if the server is applying the incoming snapshot. 0 if none."),
    Metric::new(LEARNER_PROMOTE_SUCCESSES, C, "The total number of successful learner promotions while this member is leader."),
    Metric::new(LEARNER_PROMOTE_FAILURES, C, "The total number of failed learner promotions (likely learner not ready) while this member is leader.").labeled(),
    Metric::new(CLIENT_REQUESTS, C, "The total number of client requests per client version.").labeled(),
    Metric::new(FD_USED, G, "The number of used file descriptors."),
    Metric::new(FD_LIMIT, G, "The file descriptor limit."),
    Metric::new(QUOTA_BACKEND_BYTES, G, "Current backend storage quota size in bytes."),
    Metric::new(DB_TOTAL_SIZE, G, "Total size of the underlying database physically allocated in bytes.").unit(BYTES),
    Metric::new(DB_TOTAL_SIZE_IN_USE, G, "Total size of the underlying database logically in use in bytes.").unit(BYTES),
    Metric::new(KEYS_TOTAL, G, "Total number of keys."),
    Metric::new(WATCHERS, G, "Total number of watchers."),
    Metric::new(CURRENT_REVISION, G, "The current revision of store."),
    Metric::new(COMPACTED_REVISION, G, "The revision of the last compaction in store."),
    Metric::new(PUTS, C, "Total number of puts seen by this member."),
    Metric::new(DELETES, C, "Total number of deletes seen by this member."),
    Metric::new(RANGES, C, "Total number of ranges seen by this member."),
    Metric::new(RANGES_DEBUG, C, "Total number of ranges seen by this member."),
    Metric::new(COMPACTION_KEYS, C, "Total number of db keys compacted (ballast: records dropped by physical compaction)."),
    Metric::new(COMPACTION_LAST, G, "The unix time of the last db compaction. Resets to 0 on start."),
    Metric::new(COMPACTION_PAUSE_MS, H(compaction_pause_buckets), "Bucketed histogram of db compaction pause duration (ballast: one step of a shard's compaction)."),
    Metric::new(COMPACTION_TOTAL_MS, H(compaction_total_buckets), "Bucketed histogram of db compaction total duration."),
    Metric::new(SNAP_SAVE_SECONDS, H(disk_buckets), "The total latency distributions of save called by snapshot (ballast: a snapshot written).").unit(SECONDS),
    Metric::new(TXNS, C, "Total number of txns seen by this member."),
    Metric::new(AUTH_REVISION, G, "The current revision of auth store."),
    Metric::new(SERVER_ID, G, "Server or member ID in hexadecimal format. 1 for 'server_id' label with current ID.").labeled(),
    Metric::new(IS_LEARNER, G, "Whether or not this member is a learner. 1 if is, 0 otherwise."),
    Metric::new(CLUSTER_VERSION, G, "Which version is running. 1 for 'cluster_version' label with current cluster version").labeled(),
    Metric::new(HEALTH_SUCCESS, C, "The total number of successful health checks"),
    Metric::new(HEALTH_FAILURES, C, "The total number of failed health checks"),
    // A gauge, as etcd's (its name notwithstanding).
    Metric::new(WAL_WRITE_BYTES, G, "Total number of bytes written in WAL."),
    Metric::new(LEASES_GRANTED, C, "The total number of granted leases."),
    Metric::new(LEASES_REVOKED, C, "The total number of revoked leases."),
    Metric::new(LEASES_RENEWED, C, "The number of renewed leases seen by the leader."),
    Metric::new(LEASE_TTLS, H(lease_ttl_buckets), "Bucketed histogram of lease TTLs."),
    Metric::new(LEASES_EXPIRED, C, "The total number of expired leases."),
    Metric::new(SLOW_WATCHERS, G, "Total number of unsynced slow watchers."),
    Metric::new(WATCH_STREAMS, G, "Total number of watch streams."),
    Metric::new(WATCH_EVENTS, C, "Total number of events sent by this member."),
    Metric::new(PEER_RTT_SECONDS, H(rtt_buckets), "Round-Trip-Time histogram between peers").unit(SECONDS).labeled(),
    Metric::new(PEER_SENT_BYTES, C, "The total number of bytes sent to peers.").unit(BYTES).labeled(),
    Metric::new(PEER_RECEIVED_BYTES, C, "The total number of bytes received from peers.").unit(BYTES).labeled(),
    Metric::new(PEER_SENT_FAILURES, C, "The total number of send failures from peers.").labeled(),
    Metric::new(PEER_RECEIVED_FAILURES, C, "The total number of receive failures from peers.").labeled(),
    Metric::new(ACTIVE_PEERS, G, "The current number of active peer connections.").labeled(),
    Metric::new(DISCONNECTED_PEERS, C, "The total number of disconnected peers.").labeled(),
    Metric::new(SNAPSHOT_SEND_SUCCESS, C, "Total number of successful snapshot sends").labeled(),
    Metric::new(SNAPSHOT_SEND_FAILURES, C, "Total number of snapshot send failures").labeled(),
    Metric::new(SNAPSHOT_SEND_INFLIGHTS, G, "Total number of inflight snapshot sends").labeled(),
    Metric::new(SNAPSHOT_SEND_SECONDS, H(snapshot_transfer_buckets), "Total latency distributions of v3 snapshot sends").unit(SECONDS).labeled(),
    Metric::new(SNAPSHOT_RECEIVE_SUCCESS, C, "Total number of successful snapshot receives").labeled(),
    Metric::new(SNAPSHOT_RECEIVE_FAILURES, C, "Total number of snapshot receive failures").labeled(),
    Metric::new(SNAPSHOT_RECEIVE_INFLIGHTS, G, "Total number of inflight snapshot receives").labeled(),
    Metric::new(SNAPSHOT_RECEIVE_SECONDS, H(snapshot_transfer_buckets), "Total latency distributions of v3 snapshot receives").unit(SECONDS).labeled(),
    Metric::new(CLIENT_GRPC_SENT_BYTES, C, "The total number of bytes sent to grpc clients.").unit(BYTES),
    Metric::new(CLIENT_GRPC_RECEIVED_BYTES, C, "The total number of bytes received from grpc clients.").unit(BYTES),
    Metric::new(GRPC_STARTED, C, "Total number of RPCs started on the server.").labeled(),
    Metric::new(GRPC_HANDLED, C, "Total number of RPCs completed on the server, regardless of success or failure.").labeled(),
    Metric::new(GRPC_MSG_RECEIVED, C, "Total number of RPC stream messages received on the server.").labeled(),
    Metric::new(GRPC_MSG_SENT, C, "Total number of gRPC stream messages sent by the server.").labeled(),
    Metric::new(GRPC_HANDLING_SECONDS, H(grpc_buckets), "Histogram of response latency (seconds) of gRPC that had been application-level handled by the server.").unit(SECONDS).labeled(),
    Metric::new(PROCESS_RESIDENT_MEMORY, G, "Resident memory size in bytes.").unit(BYTES),
    Metric::new(PROCESS_VIRTUAL_MEMORY, G, "Virtual memory size in bytes.").unit(BYTES),
    Metric::new(PROCESS_VIRTUAL_MEMORY_MAX, G, "Maximum amount of virtual memory available in bytes.").unit(BYTES),
    // Recorded as a gauge (the exporter's counters are integers), exported typed as the
    // counter it is (`render`).
    Metric::new(PROCESS_CPU_SECONDS, G, "Total user and system CPU time spent in seconds.").unit(SECONDS),
    Metric::new(PROCESS_OPEN_FDS, G, "Number of open file descriptors."),
    Metric::new(PROCESS_MAX_FDS, G, "Maximum number of open file descriptors."),
    Metric::new(PROCESS_START_TIME, G, "Start time of the process since unix epoch in seconds.").unit(SECONDS),
    Metric::new(BUILD_INFO, G, "ballast build; 1 for the 'version' label with ballast's version.").labeled(),
    Metric::new(SHARD_QUEUE_DEPTH, G, "Messages waiting in each shard's queue.").labeled(),
    Metric::new(SHARD_APPLY_SECONDS, H(apply_buckets), "Time a shard spends applying one write message.").unit(SECONDS).labeled(),
    Metric::new(SHARD_KEYS, G, "Live keys held by each shard.").labeled(),
    Metric::new(SHARD_SIZE_BYTES, G, "Bytes held by each shard's MVCC store.").unit(BYTES).labeled(),
    Metric::new(WAL_BATCH_ENTRIES, H(batch_buckets), "Raft entries made durable by one WAL write (group commit)."),
    Metric::new(WAL_BATCH_BYTES, H(batch_bytes_buckets), "Bytes made durable by one WAL write.").unit(BYTES),
    Metric::new(IO_URING_SUBMISSIONS, C, "Writes and syncs submitted to io_uring, by kind.").labeled(),
    Metric::new(RAFT_PROPOSAL_BATCH, H(batch_buckets), "Client requests batched into one raft entry."),
    Metric::new(APPLIED_REVISION, G, "The newest revision every shard has applied."),
    Metric::new(COMPACT_REVISION, G, "The compaction revision."),
    Metric::new(SNAPSHOT_SECONDS, H(disk_buckets), "Time to write a snapshot (all shards' segments and the manifest).").unit(SECONDS),
    Metric::new(WATCH_LAG_REVISIONS, G, "Revisions between the applied revision and the oldest one a watcher still waits for."),
    Metric::new(WATCH_HELD_BYTES, G, "Watch response bytes queued for clients that have not taken them yet, all streams together."),
];

/// Installs the global recorder and registers every metric's series that can exist from
/// start-up; the handle renders the exposition text for /metrics.
pub fn install(compat_version: &str, quota_bytes: u64) -> Result<PrometheusHandle, String> {
    let mut b = PrometheusBuilder::new();
    for m in METRICS {
        if let Kind::Histogram(buckets) = m.kind {
            b = b.set_buckets_for_metric(Matcher::Full(m.name.to_string()), &buckets()).map_err(|e| format!("metrics buckets: {e}"))?;
        }
    }
    let handle = b.install_recorder().map_err(|e| format!("metrics recorder: {e}"))?;
    for m in METRICS {
        m.describe();
        if !m.labeled {
            m.register();
        }
    }
    let _ = HANDLES.set(Handles::new());
    metrics::gauge!(SERVER_VERSION, "server_version" => compat_version.to_string()).set(1.0);
    metrics::gauge!(CLUSTER_VERSION, "cluster_version" => crate::config::major_minor(compat_version)).set(1.0);
    metrics::gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    metrics::gauge!(QUOTA_BACKEND_BYTES).set(quota_bytes as f64);
    Ok(handle)
}

/// The handles of the metrics recorded per request, per raft turn or per write, resolved once:
/// recording through them looks up no name and allocates no label.
pub struct Handles {
    pub wal_fsync_seconds: Histogram,
    pub wal_batch_entries: Histogram,
    pub wal_batch_bytes: Histogram,
    pub wal_write_bytes: Gauge,
    pub io_uring_writes: Counter,
    pub io_uring_fsyncs: Counter,
    pub backend_commit_seconds: Histogram,
    pub snapshot_seconds: Histogram,
    pub raft_proposal_batch: Histogram,
    pub proposals_failed: Counter,
    pub proposals_pending: Gauge,
    pub leader_changes: Counter,
    pub client_grpc_received_bytes: Counter,
    pub client_grpc_sent_bytes: Counter,
    pub watchers: Gauge,
    pub slow_watchers: Gauge,
    pub watch_streams: Gauge,
    pub watch_events: Counter,
    pub watch_lag: Gauge,
    pub watch_held_bytes: Gauge,
    pub leases_granted: Counter,
    pub leases_revoked: Counter,
    pub leases_renewed: Counter,
    pub lease_ttls: Histogram,
    pub leases_expired: Counter,
    pub puts: Counter,
    pub deletes: Counter,
    pub ranges: Counter,
    pub txns: Counter,
    pub health_success: Counter,
    pub health_failures: Counter,
    pub slow_applies: Counter,
    pub slow_read_indexes: Counter,
    pub read_indexes_failed: Counter,
    pub snapshot_apply_in_progress: Gauge,
    pub heartbeat_send_failures: Counter,
    pub defrag_seconds: Histogram,
    pub defrag_inflight: Gauge,
    pub backend_snapshot_seconds: Histogram,
    pub hash_seconds: Histogram,
    pub hash_rev_seconds: Histogram,
    pub ranges_debug: Counter,
    pub compaction_keys: Counter,
    pub compaction_last: Gauge,
    pub compaction_pause_ms: Histogram,
    pub compaction_total_ms: Histogram,
    pub snap_save_seconds: Histogram,
}

impl Handles {
    fn new() -> Handles {
        use metrics::{counter, gauge, histogram};
        Handles {
            wal_fsync_seconds: histogram!(WAL_FSYNC_SECONDS),
            wal_batch_entries: histogram!(WAL_BATCH_ENTRIES),
            wal_batch_bytes: histogram!(WAL_BATCH_BYTES),
            wal_write_bytes: gauge!(WAL_WRITE_BYTES),
            io_uring_writes: counter!(IO_URING_SUBMISSIONS, "kind" => "write"),
            io_uring_fsyncs: counter!(IO_URING_SUBMISSIONS, "kind" => "fsync"),
            backend_commit_seconds: histogram!(BACKEND_COMMIT_SECONDS),
            snapshot_seconds: histogram!(SNAPSHOT_SECONDS),
            raft_proposal_batch: histogram!(RAFT_PROPOSAL_BATCH),
            proposals_failed: counter!(PROPOSALS_FAILED),
            proposals_pending: gauge!(PROPOSALS_PENDING),
            leader_changes: counter!(LEADER_CHANGES),
            client_grpc_received_bytes: counter!(CLIENT_GRPC_RECEIVED_BYTES),
            client_grpc_sent_bytes: counter!(CLIENT_GRPC_SENT_BYTES),
            watchers: gauge!(WATCHERS),
            slow_watchers: gauge!(SLOW_WATCHERS),
            watch_streams: gauge!(WATCH_STREAMS),
            watch_events: counter!(WATCH_EVENTS),
            watch_lag: gauge!(WATCH_LAG_REVISIONS),
            watch_held_bytes: gauge!(WATCH_HELD_BYTES),
            leases_granted: counter!(LEASES_GRANTED),
            leases_revoked: counter!(LEASES_REVOKED),
            leases_renewed: counter!(LEASES_RENEWED),
            lease_ttls: histogram!(LEASE_TTLS),
            leases_expired: counter!(LEASES_EXPIRED),
            puts: counter!(PUTS),
            deletes: counter!(DELETES),
            ranges: counter!(RANGES),
            txns: counter!(TXNS),
            health_success: counter!(HEALTH_SUCCESS),
            health_failures: counter!(HEALTH_FAILURES),
            slow_applies: counter!(SLOW_APPLIES),
            slow_read_indexes: counter!(SLOW_READ_INDEXES),
            read_indexes_failed: counter!(READ_INDEXES_FAILED),
            snapshot_apply_in_progress: gauge!(SNAPSHOT_APPLY_IN_PROGRESS),
            heartbeat_send_failures: counter!(HEARTBEAT_SEND_FAILURES),
            defrag_seconds: histogram!(DEFRAG_SECONDS),
            defrag_inflight: gauge!(DEFRAG_INFLIGHT),
            backend_snapshot_seconds: histogram!(BACKEND_SNAPSHOT_SECONDS),
            hash_seconds: histogram!(HASH_SECONDS),
            hash_rev_seconds: histogram!(HASH_REV_SECONDS),
            ranges_debug: counter!(RANGES_DEBUG),
            compaction_keys: counter!(COMPACTION_KEYS),
            compaction_last: gauge!(COMPACTION_LAST),
            compaction_pause_ms: histogram!(COMPACTION_PAUSE_MS),
            compaction_total_ms: histogram!(COMPACTION_TOTAL_MS),
            snap_save_seconds: histogram!(SNAP_SAVE_SECONDS),
        }
    }
}

static HANDLES: OnceLock<Handles> = OnceLock::new();
/// Before `install` (unit tests, offline tools) the handles record nowhere.
static UNINSTALLED: LazyLock<Handles> = LazyLock::new(Handles::new);

thread_local! {
    /// The apply histogram's series by (op, success), resolved once on the applying thread.
    static APPLY_SERIES: std::cell::RefCell<std::collections::HashMap<(&'static str, bool), Histogram>> = Default::default();
}

/// etcd's `etcd_server_apply_duration_seconds{version="v3",op,success}` series.
pub fn apply_seconds(op: &'static str, success: bool) -> Histogram {
    APPLY_SERIES.with_borrow_mut(|series| {
        let h = series.entry((op, success)).or_insert_with(|| {
            metrics::histogram!(APPLY_SECONDS, "version" => "v3", "op" => op, "success" => if success { "true" } else { "false" })
        });
        h.clone()
    })
}

/// etcd's learner promotion counters, for a promotion this member tried (as etcd's
/// PromoteMember: "not the leader" is forwarded, not counted); failures by their message.
pub fn count_promotion<T>(result: &Result<T, crate::error::Error>) {
    match result {
        Ok(_) => metrics::counter!(LEARNER_PROMOTE_SUCCESSES).increment(1),
        Err(crate::error::Error::NotLeader) => {}
        Err(e) => metrics::counter!(LEARNER_PROMOTE_FAILURES, "Reason" => e.to_string()).increment(1),
    }
}

impl Handles {
    /// Ranges served, in etcd's counter and its debugging twin.
    pub fn count_ranges(&self, n: u64) {
        self.ranges.increment(n);
        self.ranges_debug.increment(n);
    }
}

/// An "in progress" gauge raised by one while this lives: lowered however the work ends, a
/// call whose client went away (its future dropped) included.
pub struct Raised(&'static Gauge);

impl Raised {
    pub fn new(gauge: &'static Gauge) -> Raised {
        gauge.increment(1.0);
        Raised(gauge)
    }
}

impl Drop for Raised {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

/// The cached handles; after `install`, those of the installed recorder.
pub fn handles() -> &'static Handles {
    HANDLES.get().unwrap_or(&UNINSTALLED)
}

/// The exposition text for /metrics: the recorder's, with the type of the counters recorded as
/// gauges (fractional values) put right, and bucket bounds written as etcd's Go client writes
/// them (`le="1.048576e+06"`, not `le="1048576"`), so a query or rule naming a bucket matches.
pub fn render(handle: &PrometheusHandle) -> String {
    let text = handle.render();
    let (gauge, counter) = (format!("# TYPE {PROCESS_CPU_SECONDS} gauge\n"), format!("# TYPE {PROCESS_CPU_SECONDS} counter\n"));
    go_bucket_bounds(&text.replacen(&gauge, &counter, 1))
}

/// Every `le="N"` label with N rewritten by `go_float`.
fn go_bucket_bounds(text: &str) -> String {
    const LE: &str = "le=\"";
    let mut out = String::with_capacity(text.len() + 256);
    let mut rest = text;
    while let Some(at) = rest.find(LE) {
        let (head, tail) = rest.split_at(at + LE.len());
        out.push_str(head);
        let end = tail.find('"').unwrap_or(tail.len());
        let bound = &tail[..end];
        match bound.parse::<f64>() {
            Ok(v) if v.is_finite() => out.push_str(&go_float(v)),
            _ => out.push_str(bound),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// `v` as Go's `strconv.FormatFloat(v, 'g', -1, 64)`: the shortest digits that read back as
/// `v`, in exponent form when the exponent is below -4 or at least 6 (`1e-05`, `1.048576e+06`).
fn go_float(v: f64) -> String {
    let sci = format!("{v:e}");
    let (mantissa, exp) = sci.split_once('e').expect("Rust's {:e} has an exponent");
    let exp: i32 = exp.parse().expect("Rust's {:e} exponent is an integer");
    if v != 0.0 && !(-4..6).contains(&exp) {
        format!("{mantissa}e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs())
    } else {
        format!("{v}")
    }
}

/// Samples the gauges derived from shared status and the process; called on each scrape.
pub fn refresh(status: &crate::status::ServerStatus, shard_queue_depths: &[usize], auth_revision: u64) {
    use metrics::gauge;
    let leader = status.leader();
    gauge!(SERVER_ID, "server_id" => format!("{:x}", status.member_id)).set(1.0);
    gauge!(IS_LEARNER).set(f64::from(u8::from(status.is_learner())));
    gauge!(CURRENT_REVISION).set(status.applied_rev() as f64);
    // etcd's is -1 until the first compaction.
    gauge!(COMPACTED_REVISION).set(if status.compact_rev() > 0 { status.compact_rev() as f64 } else { -1.0 });
    gauge!(AUTH_REVISION).set(auth_revision as f64);
    gauge!(HAS_LEADER).set(f64::from(u8::from(leader != 0)));
    gauge!(IS_LEADER).set(f64::from(u8::from(leader == status.member_id)));
    gauge!(PROPOSALS_COMMITTED).set(status.commit_index() as f64);
    gauge!(PROPOSALS_APPLIED).set(status.applied_index() as f64);
    gauge!(DB_TOTAL_SIZE).set(status.db_size_bytes() as f64);
    gauge!(DB_TOTAL_SIZE_IN_USE).set(status.db_size_in_use_bytes() as f64);
    gauge!(KEYS_TOTAL).set(status.keys_total() as f64);
    gauge!(APPLIED_REVISION).set(status.applied_rev() as f64);
    gauge!(COMPACT_REVISION).set(status.compact_rev().max(0) as f64);
    for (shard, depth) in shard_queue_depths.iter().enumerate() {
        let (keys, bytes) = status.shard_stats(shard);
        let shard = shard.to_string();
        gauge!(SHARD_QUEUE_DEPTH, "shard" => shard.clone()).set(*depth as f64);
        gauge!(SHARD_KEYS, "shard" => shard.clone()).set(keys as f64);
        gauge!(SHARD_SIZE_BYTES, "shard" => shard).set(bytes as f64);
    }
    refresh_process();
}

/// The Prometheus process collector's gauges, from /proc/self.
fn refresh_process() {
    use metrics::gauge;
    // SAFETY: sysconf has no preconditions.
    let (ticks, page) = unsafe { (libc::sysconf(libc::_SC_CLK_TCK) as f64, libc::sysconf(libc::_SC_PAGESIZE) as f64) };
    if let Ok(stat) = std::fs::read_to_string("/proc/self/stat") {
        // Fields after the command name (which may hold spaces) start at ") ".
        let fields: Vec<&str> = stat.rsplit_once(") ").map_or(vec![], |(_, rest)| rest.split(' ').collect());
        let field = |i: usize| fields.get(i - 3).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        gauge!(PROCESS_CPU_SECONDS).set((field(14) + field(15)) / ticks);
        gauge!(PROCESS_VIRTUAL_MEMORY).set(field(23));
        gauge!(PROCESS_RESIDENT_MEMORY).set(field(24) * page);
        gauge!(PROCESS_START_TIME).set(boot_time_seconds() + field(22) / ticks);
    }
    // etcd's os_fd_* gauges are the same two figures (its own collector's, sampled every 10 min).
    if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
        let open = dir.count() as f64;
        gauge!(PROCESS_OPEN_FDS).set(open);
        gauge!(FD_USED).set(open);
    }
    if let Some(fds) = soft_limit(libc::RLIMIT_NOFILE) {
        gauge!(PROCESS_MAX_FDS).set(fds);
        gauge!(FD_LIMIT).set(fds);
    }
    // Unlimited reads as the largest u64, as Go's collector writes it (1.8446744073709552e+19).
    if let Some(bytes) = soft_limit(libc::RLIMIT_AS) {
        gauge!(PROCESS_VIRTUAL_MEMORY_MAX).set(bytes);
    }
}

fn soft_limit(resource: libc::__rlimit_resource_t) -> Option<f64> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes one rlimit into `lim`.
    (unsafe { libc::getrlimit(resource, &mut lim) } == 0).then_some(lim.rlim_cur as f64)
}

fn boot_time_seconds() -> f64 {
    std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("btime ").and_then(|v| v.trim().parse().ok())))
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_bounds_are_written_as_gos_client_writes_them() {
        let cases = [(1.0, "1"), (0.001, "0.001"), (0.0001, "0.0001"), (0.00001, "1e-05"), (0.005, "0.005"), (524288.0, "524288"), (1048576.0, "1.048576e+06"), (8388608.0, "8.388608e+06"), (2.5, "2.5"), (100000.0, "100000"), (1e6, "1e+06"), (0.0, "0")];
        for (v, want) in cases {
            assert_eq!(go_float(v), want, "{v}");
        }
        let text = "a_bucket{le=\"0.5\"} 1\nb_bucket{x=\"y\",le=\"1048576\"} 2\nb_bucket{le=\"+Inf\"} 3\nc 1048576\n";
        assert_eq!(go_bucket_bounds(text), "a_bucket{le=\"0.5\"} 1\nb_bucket{x=\"y\",le=\"1.048576e+06\"} 2\nb_bucket{le=\"+Inf\"} 3\nc 1048576\n");
    }
}

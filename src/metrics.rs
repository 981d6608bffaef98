//! Every metric name ballast exports, in one place, with etcd's names, types, labels and
//! buckets where etcd has the metric (etcd: server/etcdserver/metrics.go, server/storage/wal,
//! server/storage/backend, server/storage/mvcc, go-grpc-prometheus), plus `ballast_*` metrics
//! for what etcd cannot show. `install` sets up the recorder behind /metrics; `refresh`
//! samples the gauges derived from shared state on each scrape.

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

// --- etcd: disk
pub const WAL_FSYNC_SECONDS: &str = "etcd_disk_wal_fsync_duration_seconds";
pub const BACKEND_COMMIT_SECONDS: &str = "etcd_disk_backend_commit_duration_seconds";
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
// --- etcd: mvcc
pub const DB_TOTAL_SIZE: &str = "etcd_mvcc_db_total_size_in_bytes";
pub const DB_TOTAL_SIZE_IN_USE: &str = "etcd_mvcc_db_total_size_in_use_in_bytes";
pub const KEYS_TOTAL: &str = "etcd_debugging_mvcc_keys_total";
// --- etcd: network (peers appear with multi-member clusters; clients always)
pub const PEER_RTT_SECONDS: &str = "etcd_network_peer_round_trip_time_seconds";
pub const PEER_SENT_BYTES: &str = "etcd_network_peer_sent_bytes_total";
pub const PEER_RECEIVED_BYTES: &str = "etcd_network_peer_received_bytes_total";
pub const PEER_SENT_FAILURES: &str = "etcd_network_peer_sent_failures_total";
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

/// etcd's disk histograms: prometheus.ExponentialBuckets(0.001, 2, 14).
fn disk_buckets() -> Vec<f64> {
    (0..14).map(|i| 0.001 * f64::powi(2.0, i)).collect()
}

/// etcd's peer RTT histogram: ExponentialBuckets(0.0001, 2, 14).
fn rtt_buckets() -> Vec<f64> {
    (0..14).map(|i| 0.0001 * f64::powi(2.0, i)).collect()
}

/// go-grpc-prometheus defaults (prometheus.DefBuckets).
const GRPC_BUCKETS: &[f64] = &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
/// Batch sizes: 1 .. 4096 by powers of two.
fn batch_buckets() -> Vec<f64> {
    (0..13).map(|i| f64::powi(2.0, i)).collect()
}
fn batch_bytes_buckets() -> Vec<f64> {
    (8..26).map(|i| f64::powi(2.0, i)).collect()
}
/// Shard apply latency: 10 µs .. ~80 ms.
fn apply_buckets() -> Vec<f64> {
    (0..14).map(|i| 0.00001 * f64::powi(2.0, i)).collect()
}

/// Installs the global recorder; the handle renders the exposition text for /metrics.
pub fn install(compat_version: &str, quota_bytes: u64) -> Result<PrometheusHandle, String> {
    let b = PrometheusBuilder::new();
    let set = |b: PrometheusBuilder, name: &str, buckets: &[f64]| {
        b.set_buckets_for_metric(Matcher::Full(name.to_string()), buckets).map_err(|e| format!("metrics buckets: {e}"))
    };
    let b = set(b, WAL_FSYNC_SECONDS, &disk_buckets())?;
    let b = set(b, BACKEND_COMMIT_SECONDS, &disk_buckets())?;
    let b = set(b, SNAPSHOT_SECONDS, &disk_buckets())?;
    let b = set(b, PEER_RTT_SECONDS, &rtt_buckets())?;
    let b = set(b, GRPC_HANDLING_SECONDS, GRPC_BUCKETS)?;
    let b = set(b, WAL_BATCH_ENTRIES, &batch_buckets())?;
    let b = set(b, RAFT_PROPOSAL_BATCH, &batch_buckets())?;
    let b = set(b, WAL_BATCH_BYTES, &batch_bytes_buckets())?;
    let b = set(b, SHARD_APPLY_SECONDS, &apply_buckets())?;
    let handle = b.install_recorder().map_err(|e| format!("metrics recorder: {e}"))?;
    describe();
    metrics::gauge!(SERVER_VERSION, "server_version" => compat_version.to_string()).set(1.0);
    metrics::gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    metrics::gauge!(QUOTA_BACKEND_BYTES).set(quota_bytes as f64);
    // Series etcd exports from start-up, at 0 (queries and alerts expect them to exist).
    metrics::counter!(PROPOSALS_FAILED).absolute(0);
    metrics::counter!(LEADER_CHANGES).absolute(0);
    crate::server::grpc_metrics::preregister();
    Ok(handle)
}

fn describe() {
    use metrics::{describe_counter as c, describe_gauge as g, describe_histogram as h, Unit};
    h!(WAL_FSYNC_SECONDS, Unit::Seconds, "The latency distributions of fsync called by WAL.");
    h!(BACKEND_COMMIT_SECONDS, Unit::Seconds, "The latency distributions of commit called by backend (ballast: snapshot segment writes).");
    g!(HAS_LEADER, "Whether or not a leader exists. 1 is existence, 0 is not.");
    g!(IS_LEADER, "Whether or not this member is a leader. 1 if is, 0 otherwise.");
    c!(LEADER_CHANGES, "The number of leader changes seen.");
    g!(PROPOSALS_COMMITTED, "The total number of consensus proposals committed.");
    g!(PROPOSALS_APPLIED, "The total number of consensus proposals applied.");
    g!(PROPOSALS_PENDING, "The current number of pending proposals to commit.");
    c!(PROPOSALS_FAILED, "The total number of failed proposals seen.");
    g!(SERVER_VERSION, "Which version is running. 1 for 'server_version' label with current version.");
    g!(QUOTA_BACKEND_BYTES, "Current backend storage quota size in bytes.");
    g!(DB_TOTAL_SIZE, Unit::Bytes, "Total size of the underlying database physically allocated in bytes.");
    g!(DB_TOTAL_SIZE_IN_USE, Unit::Bytes, "Total size of the underlying database logically in use in bytes.");
    g!(KEYS_TOTAL, "Total number of keys.");
    h!(PEER_RTT_SECONDS, Unit::Seconds, "Round-Trip-Time histogram between peers");
    c!(PEER_SENT_BYTES, Unit::Bytes, "The total number of bytes sent to peers.");
    c!(PEER_RECEIVED_BYTES, Unit::Bytes, "The total number of bytes received from peers.");
    c!(PEER_SENT_FAILURES, "The total number of send failures from peers.");
    c!(CLIENT_GRPC_SENT_BYTES, Unit::Bytes, "The total number of bytes sent to grpc clients.");
    c!(CLIENT_GRPC_RECEIVED_BYTES, Unit::Bytes, "The total number of bytes received from grpc clients.");
    c!(GRPC_STARTED, "Total number of RPCs started on the server.");
    c!(GRPC_HANDLED, "Total number of RPCs completed on the server, regardless of success or failure.");
    c!(GRPC_MSG_RECEIVED, "Total number of RPC stream messages received on the server.");
    c!(GRPC_MSG_SENT, "Total number of gRPC stream messages sent by the server.");
    h!(GRPC_HANDLING_SECONDS, Unit::Seconds, "Histogram of response latency (seconds) of gRPC that had been application-level handled by the server.");
    g!(PROCESS_RESIDENT_MEMORY, Unit::Bytes, "Resident memory size in bytes.");
    g!(PROCESS_VIRTUAL_MEMORY, Unit::Bytes, "Virtual memory size in bytes.");
    // A gauge here (the exporter's counters are integers); rate() works the same on it.
    g!(PROCESS_CPU_SECONDS, Unit::Seconds, "Total user and system CPU time spent in seconds.");
    g!(PROCESS_OPEN_FDS, "Number of open file descriptors.");
    g!(PROCESS_MAX_FDS, "Maximum number of open file descriptors.");
    g!(PROCESS_START_TIME, Unit::Seconds, "Start time of the process since unix epoch in seconds.");
    g!(BUILD_INFO, "ballast build; 1 for the 'version' label with ballast's version.");
    g!(SHARD_QUEUE_DEPTH, "Messages waiting in each shard's queue.");
    h!(SHARD_APPLY_SECONDS, Unit::Seconds, "Time a shard spends applying one write message.");
    g!(SHARD_KEYS, "Live keys held by each shard.");
    g!(SHARD_SIZE_BYTES, Unit::Bytes, "Bytes held by each shard's MVCC store.");
    h!(WAL_BATCH_ENTRIES, "Raft entries made durable by one WAL write (group commit).");
    h!(WAL_BATCH_BYTES, Unit::Bytes, "Bytes made durable by one WAL write.");
    c!(IO_URING_SUBMISSIONS, "Writes and syncs submitted to io_uring, by kind.");
    h!(RAFT_PROPOSAL_BATCH, "Client requests batched into one raft entry.");
    g!(APPLIED_REVISION, "The newest revision every shard has applied.");
    g!(COMPACT_REVISION, "The compaction revision.");
    h!(SNAPSHOT_SECONDS, Unit::Seconds, "Time to write a snapshot (all shards' segments and the manifest).");
}

/// Samples the gauges derived from shared status and the process; called on each scrape.
pub fn refresh(status: &crate::status::ServerStatus, shard_queue_depths: &[usize]) {
    use metrics::gauge;
    let leader = status.leader();
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
    if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
        gauge!(PROCESS_OPEN_FDS).set(dir.count() as f64);
    }
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes one rlimit into `lim`.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 {
        gauge!(PROCESS_MAX_FDS).set(lim.rlim_cur as f64);
    }
}

fn boot_time_seconds() -> f64 {
    std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("btime ").and_then(|v| v.trim().parse().ok())))
        .unwrap_or(0.0)
}

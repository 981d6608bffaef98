//! The flag table: every flag etcd 3.5 (and 3.4) knows, with the type its
//! value is checked as, and whether ballast implements it; `usage` prints it.

use super::{DEFAULT_CLIENT_URL, DEFAULT_COMPAT_VERSION, DEFAULT_PEER_URL};

/// How a flag's value is parsed (and therefore which values etcd rejects).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Ty {
    /// Bare flag; a value only via `=` (Go `strconv.ParseBool`).
    Bool,
    Str,
    /// Go `uint`/`uint64` (`strconv.ParseUint(s, 0, 64)`).
    Uint,
    /// Go `int`/`int64` (`strconv.ParseInt(s, 0, 64)`).
    Int,
    /// etcd's `Uint32Value` (`strconv.ParseUint(s, 10, 32)`).
    U32,
    /// Go `time.Duration`.
    Duration,
    /// Comma-separated URLs (etcd `UniqueURLs`).
    Urls,
    /// Comma-separated URLs, or `*` (etcd's `--cors`).
    UrlsOrStar,
    /// Comma-separated free-form strings.
    Strings,
    /// One of a fixed set of values (etcd `SelectiveStringValue`).
    Choice(&'static [&'static str]),
    /// Comma-separated values from a fixed set (`SelectiveStringsValue`).
    Choices(&'static [&'static str]),
    /// Legacy flags etcd accepts and ignores (`flags.IgnoredFlag`, bool-like).
    Ignored,
}

/// One command-line flag: its name, value type, whether ballast implements
/// it, and (for implemented flags) the default and help shown by `usage()`.
pub(super) struct Spec {
    pub(super) name: &'static str,
    pub(super) ty: Ty,
    pub(super) implemented: bool,
    default: &'static str,
    help: &'static str,
}

const fn ours(name: &'static str, ty: Ty, default: &'static str, help: &'static str) -> Spec {
    Spec {
        name,
        ty,
        implemented: true,
        default,
        help,
    }
}

const fn etcd(name: &'static str, ty: Ty) -> Spec {
    Spec {
        name,
        ty,
        implemented: false,
        default: "",
        help: "",
    }
}

pub(super) const CLUSTER_STATES: &[&str] = &["new", "existing"];

/// Every flag of etcd v3.5 (`newConfig()` in server/etcdmain/config.go) and
/// the v3.4-only ones still found in the wild, plus ballast's own.
pub(super) static FLAGS: &[Spec] = &[
    // implemented by ballast
    ours("config-file", Ty::Str, "", "Path to the server configuration file. Note that if a configuration file is provided, other command line flags and environment variables will be ignored."),
    ours("name", Ty::Str, "default", "Human-readable name for this member."),
    ours("data-dir", Ty::Str, "${name}.ballast", "Path to the data directory."),
    ours("wal-dir", Ty::Str, "", "Path to the dedicated wal directory."),
    ours("snapshot-count", Ty::Uint, "100000", "Number of committed transactions to trigger a snapshot to disk."),
    ours("heartbeat-interval", Ty::Uint, "100", "Time (in milliseconds) of a heartbeat interval."),
    ours("election-timeout", Ty::Uint, "1000", "Time (in milliseconds) for an election to timeout."),
    ours("listen-peer-urls", Ty::Urls, DEFAULT_PEER_URL, "List of URLs to listen on for peer traffic."),
    ours("listen-client-urls", Ty::Urls, DEFAULT_CLIENT_URL, "List of URLs to listen on for client traffic."),
    ours("listen-metrics-urls", Ty::Urls, "", "List of URLs to listen on for the metrics and health endpoints."),
    ours("quota-backend-bytes", Ty::Int, "0", "Raise alarms when backend size exceeds the given quota (0 defaults to 2GiB)."),
    ours("max-txn-ops", Ty::Uint, "128", "Maximum number of operations permitted in a transaction."),
    ours("max-request-bytes", Ty::Uint, "1572864", "Maximum client request size in bytes the server will accept."),
    ours("max-concurrent-streams", Ty::U32, "4294967295", "Maximum concurrent streams that each client can open at a time."),
    ours("initial-advertise-peer-urls", Ty::Urls, DEFAULT_PEER_URL, "List of this member's peer URLs to advertise to the rest of the cluster."),
    ours("initial-cluster", Ty::Str, "default=http://localhost:2380", "Initial cluster configuration for bootstrapping."),
    ours("initial-cluster-state", Ty::Choice(CLUSTER_STATES), "new", "Initial cluster state ('new' or 'existing')."),
    ours("initial-cluster-token", Ty::Str, "etcd-cluster", "Initial cluster token for the etcd cluster during bootstrap."),
    ours("advertise-client-urls", Ty::Urls, DEFAULT_CLIENT_URL, "List of this member's client URLs to advertise to the public."),
    ours("logger", Ty::Str, "zap", "Currently only supports 'zap' for structured logging."),
    ours("log-level", Ty::Str, "info", "Configures log level. Only supports debug, info, warn, error, panic, or fatal."),
    ours("auto-compaction-retention", Ty::Str, "0", "Auto compaction retention length. 0 means disable auto compaction."),
    ours("auto-compaction-mode", Ty::Str, "periodic", "Interpret 'auto-compaction-retention' one of: periodic|revision."),
    ours("experimental-watch-progress-notify-interval", Ty::Duration, "10m0s", "Duration of periodic watch progress notifications."),
    ours("experimental-warning-apply-duration", Ty::Duration, "100ms", "Time duration after which a warning is generated if request takes more time."),
    ours("grpc-keepalive-interval", Ty::Duration, "2h0m0s", "Frequency duration of server-to-client ping to check if a connection is alive (0 to disable)."),
    ours("grpc-keepalive-timeout", Ty::Duration, "20s", "Additional duration of wait before closing a non-responsive connection (0 to disable)."),
    ours("strict-reconfig-check", Ty::Bool, "true", "Reject reconfiguration requests that would cause quorum loss."),
    ours("experimental-enable-lease-checkpoint", Ty::Bool, "false", "Enable leader to send regular checkpoints to other members to prevent reset of remaining TTL on leader change."),
    ours("experimental-enable-lease-checkpoint-persist", Ty::Bool, "false", "Enable persisting remainingTTL to prevent indefinite auto-renewal of long lived leases. Requires experimental-enable-lease-checkpoint to be enabled."),
    ours("version", Ty::Bool, "false", "Print the version and exit."),
    ours("compat-version", Ty::Str, DEFAULT_COMPAT_VERSION, "(ballast) etcd version reported to clients."),
    ours("discovery", Ty::Str, "", "Discovery URL used to bootstrap the cluster."),
    ours("discovery-proxy", Ty::Str, "", "HTTP proxy to use for traffic to discovery service (refused: ballast has no proxy support)."),
    ours("discovery-srv", Ty::Str, "", "DNS domain used to bootstrap initial cluster."),
    ours("discovery-srv-name", Ty::Str, "", "Service name to query when using DNS discovery."),
    ours("force-new-cluster", Ty::Bool, "false", "Force to create a new one member cluster."),
    ours("shards", Ty::Uint, "0", "(ballast) Number of shards; 0 means the usable cores less the 2 front-end threads, at least 1."),
    ours("wal-segment-bytes", Ty::Uint, "16777216", "(ballast) Size of a preallocated WAL segment file."),
    ours("cert-file", Ty::Str, "", "Path to the client server TLS cert file."),
    ours("key-file", Ty::Str, "", "Path to the client server TLS key file."),
    ours("client-cert-auth", Ty::Bool, "false", "Enable client cert authentication."),
    ours("client-crl-file", Ty::Str, "", "Path to the client certificate revocation list file."),
    ours("trusted-ca-file", Ty::Str, "", "Path to the client server TLS trusted CA cert file."),
    ours("auto-tls", Ty::Bool, "false", "Client TLS using generated certificates."),
    ours("self-signed-cert-validity", Ty::Uint, "1", "The validity period of the client and peer certificates, unit is year."),
    ours("cipher-suites", Ty::Strings, "", "Comma-separated list of supported TLS cipher suites between client/server and peers (empty: the TLS library's defaults)."),
    ours("tls-min-version", Ty::Str, "TLS1.2", "Minimum TLS version supported by ballast. Possible values: TLS1.2, TLS1.3."),
    ours("tls-max-version", Ty::Str, "", "Maximum TLS version supported by ballast. Possible values: TLS1.2, TLS1.3 (empty: the highest the TLS library supports)."),
    // etcd 3.5 flags ballast accepts but does not implement yet
    etcd("listen-client-http-urls", Ty::Urls),
    etcd("max-snapshots", Ty::Uint),
    etcd("max-wals", Ty::Uint),
    etcd("initial-election-tick-advance", Ty::Bool),
    etcd("backend-bbolt-freelist-type", Ty::Str),
    etcd("backend-batch-interval", Ty::Duration),
    etcd("backend-batch-limit", Ty::Int),
    etcd("grpc-keepalive-min-time", Ty::Duration),
    etcd("socket-reuse-port", Ty::Bool),
    etcd("socket-reuse-address", Ty::Bool),
    etcd("raft-read-timeout", Ty::Duration),
    etcd("raft-write-timeout", Ty::Duration),
    etcd("discovery-fallback", Ty::Choice(&["exit", "proxy"])),
    etcd("pre-vote", Ty::Bool),
    etcd("enable-v2", Ty::Bool),
    etcd("experimental-enable-v2v3", Ty::Str),
    etcd("v2-deprecation", Ty::Choices(&["not-yet", "write-only", "write-only-drop-data", "gone"])),
    etcd("proxy", Ty::Choice(&["off", "readonly", "on"])),
    etcd("proxy-failure-wait", Ty::Uint),
    etcd("proxy-refresh-interval", Ty::Uint),
    etcd("proxy-dial-timeout", Ty::Uint),
    etcd("proxy-write-timeout", Ty::Uint),
    etcd("proxy-read-timeout", Ty::Uint),
    etcd("client-cert-file", Ty::Str),
    etcd("client-key-file", Ty::Str),
    ours("client-cert-allowed-hostname", Ty::Strings, "", "Allowed TLS hostname for client cert authentication."),
    // peer TLS
    ours("peer-cert-file", Ty::Str, "", "Path to the peer server TLS cert file."),
    ours("peer-key-file", Ty::Str, "", "Path to the peer server TLS key file."),
    etcd("peer-client-cert-file", Ty::Str),
    etcd("peer-client-key-file", Ty::Str),
    ours("peer-client-cert-auth", Ty::Bool, "false", "Enable peer client cert authentication."),
    ours("peer-trusted-ca-file", Ty::Str, "", "Path to the peer server TLS trusted CA file."),
    ours("peer-auto-tls", Ty::Bool, "false", "Peer TLS using generated certificates"),
    ours("peer-crl-file", Ty::Str, "", "Path to the peer certificate revocation list file."),
    ours("peer-cert-allowed-cn", Ty::Strings, "", "Allowed CN for inter peer authentication."),
    ours("peer-cert-allowed-hostname", Ty::Strings, "", "Allowed TLS hostname for inter peer authentication."),
    etcd("experimental-peer-skip-client-san-verification", Ty::Bool),
    etcd("cors", Ty::UrlsOrStar),
    etcd("host-whitelist", Ty::Strings),
    etcd("log-outputs", Ty::Strings),
    etcd("enable-log-rotation", Ty::Bool),
    etcd("log-rotation-config-json", Ty::Str),
    etcd("enable-pprof", Ty::Bool),
    etcd("metrics", Ty::Str),
    etcd("experimental-enable-distributed-tracing", Ty::Bool),
    etcd("experimental-distributed-tracing-address", Ty::Str),
    etcd("experimental-distributed-tracing-service-name", Ty::Str),
    etcd("experimental-distributed-tracing-instance-id", Ty::Str),
    etcd("experimental-distributed-tracing-sampling-rate", Ty::Int),
    ours("auth-token", Ty::Str, "simple", "Specify auth token specific options."),
    ours("bcrypt-cost", Ty::Uint, "10", "Specify bcrypt algorithm cost factor for auth password hashing."),
    ours("auth-token-ttl", Ty::Uint, "300", "The lifetime in seconds of the auth token."),
    etcd("enable-grpc-gateway", Ty::Bool),
    etcd("experimental-initial-corrupt-check", Ty::Bool),
    etcd("experimental-corrupt-check-time", Ty::Duration),
    etcd("experimental-compact-hash-check-enabled", Ty::Bool),
    etcd("experimental-compact-hash-check-time", Ty::Duration),
    etcd("experimental-compaction-batch-limit", Ty::Int),
    etcd("experimental-compaction-sleep-interval", Ty::Duration),
    etcd("experimental-downgrade-check-time", Ty::Duration),
    etcd("experimental-memory-mlock", Ty::Bool),
    etcd("experimental-txn-mode-write-with-shared-buffer", Ty::Bool),
    etcd("experimental-stop-grpc-service-on-defrag", Ty::Bool),
    etcd("experimental-bootstrap-defrag-threshold-megabytes", Ty::Uint),
    etcd("experimental-snapshot-catchup-entries", Ty::Uint),
    etcd("unsafe-no-fsync", Ty::Bool),
    // etcd 3.4-only flags
    etcd("debug", Ty::Bool),
    etcd("log-package-levels", Ty::Str),
    etcd("log-output", Ty::Strings),
    etcd("experimental-backend-bbolt-freelist-type", Ty::Str),
    etcd("next-cluster-version-compatible", Ty::Bool),
    // legacy flags etcd itself accepts and ignores
    etcd("cluster-active-size", Ty::Ignored),
    etcd("cluster-remove-delay", Ty::Ignored),
    etcd("cluster-sync-interval", Ty::Ignored),
    etcd("config", Ty::Ignored),
    etcd("force", Ty::Ignored),
    etcd("max-result-buffer", Ty::Ignored),
    etcd("max-retry-attempts", Ty::Ignored),
    etcd("peer-heartbeat-interval", Ty::Ignored),
    etcd("peer-election-timeout", Ty::Ignored),
    etcd("retry-interval", Ty::Ignored),
    etcd("snapshot", Ty::Ignored),
    etcd("v", Ty::Ignored),
    etcd("vv", Ty::Ignored),
    etcd("test.coverprofile", Ty::Ignored),
    etcd("test.outputdir", Ty::Ignored),
];

/// Flags that are ballast's own invention: etcd has no opinion on them, so
/// they still apply when a config file is given.
pub(super) const BALLAST_ONLY: &[&str] = &["compat-version", "shards", "wal-segment-bytes"];

pub(super) fn lookup(name: &str) -> Option<&'static Spec> {
    FLAGS.iter().find(|s| s.name == name)
}

pub(super) fn env_key(flag: &str) -> String {
    format!("ETCD_{}", flag.to_uppercase().replace('-', "_"))
}

/// etcd-style help text.
pub fn usage() -> String {
    let mut out = String::from(
        "Usage:\n\n  ballast [flags]\n    Start a ballast (etcd v3 compatible) server.\n\n  \
         ballast --version\n    Show the version of ballast.\n\n  ballast -h | --help\n    \
         Show the help information about ballast.\n\n  ballast --config-file\n    \
         Path to the server configuration file. Note that if a configuration file is provided, \
         other command line flags and environment variables will be ignored.\n\nFlags:\n",
    );
    for spec in FLAGS.iter().filter(|s| s.implemented) {
        out.push_str(&format!(
            "  --{} '{}'\n    {}\n",
            spec.name, spec.default, spec.help
        ));
    }
    out.push_str(
        "\nEvery flag may also be given as an environment variable ETCD_<FLAG_NAME> \
         (e.g. ETCD_DATA_DIR).\n\nAccepted for etcd compatibility but not implemented \
         (ignored with a warning):\n",
    );
    let others: Vec<String> = FLAGS
        .iter()
        .filter(|s| !s.implemented)
        .map(|s| format!("--{}", s.name))
        .collect();
    for line in others.chunks(4) {
        out.push_str(&format!("  {}\n", line.join(" ")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_has_no_duplicates_and_usage_lists_flags() {
        let mut names: Vec<&str> = FLAGS.iter().map(|s| s.name).collect();
        names.sort();
        let n = names.len();
        names.dedup();
        assert_eq!(n, names.len());
        let u = usage();
        assert!(u.contains("--data-dir '${name}.ballast'"));
        assert!(u.contains("--enable-v2"));
    }
}

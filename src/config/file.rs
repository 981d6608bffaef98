//! `--config-file` (etcd's `embed.ConfigFromFile`): a YAML file with etcd's
//! keys. When one is given, every other flag and `ETCD_*` variable is ignored
//! (with a warning), except ballast's own flags.

use serde::Deserialize;

use super::command_line::{apply_ballast_flags, FlagValues};
use super::url::parse_urls;
use super::{finish_paths_and_cluster, quota_from_i64, Config, ConfigError, TlsFlags};

/// The subset of etcd's YAML keys ballast understands; others are ignored.
#[derive(Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
struct FileConfig {
    name: Option<String>,
    data_dir: Option<String>,
    wal_dir: Option<String>,
    listen_client_urls: Option<String>,
    advertise_client_urls: Option<String>,
    listen_peer_urls: Option<String>,
    initial_advertise_peer_urls: Option<String>,
    initial_cluster: Option<String>,
    initial_cluster_state: Option<String>,
    initial_cluster_token: Option<String>,
    snapshot_count: Option<u64>,
    heartbeat_interval: Option<u64>,
    election_timeout: Option<u64>,
    quota_backend_bytes: Option<i64>,
    max_request_bytes: Option<u64>,
    max_txn_ops: Option<u64>,
    max_concurrent_streams: Option<u32>,
    auto_compaction_mode: Option<String>,
    auto_compaction_retention: Option<String>,
    logger: Option<String>,
    log_level: Option<String>,
    listen_metrics_urls: Option<String>,
    compat_version: Option<String>,
    shards: Option<usize>,
    client_transport_security: Option<SecurityConfig>,
    peer_transport_security: Option<SecurityConfig>,
    cipher_suites: Option<Vec<String>>,
    tls_min_version: Option<String>,
    tls_max_version: Option<String>,
    self_signed_cert_validity: Option<u64>,
    auth_token: Option<String>,
    auth_token_ttl: Option<u64>,
    bcrypt_cost: Option<u64>,
    force_new_cluster: Option<bool>,
    discovery: Option<String>,
    discovery_proxy: Option<String>,
    discovery_srv: Option<String>,
    discovery_srv_name: Option<String>,
    /// Nanoseconds, as etcd's YAML takes a `time.Duration` (also the two below).
    experimental_watch_progress_notify_interval: Option<u64>,
    experimental_warning_apply_duration: Option<i64>,
    grpc_keepalive_interval: Option<i64>,
    grpc_keepalive_timeout: Option<i64>,
    experimental_enable_lease_checkpoint: Option<bool>,
    experimental_enable_lease_checkpoint_persist: Option<bool>,
    strict_reconfig_check: Option<bool>,
}

/// etcd's `securityConfig` (`client-transport-security`, `peer-transport-security`). The
/// YAML has no CRL file, as etcd's has none.
#[derive(Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
struct SecurityConfig {
    cert_file: Option<String>,
    key_file: Option<String>,
    client_cert_auth: Option<bool>,
    trusted_ca_file: Option<String>,
    auto_tls: Option<bool>,
    allowed_cn: Option<Vec<String>>,
}

impl SecurityConfig {
    fn into_flags(self) -> TlsFlags {
        TlsFlags {
            cert_file: self.cert_file.unwrap_or_default(),
            key_file: self.key_file.unwrap_or_default(),
            trusted_ca_file: self.trusted_ca_file.unwrap_or_default(),
            client_cert_auth: self.client_cert_auth.unwrap_or(false),
            crl_file: String::new(),
            auto_tls: self.auto_tls.unwrap_or(false),
            allowed_cns: self.allowed_cn.unwrap_or_default(),
            allowed_hostnames: Vec::new(),
        }
    }
}

const FILE_KEYS: &[&str] = &[
    "name",
    "auth-token",
    "auth-token-ttl",
    "bcrypt-cost",
    "data-dir",
    "wal-dir",
    "listen-client-urls",
    "advertise-client-urls",
    "listen-peer-urls",
    "initial-advertise-peer-urls",
    "initial-cluster",
    "initial-cluster-state",
    "initial-cluster-token",
    "snapshot-count",
    "heartbeat-interval",
    "election-timeout",
    "quota-backend-bytes",
    "max-request-bytes",
    "max-txn-ops",
    "max-concurrent-streams",
    "auto-compaction-mode",
    "auto-compaction-retention",
    "logger",
    "log-level",
    "listen-metrics-urls",
    "compat-version",
    "shards",
    "client-transport-security",
    "peer-transport-security",
    "cipher-suites",
    "tls-min-version",
    "tls-max-version",
    "self-signed-cert-validity",
    "force-new-cluster",
    "discovery",
    "discovery-proxy",
    "discovery-srv",
    "discovery-srv-name",
    "experimental-watch-progress-notify-interval",
    "experimental-warning-apply-duration",
    "grpc-keepalive-interval",
    "grpc-keepalive-timeout",
    "experimental-enable-lease-checkpoint",
    "experimental-enable-lease-checkpoint-persist",
    "strict-reconfig-check",
];

pub(super) fn config_from_file(
    path: &str,
    flags: &FlagValues,
    warnings: &mut Vec<String>,
) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::invalid(format!("open {}: {}", path, e)))?;
    let file_err = |e: serde_yaml::Error| {
        ConfigError::invalid(format!("error loading config file {:?}: {}", path, e))
    };
    let doc: serde_yaml::Value = serde_yaml::from_str(&text).map_err(file_err)?;
    if doc.is_null() {
        return config_from_file_values(FileConfig::default(), flags);
    }
    let map = doc.as_mapping().ok_or_else(|| {
        ConfigError::invalid(format!(
            "error loading config file {:?}: not a YAML mapping",
            path
        ))
    })?;
    for key in map.keys() {
        let key = key
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| format!("{:?}", key));
        if !FILE_KEYS.contains(&key.as_str()) {
            warnings.push(format!(
                "config file key {:?} is not implemented by ballast yet; ignored",
                key
            ));
        }
    }
    let file: FileConfig = serde_yaml::from_str(&text).map_err(file_err)?;
    config_from_file_values(file, flags)
}

fn config_from_file_values(f: FileConfig, flags: &FlagValues) -> Result<Config, ConfigError> {
    let mut c = Config::default();
    let set_str = |v: Option<String>, target: &mut String| {
        if let Some(v) = v.filter(|v| !v.is_empty()) {
            *target = v;
        }
    };
    set_str(f.name, &mut c.name);
    set_str(f.initial_cluster_state, &mut c.initial_cluster_state);
    set_str(f.initial_cluster_token, &mut c.initial_cluster_token);
    c.force_new_cluster = f.force_new_cluster.unwrap_or(false);
    set_str(f.discovery, &mut c.discovery.url);
    set_str(f.discovery_proxy, &mut c.discovery.proxy);
    set_str(f.discovery_srv, &mut c.discovery.srv);
    set_str(f.discovery_srv_name, &mut c.discovery.srv_name);
    set_str(f.logger, &mut c.logger);
    set_str(f.log_level, &mut c.log_level);
    set_str(f.compat_version, &mut c.compat_version);
    // etcd's YAML decoding leaves the (non-empty) default when a key is absent,
    // but an explicit empty string overrides it for these two.
    if let Some(v) = f.auto_compaction_mode {
        c.auto_compaction_mode = v;
    }
    if let Some(v) = f.auto_compaction_retention {
        c.auto_compaction_retention = v;
    }
    let set_u64 = |v: Option<u64>, target: &mut u64| {
        if let Some(v) = v {
            *target = v;
        }
    };
    set_u64(f.snapshot_count, &mut c.snapshot_count);
    set_u64(f.heartbeat_interval, &mut c.heartbeat_interval_ms);
    set_u64(f.election_timeout, &mut c.election_timeout_ms);
    set_u64(f.max_request_bytes, &mut c.max_request_bytes);
    set_u64(f.max_txn_ops, &mut c.max_txn_ops);
    if let Some(n) = f.max_concurrent_streams {
        c.max_concurrent_streams = n;
    }
    if let Some(q) = f.quota_backend_bytes {
        c.quota_backend_bytes = quota_from_i64(q);
    }
    if let Some(s) = f.shards {
        c.shards = s;
    }
    let set_urls = |key: &str, v: Option<String>, target: &mut Vec<String>| match v
        .filter(|v| !v.is_empty())
    {
        None => Ok(()),
        Some(v) => parse_urls(&v).map(|u| *target = u).map_err(|e| {
            ConfigError::invalid(format!("unexpected error setting up {}: {}", key, e))
        }),
    };
    set_urls(
        "listen-client-urls",
        f.listen_client_urls,
        &mut c.listen_client_urls,
    )?;
    set_urls(
        "advertise-client-urls",
        f.advertise_client_urls,
        &mut c.advertise_client_urls,
    )?;
    set_urls(
        "listen-peer-urls",
        f.listen_peer_urls,
        &mut c.listen_peer_urls,
    )?;
    set_urls(
        "initial-advertise-peer-urls",
        f.initial_advertise_peer_urls,
        &mut c.initial_advertise_peer_urls,
    )?;
    set_urls(
        "listen-metrics-urls",
        f.listen_metrics_urls,
        &mut c.listen_metrics_urls,
    )?;
    c.client_tls = f.client_transport_security.map(SecurityConfig::into_flags).unwrap_or_default();
    c.peer_tls = f.peer_transport_security.map(SecurityConfig::into_flags).unwrap_or_default();
    c.cipher_suites = f.cipher_suites.unwrap_or_default();
    set_str(f.tls_min_version, &mut c.tls_min_version);
    if let Some(v) = f.tls_max_version {
        c.tls_max_version = v;
    }
    // etcd's configFromFile: 0 (or absent) is 1 year.
    c.self_signed_cert_validity_years = f.self_signed_cert_validity.filter(|&y| y > 0).unwrap_or(1);
    if let Some(v) = f.auth_token {
        c.auth_token = v;
    }
    c.auth_token_ttl_secs = f.auth_token_ttl.unwrap_or(300);
    c.bcrypt_cost = super::bcrypt_cost(f.bcrypt_cost.unwrap_or(10));
    if let Some(ns) = f.experimental_warning_apply_duration {
        c.warning_apply_duration = std::time::Duration::from_nanos(ns.max(0) as u64);
    }
    if let Some(ns) = f.experimental_watch_progress_notify_interval {
        c.watch_progress_notify_interval = super::watch_progress_interval(Some(std::time::Duration::from_nanos(ns)));
    }
    let nanos = |ns: i64| std::time::Duration::from_nanos(ns.max(0) as u64);
    c.grpc_keepalive_interval = f.grpc_keepalive_interval.map_or(c.grpc_keepalive_interval, nanos);
    c.grpc_keepalive_timeout = f.grpc_keepalive_timeout.map_or(c.grpc_keepalive_timeout, nanos);
    c.lease_checkpoint = f.experimental_enable_lease_checkpoint.unwrap_or(c.lease_checkpoint);
    c.lease_checkpoint_persist = f.experimental_enable_lease_checkpoint_persist.unwrap_or(c.lease_checkpoint_persist);
    c.strict_reconfig_check = f.strict_reconfig_check.unwrap_or(c.strict_reconfig_check);
    // ballast-only flags still apply from the command line / environment.
    apply_ballast_flags(&mut c, flags);
    let initial_cluster = f.initial_cluster.filter(|s| !s.is_empty());
    finish_paths_and_cluster(
        &mut c,
        f.data_dir.as_deref(),
        f.wal_dir.as_deref(),
        initial_cluster.as_deref(),
    )?;
    Ok(c)
}

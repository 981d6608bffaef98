//! Command-line, environment and config-file handling for ballast.
//!
//! ballast is a drop-in replacement for an etcd 3.5 server, so its command
//! line *is* etcd's command line: scripts, systemd units and test harnesses
//! written for etcd must start ballast unchanged.  The specification we follow
//! is therefore etcd's own behaviour (`server/etcdmain/config.go`,
//! `server/embed/config.go` and `pkg/flags` in etcd v3.5), which in turn uses
//! Go's `flag` package syntax:
//!
//! * `--flag value`, `--flag=value`, `-flag value`, `-flag=value`;
//! * boolean flags are bare (`--flag` means true) and only take a value with
//!   `=` (`--flag=false`);
//! * `--` ends the flags; the first non-flag argument stops parsing and is
//!   reported as `'<arg>' is not a valid flag` (exit code 1, as etcd does);
//! * an unknown flag is `flag provided but not defined: -<name>` and a bad
//!   value is `invalid value "<v>" for flag -<name>: <why>` (exit code 2,
//!   Go's `flag.ContinueOnError` + `os.Exit(2)` in etcd);
//! * `ETCD_<FLAG_NAME>` environment variables fill in flags that were not
//!   given on the command line;
//! * `--config-file` (or `ETCD_CONFIG_FILE`) loads a YAML file with etcd's
//!   keys, and then every other flag and environment variable is ignored.
//!
//! Every flag etcd 3.4/3.5 knows is accepted (and type-checked like etcd
//! does), but only those the flag table marks implemented affect
//! [`Config`]; the others produce one warning each so that operators notice.
//! Post-parse validation (bind addresses must be IPs, election timeout vs
//! heartbeat, ...) mirrors `embed.Config.Validate` and exits with code 1.
//!
//! The files, in the order [`parse`] uses them: `flags` (the flag table and
//! `usage`), `command_line` (Go's flag syntax, and the Config the flags make),
//! `env` (`ETCD_*`), `file` (the YAML config file), `validate` (etcd's
//! checks after parsing). Values are checked by `values` (Go's strconv and
//! etcd's flag types), `url` (Go's url/net subset) and `duration` (Go's
//! `time.ParseDuration`, also used by the compactor).

mod command_line;
pub mod duration;
mod env;
mod file;
mod flags;
mod url;
pub use url::check_url;
mod validate;
mod values;
#[cfg(test)]
mod tests;

use std::fmt;
use std::path::PathBuf;

use command_line::{config_from_flags, scan_command_line, warn_flags_ignored_by_config_file, warn_unimplemented, Scan};
use env::{apply_env, env_get, warn_unrecognized_env};
use flags::{BALLAST_ONLY, FLAGS};
pub use flags::usage;
pub use validate::tls_version;

/// Version ballast reports to clients as its etcd cluster/server version.
pub const DEFAULT_COMPAT_VERSION: &str = "3.5.23";
pub const DEFAULT_WAL_SEGMENT_BYTES: u64 = 16 << 20;
const MIN_WAL_SEGMENT_BYTES: u64 = 64 << 10;

/// etcd's default --tls-min-version.
const DEFAULT_TLS_MIN_VERSION: &str = "TLS1.2";

const DEFAULT_CLIENT_URL: &str = "http://localhost:2379";
const DEFAULT_PEER_URL: &str = "http://localhost:2380";

/// etcd's default interval of watch progress notifications.
pub const DEFAULT_WATCH_PROGRESS_NOTIFY_INTERVAL: std::time::Duration = std::time::Duration::from_secs(600);
/// etcd's shortest one.
const MIN_WATCH_PROGRESS_NOTIFY_INTERVAL: std::time::Duration = std::time::Duration::from_millis(100);

/// etcd's reading of --experimental-watch-progress-notify-interval: 0 (or negative) keeps the
/// default, anything shorter than 100 ms is 100 ms.
pub(super) fn watch_progress_interval(d: Option<std::time::Duration>) -> std::time::Duration {
    match d {
        Some(d) if !d.is_zero() => d.max(MIN_WATCH_PROGRESS_NOTIFY_INTERVAL),
        _ => DEFAULT_WATCH_PROGRESS_NOTIFY_INTERVAL,
    }
}

/// The resolved server configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub name: String,
    pub data_dir: PathBuf,
    pub wal_dir: Option<PathBuf>,
    pub listen_client_urls: Vec<String>,
    pub advertise_client_urls: Vec<String>,
    pub listen_peer_urls: Vec<String>,
    pub initial_advertise_peer_urls: Vec<String>,
    pub initial_cluster: Vec<(String, String)>,
    pub initial_cluster_state: String,
    pub initial_cluster_token: String,
    pub snapshot_count: u64,
    pub heartbeat_interval_ms: u64,
    pub election_timeout_ms: u64,
    /// 0 means etcd's default of 2 GiB. A negative etcd value (quota
    /// disabled) is stored as `u64::MAX`.
    pub quota_backend_bytes: u64,
    pub max_request_bytes: u64,
    pub max_txn_ops: u64,
    /// --max-concurrent-streams: HTTP/2 streams per client connection, and the gateway's
    /// streaming calls open at once (etcd's default: no limit, `u32::MAX`).
    pub max_concurrent_streams: u32,
    pub auto_compaction_mode: String,
    pub auto_compaction_retention: String,
    pub logger: String,
    pub log_level: String,
    pub listen_metrics_urls: Vec<String>,
    pub compat_version: String,
    /// 0 = the usable cores less the front end's threads, at least 1 (resolved by the server).
    pub shards: usize,
    /// ours: --wal-segment-bytes, size of a preallocated WAL segment file.
    pub wal_segment_bytes: u64,
    /// --experimental-warning-apply-duration: a read slower than this is logged as etcd logs it
    /// ("apply request took too long", `slow_request.rs`); a negative value is read as 0.
    pub warning_apply_duration: std::time::Duration,
    /// --experimental-watch-progress-notify-interval (etcd: 0 keeps 10m, at least 100 ms).
    pub watch_progress_notify_interval: std::time::Duration,
    /// --grpc-keepalive-interval and --grpc-keepalive-timeout (etcd: 2h and 20s): the server
    /// pings a connection quiet for the interval and closes it when no answer comes within the
    /// timeout; off unless both are above 0.
    pub grpc_keepalive_interval: std::time::Duration,
    pub grpc_keepalive_timeout: std::time::Duration,
    /// --experimental-enable-lease-checkpoint(-persist).
    pub lease_checkpoint: bool,
    /// etcd's `--strict-reconfig-check` (default true).
    pub strict_reconfig_check: bool,
    pub lease_checkpoint_persist: bool,
    /// The client listeners' TLS: --cert-file, --key-file, --trusted-ca-file,
    /// --client-cert-auth, --client-crl-file, --auto-tls.
    pub client_tls: TlsFlags,
    /// The --peer-* equivalents: certificate, key, trusted CA and client-cert-auth secure the
    /// peer transport (`https://` peer URLs); the CRL, auto-TLS and allowed-CN flags are checked
    /// as etcd checks them at start, not used yet.
    pub peer_tls: TlsFlags,
    /// --cipher-suites, Go's names in the order given; empty = the TLS library's defaults.
    /// The names are checked when the listeners are set up (`server/tls.rs`), as etcd does.
    pub cipher_suites: Vec<String>,
    /// --tls-min-version / --tls-max-version: "" (the library's choice), "TLS1.2" or "TLS1.3".
    pub tls_min_version: String,
    pub tls_max_version: String,
    /// --self-signed-cert-validity: years an --auto-tls certificate is valid.
    pub self_signed_cert_validity_years: u64,
    /// --auth-token: `simple` or `jwt,pub-key=…,priv-key=…,sign-method=…,ttl=…`.
    pub auth_token: String,
    /// --auth-token-ttl: seconds a simple token lives after its last use.
    pub auth_token_ttl_secs: u64,
    /// --bcrypt-cost (etcd: outside 4..=31 the default, 10).
    pub bcrypt_cost: u32,
    /// --force-new-cluster: a member with data restarts as the only member of its cluster.
    pub force_new_cluster: bool,
    /// --discovery, --discovery-proxy, --discovery-srv, --discovery-srv-name.
    pub discovery: Discovery,
    /// Whether --initial-cluster was given (not derived from the name and peer URLs): etcd
    /// refuses it beside a discovery flag.
    pub initial_cluster_given: bool,
}

/// How the initial cluster is found instead of `--initial-cluster` (empty strings: unset).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Discovery {
    /// --discovery: a v2 discovery URL (`peer/discovery.rs`).
    pub url: String,
    /// --discovery-proxy: refused (ballast speaks to the discovery service directly).
    pub proxy: String,
    /// --discovery-srv: the DNS domain whose SRV records name the members (`peer/srv.rs`).
    pub srv: String,
    /// --discovery-srv-name: the service name's suffix (`_etcd-server-<name>._tcp`).
    pub srv_name: String,
}

/// One side's TLS flags (client or peer), as etcd's `transport.TLSInfo`: an empty string is
/// unset, and the side is "empty" (no TLS) when neither certificate nor key is given.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TlsFlags {
    pub cert_file: String,
    pub key_file: String,
    pub trusted_ca_file: String,
    pub client_cert_auth: bool,
    pub crl_file: String,
    pub auto_tls: bool,
    /// --peer-cert-allowed-cn (peers only).
    pub allowed_cns: Vec<String>,
    /// --client-cert-allowed-hostname (clients only: the peer flag is not read yet).
    pub allowed_hostnames: Vec<String>,
}

impl TlsFlags {
    /// etcd's `TLSInfo.Empty`.
    pub fn is_empty(&self) -> bool {
        self.cert_file.is_empty() && self.key_file.is_empty()
    }
}

impl Default for Config {
    fn default() -> Self {
        let name = "default".to_string();
        Config {
            data_dir: default_data_dir(&name),
            wal_dir: None,
            listen_client_urls: vec![DEFAULT_CLIENT_URL.to_string()],
            advertise_client_urls: vec![DEFAULT_CLIENT_URL.to_string()],
            listen_peer_urls: vec![DEFAULT_PEER_URL.to_string()],
            initial_advertise_peer_urls: vec![DEFAULT_PEER_URL.to_string()],
            initial_cluster: vec![(name.clone(), DEFAULT_PEER_URL.to_string())],
            name,
            initial_cluster_state: "new".to_string(),
            initial_cluster_token: "etcd-cluster".to_string(),
            snapshot_count: 100_000,
            heartbeat_interval_ms: 100,
            election_timeout_ms: 1000,
            quota_backend_bytes: 0,
            max_request_bytes: 1_572_864,
            max_txn_ops: 128,
            max_concurrent_streams: u32::MAX,
            auto_compaction_mode: "periodic".to_string(),
            auto_compaction_retention: "0".to_string(),
            logger: "zap".to_string(),
            log_level: "info".to_string(),
            listen_metrics_urls: Vec::new(),
            compat_version: DEFAULT_COMPAT_VERSION.to_string(),
            shards: 0,
            wal_segment_bytes: DEFAULT_WAL_SEGMENT_BYTES,
            watch_progress_notify_interval: DEFAULT_WATCH_PROGRESS_NOTIFY_INTERVAL,
            warning_apply_duration: crate::slow_request::DEFAULT_THRESHOLD,
            grpc_keepalive_interval: std::time::Duration::from_secs(2 * 3600),
            grpc_keepalive_timeout: std::time::Duration::from_secs(20),
            lease_checkpoint: false,
            strict_reconfig_check: true,
            lease_checkpoint_persist: false,
            client_tls: TlsFlags::default(),
            peer_tls: TlsFlags::default(),
            cipher_suites: Vec::new(),
            tls_min_version: DEFAULT_TLS_MIN_VERSION.to_string(),
            tls_max_version: String::new(),
            self_signed_cert_validity_years: 1,
            auth_token: "simple".into(),
            auth_token_ttl_secs: 300,
            bcrypt_cost: 10,
            force_new_cluster: false,
            discovery: Discovery::default(),
            initial_cluster_given: false,
        }
    }
}

fn default_data_dir(name: &str) -> PathBuf {
    PathBuf::from(format!("{}.ballast", name))
}

/// What the command line asked for.
#[derive(Debug, Clone, PartialEq)]
#[allow(clippy::large_enum_variant)]
pub enum Parsed {
    Run {
        config: Config,
        warnings: Vec<String>,
    },
    Version,
    Help,
}

/// A configuration error; the caller prints `message` and exits with
/// `exit_code` (2 for flag syntax/value errors, 1 for validation errors).
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    pub message: String,
    pub exit_code: i32,
    /// Set where etcd refuses with a fatal log line rather than a plain message: the line's
    /// field (name, value) beside `message`.
    pub fatal_field: Option<(&'static str, String)>,
}

impl ConfigError {
    /// Flag-parsing failure (Go's flag package; etcd exits 2).
    fn usage(message: String) -> Self {
        ConfigError {
            message,
            exit_code: 2,
            fatal_field: None,
        }
    }
    /// Validation failure after parsing (etcd logs and exits 1).
    fn invalid(message: String) -> Self {
        ConfigError {
            message,
            exit_code: 1,
            fatal_field: None,
        }
    }
    /// etcd's `lg.Fatal(message, field)`: a fatal log line, exit 1.
    fn fatal(message: &str, field: (&'static str, String)) -> Self {
        ConfigError {
            message: message.to_string(),
            exit_code: 1,
            fatal_field: Some(field),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {}

/// Parses `args` (without argv[0]) and `env` the way etcd 3.5 does.
pub fn parse(args: &[String], env: &[(String, String)]) -> Result<Parsed, ConfigError> {
    let mut flags = match scan_command_line(args)? {
        Scan::Help => return Ok(Parsed::Help),
        Scan::Flags(flags) => flags,
    };
    if let Some(arg) = &flags.positional {
        return Err(ConfigError::invalid(format!(
            "'{}' is not a valid flag",
            arg
        )));
    }
    if flags
        .get("version")
        .is_some_and(|v| values::parse_go_bool(v) == Ok(true))
    {
        return Ok(Parsed::Version);
    }
    let mut warnings = Vec::new();
    let config_file = flags
        .get("config-file")
        .filter(|f| !f.is_empty())
        .map(str::to_string)
        .or_else(|| env_get(env, "ETCD_CONFIG_FILE").map(str::to_string));
    let config = match config_file {
        Some(path) => {
            apply_env(&mut flags, env, BALLAST_ONLY, false, &mut warnings)?;
            warn_flags_ignored_by_config_file(&flags, &mut warnings);
            file::config_from_file(&path, &flags, &mut warnings)?
        }
        None => {
            let all: Vec<&str> = FLAGS.iter().map(|s| s.name).collect();
            apply_env(&mut flags, env, &all, true, &mut warnings)?;
            warn_unrecognized_env(env, &mut warnings);
            warn_unimplemented(&flags, &mut warnings);
            config_from_flags(&flags)?
        }
    };
    validate::validate(&config)?;
    Ok(Parsed::Run { config, warnings })
}

/// Applies the data/wal dir and initial-cluster rules shared by both modes.
fn finish_paths_and_cluster(
    c: &mut Config,
    data_dir: Option<&str>,
    wal_dir: Option<&str>,
    initial_cluster: Option<&str>,
) -> Result<(), ConfigError> {
    c.data_dir = match data_dir {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => default_data_dir(&c.name),
    };
    c.wal_dir = wal_dir.filter(|w| !w.is_empty()).map(PathBuf::from);
    c.initial_cluster_given = initial_cluster.is_some();
    c.initial_cluster = match initial_cluster {
        Some(s) => parse_initial_cluster(s)?,
        None => c
            .initial_advertise_peer_urls
            .iter()
            .map(|u| (c.name.clone(), u.clone()))
            .collect(),
    };
    Ok(())
}

fn quota_from_i64(v: i64) -> u64 {
    // etcd: negative quota disables the quota check entirely.
    if v < 0 {
        u64::MAX
    } else {
        v as u64
    }
}

/// `name=url,name=url` (etcd `types.NewURLsMap`), kept in the given order.
fn parse_initial_cluster(s: &str) -> Result<Vec<(String, String)>, ConfigError> {
    let mut out = Vec::new();
    for entry in s.split(',').filter(|e| !e.is_empty()) {
        let (name, address) = entry.split_once('=').unwrap_or((entry, ""));
        let address = address.trim();
        url::check_url(address).map_err(|e| {
            ConfigError::invalid(format!("error setting up initial cluster: {}", e))
        })?;
        out.push((name.to_string(), address.to_string()));
    }
    Ok(out)
}

/// The major.minor of `--compat-version`, etcd's cluster version without its patch (`3.5`;
/// a part missing reads as 3.5's).
pub fn major_minor(compat_version: &str) -> String {
    let mut parts = compat_version.split('.');
    format!("{}.{}", parts.next().unwrap_or("3"), parts.next().unwrap_or("5"))
}

/// etcd's NewAuthStore: a cost outside bcrypt's 4..=31 is the default, 10.
pub fn bcrypt_cost(cost: u64) -> u32 {
    if (4..=31).contains(&cost) {
        cost as u32
    } else {
        10
    }
}

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
//! does), but only those in the "implemented" column of [`FLAGS`] affect
//! [`Config`]; the others produce one warning each so that operators notice.
//! Post-parse validation (bind addresses must be IPs, election timeout vs
//! heartbeat, ...) mirrors `embed.Config.Validate` and exits with code 1.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;

use serde::Deserialize;

/// Version ballast reports to clients as its etcd cluster/server version.
pub const DEFAULT_COMPAT_VERSION: &str = "3.5.23";
pub const DEFAULT_WAL_SEGMENT_BYTES: u64 = 64 << 20;
const MIN_WAL_SEGMENT_BYTES: u64 = 64 << 10;

const DEFAULT_CLIENT_URL: &str = "http://localhost:2379";
const DEFAULT_PEER_URL: &str = "http://localhost:2380";
/// etcd's `maxElectionMs`.
const MAX_ELECTION_MS: u64 = 50000;

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
            auto_compaction_mode: "periodic".to_string(),
            auto_compaction_retention: "0".to_string(),
            logger: "zap".to_string(),
            log_level: "info".to_string(),
            listen_metrics_urls: Vec::new(),
            compat_version: DEFAULT_COMPAT_VERSION.to_string(),
            shards: 0,
            wal_segment_bytes: DEFAULT_WAL_SEGMENT_BYTES,
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
}

impl ConfigError {
    /// Flag-parsing failure (Go's flag package; etcd exits 2).
    fn usage(message: String) -> Self {
        ConfigError {
            message,
            exit_code: 2,
        }
    }
    /// Validation failure after parsing (etcd logs and exits 1).
    fn invalid(message: String) -> Self {
        ConfigError {
            message,
            exit_code: 1,
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {}

// ---------------------------------------------------------------------------
// The flag table
// ---------------------------------------------------------------------------

/// How a flag's value is parsed (and therefore which values etcd rejects).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Ty {
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
struct Spec {
    name: &'static str,
    ty: Ty,
    implemented: bool,
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

const CLUSTER_STATES: &[&str] = &["new", "existing"];

/// Every flag of etcd v3.5 (`newConfig()` in server/etcdmain/config.go) and
/// the v3.4-only ones still found in the wild, plus ballast's own.
static FLAGS: &[Spec] = &[
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
    ours("initial-advertise-peer-urls", Ty::Urls, DEFAULT_PEER_URL, "List of this member's peer URLs to advertise to the rest of the cluster."),
    ours("initial-cluster", Ty::Str, "default=http://localhost:2380", "Initial cluster configuration for bootstrapping."),
    ours("initial-cluster-state", Ty::Choice(CLUSTER_STATES), "new", "Initial cluster state ('new' or 'existing')."),
    ours("initial-cluster-token", Ty::Str, "etcd-cluster", "Initial cluster token for the etcd cluster during bootstrap."),
    ours("advertise-client-urls", Ty::Urls, DEFAULT_CLIENT_URL, "List of this member's client URLs to advertise to the public."),
    ours("logger", Ty::Str, "zap", "Currently only supports 'zap' for structured logging."),
    ours("log-level", Ty::Str, "info", "Configures log level. Only supports debug, info, warn, error, panic, or fatal."),
    ours("auto-compaction-retention", Ty::Str, "0", "Auto compaction retention length. 0 means disable auto compaction."),
    ours("auto-compaction-mode", Ty::Str, "periodic", "Interpret 'auto-compaction-retention' one of: periodic|revision."),
    ours("version", Ty::Bool, "false", "Print the version and exit."),
    ours("compat-version", Ty::Str, DEFAULT_COMPAT_VERSION, "(ballast) etcd version reported to clients."),
    ours("shards", Ty::Uint, "0", "(ballast) Number of shards; 0 means the usable cores less the 2 front-end threads, at least 1."),
    ours("wal-segment-bytes", Ty::Uint, "67108864", "(ballast) Size of a preallocated WAL segment file."),
    // etcd 3.5 flags ballast accepts but does not implement yet
    etcd("listen-client-http-urls", Ty::Urls),
    etcd("max-snapshots", Ty::Uint),
    etcd("max-wals", Ty::Uint),
    etcd("initial-election-tick-advance", Ty::Bool),
    etcd("backend-bbolt-freelist-type", Ty::Str),
    etcd("backend-batch-interval", Ty::Duration),
    etcd("backend-batch-limit", Ty::Int),
    etcd("grpc-keepalive-min-time", Ty::Duration),
    etcd("grpc-keepalive-interval", Ty::Duration),
    etcd("grpc-keepalive-timeout", Ty::Duration),
    etcd("socket-reuse-port", Ty::Bool),
    etcd("socket-reuse-address", Ty::Bool),
    etcd("max-concurrent-streams", Ty::U32),
    etcd("raft-read-timeout", Ty::Duration),
    etcd("raft-write-timeout", Ty::Duration),
    etcd("discovery", Ty::Str),
    etcd("discovery-fallback", Ty::Choice(&["exit", "proxy"])),
    etcd("discovery-proxy", Ty::Str),
    etcd("discovery-srv", Ty::Str),
    etcd("discovery-srv-name", Ty::Str),
    etcd("strict-reconfig-check", Ty::Bool),
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
    etcd("cert-file", Ty::Str),
    etcd("key-file", Ty::Str),
    etcd("client-cert-file", Ty::Str),
    etcd("client-key-file", Ty::Str),
    etcd("client-cert-auth", Ty::Bool),
    etcd("client-crl-file", Ty::Str),
    etcd("client-cert-allowed-hostname", Ty::Strings),
    etcd("trusted-ca-file", Ty::Str),
    etcd("auto-tls", Ty::Bool),
    etcd("peer-cert-file", Ty::Str),
    etcd("peer-key-file", Ty::Str),
    etcd("peer-client-cert-file", Ty::Str),
    etcd("peer-client-key-file", Ty::Str),
    etcd("peer-client-cert-auth", Ty::Bool),
    etcd("peer-trusted-ca-file", Ty::Str),
    etcd("peer-auto-tls", Ty::Bool),
    etcd("self-signed-cert-validity", Ty::Uint),
    etcd("peer-crl-file", Ty::Str),
    etcd("peer-cert-allowed-cn", Ty::Strings),
    etcd("peer-cert-allowed-hostname", Ty::Strings),
    etcd("cipher-suites", Ty::Strings),
    etcd("experimental-peer-skip-client-san-verification", Ty::Bool),
    etcd("tls-min-version", Ty::Str),
    etcd("tls-max-version", Ty::Str),
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
    etcd("auth-token", Ty::Str),
    etcd("bcrypt-cost", Ty::Uint),
    etcd("auth-token-ttl", Ty::Uint),
    etcd("enable-grpc-gateway", Ty::Bool),
    etcd("experimental-initial-corrupt-check", Ty::Bool),
    etcd("experimental-corrupt-check-time", Ty::Duration),
    etcd("experimental-compact-hash-check-enabled", Ty::Bool),
    etcd("experimental-compact-hash-check-time", Ty::Duration),
    etcd("experimental-enable-lease-checkpoint", Ty::Bool),
    etcd("experimental-enable-lease-checkpoint-persist", Ty::Bool),
    etcd("experimental-compaction-batch-limit", Ty::Int),
    etcd("experimental-compaction-sleep-interval", Ty::Duration),
    etcd("experimental-watch-progress-notify-interval", Ty::Duration),
    etcd("experimental-downgrade-check-time", Ty::Duration),
    etcd("experimental-warning-apply-duration", Ty::Duration),
    etcd("experimental-memory-mlock", Ty::Bool),
    etcd("experimental-txn-mode-write-with-shared-buffer", Ty::Bool),
    etcd("experimental-stop-grpc-service-on-defrag", Ty::Bool),
    etcd("experimental-bootstrap-defrag-threshold-megabytes", Ty::Uint),
    etcd("experimental-snapshot-catchup-entries", Ty::Uint),
    etcd("unsafe-no-fsync", Ty::Bool),
    etcd("force-new-cluster", Ty::Bool),
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
const BALLAST_ONLY: &[&str] = &["compat-version", "shards", "wal-segment-bytes"];

fn lookup(name: &str) -> Option<&'static Spec> {
    FLAGS.iter().find(|s| s.name == name)
}

fn env_key(flag: &str) -> String {
    format!("ETCD_{}", flag.to_uppercase().replace('-', "_"))
}

// ---------------------------------------------------------------------------
// Entry points
// ---------------------------------------------------------------------------

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
        .is_some_and(|v| parse_go_bool(v) == Ok(true))
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
            apply_env(&mut flags, env, BALLAST_ONLY, &mut warnings)?;
            warn_flags_ignored_by_config_file(&flags, &mut warnings);
            config_from_file(&path, &flags, &mut warnings)?
        }
        None => {
            let all: Vec<&str> = FLAGS.iter().map(|s| s.name).collect();
            apply_env(&mut flags, env, &all, &mut warnings)?;
            warn_unrecognized_env(env, &mut warnings);
            warn_unimplemented(&flags, &mut warnings);
            config_from_flags(&flags)?
        }
    };
    validate(&config)?;
    Ok(Parsed::Run { config, warnings })
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

// ---------------------------------------------------------------------------
// Command line scanning (Go `flag.FlagSet.Parse`)
// ---------------------------------------------------------------------------

/// Raw flag values, as strings, in the order they were first set.
#[derive(Default)]
struct FlagValues {
    values: HashMap<&'static str, String>,
    order: Vec<&'static str>,
    from_env: HashSet<&'static str>,
    positional: Option<String>,
}

impl FlagValues {
    fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }
    fn is_set(&self, name: &str) -> bool {
        self.values.contains_key(name)
    }
    /// Checks `value` like the flag's Go `Value.Set` would, then stores it.
    fn set(&mut self, spec: &'static Spec, value: &str) -> Result<(), String> {
        check_value(spec.ty, value)?;
        if self.values.insert(spec.name, value.to_string()).is_none() {
            self.order.push(spec.name);
        }
        Ok(())
    }
}

enum Scan {
    Help,
    Flags(FlagValues),
}

fn scan_command_line(args: &[String]) -> Result<Scan, ConfigError> {
    let mut flags = FlagValues::default();
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        if arg == "--" {
            break;
        }
        if arg.len() < 2 || !arg.starts_with('-') {
            flags.positional = Some(arg.clone());
            return Ok(Scan::Flags(flags));
        }
        let body = arg.strip_prefix("--").unwrap_or(&arg[1..]);
        if body.is_empty() || body.starts_with('-') || body.starts_with('=') {
            return Err(ConfigError::usage(format!("bad flag syntax: {}", arg)));
        }
        let (name, inline) = match body.find('=') {
            Some(eq) => (&body[..eq], Some(&body[eq + 1..])),
            None => (body, None),
        };
        let spec = match lookup(name) {
            Some(spec) => spec,
            None if name == "help" || name == "h" => return Ok(Scan::Help),
            None => {
                return Err(ConfigError::usage(format!(
                    "flag provided but not defined: -{}",
                    name
                )))
            }
        };
        if matches!(spec.ty, Ty::Bool | Ty::Ignored) {
            let value = inline.unwrap_or("true");
            flags.set(spec, value).map_err(|why| {
                ConfigError::usage(format!(
                    "invalid boolean value {:?} for -{}: {}",
                    value, name, why
                ))
            })?;
            continue;
        }
        let value = match inline {
            Some(v) => v.to_string(),
            None if i < args.len() => {
                i += 1;
                args[i - 1].clone()
            }
            None => {
                return Err(ConfigError::usage(format!(
                    "flag needs an argument: -{}",
                    name
                )))
            }
        };
        flags.set(spec, &value).map_err(|why| {
            ConfigError::usage(format!(
                "invalid value {:?} for flag -{}: {}",
                value, name, why
            ))
        })?;
    }
    if i < args.len() {
        flags.positional = Some(args[i].clone());
    }
    Ok(Scan::Flags(flags))
}

// ---------------------------------------------------------------------------
// Environment (etcd `flags.SetFlagsFromEnv`)
// ---------------------------------------------------------------------------

fn env_get<'a>(env: &'a [(String, String)], key: &str) -> Option<&'a str> {
    env.iter()
        .rev()
        .find(|(k, v)| k == key && !v.is_empty())
        .map(|(_, v)| v.as_str())
}

/// Fills flags in `names` that the command line did not set from
/// `ETCD_<NAME>`. etcd refuses to start when both are given; ballast lets
/// the command line win and warns.
fn apply_env(
    flags: &mut FlagValues,
    env: &[(String, String)],
    names: &[&str],
    warnings: &mut Vec<String>,
) -> Result<(), ConfigError> {
    let mut sorted: Vec<&'static Spec> = FLAGS.iter().filter(|s| names.contains(&s.name)).collect();
    sorted.sort_by_key(|s| s.name); // Go's VisitAll order
    for spec in sorted {
        if spec.name == "config-file" || spec.name == "version" {
            continue; // read separately / never settable from env (ETCD_VERSION)
        }
        let key = env_key(spec.name);
        let Some(value) = env_get(env, &key) else {
            continue;
        };
        if flags.is_set(spec.name) {
            warnings.push(format!(
                "environment variable {} is shadowed by flag --{}; using the command-line value",
                key, spec.name
            ));
            continue;
        }
        flags.set(spec, value).map_err(|why| {
            ConfigError::invalid(format!("invalid value {:?} for {}: {}", value, key, why))
        })?;
        flags.from_env.insert(spec.name);
    }
    Ok(())
}

fn warn_unrecognized_env(env: &[(String, String)], warnings: &mut Vec<String>) {
    let known: HashSet<String> = FLAGS.iter().map(|s| env_key(s.name)).collect();
    for (k, v) in env {
        if k.starts_with("ETCD_") && !known.contains(k) {
            warnings.push(format!("unrecognized environment variable {}={}", k, v));
        }
    }
}

fn unimplemented_warning(flags: &FlagValues, name: &str) -> String {
    if flags.from_env.contains(name) {
        format!(
            "environment variable {} (flag --{}) is not implemented by ballast yet; ignored",
            env_key(name),
            name
        )
    } else {
        format!("flag --{} is not implemented by ballast yet; ignored", name)
    }
}

fn warn_unimplemented(flags: &FlagValues, warnings: &mut Vec<String>) {
    for name in &flags.order {
        if !lookup(name).is_some_and(|s| s.implemented) {
            warnings.push(unimplemented_warning(flags, name));
        }
    }
}

fn warn_flags_ignored_by_config_file(flags: &FlagValues, warnings: &mut Vec<String>) {
    for name in &flags.order {
        let spec = lookup(name).expect("only known flags are stored");
        if !spec.implemented {
            warnings.push(unimplemented_warning(flags, name));
        } else if !BALLAST_ONLY.contains(name) && *name != "config-file" && *name != "version" {
            warnings.push(format!(
                "flag --{} is ignored because a config file is given (as etcd does)",
                name
            ));
        }
    }
}

// ---------------------------------------------------------------------------
// Building a Config from flags
// ---------------------------------------------------------------------------

fn config_from_flags(flags: &FlagValues) -> Result<Config, ConfigError> {
    let mut c = Config::default();
    let str_flag = |name: &str, target: &mut String| {
        if let Some(v) = flags.get(name) {
            *target = v.to_string();
        }
    };
    str_flag("name", &mut c.name);
    str_flag("initial-cluster-state", &mut c.initial_cluster_state);
    str_flag("initial-cluster-token", &mut c.initial_cluster_token);
    str_flag("auto-compaction-mode", &mut c.auto_compaction_mode);
    str_flag(
        "auto-compaction-retention",
        &mut c.auto_compaction_retention,
    );
    str_flag("logger", &mut c.logger);
    str_flag("log-level", &mut c.log_level);
    str_flag("compat-version", &mut c.compat_version);
    // Values were type-checked when set, so these parses cannot fail.
    let uint_flag = |name: &str, target: &mut u64| {
        if let Some(v) = flags.get(name) {
            *target = parse_go_uint(v).unwrap_or(*target);
        }
    };
    uint_flag("snapshot-count", &mut c.snapshot_count);
    uint_flag("heartbeat-interval", &mut c.heartbeat_interval_ms);
    uint_flag("election-timeout", &mut c.election_timeout_ms);
    uint_flag("max-request-bytes", &mut c.max_request_bytes);
    uint_flag("max-txn-ops", &mut c.max_txn_ops);
    if let Some(v) = flags.get("quota-backend-bytes") {
        c.quota_backend_bytes = quota_from_i64(parse_go_int(v).unwrap_or(0));
    }
    if let Some(v) = flags.get("shards") {
        c.shards = parse_go_uint(v).unwrap_or(0) as usize;
    }
    if let Some(v) = flags.get("wal-segment-bytes") {
        c.wal_segment_bytes = parse_go_uint(v).unwrap_or(DEFAULT_WAL_SEGMENT_BYTES).max(MIN_WAL_SEGMENT_BYTES);
    }
    let urls_flag = |name: &str, target: &mut Vec<String>| {
        if let Some(v) = flags.get(name) {
            *target = parse_urls(v).unwrap_or_default();
        }
    };
    urls_flag("listen-client-urls", &mut c.listen_client_urls);
    urls_flag("advertise-client-urls", &mut c.advertise_client_urls);
    urls_flag("listen-peer-urls", &mut c.listen_peer_urls);
    urls_flag(
        "initial-advertise-peer-urls",
        &mut c.initial_advertise_peer_urls,
    );
    urls_flag("listen-metrics-urls", &mut c.listen_metrics_urls);
    if flags.is_set("listen-client-urls") && !flags.is_set("advertise-client-urls") {
        return Err(ConfigError::invalid(
            "--advertise-client-urls is required when --listen-client-urls is set explicitly"
                .to_string(),
        ));
    }
    finish_paths_and_cluster(
        &mut c,
        flags.get("data-dir"),
        flags.get("wal-dir"),
        flags.get("initial-cluster"),
    )?;
    Ok(c)
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
        let (name, url) = entry.split_once('=').unwrap_or((entry, ""));
        let url = url.trim();
        check_url(url).map_err(|e| {
            ConfigError::invalid(format!("error setting up initial cluster: {}", e))
        })?;
        out.push((name.to_string(), url.to_string()));
    }
    Ok(out)
}

// ---------------------------------------------------------------------------
// Config file (etcd `embed.ConfigFromFile`)
// ---------------------------------------------------------------------------

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
    auto_compaction_mode: Option<String>,
    auto_compaction_retention: Option<String>,
    logger: Option<String>,
    log_level: Option<String>,
    listen_metrics_urls: Option<String>,
    compat_version: Option<String>,
    shards: Option<usize>,
}

const FILE_KEYS: &[&str] = &[
    "name",
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
    "auto-compaction-mode",
    "auto-compaction-retention",
    "logger",
    "log-level",
    "listen-metrics-urls",
    "compat-version",
    "shards",
];

fn config_from_file(
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
    // ballast-only flags still apply from the command line / environment.
    if let Some(v) = flags.get("compat-version") {
        c.compat_version = v.to_string();
    }
    if let Some(v) = flags.get("shards") {
        c.shards = parse_go_uint(v).unwrap_or(0) as usize;
    }
    if let Some(v) = flags.get("wal-segment-bytes") {
        c.wal_segment_bytes = parse_go_uint(v).unwrap_or(DEFAULT_WAL_SEGMENT_BYTES).max(MIN_WAL_SEGMENT_BYTES);
    }
    let initial_cluster = f.initial_cluster.filter(|s| !s.is_empty());
    finish_paths_and_cluster(
        &mut c,
        f.data_dir.as_deref(),
        f.wal_dir.as_deref(),
        initial_cluster.as_deref(),
    )?;
    Ok(c)
}

// ---------------------------------------------------------------------------
// Validation (etcd `embed.Config.Validate`)
// ---------------------------------------------------------------------------

fn validate(c: &Config) -> Result<(), ConfigError> {
    let err = |m: String| Err(ConfigError::invalid(m));
    match c.logger.as_str() {
        "zap" => {}
        "capnslog" => return err("--logger=capnslog is removed in v3.5".to_string()),
        other => return err(format!("unknown logger option {:?}", other)),
    }
    check_log_level(&c.log_level)?;
    for urls in [
        &c.listen_peer_urls,
        &c.listen_client_urls,
        &c.listen_metrics_urls,
    ] {
        check_bind_urls(urls).or_else(err)?;
    }
    for (flag, urls) in [
        (
            "initial-advertise-peer-urls",
            &c.initial_advertise_peer_urls,
        ),
        ("advertise-client-urls", &c.advertise_client_urls),
    ] {
        if let Err(e) = check_host_urls(urls) {
            return err(format!(
                "--{} {:?} must be \"host:port\" ({})",
                flag,
                urls.join(","),
                e
            ));
        }
    }
    if !CLUSTER_STATES.contains(&c.initial_cluster_state.as_str()) {
        return err(format!(
            "unexpected clusterState {:?}",
            c.initial_cluster_state
        ));
    }
    let (tick, election) = (c.heartbeat_interval_ms, c.election_timeout_ms);
    if tick == 0 {
        return err(format!(
            "--heartbeat-interval must be >0 (set to {}ms)",
            tick
        ));
    }
    if election == 0 {
        return err(format!(
            "--election-timeout must be >0 (set to {}ms)",
            election
        ));
    }
    if tick.saturating_mul(5) > election {
        return err(format!(
            "--election-timeout[{}ms] should be at least as 5 times as --heartbeat-interval[{}ms]",
            election, tick
        ));
    }
    if election > MAX_ELECTION_MS {
        return err(format!(
            "--election-timeout[{}ms] is too long, and should be set less than {}ms",
            election, MAX_ELECTION_MS
        ));
    }
    match c.auto_compaction_mode.as_str() {
        "" | "periodic" | "revision" => Ok(()),
        other => err(format!("unknown auto-compaction-mode {:?}", other)),
    }
}

/// zap's level names. etcd 3.5 panics (exit 2) on anything else.
fn check_log_level(level: &str) -> Result<(), ConfigError> {
    const LEVELS: &[&str] = &[
        "", "debug", "info", "warn", "error", "dpanic", "panic", "fatal",
    ];
    let ok = LEVELS
        .iter()
        .any(|l| *l == level || l.to_uppercase() == level);
    if ok {
        Ok(())
    } else {
        Err(ConfigError::usage(format!(
            "invalid value {:?} for --log-level: unrecognized level: {:?}",
            level, level
        )))
    }
}

fn check_bind_urls(urls: &[String]) -> Result<(), String> {
    for u in urls {
        let parts = split_url(u)?;
        if parts.scheme == "unix" || parts.scheme == "unixs" {
            continue;
        }
        let (host, _) = split_host_port(parts.host)?;
        if host != "localhost" && host.parse::<IpAddr>().is_err() {
            return Err(format!("expected IP in URL for binding ({})", u));
        }
    }
    Ok(())
}

fn check_host_urls(urls: &[String]) -> Result<(), String> {
    for u in urls {
        let (host, _) = split_host_port(split_url(u)?.host)?;
        if host.is_empty() {
            return Err(format!("unexpected empty host ({})", u));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Value parsing, mirroring Go's strconv/time/net/url and etcd's flag types
// ---------------------------------------------------------------------------

/// Checks a raw value the way the flag's Go `Value.Set` would; the `Err`
/// text is what Go puts after `invalid value "..." for flag -x: `.
fn check_value(ty: Ty, value: &str) -> Result<(), String> {
    match ty {
        Ty::Bool => parse_go_bool(value).map(drop),
        Ty::Str | Ty::Strings | Ty::Ignored => Ok(()),
        Ty::Uint => parse_go_uint(value).map(drop),
        Ty::Int => parse_go_int(value).map(drop),
        Ty::U32 => value
            .parse::<u32>()
            .map(drop)
            .map_err(|_| format!("strconv.ParseUint: parsing {:?}: invalid syntax", value)),
        Ty::Duration => check_go_duration(value),
        Ty::Urls => parse_urls(value).map(drop),
        Ty::UrlsOrStar if value == "*" => Ok(()),
        Ty::UrlsOrStar => parse_urls(value).map(drop),
        Ty::Choice(valid) if valid.contains(&value) => Ok(()),
        Ty::Choice(_) => Err("invalid value".to_string()),
        Ty::Choices(valid) => match value.split(',').find(|v| !valid.contains(v)) {
            Some(bad) => Err(format!("invalid value {:?}", bad)),
            None => Ok(()),
        },
    }
}

fn parse_go_bool(s: &str) -> Result<bool, String> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err("parse error".to_string()),
    }
}

/// `strconv.ParseUint(s, 0, 64)`: decimal, `0x`, `0o`, `0b` or leading-`0`
/// octal, underscores allowed only after a base prefix.
fn parse_go_uint(s: &str) -> Result<u64, String> {
    let parse_error = || "parse error".to_string();
    let lower = s.to_ascii_lowercase();
    let (radix, digits) = if let Some(d) = lower.strip_prefix("0x") {
        (16, d)
    } else if let Some(d) = lower.strip_prefix("0b") {
        (2, d)
    } else if let Some(d) = lower.strip_prefix("0o") {
        (8, d)
    } else if lower.len() > 1 && lower.starts_with('0') {
        (8, &lower[1..])
    } else {
        (10, lower.as_str())
    };
    if radix == 10 && digits.contains('_') {
        return Err(parse_error());
    }
    let digits: String = digits.chars().filter(|&c| c != '_').collect();
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return Err(parse_error());
    }
    u64::from_str_radix(&digits, radix).map_err(|_| "value out of range".to_string())
}

/// `strconv.ParseInt(s, 0, 64)`.
fn parse_go_int(s: &str) -> Result<i64, String> {
    let (negative, rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let magnitude = parse_go_uint(rest)?;
    let range = || "value out of range".to_string();
    if negative {
        if magnitude > i64::MAX as u64 + 1 {
            return Err(range());
        }
        Ok((magnitude as i128).wrapping_neg() as i64)
    } else {
        i64::try_from(magnitude).map_err(|_| range())
    }
}

/// Accepts what Go's `time.ParseDuration` accepts, e.g. `1h30m`, `-1.5s`.
fn check_go_duration(s: &str) -> Result<(), String> {
    let invalid = || format!("time: invalid duration {:?}", s);
    let body = s.strip_prefix(['-', '+']).unwrap_or(s);
    if body == "0" {
        return Ok(());
    }
    if body.is_empty() {
        return Err(invalid());
    }
    let mut rest = body;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(rest.len());
        let number = &rest[..num_len];
        if number.is_empty() || number == "." || number.matches('.').count() > 1 {
            return Err(invalid());
        }
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        if unit.is_empty() {
            return Err(format!("time: missing unit in duration {:?}", s));
        }
        if !["ns", "us", "µs", "μs", "ms", "s", "m", "h"].contains(&unit) {
            return Err(format!("time: unknown unit {:?} in duration {:?}", unit, s));
        }
        rest = &rest[unit_len..];
    }
    Ok(())
}

/// Comma-separated URLs as etcd's `types.NewURLs`: validated, then sorted
/// and de-duplicated like `flags.UniqueURLs`.
fn parse_urls(s: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for u in s.split(',') {
        let u = u.trim();
        check_url(u)?;
        out.push(u.to_string());
    }
    out.sort();
    out.dedup();
    Ok(out)
}

struct UrlParts<'a> {
    scheme: String,
    host: &'a str,
    path: &'a str,
}

/// A small subset of Go's `url.Parse`, enough for etcd's URL checks.
fn split_url(u: &str) -> Result<UrlParts<'_>, String> {
    if u.starts_with(':') {
        return Err(format!("parse {:?}: missing protocol scheme", u));
    }
    let scheme_end = u.find(':').filter(|&i| {
        let s = &u[..i];
        s.starts_with(|c: char| c.is_ascii_alphabetic())
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
    });
    let Some(scheme_end) = scheme_end else {
        let first_segment = u.split('/').next().unwrap_or("");
        if first_segment.contains(':') {
            return Err(format!(
                "parse {:?}: first path segment in URL cannot contain colon",
                u
            ));
        }
        return Ok(UrlParts {
            scheme: String::new(),
            host: "",
            path: u,
        });
    };
    let scheme = u[..scheme_end].to_ascii_lowercase();
    let rest = &u[scheme_end + 1..];
    let rest = rest.split(['?', '#']).next().unwrap_or("");
    let Some(after) = rest.strip_prefix("//") else {
        return Ok(UrlParts {
            scheme,
            host: "",
            path: "",
        });
    };
    let auth_end = after.find('/').unwrap_or(after.len());
    let authority = &after[..auth_end];
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    Ok(UrlParts {
        scheme,
        host,
        path: &after[auth_end..],
    })
}

/// etcd's `types.NewURLs` check for one URL.
fn check_url(u: &str) -> Result<(), String> {
    let parts = split_url(u)?;
    match parts.scheme.as_str() {
        "http" | "https" => {
            if split_host_port(parts.host).is_err() {
                return Err(format!(
                    "URL address does not have the form \"host:port\": {}",
                    u
                ));
            }
            if !parts.path.is_empty() {
                return Err(format!("URL must not contain a path: {}", u));
            }
            Ok(())
        }
        "unix" | "unixs" => Ok(()),
        _ => Err(format!(
            "URL scheme must be http, https, unix, or unixs: {}",
            u
        )),
    }
}

/// Go's `net.SplitHostPort`.
fn split_host_port(hostport: &str) -> Result<(&str, &str), String> {
    let fail = |why: &str| Err(format!("address {}: {}", hostport, why));
    if let Some(inner) = hostport.strip_prefix('[') {
        let Some(close) = inner.find(']') else {
            return fail("missing ']' in address");
        };
        return match inner[close + 1..].strip_prefix(':') {
            Some(port) => Ok((&inner[..close], port)),
            None => fail("missing port in address"),
        };
    }
    match hostport.rsplit_once(':') {
        None => fail("missing port in address"),
        Some((host, _)) if host.contains(':') => fail("too many colons in address"),
        Some((host, port)) => Ok((host, port)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    fn env(e: &[(&str, &str)]) -> Vec<(String, String)> {
        e.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn run(a: &[&str], e: &[(&str, &str)]) -> (Config, Vec<String>) {
        match parse(&args(a), &env(e)) {
            Ok(Parsed::Run { config, warnings }) => (config, warnings),
            other => panic!("expected Run, got {:?}", other),
        }
    }

    fn fail(a: &[&str], e: &[(&str, &str)]) -> ConfigError {
        match parse(&args(a), &env(e)) {
            Err(err) => err,
            Ok(other) => panic!("expected error, got {:?}", other),
        }
    }

    fn temp_file(name: &str, contents: &str) -> String {
        let dir = std::env::temp_dir().join(format!("ballast-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, contents).unwrap();
        path.to_string_lossy().into_owned()
    }

    #[test]
    fn defaults() {
        let (c, w) = run(&[], &[]);
        assert_eq!(c, Config::default());
        assert!(w.is_empty());
        assert_eq!(c.name, "default");
        assert_eq!(c.data_dir, PathBuf::from("default.ballast"));
        assert_eq!(c.wal_dir, None);
        assert_eq!(c.listen_client_urls, vec!["http://localhost:2379"]);
        assert_eq!(c.advertise_client_urls, vec!["http://localhost:2379"]);
        assert_eq!(c.listen_peer_urls, vec!["http://localhost:2380"]);
        assert_eq!(c.initial_advertise_peer_urls, vec!["http://localhost:2380"]);
        assert_eq!(
            c.initial_cluster,
            vec![("default".to_string(), "http://localhost:2380".to_string())]
        );
        assert_eq!(c.initial_cluster_state, "new");
        assert_eq!(c.initial_cluster_token, "etcd-cluster");
        assert_eq!(
            (
                c.snapshot_count,
                c.heartbeat_interval_ms,
                c.election_timeout_ms
            ),
            (100000, 100, 1000)
        );
        assert_eq!(
            (c.quota_backend_bytes, c.max_request_bytes, c.max_txn_ops),
            (0, 1572864, 128)
        );
        assert_eq!(
            (
                c.auto_compaction_mode.as_str(),
                c.auto_compaction_retention.as_str()
            ),
            ("periodic", "0")
        );
        assert_eq!((c.logger.as_str(), c.log_level.as_str()), ("zap", "info"));
        assert!(c.listen_metrics_urls.is_empty());
        assert_eq!(c.compat_version, DEFAULT_COMPAT_VERSION);
        assert_eq!(c.shards, 0);
    }

    #[test]
    fn name_drives_data_dir_and_initial_cluster() {
        let (c, _) = run(&["--name", "infra1"], &[]);
        assert_eq!(c.data_dir, PathBuf::from("infra1.ballast"));
        assert_eq!(
            c.initial_cluster,
            vec![("infra1".to_string(), "http://localhost:2380".to_string())]
        );
        let (c, _) = run(
            &[
                "--name=n1",
                "--initial-advertise-peer-urls=http://127.0.0.1:12380",
            ],
            &[],
        );
        assert_eq!(
            c.initial_cluster,
            vec![("n1".to_string(), "http://127.0.0.1:12380".to_string())]
        );
        let (c, _) = run(
            &[
                "--initial-cluster",
                "a=http://10.0.0.1:2380,b=http://10.0.0.2:2380",
            ],
            &[],
        );
        assert_eq!(c.initial_cluster.len(), 2);
        assert_eq!(
            c.initial_cluster[1],
            ("b".to_string(), "http://10.0.0.2:2380".to_string())
        );
    }

    #[test]
    fn all_syntax_forms() {
        for form in [
            vec!["--name", "x"],
            vec!["--name=x"],
            vec!["-name", "x"],
            vec!["-name=x"],
        ] {
            let (c, _) = run(&form, &[]);
            assert_eq!(c.name, "x", "{:?}", form);
        }
        // a value may itself start with '-'
        let (c, _) = run(&["--name", "-x"], &[]);
        assert_eq!(c.name, "-x");
        // empty value via '='
        let (c, _) = run(&["--wal-dir=", "--data-dir", "/d"], &[]);
        assert_eq!((c.wal_dir, c.data_dir), (None, PathBuf::from("/d")));
        // last one wins
        let (c, _) = run(&["--name", "a", "--name", "b"], &[]);
        assert_eq!(c.name, "b");
    }

    #[test]
    fn booleans_and_version_help() {
        assert_eq!(parse(&args(&["--version"]), &[]).unwrap(), Parsed::Version);
        assert_eq!(parse(&args(&["-version"]), &[]).unwrap(), Parsed::Version);
        assert_eq!(
            parse(&args(&["--version=true"]), &[]).unwrap(),
            Parsed::Version
        );
        assert!(matches!(
            parse(&args(&["--version=false"]), &[]).unwrap(),
            Parsed::Run { .. }
        ));
        for h in ["-h", "--help", "-help", "--h"] {
            assert_eq!(
                parse(&args(&["--name", "x", h]), &[]).unwrap(),
                Parsed::Help
            );
        }
        let e = fail(&["--version=x"], &[]);
        assert_eq!(
            e.message,
            "invalid boolean value \"x\" for -version: parse error"
        );
        assert_eq!(e.exit_code, 2);
        // bare boolean does not consume the next argument
        let (_, w) = run(&["--enable-v2", "--name", "n"], &[]);
        assert_eq!(
            w,
            vec!["flag --enable-v2 is not implemented by ballast yet; ignored"]
        );
        let e = fail(&["--enable-v2", "false"], &[]);
        assert_eq!(
            (e.message.as_str(), e.exit_code),
            ("'false' is not a valid flag", 1)
        );
    }

    #[test]
    fn double_dash_and_positional() {
        let (c, _) = run(&["--name", "a", "--"], &[]);
        assert_eq!(c.name, "a");
        let e = fail(&["--name", "a", "--", "--name", "b"], &[]);
        assert_eq!(e.message, "'--name' is not a valid flag");
        let e = fail(&["foo"], &[]);
        assert_eq!(
            (e.message.as_str(), e.exit_code),
            ("'foo' is not a valid flag", 1)
        );
        let e = fail(&["-"], &[]);
        assert_eq!(e.message, "'-' is not a valid flag");
        // positional args are reported even with --version, like etcd
        assert_eq!(
            fail(&["--version", "x"], &[]).message,
            "'x' is not a valid flag"
        );
    }

    #[test]
    fn unknown_and_malformed_flags() {
        for (a, msg) in [
            (vec!["--foo"], "flag provided but not defined: -foo"),
            (vec!["-foo=1"], "flag provided but not defined: -foo"),
            (vec!["---x"], "bad flag syntax: ---x"),
            (vec!["-=x"], "bad flag syntax: -=x"),
            (vec!["--name"], "flag needs an argument: -name"),
        ] {
            let e = fail(&a, &[]);
            assert_eq!((e.message.as_str(), e.exit_code), (msg, 2), "{:?}", a);
        }
    }

    #[test]
    fn bad_values() {
        for (a, msg) in [
            (vec!["--snapshot-count", "abc"], "invalid value \"abc\" for flag -snapshot-count: parse error"),
            (vec!["--snapshot-count=-1"], "invalid value \"-1\" for flag -snapshot-count: parse error"),
            (vec!["--max-txn-ops", "99999999999999999999"], "invalid value \"99999999999999999999\" for flag -max-txn-ops: value out of range"),
            (vec!["--initial-cluster-state", "bad"], "invalid value \"bad\" for flag -initial-cluster-state: invalid value"),
            (vec!["--listen-client-urls", "foo"], "invalid value \"foo\" for flag -listen-client-urls: URL scheme must be http, https, unix, or unixs: foo"),
            (vec!["--listen-peer-urls", "http://foo"], "invalid value \"http://foo\" for flag -listen-peer-urls: URL address does not have the form \"host:port\": http://foo"),
            (vec!["--advertise-client-urls", "http://127.0.0.1:2379/"], "invalid value \"http://127.0.0.1:2379/\" for flag -advertise-client-urls: URL must not contain a path: http://127.0.0.1:2379/"),
            (vec!["--grpc-keepalive-timeout", "5"], "invalid value \"5\" for flag -grpc-keepalive-timeout: time: missing unit in duration \"5\""),
            (vec!["--proxy", "maybe"], "invalid value \"maybe\" for flag -proxy: invalid value"),
        ] {
            let e = fail(&a, &[]);
            assert_eq!((e.message.as_str(), e.exit_code), (msg, 2), "{:?}", a);
        }
    }

    #[test]
    fn validation_errors_exit_1() {
        for (a, msg) in [
            (vec!["--listen-client-urls", "http://127.0.0.1:2379"], "--advertise-client-urls is required when --listen-client-urls is set explicitly"),
            (vec!["--listen-client-urls", "http://foo:2379", "--advertise-client-urls", "http://foo:2379"], "expected IP in URL for binding (http://foo:2379)"),
            (vec!["--heartbeat-interval", "500"], "--election-timeout[1000ms] should be at least as 5 times as --heartbeat-interval[500ms]"),
            (vec!["--heartbeat-interval", "0"], "--heartbeat-interval must be >0 (set to 0ms)"),
            (vec!["--election-timeout", "60000"], "--election-timeout[60000ms] is too long, and should be set less than 50000ms"),
            (vec!["--auto-compaction-mode", "foo"], "unknown auto-compaction-mode \"foo\""),
            (vec!["--logger", "capnslog"], "--logger=capnslog is removed in v3.5"),
            (vec!["--initial-cluster", "a=foo"], "error setting up initial cluster: URL scheme must be http, https, unix, or unixs: foo"),
            (vec!["--advertise-client-urls", "http://:2379"], "--advertise-client-urls \"http://:2379\" must be \"host:port\" (unexpected empty host (http://:2379))"),
        ] {
            let e = fail(&a, &[]);
            assert_eq!((e.message.as_str(), e.exit_code), (msg, 1), "{:?}", a);
        }
        let e = fail(&["--log-level", "loud"], &[]);
        assert_eq!(e.exit_code, 2);
        assert!(e.message.contains("--log-level"));
    }

    #[test]
    fn implemented_values() {
        let (c, w) = run(
            &[
                "--listen-client-urls=http://127.0.0.1:2379,http://127.0.0.1:2379,unix://sock:0",
                "--advertise-client-urls=http://127.0.0.1:2379",
                "--quota-backend-bytes=8589934592",
                "--max-request-bytes",
                "0x100",
                "--auto-compaction-mode=revision",
                "--auto-compaction-retention=1000",
                "--log-level=debug",
                "--wal-dir=/w",
                "--listen-metrics-urls=http://127.0.0.1:2381",
                "--compat-version",
                "3.5.0",
                "--shards",
                "4",
                "--initial-cluster-state=existing",
            ],
            &[],
        );
        assert!(w.is_empty(), "{:?}", w);
        assert_eq!(
            c.listen_client_urls,
            vec!["http://127.0.0.1:2379", "unix://sock:0"]
        );
        assert_eq!(c.quota_backend_bytes, 8 << 30);
        assert_eq!(c.max_request_bytes, 256);
        assert_eq!(c.auto_compaction_mode, "revision");
        assert_eq!(c.log_level, "debug");
        assert_eq!(c.wal_dir, Some(PathBuf::from("/w")));
        assert_eq!(c.listen_metrics_urls, vec!["http://127.0.0.1:2381"]);
        assert_eq!((c.compat_version.as_str(), c.shards), ("3.5.0", 4));
        assert_eq!(c.initial_cluster_state, "existing");
        let (c, _) = run(&["--quota-backend-bytes=-1"], &[]);
        assert_eq!(c.quota_backend_bytes, u64::MAX);
    }

    #[test]
    fn unimplemented_flags_warn_once_each() {
        let (_, w) = run(
            &[
                "--max-wals",
                "3",
                "--enable-pprof",
                "--debug",
                "--cors=*",
                "--log-package-levels=x",
                "--max-wals=4",
                "--grpc-keepalive-timeout=20s",
                "--v",
            ],
            &[],
        );
        assert_eq!(
            w,
            vec![
                "flag --max-wals is not implemented by ballast yet; ignored",
                "flag --enable-pprof is not implemented by ballast yet; ignored",
                "flag --debug is not implemented by ballast yet; ignored",
                "flag --cors is not implemented by ballast yet; ignored",
                "flag --log-package-levels is not implemented by ballast yet; ignored",
                "flag --grpc-keepalive-timeout is not implemented by ballast yet; ignored",
                "flag --v is not implemented by ballast yet; ignored",
            ]
        );
        let (_, w) = run(&[], &[("ETCD_AUTO_TLS", "true")]);
        assert_eq!(
            w,
            vec!["environment variable ETCD_AUTO_TLS (flag --auto-tls) is not implemented by ballast yet; ignored"]
        );
    }

    #[test]
    fn env_fallback_and_precedence() {
        let e = [
            ("ETCD_DATA_DIR", "/var/lib/x"),
            ("ETCD_NAME", "envname"),
            ("ETCD_SNAPSHOT_COUNT", "5"),
        ];
        let (c, w) = run(&["--name", "cli"], &e);
        assert_eq!(c.name, "cli");
        assert_eq!(c.data_dir, PathBuf::from("/var/lib/x"));
        assert_eq!(c.snapshot_count, 5);
        assert_eq!(w.len(), 1);
        assert!(
            w[0].contains("ETCD_NAME is shadowed by flag --name"),
            "{:?}",
            w
        );
        // empty env values are ignored
        let (c, _) = run(&[], &[("ETCD_NAME", "")]);
        assert_eq!(c.name, "default");
        // env values are checked like flag values, but exit 1 (etcd returns them from parse)
        let e = fail(&[], &[("ETCD_SNAPSHOT_COUNT", "abc")]);
        assert_eq!(
            (e.message.as_str(), e.exit_code),
            (
                "invalid value \"abc\" for ETCD_SNAPSHOT_COUNT: parse error",
                1
            )
        );
        // env-set listen-client-urls also requires advertise-client-urls
        let e = fail(&[], &[("ETCD_LISTEN_CLIENT_URLS", "http://127.0.0.1:1")]);
        assert_eq!(e.exit_code, 1);
        // ETCD_VERSION is never honoured; unknown ETCD_ vars warn
        let (_, w) = run(
            &[],
            &[
                ("ETCD_VERSION", "true"),
                ("ETCD_BOGUS", "1"),
                ("ETCDCTL_API", "3"),
            ],
        );
        assert_eq!(w, vec!["unrecognized environment variable ETCD_BOGUS=1"]);
        let (c, _) = run(&[], &[("ETCD_SHARDS", "3")]);
        assert_eq!(c.shards, 3);
    }

    #[test]
    fn config_file() {
        let path = temp_file(
            "ok.yml",
            "name: infra2\nlisten-client-urls: http://127.0.0.1:3379,http://127.0.0.1:3380\n\
             advertise-client-urls: http://127.0.0.1:3379\nsnapshot-count: 77\n\
             heartbeat-interval: 50\nelection-timeout: 500\nquota-backend-bytes: 1024\n\
             initial-cluster-state: existing\nunknown-key: whatever\nclient-transport-security:\n  cert-file: x\n",
        );
        let (c, w) = run(
            &[
                "--config-file",
                &path,
                "--name",
                "ignored",
                "--shards",
                "2",
                "--enable-pprof",
            ],
            &[("ETCD_SNAPSHOT_COUNT", "9"), ("ETCD_DATA_DIR", "/ignored")],
        );
        assert_eq!(c.name, "infra2");
        assert_eq!(c.data_dir, PathBuf::from("infra2.ballast"));
        assert_eq!(
            c.listen_client_urls,
            vec!["http://127.0.0.1:3379", "http://127.0.0.1:3380"]
        );
        assert_eq!(c.snapshot_count, 77);
        assert_eq!((c.heartbeat_interval_ms, c.election_timeout_ms), (50, 500));
        assert_eq!(c.quota_backend_bytes, 1024);
        assert_eq!(c.initial_cluster_state, "existing");
        assert_eq!(
            c.initial_cluster,
            vec![("infra2".to_string(), "http://localhost:2380".to_string())]
        );
        assert_eq!(c.shards, 2, "ballast-only flags still apply");
        assert_eq!(
            w,
            vec![
                "flag --name is ignored because a config file is given (as etcd does)",
                "flag --enable-pprof is not implemented by ballast yet; ignored",
                "config file key \"unknown-key\" is not implemented by ballast yet; ignored",
                "config file key \"client-transport-security\" is not implemented by ballast yet; ignored",
            ]
        );
        // via environment
        let (c, _) = run(&[], &[("ETCD_CONFIG_FILE", &path)]);
        assert_eq!(c.name, "infra2");
        // empty file = defaults
        let empty = temp_file("empty.yml", "");
        assert_eq!(run(&["--config-file", &empty], &[]).0, Config::default());
    }

    #[test]
    fn config_file_errors() {
        let e = fail(&["--config-file", "/nonexistent/ballast.yml"], &[]);
        assert_eq!(e.exit_code, 1);
        assert!(
            e.message.starts_with("open /nonexistent/ballast.yml: "),
            "{}",
            e.message
        );
        let bad_type = temp_file("badtype.yml", "snapshot-count: abc\n");
        let e = fail(&["--config-file", &bad_type], &[]);
        assert_eq!(e.exit_code, 1);
        assert!(e.message.contains("snapshot-count"), "{}", e.message);
        let bad_url = temp_file("badurl.yml", "listen-client-urls: foo\n");
        let e = fail(&["--config-file", &bad_url], &[]);
        assert_eq!(
            (e.message.as_str(), e.exit_code),
            ("unexpected error setting up listen-client-urls: URL scheme must be http, https, unix, or unixs: foo", 1)
        );
        let bad_state = temp_file("badstate.yml", "initial-cluster-state: bogus\n");
        assert_eq!(
            fail(&["--config-file", &bad_state], &[]).message,
            "unexpected clusterState \"bogus\""
        );
    }

    #[test]
    fn go_number_and_duration_parsing() {
        assert_eq!(parse_go_uint("0x10"), Ok(16));
        assert_eq!(parse_go_uint("010"), Ok(8));
        assert_eq!(parse_go_uint("0b11"), Ok(3));
        assert_eq!(parse_go_uint("0x_1_0"), Ok(16));
        assert!(parse_go_uint("1_0").is_err());
        assert!(parse_go_uint("+1").is_err());
        assert_eq!(parse_go_int("-0x10"), Ok(-16));
        assert_eq!(parse_go_int("-9223372036854775808"), Ok(i64::MIN));
        for ok in ["0", "1h30m", "-1.5s", "100ms", "2µs", ".5s"] {
            assert!(check_go_duration(ok).is_ok(), "{}", ok);
        }
        for bad in ["", "5", "abc", "5x", "s"] {
            assert!(check_go_duration(bad).is_err(), "{}", bad);
        }
    }

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

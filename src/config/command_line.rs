//! The command line, as Go's `flag.FlagSet.Parse` reads it, and the
//! [`Config`] the flags make (etcd's `configFromCmdLine`).

use std::collections::{HashMap, HashSet};

use super::flags::{env_key, lookup, Spec, Ty, BALLAST_ONLY};
use super::url::parse_urls;
use super::values::{check_value, parse_go_int, parse_go_uint};
use super::{finish_paths_and_cluster, quota_from_i64, Config, TlsFlags, ConfigError, DEFAULT_WAL_SEGMENT_BYTES, MIN_WAL_SEGMENT_BYTES};

/// Raw flag values, as strings, in the order they were first set.
#[derive(Default)]
pub(super) struct FlagValues {
    values: HashMap<&'static str, String>,
    order: Vec<&'static str>,
    pub(super) from_env: HashSet<&'static str>,
    pub(super) positional: Option<String>,
}

impl FlagValues {
    pub(super) fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }
    pub(super) fn is_set(&self, name: &str) -> bool {
        self.values.contains_key(name)
    }
    /// Checks `value` like the flag's Go `Value.Set` would, then stores it.
    pub(super) fn set(&mut self, spec: &'static Spec, value: &str) -> Result<(), String> {
        check_value(spec.ty, value)?;
        if self.values.insert(spec.name, value.to_string()).is_none() {
            self.order.push(spec.name);
        }
        Ok(())
    }
}

/// What the command line holds: a request for help, or flags to go on with.
pub(super) enum Scan {
    Help,
    Flags(FlagValues),
}

/// Go's `flag.FlagSet.Parse`: syntax errors exit 2; stops at `--` or the first non-flag.
pub(super) fn scan_command_line(args: &[String]) -> Result<Scan, ConfigError> {
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

/// One warning for each flag given that ballast accepts but does not implement.
pub(super) fn warn_unimplemented(flags: &FlagValues, warnings: &mut Vec<String>) {
    for name in &flags.order {
        if !lookup(name).is_some_and(|s| s.implemented) {
            warnings.push(unimplemented_warning(flags, name));
        }
    }
}

/// With a config file, etcd ignores every flag; ballast says so for each one given.
pub(super) fn warn_flags_ignored_by_config_file(flags: &FlagValues, warnings: &mut Vec<String>) {
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

/// The [`Config`] the command line and environment make (no config file).
pub(super) fn config_from_flags(flags: &FlagValues) -> Result<Config, ConfigError> {
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
    if let Some(v) = flags.get("max-concurrent-streams") {
        c.max_concurrent_streams = v.parse().unwrap_or(u32::MAX);
    }
    if let Some(v) = flags.get("quota-backend-bytes") {
        c.quota_backend_bytes = quota_from_i64(parse_go_int(v).unwrap_or(0));
    }
    apply_ballast_flags(&mut c, flags);
    let bool_flag = |name: &str| flags.get(name).is_some_and(|v| super::values::parse_go_bool(v).unwrap_or(false));
    c.lease_checkpoint = bool_flag("experimental-enable-lease-checkpoint");
    c.force_new_cluster = bool_flag("force-new-cluster");
    str_flag("discovery", &mut c.discovery.url);
    str_flag("discovery-proxy", &mut c.discovery.proxy);
    str_flag("discovery-srv", &mut c.discovery.srv);
    str_flag("discovery-srv-name", &mut c.discovery.srv_name);
    c.lease_checkpoint_persist = bool_flag("experimental-enable-lease-checkpoint-persist");
    if let Some(v) = flags.get("strict-reconfig-check") {
        c.strict_reconfig_check = super::values::parse_go_bool(v).unwrap_or(true);
    }
    if let Some(v) = flags.get("auth-token") {
        c.auth_token = v.to_string();
    }
    if let Some(v) = flags.get("auth-token-ttl") {
        c.auth_token_ttl_secs = parse_go_uint(v).unwrap_or(300);
    }
    if let Some(v) = flags.get("bcrypt-cost") {
        c.bcrypt_cost = super::bcrypt_cost(parse_go_uint(v).unwrap_or(10));
    }
    for (name, target) in [("grpc-keepalive-interval", &mut c.grpc_keepalive_interval), ("grpc-keepalive-timeout", &mut c.grpc_keepalive_timeout)] {
        if let Some(v) = flags.get(name) {
            *target = super::duration::parse(v).ok().and_then(|d| d.non_negative()).unwrap_or_default();
        }
    }
    if let Some(v) = flags.get("experimental-warning-apply-duration") {
        c.warning_apply_duration = super::duration::parse(v).ok().map(|d| d.non_negative().unwrap_or_default()).unwrap_or(c.warning_apply_duration);
    }
    if let Some(v) = flags.get("experimental-watch-progress-notify-interval") {
        c.watch_progress_notify_interval = super::watch_progress_interval(super::duration::parse(v).ok().and_then(|d| d.non_negative()));
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
    tls_flags(flags, &mut c);
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

/// The TLS flags of both sides, and those they share (etcd's `transport.TLSInfo` fields).
fn tls_flags(flags: &FlagValues, c: &mut Config) {
    let text = |name: &str| flags.get(name).unwrap_or("").to_string();
    let on = |name: &str| flags.get(name).is_some_and(|v| super::values::parse_go_bool(v).unwrap_or(false));
    let list = |name: &str| flags.get(name).map(super::values::split_strings).unwrap_or_default();
    c.client_tls = TlsFlags {
        cert_file: text("cert-file"),
        key_file: text("key-file"),
        trusted_ca_file: text("trusted-ca-file"),
        client_cert_auth: on("client-cert-auth"),
        crl_file: text("client-crl-file"),
        auto_tls: on("auto-tls"),
        allowed_cns: Vec::new(),
        allowed_hostnames: list("client-cert-allowed-hostname"),
    };
    c.peer_tls = TlsFlags {
        cert_file: text("peer-cert-file"),
        key_file: text("peer-key-file"),
        trusted_ca_file: text("peer-trusted-ca-file"),
        client_cert_auth: on("peer-client-cert-auth"),
        crl_file: text("peer-crl-file"),
        auto_tls: on("peer-auto-tls"),
        allowed_cns: list("peer-cert-allowed-cn"),
        allowed_hostnames: list("peer-cert-allowed-hostname"),
    };
    c.cipher_suites = list("cipher-suites");
    if let Some(v) = flags.get("tls-min-version") {
        c.tls_min_version = v.to_string();
    }
    if let Some(v) = flags.get("tls-max-version") {
        c.tls_max_version = v.to_string();
    }
    if let Some(v) = flags.get("self-signed-cert-validity") {
        c.self_signed_cert_validity_years = parse_go_uint(v).unwrap_or(1);
    }
}

/// Sets ballast's own flags ([`BALLAST_ONLY`]), which apply with a config file too.
pub(super) fn apply_ballast_flags(c: &mut Config, flags: &FlagValues) {
    // Type-checked when set, so these parses cannot fail.
    if let Some(v) = flags.get("compat-version") {
        c.compat_version = v.to_string();
    }
    if let Some(v) = flags.get("shards") {
        c.shards = parse_go_uint(v).unwrap_or(0) as usize;
    }
    if let Some(v) = flags.get("wal-segment-bytes") {
        c.wal_segment_bytes = parse_go_uint(v).unwrap_or(DEFAULT_WAL_SEGMENT_BYTES).max(MIN_WAL_SEGMENT_BYTES);
    }
}

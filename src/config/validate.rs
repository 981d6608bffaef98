//! Checks after parsing, as etcd's `embed.Config.Validate`, with etcd's
//! error strings: bind addresses must be IPs, advertised URLs need a host,
//! the election timeout must be 5 heartbeats to 50 s, and so on.

use std::net::IpAddr;

use super::flags::CLUSTER_STATES;
use super::url::{split_host_port, split_url};
use super::{Config, ConfigError};

/// etcd's `maxElectionMs`.
const MAX_ELECTION_MS: u64 = 50000;

/// etcd's `embed.Config.Validate`; a failure exits 1 (the log level, like etcd's panic, 2).
pub(super) fn validate(c: &Config) -> Result<(), ConfigError> {
    let err = |m: String| Err(ConfigError::invalid(m));
    match c.logger.as_str() {
        "zap" => {}
        "capnslog" => return err("--logger=capnslog is removed in v3.5".to_string()),
        other => return err(format!("unknown logger option {:?}", other)),
    }
    check_log_level(&c.log_level)?;
    if c.lease_checkpoint_persist && !c.lease_checkpoint {
        return err("setting experimental-enable-lease-checkpoint-persist requires experimental-enable-lease-checkpoint".to_string());
    }
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
    // etcd's ErrConflictBootstrapFlags (etcd drops the default --initial-cluster when a
    // discovery flag is given, so only an explicit one conflicts).
    let set = [!c.discovery.url.is_empty(), c.initial_cluster_given, !c.discovery.srv.is_empty()];
    if set.iter().filter(|&&s| s).count() > 1 {
        return err("multiple discovery or bootstrap flags are set. Choose one of \"initial-cluster\", \"discovery\" or \"discovery-srv\"".to_string());
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
        "" | "periodic" | "revision" => {}
        other => return err(format!("unknown auto-compaction-mode {:?}", other)),
    }
    check_tls_versions(c).or_else(err)
}

/// A --tls-min-version / --tls-max-version value (etcd's `tlsutil.GetTLSVersion`): 0 is "the
/// library's choice", otherwise the protocol version number (TLS 1.2 = 0x0303).
pub fn tls_version(name: &str) -> Result<u16, String> {
    match name {
        "" => Ok(0),
        "TLS1.2" => Ok(0x0303),
        "TLS1.3" => Ok(0x0304),
        other => Err(format!("unexpected TLS version {:?} (must be one of: TLS1.2, TLS1.3)", other)),
    }
}

/// etcd 3.5's checks of the TLS versions: min <= max, and no --cipher-suites when only TLS 1.3
/// is allowed (TLS 1.3 suites cannot be chosen; with TLS 1.2 allowed too, the list only
/// applies to TLS 1.2 handshakes).
fn check_tls_versions(c: &Config) -> Result<(), String> {
    let min = tls_version(&c.tls_min_version)?;
    let max = tls_version(&c.tls_max_version)?;
    if max != 0 && min > max {
        return Err(format!("min version ({}) is greater than max version ({})", c.tls_min_version, c.tls_max_version));
    }
    if min == 0x0304 && !c.cipher_suites.is_empty() {
        return Err("cipher suites cannot be configured when only TLS1.3 is enabled".to_string());
    }
    Ok(())
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

//! `--discovery-srv` / `--discovery-srv-name` (etcd's GetDNSClusterNames and srv.GetCluster):
//! the initial cluster from the SRV records `_etcd-server-ssl<-name>._tcp.<domain>` (https
//! peers) and `_etcd-server<-name>._tcp.<domain>` (http peers), combined. Each target is
//! resolved; the one at this member's advertised peer address takes this member's name, the
//! others are named "0", "1", … in order (they publish their real names once they serve, as
//! in etcd). Peer URLs keep the target's host name, so every member computes the same ids.

use crate::config::Config;
use crate::log;

/// `name=url` pairs, as `--initial-cluster` would give them, or etcd's error.
pub fn initial_cluster(cfg: &Config) -> Result<Vec<(String, String)>, String> {
    let suffix = if cfg.discovery.srv_name.is_empty() { String::new() } else { format!("-{}", cfg.discovery.srv_name) };
    let mut found = Vec::new();
    let mut errors = Vec::new();
    for (scheme, service) in [("https", format!("etcd-server-ssl{suffix}")), ("http", format!("etcd-server{suffix}"))] {
        let result = get_cluster(scheme, &service, cfg);
        let error = result.as_ref().err().cloned().unwrap_or_default();
        if let Ok(parts) = result {
            found.extend(parts);
        } else {
            errors.push(error.clone());
        }
        let cluster: Vec<String> = found.iter().map(|(n, u)| format!("{n}={u}")).collect();
        log::info(
            &format!("get cluster for {service} SRV"),
            &[("service-scheme", scheme.into()), ("service-name", service.clone()), ("server-name", cfg.name.clone()), ("discovery-srv", cfg.discovery.srv.clone()), ("found-cluster", cluster.join(",")), ("error", error)],
        );
    }
    if found.is_empty() {
        return Err(errors.join("; "));
    }
    if !errors.is_empty() {
        log::warn("failed to resolve during SRV discovery", &[("error", errors.join("; "))]);
    }
    for (name, url) in &found {
        log::info("got bootstrap from DNS for etcd-server", &[("node", format!("{name}={url}"))]);
    }
    if !found.iter().any(|(n, _)| *n == cfg.name) {
        return Err(format!("cannot find local etcd member {:?} in SRV records", cfg.name));
    }
    Ok(found)
}

/// etcd's srv.GetCluster for one service: its members' `name=scheme://target:port`.
fn get_cluster(scheme: &str, service: &str, cfg: &Config) -> Result<Vec<(String, String)>, String> {
    // This member's advertised peer addresses, resolved.
    let mut own = Vec::new();
    for url in &cfg.initial_advertise_peer_urls {
        let (host, port) = host_port(url)?;
        own.push((super::dns::resolve_tcp(&host, port)?, url.clone()));
    }
    let wrap = |e: String| format!("error querying DNS SRV records for _{service} {e}");
    let records = super::dns::lookup_srv(service, "tcp", &cfg.discovery.srv).map_err(wrap)?;
    let mut parts = Vec::new();
    let mut temp_name = 0;
    let mut last_error = String::new();
    for srv in records {
        let short_host = srv.target.trim_end_matches('.');
        let addr = match super::dns::resolve_tcp(short_host, srv.port) {
            Ok(a) => a,
            Err(e) => {
                last_error = e;
                continue;
            }
        };
        let url_host = if short_host.contains(':') { format!("[{short_host}]:{}", srv.port) } else { format!("{short_host}:{}", srv.port) };
        let mine = own.iter().find(|(a, _)| *a == addr).map(|(_, u)| u.clone());
        match mine {
            Some(url) if !url.starts_with(&format!("{scheme}://")) => {
                last_error = format!("bootstrap at {scheme}://{url_host} from DNS for {service} has scheme mismatch with expected peer {url}");
            }
            Some(_) => parts.push((cfg.name.clone(), format!("{scheme}://{url_host}"))),
            None => {
                parts.push((temp_name.to_string(), format!("{scheme}://{url_host}")));
                temp_name += 1;
            }
        }
    }
    if parts.is_empty() {
        return Err(wrap(last_error));
    }
    Ok(parts)
}

/// A URL's host and port (80/443 by scheme when none is given).
pub fn host_port(url: &str) -> Result<(String, u16), String> {
    let (scheme, rest) = url.split_once("://").ok_or_else(|| format!("parse {url:?}: missing protocol scheme"))?;
    let authority = rest.split('/').next().unwrap_or_default();
    let default_port = if scheme == "https" { 443 } else { 80 };
    match authority.rsplit_once(':') {
        Some((host, port)) if !port.contains(']') => Ok((host.to_string(), port.parse().map_err(|_| format!("invalid port in {url:?}"))?)),
        _ => Ok((authority.to_string(), default_port)),
    }
}

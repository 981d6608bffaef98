//! `--discovery <url>`: etcd 3.5's v2 discovery protocol (server/etcdserver/api/v2discovery),
//! spoken to the v2 keys API of the discovery service (an etcd with `--enable-v2`, or
//! discovery.etcd.io's). The URL's path is the token directory:
//!
//! 1. `GET <token>/_config/size` (absent: `discovery: size key not found`; not a number:
//!    `discovery: size key is bad`), then `GET <token>`: the members registered, in creation
//!    order; when `size` of them registered before this one: `discovery: cluster is full`;
//! 2. `PUT <token>/<member id hex>?prevExist=false` with this member's `name=peer-url` list
//!    (taken: `discovery: found duplicate id`);
//! 3. the list again, then watch `<token>` (recursive, from the list's `X-Etcd-Index`) until
//!    `size` members registered;
//! 4. their lists joined are the `--initial-cluster`; fewer names than `size`:
//!    `discovery: found duplicate name`.
//!
//! A service that cannot be reached is asked again after 2^n seconds (at most 256), as etcd.
//! The member ids are computed with the discovery URL as the cluster token (etcd's
//! PeerURLsMapAndToken). Only `http://` URLs (no TLS client here), and no `--discovery-proxy`.

use std::io::{Read, Write};
use std::time::Duration;

use crate::config::Config;
use crate::log;

/// etcd's discovery errors.
const SIZE_NOT_FOUND: &str = "discovery: size key not found";
const BAD_SIZE_KEY: &str = "discovery: size key is bad";
const DUPLICATE_ID: &str = "discovery: found duplicate id";
const DUPLICATE_NAME: &str = "discovery: found duplicate name";
const FULL_CLUSTER: &str = "discovery: cluster is full";
const INVALID_URL: &str = "discovery: invalid URL";
const BAD_ENDPOINT: &str = "discovery: bad discovery endpoint";
/// etcd's maxExpoentialRetries: backoff 2^n s, n at most 8.
const MAX_BACKOFF_EXPONENT: u32 = 8;
/// etcd's client.DefaultRequestTimeout, for everything but the watch.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// etcd's v2 errorCode for a key that exists already (`prevExist=false`) and one not found.
const ERROR_NODE_EXIST: i64 = 105;
const ERROR_KEY_NOT_FOUND: i64 = 100;

/// A failure: the service answered no (`Fatal`), or could not be reached (`Unreachable`:
/// asked again after a backoff, as etcd's ClusterError).
enum Failure {
    Fatal(String),
    Unreachable(String),
}

/// A registered member: its key's last segment, its value, its creation index.
#[derive(Clone)]
struct Node {
    base: String,
    value: String,
    created: u64,
}

struct Discovery {
    /// `host:port` of the service.
    authority: String,
    url: String,
    /// The token directory's path (`/v2/keys/discovery/<token>`).
    token: String,
    self_id: String,
    retries: u32,
}

/// Registers this member under `cfg.discovery.url` and waits for the others: the
/// `--initial-cluster` they make. Errors as etcd's: `failed to join discovery cluster (…)`.
pub fn join_cluster(cfg: &Config) -> Result<Vec<(String, String)>, String> {
    if !cfg.discovery.proxy.is_empty() {
        return Err("--discovery-proxy is not supported by ballast: the discovery service must be reachable directly".into());
    }
    let id = crate::cluster::member_id(&cfg.initial_advertise_peer_urls, &cfg.discovery.url);
    let mut own: Vec<String> = cfg.initial_advertise_peer_urls.iter().map(|u| format!("{}={u}", cfg.name)).collect();
    own.sort();
    let mut d = Discovery::new(&cfg.discovery.url, id).map_err(|e| wrap(&e))?;
    let joined = d.join(&own.join(","));
    joined.map_err(|e| {
        explain(cfg, &e);
        wrap(&e)
    })
}

fn wrap(e: &str) -> String {
    format!("failed to join discovery cluster ({e})")
}

/// etcdmain's warnings for a failed discovery.
fn explain(cfg: &Config, e: &str) {
    let token = ("discovery-token", cfg.discovery.url.clone());
    match e {
        DUPLICATE_ID => {
            log::warn("member has been registered with discovery service", &[("name", cfg.name.clone()), token, ("error", e.into())]);
            log::warn("but could not find valid cluster configuration", &[("data-dir", cfg.data_dir.display().to_string())]);
            log::warn("check data dir if previous bootstrap succeeded", &[]);
            log::warn("or use a new discovery token if previous bootstrap failed", &[]);
        }
        DUPLICATE_NAME => {
            log::warn("member with duplicated name has already been registered", &[token, ("error", e.into())]);
            log::warn("cURL the discovery token URL for details", &[]);
            log::warn("do not reuse discovery token; generate a new one to bootstrap a cluster", &[]);
        }
        _ => {
            log::warn("failed to bootstrap; discovery token was already used", &[token, ("error", wrap(e))]);
            log::warn("do not reuse discovery token; generate a new one to bootstrap a cluster", &[]);
        }
    }
}

impl Discovery {
    fn new(url: &str, id: u64) -> Result<Discovery, String> {
        let rest = url.strip_prefix("http://").ok_or_else(|| format!("discovery URL {url:?}: ballast speaks only http:// to a discovery service"))?;
        let (authority, path) = rest.split_once('/').map_or((rest, ""), |(a, p)| (a, p));
        if authority.is_empty() {
            return Err(INVALID_URL.into());
        }
        Ok(Discovery { authority: authority.to_string(), url: format!("http://{authority}"), token: format!("/{}", path.trim_end_matches('/')), self_id: format!("{id:x}"), retries: 0 })
    }

    fn join(&mut self, own: &str) -> Result<Vec<(String, String)>, String> {
        self.check_retrying()?;
        self.create_self(own)?;
        let (nodes, size, index) = self.check_retrying()?;
        let all = self.wait_nodes(nodes, size, index)?;
        nodes_to_cluster(&all, size)
    }

    /// checkCluster, asked again while the service cannot be reached.
    fn check_retrying(&mut self) -> Result<(Vec<Node>, u64, u64), String> {
        loop {
            match self.check() {
                Ok(found) => return Ok(found),
                Err(Failure::Fatal(e)) => return Err(e),
                Err(Failure::Unreachable(e)) => {
                    log::warn("failed to get from discovery server", &[("discovery-url", self.url.clone()), ("error", e)]);
                    self.backoff("cluster status check");
                }
            }
        }
    }

    /// etcd's checkCluster: the registered members (in creation order), the size, the index.
    fn check(&self) -> Result<(Vec<Node>, u64, u64), Failure> {
        let (status, _, body) = self.request("GET", &format!("{}/_config/size", self.token), None, Some(REQUEST_TIMEOUT))?;
        if status == 404 && body["errorCode"].as_i64() == Some(ERROR_KEY_NOT_FOUND) {
            return Err(Failure::Fatal(SIZE_NOT_FOUND.into()));
        }
        let size: u64 = body["node"]["value"].as_str().and_then(|v| v.parse().ok()).ok_or_else(|| Failure::Fatal(BAD_SIZE_KEY.into()))?;
        let (_, index, body) = self.request("GET", &self.token, None, Some(REQUEST_TIMEOUT))?;
        let mut nodes: Vec<Node> = body["node"]["nodes"].as_array().map(|a| a.iter().filter_map(node).filter(|n| n.base != "_config").collect()).unwrap_or_default();
        nodes.sort_by_key(|n| n.created);
        for (i, n) in nodes.iter().enumerate() {
            if n.base == self.self_id {
                break;
            }
            if i as u64 >= size.saturating_sub(1) {
                return Err(Failure::Fatal(FULL_CLUSTER.into()));
            }
        }
        Ok((nodes, size, index))
    }

    fn create_self(&self, own: &str) -> Result<(), String> {
        let path = format!("{}/{}?prevExist=false", self.token, self.self_id);
        match self.request("PUT", &path, Some(own), Some(REQUEST_TIMEOUT)) {
            Ok((_, _, body)) if body["errorCode"].as_i64() == Some(ERROR_NODE_EXIST) => Err(DUPLICATE_ID.into()),
            Ok((status, _, body)) if !(200..300).contains(&status) => Err(body["message"].as_str().unwrap_or("discovery: registration refused").to_string()),
            Ok(_) => Ok(()),
            Err(Failure::Fatal(e) | Failure::Unreachable(e)) => Err(e),
        }
    }

    /// etcd's waitNodes: watches the token until `size` members registered.
    fn wait_nodes(&mut self, mut nodes: Vec<Node>, mut size: u64, mut index: u64) -> Result<Vec<Node>, String> {
        loop {
            nodes.truncate(size as usize);
            for n in &nodes {
                let (msg, key) = if n.base == self.self_id { ("found self from discovery server", "self") } else { ("found peer from discovery server", "peer") };
                log::info(msg, &[("discovery-url", self.url.clone()), (key, n.base.clone())]);
            }
            let mut all = nodes.clone();
            let mut after = index;
            while (all.len() as u64) < size {
                log::info(
                    "found peers from discovery server; waiting for more",
                    &[("discovery-url", self.url.clone()), ("found-peers", all.len().to_string()), ("needed-peers", (size - all.len() as u64).to_string())],
                );
                let path = format!("{}?wait=true&recursive=true&waitIndex={}", self.token, after + 1);
                match self.request("GET", &path, None, None) {
                    Ok((_, _, body)) => {
                        let Some(n) = node(&body["node"]) else { return Err(BAD_ENDPOINT.into()) };
                        after = body["node"]["modifiedIndex"].as_u64().unwrap_or(after + 1);
                        log::info("found peer from discovery server", &[("discovery-url", self.url.clone()), ("peer", n.base.clone())]);
                        all.push(n);
                    }
                    Err(Failure::Fatal(e)) => return Err(e),
                    Err(Failure::Unreachable(e)) => {
                        log::warn("error while waiting for peers", &[("discovery-url", self.url.clone()), ("error", e)]);
                        self.backoff("waiting for other nodes");
                        (nodes, size, index) = self.check_retrying()?;
                        break;
                    }
                }
            }
            if all.len() as u64 >= size {
                log::info("found all needed peers from discovery server", &[("discovery-url", self.url.clone()), ("found-peers", all.len().to_string())]);
                return Ok(all);
            }
        }
    }

    fn backoff(&mut self, reason: &str) {
        self.retries += 1;
        let wait = Duration::from_secs(1 << self.retries.min(MAX_BACKOFF_EXPONENT));
        log::info("retry connecting to discovery service", &[("url", self.url.clone()), ("reason", reason.into()), ("backoff", format!("{wait:?}"))]);
        std::thread::sleep(wait);
    }

    /// One HTTP/1.0 exchange (the answer ends with the connection: no chunking to undo):
    /// (status, X-Etcd-Index, JSON body). `timeout`: None for a watch, which waits as long
    /// as it takes.
    fn request(&self, method: &str, path: &str, value: Option<&str>, timeout: Option<Duration>) -> Result<(u16, u64, serde_json::Value), Failure> {
        let unreachable = |e: std::io::Error| Failure::Unreachable(format!("{method} {}{path}: {e}", self.url));
        let addr = std::net::ToSocketAddrs::to_socket_addrs(&self.authority).map_err(unreachable)?.next().ok_or_else(|| Failure::Unreachable(format!("lookup {}: no address", self.authority)))?;
        let mut stream = std::net::TcpStream::connect_timeout(&addr, REQUEST_TIMEOUT).map_err(unreachable)?;
        stream.set_read_timeout(timeout).map_err(unreachable)?;
        let body = value.map(|v| format!("value={}", form_encode(v))).unwrap_or_default();
        let head = format!("{method} {path} HTTP/1.0\r\nHost: {}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n", self.authority, body.len());
        stream.write_all(head.as_bytes()).and_then(|()| stream.write_all(body.as_bytes())).map_err(unreachable)?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).map_err(unreachable)?;
        let text = String::from_utf8_lossy(&answer);
        let (head, body) = text.split_once("\r\n\r\n").ok_or_else(|| Failure::Unreachable(format!("{method} {}{path}: connection closed early", self.url)))?;
        let status: u16 = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        let index = head.lines().find_map(|l| l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case("x-etcd-index")).and_then(|(_, v)| v.trim().parse().ok())).unwrap_or(0);
        let json = serde_json::from_str(body).map_err(|_| Failure::Fatal(BAD_ENDPOINT.into()))?;
        Ok((status, index, json))
    }
}

fn node(v: &serde_json::Value) -> Option<Node> {
    let key = v["key"].as_str()?;
    Some(Node { base: key.rsplit('/').next().unwrap_or(key).to_string(), value: v["value"].as_str().unwrap_or("").to_string(), created: v["createdIndex"].as_u64().unwrap_or(0) })
}

/// etcd's nodesToCluster: the members' `name=url` lists joined; one name per member.
fn nodes_to_cluster(nodes: &[Node], size: u64) -> Result<Vec<(String, String)>, String> {
    let mut pairs = Vec::new();
    for part in nodes.iter().flat_map(|n| n.value.split(',')).filter(|p| !p.is_empty()) {
        let (name, url) = part.split_once('=').ok_or(INVALID_URL)?;
        if crate::config::check_url(url).is_err() {
            return Err(INVALID_URL.into());
        }
        pairs.push((name.to_string(), url.to_string()));
    }
    let mut names: Vec<&str> = pairs.iter().map(|(n, _)| n.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    if names.len() as u64 != size {
        return Err(DUPLICATE_NAME.into());
    }
    Ok(pairs)
}

/// application/x-www-form-urlencoded.
fn form_encode(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(base: &str, value: &str) -> Node {
        Node { base: base.into(), value: value.into(), created: 0 }
    }

    #[test]
    fn registered_lists_make_the_cluster_with_one_name_each() {
        let nodes = [n("1", "a=http://127.0.0.1:1"), n("2", "b=http://127.0.0.1:2,b=http://127.0.0.1:3")];
        assert_eq!(nodes_to_cluster(&nodes, 2).unwrap().len(), 3);
        let dup = [n("1", "a=http://127.0.0.1:1"), n("2", "a=http://127.0.0.1:2")];
        assert_eq!(nodes_to_cluster(&dup, 2).unwrap_err(), DUPLICATE_NAME);
        assert_eq!(nodes_to_cluster(&[n("1", "a")], 1).unwrap_err(), INVALID_URL);
        assert_eq!(form_encode("a=http://x:1,b"), "a%3Dhttp%3A%2F%2Fx%3A1%2Cb");
    }
}

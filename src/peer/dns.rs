//! Host and SRV lookups for `--discovery-srv` (etcd asks Go's resolver: `net.LookupSRV`,
//! `net.ResolveTCPAddr`). SRV records have no std API, so this is a small DNS client over UDP
//! (RFC 1035: one question, answers read with name compression) asking the first `nameserver`
//! of /etc/resolv.conf; host names go to the system's resolver (getaddrinfo: /etc/hosts too).
//!
//! `BALLAST_TEST_DNS_SERVER=ip:port` (test-only: `tests/bootstrap.rs` runs dnsmasq on a free
//! loopback port, and resolv.conf cannot name a port) sends every lookup — SRV, the SRV
//! targets' addresses and the peer URLs' host names the transport dials — to that server
//! instead. Unset, nothing changes: the system resolves as for any other program.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::Duration;

/// The environment variable naming the test DNS server.
pub const TEST_DNS_SERVER_ENV: &str = "BALLAST_TEST_DNS_SERVER";
/// One query's wait for an answer (Go's resolver: 5 s, 2 attempts).
const QUERY_TIMEOUT: Duration = Duration::from_secs(5);
const QUERY_ATTEMPTS: usize = 2;
const MAX_ANSWER_BYTES: usize = 4096;
const TYPE_A: u16 = 1;
const TYPE_SRV: u16 = 33;
const CLASS_IN: u16 = 1;

/// An SRV record's target and port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Srv {
    pub priority: u16,
    pub weight: u16,
    pub port: u16,
    /// With its trailing dot, as Go returns it.
    pub target: String,
}

/// The test DNS server, when set (a value that is not `ip:port` is ignored with a warning).
fn test_server() -> Option<SocketAddr> {
    static SERVER: std::sync::OnceLock<Option<SocketAddr>> = std::sync::OnceLock::new();
    *SERVER.get_or_init(read_test_server)
}

/// `TEST_DNS_SERVER_ENV`, read once (warned of once).
fn read_test_server() -> Option<SocketAddr> {
    let value = std::env::var(TEST_DNS_SERVER_ENV).ok()?;
    match value.parse() {
        Ok(addr) => {
            crate::log::warn("name lookups go to a test DNS server", &[("env", TEST_DNS_SERVER_ENV.into()), ("server", value)]);
            Some(addr)
        }
        Err(e) => {
            crate::log::warn("ignoring a test DNS server that is not ip:port", &[("env", TEST_DNS_SERVER_ENV.into()), ("value", value), ("error", e.to_string())]);
            None
        }
    }
}

/// Go's `net.LookupSRV(service, proto, name)`: `_service._proto.name`, sorted by priority
/// and weight.
pub fn lookup_srv(service: &str, proto: &str, name: &str) -> Result<Vec<Srv>, String> {
    let qname = format!("_{service}._{proto}.{name}");
    let server = match test_server() {
        Some(s) => s,
        None => system_nameserver()?,
    };
    // Go's *net.DNSError texts: "lookup <name> on <server>: no such host" and the like.
    let answer = exchange(server, &query(&qname, TYPE_SRV)).map_err(|e| format!("lookup {qname} on {server}: {e}"))?;
    let mut records: Vec<Srv> = parse_answers(&answer, TYPE_SRV).map_err(|e| format!("lookup {qname} on {server}: {e}"))?.into_iter().filter_map(|(rdata_at, _)| srv_at(&answer, rdata_at)).collect();
    if records.is_empty() {
        return Err(format!("lookup {qname} on {server}: no such host"));
    }
    records.sort_by_key(|r| (r.priority, std::cmp::Reverse(r.weight)));
    Ok(records)
}

/// The addresses of `host` (an IP literal is itself): the test server's A records when set,
/// else the system's resolver.
pub fn lookup_host(host: &str) -> Result<Vec<IpAddr>, String> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![ip]);
    }
    let Some(server) = test_server() else {
        use std::net::ToSocketAddrs;
        let addrs = (host, 0).to_socket_addrs().map_err(|e| format!("lookup {host}: {e}"))?;
        return Ok(addrs.map(|a| a.ip()).collect());
    };
    let name = host.trim_end_matches('.');
    let answer = exchange(server, &query(name, TYPE_A)).map_err(|e| format!("lookup {name} on {server}: {e}"))?;
    let ips: Vec<IpAddr> = parse_answers(&answer, TYPE_A)
        .map_err(|e| format!("lookup {name} on {server}: {e}"))?
        .into_iter()
        .filter(|&(at, len)| len == 4 && at + 4 <= answer.len())
        .map(|(at, _)| IpAddr::from([answer[at], answer[at + 1], answer[at + 2], answer[at + 3]]))
        .collect();
    if ips.is_empty() {
        return Err(format!("lookup {name} on {server}: no such host"));
    }
    Ok(ips)
}

/// Go's `net.ResolveTCPAddr("tcp", host:port)`: the first address, IPv4 preferred.
pub fn resolve_tcp(host: &str, port: u16) -> Result<SocketAddr, String> {
    let ips = lookup_host(host)?;
    let ip = ips.iter().find(|ip| ip.is_ipv4()).or(ips.first()).copied().ok_or_else(|| format!("lookup {host}: no such host"))?;
    Ok(SocketAddr::new(ip, port))
}

/// Whether peer dialling must resolve host names here (only with the test server).
pub fn resolves_dials() -> bool {
    test_server().is_some()
}

fn system_nameserver() -> Result<SocketAddr, String> {
    let conf = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let ip = conf
        .lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .find_map(|rest| rest.trim().parse::<IpAddr>().ok())
        .unwrap_or(IpAddr::from([127, 0, 0, 1]));
    Ok(SocketAddr::new(ip, 53))
}

fn query(name: &str, qtype: u16) -> Vec<u8> {
    let id = (std::process::id() as u16) ^ (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().subsec_nanos() as u16);
    let mut q = Vec::with_capacity(64);
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]); // recursion desired, 1 question
    for label in name.trim_end_matches('.').split('.').filter(|l| !l.is_empty()) {
        q.push(label.len().min(63) as u8);
        q.extend_from_slice(&label.as_bytes()[..label.len().min(63)]);
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&CLASS_IN.to_be_bytes());
    q
}

/// Sends `q` and returns the answer with the same id.
fn exchange(server: SocketAddr, q: &[u8]) -> Result<Vec<u8>, String> {
    let bind: SocketAddr = if server.is_ipv4() { "0.0.0.0:0".parse().expect("an address") } else { "[::]:0".parse().expect("an address") };
    let socket = UdpSocket::bind(bind).map_err(|e| e.to_string())?;
    socket.set_read_timeout(Some(QUERY_TIMEOUT)).map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; MAX_ANSWER_BYTES];
    let mut last = String::new();
    for _ in 0..QUERY_ATTEMPTS {
        socket.send_to(q, server).map_err(|e| format!("dial udp {server}: {e}"))?;
        match socket.recv_from(&mut buf) {
            // TC: the server cut the answer short (no TCP fallback here): a shorter member list
            // would give this member another cluster than its peers compute.
            Ok((n, _)) if n >= 12 && buf[..2] == q[..2] && buf[2] & 0x02 != 0 => return Err(format!("DNS answer from {server} truncated (TC)")),
            Ok((n, _)) if n >= 12 && buf[..2] == q[..2] && buf[2] & 0x80 != 0 => return Ok(buf[..n].to_vec()),
            Ok(_) => last = "malformed DNS answer".into(),
            Err(e) => last = format!("read udp {server}: {e}"),
        }
    }
    Err(last)
}

/// (rdata offset, rdata length) of the answers of type `qtype`.
fn parse_answers(buf: &[u8], qtype: u16) -> Result<Vec<(usize, usize)>, String> {
    let u16_at = |at: usize| buf.get(at..at + 2).map(|b| u16::from_be_bytes([b[0], b[1]])).ok_or("truncated DNS answer");
    let rcode = buf.get(3).copied().ok_or("truncated DNS answer")? & 0x0f;
    if rcode == 3 {
        return Err("no such host".into());
    }
    if rcode != 0 {
        return Err("server misbehaving".into());
    }
    let (questions, answers) = (u16_at(4)?, u16_at(6)?);
    let mut at = 12;
    for _ in 0..questions {
        at = skip_name(buf, at)? + 4;
    }
    let mut out = Vec::new();
    for _ in 0..answers {
        at = skip_name(buf, at)?;
        let (ty, len) = (u16_at(at)?, u16_at(at + 8)? as usize);
        let rdata = at + 10;
        if ty == qtype {
            out.push((rdata, len));
        }
        at = rdata + len;
    }
    Ok(out)
}

fn srv_at(buf: &[u8], at: usize) -> Option<Srv> {
    let b = buf.get(at..at + 6)?;
    let (target, _) = read_name(buf, at + 6).ok()?;
    Some(Srv { priority: u16::from_be_bytes([b[0], b[1]]), weight: u16::from_be_bytes([b[2], b[3]]), port: u16::from_be_bytes([b[4], b[5]]), target })
}

/// The offset after the name at `at`.
fn skip_name(buf: &[u8], mut at: usize) -> Result<usize, String> {
    loop {
        let len = *buf.get(at).ok_or("truncated DNS name")?;
        match len {
            0 => return Ok(at + 1),
            l if l & 0xc0 == 0xc0 => return Ok(at + 2),
            l => at += 1 + l as usize,
        }
    }
}

/// The name at `at` (following compression pointers; at most 128 labels and pointers), with a
/// trailing dot, and the offset after it.
fn read_name(buf: &[u8], mut at: usize) -> Result<(String, usize), String> {
    let mut name = String::new();
    let mut end = None;
    for _ in 0..128 {
        let len = *buf.get(at).ok_or("truncated DNS name")?;
        if len == 0 {
            if name.is_empty() {
                name.push('.');
            }
            return Ok((name, end.unwrap_or(at + 1)));
        }
        if len & 0xc0 == 0xc0 {
            let low = *buf.get(at + 1).ok_or("truncated DNS name")?;
            end.get_or_insert(at + 2);
            at = (((len & 0x3f) as usize) << 8) | low as usize;
            continue;
        }
        let label = buf.get(at + 1..at + 1 + len as usize).ok_or("truncated DNS name")?;
        name.push_str(&String::from_utf8_lossy(label));
        name.push('.');
        at += 1 + len as usize;
    }
    Err("DNS name too long".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_read_through_compression_pointers() {
        // "a.test." at 0, then a pointer to it at 8.
        let buf = [1, b'a', 4, b't', b'e', b's', b't', 0, 0xc0, 0];
        assert_eq!(read_name(&buf, 0).unwrap(), ("a.test.".to_string(), 8));
        assert_eq!(read_name(&buf, 8).unwrap(), ("a.test.".to_string(), 10));
        assert_eq!(skip_name(&buf, 8).unwrap(), 10);
        let q = query("_etcd-server._tcp.x.test", TYPE_SRV);
        assert_eq!(read_name(&q, 12).unwrap().0, "_etcd-server._tcp.x.test.");
    }
}

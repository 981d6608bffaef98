//! Network partitions without root: each member's peer traffic goes through a small TCP proxy
//! in the test process (members advertise the proxy's port as their peer URL and listen on
//! their real one), and the test cuts and heals links between pairs of members.
//!
//! A proxy only sees connections from 127.0.0.1, so it finds which member dialed by the
//! connection's source port: the socket with that local port in /proc/net/tcp gives an inode,
//! and the member process holding `socket:[inode]` among its fds is the source. This works for
//! any binary and any peer protocol (etcd's rafthttp, ballast's gRPC), since either way a link
//! between two members is carried by connections one of them dialed to the other's peer URL.
//! Cutting a link closes its open connections and drops new ones at once, in both directions.
//! Every loop is bounded; the proxies' tasks end with the `PeerProxies`.
#![allow(dead_code)]

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::{AbortHandle, JoinHandle};

/// Attempts to find a connection's source member, and the pause between them.
const OWNER_ATTEMPTS: u32 = 20;
const OWNER_PAUSE: Duration = Duration::from_millis(5);

#[derive(Default)]
struct Links {
    /// Each member's current process id (None while it is down).
    pids: Vec<Option<u32>>,
    /// Cut links, as (lower, higher) member indexes.
    cut: HashSet<(usize, usize)>,
    /// Open connections: (source member, destination member, the task copying it).
    open: Vec<(usize, usize, AbortHandle)>,
    /// Connections whose source member could not be found (they are let through).
    unknown_sources: u64,
}

impl Links {
    fn is_cut(&self, a: usize, b: usize) -> bool {
        self.cut.contains(&(a.min(b), a.max(b)))
    }
}

pub struct PeerProxies {
    links: Arc<Mutex<Links>>,
    /// Each member's proxy port (what it advertises) and real peer port (what it listens on).
    pub proxy_ports: Vec<u16>,
    pub real_ports: Vec<u16>,
    accept_tasks: Vec<JoinHandle<()>>,
}

impl PeerProxies {
    pub fn new() -> PeerProxies {
        PeerProxies {
            links: Arc::default(),
            proxy_ports: Vec::new(),
            real_ports: Vec::new(),
            accept_tasks: Vec::new(),
        }
    }

    /// A proxy for one more member whose real peer port is `real_port`: its index.
    pub async fn add_member(&mut self, real_port: u16) -> usize {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind a proxy port");
        let member = self.proxy_ports.len();
        self.proxy_ports.push(listener.local_addr().unwrap().port());
        self.real_ports.push(real_port);
        self.links.lock().unwrap().pids.push(None);
        let links = self.links.clone();
        self.accept_tasks.push(tokio::spawn(accept_loop(listener, member, real_port, links)));
        member
    }

    /// The process id of `member` now (None: down), to recognise its connections.
    pub fn set_pid(&self, member: usize, pid: Option<u32>) {
        self.links.lock().unwrap().pids[member] = pid;
    }

    /// Cuts the link between `a` and `b`: open connections closed, new ones dropped.
    pub fn cut(&self, a: usize, b: usize) {
        let mut links = self.links.lock().unwrap();
        links.cut.insert((a.min(b), a.max(b)));
        links.open.retain(|(s, d, task)| {
            let cut = (*s, *d) == (a, b) || (*s, *d) == (b, a);
            if cut {
                task.abort();
            }
            !cut
        });
    }

    /// Cuts every link of `member`.
    pub fn isolate(&self, member: usize) {
        for other in 0..self.proxy_ports.len() {
            if other != member {
                self.cut(member, other);
            }
        }
    }

    /// Heals every cut link.
    pub fn heal(&self) {
        self.links.lock().unwrap().cut.clear();
    }

    /// Connections let through because their source could not be told.
    pub fn unknown_sources(&self) -> u64 {
        self.links.lock().unwrap().unknown_sources
    }
}

impl Drop for PeerProxies {
    fn drop(&mut self) {
        for t in &self.accept_tasks {
            t.abort();
        }
        for (_, _, t) in self.links.lock().unwrap().open.drain(..) {
            t.abort();
        }
    }
}

async fn accept_loop(listener: TcpListener, member: usize, real_port: u16, links: Arc<Mutex<Links>>) {
    let proxy_port = listener.local_addr().unwrap().port();
    while let Ok((conn, from)) = listener.accept().await {
        let links = links.clone();
        tokio::spawn(async move {
            let source = source_member(from.port(), proxy_port, &links).await;
            let Some(source) = source else {
                links.lock().unwrap().unknown_sources += 1;
                return relay(conn, real_port).await;
            };
            let task = {
                let mut l = links.lock().unwrap();
                if l.is_cut(source, member) {
                    return; // dropped: the link is cut
                }
                let task = tokio::spawn(relay(conn, real_port));
                l.open.push((source, member, task.abort_handle()));
                task
            };
            let _ = task.await;
            links.lock().unwrap().open.retain(|(_, _, t)| !t.is_finished());
        });
    }
}

/// Copies both ways between `conn` and the member's real peer port until either side closes.
async fn relay(mut conn: TcpStream, real_port: u16) {
    let Ok(mut upstream) = TcpStream::connect(("127.0.0.1", real_port)).await else { return };
    let _ = conn.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let _ = tokio::io::copy_bidirectional(&mut conn, &mut upstream).await;
}

/// The member whose process holds the socket 127.0.0.1:`source_port` → `proxy_port`.
async fn source_member(source_port: u16, proxy_port: u16, links: &Mutex<Links>) -> Option<usize> {
    for _ in 0..OWNER_ATTEMPTS {
        let pids = links.lock().unwrap().pids.clone();
        if let Some(inode) = socket_inode(source_port, proxy_port) {
            let owner = pids.iter().position(|p| p.is_some_and(|pid| holds_socket(pid, inode)));
            if owner.is_some() {
                return owner;
            }
        }
        tokio::time::sleep(OWNER_PAUSE).await;
    }
    None
}

/// The inode of the TCP socket with local port `local` and remote port `remote`.
fn socket_inode(local: u16, remote: u16) -> Option<u64> {
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else { continue };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() > 9 && port_of(f[1]) == Some(local) && port_of(f[2]) == Some(remote) {
                return f[9].parse().ok();
            }
        }
    }
    None
}

/// The port of a /proc/net/tcp address (`0100007F:1F90`).
fn port_of(addr: &str) -> Option<u16> {
    u16::from_str_radix(addr.rsplit(':').next()?, 16).ok()
}

fn holds_socket(pid: u32, inode: u64) -> bool {
    let want = format!("socket:[{inode}]");
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else { return false };
    fds.flatten().any(|fd| std::fs::read_link(fd.path()).is_ok_and(|l| l.to_str() == Some(want.as_str())))
}

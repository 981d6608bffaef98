//! The transport follows the live membership (`cluster::Membership`, a watch the applier
//! replaces on every applied membership change): each other member has a sender task and a
//! queue in the outbox's table; a member added gets one, a member removed loses it (its task
//! is aborted, its queue dropped); a member whose peer URLs changed keeps its sender, which
//! dials the new URLs when it next dials (`sender.rs`). The peer listener opens once the
//! cluster has more than one member.

use std::collections::HashMap;
use std::net::TcpListener;

use raft::eraftpb::Message;
use tokio::task::JoinHandle;

use super::outbox::Table;
use super::sender::Sender;
use super::{server, Identity, Inbound, PEER_QUEUE_CAPACITY_MSGS};
use crate::cluster::Cluster;
use crate::log;

pub struct Follower {
    pub me: Identity,
    pub listen_urls: Vec<String>,
    pub membership: crate::cluster::Membership,
    /// A joining member's running peers: dialled as members until the membership names them
    /// (or removed them), as etcd's transport remotes.
    pub remotes: Vec<crate::cluster::Member>,
    pub promote: super::PromoteFn,
    pub table: Table,
    pub inbound: flume::Sender<Inbound>,
    pub tls: super::PeerTls,
    pub snap_dir: std::path::PathBuf,
}

/// A running sender: its task, and the URLs it dials.
struct Running {
    task: JoinHandle<()>,
    urls: super::PeerUrls,
    queue: flume::Sender<Message>,
}

impl Follower {
    /// Runs for good: serves `listeners` (if bound at start), then follows the membership.
    pub async fn run(self, listeners: Option<Vec<(TcpListener, bool)>>) {
        let mut serving = false;
        if let Some(listeners) = listeners {
            server::serve(listeners, self.service(), self.tls.server.clone()).await;
            serving = true;
        }
        let mut changes = self.membership.subscribe();
        let mut running: HashMap<u64, Running> = HashMap::new();
        loop {
            let cluster = changes.borrow_and_update().clone();
            if !serving && cluster.members.len() > 1 {
                serving = true;
                match server::bind_all(&self.listen_urls, self.tls.server.is_some()) {
                    Ok(listeners) => server::serve(listeners, self.service(), self.tls.server.clone()).await,
                    Err(e) => log::error("cannot serve peer traffic", &[("error", e)]),
                }
            }
            self.update(&cluster, &mut running);
            if changes.changed().await.is_err() {
                return; // the membership is gone: shutting down
            }
        }
    }

    fn service(&self) -> server::PeerService {
        server::PeerService { me: self.me, inbound: self.inbound.clone(), membership: self.membership.clone(), promote: self.promote.clone(), snap_dir: self.snap_dir.clone() }
    }

    /// Starts and stops senders to match `cluster`, then publishes the queues.
    fn update(&self, cluster: &Cluster, running: &mut HashMap<u64, Running>) {
        let remotes = self.remotes.iter().filter(|r| cluster.member(r.id).is_none() && !cluster.removed.contains(&r.id));
        let targets: Vec<&crate::cluster::Member> = cluster.members.iter().chain(remotes).collect();
        running.retain(|id, r| {
            let Some(m) = targets.iter().find(|m| m.id == *id && !m.peer_urls.is_empty()) else {
                r.task.abort();
                log::info("stopped sending to remote peer", &[("remote-peer-id", format!("{id:x}"))]);
                return false;
            };
            let mut urls = r.urls.lock().expect("not poisoned");
            if *urls != m.peer_urls {
                log::info("updated remote peer", &[("remote-peer-id", format!("{id:x}")), ("remote-peer-urls", m.peer_urls.join(","))]);
                *urls = m.peer_urls.clone();
            }
            true
        });
        for m in targets.into_iter().filter(|m| m.id != self.me.member_id) {
            if running.contains_key(&m.id) || m.peer_urls.is_empty() {
                continue;
            }
            let (queue, rx) = flume::bounded(PEER_QUEUE_CAPACITY_MSGS);
            let urls = std::sync::Arc::new(std::sync::Mutex::new(m.peer_urls.clone()));
            let sender = Sender { me: self.me, peer: m.id, urls: urls.clone(), queue: rx, inbound: self.inbound.clone(), tls: self.tls.client.clone() };
            log::info("added remote peer", &[("remote-peer-id", format!("{:x}", m.id)), ("remote-peer-urls", m.peer_urls.join(","))]);
            running.insert(m.id, Running { task: tokio::spawn(sender.run()), urls, queue });
        }
        self.table.set(running.iter().map(|(id, r)| (*id, r.queue.clone())).collect());
    }
}

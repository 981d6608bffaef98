//! `--initial-cluster-state existing` on an empty data dir (etcd's
//! bootstrapExistingClusterNoWAL): the member asks the other members' peer URLs for the running
//! cluster (`Peer.Members`), checks that `--initial-cluster` describes the same members (etcd's
//! ValidateClusterAndAssignIDs: matched by peer URLs) and takes the running cluster's ids, with
//! etcd's error texts when it cannot.
//!
//! The member then starts from the configuration the cluster was bootstrapped with (the
//! answer's `initial_members`: raft's configuration at index 0 in ballast, where etcd writes
//! conf change entries at the log's start) and replays the log from index 1, so its applied
//! membership passes through every change as the others' did (starting from the current list
//! instead, it would refuse the add of itself: "member ID already exist"). Until the log makes
//! them members again, the running members are its transport's remotes (etcd's AddRemote).

use std::sync::Arc;
use std::time::Duration;

use crate::cluster::{Cluster, Member};
use crate::config::Config;
use crate::proto::ballastpeerpb::{peer_client::PeerClient, MembersRequest, MembersResponse};

/// How long one peer may take to answer (etcd asks each peer URL with a timeout too).
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// etcd's BootstrapTimeoutEffective: the wait per peer when a new member asks whether it was
/// bootstrapped already.
const BOOTSTRAP_TIMEOUT: Duration = Duration::from_secs(1);

/// What a joining member starts from.
pub struct Joined {
    /// The cluster's configuration at index 0, with this member's id as `local_id`.
    pub initial: Cluster,
    /// The running members (this one left out), as `--initial-cluster` names them.
    pub remotes: Vec<Member>,
}

/// The running cluster, as `--initial-cluster` names it, with the running cluster's ids.
/// `tls`: how to dial `https://` peers.
pub fn join_existing(cfg: &Config, tls: Option<Arc<rustls::ClientConfig>>) -> Result<Joined, String> {
    let local = Cluster::from_config(cfg)?;
    let urls: Vec<String> = local.members.iter().filter(|m| m.name != cfg.name).flat_map(|m| m.peer_urls.clone()).collect();
    let existing = fetch(&urls, tls, FETCH_TIMEOUT, true).map_err(|e| format!("cannot fetch cluster info from peer urls: {e}"))?;
    let initial_members = existing.initial_members.clone();
    let running = assign_ids(local, &cfg.name, existing)?;
    let remotes = running.members.iter().filter(|m| m.id != running.local_id).cloned().collect();
    if initial_members.is_empty() {
        return Ok(Joined { initial: running, remotes }); // a peer that does not say
    }
    let members = super::server::unlist(initial_members);
    Ok(Joined { initial: Cluster { id: running.id, members, local_id: running.local_id, removed: Vec::new() }, remotes })
}

/// etcd's isMemberBootstrapped, for a member starting a new cluster without data: whether a
/// running peer lists it with client URLs (it served before, and lost its data dir). Peers
/// that do not answer (a cluster bootstrapping together) say nothing.
pub fn is_member_bootstrapped(cluster: &Cluster, tls: Option<Arc<rustls::ClientConfig>>) -> bool {
    let urls: Vec<String> = cluster.members.iter().filter(|m| m.id != cluster.local_id).flat_map(|m| m.peer_urls.clone()).collect();
    let Ok(running) = fetch(&urls, tls, BOOTSTRAP_TIMEOUT, false) else { return false };
    running.members.iter().any(|m| m.id == cluster.local_id && !m.client_urls.is_empty())
}

/// The first answer of the peers at `urls`, tried in turn, each within `timeout`; `warn`:
/// log each failure.
fn fetch(urls: &[String], tls: Option<Arc<rustls::ClientConfig>>, timeout: Duration, warn: bool) -> Result<MembersResponse, String> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    rt.block_on(async {
        for url in urls {
            let error = match tokio::time::timeout(timeout, ask(url, tls.clone())).await {
                Ok(Ok(answer)) => return Ok(answer),
                Ok(Err(e)) => e,
                Err(_) => "timed out".into(),
            };
            if warn {
                crate::log::warn("failed to get cluster response", &[("address", url.clone()), ("error", error)]);
            }
        }
        Err("could not retrieve cluster information from the given URLs".to_string())
    })
}

async fn ask(url: &str, tls: Option<Arc<rustls::ClientConfig>>) -> Result<MembersResponse, String> {
    let channel = super::dial::connect(url, tls).await?;
    let answer = PeerClient::new(channel).members(MembersRequest {}).await.map_err(|e| e.message().to_string())?;
    Ok(answer.into_inner())
}

/// etcd's ValidateClusterAndAssignIDs: the same number of members, each running one matched
/// by its peer URLs to a configured one, whose id it takes.
fn assign_ids(local: Cluster, name: &str, existing: MembersResponse) -> Result<Cluster, String> {
    let describe = || {
        let members: Vec<String> = existing.members.iter().map(|m| format!("{}={}", m.name, m.peer_urls.join(","))).collect();
        members.join(",")
    };
    if existing.members.len() != local.members.len() {
        return Err(format!("error validating peerURLs {}: member count is unequal", describe()));
    }
    let sorted = |urls: &[String]| {
        let mut urls = urls.to_vec();
        urls.sort();
        urls
    };
    let mut members = Vec::with_capacity(existing.members.len());
    for e in &existing.members {
        let Some(l) = local.members.iter().find(|l| sorted(&l.peer_urls) == sorted(&e.peer_urls)) else {
            return Err(format!(
                "error validating peerURLs {}: PeerURLs: no match found for existing member ({:x}, [{}]), last resolver error (<nil>)",
                describe(),
                e.id,
                e.peer_urls.join(" ")
            ));
        };
        members.push(Member { id: e.id, name: l.name.clone(), peer_urls: e.peer_urls.clone(), client_urls: e.client_urls.clone(), is_learner: e.is_learner });
    }
    let local_id = members.iter().find(|m| m.name == name).map(|m| m.id).ok_or_else(|| format!("couldn't find local name {name:?} in the initial cluster configuration"))?;
    Ok(Cluster { id: existing.cluster_id, members, local_id, removed: Vec::new() })
}

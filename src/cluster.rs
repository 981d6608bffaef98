//! Cluster membership as configured: member and cluster ids computed exactly as etcd does
//! (SHA-1 of the sorted peer URLs + cluster token; SHA-1 of the sorted member ids), so a
//! default ballast reports the same ids as a default etcd (8e9e05c52164694d / cdf818194e3a8c32).
//! The membership is saved in the data dir at first boot and reused after, as etcd does.

use crate::config::Config;

const MEMBERSHIP_FILE: &str = "membership.json";

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Member {
    pub id: u64,
    pub name: String,
    pub peer_urls: Vec<String>,
    /// Published by the member once it serves (etcd's member attributes); empty until then.
    #[serde(default)]
    pub client_urls: Vec<String>,
    #[serde(default)]
    pub is_learner: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Cluster {
    pub id: u64,
    /// Sorted by id once changed through raft (etcd lists members by id).
    pub members: Vec<Member>,
    pub local_id: u64,
    /// Ids of removed members: never to be added again (etcd's removed set).
    #[serde(default)]
    pub removed: Vec<u64>,
}

fn sha1_prefix_u64(bytes: &[u8]) -> u64 {
    let digest = sha1_smol::Sha1::from(bytes).digest().bytes();
    u64::from_be_bytes(digest[..8].try_into().expect("sha1 has 20 bytes"))
}

pub fn member_id(peer_urls: &[String], token: &str) -> u64 {
    let mut urls = peer_urls.to_vec();
    urls.sort();
    let mut b = urls.concat().into_bytes();
    b.extend_from_slice(token.as_bytes());
    sha1_prefix_u64(&b)
}

impl Cluster {
    /// The members named by `--initial-cluster` (name=url pairs grouped by name).
    pub fn from_config(cfg: &Config) -> Result<Cluster, String> {
        let mut members: Vec<Member> = Vec::new();
        for (name, url) in &cfg.initial_cluster {
            match members.iter_mut().find(|m| &m.name == name) {
                Some(m) => m.peer_urls.push(url.clone()),
                None => members.push(Member { id: 0, name: name.clone(), peer_urls: vec![url.clone()], client_urls: vec![], is_learner: false }),
            }
        }
        for m in &mut members {
            m.id = member_id(&m.peer_urls, &cfg.initial_cluster_token);
        }
        let local = members
            .iter()
            .find(|m| m.name == cfg.name)
            .ok_or_else(|| format!("couldn't find local name {:?} in the initial cluster configuration", cfg.name))?;
        let local_id = local.id;
        let mut ids: Vec<u64> = members.iter().map(|m| m.id).collect();
        ids.sort_unstable();
        let bytes: Vec<u8> = ids.iter().flat_map(|id| id.to_be_bytes()).collect();
        Ok(Cluster { id: sha1_prefix_u64(&bytes), members, local_id, removed: Vec::new() })
    }

    /// The membership this data dir was created with (etcd ignores `--initial-cluster` once a
    /// member has data), or, for a new data dir, the one `init` gives (the configured one, or
    /// the running cluster's for `--initial-cluster-state existing`), saved for next time.
    /// Whether this data dir holds a membership (etcd's haveWAL: the member has data, and its
    /// bootstrap flags are ignored).
    pub fn is_saved(member_dir: &std::path::Path) -> bool {
        member_dir.join(MEMBERSHIP_FILE).exists()
    }

    pub fn load_or_init(member_dir: &std::path::Path, init: impl FnOnce() -> Result<Cluster, String>) -> Result<Cluster, String> {
        let path = member_dir.join(MEMBERSHIP_FILE);
        if let Some(saved) = crate::durable::read_checked_json(&path)? {
            return Ok(saved);
        }
        let cluster = init()?;
        crate::durable::write_checked_json(&path, &cluster).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        Ok(cluster)
    }

    pub fn voters(&self) -> Vec<u64> {
        self.members.iter().filter(|m| !m.is_learner).map(|m| m.id).collect()
    }

    pub fn learners(&self) -> Vec<u64> {
        self.members.iter().filter(|m| m.is_learner).map(|m| m.id).collect()
    }

    pub fn member(&self, id: u64) -> Option<&Member> {
        self.members.iter().find(|m| m.id == id)
    }

    pub fn member_mut(&mut self, id: u64) -> Option<&mut Member> {
        self.members.iter_mut().find(|m| m.id == id)
    }

    /// The members sorted by id, as etcd lists them.
    pub fn sorted_members(&self) -> Vec<Member> {
        let mut members = self.members.clone();
        members.sort_by_key(|m| m.id);
        members
    }
}

impl Member {
    /// etcd's `IsStarted`: a member has published its name once it served.
    pub fn is_started(&self) -> bool {
        !self.name.is_empty()
    }
}

/// The id etcd gives a member added at runtime (`MemberAdd`): SHA-1 of its sorted peer URLs,
/// an empty cluster name and the time in seconds.
pub fn added_member_id(peer_urls: &[String], unix_secs: u64) -> u64 {
    member_id(peer_urls, &unix_secs.to_string())
}

/// The live membership, shared by the applier (which replaces it whole on every applied
/// change), the peer transport (which dials the members' peer URLs) and the Cluster service;
/// with the configuration at index 0 it started from (`membership.json`), which a member
/// joining at runtime asks for (`Peer.Members`).
#[derive(Clone)]
pub struct Membership(std::sync::Arc<tokio::sync::watch::Sender<std::sync::Arc<Cluster>>>, std::sync::Arc<Cluster>);

impl Membership {
    /// `initial`: the configuration at index 0 (the live one until the driver replaces it).
    pub fn new(initial: Cluster) -> Membership {
        let initial = std::sync::Arc::new(initial);
        Membership(std::sync::Arc::new(tokio::sync::watch::Sender::new(initial.clone())), initial)
    }

    pub fn current(&self) -> std::sync::Arc<Cluster> {
        self.0.borrow().clone()
    }

    /// The configuration at index 0.
    pub fn initial(&self) -> std::sync::Arc<Cluster> {
        self.1.clone()
    }

    pub fn set(&self, cluster: Cluster) {
        self.0.send_replace(std::sync::Arc::new(cluster));
    }

    /// Changes from now on (the receiver sees the current value as seen).
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<std::sync::Arc<Cluster>> {
        self.0.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_ids_match_etcd() {
        let c = Cluster::from_config(&Config::default()).unwrap();
        assert_eq!(format!("{:x}", c.local_id), "8e9e05c52164694d");
        assert_eq!(format!("{:x}", c.id), "cdf818194e3a8c32");
    }
}

//! Where a member's cluster comes from at start (etcd's bootstrap in NewServer): its data dir
//! when it has one (the bootstrap flags are then ignored, as etcd ignores them once a WAL
//! exists), else `--initial-cluster` with `--initial-cluster-state new`, the running cluster
//! for `existing` (`bootstrap.rs`). `--discovery-srv` gives the `--initial-cluster` list
//! from DNS (`srv.rs`) for either state, as etcd's PeerURLsMapAndToken; `--discovery` from the
//! discovery service (`discovery.rs`) for a new cluster.

use std::sync::Arc;

use crate::cluster::{Cluster, Member};
use crate::config::Config;

pub struct Initial {
    pub cluster: Cluster,
    /// A joining member's running peers, dialled until the log makes them members again.
    pub remotes: Vec<Member>,
    /// The data dir had a membership already (etcd's haveWAL).
    pub has_data: bool,
}

/// The member's cluster, saved in `member_dir` for the next start. `tls`: how to dial
/// `https://` peers.
pub fn cluster(cfg: &Config, member_dir: &std::path::Path, tls: Option<Arc<rustls::ClientConfig>>) -> Result<Initial, String> {
    if Cluster::is_saved(member_dir) {
        let cluster = Cluster::load_or_init(member_dir, || Err("the membership file vanished".into()))?;
        crate::log::info("server has been already initialized", &[("data-dir", cfg.data_dir.display().to_string()), ("dir-type", "member".into())]);
        if !cfg.discovery.url.is_empty() {
            crate::log::warn("discovery token is ignored since cluster already initialized; valid logs are found", &[("data-dir", cfg.data_dir.display().to_string())]);
        }
        crate::log::info("restarting local member", &[("cluster-id", format!("{:x}", cluster.id)), ("local-member-id", format!("{:x}", cluster.local_id))]);
        return Ok(Initial { cluster, remotes: Vec::new(), has_data: true });
    }
    let mut cfg = cfg.clone();
    if !cfg.discovery.srv.is_empty() {
        cfg.initial_cluster = super::srv::initial_cluster(&cfg)?;
    }
    if !cfg.discovery.url.is_empty() {
        // etcd: the discovery URL is the cluster token, and the member registers itself only
        // when it starts a new cluster.
        cfg.initial_cluster_token = cfg.discovery.url.clone();
        cfg.initial_cluster = cfg.initial_advertise_peer_urls.iter().map(|u| (cfg.name.clone(), u.clone())).collect();
        if cfg.initial_cluster_state == "new" {
            cfg.initial_cluster = super::discovery::join_cluster(&cfg)?;
        }
    }
    let cfg = &cfg;
    let mut remotes = Vec::new();
    let cluster = Cluster::load_or_init(member_dir, || match cfg.initial_cluster_state.as_str() {
        "existing" => super::bootstrap::join_existing(cfg, tls).map(|joined| {
            remotes = joined.remotes;
            joined.initial
        }),
        _ => {
            let cluster = Cluster::from_config(cfg)?;
            // etcd's check for a member that lost its data dir: it must be removed and added again.
            if super::bootstrap::is_member_bootstrapped(&cluster, tls) {
                return Err(format!("member {:x} has already been bootstrapped", cluster.local_id));
            }
            Ok(cluster)
        }
    })?;
    Ok(Initial { cluster, remotes, has_data: false })
}

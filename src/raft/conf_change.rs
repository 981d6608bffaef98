//! Membership changes as raft entries, as etcd 3.5 makes them, and the member list they change.
//!
//! A change (etcd's MemberAdd, MemberRemove, MemberUpdate, MemberPromote) is one raft conf
//! change entry: a raft-rs v1 `ConfChange` (add voter, add learner, remove; a promotion is an
//! add of the learner as voter, as etcd's) with the change itself as JSON in the entry's
//! context, as etcd carries its Member as JSON in `ConfChange.Context`, and the proposal id
//! the proposer waits on. raft-rs 0.7's v1 `ConfChange` has no UpdateNode: an update is a conf
//! change entry whose context says so (raft-rs counts it as a pending conf change, as etcd's
//! raft counts its ConfChangeUpdateNode) and is never applied to raft's configuration.
//!
//! On commit every member validates the change against its member list as etcd's
//! `ValidateConfigurationChange` (so all of them reach the same verdict), and only a valid one
//! reaches raft (`RawNode::apply_conf_change`) and the member list. Members' published
//! attributes (name, client URLs) change the list through normal entries (`set_attributes`).

use raft::eraftpb::{ConfChange, ConfChangeType};
use serde::{Deserialize, Serialize};

use crate::cluster::{Cluster, Member};
use crate::error::{Error, Result};

/// etcd's maxLearners.
pub const MAX_LEARNERS: usize = 1;

/// A membership change a client asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum MemberChange {
    /// A new member (a voter, or a learner when `member.is_learner`).
    Add { member: Member },
    Remove { id: u64 },
    /// New peer URLs.
    Update { id: u64, peer_urls: Vec<String> },
    Promote { id: u64 },
}

/// A conf change entry's context.
#[derive(Debug, Serialize, Deserialize)]
pub struct ConfContext {
    /// The proposal id its proposer waits on (`Proposals::register`).
    pub proposal_id: u64,
    pub change: MemberChange,
}

impl MemberChange {
    pub fn node_id(&self) -> u64 {
        match self {
            MemberChange::Add { member } => member.id,
            MemberChange::Remove { id } | MemberChange::Update { id, .. } | MemberChange::Promote { id } => *id,
        }
    }

    /// The change to raft's configuration; none for an update (peer URLs are not raft's).
    pub fn raft_change(&self) -> Option<ConfChange> {
        let change_type = match self {
            MemberChange::Add { member } if member.is_learner => ConfChangeType::AddLearnerNode,
            MemberChange::Add { .. } | MemberChange::Promote { .. } => ConfChangeType::AddNode,
            MemberChange::Remove { .. } => ConfChangeType::RemoveNode,
            MemberChange::Update { .. } => return None,
        };
        let mut cc = ConfChange::default();
        cc.set_change_type(change_type);
        cc.node_id = self.node_id();
        Some(cc)
    }
}

/// The entry to propose: (context, conf change). An update goes as an add of the same node
/// (never applied to raft: see the module comment).
pub fn encode(proposal_id: u64, change: &MemberChange) -> (Vec<u8>, ConfChange) {
    let context = serde_json::to_vec(&ConfContext { proposal_id, change: change.clone() }).expect("a member change serializes");
    let cc = change.raft_change().unwrap_or_else(|| {
        let mut cc = ConfChange::default();
        cc.set_change_type(ConfChangeType::AddNode);
        cc.node_id = change.node_id();
        cc
    });
    (context, cc)
}

/// The context of the conf change entry at `index`. Entries are written only by this code: an
/// undecodable one is corruption (a panic ends the process; the log on disk is not touched).
pub fn decode(context: &[u8], index: u64) -> ConfContext {
    serde_json::from_slice(context).unwrap_or_else(|e| panic!("undecodable conf change entry at index {index}: {e}"))
}

/// etcd's `ValidateConfigurationChange`: whether a committed change may apply to `cluster`.
pub fn validate(cluster: &Cluster, change: &MemberChange) -> Result<()> {
    let id = change.node_id();
    if cluster.removed.contains(&id) {
        return Err(Error::MemberNotFound); // etcd's ErrIDRemoved, answered as "member not found"
    }
    match change {
        MemberChange::Add { member } => {
            if cluster.member(id).is_some() {
                return Err(Error::MemberExist);
            }
            if peer_url_taken(cluster, None, &member.peer_urls) {
                return Err(Error::PeerUrlExist);
            }
            if member.is_learner && cluster.learners().len() + 1 > MAX_LEARNERS {
                return Err(Error::TooManyLearners);
            }
            Ok(())
        }
        MemberChange::Promote { .. } => match cluster.member(id) {
            None => Err(Error::MemberNotFound),
            Some(m) if !m.is_learner => Err(Error::MemberNotLearner),
            Some(_) => Ok(()),
        },
        MemberChange::Remove { .. } => cluster.member(id).map(|_| ()).ok_or(Error::MemberNotFound),
        MemberChange::Update { peer_urls, .. } => {
            cluster.member(id).ok_or(Error::MemberNotFound)?;
            if peer_url_taken(cluster, Some(id), peer_urls) {
                return Err(Error::PeerUrlExist);
            }
            Ok(())
        }
    }
}

/// Whether a member other than `except` has one of `urls`.
fn peer_url_taken(cluster: &Cluster, except: Option<u64>, urls: &[String]) -> bool {
    cluster.members.iter().filter(|m| Some(m.id) != except).flat_map(|m| &m.peer_urls).any(|u| urls.contains(u))
}

/// Applies a validated change to the member list (kept sorted by id, as etcd lists it).
pub fn apply(cluster: &mut Cluster, change: &MemberChange) {
    match change {
        MemberChange::Add { member } => {
            cluster.members.push(member.clone());
            cluster.members.sort_by_key(|m| m.id);
        }
        MemberChange::Remove { id } => {
            cluster.members.retain(|m| m.id != *id);
            cluster.removed.push(*id);
        }
        MemberChange::Update { id, peer_urls } => {
            if let Some(m) = cluster.member_mut(*id) {
                m.peer_urls = peer_urls.clone();
                // etcd 3.5's UpdateRaftAttributes replaces the raft attributes whole with the
                // request's, whose learner flag is false: an updated learner is listed (and
                // counted) as a voter from then on, though raft still has it as a learner.
                m.is_learner = false;
            }
        }
        MemberChange::Promote { id } => {
            if let Some(m) = cluster.member_mut(*id) {
                m.is_learner = false;
            }
        }
    }
}

/// A member's published attributes (etcd's ClusterMemberAttrSet); a removed member's are
/// ignored, as etcd ignores them. True when the list changed.
pub fn set_attributes(cluster: &mut Cluster, id: u64, name: &str, client_urls: &[String]) -> bool {
    match cluster.member_mut(id) {
        Some(m) if m.name != name || m.client_urls != client_urls => {
            m.name = name.to_string();
            m.client_urls = client_urls.to_vec();
            true
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: u64, url: &str, is_learner: bool) -> Member {
        Member { id, name: String::new(), peer_urls: vec![url.into()], client_urls: vec![], is_learner }
    }

    fn cluster() -> Cluster {
        Cluster { id: 9, members: vec![member(1, "http://a:1", false)], local_id: 1, removed: vec![] }
    }

    #[test]
    fn validates_as_etcd() {
        let mut c = cluster();
        let add = |id, url: &str, l| MemberChange::Add { member: member(id, url, l) };
        assert_eq!(validate(&c, &add(1, "http://b:1", false)), Err(Error::MemberExist));
        assert_eq!(validate(&c, &add(2, "http://a:1", true)), Err(Error::PeerUrlExist));
        assert_eq!(validate(&c, &MemberChange::Promote { id: 1 }), Err(Error::MemberNotLearner));
        assert_eq!(validate(&c, &MemberChange::Remove { id: 5 }), Err(Error::MemberNotFound));
        apply(&mut c, &add(2, "http://b:1", true));
        assert_eq!(validate(&c, &add(3, "http://c:1", true)), Err(Error::TooManyLearners));
        assert_eq!(validate(&c, &MemberChange::Update { id: 2, peer_urls: vec!["http://a:1".into()] }), Err(Error::PeerUrlExist));
        assert_eq!(validate(&c, &MemberChange::Promote { id: 2 }), Ok(()));
        apply(&mut c, &MemberChange::Remove { id: 2 });
        assert_eq!(validate(&c, &add(2, "http://b:1", true)), Err(Error::MemberNotFound), "a removed id never comes back");
    }

    #[test]
    fn context_round_trips() {
        let change = MemberChange::Update { id: 7, peer_urls: vec!["http://x:2".into()] };
        let (ctx, cc) = encode(42, &change);
        assert_eq!(cc.node_id, 7);
        let back = decode(&ctx, 1);
        assert_eq!((back.proposal_id, back.change), (42, change));
    }
}

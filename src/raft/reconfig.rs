//! etcd 3.5's checks before a membership change is proposed (`--strict-reconfig-check`, on by
//! default): server.go's mayAddMember, mayRemoveMember, mayPromoteMember and isLearnerReady,
//! membership/cluster.go's IsReadyToAddVotingMember, IsReadyToRemoveVotingMember and
//! IsReadyToPromoteMember. "Started" is etcd's: a member that has published its name.
//!
//! etcd asks its peer transport whether a peer has been connected for 5 s; the raft core has
//! no transport, so on the leader a peer counts as connected when raft's progress saw it
//! recently (`recent_active`, refreshed every election timeout with check_quorum), and a
//! follower, which tracks no progress, counts every peer as connected. Whether a learner is in
//! sync needs the leader's progress: a follower answers "not leader" (etcd forwards the
//! promotion to the leader over its peer HTTP API, which ballast does not have).

use std::collections::HashMap;

use crate::cluster::{Cluster, Member};
use crate::error::{Error, Result};

/// etcd's readyPercent: a learner is in sync once its match index is at 90% of the leader's.
const READY_PERCENT: f64 = 0.9;

/// The leader's view of its peers: its own match index and each peer's (match index,
/// recently active). None on a follower.
pub struct PeerView {
    pub leader_match: u64,
    pub peers: HashMap<u64, (u64, bool)>,
}

/// What every check needs.
pub struct Checks<'a> {
    pub cluster: &'a Cluster,
    pub local_id: u64,
    pub strict: bool,
    pub view: Option<PeerView>,
}

impl Checks<'_> {
    /// etcd's mayAddMember.
    pub fn may_add(&self, member: &Member) -> Result<()> {
        if !self.strict {
            return Ok(());
        }
        if !member.is_learner && !self.ready_to_add_voter() {
            crate::log::warn("rejecting member add request; not enough healthy members", &[("requested-member-add", format!("{:x}", member.id))]);
            return Err(Error::MemberNotEnoughStarted);
        }
        if self.voters().any(|m| !self.connected(m.id)) {
            crate::log::warn("rejecting member add request; local member has not been connected to all peers, reconfigure breaks active quorum", &[]);
            return Err(Error::Unhealthy);
        }
        Ok(())
    }

    /// etcd's mayRemoveMember.
    pub fn may_remove(&self, id: u64) -> Result<()> {
        if !self.strict || self.cluster.member(id).is_some_and(|m| m.is_learner) {
            return Ok(());
        }
        if !self.ready_to_remove_voter(id) {
            crate::log::warn("rejecting member remove request; not enough healthy members", &[("requested-member-remove-id", format!("{id:x}"))]);
            return Err(Error::MemberNotEnoughStarted);
        }
        // A member that is down is safe to remove: it is not part of the active quorum.
        if id != self.local_id && !self.connected(id) {
            return Ok(());
        }
        let voters = self.voters().count();
        let active = self.voters().filter(|m| self.connected(m.id)).count();
        if active.saturating_sub(1) < 1 + voters.saturating_sub(1) / 2 {
            crate::log::warn("rejecting member remove request; local member has not been connected to all peers, reconfigure breaks active quorum", &[]);
            return Err(Error::Unhealthy);
        }
        Ok(())
    }

    /// etcd's mayPromoteMember: the learner must be in sync (checked first), then the quorum.
    pub fn may_promote(&self, id: u64) -> Result<()> {
        self.learner_ready(id)?;
        if self.strict && !self.ready_to_promote() {
            crate::log::warn("rejecting member promote request; not enough healthy members", &[("requested-member-remove-id", format!("{id:x}"))]);
            return Err(Error::MemberNotEnoughStarted);
        }
        Ok(())
    }

    /// etcd's isLearnerReady: only the leader knows; a member raft does not track passes (the
    /// commit checks it).
    fn learner_ready(&self, id: u64) -> Result<()> {
        let view = self.view.as_ref().ok_or(Error::NotLeader)?;
        match view.peers.get(&id) {
            Some(&(matched, _)) if (matched as f64) < view.leader_match as f64 * READY_PERCENT => Err(Error::LearnerNotReady),
            _ => Ok(()),
        }
    }

    fn voters(&self) -> impl Iterator<Item = &Member> {
        self.cluster.members.iter().filter(|m| !m.is_learner)
    }

    fn connected(&self, id: u64) -> bool {
        id == self.local_id || self.view.as_ref().is_none_or(|v| v.peers.get(&id).is_some_and(|&(_, active)| active))
    }

    /// IsReadyToAddVotingMember: the started voters stay a quorum with one more voter (and a
    /// lone started voter may always add one: etcd's restore-a-cluster case).
    fn ready_to_add_voter(&self) -> bool {
        let members = 1 + self.voters().count();
        let started = self.voters().filter(|m| m.is_started()).count();
        (started == 1 && members == 2) || reaches_quorum(started, members)
    }

    /// IsReadyToRemoveVotingMember: the started voters left are a quorum of the voters left.
    fn ready_to_remove_voter(&self, id: u64) -> bool {
        let left: Vec<&Member> = self.voters().filter(|m| m.id != id).collect();
        reaches_quorum(left.iter().filter(|m| m.is_started()).count(), left.len())
    }

    /// IsReadyToPromoteMember: the learner counts as a started voter.
    fn ready_to_promote(&self) -> bool {
        let members = 1 + self.voters().count();
        let started = 1 + self.voters().filter(|m| m.is_started()).count();
        reaches_quorum(started, members)
    }
}

/// etcd's `nstarted >= nmembers/2 + 1`.
fn reaches_quorum(started: usize, members: usize) -> bool {
    started > members / 2
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: u64, name: &str, is_learner: bool) -> Member {
        Member { id, name: name.into(), peer_urls: vec![format!("http://m{id}:1")], client_urls: vec![], is_learner }
    }

    fn checks(members: Vec<Member>, peers: &[(u64, u64, bool)]) -> Checks<'static> {
        let cluster = Box::leak(Box::new(Cluster { id: 1, members, local_id: 1, removed: vec![] }));
        let view = PeerView { leader_match: 100, peers: peers.iter().map(|&(id, m, a)| (id, (m, a))).collect() };
        Checks { cluster, local_id: 1, strict: true, view: Some(view) }
    }

    #[test]
    fn single_member_as_etcd() {
        let c = checks(vec![member(1, "default", false), member(2, "", true)], &[(1, 100, true), (2, 0, false)]);
        assert_eq!(c.may_add(&member(3, "", false)), Ok(()), "a lone started voter may add one");
        assert_eq!(c.may_promote(2), Err(Error::LearnerNotReady));
        assert_eq!(c.may_remove(1), Err(Error::MemberNotEnoughStarted));
        assert_eq!(c.may_remove(2), Ok(()));
        assert_eq!(c.may_remove(0x1234), Ok(()), "checked at commit: member not found");
        let c = checks(vec![member(1, "default", false), member(2, "", false)], &[(1, 100, true), (2, 0, false)]);
        assert_eq!(c.may_add(&member(3, "", false)), Err(Error::MemberNotEnoughStarted));
        assert_eq!(c.may_add(&member(3, "", true)), Err(Error::Unhealthy));
        assert_eq!(c.may_remove(0x1234), Err(Error::MemberNotEnoughStarted));
    }

    #[test]
    fn learner_in_sync_at_ninety_percent() {
        let c = checks(vec![member(1, "a", false), member(2, "", true)], &[(1, 100, true), (2, 90, true)]);
        assert_eq!(c.may_promote(2), Ok(()));
        let c = checks(vec![member(1, "a", false), member(2, "", true)], &[(1, 100, true), (2, 89, true)]);
        assert_eq!(c.may_promote(2), Err(Error::LearnerNotReady));
    }
}

//! Calls a follower makes on the leader over the peer API, as etcd's follower forwards lease
//! renewals and TimeToLive (peer HTTP `/leases`, `/leases/internal`; etcd's LeaseRenew and
//! LeaseTimeToLive) and promotions (`/members/promote/<id>`; etcd's PromoteMember): ask the
//! leader's peer URLs in turn, again (every 50 ms for leases) while no answer comes (the leader
//! may be changing), within etcd's request timeout; with no leader known by then
//! "etcdserver: no leader", else "etcdserver: request timed out". A promotion's own refusals
//! (not a learner, not in sync, not found) end the asking.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tonic::transport::Channel;

use crate::cluster::{Member, Membership};
use crate::error::{Error, Result};
use crate::proto::ballastpeerpb::{peer_client::PeerClient, LeaseRenewRequest, LeaseTtlRequest, PromoteRequest};

/// etcd's pause between rounds of asking the leader.
const RETRY_PAUSE: Duration = Duration::from_millis(50);

/// The leader's peer channel, kept between calls (a keepalive stream renews every few seconds).
pub struct Forwarder {
    membership: Membership,
    tls: Option<Arc<rustls::ClientConfig>>,
    /// Waited between looks for a leader (etcd waits an election timeout).
    election_timeout: Duration,
    cached: Mutex<Option<(String, Channel)>>,
}

/// What the leader answered to a forwarded TimeToLive: (remaining, granted, keys) or None.
pub type Ttl = Option<super::LeaseTtl>;

impl Forwarder {
    pub fn new(membership: Membership, tls: Option<Arc<rustls::ClientConfig>>, election_timeout: Duration) -> Forwarder {
        Forwarder { membership, tls, election_timeout, cached: Mutex::new(None) }
    }

    /// Renews `ids` on the leader `leader()` names (read again each round), within `timeout`.
    pub async fn renew(&self, leader: impl Fn() -> u64, ids: Vec<i64>, timeout: Duration) -> Result<Vec<i64>> {
        self.ask(leader, timeout, RETRY_PAUSE, |_| None, |mut client| {
            let ids = ids.clone();
            async move { client.lease_renew(LeaseRenewRequest { ids }).await.map(|r| r.into_inner().ttls) }
        })
        .await
    }

    pub async fn time_to_live(&self, leader: impl Fn() -> u64, id: i64, timeout: Duration) -> Result<Ttl> {
        self.ask(leader, timeout, RETRY_PAUSE, |_| None, |mut client| async move {
            let r = client.lease_time_to_live(LeaseTtlRequest { id }).await?.into_inner();
            Ok(r.found.then_some((r.remaining, r.granted, r.keys)))
        })
        .await
    }

    /// Promotes learner `id` on the leader: the member list after it.
    pub async fn promote(&self, leader: impl Fn() -> u64, id: u64, timeout: Duration) -> Result<Vec<Member>> {
        let refusal = |status: &tonic::Status| {
            [Error::LearnerNotReady, Error::MemberNotFound, Error::MemberNotLearner].into_iter().find(|e| tonic::Status::from(e.clone()).message() == status.message())
        };
        self.ask(leader, timeout, Duration::ZERO, refusal, |mut client| async move {
            let r = client.member_promote(PromoteRequest { id }).await?.into_inner();
            Ok(super::server::unlist(r.members))
        })
        .await
    }

    /// `call` on the leader until it answers; `refusal`: the answers that end the asking.
    async fn ask<T, F, Fut>(&self, leader: impl Fn() -> u64, timeout: Duration, pause: Duration, refusal: impl Fn(&tonic::Status) -> Option<Error>, call: F) -> Result<T>
    where
        F: Fn(PeerClient<Channel>) -> Fut,
        Fut: std::future::Future<Output = std::result::Result<T, tonic::Status>>,
    {
        let deadline = Instant::now() + timeout;
        loop {
            let urls = self.membership.current().member(leader()).map(|m| m.peer_urls.clone()).unwrap_or_default();
            if urls.is_empty() {
                // etcd's waitLeader: look again after an election timeout.
                if Instant::now() + self.election_timeout > deadline {
                    tokio::time::sleep_until(deadline.into()).await;
                    return Err(Error::NoLeader);
                }
                tokio::time::sleep(self.election_timeout).await;
                continue;
            }
            for url in &urls {
                let Some(channel) = self.channel(url).await else { continue };
                let left = deadline.saturating_duration_since(Instant::now());
                match tokio::time::timeout(left, call(PeerClient::new(channel))).await {
                    Ok(Ok(answer)) => return Ok(answer),
                    Ok(Err(status)) => {
                        if let Some(e) = refusal(&status) {
                            return Err(e);
                        }
                        if status.code() != tonic::Code::FailedPrecondition {
                            self.forget(url);
                        }
                    }
                    Err(_) => {}
                }
            }
            if Instant::now() + pause >= deadline {
                return Err(Error::Timeout);
            }
            tokio::time::sleep(pause.max(Duration::from_millis(1))).await;
        }
    }

    async fn channel(&self, url: &str) -> Option<Channel> {
        if let Some((u, c)) = self.cached.lock().ok()?.as_ref() {
            if u == url {
                return Some(c.clone());
            }
        }
        let channel = super::dial::connect(url, self.tls.clone()).await.ok()?;
        *self.cached.lock().ok()? = Some((url.to_string(), channel.clone()));
        Some(channel)
    }

    fn forget(&self, url: &str) {
        if let Ok(mut cached) = self.cached.lock() {
            if cached.as_ref().is_some_and(|(u, _)| u == url) {
                *cached = None;
            }
        }
    }
}

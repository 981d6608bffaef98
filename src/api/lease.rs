//! etcd's Lease service (etcd: server/etcdserver/api/v3rpc/lease.go) over gRPC. Grant and
//! revoke go through raft (the id is chosen here, before the proposal, as etcd chooses it);
//! keepalives, TimeToLive and the lease list are answered by the leader's lessor without a raft
//! round trip. A keepalive of an unknown or expired lease answers TTL 0 and keeps the stream
//! open; TimeToLive of an unknown lease answers TTL -1, as etcd's.

use std::pin::Pin;
use std::sync::Arc;

use futures_util::{FutureExt, Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use super::Ctx;
use crate::auth::store::Access;
use crate::auth::AuthInfo;
use crate::error::{Error, Result};
use crate::kv::response::Response as Applied;
use crate::mvcc::store::RangeQuery;
use crate::mvcc::KeyRange;
use crate::proto::ballastpb::internal_request::Request as Write;
use crate::proto::etcdserverpb::lease_server;
use crate::proto::etcdserverpb::*;

/// Keepalive answers a stream may have waiting for its client.
const KEEPALIVE_BUFFER: usize = 1024;
/// Keepalives of one stream renewed in one message to the lessor.
const MAX_KEEPALIVES_PER_BATCH: usize = 1024;

pub struct LeaseService {
    ctx: Arc<Ctx>,
}

impl LeaseService {
    pub fn new(ctx: Arc<Ctx>) -> LeaseService {
        LeaseService { ctx }
    }

    async fn grant(&self, mut r: LeaseGrantRequest) -> Result<LeaseGrantResponse> {
        if r.id == 0 {
            r.id = self.ctx.lease_ids.next();
        }
        match self.ctx.raft.propose(Write::LeaseGrant(r)).await? {
            Applied::LeaseGrant(mut resp) => {
                self.ctx.fill(&mut resp.header);
                Ok(resp)
            }
            other => Err(other.unexpected()),
        }
    }

    /// `who`: the sender when auth is on; the applier checks the lease's keys are writable.
    async fn revoke(&self, r: LeaseRevokeRequest, who: Option<AuthInfo>) -> Result<LeaseRevokeResponse> {
        let header = who.as_ref().map(crate::auth::header);
        match self.ctx.raft.propose_as(Write::LeaseRevoke(r), header).await? {
            Applied::LeaseRevoke(mut resp) => {
                self.ctx.fill(&mut resp.header);
                Ok(resp)
            }
            other => Err(other.unexpected()),
        }
    }

    async fn time_to_live(&self, r: LeaseTimeToLiveRequest, who: Option<AuthInfo>) -> Result<LeaseTimeToLiveResponse> {
        let mut resp = LeaseTimeToLiveResponse { id: r.id, ttl: -1, ..Default::default() };
        // etcd's checkLeaseTimeToLive (only when the keys are asked for): the root role or
        // read permission on each of the lease's keys; the auth store must not change meanwhile.
        let checked_at = match &who {
            Some(who) if r.keys => Some(self.keys_permitted(who, &[r.id], Access::Read).await?),
            _ => None,
        };
        let ttl = leader_time_to_live(&self.ctx, r.id).await?;
        if checked_at.is_some_and(|rev| rev != self.ctx.auth.view().state.revision) {
            return Err(Error::AuthOldRevision);
        }
        if let Some((remaining, granted, keys)) = ttl {
            resp.ttl = remaining;
            resp.granted_ttl = granted;
            if r.keys {
                resp.keys = self.still_on(r.id, keys).await?;
            }
        }
        self.ctx.fill(&mut resp.header);
        Ok(resp)
    }

    /// Of the keys once put with lease `id`, those whose newest record still names it.
    async fn still_on(&self, id: i64, keys: Vec<Vec<u8>>) -> Result<Vec<Vec<u8>>> {
        let rev = self.ctx.status.applied_rev();
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            let q = RangeQuery { range: KeyRange::Single(key.clone()), rev, limit: 0, count_only: false, keys_only: true, sealed: false };
            if self.ctx.shards.scatter_range(&q).await?.kvs.first().is_some_and(|kv| kv.lease == id) {
                out.push(key);
            }
        }
        Ok(out)
    }

    async fn leases(&self, who: Option<AuthInfo>) -> Result<LeaseLeasesResponse> {
        let ids = self.ctx.raft.lease_ids().await?;
        // etcd's checkLeaseLeases: the root role or read permission on every lease's keys.
        if let Some(who) = &who {
            let rev = self.keys_permitted(who, &ids, Access::Read).await?;
            if rev != self.ctx.auth.view().state.revision {
                return Err(Error::AuthOldRevision);
            }
        }
        let mut resp = LeaseLeasesResponse { leases: ids.into_iter().map(|id| LeaseStatus { id }).collect(), ..Default::default() };
        self.ctx.fill(&mut resp.header);
        Ok(resp)
    }
}

impl LeaseService {
    /// The root role, or `access` to every key of `leases`; the auth revision checked at.
    async fn keys_permitted(&self, who: &AuthInfo, leases: &[i64], access: Access) -> Result<u64> {
        keys_permitted(&self.ctx, who, leases, access).await
    }
}

/// The root role, or `access` to every key put with one of `leases` (etcd's lease checks);
/// returns the auth revision checked at. The keys come from the lessor (one call per lease).
async fn keys_permitted(ctx: &Ctx, who: &AuthInfo, leases: &[i64], access: Access) -> Result<u64> {
    let view = ctx.auth.view();
    if view.state.admin(who).is_ok() {
        return Ok(view.state.revision);
    }
    for &id in leases {
        let Some((_, _, keys)) = ctx.raft.lease_time_to_live(id).await? else { continue };
        for key in keys {
            view.permitted(who, &key, &[], access)?;
        }
    }
    Ok(view.state.revision)
}

type Reply<T> = std::result::Result<Response<T>, Status>;
type KeepAlives = Pin<Box<dyn Stream<Item = std::result::Result<LeaseKeepAliveResponse, Status>> + Send>>;

#[tonic::async_trait]
impl lease_server::Lease for LeaseService {
    type LeaseKeepAliveStream = KeepAlives;

    // etcd 3.5 (since 3.5.13): every lease call needs a user when auth is on (requireAuthInfo).
    async fn lease_grant(&self, r: Request<LeaseGrantRequest>) -> Reply<LeaseGrantResponse> {
        // etcd's quotaLeaseServer checks the space before anything else.
        self.ctx.check_quota(crate::quota::LEASE_GRANT_COST_BYTES).await?;
        self.ctx.auth.require(&r)?;
        Ok(Response::new(self.grant(r.into_inner()).await?))
    }
    async fn lease_revoke(&self, r: Request<LeaseRevokeRequest>) -> Reply<LeaseRevokeResponse> {
        let who = self.ctx.auth.require(&r)?;
        Ok(Response::new(self.revoke(r.into_inner(), who).await?))
    }
    async fn lease_time_to_live(&self, r: Request<LeaseTimeToLiveRequest>) -> Reply<LeaseTimeToLiveResponse> {
        let who = self.ctx.auth.require(&r)?;
        Ok(Response::new(self.time_to_live(r.into_inner(), who).await?))
    }
    async fn lease_leases(&self, r: Request<LeaseLeasesRequest>) -> Reply<LeaseLeasesResponse> {
        let who = self.ctx.auth.require(&r)?;
        Ok(Response::new(self.leases(who).await?))
    }

    async fn lease_keep_alive(&self, r: Request<Streaming<LeaseKeepAliveRequest>>) -> Reply<KeepAlives> {
        let (tx, rx) = tokio::sync::mpsc::channel(KEEPALIVE_BUFFER);
        // etcd's checkLeaseRenew, with the stream's token, at each keepalive.
        let sender = self.ctx.auth.enabled().then(|| self.ctx.auth.caller(r.metadata(), r.extensions()));
        let who = match sender {
            Some(Err(e)) => return Err(e.into()),
            Some(Ok(who)) => Some(who.unwrap_or_default()),
            None => None,
        };
        crate::server::shard_front::spawn(keep_alive(self.ctx.clone(), r.into_inner(), tx, who));
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))))
    }
}

/// Renews on the leader's lessor: this member's if it leads, else forwarded (etcd's LeaseRenew).
async fn leader_renew(ctx: &Ctx, ids: Vec<i64>) -> Result<Vec<i64>> {
    if ctx.status.leader() == ctx.cluster.local_id {
        return ctx.raft.lease_renew(ids).await;
    }
    ctx.forward.renew(|| ctx.status.leader(), ids, ctx.raft.timeout()).await
}

/// TimeToLive from the leader's lessor (etcd's LeaseTimeToLive forwards it as renewals).
async fn leader_time_to_live(ctx: &Ctx, id: i64) -> Result<Option<crate::raft::handle::LeaseTtl>> {
    if ctx.status.leader() == ctx.cluster.local_id {
        return ctx.raft.lease_time_to_live(id).await;
    }
    ctx.forward.time_to_live(|| ctx.status.leader(), id, ctx.raft.timeout()).await
}

/// Answers the keepalives in order until the client stops. Those that arrived together go to
/// the lessor as one message (a client keeps all its leases alive on one stream). An error other
/// than an unknown lease (answered TTL 0) ends the stream, as etcd's.
async fn keep_alive(
    ctx: Arc<Ctx>,
    mut requests: Streaming<LeaseKeepAliveRequest>,
    tx: tokio::sync::mpsc::Sender<std::result::Result<LeaseKeepAliveResponse, Status>>,
    who: Option<AuthInfo>,
) {
    // A request that cannot be read (too large, undecodable) ends the stream with its error
    // once the ones before it are answered, as etcd's does.
    let mut unreadable = None;
    while let Some(first) = requests.next().await {
        let first = match first {
            Ok(first) => first,
            Err(status) => {
                let _ = tx.send(Err(status)).await;
                return;
            }
        };
        let mut ids = vec![first.id];
        while ids.len() < MAX_KEEPALIVES_PER_BATCH {
            match requests.next().now_or_never() {
                Some(Some(Ok(req))) => ids.push(req.id),
                Some(Some(Err(status))) => {
                    unreadable = Some(status);
                    break;
                }
                _ => break,
            }
        }
        if let Some(who) = who.as_ref().filter(|_| ctx.auth.enabled()) {
            let checked = match who.revision {
                0 => Err(Error::UserEmpty),
                _ => keys_permitted(&ctx, who, &ids, Access::Write).await,
            };
            let checked = checked.and_then(|rev| if rev == ctx.auth.view().state.revision { Ok(()) } else { Err(Error::AuthOldRevision) });
            if let Err(e) = checked {
                let _ = tx.send(Err(Status::from(e))).await;
                return;
            }
        }
        // etcd takes the header before renewing.
        let mut header = None;
        ctx.fill(&mut header);
        // A client that goes cancels its renewal, as etcd's stream context does: a renewal still
        // looking for a leader must not keep a lease alive for a client that gave up.
        let renewed = tokio::select! {
            renewed = leader_renew(&ctx, ids.clone()) => renewed,
            _ = tx.closed() => return,
        };
        let answers = match renewed {
            Ok(ttls) => ttls,
            Err(e) => {
                let _ = tx.send(Err(Status::from(e))).await;
                return;
            }
        };
        for (id, ttl) in ids.into_iter().zip(answers) {
            if tx.send(Ok(LeaseKeepAliveResponse { header, id, ttl })).await.is_err() {
                return;
            }
        }
        if let Some(status) = unreadable.take() {
            let _ = tx.send(Err(status)).await;
            return;
        }
    }
}

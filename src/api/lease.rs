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
use crate::error::Result;
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

    async fn revoke(&self, r: LeaseRevokeRequest) -> Result<LeaseRevokeResponse> {
        match self.ctx.raft.propose(Write::LeaseRevoke(r)).await? {
            Applied::LeaseRevoke(mut resp) => {
                self.ctx.fill(&mut resp.header);
                Ok(resp)
            }
            other => Err(other.unexpected()),
        }
    }

    async fn time_to_live(&self, r: LeaseTimeToLiveRequest) -> Result<LeaseTimeToLiveResponse> {
        let mut resp = LeaseTimeToLiveResponse { id: r.id, ttl: -1, ..Default::default() };
        if let Some((remaining, granted, keys)) = self.ctx.raft.lease_time_to_live(r.id).await? {
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
            let q = RangeQuery { range: KeyRange::Single(key.clone()), rev, limit: 0, count_only: false, keys_only: true };
            if self.ctx.shards.scatter_range(&q).await?.kvs.first().is_some_and(|kv| kv.lease == id) {
                out.push(key);
            }
        }
        Ok(out)
    }

    async fn leases(&self) -> Result<LeaseLeasesResponse> {
        let ids = self.ctx.raft.lease_ids().await?;
        let mut resp = LeaseLeasesResponse { leases: ids.into_iter().map(|id| LeaseStatus { id }).collect(), ..Default::default() };
        self.ctx.fill(&mut resp.header);
        Ok(resp)
    }
}

type Reply<T> = std::result::Result<Response<T>, Status>;
type KeepAlives = Pin<Box<dyn Stream<Item = std::result::Result<LeaseKeepAliveResponse, Status>> + Send>>;

#[tonic::async_trait]
impl lease_server::Lease for LeaseService {
    type LeaseKeepAliveStream = KeepAlives;

    async fn lease_grant(&self, r: Request<LeaseGrantRequest>) -> Reply<LeaseGrantResponse> {
        Ok(Response::new(self.grant(r.into_inner()).await?))
    }
    async fn lease_revoke(&self, r: Request<LeaseRevokeRequest>) -> Reply<LeaseRevokeResponse> {
        Ok(Response::new(self.revoke(r.into_inner()).await?))
    }
    async fn lease_time_to_live(&self, r: Request<LeaseTimeToLiveRequest>) -> Reply<LeaseTimeToLiveResponse> {
        Ok(Response::new(self.time_to_live(r.into_inner()).await?))
    }
    async fn lease_leases(&self, _: Request<LeaseLeasesRequest>) -> Reply<LeaseLeasesResponse> {
        Ok(Response::new(self.leases().await?))
    }

    async fn lease_keep_alive(&self, r: Request<Streaming<LeaseKeepAliveRequest>>) -> Reply<KeepAlives> {
        let (tx, rx) = tokio::sync::mpsc::channel(KEEPALIVE_BUFFER);
        tokio::spawn(keep_alive(self.ctx.clone(), r.into_inner(), tx));
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))))
    }
}

/// Answers the keepalives in order until the client stops. Those that arrived together go to
/// the lessor as one message (a client keeps all its leases alive on one stream). An error other
/// than an unknown lease (answered TTL 0) ends the stream, as etcd's.
async fn keep_alive(ctx: Arc<Ctx>, mut requests: Streaming<LeaseKeepAliveRequest>, tx: tokio::sync::mpsc::Sender<std::result::Result<LeaseKeepAliveResponse, Status>>) {
    while let Some(Ok(first)) = requests.next().await {
        let mut ids = vec![first.id];
        while ids.len() < MAX_KEEPALIVES_PER_BATCH {
            match requests.next().now_or_never() {
                Some(Some(Ok(req))) => ids.push(req.id),
                _ => break,
            }
        }
        // etcd takes the header before renewing.
        let mut header = None;
        ctx.fill(&mut header);
        let answers = match ctx.raft.lease_renew(ids.clone()).await {
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
    }
}

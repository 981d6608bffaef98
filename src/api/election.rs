//! etcd's Election service (v3electionpb.Election) over gRPC: `concurrency::election`, every
//! error sent as code Unknown with its message, as etcd's server sends them.

use crate::auth::as_caller;
use std::pin::Pin;
use std::sync::Arc;

use futures_util::Stream;
use tonic::{Request, Response, Status};

use super::Ctx;
use crate::concurrency::election;
use crate::error::Error;
use crate::proto::v3electionpb::election_server;
use crate::proto::v3electionpb::*;

/// Leader changes an Observe stream may have waiting for its client.
const OBSERVE_BUFFER: usize = 16;

pub struct ElectionService {
    ctx: Arc<Ctx>,
}

impl ElectionService {
    pub fn new(ctx: Arc<Ctx>) -> ElectionService {
        ElectionService { ctx }
    }
}

type Reply<T> = Result<Response<T>, Status>;
type Observations = Pin<Box<dyn Stream<Item = Result<LeaderResponse, Status>> + Send>>;

fn leader_of(leader: Option<LeaderKey>) -> Result<LeaderKey, Status> {
    leader.ok_or_else(|| Error::LeaderFieldMissing.into_unknown())
}

#[tonic::async_trait]
impl election_server::Election for ElectionService {
    type ObserveStream = Observations;

    async fn campaign(&self, r: Request<CampaignRequest>) -> Reply<CampaignResponse> {
        let who = self.ctx.auth.sender(&r).map_err(|e| e.into_unknown())?;
        let r = r.into_inner();
        let (header, leader) = as_caller(who, election::campaign(&self.ctx, &r.name, r.lease, r.value)).await.map_err(|e| e.into_unknown())?;
        Ok(Response::new(CampaignResponse { header, leader: Some(leader) }))
    }

    async fn proclaim(&self, r: Request<ProclaimRequest>) -> Reply<ProclaimResponse> {
        let who = self.ctx.auth.sender(&r).map_err(|e| e.into_unknown())?;
        let r = r.into_inner();
        let leader = leader_of(r.leader)?;
        let header = as_caller(who, election::proclaim(&self.ctx, &leader, r.value)).await.map_err(|e| e.into_unknown())?;
        Ok(Response::new(ProclaimResponse { header }))
    }

    async fn leader(&self, r: Request<LeaderRequest>) -> Reply<LeaderResponse> {
        let who = self.ctx.auth.sender(&r).map_err(|e| e.into_unknown())?;
        let (header, kv) = as_caller(who, election::leader(&self.ctx, &r.into_inner().name)).await.map_err(|e| e.into_unknown())?;
        Ok(Response::new(LeaderResponse { header, kv: Some(kv) }))
    }

    async fn resign(&self, r: Request<ResignRequest>) -> Reply<ResignResponse> {
        let who = self.ctx.auth.sender(&r).map_err(|e| e.into_unknown())?;
        let leader = leader_of(r.into_inner().leader)?;
        let header = as_caller(who, election::resign(&self.ctx, &leader)).await.map_err(|e| e.into_unknown())?;
        Ok(Response::new(ResignResponse { header }))
    }

    async fn observe(&self, r: Request<LeaderRequest>) -> Reply<Observations> {
        let (tx, rx) = tokio::sync::mpsc::channel(OBSERVE_BUFFER);
        let who = self.ctx.auth.sender(&r).map_err(|e| e.into_unknown())?;
        let (ctx, name) = (self.ctx.clone(), r.into_inner().name);
        tokio::spawn(as_caller(who, async move {
            let send = |header, kv| {
                let tx = tx.clone();
                async move { tx.send(Ok(LeaderResponse { header, kv: Some(kv) })).await.is_ok() }
            };
            // A broken internal watch ends the stream with status OK, as etcd's does.
            let _ = election::observe(&ctx, &name, send).await;
        }));
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))))
    }
}

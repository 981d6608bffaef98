//! etcd's KV service (etcd: server/etcdserver/api/v3rpc/key.go) over gRPC: each call is
//! `kv::Kv`'s, its error mapped to etcd's status once (`From<Error> for Status`).

use std::future::Future;
use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::Ctx;
use crate::error::{Error, Result};
use crate::kv::Kv;
use crate::proto::etcdserverpb::kv_server;
use crate::proto::etcdserverpb::*;

pub struct KvService {
    kv: Kv,
}

impl KvService {
    pub fn new(ctx: Arc<Ctx>) -> KvService {
        KvService { kv: Kv::new(ctx) }
    }
}

type Reply<T> = std::result::Result<Response<T>, Status>;

impl KvService {
    /// The sender, when auth is on (one atomic load when it is off).
    fn who<T>(&self, r: &Request<T>) -> Result<Option<crate::auth::AuthInfo>> {
        let auth = &self.kv.ctx().auth;
        if !auth.enabled() {
            return Ok(None);
        }
        auth.who(r).map(Some)
    }
}

async fn reply<T>(call: impl Future<Output = Result<T>>) -> Reply<T> {
    Ok(Response::new(call.await?))
}

#[tonic::async_trait]
impl kv_server::Kv for KvService {
    async fn range(&self, r: Request<RangeRequest>) -> Reply<RangeResponse> {
        if !r.get_ref().serializable && self.kv.ctx().status.is_learner() {
            return Err(Error::NotSupportedForLearner.into());
        }
        let who = self.who(&r)?;
        reply(self.kv.range_as(r.into_inner(), who)).await
    }
    async fn put(&self, r: Request<PutRequest>) -> Reply<PutResponse> {
        let who = self.who(&r)?;
        reply(self.kv.put_as(r.into_inner(), who)).await
    }
    async fn delete_range(&self, r: Request<DeleteRangeRequest>) -> Reply<DeleteRangeResponse> {
        let who = self.who(&r)?;
        reply(self.kv.delete_range_as(r.into_inner(), who)).await
    }
    async fn txn(&self, r: Request<TxnRequest>) -> Reply<TxnResponse> {
        let who = self.who(&r)?;
        reply(self.kv.txn_as(r.into_inner(), who)).await
    }
    /// Admin only, as etcd 3.5.33's kvServer.Compact (`isPermitted`); 3.5.1 let anyone compact.
    async fn compact(&self, r: Request<CompactionRequest>) -> Reply<CompactionResponse> {
        self.kv.ctx().auth.admin(&r)?;
        reply(self.kv.compact(r.into_inner())).await
    }
}

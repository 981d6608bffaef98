//! etcd's Lock service (v3lockpb.Lock) over gRPC: `concurrency::mutex`, every error sent as
//! code Unknown with its message, as etcd's server sends them.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::Ctx;
use crate::auth::as_caller;
use crate::concurrency::mutex;
use crate::proto::v3lockpb::lock_server;
use crate::proto::v3lockpb::*;

pub struct LockService {
    ctx: Arc<Ctx>,
}

impl LockService {
    pub fn new(ctx: Arc<Ctx>) -> LockService {
        LockService { ctx }
    }
}

#[tonic::async_trait]
impl lock_server::Lock for LockService {
    async fn lock(&self, r: Request<LockRequest>) -> Result<Response<LockResponse>, Status> {
        let who = self.ctx.auth.sender(&r).map_err(|e| e.into_unknown())?;
        let r = r.into_inner();
        let (header, key) = as_caller(who, mutex::lock(&self.ctx, &r.name, r.lease)).await.map_err(|e| e.into_unknown())?;
        Ok(Response::new(LockResponse { header, key }))
    }

    async fn unlock(&self, r: Request<UnlockRequest>) -> Result<Response<UnlockResponse>, Status> {
        let who = self.ctx.auth.sender(&r).map_err(|e| e.into_unknown())?;
        let header = as_caller(who, mutex::unlock(&self.ctx, &r.into_inner().key)).await.map_err(|e| e.into_unknown())?;
        Ok(Response::new(UnlockResponse { header }))
    }
}

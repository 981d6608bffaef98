//! etcd's Maintenance service. Status reports the compat version, db size (bytes held by the
//! MVCC store), leader and raft progress. Alarm requests go through raft, as in etcd.
//! Defragment writes a fresh snapshot. Hashes, snapshot streaming, move-leader and downgrade are not implemented yet.

use std::pin::Pin;
use std::sync::Arc;

use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use super::Ctx;
use crate::error::{Error, Missing};
use crate::kv::response::Response as Applied;
use crate::proto::ballastpb::internal_request::Request as Write;
use crate::proto::etcdserverpb::maintenance_server::Maintenance;
use crate::proto::etcdserverpb::*;

pub struct MaintenanceService {
    ctx: Arc<Ctx>,
}

impl MaintenanceService {
    pub fn new(ctx: Arc<Ctx>) -> MaintenanceService {
        MaintenanceService { ctx }
    }
}

type Reply<T> = Result<Response<T>, Status>;

fn unimplemented<T>(what: Missing) -> Reply<T> {
    Err(Error::Unimplemented(what).into())
}

#[tonic::async_trait]
impl Maintenance for MaintenanceService {
    async fn alarm(&self, r: Request<AlarmRequest>) -> Reply<AlarmResponse> {
        match self.ctx.raft.propose(Write::Alarm(r.into_inner())).await? {
            Applied::Alarm(mut resp) => {
                self.ctx.fill(&mut resp.header);
                Ok(Response::new(resp))
            }
            other => Err(other.unexpected().into()),
        }
    }

    async fn status(&self, _r: Request<StatusRequest>) -> Reply<StatusResponse> {
        let s = &self.ctx.status;
        let db_size = s.db_size_bytes() as i64;
        Ok(Response::new(StatusResponse {
            header: self.ctx.header(),
            version: self.ctx.compat_version.clone(),
            db_size,
            leader: s.leader(),
            raft_index: s.commit_index(),
            raft_term: s.term(),
            raft_applied_index: s.applied_index(),
            errors: vec![],
            db_size_in_use: s.db_size_in_use_bytes() as i64,
            is_learner: false,
        }))
    }

    /// Online defragmentation: a fresh snapshot rewrites every shard's segment compactly
    /// (shards keep serving while they write) and releases the WAL before it.
    async fn defragment(&self, _r: Request<DefragmentRequest>) -> Reply<DefragmentResponse> {
        self.ctx.raft.snapshot().await?;
        Ok(Response::new(DefragmentResponse { header: self.ctx.header() }))
    }

    async fn hash(&self, _r: Request<HashRequest>) -> Reply<HashResponse> {
        unimplemented(Missing::Hash)
    }

    async fn hash_kv(&self, _r: Request<HashKvRequest>) -> Reply<HashKvResponse> {
        unimplemented(Missing::HashKv)
    }

    type SnapshotStream = Pin<Box<dyn Stream<Item = Result<SnapshotResponse, Status>> + Send>>;

    async fn snapshot(&self, _r: Request<SnapshotRequest>) -> Reply<Self::SnapshotStream> {
        unimplemented(Missing::Snapshot)
    }

    async fn move_leader(&self, _r: Request<MoveLeaderRequest>) -> Reply<MoveLeaderResponse> {
        unimplemented(Missing::MoveLeader)
    }

    async fn downgrade(&self, _r: Request<DowngradeRequest>) -> Reply<DowngradeResponse> {
        unimplemented(Missing::Downgrade)
    }
}

//! etcd's Cluster service: MemberList from the configured membership (clients call it to
//! discover endpoints). Membership changes arrive with multi-member raft.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::Ctx;
use crate::error::{Error, Missing};
use crate::proto::etcdserverpb::cluster_server::Cluster;
use crate::proto::etcdserverpb::*;

pub struct ClusterService {
    ctx: Arc<Ctx>,
}

impl ClusterService {
    pub fn new(ctx: Arc<Ctx>) -> ClusterService {
        ClusterService { ctx }
    }
}

type Reply<T> = Result<Response<T>, Status>;

fn unimplemented<T>() -> Reply<T> {
    Err(Error::Unimplemented(Missing::MembershipChanges).into())
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_add(&self, _r: Request<MemberAddRequest>) -> Reply<MemberAddResponse> {
        unimplemented()
    }

    async fn member_remove(&self, _r: Request<MemberRemoveRequest>) -> Reply<MemberRemoveResponse> {
        unimplemented()
    }

    async fn member_update(&self, _r: Request<MemberUpdateRequest>) -> Reply<MemberUpdateResponse> {
        unimplemented()
    }

    async fn member_list(&self, _r: Request<MemberListRequest>) -> Reply<MemberListResponse> {
        let cluster = self.ctx.membership.current();
        let members = cluster
            .members
            .iter()
            .map(|m| Member {
                id: m.id,
                name: m.name.clone(),
                peer_ur_ls: m.peer_urls.clone(),
                client_ur_ls: if m.id == cluster.local_id { self.ctx.client_urls.clone() } else { m.client_urls.clone() },
                is_learner: m.is_learner,
            })
            .collect();
        Ok(Response::new(MemberListResponse { header: self.ctx.header_without_revision(), members }))
    }

    async fn member_promote(&self, _r: Request<MemberPromoteRequest>) -> Reply<MemberPromoteResponse> {
        unimplemented()
    }
}

//! etcd's Maintenance service. Status reports the compat version, db size (bytes held by the
//! MVCC store), leader and raft progress. Alarm requests go through raft, as in etcd.
//! Defragment writes a fresh snapshot; HashKV is etcd's (`mvcc/hash.rs`). MoveLeader hands
//! leadership over by raft's leader transfer. Snapshot streams etcd's bolt file
//! (`snapshot.rs`, `src/export/`). Downgrade is not implemented yet.

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

/// How often MoveLeader looks whether its target leads yet (etcd: every tick).
const LEADER_POLL_INTERVAL: std::time::Duration = std::time::Duration::from_millis(10);

pub struct MaintenanceService {
    ctx: Arc<Ctx>,
}

impl MaintenanceService {
    pub fn new(ctx: Arc<Ctx>) -> MaintenanceService {
        MaintenanceService { ctx }
    }

    /// etcd's HashKV at `rev` (0: the current revision): (hash, compaction revision, current
    /// revision). A revision below the compaction, or beyond the current one, is refused.
    async fn hash_kv_at(&self, rev: i64) -> Result<(u32, i64, i64), Status> {
        let (current, compact) = (self.ctx.status.applied_rev(), self.ctx.status.compact_rev());
        if rev > 0 && rev < compact {
            return Err(Error::Compacted.into());
        }
        if rev > current {
            return Err(Error::FutureRev.into());
        }
        let at = if rev == 0 { current } else { rev };
        let records = self.ctx.shards.hash_records(at).await?;
        // Sorting and joining a million records takes a while: not on the thread serving this
        // connection, which may be a shard's.
        let hash = tokio::task::spawn_blocking(move || crate::mvcc::hash::hash(records, compact))
            .await
            .map_err(|e| Error::Internal(format!("HashKV: {e}")))?;
        Ok((hash, compact, current))
    }

    fn header(&self, rev: i64) -> ResponseHeader {
        let mut h = Some(ResponseHeader { revision: rev, ..Default::default() });
        self.ctx.fill(&mut h);
        h.unwrap_or_default()
    }
}

type Reply<T> = Result<Response<T>, Status>;

fn unimplemented<T>(what: Missing) -> Reply<T> {
    Err(Error::Unimplemented(what).into())
}

#[tonic::async_trait]
impl Maintenance for MaintenanceService {
    async fn alarm(&self, r: Request<AlarmRequest>) -> Reply<AlarmResponse> {
        // etcd's authMaintenanceServer: listing needs a user, changing alarms the root role.
        if r.get_ref().action == crate::proto::etcdserverpb::alarm_request::AlarmAction::Get as i32 {
            self.ctx.auth.require(&r)?;
        } else {
            self.ctx.auth.admin(&r)?;
        }
        match self.ctx.raft.propose(Write::Alarm(r.into_inner())).await? {
            Applied::Alarm(mut resp) => {
                self.ctx.fill(&mut resp.header);
                Ok(Response::new(resp))
            }
            other => Err(other.unexpected().into()),
        }
    }

    async fn status(&self, r: Request<StatusRequest>) -> Reply<StatusResponse> {
        self.ctx.auth.require(&r)?;
        let s = &self.ctx.status;
        let db_size = s.db_size_bytes() as i64;
        let applied = s.applied_index();
        Ok(Response::new(StatusResponse {
            header: self.ctx.header(),
            version: self.ctx.compat_version.clone(),
            db_size,
            leader: s.leader(),
            // The applied index is published as each entry applies, the commit index at the
            // end of the turn: never below what is applied, as etcd's.
            raft_index: s.commit_index().max(applied),
            raft_term: s.term(),
            raft_applied_index: applied,
            errors: status_errors(s),
            db_size_in_use: s.db_size_in_use_bytes() as i64,
            is_learner: s.is_learner(),
        }))
    }

    /// Online defragmentation: a fresh snapshot rewrites every shard's segment compactly
    /// (shards keep serving while they write) and releases the WAL before it.
    async fn defragment(&self, r: Request<DefragmentRequest>) -> Reply<DefragmentResponse> {
        self.ctx.auth.maintenance_admin(&r)?;
        let (m, started) = (crate::metrics::handles(), std::time::Instant::now());
        let inflight = crate::metrics::Raised::new(&m.defrag_inflight);
        self.ctx.raft.snapshot().await?;
        drop(inflight);
        m.defrag_seconds.record(started.elapsed().as_secs_f64());
        // etcd answers an empty DefragmentResponse, without a header.
        Ok(Response::new(DefragmentResponse { header: None }))
    }

    /// etcd hashes its whole bolt file, which no other store can reproduce; ballast answers the
    /// HashKV of the current revision (equal on members of one ballast cluster).
    async fn hash(&self, r: Request<HashRequest>) -> Reply<HashResponse> {
        self.ctx.auth.maintenance_admin(&r)?;
        let started = std::time::Instant::now();
        let (hash, _, rev) = self.hash_kv_at(0).await?;
        crate::metrics::handles().hash_seconds.record(started.elapsed().as_secs_f64());
        Ok(Response::new(HashResponse { header: Some(self.header(rev)), hash }))
    }

    async fn hash_kv(&self, r: Request<HashKvRequest>) -> Reply<HashKvResponse> {
        self.ctx.auth.maintenance_admin(&r)?;
        let started = std::time::Instant::now();
        let (hash, compact_revision, rev) = self.hash_kv_at(r.into_inner().revision).await?;
        crate::metrics::handles().hash_rev_seconds.record(started.elapsed().as_secs_f64());
        Ok(Response::new(HashKvResponse { header: Some(self.header(rev)), hash, compact_revision }))
    }

    type SnapshotStream = Pin<Box<dyn Stream<Item = Result<SnapshotResponse, Status>> + Send>>;

    async fn snapshot(&self, r: Request<SnapshotRequest>) -> Reply<Self::SnapshotStream> {
        self.ctx.auth.maintenance_admin(&r)?;
        let chunks = super::snapshot::snapshot(&self.ctx).await?;
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(chunks))))
    }

    /// etcd's MoveLeader: on the leader only, to a voting member; answered once the target
    /// leads (polled every `LEADER_POLL_INTERVAL`; etcd waits on the client's deadline, ballast at most the
    /// request timeout).
    async fn move_leader(&self, r: Request<MoveLeaderRequest>) -> Reply<MoveLeaderResponse> {
        self.ctx.auth.admin(&r)?;
        let target = r.into_inner().target_id;
        let status = &self.ctx.status;
        if status.leader() != status.member_id {
            return Err(Error::NotLeader.into());
        }
        if self.ctx.membership.current().member(target).is_none_or(|m| m.is_learner) {
            return Err(Error::BadLeaderTransferee.into());
        }
        crate::log::info("leadership transfer starting", &[("transferee-member-id", format!("{target:x}"))]);
        self.ctx.raft.transfer_leader(target)?;
        let until = tokio::time::Instant::now() + self.ctx.raft.timeout();
        while status.leader() != target {
            if tokio::time::Instant::now() >= until {
                return Err(Error::LeaderTransferTimeout.into());
            }
            tokio::time::sleep(LEADER_POLL_INTERVAL).await;
        }
        // etcd answers an empty MoveLeaderResponse, without a header.
        Ok(Response::new(MoveLeaderResponse { header: None }))
    }

    async fn downgrade(&self, r: Request<DowngradeRequest>) -> Reply<DowngradeResponse> {
        self.ctx.auth.admin(&r)?;
        unimplemented(Missing::Downgrade)
    }
}

/// etcd's Status errors: "etcdserver: no leader" without a leader, then each raised alarm as
/// gogoproto's text of its AlarmMember (`memberID:<id> alarm:<TYPE> `, a number for a type
/// the proto does not name).
fn status_errors(s: &crate::status::ServerStatus) -> Vec<String> {
    let no_leader = (s.leader() == 0).then(|| crate::error::Error::NoLeader.to_string());
    let alarms = s.alarm_members().iter().map(|&(member, alarm)| {
        let name = AlarmType::try_from(alarm).map_or_else(|_| alarm.to_string(), |a| a.as_str_name().to_string());
        format!("memberID:{member} alarm:{name} ")
    }).collect::<Vec<_>>();
    no_leader.into_iter().chain(alarms).collect()
}

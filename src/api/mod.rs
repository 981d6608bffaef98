//! The gRPC front end: one file per etcd service, each a thin tonic adapter. Handlers run on
//! the tokio runtime; KV calls are `kv::Kv`'s (validation with etcd's exact errors, then the
//! raft core or the shards), the others reach the raft core or the server's state directly and
//! fill etcd's response header. `Ctx` is everything a handler may reach.

pub mod auth;
pub mod cluster;
pub mod election;
pub mod health;
pub mod kv;
pub mod lease;
pub mod lock;
pub mod maintenance;
pub mod snapshot;
pub mod watch;

use std::sync::Arc;

use crate::proto::etcdserverpb::ResponseHeader;
use crate::raft::handle::RaftHandle;
use crate::shard::mailbox::Shards;
use crate::status::ServerStatus;

/// etcd's interceptors on a learner: of the gRPC calls it serves only these (Range only
/// serializable: `KvService::range` checks); any other gets "rpc not supported for learner"
/// (`server/client_service.rs`, and the gateway's `Call::open`).
pub fn learner_serves(grpc_path: &str) -> bool {
    matches!(grpc_path, "/etcdserverpb.Maintenance/Status" | "/etcdserverpb.KV/Range" | "/etcdserverpb.Maintenance/Snapshot")
}

pub struct Ctx {
    pub raft: RaftHandle,
    pub shards: Shards,
    pub status: Arc<ServerStatus>,
    /// The membership this member booted with (its ids).
    pub cluster: crate::cluster::Cluster,
    /// The live membership (changed by applied member add/remove/update/promote).
    pub membership: crate::cluster::Membership,
    pub client_urls: Vec<String>,
    pub max_request_bytes: usize,
    pub max_txn_ops: usize,
    /// The etcd version whose API ballast offers (`--compat-version`).
    pub compat_version: String,
    pub quota: crate::quota::Quota,
    pub watch: crate::watch::WatchHub,
    /// Server-chosen lease ids.
    pub lease_ids: crate::lease::IdGenerator,
    /// The front end's copy of the auth state, and the tokens.
    pub auth: Arc<crate::auth::AuthGuard>,
    /// Calls a follower forwards to the leader (lease renewals and TimeToLive).
    pub forward: crate::peer::forward::Forwarder,
    /// `--data-dir`: Maintenance.Snapshot writes its temporary file there.
    pub data_dir: std::path::PathBuf,
}

impl Ctx {
    /// etcd's header.fill: ids and term always; the revision when the handler has none.
    pub fn fill(&self, header: &mut Option<ResponseHeader>) {
        let h = header.get_or_insert_with(ResponseHeader::default);
        h.cluster_id = self.status.cluster_id;
        h.member_id = self.status.member_id;
        h.raft_term = self.status.term();
        if h.revision == 0 {
            h.revision = self.status.applied_rev();
        }
    }

    /// While the NOSPACE alarm is raised a write is refused before it is proposed, as etcd's
    /// capped applier would refuse it (after validation and the token's check, before the
    /// permission's): it costs no WAL space on a disk that may be full.
    pub fn check_nospace(&self, cost_bytes: u64) -> crate::error::Result<()> {
        if cost_bytes > 0 && self.status.nospace() {
            return Err(crate::error::Error::NoSpace);
        }
        Ok(())
    }

    /// etcd's quotaKVServer: a write that does not fit raises NOSPACE (through raft, like every
    /// alarm) and is refused, before anything else is checked (an invalid request too).
    pub async fn check_quota(&self, cost_bytes: u64) -> crate::error::Result<()> {
        if self.quota.available(self.status.db_size_bytes(), cost_bytes) {
            return Ok(());
        }
        // This member's raised already: not proposed again (etcd proposes it at every
        // refusal), so refused writes cost no WAL space on a disk that may be full.
        let nospace = crate::proto::etcdserverpb::AlarmType::Nospace as i32;
        if !self.status.alarm_members().contains(&(self.status.member_id, nospace)) {
            let alarm = crate::proto::etcdserverpb::AlarmRequest {
                action: crate::proto::etcdserverpb::alarm_request::AlarmAction::Activate as i32,
                member_id: self.status.member_id,
                alarm: nospace,
            };
            let _ = self.raft.propose(crate::proto::ballastpb::internal_request::Request::Alarm(alarm)).await;
        }
        Err(crate::error::Error::NoSpace)
    }

    /// A raft round trip, as etcd's auth reads (AuthStatus, UserGet/List, RoleGet/List) take:
    /// they go through its log, so a member without quorum answers none from a state that may
    /// be stale, and fails as a write does. An alarm listing serves (a no-op at apply); once it
    /// is applied here, so is every auth change committed before it.
    pub async fn through_raft(&self) -> crate::error::Result<()> {
        let list = crate::proto::etcdserverpb::AlarmRequest { action: crate::proto::etcdserverpb::alarm_request::AlarmAction::Get as i32, ..Default::default() };
        self.raft.propose(crate::proto::ballastpb::internal_request::Request::Alarm(list)).await.map(|_| ())
    }

    /// The header etcd's Cluster service sends: ids and term, no revision.
    pub fn header_without_revision(&self) -> Option<ResponseHeader> {
        Some(ResponseHeader {
            cluster_id: self.status.cluster_id,
            member_id: self.status.member_id,
            raft_term: self.status.term(),
            revision: 0,
        })
    }

    pub fn header(&self) -> Option<ResponseHeader> {
        let mut h = None;
        self.fill(&mut h);
        h
    }
}

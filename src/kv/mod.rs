//! etcd's KV semantics, callable without gRPC: `Kv` takes and returns etcd's request and
//! response types and `crate::error::Result`, for every front end (the gRPC KV service, and
//! services that read and write keys themselves). A request is validated with etcd's checks
//! and errors (`validate`), then writes and txns go through raft and Range reads the shards at
//! the applied revision, after a ReadIndex unless `serializable`.
//!
//! Below the facade, in the order a write meets them:
//!
//! * `apply` — a committed request → revision assignment, quota, alarms.
//! * `txn` — etcd's put / delete / txn semantics over a `view` (all shards, or one shard's own
//!   store when a txn's keys all live there).
//! * `range` — etcd's Range semantics over a view (scatter, merge, filter, sort, limit).
//! * `view` — `KvView`: the keyspace seen through the shards, or through one shard's store.
//! * `response` — what applying a write answers; `delivery` — the answers the raft core and
//!   the shards send back to waiting callers (through `reply`).

pub mod apply;
pub mod delivery;
pub mod linear_read;
pub mod range;
pub mod response;
pub mod txn;
pub mod validate;
pub mod view;

use std::sync::Arc;

use prost::Message as _;

use crate::api::Ctx;
use crate::auth::AuthInfo;
use crate::proto::ballastpb::AuthHeader;
use crate::error::{Error, Result};
use crate::proto::ballastpb::internal_request::Request as Write;
use crate::proto::etcdserverpb::*;
use response::Response;

/// etcd's KV calls over the server's context.
#[derive(Clone)]
pub struct Kv {
    ctx: Arc<Ctx>,
}

impl Kv {
    pub fn new(ctx: Arc<Ctx>) -> Kv {
        Kv { ctx }
    }

    pub fn ctx(&self) -> &Arc<Ctx> {
        &self.ctx
    }

    /// Range as the task's caller (`auth::as_caller`: Lock and Election), else unchecked.
    pub async fn range(&self, r: RangeRequest) -> Result<RangeResponse> {
        self.range_as(r, crate::auth::scoped_caller()).await
    }

    /// `who`: the sender when auth is on (nobody: `AuthInfo::default()`), None when it is off.
    /// Checked after etcd's validation, against the front end's copy of the auth state.
    pub async fn range_as(&self, r: RangeRequest, who: Option<AuthInfo>) -> Result<RangeResponse> {
        validate::check_range(&r)?;
        let started = std::time::Instant::now();
        let result = self.range_valid(&r, who).await;
        crate::slow_request::range(started, &r, &result);
        result
    }

    async fn range_valid(&self, r: &RangeRequest, who: Option<AuthInfo>) -> Result<RangeResponse> {
        if !r.serializable {
            if let Some(resp) = self.read_in_one_hop(r, who.is_some()).await? {
                return Ok(resp);
            }
            self.ctx.raft.read_index().await?;
        }
        if let Some(who) = &who {
            self.ctx.auth.view().read(who, &r.key, &r.range_end)?;
        }
        let mut resp = range::range_on_shards(&self.ctx.shards, r, &self.ctx.status).await?;
        // etcd's doSerialize: the auth store changed while the read was served.
        if let Some(who) = &who {
            if who.revision != 0 && who.revision != self.ctx.auth.view().state.revision {
                return Err(Error::AuthOldRevision);
            }
        }
        self.ctx.fill(&mut resp.header);
        Ok(resp)
    }

    /// A linearizable read without auth that one shard answers: read index and range in one
    /// hop (`linear_read.rs`). None: not such a read, or a compaction overtook it after its
    /// index passed; either way the caller reads the usual way (after a compaction, asking
    /// the index again: rare).
    async fn read_in_one_hop(&self, r: &RangeRequest, auth: bool) -> Result<Option<RangeResponse>> {
        if auth {
            return Ok(None);
        }
        let Some((shard, query)) = linear_read::plan(r, &self.ctx.shards) else { return Ok(None) };
        match self.ctx.raft.read_range(shard, query).await {
            Ok(part) => {
                crate::metrics::handles().count_ranges(1);
                let rev = part.rev;
                let mut resp = range::finish(r, part, rev);
                self.ctx.fill(&mut resp.header);
                Ok(Some(resp))
            }
            Err(Error::Compacted) => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub async fn put(&self, r: PutRequest) -> Result<PutResponse> {
        self.put_as(r, crate::auth::scoped_caller()).await
    }

    pub async fn put_as(&self, r: PutRequest, who: Option<AuthInfo>) -> Result<PutResponse> {
        let cost = crate::quota::cost_put(&r);
        self.ctx.check_quota(cost).await?;
        validate::check_put(&r)?;
        let auth = self.checked(who, |v, who| v.put(who, &r))?;
        self.ctx.check_nospace(cost)?;
        let size = r.encoded_len();
        match self.write(Write::Put(r), size, auth).await? {
            Response::Put(resp) => Ok(resp),
            other => Err(other.unexpected()),
        }
    }

    pub async fn delete_range(&self, r: DeleteRangeRequest) -> Result<DeleteRangeResponse> {
        self.delete_range_as(r, crate::auth::scoped_caller()).await
    }

    pub async fn delete_range_as(&self, r: DeleteRangeRequest, who: Option<AuthInfo>) -> Result<DeleteRangeResponse> {
        validate::check_delete(&r)?;
        let auth = self.checked(who, |v, who| v.delete_range(who, &r))?;
        let size = r.encoded_len();
        match self.write(Write::DeleteRange(r), size, auth).await? {
            Response::DeleteRange(resp) => Ok(resp),
            other => Err(other.unexpected()),
        }
    }

    pub async fn txn(&self, r: TxnRequest) -> Result<TxnResponse> {
        self.txn_as(r, crate::auth::scoped_caller()).await
    }

    pub async fn txn_as(&self, r: TxnRequest, who: Option<AuthInfo>) -> Result<TxnResponse> {
        let cost = crate::quota::cost_txn(&r);
        self.ctx.check_quota(cost).await?;
        validate::check_txn(&r, self.ctx.max_txn_ops)?;
        let auth = self.checked(who, |v, who| v.txn(who, &r))?;
        self.ctx.check_nospace(cost)?;
        // etcd serves a read-only txn without raft, so `--max-request-bytes` does not bound it
        // (gRPC's limit, that plus 512 KiB, still does).
        if txn::is_read_only(&r) {
            let (started, logged) = (std::time::Instant::now(), r.clone());
            let result = self.txn_proposed(r, 0, auth).await;
            crate::slow_request::read_only_txn(started, &logged, &result);
            return result;
        }
        let size = r.encoded_len();
        self.txn_proposed(r, size, auth).await
    }

    async fn txn_proposed(&self, r: TxnRequest, size_bytes: usize, auth: Option<AuthHeader>) -> Result<TxnResponse> {
        match self.write(Write::Txn(r), size_bytes, auth).await? {
            Response::Txn(resp) => Ok(resp),
            other => Err(other.unexpected()),
        }
    }

    /// Returns once the compaction is logically applied; with `physical` once every shard has
    /// also dropped the history (as etcd).
    pub async fn compact(&self, r: CompactionRequest) -> Result<CompactionResponse> {
        let size = r.encoded_len();
        let physical = r.physical;
        match self.write(Write::Compaction(r), size, None).await? {
            Response::Compaction(resp, done) => {
                if physical {
                    for d in done {
                        d.await.map_err(|_| Error::Stopped)?;
                    }
                }
                Ok(resp)
            }
            other => Err(other.unexpected()),
        }
    }

    /// With auth on, `check` against the front end's auth state; the header the write carries
    /// into raft, where the applier refuses it if the auth state changed since.
    fn checked(&self, who: Option<AuthInfo>, check: impl FnOnce(&crate::auth::AuthView, &AuthInfo) -> Result<()>) -> Result<Option<AuthHeader>> {
        let Some(who) = who else { return Ok(None) };
        check(&self.ctx.auth.view(), &who)?;
        Ok(Some(crate::auth::header(&who)))
    }

    /// Proposes `w` (its request `size_bytes` long) and fills the header of its answer.
    async fn write(&self, w: Write, size_bytes: usize, auth: Option<AuthHeader>) -> Result<Response> {
        if etcd_proposal_len(size_bytes, self.ctx.cluster.local_id, auth.as_ref()) > self.ctx.max_request_bytes {
            return Err(Error::RequestTooLarge);
        }
        let mut resp = self.ctx.raft.propose_as(w, auth).await?;
        self.ctx.fill(resp.header_mut());
        Ok(resp)
    }
}

/// The length etcd compares with `--max-request-bytes`: the InternalRaftRequest it would
/// propose for a request `size_bytes` long (v3_server.go, processInternalRaftRequestOnce): a
/// header at field 100 (the request id; with auth on, the user and the auth revision), then the
/// request at a field below 16. etcd's request ids carry the member id's low 16 bits in their top
/// 16 (idutil), which fixes the id's varint length; the clock's bits below are taken as set.
fn etcd_proposal_len(size_bytes: usize, member_id: u64, auth: Option<&AuthHeader>) -> usize {
    use prost::encoding::encoded_len_varint as varint;
    let id = ((member_id & 0xffff) << 48) | (1 << 47);
    let mut header = 1 + varint(id);
    if let Some(a) = auth {
        if !a.username.is_empty() {
            header += 1 + varint(a.username.len() as u64) + a.username.len();
        }
        if a.revision != 0 {
            header += 1 + varint(a.revision);
        }
    }
    2 + varint(header as u64) + header + 1 + varint(size_bytes as u64) + size_bytes
}

//! The requests kube-apiserver's etcd3 store sends (k8s.io/apiserver/pkg/storage/etcd3), one
//! function each:
//!
//! * `create`: `Txn(If mod_revision(key) == 0, Then Put(key, value[, lease]))` (store.Create);
//! * `update`: `Txn(If mod_revision(key) == orig, Then Put(key, value), Else Get(key))`
//!   (store.GuaranteedUpdate, orig from its cache);
//! * `delete`: `Txn(If mod_revision(key) == orig, Then DeleteRange(key), Else Get(key))`
//!   (store.Delete / conditionalDelete);
//! * `list`: store.GetList of a prefix with a limit: the first page at the current revision,
//!   each next one from the last key + "\0" at the first page's revision, until `more` is false;
//! * `Compactor`: the apiserver's compactor (etcd3/compact.go): a txn on `compact_rev_key`
//!   (If version == t, Then Put(the current revision), Else Get) then, from the second step
//!   on, Compact(the revision the previous step saw).
//!
//! Ranges are decoded with a reduced message (keys and mod_revisions; prost skips the values).
use ballast_bench::proto::etcdserverpb::kv_client::KvClient;
use ballast_bench::proto::etcdserverpb::{
    compare, request_op, response_op, CompactionRequest, Compare, DeleteRangeRequest, PutRequest,
    RangeRequest, RequestOp, TxnRequest, TxnResponse,
};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;

use super::watch::LiteHeader;

/// The answer of a conditional write.
pub enum Outcome {
    /// Applied at this revision (the object's new mod_revision).
    Done(i64),
    /// The compare failed: the object's current mod_revision (0: absent, -1: not read).
    Conflict(i64),
}

fn mod_rev_is(key: &[u8], rev: i64) -> Compare {
    Compare {
        result: compare::CompareResult::Equal as i32,
        target: compare::CompareTarget::Mod as i32,
        key: key.to_vec(),
        target_union: Some(compare::TargetUnion::ModRevision(rev)),
        range_end: Vec::new(),
    }
}

fn op(r: request_op::Request) -> RequestOp {
    RequestOp { request: Some(r) }
}

fn get(key: &[u8]) -> RequestOp {
    op(request_op::Request::RequestRange(RangeRequest {
        key: key.to_vec(),
        ..Default::default()
    }))
}

fn put(key: &[u8], value: Vec<u8>, lease: i64) -> RequestOp {
    op(request_op::Request::RequestPut(PutRequest {
        key: key.to_vec(),
        value,
        lease,
        ..Default::default()
    }))
}

async fn txn(kv: &mut KvClient<Channel>, req: TxnRequest) -> Result<TxnResponse, String> {
    kv.txn(req)
        .await
        .map(|r| r.into_inner())
        .map_err(|e| format!("Txn: {e}"))
}

fn revision(r: &TxnResponse) -> i64 {
    r.header.as_ref().map_or(0, |h| h.revision)
}

/// The mod_revision the Else-Get of a failed txn read (0: no such key).
fn else_mod_rev(r: &TxnResponse) -> i64 {
    match r.responses.first().and_then(|x| x.response.as_ref()) {
        Some(response_op::Response::ResponseRange(g)) => {
            g.kvs.first().map_or(0, |k| k.mod_revision)
        }
        _ => 0,
    }
}

/// store.Create: put `key` only if it does not exist, with `lease` (0: none).
pub async fn create(
    kv: &mut KvClient<Channel>,
    key: &[u8],
    value: Vec<u8>,
    lease: i64,
) -> Result<Outcome, String> {
    let r = txn(
        kv,
        TxnRequest {
            compare: vec![mod_rev_is(key, 0)],
            success: vec![put(key, value, lease)],
            failure: vec![],
        },
    )
    .await?;
    Ok(if r.succeeded {
        Outcome::Done(revision(&r))
    } else {
        Outcome::Conflict(-1)
    })
}

/// store.GuaranteedUpdate: put `key` only if its mod_revision is still `orig`.
pub async fn update(
    kv: &mut KvClient<Channel>,
    key: &[u8],
    value: Vec<u8>,
    orig: i64,
) -> Result<Outcome, String> {
    let r = txn(
        kv,
        TxnRequest {
            compare: vec![mod_rev_is(key, orig)],
            success: vec![put(key, value, 0)],
            failure: vec![get(key)],
        },
    )
    .await?;
    Ok(if r.succeeded {
        Outcome::Done(revision(&r))
    } else {
        Outcome::Conflict(else_mod_rev(&r))
    })
}

/// store.Delete: delete `key` only if its mod_revision is still `orig`.
pub async fn delete(kv: &mut KvClient<Channel>, key: &[u8], orig: i64) -> Result<Outcome, String> {
    let r = txn(
        kv,
        TxnRequest {
            compare: vec![mod_rev_is(key, orig)],
            success: vec![op(request_op::Request::RequestDeleteRange(
                DeleteRangeRequest {
                    key: key.to_vec(),
                    ..Default::default()
                },
            ))],
            failure: vec![get(key)],
        },
    )
    .await?;
    if !r.succeeded {
        return Ok(Outcome::Conflict(else_mod_rev(&r)));
    }
    match r.responses.first().and_then(|x| x.response.as_ref()) {
        Some(response_op::Response::ResponseDeleteRange(d)) if d.deleted == 1 => {
            Ok(Outcome::Done(revision(&r)))
        }
        other => Err(format!("delete of an existing key answered {other:?}")),
    }
}

#[derive(Clone, PartialEq, prost::Message)]
struct LiteKv {
    #[prost(bytes = "vec", tag = "1")]
    key: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct LiteRange {
    #[prost(message, optional, tag = "1")]
    header: Option<LiteHeader>,
    #[prost(message, repeated, tag = "2")]
    kvs: Vec<LiteKv>,
    #[prost(bool, tag = "3")]
    more: bool,
}

/// What a paginated LIST read.
pub struct Listed {
    /// The revision of every page (the first page's).
    pub rev: i64,
    pub keys: u64,
    pub pages: u64,
}

/// store.GetList of everything under `prefix`, `limit` keys per page (linearizable reads).
pub async fn list(ch: &Channel, prefix: &[u8], limit: i64) -> Result<Listed, String> {
    let mut end = prefix.to_vec();
    *end.last_mut().expect("non-empty prefix") += 1;
    // As kube-apiserver's etcd client (MaxCallRecvMsgSize = MaxInt32): a page of 500 objects
    // of up to 10 KiB passes tonic's default 4 MiB limit.
    let mut grpc = tonic::client::Grpc::new(ch.clone()).max_decoding_message_size(usize::MAX);
    let mut l = Listed {
        rev: 0,
        keys: 0,
        pages: 0,
    };
    let mut from = prefix.to_vec();
    loop {
        grpc.ready().await.map_err(|e| format!("Range: {e}"))?;
        let req = RangeRequest {
            key: from.clone(),
            range_end: end.clone(),
            limit,
            revision: l.rev,
            ..Default::default()
        };
        let codec = tonic_prost::ProstCodec::<RangeRequest, LiteRange>::default();
        let path = PathAndQuery::from_static("/etcdserverpb.KV/Range");
        let page = grpc
            .unary(tonic::Request::new(req), path, codec)
            .await
            .map_err(|e| format!("Range page {} of {}: {e}", l.pages + 1, show(prefix)))?
            .into_inner();
        l.pages += 1;
        l.keys += page.kvs.len() as u64;
        if l.rev == 0 {
            l.rev = page.header.map_or(0, |h| h.revision);
        }
        match page.kvs.last() {
            Some(last) if page.more => {
                from = last.key.clone();
                from.push(0);
            }
            None if page.more => return Err("empty page with more = true".into()),
            _ => return Ok(l),
        }
    }
}

fn show(k: &[u8]) -> String {
    String::from_utf8_lossy(k).into_owned()
}

/// The key kube-apiserver's compactors agree through.
const COMPACT_REV_KEY: &[u8] = b"compact_rev_key";

/// kube-apiserver's compactor: its logical time (the version of `compact_rev_key` it expects)
/// and the revision its last step saw.
#[derive(Default)]
pub struct Compactor {
    time: i64,
    rev: i64,
}

impl Compactor {
    /// One step of the compactor loop; the revision it compacted at (None: the bootstrap step,
    /// or another compactor's turn).
    pub async fn step(&mut self, kv: &mut KvClient<Channel>) -> Result<Option<i64>, String> {
        let version_is = Compare {
            result: compare::CompareResult::Equal as i32,
            target: compare::CompareTarget::Version as i32,
            key: COMPACT_REV_KEY.to_vec(),
            target_union: Some(compare::TargetUnion::Version(self.time)),
            range_end: Vec::new(),
        };
        let r = txn(
            kv,
            TxnRequest {
                compare: vec![version_is],
                success: vec![put(COMPACT_REV_KEY, self.rev.to_string().into_bytes(), 0)],
                failure: vec![get(COMPACT_REV_KEY)],
            },
        )
        .await?;
        let (prev, now) = (self.rev, revision(&r));
        self.rev = now;
        if !r.succeeded {
            return Err(format!(
                "compact_rev_key moved under the only compactor (expected version {})",
                self.time
            ));
        }
        self.time += 1;
        if prev == 0 {
            return Ok(None);
        }
        kv.compact(CompactionRequest {
            revision: prev,
            physical: false,
        })
        .await
        .map_err(|e| format!("Compact({prev}): {e}"))?;
        Ok(Some(prev))
    }
}

//! etcd's lock (server/etcdserver/api/v3lock over clientv3's concurrency.Mutex): the waiter's key
//! is `name/<lease hex>`, created if missing in one txn that also reads the first key created
//! under `name/`; the lock is held once every key created before it is gone. The key is tied
//! to the lease, so the lock goes with it. Unlock deletes the key; so does a wait that fails or
//! whose call is dropped (its client cancelled), as etcd's.

use std::sync::Arc;

use super::{first_created, key_of, session_lease, wait_deletes, Abandoned};
use crate::api::Ctx;
use crate::error::{Error, Result};
use crate::kv::Kv;
use crate::proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use crate::proto::etcdserverpb::request_op::Request as Op;
use crate::proto::etcdserverpb::response_op::Response as OpResponse;
use crate::proto::etcdserverpb::*;

/// Waits for the lock `name` under `lease`; returns the response header and the lock's key.
pub async fn lock(ctx: &Arc<Ctx>, name: &[u8], lease: i64) -> Result<(Option<ResponseHeader>, Vec<u8>)> {
    let kv = Kv::new(ctx.clone());
    let lease = session_lease(ctx, lease).await?;
    let prefix = [name, b"/"].concat();
    let key = key_of(&prefix, lease);
    let resp = kv.txn(create_or_get(&key, Vec::new(), lease, Some(first_created(&prefix)))).await?;
    let mut my_rev = resp.header.map_or(0, |h| h.revision);
    if !resp.succeeded {
        my_rev = range_of(&resp, 0).and_then(|r| r.kvs.first()).map_or(0, |kv| kv.create_revision);
    }
    let owner = range_of(&resp, 1).and_then(|r| r.kvs.first());
    if owner.is_none_or(|o| o.create_revision == my_rev) {
        return Ok((resp.header, key));
    }
    let abandoned = Abandoned::arm({
        let (ctx, key) = (ctx.clone(), key.clone());
        async move {
            let _ = unlock(&ctx, &key).await;
        }
    });
    let waited = async {
        wait_deletes(ctx, &prefix, my_rev - 1).await?;
        kv.range(RangeRequest { key: key.clone(), ..Default::default() }).await
    };
    let mine = match waited.await {
        Ok(mine) => mine,
        Err(e) => {
            let _ = unlock(ctx, &key).await;
            abandoned.disarm();
            return Err(e);
        }
    };
    abandoned.disarm();
    if mine.kvs.is_empty() {
        return Err(Error::SessionExpired);
    }
    Ok((mine.header, key))
}

pub async fn unlock(ctx: &Arc<Ctx>, key: &[u8]) -> Result<Option<ResponseHeader>> {
    let resp = Kv::new(ctx.clone()).delete_range(DeleteRangeRequest { key: key.to_vec(), ..Default::default() }).await?;
    Ok(resp.header)
}

/// Compares `key`'s create revision with `rev` (0: the key does not exist).
pub fn created_at(key: &[u8], rev: i64) -> Compare {
    Compare {
        result: CompareResult::Equal as i32,
        target: CompareTarget::Create as i32,
        key: key.to_vec(),
        range_end: Vec::new(),
        target_union: Some(TargetUnion::CreateRevision(rev)),
    }
}

/// If `key` was never created: put it (with `value`, under `lease`), else read it; then `then`.
pub fn create_or_get(key: &[u8], value: Vec<u8>, lease: i64, then: Option<RangeRequest>) -> TxnRequest {
    let absent = created_at(key, 0);
    let put = Op::RequestPut(PutRequest { key: key.to_vec(), value, lease, ..Default::default() });
    let get = Op::RequestRange(RangeRequest { key: key.to_vec(), ..Default::default() });
    let op = |r| RequestOp { request: Some(r) };
    let then: Vec<RequestOp> = then.into_iter().map(|r| op(Op::RequestRange(r))).collect();
    TxnRequest { compare: vec![absent], success: [vec![op(put)], then.clone()].concat(), failure: [vec![op(get)], then].concat() }
}

/// The range answer of op `i` of a txn's response.
pub fn range_of(resp: &TxnResponse, i: usize) -> Option<&RangeResponse> {
    match resp.responses.get(i)?.response.as_ref()? {
        OpResponse::ResponseRange(r) => Some(r),
        _ => None,
    }
}

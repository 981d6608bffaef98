//! etcd's election (server/etcdserver/api/v3election over clientv3's concurrency.Election): a
//! candidate's key is `name/<lease hex>`; the leader is the first key created under `name/`.
//! Campaign waits until every key created before the candidate's is gone; Proclaim and Resign
//! act only while the candidate's key has the create revision it campaigned with; Observe
//! follows the leader's key, from one leader to the next. As etcd's, a campaign whose call is
//! dropped (its client cancelled) resigns; one whose wait fails otherwise leaves its key.

use std::sync::Arc;

use super::mutex::{create_or_get, created_at, range_of};
use super::{first_created, key_of, prefix_range, session_lease, wait_deletes, Abandoned, Subscription};
use crate::api::Ctx;
use crate::error::{Error, Result};
use crate::kv::Kv;
use crate::proto::etcdserverpb::request_op::Request as Op;
use crate::proto::etcdserverpb::*;
use crate::proto::mvccpb::{event::EventType, KeyValue};
use crate::proto::v3electionpb::LeaderKey;

pub async fn campaign(ctx: &Arc<Ctx>, name: &[u8], lease: i64, value: Vec<u8>) -> Result<(Option<ResponseHeader>, LeaderKey)> {
    let lease = session_lease(ctx, lease).await?;
    let prefix = [name, b"/"].concat();
    let key = key_of(&prefix, lease);
    let resp = Kv::new(ctx.clone()).txn(create_or_get(&key, value.clone(), lease, None)).await?;
    let mut leader = LeaderKey { name: name.to_vec(), key: key.clone(), rev: resp.header.map_or(0, |h| h.revision), lease };
    // The key was there (this lease campaigned before): the candidate goes on with it.
    let existing = if resp.succeeded { None } else { range_of(&resp, 0).and_then(|r| r.kvs.first()) };
    if let Some(kv) = existing {
        leader.rev = kv.create_revision;
    }
    let abandoned = Abandoned::arm({
        let (ctx, leader) = (ctx.clone(), leader.clone());
        async move {
            let _ = resign(&ctx, &leader).await;
        }
    });
    if existing.is_some_and(|kv| kv.value != value) {
        if let Err(e) = proclaim(ctx, &leader, value).await {
            let _ = resign(ctx, &leader).await;
            abandoned.disarm();
            return Err(e);
        }
    }
    let waited = wait_deletes(ctx, &prefix, leader.rev - 1).await;
    abandoned.disarm();
    waited.map(|()| (resp.header, leader))
}

pub async fn proclaim(ctx: &Arc<Ctx>, leader: &LeaderKey, value: Vec<u8>) -> Result<Option<ResponseHeader>> {
    let put = Op::RequestPut(PutRequest { key: leader.key.clone(), value, lease: leader.lease, ..Default::default() });
    let txn = TxnRequest { compare: vec![created_at(&leader.key, leader.rev)], success: vec![RequestOp { request: Some(put) }], failure: vec![] };
    let resp = Kv::new(ctx.clone()).txn(txn).await?;
    if !resp.succeeded {
        return Err(Error::ElectionNotLeader);
    }
    Ok(resp.header)
}

pub async fn resign(ctx: &Arc<Ctx>, leader: &LeaderKey) -> Result<Option<ResponseHeader>> {
    let delete = Op::RequestDeleteRange(DeleteRangeRequest { key: leader.key.clone(), ..Default::default() });
    let txn = TxnRequest { compare: vec![created_at(&leader.key, leader.rev)], success: vec![RequestOp { request: Some(delete) }], failure: vec![] };
    Ok(Kv::new(ctx.clone()).txn(txn).await?.header)
}

/// The current leader's key and value.
pub async fn leader(ctx: &Arc<Ctx>, name: &[u8]) -> Result<(Option<ResponseHeader>, KeyValue)> {
    let resp = Kv::new(ctx.clone()).range(first_created(&[name, b"/"].concat())).await?;
    let kv = resp.kvs.into_iter().next().ok_or(Error::ElectionNoLeader)?;
    Ok((resp.header, kv))
}

/// Follows the leadership of `name`: the leader now (once there is one), each value it
/// proclaims, then the next leader. Stops when `send` fails (the client went away).
pub async fn observe<F, Fut>(ctx: &Arc<Ctx>, name: &[u8], mut send: F) -> Result<()>
where
    F: FnMut(Option<ResponseHeader>, KeyValue) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let prefix = [name, b"/"].concat();
    loop {
        let resp = Kv::new(ctx.clone()).range(first_created(&prefix)).await?;
        let rev = resp.header.map_or(0, |h| h.revision);
        let Some(kv) = resp.kvs.into_iter().next() else {
            // No leader yet: wait for a key under the name, then look again.
            let all = prefix_range(&prefix);
            let mut sub = Subscription::open(ctx, WatchCreateRequest { key: all.key, range_end: all.range_end, start_revision: rev + 1, ..Default::default() }).await?;
            sub.next().await?;
            continue;
        };
        let (key, from) = (kv.key.clone(), kv.mod_revision + 1);
        if !send(resp.header, kv).await {
            return Ok(());
        }
        let mut sub = Subscription::open(ctx, WatchCreateRequest { key, start_revision: from, ..Default::default() }).await?;
        'leader: loop {
            let (header, events) = sub.next().await?;
            for e in events {
                if e.r#type == EventType::Delete as i32 {
                    break 'leader;
                }
                if !send(header, e.kv.unwrap_or_default()).await {
                    return Ok(());
                }
            }
        }
    }
}

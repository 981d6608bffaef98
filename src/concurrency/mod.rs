//! etcd's concurrency recipes, served by the Lock and Election services as etcd serves them:
//! over its own KV and Watch (etcd runs clientv3's recipes against an in-process client; ours
//! call `kv::Kv` and the watch hub). `mutex.rs` is the lock, `election.rs` the election; this
//! file has what both use: a waiter's key, and waiting for the keys created before it to go.

pub mod election;
pub mod mutex;

use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::api::Ctx;
use crate::error::{Error, Result};
use crate::kv::Kv;
use crate::mvcc::prefix_end;
use crate::proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use crate::proto::etcdserverpb::*;
use crate::watch::HubMsg;

/// etcd's session TTL for a recipe called with lease 0: it grants one and lets it lapse.
const DEFAULT_SESSION_TTL_SECONDS: i64 = 60;

/// `prefix` + the lease in Go's `%x` (a negative one with a minus sign).
pub fn key_of(prefix: &[u8], lease: i64) -> Vec<u8> {
    let hex = if lease < 0 { format!("-{:x}", lease.unsigned_abs()) } else { format!("{lease:x}") };
    [prefix, hex.as_bytes()].concat()
}

/// The lease a recipe runs under: the caller's, or (lease 0) a fresh 60 s one nobody keeps
/// alive, as etcd's server does.
pub async fn session_lease(ctx: &Arc<Ctx>, lease: i64) -> Result<i64> {
    if lease != 0 {
        return Ok(lease);
    }
    // etcd's LeaseGrant: a user is needed when auth is on.
    if crate::auth::scoped_caller().is_some_and(|who| ctx.auth.enabled() && who.revision == 0) {
        return Err(Error::UserEmpty);
    }
    let id = ctx.lease_ids.next();
    let req = crate::proto::ballastpb::internal_request::Request::LeaseGrant(LeaseGrantRequest { ttl: DEFAULT_SESSION_TTL_SECONDS, id });
    ctx.raft.propose(req).await?;
    Ok(id)
}

/// The range of every key under `prefix`.
pub fn prefix_range(prefix: &[u8]) -> RangeRequest {
    RangeRequest { key: prefix.to_vec(), range_end: prefix_end(prefix), ..Default::default() }
}

/// The first key created under `prefix` (the owner), if any.
pub fn first_created(prefix: &[u8]) -> RangeRequest {
    RangeRequest { limit: 1, sort_order: SortOrder::Ascend as i32, sort_target: SortTarget::Create as i32, ..prefix_range(prefix) }
}

/// etcd's waitDeletes: returns once no key under `prefix` was created at or before `max_rev`.
pub async fn wait_deletes(ctx: &Arc<Ctx>, prefix: &[u8], max_rev: i64) -> Result<()> {
    let kv = Kv::new(ctx.clone());
    loop {
        let last = RangeRequest {
            limit: 1,
            sort_order: SortOrder::Descend as i32,
            sort_target: SortTarget::Create as i32,
            max_create_revision: max_rev,
            ..prefix_range(prefix)
        };
        let resp = kv.range(last).await?;
        let Some(kv) = resp.kvs.first() else { return Ok(()) };
        let rev = resp.header.map_or(0, |h| h.revision);
        wait_delete(ctx, &kv.key, rev).await?;
    }
}

/// Watches `key` from revision `rev` until it is deleted.
pub async fn wait_delete(ctx: &Arc<Ctx>, key: &[u8], rev: i64) -> Result<()> {
    let no_puts = vec![watch_create_request::FilterType::Noput as i32];
    let mut sub = Subscription::open(ctx, WatchCreateRequest { key: key.to_vec(), start_revision: rev, filters: no_puts, ..Default::default() }).await?;
    sub.next().await.map(drop)
}

/// A waiter's key to delete if the call waiting with it is dropped before `disarm` (its client
/// cancelled, or its deadline passed: tonic drops the call's future), as etcd's recipes unlock
/// or resign on a context of their own when the call's ends. Else the key would outlive the
/// call and hold up every later waiter until its lease ends. The deletion runs as a task of
/// its own, as the caller.
pub struct Abandoned {
    cleanup: Option<std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>>,
}

impl Abandoned {
    pub fn arm<F: std::future::Future<Output = ()> + Send + 'static>(cleanup: F) -> Abandoned {
        let who = crate::auth::scoped_caller();
        Abandoned { cleanup: Some(Box::pin(crate::auth::as_caller(who, cleanup))) }
    }

    /// The call ends as it should: nothing to delete behind it.
    pub fn disarm(mut self) {
        self.cleanup = None;
    }
}

impl Drop for Abandoned {
    fn drop(&mut self) {
        if let (Some(cleanup), Ok(runtime)) = (self.cleanup.take(), tokio::runtime::Handle::try_current()) {
            runtime.spawn(cleanup);
        }
    }
}

/// An internal watch: the events of one watcher, response by response.
pub struct Subscription {
    ctx: Arc<Ctx>,
    stream: crate::watch::StreamHandle,
    /// Responses received and not yet looked at.
    ready: std::collections::VecDeque<WatchResponse>,
}

impl Subscription {
    pub async fn open(ctx: &Arc<Ctx>, req: WatchCreateRequest) -> Result<Subscription> {
        let stream = ctx.watch.open().await?;
        let sub = Subscription { ctx: ctx.clone(), stream, ready: Default::default() };
        // As the caller (Lock, Election): read permission on the watched range.
        let denied = match crate::auth::scoped_caller() {
            Some(who) if ctx.auth.enabled() => ctx.auth.view().read(&who, &req.key, &req.range_end).err(),
            _ => None,
        };
        ctx.watch.send(HubMsg::Create { stream: sub.stream.id, req, denied }).await?;
        Ok(sub)
    }

    /// The next response with events: (its header, its events).
    pub async fn next(&mut self) -> Result<(Option<ResponseHeader>, Vec<crate::proto::mvccpb::Event>)> {
        loop {
            if let Some(resp) = self.ready.pop_front() {
                if resp.canceled {
                    return Err(Error::LostWatcher);
                }
                if !resp.events.is_empty() {
                    return Ok((resp.header, resp.events));
                }
                continue;
            }
            let o = self.stream.responses.recv().await.ok_or(Error::Stopped)?;
            self.stream.queued.fetch_sub(o.bytes, Ordering::Relaxed);
            for resp in o.resps {
                self.ready.push_back(resp.into_message()?);
            }
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.ctx.watch.close(self.stream.id);
    }
}

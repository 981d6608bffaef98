//! `KvView`: reads and writes of the whole keyspace, as etcd's semantics (range.rs, txn.rs)
//! need them. Two views: `Shards` (from the applier or the front end: each call goes to the
//! owning shards and merges their answers) and `Local` (inside one shard, on its own store,
//! for a txn whose keys all live there; every call completes at once).

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;

use crate::error::{Error, Result};
use crate::mvcc::store::{RangePart, RangeQuery, Store, WriteOp, WriteResult};
use crate::mvcc::Rev;
use crate::shard::mailbox::Shards;

/// The future of a view's call (and of txn.rs's recursion over nested txns).
pub type BoxFut<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

pub trait KvView {
    /// Every key of `q` at `q.rev`, in key order, at most `q.limit` (0 = all); `count` is the
    /// full count.
    fn range(&self, q: RangeQuery) -> BoxFut<'_, Result<RangePart>>;
    /// One write at revision `rev`, on whichever shards hold its keys.
    fn write(&self, rev: Rev, op: WriteOp) -> BoxFut<'_, Result<WriteResult>>;
}

impl KvView for Shards {
    fn range(&self, q: RangeQuery) -> BoxFut<'_, Result<RangePart>> {
        Box::pin(async move { self.scatter_range(&q).await })
    }

    fn write(&self, rev: Rev, op: WriteOp) -> BoxFut<'_, Result<WriteResult>> {
        Box::pin(async move {
            let owners = match &op {
                WriteOp::Put { key, .. } => vec![self.owner(key)],
                WriteOp::DeleteRange { range, .. } => self.owners(range),
            };
            if let (WriteOp::DeleteRange { range, prev_kv }, true) = (&op, owners.len() > 1) {
                return self.delete_across(range, *prev_kv, rev).await;
            }
            let calls = owners.iter().map(|&s| self.write_on(s, vec![(rev, op.clone())]));
            let mut merged: Option<WriteResult> = None;
            for results in futures_util::future::join_all(calls).await {
                for r in results? {
                    merged = Some(merge(merged, r?)?);
                }
            }
            merged.ok_or_else(|| Error::Internal("no shard answered a write".into()))
        })
    }
}

impl Shards {
    /// A range delete over several shards: the keys it deletes take sub revisions `rev.sub..`
    /// in key order across the shards (etcd's numbering), so each shard is told its keys' own.
    async fn delete_across(&self, range: &crate::mvcc::KeyRange, prev_kv: bool, rev: Rev) -> Result<WriteResult> {
        let q = RangeQuery { range: range.clone(), rev: rev.main, limit: 0, count_only: false, keys_only: true, sealed: false };
        let keys = self.scatter_range(&q).await?.kvs;
        let mut per_shard: Vec<Vec<(Rev, WriteOp)>> = vec![Vec::new(); self.count()];
        for (i, kv) in keys.into_iter().enumerate() {
            let at = Rev::new(rev.main, rev.sub + i as u32);
            let one = WriteOp::DeleteRange { range: crate::mvcc::KeyRange::Single(kv.key.clone()), prev_kv };
            per_shard[self.owner(&kv.key)].push((at, one));
        }
        let calls = per_shard.into_iter().enumerate().filter(|(_, ops)| !ops.is_empty()).map(|(s, ops)| self.write_on(s, ops));
        let mut merged = WriteResult::Deleted { count: 0, prev_kvs: Vec::new() };
        for results in futures_util::future::join_all(calls).await {
            for r in results? {
                merged = merge(Some(merged), r?)?;
            }
        }
        Ok(merged)
    }
}

/// Combines the answers of several shards to one delete (counts add, prev kvs in key order).
fn merge(acc: Option<WriteResult>, next: WriteResult) -> Result<WriteResult> {
    match (acc, next) {
        (None, r) => Ok(r),
        (Some(WriteResult::Deleted { count: a, prev_kvs: mut pa }), WriteResult::Deleted { count: b, prev_kvs: pb }) => {
            pa.extend(pb);
            pa.sort_by(|x, y| x.key.cmp(&y.key));
            Ok(WriteResult::Deleted { count: a + b, prev_kvs: pa })
        }
        (Some(a), b) => Err(Error::Internal(format!("shards answered one write differently: {a:?} / {b:?}"))),
    }
}

/// One shard's own store.
pub struct Local<'a>(pub &'a RefCell<Store>);

impl KvView for Local<'_> {
    fn range(&self, q: RangeQuery) -> BoxFut<'_, Result<RangePart>> {
        let r = self.0.borrow().range(&q);
        Box::pin(std::future::ready(r))
    }

    fn write(&self, rev: Rev, op: WriteOp) -> BoxFut<'_, Result<WriteResult>> {
        let r = self.0.borrow_mut().write(op, rev);
        Box::pin(std::future::ready(r))
    }
}

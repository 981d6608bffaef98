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

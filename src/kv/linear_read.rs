//! A linearizable range in one hop. Read as two calls — a ReadIndex to the raft core, then the
//! range to the shard — it crossed threads four times: front end → core, core → front end (one
//! wake-up of the front end), front end → shard (one of the shard), shard → front end. The
//! raft driver runs on the thread of shard 0, so here the read goes to the core with its range,
//! and once the read index is applied the driver hands the range to the shard itself
//! (`dispatch`): the shard answers the front end directly, and the front end is woken once.
//!
//! Only reads that one shard answers whole and at the current revision take this path (`plan`):
//! a read at a past revision answers with the current revision in its header, which the shard
//! does not know; a range over several shards is merged on the front end. With auth on, the
//! permission check comes after the read index (as etcd's), so those reads take the two calls.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::sync::oneshot;

use super::delivery::{Delivery, Outbox};
use crate::error::Result;
use crate::mvcc::store::{RangePart, RangeQuery};
use crate::proto::etcdserverpb::RangeRequest;
use crate::shard::mailbox::{ShardMsg, Shards};
use crate::status::ServerStatus;

/// A linearizable range waiting in the raft core for its read index.
pub struct LinearRange {
    pub shard: usize,
    /// The range at revision 0: set to the current revision once the index is applied.
    pub query: RangeQuery,
    pub reply: oneshot::Sender<Result<RangePart>>,
    /// The caller's front-end thread, where the shard delivers the answer.
    pub home: Option<usize>,
    /// Set when the driver sends the range to the shard. The caller's request timeout bounds
    /// the wait for the read index, not the read (as etcd's, and as the two calls did): once
    /// this is set, a caller whose timeout passes waits on for the shard.
    pub sent: Arc<AtomicBool>,
}

/// The shard and the query of `r` when it can be read in one hop (see the module comment).
pub fn plan(r: &RangeRequest, shards: &Shards) -> Option<(usize, RangeQuery)> {
    if r.revision > 0 {
        return None;
    }
    // Sealed: the driver sets the revision to an applied one (`dispatch`).
    let query = super::range::sealed_query(r, 0).ok()?;
    match shards.owners(&query.range)[..] {
        [shard] => Some((shard, query)),
        _ => None,
    }
}

impl LinearRange {
    /// On the driver's thread, once the read index is applied (`passed`): the range goes to its
    /// shard at the current revision, or the failure to the caller.
    pub fn dispatch(self, passed: Result<()>, status: &ServerStatus, shards: &Shards, outbox: &mut Outbox) {
        let LinearRange { shard, mut query, reply, home, sent } = self;
        if let Err(e) = passed {
            return outbox.push(home, Delivery::Range(reply, Err(e)));
        }
        debug_assert_eq!(query.rev, 0, "planned at the current revision");
        query.rev = super::range::current_rev(status);
        sent.store(true, Ordering::Release);
        shards.send_from_local(shard, ShardMsg::Range { query, reply, home });
    }
}

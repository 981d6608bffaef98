//! The answers the raft core and the shards deliver to waiting callers through `reply::Outbox`
//! (batched per front-end thread): each with the oneshot it completes.

use tokio::sync::oneshot;

use super::response::Response;
use crate::error::Result;
use crate::mvcc::store::RangePart;
use crate::reply::Deliver;

/// One answer to deliver.
pub enum Delivery {
    /// An applied write (the raft core).
    Write(oneshot::Sender<Result<Response>>, Result<Response>),
    /// A ReadIndex passed (the raft core).
    Read(oneshot::Sender<Result<()>>, Result<()>),
    /// A shard's part of a range.
    Range(oneshot::Sender<Result<RangePart>>, Result<RangePart>),
}

/// The outbox of the raft core and of every shard.
pub type Outbox = crate::reply::Outbox<Delivery>;

impl Deliver for Delivery {
    fn deliver(self) {
        match self {
            Delivery::Write(tx, r) => send(tx, r),
            Delivery::Read(tx, r) => send(tx, r),
            Delivery::Range(tx, r) => send(tx, r),
        }
    }
}

/// A caller that gave up (timed out, client gone) dropped its receiver: nothing to do.
fn send<T>(tx: oneshot::Sender<T>, value: T) {
    let _ = tx.send(value);
}

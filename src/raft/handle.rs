//! The front end's handle to the raft core: the messages it sends (`CoreMsg`), each answered
//! on a oneshot, within etcd's request timeout.

use std::time::Duration;

use tokio::sync::oneshot;

use crate::kv::linear_read::LinearRange;
use crate::kv::response::Response;
use crate::error::{Error, Result};
use crate::mvcc::store::{RangePart, RangeQuery};
use crate::proto::ballastpb::{internal_request::Request, AuthHeader};
use crate::reply;

/// Client messages queued for the raft core; a full queue answers "too many requests".
pub const PROPOSAL_QUEUE_CAPACITY: usize = 16 * 1024;

pub enum CoreMsg {
    /// `home`: the caller's front-end thread, where its answer is delivered (`reply.rs`).
    Propose { req: Request, auth: Option<AuthHeader>, reply: oneshot::Sender<Result<Response>>, home: Option<usize> },
    ReadIndex { reply: oneshot::Sender<Result<()>>, home: Option<usize> },
    /// A ReadIndex whose range the driver hands to its shard once the index is applied.
    ReadRange(Box<LinearRange>),
    /// Take a snapshot now (Defragment); resolves when its manifest is durable.
    Snapshot { reply: oneshot::Sender<Result<()>> },
    /// Resolves once every WAL batch written before it is durable (health checks: a stuck disk
    /// never answers, as etcd's raft loop stuck in fsync answers no read).
    DiskBarrier { reply: oneshot::Sender<Result<()>> },
    /// Lease calls the leader answers from its lessor, without raft (as etcd's).
    Lease { call: LeaseCall },
    /// A membership change (etcd's MemberAdd/Remove/Update/Promote): answered with the member
    /// list once applied (`Response::Members`).
    MemberChange { change: super::conf_change::MemberChange, reply: oneshot::Sender<Result<Response>>, home: Option<usize> },
    /// Hand leadership to `target` (raft's leader transfer; no answer: the caller watches the
    /// leader change in `ServerStatus`); 0: to the most caught-up voter (shutdown).
    TransferLeader { target: u64 },
}

/// The raft core's queue of client messages. tokio's mpsc rather than flume, as for the
/// answers (`reply.rs`): flume wakes the waiting core while it holds the channel's lock, and the
/// core, woken on another CPU, then blocked on that lock (0.44 futex waits per request at the
/// Kubernetes-shaped load); tokio's sender wakes after its lock-free push.
pub fn core_channel() -> (tokio::sync::mpsc::Sender<CoreMsg>, tokio::sync::mpsc::Receiver<CoreMsg>) {
    tokio::sync::mpsc::channel(PROPOSAL_QUEUE_CAPACITY)
}

/// A lease call answered by the leader's lessor.
pub enum LeaseCall {
    /// Keepalives (a stream's batch): the TTL each lease is renewed to, 0 when it is unknown
    /// or expired.
    Renew { ids: Vec<i64>, reply: oneshot::Sender<Result<Vec<i64>>> },
    /// (remaining seconds, granted TTL, keys put with it), or None when unknown.
    TimeToLive { id: i64, reply: oneshot::Sender<Result<Option<LeaseTtl>>> },
    /// Every lease id, soonest expiry first.
    Ids { reply: oneshot::Sender<Result<Vec<i64>>> },
}

pub type LeaseTtl = (i64, i64, Vec<Vec<u8>>);

/// How much longer than the request timeout a proposal's own timer waits for the core's
/// answer: the core's deadline falls on a tick, up to two ticks late (covered up to a 500 ms
/// heartbeat interval; 100 ms by default).
const PROPOSAL_BACKSTOP_SLACK: Duration = Duration::from_secs(1);

/// The front end's handle to the raft core.
#[derive(Clone)]
pub struct RaftHandle {
    /// tokio's channel, not flume: see `core_channel`.
    tx: tokio::sync::mpsc::Sender<CoreMsg>,
    /// etcd's request timeout: 5 s + 2 × election timeout; then "etcdserver: request timed out"
    /// (the request may still be applied later, as in etcd).
    timeout: Duration,
}

/// A handle that does not keep the raft core running: the core stops once every `RaftHandle`
/// is gone (the front end's), whoever else holds a weak one (the peer transport's).
pub struct WeakRaftHandle {
    tx: tokio::sync::mpsc::WeakSender<CoreMsg>,
    timeout: Duration,
}

impl WeakRaftHandle {
    pub fn upgrade(&self) -> Option<RaftHandle> {
        Some(RaftHandle { tx: self.tx.upgrade()?, timeout: self.timeout })
    }
}

impl RaftHandle {
    pub fn downgrade(&self) -> WeakRaftHandle {
        WeakRaftHandle { tx: self.tx.downgrade(), timeout: self.timeout }
    }

    pub fn new(tx: tokio::sync::mpsc::Sender<CoreMsg>, election_timeout: Duration) -> RaftHandle {
        RaftHandle { tx, timeout: Duration::from_secs(5) + 2 * election_timeout }
    }

    async fn call<T>(&self, msg: impl FnOnce(oneshot::Sender<Result<T>>) -> CoreMsg) -> Result<T> {
        self.call_within(self.timeout, msg).await
    }

    async fn call_within<T>(&self, timeout: Duration, msg: impl FnOnce(oneshot::Sender<Result<T>>) -> CoreMsg) -> Result<T> {
        self.call_until(timeout, || false, msg).await
    }

    /// As `call_within`, except that a call whose timer fires while `waits_on()` holds waits
    /// on for its answer.
    async fn call_until<T>(&self, timeout: Duration, waits_on: impl Fn() -> bool, msg: impl FnOnce(oneshot::Sender<Result<T>>) -> CoreMsg) -> Result<T> {
        let (tx, mut rx) = oneshot::channel();
        self.send(msg(tx))?;
        match tokio::time::timeout(timeout, &mut rx).await {
            Ok(reply) => reply.map_err(|_| Error::Stopped)?,
            Err(_) if waits_on() => rx.await.map_err(|_| Error::Stopped)?,
            Err(_) => Err(Error::Timeout),
        }
    }

    /// Proposes a write; resolves once it is durable, committed and applied.
    pub async fn propose(&self, req: Request) -> Result<Response> {
        self.propose_as(req, None).await
    }

    /// Proposes a write sent by `auth`'s user (auth on): the applier checks its auth revision.
    pub async fn propose_as(&self, req: Request, auth: Option<AuthHeader>) -> Result<Response> {
        let home = reply::home();
        // The core answers a proposal at its request timeout, counted in ticks (and says why,
        // as etcd: "possibly due to previous leader failure"); this timer, a little later, is
        // only the backstop for a core that does not answer.
        self.call_within(self.timeout + PROPOSAL_BACKSTOP_SLACK, |reply| CoreMsg::Propose { req, auth, reply, home }).await
    }

    /// Proposes a membership change; resolves with the member list once it is applied.
    pub async fn member_change(&self, change: super::conf_change::MemberChange) -> Result<Vec<crate::cluster::Member>> {
        let home = reply::home();
        // As a proposal's: the core answers at the request timeout, this timer is the backstop.
        match self.call_within(self.timeout + PROPOSAL_BACKSTOP_SLACK, |reply| CoreMsg::MemberChange { change, reply, home }).await? {
            Response::Members(_, members) => Ok(members),
            other => Err(other.unexpected()),
        }
    }

    /// Writes a fresh snapshot (rewriting every segment) and releases the log before it.
    pub async fn snapshot(&self) -> Result<()> {
        // Writing every segment takes as long as the data needs: no request timeout.
        self.call_within(Duration::MAX, |reply| CoreMsg::Snapshot { reply }).await
    }

    /// Resolves once every WAL write issued before the call is durable.
    pub async fn disk_barrier(&self) -> Result<()> {
        self.call(|reply| CoreMsg::DiskBarrier { reply }).await
    }

    pub async fn lease_renew(&self, ids: Vec<i64>) -> Result<Vec<i64>> {
        self.call(|reply| CoreMsg::Lease { call: LeaseCall::Renew { ids, reply } }).await
    }

    pub async fn lease_time_to_live(&self, id: i64) -> Result<Option<LeaseTtl>> {
        self.call(|reply| CoreMsg::Lease { call: LeaseCall::TimeToLive { id, reply } }).await
    }

    pub async fn lease_ids(&self) -> Result<Vec<i64>> {
        self.call(|reply| CoreMsg::Lease { call: LeaseCall::Ids { reply } }).await
    }

    /// Asks the raft core to hand leadership to `target`.
    pub fn transfer_leader(&self, target: u64) -> Result<()> {
        self.send(CoreMsg::TransferLeader { target })
    }

    /// A full queue is etcd's "too many requests".
    fn send(&self, msg: CoreMsg) -> Result<()> {
        self.tx.try_send(msg).map_err(|e| match e {
            tokio::sync::mpsc::error::TrySendError::Full(_) => Error::TooManyRequests,
            tokio::sync::mpsc::error::TrySendError::Closed(_) => Error::Stopped,
        })
    }

    /// etcd's request timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Resolves once everything committed before the call is applied (raft ReadIndex).
    pub async fn read_index(&self) -> Result<()> {
        let home = reply::home();
        self.call(|reply| CoreMsg::ReadIndex { reply, home }).await
    }

    /// `query` (at revision 0) read on `shard` at the current revision once everything
    /// committed before the call is applied (`kv/linear_read.rs`).
    /// The request timeout bounds the wait for the index only (`LinearRange::sent`).
    pub async fn read_range(&self, shard: usize, query: RangeQuery) -> Result<RangePart> {
        use std::sync::atomic::{AtomicBool, Ordering};
        let (home, sent) = (reply::home(), std::sync::Arc::new(AtomicBool::new(false)));
        let in_shard = sent.clone();
        self.call_until(self.timeout, move || in_shard.load(Ordering::Acquire), |reply| CoreMsg::ReadRange(Box::new(LinearRange { shard, query, reply, home, sent }))).await
    }
}

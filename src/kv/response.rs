//! `Response`: what applying a committed write answers, one variant per kind of write. It sits
//! below the applier that builds it and the raft core and front end that carry and read it.

use crate::error::Error;
use crate::proto::etcdserverpb::{
    AlarmResponse, CompactionResponse, DeleteRangeResponse, LeaseCheckpointResponse, LeaseGrantResponse, LeaseRevokeResponse, PutResponse, ResponseHeader,
    TxnResponse,
};

#[derive(Debug)]
pub enum Response {
    Put(PutResponse),
    DeleteRange(DeleteRangeResponse),
    Txn(TxnResponse),
    /// With one receiver per shard, resolved when its physical compaction is done.
    Compaction(CompactionResponse, Vec<tokio::sync::oneshot::Receiver<()>>),
    Alarm(AlarmResponse),
    LeaseGrant(LeaseGrantResponse),
    LeaseRevoke(LeaseRevokeResponse),
    LeaseCheckpoint(LeaseCheckpointResponse),
    /// An auth store change; for Authenticate, whom to give a token.
    Auth(Option<ResponseHeader>, Option<Authenticated>),
    /// A membership change or a member's published attributes: the member list after it.
    Members(Option<ResponseHeader>, Vec<crate::cluster::Member>),
}

/// An applied Authenticate: the front end makes the token (`auth::token`).
#[derive(Debug)]
pub struct Authenticated {
    pub name: String,
    /// The auth revision at apply (a JWT carries it).
    pub revision: u64,
    /// The raft index of the entry (a simple token ends with it).
    pub index: u64,
    /// The simple token's random part, chosen by the front end.
    pub prefix: String,
}

impl Response {
    pub fn header_mut(&mut self) -> &mut Option<ResponseHeader> {
        match self {
            Response::Put(r) => &mut r.header,
            Response::DeleteRange(r) => &mut r.header,
            Response::Txn(r) => &mut r.header,
            Response::Compaction(r, _) => &mut r.header,
            Response::Alarm(r) => &mut r.header,
            Response::LeaseGrant(r) => &mut r.header,
            Response::LeaseRevoke(r) => &mut r.header,
            Response::LeaseCheckpoint(r) => &mut r.header,
            Response::Auth(h, _) | Response::Members(h, _) => h,
        }
    }

    /// The fault of an answer of another kind than its request's.
    pub fn unexpected(self) -> Error {
        Error::Internal(format!("unexpected apply result {self:?}"))
    }
}

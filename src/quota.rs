//! The backend quota (`--quota-backend-bytes`), with etcd's cost model (etcd: quota.go): a put
//! costs its key and value plus 256 bytes of overhead, a txn the larger of its branches' puts,
//! a lease grant 64 bytes, deletes and reads nothing. A request that would take the db size to
//! the quota is refused with NOSPACE and raises the NOSPACE alarm.

use crate::proto::etcdserverpb::request_op::Request as Op;
use crate::proto::etcdserverpb::{PutRequest, RequestOp, TxnRequest};

/// etcd's default quota when the flag is 0.
pub const DEFAULT_QUOTA_BYTES: u64 = 2 << 30;
const KV_OVERHEAD_BYTES: u64 = 256;
/// etcd's `leaseOverhead`: what a lease grant costs.
pub const LEASE_GRANT_COST_BYTES: u64 = 64;

#[derive(Debug, Clone, Copy)]
pub struct Quota {
    pub limit_bytes: u64,
}

impl Quota {
    /// From the flag: 0 is etcd's default.
    pub fn from_flag(bytes: u64) -> Quota {
        Quota { limit_bytes: if bytes == 0 { DEFAULT_QUOTA_BYTES } else { bytes } }
    }

    /// Whether a request of `cost_bytes` fits beside `db_size_bytes`.
    pub fn available(&self, db_size_bytes: u64, cost_bytes: u64) -> bool {
        cost_bytes == 0 || db_size_bytes.saturating_add(cost_bytes) < self.limit_bytes
    }
}

pub fn cost_put(r: &PutRequest) -> u64 {
    KV_OVERHEAD_BYTES + (r.key.len() + r.value.len()) as u64
}

pub fn cost_txn(r: &TxnRequest) -> u64 {
    let branch = |ops: &[RequestOp]| -> u64 {
        ops.iter()
            .map(|op| match &op.request {
                Some(Op::RequestPut(p)) => cost_put(p),
                Some(Op::RequestTxn(t)) => cost_txn(t),
                _ => 0,
            })
            .sum()
    };
    branch(&r.success).max(branch(&r.failure))
}

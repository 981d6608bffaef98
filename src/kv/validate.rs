//! etcd's validation of KV requests (etcd: api/v3rpc/key.go checkRangeRequest, checkPutRequest,
//! checkDeleteRequest, checkTxnRequest, checkIntervals): the same checks in the same order, so
//! a bad request fails with etcd's error before it reaches raft or the shards.

use std::collections::HashSet;

use crate::error::{Error, Result};
use crate::mvcc::key_set::KeySet;
use crate::proto::etcdserverpb::request_op::Request as Op;
use crate::proto::etcdserverpb::*;

/// etcd 3.5's checkRangeRequest, and an unknown sort target refused as etcd 3.6 refuses it: etcd
/// 3.5 dereferences a nil sorter and crashes on it. (An unknown sort order sorts nothing, as 3.5.)
pub fn check_range(r: &RangeRequest) -> Result<()> {
    if r.key.is_empty() {
        return Err(Error::EmptyKey);
    }
    // etcd 3.5 sorts with a nil sorter, and panics, when it knows the order but not the
    // target (3.6 refuses it as here); an order it does not know sorts nothing, so there the
    // target is never looked at and the keys come back in key order (`range::sort`).
    let known_order = range_request::SortOrder::try_from(r.sort_order).is_ok();
    if known_order && range_request::SortTarget::try_from(r.sort_target).is_err() {
        return Err(Error::InvalidSortOption);
    }
    Ok(())
}

pub fn check_put(r: &PutRequest) -> Result<()> {
    if r.key.is_empty() {
        return Err(Error::EmptyKey);
    }
    if r.ignore_value && !r.value.is_empty() {
        return Err(Error::ValueProvided);
    }
    if r.ignore_lease && r.lease != 0 {
        return Err(Error::LeaseProvided);
    }
    Ok(())
}

pub fn check_delete(r: &DeleteRangeRequest) -> Result<()> {
    if r.key.is_empty() {
        return Err(Error::EmptyKey);
    }
    Ok(())
}

/// etcd's checks of a txn, in etcd's order: checkTxnRequest, then checkIntervals on each branch.
pub fn check_txn(r: &TxnRequest, max_txn_ops: usize) -> Result<()> {
    check_txn_ops(r, max_txn_ops, 1)?;
    check_intervals(&r.success)?;
    check_intervals(&r.failure)?;
    Ok(())
}

/// Txns nested in a txn at most (a txn of one put: depth 1). etcd's only bound is
/// checkTxnRequest's budget (depth ≤ `--max-txn-ops`, 128); here a raft entry holding the txn
/// must also decode, and prost refuses messages nested over 100 deep: an entry holding a txn
/// of depth 50 did not, so a member that accepted one could neither replay its WAL nor follow
/// a leader that had. Deeper txns get etcd's "too many operations" (also when the API's own
/// decoding refuses them: `server/codec.rs`). The test below decodes an entry at this depth.
pub const MAX_TXN_DEPTH: usize = 48;

/// etcd's checkTxnRequest: op counts per level, then every op (recursively), and the depth.
fn check_txn_ops(r: &TxnRequest, max_txn_ops: usize, depth: usize) -> Result<()> {
    let opc = r.compare.len().max(r.success.len()).max(r.failure.len());
    if opc > max_txn_ops || depth > MAX_TXN_DEPTH {
        return Err(Error::TooManyOps);
    }
    if r.compare.iter().any(|c| c.key.is_empty()) {
        return Err(Error::EmptyKey);
    }
    for op in r.success.iter().chain(&r.failure) {
        check_op(op, max_txn_ops - opc, depth)?;
    }
    Ok(())
}

fn check_op(op: &RequestOp, max_txn_ops: usize, depth: usize) -> Result<()> {
    match &op.request {
        Some(Op::RequestRange(r)) => check_range(r),
        Some(Op::RequestPut(r)) => check_put(r),
        Some(Op::RequestDeleteRange(r)) => check_delete(r),
        Some(Op::RequestTxn(r)) => check_txn_ops(r, max_txn_ops, depth + 1),
        None => Err(Error::KeyNotFound),
    }
}

/// etcd's checkIntervals: within one txn no key may be put twice, or put and deleted, across
/// nested txns (the then/else branches of one nested txn may put the same key). A delete's keys
/// are those etcd's interval tree sees: the point `key`, or `[key, range_end)` taken literally,
/// so a `"\0"` range_end (from-key) covers nothing here. Hash and span sets: a txn of 100k ops
/// is checked in O(n log n) per nesting level, not O(n²).
fn check_intervals(reqs: &[RequestOp]) -> Result<(HashSet<&[u8]>, KeySet)> {
    let mut dels = KeySet::default();
    for r in reqs {
        if let Some(Op::RequestDeleteRange(d)) = &r.request {
            if d.range_end.is_empty() {
                dels.insert_key(&d.key);
            } else {
                dels.insert_span(&d.key, Some(&d.range_end));
            }
        }
    }
    let mut puts: HashSet<&[u8]> = HashSet::new();
    for r in reqs {
        let Some(Op::RequestTxn(t)) = &r.request else { continue };
        let (puts_then, dels_then) = check_intervals(&t.success)?;
        let (puts_else, dels_else) = check_intervals(&t.failure)?;
        for &k in &puts_then {
            if puts.contains(k) || dels.contains(k) {
                return Err(Error::DuplicateKey);
            }
            puts.insert(k);
        }
        for &k in &puts_else {
            if (puts.contains(k) && !puts_then.contains(k)) || dels.contains(k) {
                return Err(Error::DuplicateKey);
            }
            puts.insert(k);
        }
        dels.extend(&dels_then);
        dels.extend(&dels_else);
    }
    for r in reqs {
        let Some(Op::RequestPut(p)) = &r.request else { continue };
        if puts.contains(p.key.as_slice()) || dels.contains(&p.key) {
            return Err(Error::DuplicateKey);
        }
        puts.insert(&p.key);
    }
    Ok((puts, dels))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(k: &str) -> RequestOp {
        RequestOp { request: Some(Op::RequestPut(PutRequest { key: k.into(), ..Default::default() })) }
    }
    fn del(k: &str, end: &str) -> RequestOp {
        let d = DeleteRangeRequest { key: k.into(), range_end: end.into(), ..Default::default() };
        RequestOp { request: Some(Op::RequestDeleteRange(d)) }
    }
    fn txn(success: Vec<RequestOp>, failure: Vec<RequestOp>) -> RequestOp {
        RequestOp { request: Some(Op::RequestTxn(TxnRequest { compare: vec![], success, failure })) }
    }

    #[test]
    fn duplicate_keys_as_etcd() {
        assert!(check_intervals(&[put("a"), put("b")]).is_ok());
        assert_eq!(check_intervals(&[put("a"), put("a")]).err(), Some(Error::DuplicateKey));
        assert_eq!(check_intervals(&[del("a", "c"), put("b")]).err(), Some(Error::DuplicateKey));
        assert!(check_intervals(&[txn(vec![put("a")], vec![put("a")])]).is_ok());
        assert_eq!(check_intervals(&[txn(vec![put("a")], vec![]), put("a")]).err(), Some(Error::DuplicateKey));
        assert_eq!(check_intervals(&[txn(vec![del("a", "")], vec![]), put("a")]).err(), Some(Error::DuplicateKey));
        assert!(check_intervals(&[del("a", "\0"), put("b")]).is_ok(), "etcd's interval tree: [a, \\0) is empty");
    }

    #[test]
    fn a_txn_of_100k_ops_is_checked() {
        // 100 nested txns of 1000 puts each, and a delete per nested txn.
        let nested: Vec<RequestOp> = (0..100)
            .map(|t| {
                let mut ops: Vec<RequestOp> = (0..1000).map(|i| put(&format!("k{t}/{i}"))).collect();
                ops.push(del(&format!("d{t}/"), &format!("d{t}0")));
                txn(ops, vec![])
            })
            .collect();
        // Quadratic work here was ~10^10 steps (minutes); now ~10^5.
        assert!(check_intervals(&nested).is_ok());
        let mut dup = nested.clone();
        dup.push(put("k99/999"));
        assert_eq!(check_intervals(&dup).err(), Some(Error::DuplicateKey));
    }

    /// A txn `depth` deep (a put at the bottom).
    fn nested(depth: usize) -> TxnRequest {
        let mut t = TxnRequest { compare: vec![], success: vec![put("k")], failure: vec![] };
        for _ in 1..depth {
            t = TxnRequest { compare: vec![], success: vec![RequestOp { request: Some(Op::RequestTxn(t)) }], failure: vec![] };
        }
        t
    }

    #[test]
    fn a_txn_as_deep_as_taken_decodes_from_a_raft_entry() {
        use crate::proto::ballastpb::{internal_request::Request, EntryBatch, InternalRequest};
        use prost::Message;
        assert_eq!(check_txn(&nested(MAX_TXN_DEPTH), 128), Ok(()));
        assert_eq!(check_txn(&nested(MAX_TXN_DEPTH + 1), 128), Err(Error::TooManyOps));
        assert_eq!(check_txn(&nested(3), 2), Err(Error::TooManyOps), "etcd's budget: depth ≤ --max-txn-ops");
        let entry = EntryBatch { requests: vec![InternalRequest { id: u64::MAX, request: Some(Request::Txn(nested(MAX_TXN_DEPTH))), ..Default::default() }] };
        let decoded = EntryBatch::decode(entry.encode_to_vec().as_slice()).expect("the entry decodes");
        assert_eq!(decoded, entry);
    }
}

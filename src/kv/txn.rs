//! etcd's semantics for writes and txns (etcd: applierV3backend Put, DeleteRange, Txn), over
//! any `KvView`: the sharded store seen from the applier, or one shard's own store when every
//! key of a txn lives there (then the whole txn is one message to that shard).
//!
//! A txn is planned first — compares read at the revision before it (nested txns included),
//! branch chosen, etcd's checkRequests run, and every way an op could fail while writing is
//! ruled out — and only then written, so a txn either applies whole or fails having changed
//! nothing. All its writes share main revision `base + 1` and take sub revisions 0, 1, 2... in
//! the order they run (etcd's (main, sub) revisions), so one txn may delete a key and put it
//! again; a range inside it sees the writes of the ops before it. A write that fails after the
//! checks passed is a fault, not the client's doing: the process stops (`fatal`) rather than
//! leave a txn half applied, as etcd panics.

use super::range::range;
use super::view::{BoxFut, KvView};
use crate::error::{Error, Result};
use crate::mvcc::key_set::KeySet;
use crate::mvcc::store::{RangeQuery, WriteOp, WriteResult};
use crate::mvcc::{KeyRange, Rev};
use crate::proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use crate::proto::etcdserverpb::request_op::Request as Op;
use crate::proto::etcdserverpb::response_op::Response as OpResponse;
use crate::proto::etcdserverpb::*;
use crate::proto::mvccpb::KeyValue;

pub fn header(revision: i64) -> Option<ResponseHeader> {
    Some(ResponseHeader { revision, ..Default::default() })
}

/// A put may name no lease, or one of `leases` (those that exist): etcd's lease check, before
/// anything is written.
pub fn check_lease(lease: i64, leases: &[i64]) -> Result<()> {
    if lease != 0 && !leases.contains(&lease) {
        return Err(Error::LeaseNotFound);
    }
    Ok(())
}

/// Every lease the puts of `t` name, nested txns and both branches included.
pub fn leases_named(t: &TxnRequest, out: &mut Vec<i64>) {
    for op in t.success.iter().chain(&t.failure) {
        match &op.request {
            Some(Op::RequestPut(p)) if p.lease != 0 => out.push(p.lease),
            Some(Op::RequestTxn(nested)) => leases_named(nested, out),
            _ => {}
        }
    }
}

/// etcd's isTxnReadonly: every op of both branches a range (a nested txn is not).
pub fn is_read_only(t: &TxnRequest) -> bool {
    t.success.iter().chain(&t.failure).all(|op| matches!(op.request, Some(Op::RequestRange(_))))
}

/// The (lease, key) of every put `t` made: the branches it took, as its response tells.
pub fn leased_puts(t: &TxnRequest, resp: &TxnResponse, out: &mut Vec<(i64, Vec<u8>)>) {
    let taken = if resp.succeeded { &t.success } else { &t.failure };
    for (op, r) in taken.iter().zip(&resp.responses) {
        match (&op.request, &r.response) {
            (Some(Op::RequestPut(p)), _) if p.lease != 0 => out.push((p.lease, p.key.clone())),
            (Some(Op::RequestTxn(nested)), Some(OpResponse::ResponseTxn(nr))) => leased_puts(nested, nr, out),
            _ => {}
        }
    }
}

/// A put at `rev` (ignore_value / ignore_lease keep the key's current value / lease).
pub async fn put<V: KvView>(view: &V, p: &PutRequest, rev: Rev) -> Result<PutResponse> {
    let op = WriteOp::Put {
        key: p.key.clone(),
        value: (!p.ignore_value).then(|| p.value.clone()),
        lease: (!p.ignore_lease).then_some(p.lease),
        prev_kv: p.prev_kv,
    };
    match view.write(rev, op).await? {
        WriteResult::Put { prev } => Ok(PutResponse { header: header(rev.main), prev_kv: prev }),
        other => Err(Error::Internal(format!("unexpected reply to put: {other:?}"))),
    }
}

/// Deletes at `rev`; the response's revision is `rev.main` only if something was deleted.
pub async fn delete_range<V: KvView>(view: &V, d: &DeleteRangeRequest, rev: Rev) -> Result<DeleteRangeResponse> {
    let op = WriteOp::DeleteRange { range: KeyRange::new(&d.key, &d.range_end), prev_kv: d.prev_kv };
    match view.write(rev, op).await? {
        WriteResult::Deleted { count, prev_kvs } => Ok(DeleteRangeResponse {
            header: header(if count > 0 { rev.main } else { rev.main - 1 }),
            deleted: count,
            prev_kvs,
        }),
        other => Err(Error::Internal(format!("unexpected reply to delete: {other:?}"))),
    }
}

/// Runs a txn on top of revision `base`. Returns the response (header revision `base + 1` if
/// it wrote anything, else `base`) and whether it wrote. An error means nothing was written.
pub async fn txn<V: KvView>(view: &V, t: &TxnRequest, base: i64, compact_rev: i64, leases: &[i64]) -> Result<(TxnResponse, bool)> {
    let mut path = Vec::new();
    plan(view, t, base, &mut path).await?;
    // As etcd: every put of the chosen branches is checked before any range.
    let checks = |kind| Checks { base, compact_rev, kind, deleted: KeySet::default(), leases: leases.to_vec() };
    check(view, t, &path, &mut checks(CheckKind::Put)).await?;
    check(view, t, &path, &mut checks(CheckKind::Range)).await?;
    let mut x = TxnExec { base, changed: false, sub: 0, path: path.into_iter() };
    let mut resp = match exec(view, t, &mut x).await {
        Ok(resp) => resp,
        Err(e) => fatal(&format!("a txn failed while writing, after its checks passed: {e}")),
    };
    resp.header = header(base + i64::from(x.changed));
    Ok((resp, x.changed))
}

/// Stops the process: a committed request could not be applied whole (etcd panics too).
pub fn fatal(msg: &str) -> ! {
    crate::log::error("cannot apply a committed request; stopping", &[("error", msg.to_string())]);
    std::process::abort()
}

/// The one shard holding every key `t` touches, if there is one: all compares and ops name
/// single keys (no ranges), recursively, and they hash to the same shard.
pub fn single_owner(t: &TxnRequest, owner: &impl Fn(&[u8]) -> usize) -> Option<usize> {
    let mut found = None;
    single_owner_into(t, owner, &mut found).then_some(found).flatten()
}

fn single_owner_into(t: &TxnRequest, owner: &impl Fn(&[u8]) -> usize, found: &mut Option<usize>) -> bool {
    t.compare.iter().all(|c| same_owner(&c.key, &c.range_end, owner, found))
        && t.success.iter().chain(&t.failure).all(|op| match &op.request {
            Some(Op::RequestRange(r)) => same_owner(&r.key, &r.range_end, owner, found),
            Some(Op::RequestPut(p)) => same_owner(&p.key, &[], owner, found),
            Some(Op::RequestDeleteRange(d)) => same_owner(&d.key, &d.range_end, owner, found),
            Some(Op::RequestTxn(nested)) => single_owner_into(nested, owner, found),
            None => true,
        })
}

/// Whether a single key (no range) lives on the shard found so far (the first one sets it).
fn same_owner(key: &[u8], range_end: &[u8], owner: &impl Fn(&[u8]) -> usize, found: &mut Option<usize>) -> bool {
    if !range_end.is_empty() {
        return false;
    }
    let o = owner(key);
    *found.get_or_insert(o) == o
}

/// Evaluates the compares of `t` and of every nested txn on the chosen branches, at
/// `base` (before any write of this txn), in pre-order.
fn plan<'a, V: KvView>(view: &'a V, t: &'a TxnRequest, base: i64, path: &'a mut Vec<bool>) -> BoxFut<'a, Result<()>> {
    Box::pin(async move {
        let mut ok = true;
        for c in &t.compare {
            if !compare(view, c, base).await? {
                ok = false;
                break;
            }
        }
        path.push(ok);
        for op in branch(t, ok) {
            if let Some(Op::RequestTxn(nested)) = &op.request {
                plan(view, nested, base, path).await?;
            }
        }
        Ok(())
    })
}

async fn compare<V: KvView>(view: &V, c: &Compare, base: i64) -> Result<bool> {
    let query = RangeQuery {
        range: KeyRange::new(&c.key, &c.range_end),
        rev: base,
        limit: 0,
        count_only: false,
        // Only a value compare reads the values: the others need no copy of them.
        keys_only: c.target != CompareTarget::Value as i32,
        sealed: false,
    };
    let kvs = view.range(query).await?.kvs;
    if kvs.is_empty() {
        // As etcd: a value compare on missing keys fails; others compare against zeros.
        return Ok(c.target != CompareTarget::Value as i32 && compare_kv(c, &KeyValue::default()));
    }
    Ok(kvs.iter().all(|kv| compare_kv(c, kv)))
}

/// etcd's checkRequests on the chosen branches, in the order the ops run: puts with
/// ignore_value/ignore_lease need a key that exists at that point (at `base`, and not deleted
/// by an earlier op of this txn: etcd would fail there halfway through the txn and panic),
/// leases must exist, and ranges need a revision within [compact_rev, base]. Returns how many
/// entries of `path` this txn and its nested ones used.
fn check<'a, V: KvView>(view: &'a V, t: &'a TxnRequest, path: &'a [bool], c: &'a mut Checks) -> BoxFut<'a, Result<usize>> {
    Box::pin(async move {
        let mut used = 1;
        for op in branch(t, path[0]) {
            match (&op.request, c.kind) {
                (Some(Op::RequestTxn(nested)), _) => used += check(view, nested, &path[used..], c).await?,
                (Some(Op::RequestPut(p)), CheckKind::Put) => {
                    if (p.ignore_value || p.ignore_lease) && (c.deleted.contains(&p.key) || !exists(view, &p.key, c.base).await?) {
                        return Err(Error::KeyNotFound);
                    }
                    check_lease(p.lease, &c.leases)?;
                }
                (Some(Op::RequestDeleteRange(d)), CheckKind::Put) => c.deleted.insert_range(&KeyRange::new(&d.key, &d.range_end)),
                (Some(Op::RequestRange(r)), CheckKind::Range) if r.revision != 0 => {
                    if r.revision > c.base {
                        return Err(Error::FutureRev);
                    }
                    if r.revision < c.compact_rev {
                        return Err(Error::Compacted);
                    }
                }
                _ => {}
            }
        }
        Ok(used)
    })
}

async fn exists<V: KvView>(view: &V, key: &[u8], rev: i64) -> Result<bool> {
    let query = RangeQuery { range: KeyRange::Single(key.to_vec()), rev, limit: 1, count_only: true, keys_only: true, sealed: false };
    Ok(view.range(query).await?.count > 0)
}

/// Runs the planned branches. Writes happen at `base + 1`, each at the next sub revision; a
/// range sees the writes of the ops before it, as in etcd's write txn.
fn exec<'a, V: KvView>(view: &'a V, t: &'a TxnRequest, x: &'a mut TxnExec) -> BoxFut<'a, Result<TxnResponse>> {
    Box::pin(async move {
        let ok = x.path.next().expect("txn plan covers every nested txn");
        let mut responses = Vec::new();
        for op in branch(t, ok) {
            let response = match &op.request {
                Some(Op::RequestRange(r)) => {
                    let current = x.base + i64::from(x.changed);
                    OpResponse::ResponseRange(range(view, r, current).await?)
                }
                Some(Op::RequestPut(p)) => {
                    let resp = put(view, p, x.next_rev()).await?;
                    x.changed(1);
                    OpResponse::ResponsePut(resp)
                }
                Some(Op::RequestDeleteRange(d)) => {
                    let mut resp = delete_range(view, d, x.next_rev()).await?;
                    x.changed(resp.deleted);
                    resp.header = header(x.base + i64::from(x.changed));
                    OpResponse::ResponseDeleteRange(resp)
                }
                Some(Op::RequestTxn(nested)) => OpResponse::ResponseTxn(exec(view, nested, x).await?),
                None => continue,
            };
            responses.push(ResponseOp { response: Some(response) });
        }
        Ok(TxnResponse { header: Some(ResponseHeader::default()), succeeded: ok, responses })
    })
}

struct Checks {
    base: i64,
    compact_rev: i64,
    kind: CheckKind,
    /// Keys deleted by the ops checked so far (the put pass only).
    deleted: KeySet,
    /// The leases that exist, of those the txn's puts name.
    leases: Vec<i64>,
}

#[derive(Clone, Copy)]
enum CheckKind {
    Put,
    Range,
}

struct TxnExec {
    base: i64,
    changed: bool,
    /// Sub revision of the next write.
    sub: u32,
    path: std::vec::IntoIter<bool>,
}

impl TxnExec {
    /// The revision of the next write: etcd numbers a txn's changes 0, 1, 2..., one per key put
    /// or deleted, so a range delete takes one sub revision per key it deletes.
    fn next_rev(&self) -> Rev {
        Rev::new(self.base + 1, self.sub)
    }

    fn changed(&mut self, keys: i64) {
        self.changed |= keys > 0;
        self.sub = u32::try_from(keys).ok().and_then(|k| self.sub.checked_add(k)).expect("a txn has fewer than 2^32 writes");
    }
}

fn branch(t: &TxnRequest, ok: bool) -> &[RequestOp] {
    if ok {
        &t.success
    } else {
        &t.failure
    }
}

/// etcd's compareKV.
fn compare_kv(c: &Compare, kv: &KeyValue) -> bool {
    use std::cmp::Ordering;
    let ord: Ordering = match (CompareTarget::try_from(c.target), &c.target_union) {
        (Ok(CompareTarget::Value), Some(TargetUnion::Value(v))) => kv.value.as_ref().cmp(v.as_slice()),
        (Ok(CompareTarget::Value), _) => kv.value.as_ref().cmp(&[][..]),
        (Ok(target), u) => int_field(kv, target).cmp(&int_target(u, target)),
        (Err(_), _) => Ordering::Equal,
    };
    match CompareResult::try_from(c.result) {
        Ok(CompareResult::Equal) => ord.is_eq(),
        Ok(CompareResult::NotEqual) => ord.is_ne(),
        Ok(CompareResult::Greater) => ord.is_gt(),
        Ok(CompareResult::Less) => ord.is_lt(),
        Err(_) => true,
    }
}

/// The integer field of `kv` a compare of `target` reads.
fn int_field(kv: &KeyValue, target: CompareTarget) -> i64 {
    match target {
        CompareTarget::Create => kv.create_revision,
        CompareTarget::Mod => kv.mod_revision,
        CompareTarget::Version => kv.version,
        CompareTarget::Lease => kv.lease,
        CompareTarget::Value => 0,
    }
}

/// The integer a compare of `target` targets; 0 when the union holds another kind (as etcd).
fn int_target(u: &Option<TargetUnion>, target: CompareTarget) -> i64 {
    match (target, u) {
        (CompareTarget::Create, Some(TargetUnion::CreateRevision(r)))
        | (CompareTarget::Mod, Some(TargetUnion::ModRevision(r)))
        | (CompareTarget::Version, Some(TargetUnion::Version(r)))
        | (CompareTarget::Lease, Some(TargetUnion::Lease(r))) => *r,
        _ => 0,
    }
}

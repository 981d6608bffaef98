//! Applying committed writes: the raft core hands each committed request here, in log order.
//! Applying assigns the revision (etcd's rules: a request that changes nothing keeps the
//! current revision; a txn is one revision), sends each shard its writes at that revision and
//! builds the response. A txn is planned first — compares read at the revision before it,
//! branch chosen, preconditions checked — and only then writes, so a failing txn changes
//! nothing. Runs on shard 0, the only writer of revisions.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::mvcc::store::{RangeQuery, WriteOp, WriteResult};
use crate::mvcc::KeyRange;
use crate::proto::ballastpb::internal_request::Request;
use crate::proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use crate::proto::etcdserverpb::request_op::Request as Op;
use crate::proto::etcdserverpb::response_op::Response as OpResponse;
use crate::proto::etcdserverpb::*;
use crate::proto::mvccpb::KeyValue;
use crate::proto::etcdserverpb::alarm_request::AlarmAction;
use crate::quota::{cost_put, cost_txn, Quota};
use crate::range::range;
use crate::shard::mailbox::Shards;
use crate::status::ServerStatus;

#[derive(Debug)]
pub enum Response {
    Put(PutResponse),
    DeleteRange(DeleteRangeResponse),
    Txn(TxnResponse),
    /// With one receiver per shard, resolved when its physical compaction is done.
    Compaction(CompactionResponse, Vec<tokio::sync::oneshot::Receiver<()>>),
    Alarm(AlarmResponse),
}

pub struct Applier {
    shards: Shards,
    status: Arc<ServerStatus>,
    quota: Quota,
    /// Revision of the last change; etcd starts at 1.
    rev: i64,
    compact_rev: i64,
    /// Raised alarms, raft-applied like etcd's alarm store. NOSPACE caps writes.
    alarms: Vec<AlarmMember>,
}

type BoxFut<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

fn header(revision: i64) -> Option<ResponseHeader> {
    Some(ResponseHeader { revision, ..Default::default() })
}

impl Applier {
    pub fn new(shards: Shards, status: Arc<ServerStatus>, quota: Quota) -> Applier {
        Applier { shards, status, quota, rev: 1, compact_rev: 0, alarms: Vec::new() }
    }

    /// Resumes from a snapshot's state.
    pub fn restore(&mut self, rev: i64, compact_rev: i64, alarms: &[(u64, i32)]) {
        self.rev = rev;
        self.compact_rev = compact_rev;
        self.alarms = alarms.iter().map(|&(member_id, alarm)| AlarmMember { member_id, alarm }).collect();
        self.publish_alarms();
    }

    pub fn alarms(&self) -> Vec<(u64, i32)> {
        self.alarms.iter().map(|a| (a.member_id, a.alarm)).collect()
    }

    fn publish_alarms(&self) {
        self.status.publish_alarms(self.alarms.iter().fold(0, |bits, m| bits | 1 << m.alarm.clamp(0, 31)));
    }

    fn nospace(&self) -> bool {
        self.alarms.iter().any(|a| a.alarm == AlarmType::Nospace as i32)
    }

    /// etcd's quota applier: a write past the quota is applied but answered NOSPACE
    /// (the front end normally refuses it before it reaches raft).
    fn within_quota(&self, cost_bytes: u64) -> bool {
        self.quota.available(self.status.db_size_bytes(), cost_bytes)
    }

    pub fn rev(&self) -> i64 {
        self.rev
    }

    pub fn compact_rev(&self) -> i64 {
        self.compact_rev
    }

    /// Applies the requests of one raft entry in order. Runs of plain puts (which cannot fail)
    /// get consecutive revisions up front and go out as one message per shard, all shards at
    /// once; everything else is applied one request at a time.
    pub async fn apply_all(&mut self, reqs: &[Option<Request>]) -> Vec<Result<Response>> {
        let mut results = Vec::with_capacity(reqs.len());
        let mut i = 0;
        while i < reqs.len() {
            let run = reqs[i..].iter().take_while(|r| self.is_plain_put(r.as_ref())).count();
            if run > 0 {
                let puts = reqs[i..i + run].iter().map(|r| match r {
                    Some(Request::Put(p)) => p,
                    _ => unreachable!("counted as plain puts"),
                });
                results.extend(self.put_run(puts.collect()).await);
                i += run;
            } else {
                results.push(match &reqs[i] {
                    Some(req) => self.apply(req).await,
                    None => Err(Error::Internal("empty request in raft entry".into())),
                });
                i += 1;
            }
        }
        results
    }

    fn is_plain_put(&self, req: Option<&Request>) -> bool {
        matches!(req, Some(Request::Put(p)) if !p.ignore_value && !p.ignore_lease) && !self.nospace()
    }

    /// Puts that need no precondition: revisions `rev+1..=rev+n`, one message per shard.
    async fn put_run(&mut self, puts: Vec<&PutRequest>) -> Vec<Result<Response>> {
        let base = self.rev;
        let mut db_size = self.status.db_size_bytes();
        let mut fits = Vec::with_capacity(puts.len());
        let mut per_shard: Vec<Vec<(i64, WriteOp)>> = vec![Vec::new(); self.shards.count()];
        let mut slots = Vec::with_capacity(puts.len());
        for (n, p) in puts.iter().enumerate() {
            let cost = cost_put(p);
            fits.push(self.quota.available(db_size, cost));
            db_size += cost;
            let owner = self.shards.owner(&p.key);
            slots.push((owner, per_shard[owner].len()));
            let op = WriteOp::Put { key: p.key.clone(), value: Some(p.value.clone()), lease: Some(p.lease), prev_kv: p.prev_kv };
            per_shard[owner].push((base + 1 + n as i64, op));
        }
        let shards = &self.shards;
        let calls = per_shard.into_iter().enumerate().filter(|(_, ops)| !ops.is_empty()).map(|(s, ops)| async move {
            (s, shards.write_on(s, ops).await)
        });
        let mut replies: Vec<Option<Vec<Result<WriteResult>>>> = (0..self.shards.count()).map(|_| None).collect();
        for (s, r) in futures_util::future::join_all(calls).await {
            match r {
                Ok(results) => replies[s] = Some(results),
                Err(e) => return puts.iter().map(|_| Err(e.clone())).collect(),
            }
        }
        self.rev = base + puts.len() as i64;
        slots
            .into_iter()
            .enumerate()
            .map(|(n, (owner, k))| {
                let result = replies[owner].as_mut().and_then(|r| r.get_mut(k)).map(|r| std::mem::replace(r, Err(Error::Stopped)));
                match result {
                    Some(Ok(WriteResult::Put { prev })) if fits[n] => {
                        Ok(Response::Put(PutResponse { header: header(base + 1 + n as i64), prev_kv: prev }))
                    }
                    Some(Ok(WriteResult::Put { .. })) => Err(Error::NoSpace),
                    Some(Err(e)) => Err(e),
                    other => Err(Error::Internal(format!("unexpected shard reply to put: {other:?}"))),
                }
            })
            .collect()
    }

    pub async fn apply(&mut self, req: &Request) -> Result<Response> {
        match req {
            Request::Put(p) => {
                if self.nospace() {
                    return Err(Error::NoSpace);
                }
                let fits = self.within_quota(cost_put(p));
                let base = self.rev;
                let resp = self.put(p, base).await?;
                self.rev = base + 1;
                if !fits {
                    return Err(Error::NoSpace);
                }
                Ok(Response::Put(resp))
            }
            Request::DeleteRange(d) => {
                let base = self.rev;
                let resp = self.delete_range(d, base).await?;
                if resp.deleted > 0 {
                    self.rev = base + 1;
                }
                Ok(Response::DeleteRange(resp))
            }
            Request::Txn(t) => {
                let cost = cost_txn(t);
                if self.nospace() && cost > 0 {
                    return Err(Error::NoSpace);
                }
                let fits = self.within_quota(cost);
                let resp = self.txn(t).await?;
                if !fits {
                    return Err(Error::NoSpace);
                }
                Ok(Response::Txn(resp))
            }
            Request::Compaction(c) => self.compact(c.revision).await,
            Request::Alarm(a) => Ok(Response::Alarm(self.alarm(a))),
        }
    }

    async fn put(&self, p: &PutRequest, base: i64) -> Result<PutResponse> {
        let op = WriteOp::Put {
            key: p.key.clone(),
            value: (!p.ignore_value).then(|| p.value.clone()),
            lease: (!p.ignore_lease).then_some(p.lease),
            prev_kv: p.prev_kv,
        };
        let owner = self.shards.owner(&p.key);
        match self.shards.write_on(owner, vec![(base + 1, op)]).await?.pop() {
            Some(Ok(WriteResult::Put { prev })) => Ok(PutResponse { header: header(base + 1), prev_kv: prev }),
            Some(Err(e)) => Err(e),
            other => Err(Error::Internal(format!("unexpected shard reply to put: {other:?}"))),
        }
    }

    /// Deletes at `base + 1`; the response's revision is `base + 1` only if something was
    /// deleted (or `changed_before`, when an earlier op of the same txn changed something).
    async fn delete_range(&self, d: &DeleteRangeRequest, base: i64) -> Result<DeleteRangeResponse> {
        let range = KeyRange::new(&d.key, &d.range_end);
        let owners = self.shards.owners(&range);
        let op = WriteOp::DeleteRange { range, prev_kv: d.prev_kv };
        let calls = owners.iter().map(|&s| self.shards.write_on(s, vec![(base + 1, op.clone())]));
        let mut resp = DeleteRangeResponse::default();
        for results in futures_util::future::join_all(calls).await {
            for r in results? {
                match r? {
                    WriteResult::Deleted { count, prev_kvs } => {
                        resp.deleted += count;
                        resp.prev_kvs.extend(prev_kvs);
                    }
                    other => return Err(Error::Internal(format!("unexpected shard reply to delete: {other:?}"))),
                }
            }
        }
        resp.prev_kvs.sort_by(|a, b| a.key.cmp(&b.key));
        resp.header = header(if resp.deleted > 0 { base + 1 } else { base });
        Ok(resp)
    }

    async fn compact(&mut self, rev: i64) -> Result<Response> {
        if rev <= self.compact_rev {
            return Err(Error::Compacted);
        }
        if rev > self.rev {
            return Err(Error::FutureRev);
        }
        self.compact_rev = rev;
        let calls = (0..self.shards.count()).map(|s| self.shards.compact_on(s, rev));
        let physical = futures_util::future::join_all(calls).await.into_iter().collect::<Result<Vec<_>>>()?;
        Ok(Response::Compaction(CompactionResponse { header: header(self.rev) }, physical))
    }

    /// etcd's alarm store: GET lists (all, or one type), ACTIVATE adds, DEACTIVATE removes.
    fn alarm(&mut self, a: &AlarmRequest) -> AlarmResponse {
        let member = AlarmMember { member_id: a.member_id, alarm: a.alarm };
        let alarms = match AlarmAction::try_from(a.action) {
            Ok(AlarmAction::Get) => {
                self.alarms.iter().filter(|m| a.alarm == AlarmType::None as i32 || m.alarm == a.alarm).cloned().collect()
            }
            Ok(AlarmAction::Activate) if a.alarm != AlarmType::None as i32 => {
                if !self.alarms.contains(&member) {
                    crate::log::warn("alarm raised", &[("alarm", alarm_name(a.alarm)), ("from", format!("{:x}", a.member_id))]);
                    self.alarms.push(member.clone());
                }
                vec![member]
            }
            Ok(AlarmAction::Deactivate) => match self.alarms.iter().position(|m| *m == member) {
                Some(i) => {
                    crate::log::warn("alarm disarmed", &[("alarm", alarm_name(a.alarm)), ("from", format!("{:x}", a.member_id))]);
                    vec![self.alarms.remove(i)]
                }
                None => vec![],
            },
            _ => vec![],
        };
        self.publish_alarms();
        AlarmResponse { header: header(self.rev), alarms }
    }

    async fn txn(&mut self, t: &TxnRequest) -> Result<TxnResponse> {
        let base = self.rev;
        let mut path = Vec::new();
        self.plan(t, base, &mut path).await?;
        self.check(t, &path, base, CheckKind::Put).await?;
        self.check(t, &path, base, CheckKind::Range).await?;
        let mut exec = TxnExec { base, changed: false, path: path.into_iter() };
        let mut resp = self.exec(t, &mut exec).await?;
        if exec.changed {
            self.rev = base + 1;
        }
        resp.header = header(self.rev);
        Ok(resp)
    }

    /// Evaluates the compares of `t` and of every nested txn on the chosen branches, at
    /// `base` (before any write of this txn), in pre-order.
    fn plan<'a>(&'a self, t: &'a TxnRequest, base: i64, path: &'a mut Vec<bool>) -> BoxFut<'a, Result<()>> {
        Box::pin(async move {
            let mut ok = true;
            for c in &t.compare {
                if !self.compare(c, base).await? {
                    ok = false;
                    break;
                }
            }
            path.push(ok);
            for op in branch(t, ok) {
                if let Some(Op::RequestTxn(nested)) = &op.request {
                    self.plan(nested, base, path).await?;
                }
            }
            Ok(())
        })
    }

    async fn compare(&self, c: &Compare, base: i64) -> Result<bool> {
        let query = RangeQuery {
            range: KeyRange::new(&c.key, &c.range_end),
            rev: base,
            limit: 0,
            count_only: false,
            keys_only: false,
        };
        let kvs = self.shards.range(&query).await?.kvs;
        if kvs.is_empty() {
            // As etcd: a value compare on missing keys fails; others compare against zeros.
            return Ok(c.target != CompareTarget::Value as i32 && compare_kv(c, &KeyValue::default()));
        }
        Ok(kvs.iter().all(|kv| compare_kv(c, kv)))
    }

    /// etcd's checkRequests: on the chosen branches, puts with ignore_value/ignore_lease need
    /// an existing key, and ranges need a revision within [compact_rev, base].
    fn check<'a>(&'a self, t: &'a TxnRequest, path: &'a [bool], base: i64, kind: CheckKind) -> BoxFut<'a, Result<usize>> {
        Box::pin(async move {
            let mut used = 1;
            for op in branch(t, path[0]) {
                match (&op.request, kind) {
                    (Some(Op::RequestTxn(nested)), _) => used += self.check(nested, &path[used..], base, kind).await?,
                    (Some(Op::RequestPut(p)), CheckKind::Put) if p.ignore_value || p.ignore_lease => {
                        let query = RangeQuery {
                            range: KeyRange::Single(p.key.clone()),
                            rev: base,
                            limit: 1,
                            count_only: true,
                            keys_only: true,
                        };
                        if self.shards.range(&query).await?.count == 0 {
                            return Err(Error::KeyNotFound);
                        }
                    }
                    (Some(Op::RequestRange(r)), CheckKind::Range) if r.revision != 0 => {
                        if r.revision > base {
                            return Err(Error::FutureRev);
                        }
                        if r.revision < self.compact_rev {
                            return Err(Error::Compacted);
                        }
                    }
                    _ => {}
                }
            }
            Ok(used)
        })
    }

    /// Runs the planned branches. All writes happen at `base + 1`; a range sees the writes of
    /// the ops before it, as in etcd's write txn.
    fn exec<'a>(&'a self, t: &'a TxnRequest, x: &'a mut TxnExec) -> BoxFut<'a, Result<TxnResponse>> {
        Box::pin(async move {
            let ok = x.path.next().expect("txn plan covers every nested txn");
            let mut responses = Vec::new();
            for op in branch(t, ok) {
                let response = match &op.request {
                    Some(Op::RequestRange(r)) => {
                        let view = x.base + i64::from(x.changed);
                        OpResponse::ResponseRange(range(&self.shards, r, view).await?)
                    }
                    Some(Op::RequestPut(p)) => {
                        let resp = self.put(p, x.base).await?;
                        x.changed = true;
                        OpResponse::ResponsePut(resp)
                    }
                    Some(Op::RequestDeleteRange(d)) => {
                        let mut resp = self.delete_range(d, x.base).await?;
                        x.changed |= resp.deleted > 0;
                        resp.header = header(x.base + i64::from(x.changed));
                        OpResponse::ResponseDeleteRange(resp)
                    }
                    Some(Op::RequestTxn(nested)) => OpResponse::ResponseTxn(self.exec(nested, x).await?),
                    None => continue,
                };
                responses.push(ResponseOp { response: Some(response) });
            }
            Ok(TxnResponse { header: Some(ResponseHeader::default()), succeeded: ok, responses })
        })
    }
}

#[derive(Clone, Copy)]
enum CheckKind {
    Put,
    Range,
}

struct TxnExec {
    base: i64,
    changed: bool,
    path: std::vec::IntoIter<bool>,
}

pub fn alarm_name(alarm: i32) -> String {
    AlarmType::try_from(alarm).map_or_else(|_| alarm.to_string(), |a| a.as_str_name().to_string())
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
        (Ok(CompareTarget::Value), Some(TargetUnion::Value(v))) => kv.value.as_slice().cmp(v),
        (Ok(CompareTarget::Value), _) => kv.value.as_slice().cmp(&[][..]),
        (Ok(CompareTarget::Create), u) => kv.create_revision.cmp(&int_target(u, |u| match u {
            TargetUnion::CreateRevision(r) => Some(*r),
            _ => None,
        })),
        (Ok(CompareTarget::Mod), u) => kv.mod_revision.cmp(&int_target(u, |u| match u {
            TargetUnion::ModRevision(r) => Some(*r),
            _ => None,
        })),
        (Ok(CompareTarget::Version), u) => kv.version.cmp(&int_target(u, |u| match u {
            TargetUnion::Version(r) => Some(*r),
            _ => None,
        })),
        (Ok(CompareTarget::Lease), u) => kv.lease.cmp(&int_target(u, |u| match u {
            TargetUnion::Lease(r) => Some(*r),
            _ => None,
        })),
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

/// The integer a compare targets; 0 when the union holds another kind (as etcd).
fn int_target(u: &Option<TargetUnion>, pick: impl Fn(&TargetUnion) -> Option<i64>) -> i64 {
    u.as_ref().and_then(pick).unwrap_or(0)
}

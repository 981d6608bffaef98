//! Applying committed writes: the raft core hands each committed request here, in log order.
//! Applying assigns the revision (etcd's rules: a request that changes nothing keeps the
//! current revision; a txn is one revision), sends each shard its writes at that revision and
//! builds the response (etcd's put/delete/txn semantics live in txn.rs). Quota, the NOSPACE
//! cap and the alarm store are applied here. Runs on shard 0, the only writer of revisions.
//!
//! A request either fails before it writes anything (etcd's errors: key or lease not found,
//! compacted, no space...) or applies whole. A fault while applying (a shard gone, an answer
//! that cannot be) stops the process (`txn::fatal`): a committed entry half applied, or a
//! revision handed out twice, would be worse, and a restart replays the entry from the WAL.

use std::sync::Arc;

use super::response::Response;
use super::txn::{check_lease, fatal, header, leased_puts, leases_named};
use crate::lease::lessor::Lessor;
use crate::error::{Error, Result};
use crate::mvcc::store::{WriteOp, WriteResult};
use crate::mvcc::Rev;
use crate::auth::{AuthGuard, AuthInfo, AuthState};
use crate::proto::ballastpb::internal_request::Request;
use crate::proto::ballastpb::AuthHeader;
use crate::proto::etcdserverpb::alarm_request::AlarmAction;
use crate::proto::etcdserverpb::*;
use crate::quota::{cost_put, cost_txn, Quota};
use crate::shard::mailbox::Shards;
use crate::status::ServerStatus;

pub struct Applier {
    shards: Shards,
    status: Arc<ServerStatus>,
    quota: Quota,
    /// Revision of the last change; etcd starts at 1.
    rev: i64,
    /// etcd's compactMainRev: -1 until the first compaction, so a compaction at revision 0 is
    /// accepted once and a txn's range at revision -1 reads the newest state, as in etcd.
    compact_rev: i64,
    /// Raised alarms, raft-applied like etcd's alarm store. NOSPACE caps writes.
    alarms: Vec<AlarmMember>,
    /// Leases, raft-applied; their expiry clocks run while this member leads.
    lessor: Lessor,
    leader: bool,
    /// etcd's auth store, raft-applied; each change is published to the front end's guard.
    auth: AuthState,
    guard: Arc<AuthGuard>,
    /// Raft index of the entry being applied (a simple token names it).
    index: u64,
    /// The end of raft's log at boot: entries up to it are replayed from the WAL, and what etcd
    /// holds in memory only is not taken from them again: their Authenticate entries issue no
    /// token (etcd's tokens skip the entries its backend applied, so a restart loses them; one
    /// replayed here would come back with a fresh TTL, however long ago it expired), their lease
    /// checkpoints set no time left unless checkpoints persist. (The log's end, not the
    /// recovered commit index, which lags the last entry applied before a crash. A follower's
    /// entries past its commit that a new leader overwrites count too: tokens issued there are
    /// refused on this member until the client authenticates again.)
    replayed_until: u64,
}

impl Applier {
    pub fn new(shards: Shards, status: Arc<ServerStatus>, quota: Quota, lessor: Lessor, guard: Arc<AuthGuard>) -> Applier {
        let auth = AuthState::default();
        guard.publish(&auth);
        Applier { shards, status, quota, rev: 1, compact_rev: -1, alarms: Vec::new(), lessor, leader: false, auth, guard, index: 0, replayed_until: 0 }
    }

    pub fn auth(&self) -> &AuthState {
        &self.auth
    }

    /// Resumes the auth store from a snapshot.
    pub fn restore_auth(&mut self, auth: AuthState) {
        self.auth = auth;
        self.guard.publish(&self.auth);
    }

    pub fn set_index(&mut self, index: u64) {
        self.index = index;
    }

    /// Entries up to `index` are a replay of what this member applied before it restarted.
    pub fn set_replayed_until(&mut self, index: u64) {
        self.replayed_until = index;
    }

    pub fn lessor(&mut self) -> &mut Lessor {
        &mut self.lessor
    }

    /// This member leads from now: lease expiry clocks start (etcd's Promote).
    pub fn promote(&mut self, extend: std::time::Duration) {
        self.leader = true;
        self.lessor.promote(std::time::Instant::now(), extend);
    }

    /// This member no longer leads: leases granted from now on get no expiry clock here (the
    /// next `promote` starts every lease's clock anew).
    pub fn demote(&mut self) {
        self.leader = false;
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
        self.status.publish_alarms(&self.alarms());
    }

    fn raised(&self, alarm: AlarmType) -> bool {
        self.alarms.iter().any(|a| a.alarm == alarm as i32)
    }

    fn nospace(&self) -> bool {
        self.raised(AlarmType::Nospace)
    }

    /// etcd's corrupt applier (outermost, so before NOSPACE): while CORRUPT is raised, every
    /// write, compaction, lease grant and revoke is answered "corrupt cluster". A read-only
    /// txn is a read (etcd does not apply it through raft).
    fn refused_as_corrupt(&self, req: &Request) -> bool {
        if !self.raised(AlarmType::Corrupt) {
            return false;
        }
        match req {
            Request::Put(_) | Request::DeleteRange(_) | Request::Compaction(_) | Request::LeaseGrant(_) | Request::LeaseRevoke(_) => true,
            Request::Txn(t) => !super::txn::is_read_only(t),
            _ => false,
        }
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
    /// once, their keys and values moved into the stores (those requests are left emptied);
    /// everything else is applied one request at a time, by reference.
    pub async fn apply_all(&mut self, reqs: &mut [Option<Request>], auth: &[Option<AuthHeader>]) -> Vec<Result<Response>> {
        let mut results = Vec::with_capacity(reqs.len());
        let mut i = 0;
        let sender = |i: usize| auth.get(i).and_then(Option::as_ref);
        while i < reqs.len() {
            if let (true, Some(req)) = (self.auth.enabled, &reqs[i]) {
                if let Err(e) = self.auth_check(req, sender(i)) {
                    results.push(Err(e));
                    i += 1;
                    continue;
                }
            }
            let run = reqs[i..]
                .iter()
                .enumerate()
                .take_while(|(n, r)| self.is_plain_put(r.as_ref()) && (!self.auth.enabled || self.auth_check(r.as_ref().expect("a plain put"), sender(i + n)).is_ok()))
                .count();
            let started = std::time::Instant::now();
            if run > 0 {
                let puts = reqs[i..i + run].iter_mut().map(|r| match r {
                    Some(Request::Put(p)) => p,
                    _ => unreachable!("counted as plain puts"),
                });
                let done = self.put_run(puts.collect()).await;
                // Applied together: each put is charged its share of the run's time.
                let each = started.elapsed().as_secs_f64() / run as f64;
                let ok = done.iter().filter(|r| applied(r)).count();
                crate::metrics::apply_seconds("Put", true).record_many(each, ok);
                if ok < run {
                    crate::metrics::apply_seconds("Put", false).record_many(each, run - ok);
                }
                results.extend(done);
                i += run;
            } else {
                let Some(req) = &reqs[i] else { fatal("a raft entry holds an empty request") };
                let result = settled(self.apply_as(req, sender(i)).await);
                if let Some(op) = op_name(req) {
                    crate::metrics::apply_seconds(op, applied(&result)).record(started.elapsed().as_secs_f64());
                }
                results.push(result);
                i += 1;
            }
        }
        results
    }

    fn is_plain_put(&self, req: Option<&Request>) -> bool {
        matches!(req, Some(Request::Put(p)) if !p.ignore_value && !p.ignore_lease && p.lease == 0) && self.alarms.is_empty()
    }

    /// Puts that need no precondition: revisions `rev+1..=rev+n`, one message per shard.
    async fn put_run(&mut self, puts: Vec<&mut PutRequest>) -> Vec<Result<Response>> {
        let base = self.rev;
        let mut db_size = self.status.db_size_bytes();
        let count = puts.len();
        let mut fits = Vec::with_capacity(count);
        let mut per_shard: Vec<Vec<(Rev, WriteOp)>> = vec![Vec::new(); self.shards.count()];
        let mut slots = Vec::with_capacity(count);
        for (n, p) in puts.into_iter().enumerate() {
            let cost = cost_put(p);
            fits.push(self.quota.available(db_size, cost));
            db_size += cost;
            let owner = self.shards.owner(&p.key);
            slots.push((owner, per_shard[owner].len()));
            let (key, value) = (std::mem::take(&mut p.key), std::mem::take(&mut p.value));
            let op = WriteOp::Put { key, value: Some(value), lease: Some(p.lease), prev_kv: p.prev_kv };
            per_shard[owner].push((Rev::main(base + 1 + n as i64), op));
        }
        let shards = &self.shards;
        let calls = per_shard.into_iter().enumerate().filter(|(_, ops)| !ops.is_empty()).map(|(s, ops)| async move {
            (s, shards.write_on(s, ops).await)
        });
        let mut replies: Vec<Option<Vec<Result<WriteResult>>>> = (0..self.shards.count()).map(|_| None).collect();
        for (s, r) in futures_util::future::join_all(calls).await {
            match r {
                Ok(results) => replies[s] = Some(results),
                Err(e) => fatal(&format!("shard {s} did not apply puts: {e}")),
            }
        }
        self.rev = base + count as i64;
        crate::metrics::handles().puts.increment(fits.iter().filter(|&&f| f).count() as u64);
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
                    other => fatal(&format!("unexpected shard reply to a plain put: {other:?}")),
                }
            })
            .collect()
    }

    /// etcd's authApplierV3: who may apply `req` (auth enabled). A KV write was checked by the
    /// front end against the auth state of its header's revision: refused now if that state
    /// changed since (or if it names nobody). Auth changes need the root role (etcd's
    /// needAdminPermission); a lease's keys must be writable to revoke it or put keys on it.
    fn auth_check(&self, req: &Request, sender: Option<&AuthHeader>) -> Result<()> {
        let who = sender.map(|h| AuthInfo { username: h.username.clone(), revision: h.revision }).unwrap_or_default();
        let checked_at_current = || {
            if who.revision == 0 {
                Err(Error::UserEmpty)
            } else if who.revision < self.auth.revision {
                Err(Error::AuthOldRevision)
            } else {
                Ok(())
            }
        };
        match req {
            Request::Put(p) => {
                checked_at_current()?;
                self.lease_keys_writable(&who, [p.lease])
            }
            Request::DeleteRange(_) => checked_at_current(),
            // etcd checks a txn op by op: one with nothing to check is served to nobody too.
            Request::Txn(t) if who.revision == 0 && crate::auth::store::checks_nothing(t) => Ok(()),
            Request::Txn(t) => {
                checked_at_current()?;
                let mut named = Vec::new();
                leases_named(t, &mut named);
                self.lease_keys_writable(&who, named)
            }
            // Without a header: the leader's own revoke of an expired lease.
            Request::LeaseRevoke(r) if sender.is_some() => {
                checked_at_current()?;
                self.lease_keys_writable(&who, [r.id])
            }
            // Every auth store change but logging in needs the root role.
            r if is_auth_change(r) && !matches!(r, Request::Authenticate(_)) => self.auth.admin(&who),
            _ => Ok(()),
        }
    }

    /// etcd's checkLeasePuts: the root role, or write permission on every key of each lease.
    fn lease_keys_writable(&self, who: &AuthInfo, leases: impl IntoIterator<Item = i64>) -> Result<()> {
        let mut leases = leases.into_iter().filter(|&l| l != 0 && self.lessor.exists(l)).peekable();
        if leases.peek().is_none() || self.auth.admin(who).is_ok() {
            return Ok(());
        }
        let view = self.guard.view();
        for lease in leases {
            for key in self.lessor.keys(lease) {
                view.write(who, key, &[])?;
            }
        }
        Ok(())
    }

    async fn apply_as(&mut self, req: &Request, sender: Option<&AuthHeader>) -> Result<Response> {
        if is_auth_change(req) {
            return self.apply_auth(req, sender);
        }
        self.apply(req).await
    }

    /// An auth store change (checked by `auth_check` when auth is on): published to the front
    /// end before it is answered.
    fn apply_auth(&mut self, req: &Request, sender: Option<&AuthHeader>) -> Result<Response> {
        let mut authenticated = None;
        let result = match req {
            Request::AuthEnable(_) => self.auth.enable(),
            Request::AuthDisable(_) => {
                self.auth.disable();
                self.guard.tokens.clear();
                Ok(())
            }
            Request::Authenticate(a) => self.auth.authenticate(&a.name).map(|()| {
                if self.index > self.replayed_until {
                    self.guard.tokens.remember(&a.name, &a.simple_token, self.index);
                }
                authenticated = Some(crate::kv::response::Authenticated {
                    name: a.name.clone(),
                    revision: self.auth.revision,
                    index: self.index,
                    prefix: a.simple_token.clone(),
                });
            }),
            Request::UserAdd(r) => self.auth.user_add(r),
            Request::UserDelete(r) => self.auth.user_delete(&r.name).inspect(|()| self.guard.tokens.invalidate_user(&r.name)),
            Request::UserChangePassword(r) => self.auth.user_change_password(r).inspect(|()| self.guard.tokens.invalidate_user(&r.name)),
            Request::UserGrantRole(r) => self.auth.user_grant_role(r),
            Request::UserRevokeRole(r) => self.auth.user_revoke_role(r),
            Request::RoleAdd(r) => self.auth.role_add(&r.name),
            Request::RoleDelete(r) => self.auth.role_delete(&r.role),
            Request::RoleGrantPermission(r) => self.auth.role_grant_permission(r),
            Request::RoleRevokePermission(r) => self.auth.role_revoke_permission(r),
            _ => unreachable!("not an auth change"),
        };
        let _ = sender;
        result?;
        if authenticated.is_none() {
            self.guard.publish(&self.auth);
        }
        Ok(Response::Auth(header(self.rev), authenticated))
    }

    pub async fn apply(&mut self, req: &Request) -> Result<Response> {
        if self.refused_as_corrupt(req) {
            return Err(Error::Corrupt);
        }
        match req {
            Request::Put(p) => {
                if self.nospace() {
                    return Err(Error::NoSpace);
                }
                check_lease(p.lease, &self.existing([p.lease]))?;
                let fits = self.within_quota(cost_put(p));
                let rev = Rev::main(self.rev + 1);
                // Fails (ignore_value / ignore_lease on a missing key) before writing anything.
                let resp = super::txn::put(&self.shards, p, rev).await?;
                self.rev = rev.main;
                self.lessor.attach(p.lease, &p.key);
                if !fits {
                    return Err(Error::NoSpace);
                }
                crate::metrics::handles().puts.increment(1);
                Ok(Response::Put(resp))
            }
            Request::DeleteRange(d) => {
                let resp = super::txn::delete_range(&self.shards, d, Rev::main(self.rev + 1)).await?;
                crate::metrics::handles().deletes.increment(1);
                if resp.deleted > 0 {
                    self.rev += 1;
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
                count_txn(t, &resp);
                Ok(Response::Txn(resp))
            }
            Request::Compaction(c) => {
                let done = self.compact(c.revision).await;
                if done.is_ok() {
                    // etcd reads its current revision with a Range after compacting: counted.
                    crate::metrics::handles().count_ranges(1);
                }
                done
            }
            Request::Alarm(a) => Ok(Response::Alarm(self.alarm(a))),
            Request::LeaseGrant(g) => {
                if self.nospace() {
                    return Err(Error::NoSpace);
                }
                let fits = self.within_quota(crate::quota::LEASE_GRANT_COST_BYTES);
                let now = self.leader.then(std::time::Instant::now);
                let ttl = self.lessor.grant(g.id, g.ttl, now)?;
                if !fits {
                    return Err(Error::NoSpace);
                }
                Ok(Response::LeaseGrant(LeaseGrantResponse { header: header(self.rev), id: g.id, ttl, error: String::new() }))
            }
            Request::LeaseRevoke(r) => self.revoke(r.id).await,
            Request::LeaseCheckpoint(c) => {
                let now = self.leader.then(std::time::Instant::now);
                // Without -persist etcd holds a checkpoint in memory only, and a restart forgets
                // it (its backend never had it): one replayed from the WAL is not applied.
                let forgotten = self.index <= self.replayed_until && !self.lessor.checkpoints_persist();
                for cp in c.checkpoints.iter().filter(|_| !forgotten) {
                    self.lessor.checkpoint(cp.id, cp.remaining_ttl, now);
                }
                Ok(Response::LeaseCheckpoint(LeaseCheckpointResponse { header: header(self.rev) }))
            }
            // The raft core applied it to the member list (`raft/conf_change.rs`).
            Request::MemberAttrSet(_) => Ok(Response::Members(header(self.rev), Vec::new())),
            other => self.apply_auth(other, None),
        }
    }

    /// Of `leases`, those that exist.
    fn existing(&self, leases: impl IntoIterator<Item = i64>) -> Vec<i64> {
        leases.into_iter().filter(|&l| l != 0 && self.lessor.exists(l)).collect()
    }

    /// etcd's revoke: the lease goes, and every key still on it is deleted in one revision, in
    /// key order (a key put again without it, or deleted since, is left alone: each delete is a
    /// nested txn comparing the key's lease).
    async fn revoke(&mut self, id: i64) -> Result<Response> {
        let keys = self.lessor.revoke(id)?;
        let deletes: Vec<RequestOp> = keys
            .into_iter()
            .map(|key| {
                let still_on = Compare {
                    result: compare::CompareResult::Equal as i32,
                    target: compare::CompareTarget::Lease as i32,
                    key: key.clone(),
                    range_end: Vec::new(),
                    target_union: Some(compare::TargetUnion::Lease(id)),
                };
                let delete = RequestOp { request: Some(request_op::Request::RequestDeleteRange(DeleteRangeRequest { key, ..Default::default() })) };
                RequestOp { request: Some(request_op::Request::RequestTxn(TxnRequest { compare: vec![still_on], success: vec![delete], failure: vec![] })) }
            })
            .collect();
        // etcd deletes each key in one write txn (counted as a txn when it holds several).
        let (keys, m) = (deletes.len() as u64, crate::metrics::handles());
        self.txn(&TxnRequest { compare: vec![], success: deletes, failure: vec![] }).await?;
        m.deletes.increment(keys);
        m.txns.increment(u64::from(keys > 1));
        Ok(Response::LeaseRevoke(LeaseRevokeResponse { header: header(self.rev) }))
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
                    self.alarms.push(member);
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

    /// A txn whose keys all live on one shard runs there in one message; others run here,
    /// reaching the shards op by op.
    async fn txn(&mut self, t: &TxnRequest) -> Result<TxnResponse> {
        let base = self.rev;
        let shards = &self.shards;
        let owner = if shards.count() == 1 { Some(0) } else { super::txn::single_owner(t, &|k| shards.owner(k)) };
        let mut named = Vec::new();
        leases_named(t, &mut named);
        let leases = self.existing(named);
        let (resp, changed) = match owner {
            Some(shard) => shards.txn_on(shard, t.clone(), (base, self.compact_rev), leases).await?,
            None => super::txn::txn(shards, t, base, self.compact_rev, &leases).await?,
        };
        if changed {
            self.rev = base + 1;
            let mut attached = Vec::new();
            leased_puts(t, &resp, &mut attached);
            for (lease, key) in attached {
                self.lessor.attach(lease, &key);
            }
        }
        Ok(resp)
    }
}

/// etcd's mvcc operation counters for an applied txn, as etcd's metrics txns count: the
/// compares (of every level of the path taken) are ranges of one read txn, the ops of the
/// path taken run in a write txn (a read-only txn: in the same read txn), and each of those
/// txns that did more than one operation counts as a txn. (etcd stops at the first compare
/// that fails; all of a failed level's compares are counted here.)
fn count_txn(t: &TxnRequest, resp: &TxnResponse) {
    let mut n = OpCounts::default();
    n.add_txn(t, resp);
    let m = crate::metrics::handles();
    m.count_ranges(n.compares + n.ranges);
    m.puts.increment(n.puts);
    m.deletes.increment(n.deletes);
    let ops = n.ranges + n.puts + n.deletes;
    let txns = if super::txn::is_read_only(t) { u64::from(n.compares + ops > 1) } else { u64::from(n.compares > 1) + u64::from(ops > 1) };
    m.txns.increment(txns);
}

#[derive(Default)]
struct OpCounts {
    compares: u64,
    ranges: u64,
    puts: u64,
    deletes: u64,
}

impl OpCounts {
    fn add_txn(&mut self, t: &TxnRequest, resp: &TxnResponse) {
        use crate::proto::etcdserverpb::response_op::Response as Op;
        self.compares += t.compare.len() as u64;
        let branch = if resp.succeeded { &t.success } else { &t.failure };
        for (req, op) in branch.iter().zip(&resp.responses) {
            match (&req.request, &op.response) {
                (_, Some(Op::ResponseRange(_))) => self.ranges += 1,
                (_, Some(Op::ResponsePut(_))) => self.puts += 1,
                (_, Some(Op::ResponseDeleteRange(_))) => self.deletes += 1,
                (Some(request_op::Request::RequestTxn(inner)), Some(Op::ResponseTxn(r))) => self.add_txn(inner, r),
                _ => {}
            }
        }
    }
}

fn is_auth_change(req: &Request) -> bool {
    matches!(
        req,
        Request::AuthEnable(_)
            | Request::AuthDisable(_)
            | Request::Authenticate(_)
            | Request::UserAdd(_)
            | Request::UserDelete(_)
            | Request::UserChangePassword(_)
            | Request::UserGrantRole(_)
            | Request::UserRevokeRole(_)
            | Request::RoleAdd(_)
            | Request::RoleDelete(_)
            | Request::RoleGrantPermission(_)
            | Request::RoleRevokePermission(_)
    )
}

/// Whether etcd's apply histogram counts `result` a success (a compacted revision is one).
fn applied(result: &Result<Response>) -> bool {
    matches!(result, Ok(_) | Err(Error::Compacted))
}

/// The op label etcd's apply histogram gives `req`; None for a read-only txn, which etcd
/// serves without raft (so its histogram never sees one).
fn op_name(req: &Request) -> Option<&'static str> {
    Some(match req {
        Request::Put(_) => "Put",
        Request::DeleteRange(_) => "DeleteRange",
        Request::Txn(t) if super::txn::is_read_only(t) => return None,
        Request::Txn(_) => "Txn",
        Request::Compaction(_) => "Compaction",
        Request::Alarm(_) => "Alarm",
        Request::LeaseGrant(_) => "LeaseGrant",
        Request::LeaseRevoke(_) => "LeaseRevoke",
        Request::LeaseCheckpoint(_) => "LeaseCheckpoint",
        Request::AuthEnable(_) => "AuthEnable",
        Request::AuthDisable(_) => "AuthDisable",
        Request::Authenticate(_) => "Authenticate",
        Request::UserAdd(_) => "UserAdd",
        Request::UserDelete(_) => "UserDelete",
        Request::UserChangePassword(_) => "UserChangePassword",
        Request::UserGrantRole(_) => "UserGrantRole",
        Request::UserRevokeRole(_) => "UserRevokeRole",
        Request::RoleAdd(_) => "RoleAdd",
        Request::RoleDelete(_) => "RoleDelete",
        Request::RoleGrantPermission(_) => "RoleGrantPermission",
        Request::RoleRevokePermission(_) => "RoleRevokePermission",
        Request::MemberAttrSet(_) => "ClusterMemberAttrSet",
    })
}

/// A request's result, unless it is a fault rather than an answer: then the process stops.
fn settled(result: Result<Response>) -> Result<Response> {
    match result {
        Err(e @ (Error::Stopped | Error::Internal(_) | Error::Timeout)) => fatal(&e.to_string()),
        other => other,
    }
}

pub fn alarm_name(alarm: i32) -> String {
    AlarmType::try_from(alarm).map_or_else(|_| alarm.to_string(), |a| a.as_str_name().to_string())
}

//! etcd's Range semantics over a view of the store (etcd: applierV3backend.Range): resolve the
//! revision, scatter to the owning shards with the limit pushed down where etcd pushes it,
//! then filter by mod/create revision, sort, truncate and set `more` and `count` after the
//! merge. Used by the front end (serializable and linearizable reads) and inside txns.

use std::cmp::Ordering;

use super::view::KvView;
use crate::error::{Error, Result};
use crate::mvcc::store::{RangePart, RangeQuery};
use crate::mvcc::KeyRange;
use crate::proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use crate::proto::etcdserverpb::{RangeRequest, RangeResponse, ResponseHeader};
use crate::proto::mvccpb::KeyValue;
use crate::shard::mailbox::Shards;
use crate::status::ServerStatus;

/// Answers `r` as of `current_rev` through `view` (inside txns).
pub async fn range<V: KvView>(view: &V, r: &RangeRequest, current_rev: i64) -> Result<RangeResponse> {
    let part = view.range(query(r, current_rev)?).await?;
    Ok(finish(r, part, current_rev))
}

/// Retries of a read at revision 0 that a compaction overtook.
const MAX_OVERTAKEN_RETRIES: u32 = 16;

/// The revision a read at revision 0 reads at: the newest applied, never below the compaction
/// (the front end's reads, and those the raft driver hands to a shard: `linear_read.rs`).
pub fn current_rev(status: &ServerStatus) -> i64 {
    status.applied_rev().max(status.compact_rev())
}

/// Answers `r` on the shards as of the revision `current_rev` gives now (the front end's reads; a
/// Send future). A read at revision 0 means "the newest": if a compaction passed the revision
/// it picked before the shards served it, it reads again at a newer one instead of answering
/// "compacted", which etcd never answers it (its reads hold the store's revision). The status
/// publishes a compaction just after the shards take it, hence a few retries, 1 ms apart.
pub async fn range_on_shards(shards: &Shards, r: &RangeRequest, status: &ServerStatus) -> Result<RangeResponse> {
    crate::metrics::handles().count_ranges(1);
    let mut retries = 0;
    loop {
        let current_rev = current_rev(status);
        if retries == 0 && crate::failpoint::on("range-delay") {
            // Failpoint: widen the window in which a compaction can overtake this read. Its
            // retries go at full speed, as any read: widened too, each was overtaken again by
            // a test's compactor that compacts every 2-3 ms (a compaction per write).
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        match shards.scatter_range(&sealed_query(r, current_rev)?).await {
            Ok(part) => return Ok(finish(r, part, current_rev)),
            Err(Error::Compacted) if r.revision <= 0 && retries < MAX_OVERTAKEN_RETRIES => {
                retries += 1;
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// What to ask the shards: the revision resolved (0 = current; above it is an error) and the
/// limit pushed down as etcd pushes it.
pub fn query(r: &RangeRequest, current_rev: i64) -> Result<RangeQuery> {
    let rev = if r.revision <= 0 { current_rev } else { r.revision };
    if rev > current_rev {
        return Err(Error::FutureRev);
    }
    // As etcd: fetch everything when sorting or filtering, else one extra key for `more`.
    let fetch_limit = if r.sort_order != SortOrder::None as i32 || filtered(r) || r.limit <= 0 {
        0
    } else {
        r.limit as usize + 1
    };
    Ok(RangeQuery {
        range: KeyRange::new(&r.key, &r.range_end),
        rev,
        limit: fetch_limit,
        count_only: r.count_only,
        // Sorting by value needs the values even when the answer drops them.
        keys_only: r.keys_only && !sorts_by_value(r),
        sealed: false,
    })
}

/// `query` for a read at a revision nothing more is written at: an applied one (the front
/// end's reads, not a txn's).
pub fn sealed_query(r: &RangeRequest, current_rev: i64) -> Result<RangeQuery> {
    Ok(RangeQuery { sealed: true, ..query(r, current_rev)? })
}

fn filtered(r: &RangeRequest) -> bool {
    r.min_mod_revision != 0 || r.max_mod_revision != 0 || r.min_create_revision != 0 || r.max_create_revision != 0
}

fn sorts_by_value(r: &RangeRequest) -> bool {
    r.sort_target == SortTarget::Value as i32
}

/// Filters, sorts and truncates the merged keys; sets `more` and `count` as etcd.
pub fn finish(r: &RangeRequest, part: RangePart, current_rev: i64) -> RangeResponse {
    let mut kvs = part.kvs;
    if filtered(r) {
        kvs.retain(|kv| passes_filters(r, kv));
    }
    sort(&mut kvs, r);
    if r.keys_only && sorts_by_value(r) {
        kvs.iter_mut().for_each(|kv| kv.value.clear());
    }
    let mut more = false;
    if r.limit > 0 && kvs.len() > r.limit as usize {
        kvs.truncate(r.limit as usize);
        more = true;
    }
    RangeResponse {
        header: Some(ResponseHeader { revision: current_rev, ..Default::default() }),
        kvs,
        more,
        count: part.count as i64,
    }
}

fn passes_filters(r: &RangeRequest, kv: &KeyValue) -> bool {
    !(r.max_mod_revision != 0 && kv.mod_revision > r.max_mod_revision
        || r.min_mod_revision != 0 && kv.mod_revision < r.min_mod_revision
        || r.max_create_revision != 0 && kv.create_revision > r.max_create_revision
        || r.min_create_revision != 0 && kv.create_revision < r.min_create_revision)
}

fn sort(kvs: &mut [KeyValue], r: &RangeRequest) {
    // An unknown target comes with an unknown order only (`validate::check_range`).
    let target = SortTarget::try_from(r.sort_target).unwrap_or(SortTarget::Key);
    let order = match SortOrder::try_from(r.sort_order) {
        // As etcd: a non-key target with no order sorts ascending...
        Ok(SortOrder::None) if target != SortTarget::Key => SortOrder::Ascend,
        Ok(order) => order,
        // ...and an order it does not know sorts nothing (the keys stay in key order).
        Err(_) => return,
    };
    let cmp = |a: &KeyValue, b: &KeyValue| -> Ordering {
        match target {
            SortTarget::Key => a.key.cmp(&b.key),
            SortTarget::Version => a.version.cmp(&b.version),
            SortTarget::Create => a.create_revision.cmp(&b.create_revision),
            SortTarget::Mod => a.mod_revision.cmp(&b.mod_revision),
            SortTarget::Value => a.value.cmp(&b.value),
        }
    };
    match order {
        SortOrder::None => {}
        SortOrder::Ascend => kvs.sort_by(cmp),
        SortOrder::Descend => kvs.sort_by(|a, b| cmp(b, a)),
    }
}

//! etcd's Range semantics over the sharded store (etcd: applierV3backend.Range): resolve the
//! revision, scatter to the owning shards with the limit pushed down where etcd pushes it,
//! then filter by mod/create revision, sort, truncate and set `more` and `count` after the
//! merge. Used by the front end (serializable and linearizable reads) and inside txns.

use std::cmp::Ordering;

use crate::error::{Error, Result};
use crate::mvcc::store::RangeQuery;
use crate::mvcc::KeyRange;
use crate::proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use crate::proto::etcdserverpb::{RangeRequest, RangeResponse, ResponseHeader};
use crate::proto::mvccpb::KeyValue;
use crate::shard::mailbox::Shards;

/// Answers `r` as of `current_rev`, the newest revision every shard has applied.
pub async fn range(shards: &Shards, r: &RangeRequest, current_rev: i64) -> Result<RangeResponse> {
    let rev = if r.revision <= 0 { current_rev } else { r.revision };
    if rev > current_rev {
        return Err(Error::FutureRev);
    }
    let filtered = r.min_mod_revision != 0
        || r.max_mod_revision != 0
        || r.min_create_revision != 0
        || r.max_create_revision != 0;
    // As etcd: fetch everything when sorting or filtering, else one extra key for `more`.
    let fetch_limit = if r.sort_order != SortOrder::None as i32 || filtered || r.limit <= 0 {
        0
    } else {
        r.limit as usize + 1
    };
    // Sorting by value needs the values even when the answer drops them.
    let by_value = r.sort_target == SortTarget::Value as i32;
    let query = RangeQuery {
        range: KeyRange::new(&r.key, &r.range_end),
        rev,
        limit: fetch_limit,
        count_only: r.count_only,
        keys_only: r.keys_only && !by_value,
    };
    let part = shards.range(&query).await?;
    let mut kvs = part.kvs;
    if filtered {
        kvs.retain(|kv| passes_filters(r, kv));
    }
    sort(&mut kvs, r);
    if r.keys_only && by_value {
        kvs.iter_mut().for_each(|kv| kv.value.clear());
    }
    let mut more = false;
    if r.limit > 0 && kvs.len() > r.limit as usize {
        kvs.truncate(r.limit as usize);
        more = true;
    }
    Ok(RangeResponse {
        header: Some(ResponseHeader { revision: current_rev, ..Default::default() }),
        kvs,
        more,
        count: part.count as i64,
    })
}

fn passes_filters(r: &RangeRequest, kv: &KeyValue) -> bool {
    !(r.max_mod_revision != 0 && kv.mod_revision > r.max_mod_revision
        || r.min_mod_revision != 0 && kv.mod_revision < r.min_mod_revision
        || r.max_create_revision != 0 && kv.create_revision > r.max_create_revision
        || r.min_create_revision != 0 && kv.create_revision < r.min_create_revision)
}

fn sort(kvs: &mut [KeyValue], r: &RangeRequest) {
    let target = SortTarget::try_from(r.sort_target).unwrap_or(SortTarget::Key);
    let mut order = SortOrder::try_from(r.sort_order).unwrap_or(SortOrder::None);
    // As etcd: a non-key target with no order sorts ascending.
    if target != SortTarget::Key && order == SortOrder::None {
        order = SortOrder::Ascend;
    }
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

//! etcd's warning for a slow read: a Range (timed from its arrival, its ReadIndex included) or
//! a read-only Txn that took longer than `--experimental-warning-apply-duration` (100 ms by
//! default) is logged as etcd logs it (`warnOfExpensiveReadOnlyRangeRequest` and
//! `...TxnRequest`, server/etcdserver/util.go), and counted in `etcd_server_slow_apply_total`:
//!
//! `{"level":"warn",...,"msg":"apply request took too long","took":"112.3ms","expected-duration":"100ms","prefix":"read-only range ","request":"key:\"foo\" ","response":"range_response_count:1 size:42"}`
//!
//! It is the line operators look for when etcd is slow, so its fields are etcd's, the request
//! written as etcd writes it (`request_text`). Writes are not timed: etcd times a write's apply
//! step (its bbolt transaction), which ballast does in memory in microseconds; a write's time
//! is in the WAL's durable write, which `wal::stripe` warns of ("slow fdatasync").

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use prost::Message;

use crate::error::{Error, Result};
use crate::proto::etcdserverpb::response_op::Response as OpResponse;
use crate::proto::etcdserverpb::{RangeRequest, RangeResponse, ResponseHeader, TxnRequest, TxnResponse};

/// etcd's `DefaultWarningApplyDuration`.
pub const DEFAULT_THRESHOLD: Duration = Duration::from_millis(100);

static THRESHOLD_NANOS: AtomicU64 = AtomicU64::new(DEFAULT_THRESHOLD.as_nanos() as u64);

/// Sets the threshold (`--experimental-warning-apply-duration`), once at start-up.
pub fn set_threshold(d: Duration) {
    THRESHOLD_NANOS.store(d.as_nanos().min(u64::MAX as u128) as u64, Ordering::Relaxed);
}

fn threshold() -> Duration {
    Duration::from_nanos(THRESHOLD_NANOS.load(Ordering::Relaxed))
}

/// A Range answered (or refused) `started` ago.
pub fn range(started: Instant, r: &RangeRequest, result: &Result<RangeResponse>) {
    let took = started.elapsed();
    if took <= threshold() {
        return;
    }
    let response = match result {
        Ok(resp) => format!("range_response_count:{} size:{}", resp.kvs.len(), etcd_size(resp.encoded_len(), &resp.header)),
        Err(_) => String::new(),
    };
    warn(took, "read-only range ", crate::request_text::range(r), response, result.as_ref().err());
}

/// A read-only Txn answered (or refused) `started` ago.
pub fn read_only_txn(started: Instant, r: &TxnRequest, result: &Result<TxnResponse>) {
    let took = started.elapsed();
    if took <= threshold() {
        return;
    }
    let response = match result {
        Ok(resp) => {
            let counts: Vec<String> = resp
                .responses
                .iter()
                .filter_map(|op| match &op.response {
                    Some(OpResponse::ResponseRange(rr)) => Some(format!("range_response_count:{}", rr.kvs.len())),
                    _ => None,
                })
                .collect();
            format!("responses:<{}> size:{}", counts.join(" "), etcd_size(resp.encoded_len(), &resp.header))
        }
        Err(_) => String::new(),
    };
    warn(took, "read-only txn ", crate::request_text::txn(r), response, result.as_ref().err());
}

/// The answer's size as etcd logs it: with a header holding only the revision (etcd's gRPC
/// layer fills in the ids and the term after the warning). `header` is field 1 of both answers.
fn etcd_size(encoded_len: usize, header: &Option<ResponseHeader>) -> usize {
    let Some(h) = header else { return encoded_len };
    let revision_only = ResponseHeader { revision: h.revision, ..Default::default() };
    encoded_len - prost::encoding::message::encoded_len(1, h) + prost::encoding::message::encoded_len(1, &revision_only)
}

/// An error as etcd's server has it when it warns: its mvcc and auth packages' own texts, which
/// its gRPC layer turns into "etcdserver: ..." only afterwards.
fn internal_text(e: &Error) -> String {
    let text = match e {
        Error::Compacted | Error::FutureRev => return e.to_string().trim_start_matches("etcdserver: ").to_string(),
        Error::PermissionDenied => "auth: permission denied",
        Error::UserEmpty => "auth: user name is empty",
        Error::InvalidAuthToken => "auth: invalid auth token",
        Error::AuthOldRevision => "auth: revision in header is old",
        other => return other.to_string(),
    };
    text.to_string()
}

fn warn(took: Duration, prefix: &str, request: String, response: String, err: Option<&Error>) {
    use crate::log::go_duration;
    let mut fields = vec![
        ("took", go_duration(took)),
        ("expected-duration", go_duration(threshold())),
        ("prefix", prefix.to_string()),
        ("request", request),
        ("response", response),
    ];
    if let Some(e) = err {
        fields.push(("error", internal_text(e)));
    }
    crate::log::warn("apply request took too long", &fields);
    crate::metrics::handles().slow_applies.increment(1);
}

//! Requests written as etcd's logs write them: gogoproto's compact text format (each field
//! `name:value` and a space, a message `name:<...>`, zero values left out), with etcd's
//! redactions (`api/etcdserverpb/raft_internal_stringer.go`): a put's value and a value
//! compare's value become `value_size`, nested txns likewise. Operators search logs for these
//! strings ("apply request took too long"), so they are byte for byte etcd's.

use std::fmt::Write;

use crate::proto::etcdserverpb::compare::TargetUnion;
use crate::proto::etcdserverpb::request_op::Request as Op;
use crate::proto::etcdserverpb::{Compare, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest};

/// A text being built: `field` appends `name:value ` when the value is not the zero value.
#[derive(Default)]
struct Text(String);

impl Text {
    fn bytes(&mut self, name: &str, v: &[u8]) -> &mut Self {
        if !v.is_empty() {
            let _ = write!(self.0, "{name}:");
            quote(&mut self.0, v);
            self.0.push(' ');
        }
        self
    }
    fn int(&mut self, name: &str, v: i64) -> &mut Self {
        if v != 0 {
            let _ = write!(self.0, "{name}:{v} ");
        }
        self
    }
    fn flag(&mut self, name: &str, v: bool) -> &mut Self {
        if v {
            let _ = write!(self.0, "{name}:true ");
        }
        self
    }
    /// An enum field, by its value's name (`names[v]`).
    fn enumerated(&mut self, name: &str, v: i32, names: &[&str]) -> &mut Self {
        if v != 0 {
            match names.get(v as usize) {
                Some(n) => drop(write!(self.0, "{name}:{n} ")),
                None => drop(write!(self.0, "{name}:{v} ")),
            }
        }
        self
    }
    /// A message field, always written (gogoproto writes a set message even when empty).
    fn message(&mut self, name: &str, inner: &str) -> &mut Self {
        let _ = write!(self.0, "{name}:<{inner}> ");
        self
    }
    fn done(&mut self) -> String {
        std::mem::take(&mut self.0)
    }
}

/// Go's text format quoting: C escapes for `\n \r \t " \`, printable ASCII as is, every other
/// byte as a 3-digit octal escape.
fn quote(out: &mut String, v: &[u8]) {
    out.push('"');
    for &c in v {
        match c {
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(c as char),
            _ => drop(write!(out, "\\{c:03o}")),
        }
    }
    out.push('"');
}

const SORT_ORDERS: &[&str] = &["NONE", "ASCEND", "DESCEND"];
const SORT_TARGETS: &[&str] = &["KEY", "VERSION", "CREATE", "MOD", "VALUE"];
const COMPARE_RESULTS: &[&str] = &["EQUAL", "GREATER", "LESS", "NOT_EQUAL"];
const COMPARE_TARGETS: &[&str] = &["VERSION", "CREATE", "MOD", "VALUE", "LEASE"];

/// `RangeRequest.String()`.
pub fn range(r: &RangeRequest) -> String {
    Text::default()
        .bytes("key", &r.key)
        .bytes("range_end", &r.range_end)
        .int("limit", r.limit)
        .int("revision", r.revision)
        .enumerated("sort_order", r.sort_order, SORT_ORDERS)
        .enumerated("sort_target", r.sort_target, SORT_TARGETS)
        .flag("serializable", r.serializable)
        .flag("keys_only", r.keys_only)
        .flag("count_only", r.count_only)
        .int("min_mod_revision", r.min_mod_revision)
        .int("max_mod_revision", r.max_mod_revision)
        .int("min_create_revision", r.min_create_revision)
        .int("max_create_revision", r.max_create_revision)
        .done()
}

/// etcd's `NewLoggablePutRequest(r).String()`: the value's size in its place.
fn put(r: &PutRequest) -> String {
    Text::default()
        .bytes("key", &r.key)
        .int("value_size", r.value.len() as i64)
        .int("lease", r.lease)
        .flag("prev_kv", r.prev_kv)
        .flag("ignore_value", r.ignore_value)
        .flag("ignore_lease", r.ignore_lease)
        .done()
}

fn delete_range(r: &DeleteRangeRequest) -> String {
    Text::default().bytes("key", &r.key).bytes("range_end", &r.range_end).flag("prev_kv", r.prev_kv).done()
}

/// etcd's `NewLoggableTxnRequest(r).String()`.
pub fn txn(r: &TxnRequest) -> String {
    let compare: Vec<String> = r.compare.iter().map(compare).collect();
    let success: Vec<String> = r.success.iter().map(request_op).collect();
    let failure: Vec<String> = r.failure.iter().map(request_op).collect();
    format!("compare:<{}> success:<{}> failure:<{}>", compare.join(" "), success.join(" "), failure.join(" "))
}

/// A compare: a value compare with the value's size (etcd's loggableValueCompare); any other
/// as gogoproto writes it, where the set member of the target union is written even when 0.
fn compare(c: &Compare) -> String {
    let mut t = Text::default();
    t.enumerated("result", c.result, COMPARE_RESULTS).enumerated("target", c.target, COMPARE_TARGETS).bytes("key", &c.key);
    match &c.target_union {
        Some(TargetUnion::Value(v)) => return t.int("value_size", v.len() as i64).bytes("range_end", &c.range_end).done(),
        Some(TargetUnion::Version(v)) => drop(write!(t.0, "version:{v} ")),
        Some(TargetUnion::CreateRevision(v)) => drop(write!(t.0, "create_revision:{v} ")),
        Some(TargetUnion::ModRevision(v)) => drop(write!(t.0, "mod_revision:{v} ")),
        Some(TargetUnion::Lease(v)) => drop(write!(t.0, "lease:{v} ")),
        None => {}
    }
    t.bytes("range_end", &c.range_end).done()
}

/// A txn's op: puts and nested txns redacted (no space after them, as etcd's `Sprintf`),
/// ranges and deletes as gogoproto writes a `RequestOp`.
fn request_op(op: &RequestOp) -> String {
    match &op.request {
        Some(Op::RequestPut(p)) => format!("request_put:<{}>", put(p)),
        Some(Op::RequestTxn(t)) => format!("request_txn:<{}>", txn(t)),
        Some(Op::RequestRange(r)) => Text::default().message("request_range", &range(r)).done(),
        Some(Op::RequestDeleteRange(d)) => Text::default().message("request_delete_range", &delete_range(d)).done(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Strings taken from etcd 3.5's logs and its stringer's output.
    #[test]
    fn requests_read_as_etcds_logs_write_them() {
        let r = RangeRequest { key: b"/registry/pods/".to_vec(), range_end: b"/registry/pods0".to_vec(), limit: 500, ..Default::default() };
        assert_eq!(range(&r), r#"key:"/registry/pods/" range_end:"/registry/pods0" limit:500 "#);
        let r = RangeRequest { key: b"a\n\"\\\x01\xff".to_vec(), sort_order: 2, sort_target: 3, serializable: true, count_only: true, ..Default::default() };
        assert_eq!(range(&r), r#"key:"a\n\"\\\001\377" sort_order:DESCEND sort_target:MOD serializable:true count_only:true "#);
        let p = PutRequest { key: b"foo".to_vec(), value: b"bar".to_vec(), lease: 7, ..Default::default() };
        assert_eq!(put(&p), r#"key:"foo" value_size:3 lease:7 "#);
        // kube-apiserver's create: a mod_revision compare at 0 is still written.
        let t = TxnRequest {
            compare: vec![Compare { target: 2, key: b"k".to_vec(), target_union: Some(TargetUnion::ModRevision(0)), ..Default::default() }],
            success: vec![RequestOp { request: Some(Op::RequestPut(p.clone())) }],
            failure: vec![RequestOp { request: Some(Op::RequestRange(RangeRequest { key: b"k".to_vec(), ..Default::default() })) }],
        };
        assert_eq!(txn(&t), r#"compare:<target:MOD key:"k" mod_revision:0 > success:<request_put:<key:"foo" value_size:3 lease:7 >> failure:<request_range:<key:"k" > >"#);
        let v = Compare { result: 1, target: 3, key: b"k".to_vec(), target_union: Some(TargetUnion::Value(b"xy".to_vec())), ..Default::default() };
        assert_eq!(compare(&v), r#"result:GREATER target:VALUE key:"k" value_size:2 "#);
        assert_eq!(txn(&TxnRequest::default()), "compare:<> success:<> failure:<>");
        let d = DeleteRangeRequest { key: b"a".to_vec(), range_end: b"b".to_vec(), prev_kv: true };
        let t = TxnRequest { success: vec![RequestOp { request: Some(Op::RequestDeleteRange(d)) }], ..Default::default() };
        assert_eq!(txn(&t), r#"compare:<> success:<request_delete_range:<key:"a" range_end:"b" prev_kv:true > > failure:<>"#);
    }
}

//! etcd's messages as JSON, the way etcd 3.5's gateway reads and writes them (grpc-gateway v1's
//! default marshaler `JSONPb{OrigName: true}` over golang/protobuf 1.5's jsonpb), driven by the
//! descriptors of proto/ (the same files the gRPC code is generated from, so nothing is listed
//! twice):
//!
//! * out: fields in declaration order under their proto names (`create_revision`, `dbSize`,
//!   `ID`), fields at their default value left out, a oneof's set member where the oneof is,
//!   64-bit integers as decimal strings, 32-bit ones as numbers, bytes as padded standard
//!   base64, enums by name (by number when the number has no name), strings escaped as Go's
//!   `json.Marshal` escapes them.
//! * in: each field by its proto name or its JSON (lowerCamel) name, unknown fields ignored, a
//!   null value as absent, integers as numbers or strings, enums as names or numbers; the first
//!   error is Go's message (`go_json.rs`).

use std::sync::OnceLock;

use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage, FieldDescriptor, Kind, MessageDescriptor, ReflectMessage, Value};

use super::go_json::{self, J};

/// The descriptors of proto/, as build.rs had protoc write them.
static DESCRIPTORS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/descriptors.bin"));

pub fn pool() -> &'static DescriptorPool {
    static POOL: OnceLock<DescriptorPool> = OnceLock::new();
    POOL.get_or_init(|| DescriptorPool::decode(DESCRIPTORS).expect("build.rs wrote a valid descriptor set"))
}

/// The descriptor of message `name` (`etcdserverpb.RangeRequest`); every name the gateway's
/// route table uses is in proto/ (a unit test checks them all).
pub fn message(name: &str) -> MessageDescriptor {
    pool().get_message_by_name(name).unwrap_or_else(|| panic!("{name} is not in proto/"))
}

/// The protobuf encoding of the request JSON value `v` of type `desc`, or Go's error.
pub fn request_from_json(desc: &MessageDescriptor, v: &J) -> Result<Vec<u8>, String> {
    Ok(read_message(desc, v)?.encode_to_vec())
}

fn read_message(desc: &MessageDescriptor, v: &J) -> Result<DynamicMessage, String> {
    let mut msg = DynamicMessage::new(desc.clone());
    go_json::expect_kind(v, "object", "map[string]json.RawMessage")?;
    let J::Obj(members) = v else { return Ok(msg) };
    // Go reads the object into a map first: of repeated keys the last counts, and a field
    // named both ways takes its JSON name's value.
    let lookup = |name: &str| members.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v);
    for field in declared(desc) {
        let value = lookup(field.json_name()).or_else(|| lookup(field.name()));
        let Some(value) = value.filter(|v| !matches!(v, J::Null)) else { continue };
        let value = if field.is_list() {
            go_json::expect_kind(value, "array", "[]json.RawMessage")?;
            let items = match value {
                J::Arr(items) => items.iter().map(|item| read_singular(&field, item)).collect::<Result<Vec<_>, _>>()?,
                _ => Vec::new(),
            };
            Value::List(items)
        } else if field.is_map() {
            return Err(format!("map field {} is not supported", field.full_name()));
        } else {
            read_singular(&field, value)?
        };
        msg.set_field(&field, value);
    }
    Ok(msg)
}

/// A message's fields in the order the .proto declares them (Go's order; prost-reflect's
/// `fields()` goes by number).
fn declared(desc: &MessageDescriptor) -> Vec<FieldDescriptor> {
    desc.descriptor_proto().field.iter().filter_map(|f| desc.get_field(f.number() as u32)).collect()
}

fn read_singular(field: &FieldDescriptor, v: &J) -> Result<Value, String> {
    Ok(match field.kind() {
        Kind::Bool => Value::Bool(go_json::boolean(v)?),
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => Value::I32(go_json::int(v, 32, "int32")? as i32),
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => Value::I64(go_json::int(v, 64, "int64")?),
        Kind::Uint32 | Kind::Fixed32 => Value::U32(go_json::uint(v, 32, "uint32")? as u32),
        Kind::Uint64 | Kind::Fixed64 => Value::U64(go_json::uint(v, 64, "uint64")?),
        Kind::Float => Value::F32(go_json::float(v, "float32")? as f32),
        Kind::Double => Value::F64(go_json::float(v, "float64")?),
        Kind::String => Value::String(go_json::string(v)?),
        Kind::Bytes => Value::Bytes(go_json::bytes(v)?.into()),
        Kind::Enum(e) => match v {
            J::Str(raw) => {
                let name = std::str::from_utf8(&raw[1..raw.len() - 1]).unwrap_or("");
                let value = e.get_value_by_name(name);
                let value = value.ok_or_else(|| format!("unknown value {} for enum {}", go_json::go_quote_bytes(raw), e.full_name()))?;
                Value::EnumNumber(value.number())
            }
            v => Value::EnumNumber(go_json::enum_number(v)?),
        },
        Kind::Message(m) => Value::Message(read_message(&m, v)?),
    })
}

/// The JSON of the protobuf-encoded message `bytes` of type `desc`, or why it cannot be
/// decoded (an answer ballast's own services made: a bug).
pub fn response_to_json(desc: &MessageDescriptor, bytes: &[u8], out: &mut String) -> Result<(), String> {
    let msg = DynamicMessage::decode(desc.clone(), bytes).map_err(|e| format!("decoding {}: {e}", desc.full_name()))?;
    write_message(&msg, out);
    Ok(())
}

fn write_message(msg: &DynamicMessage, out: &mut String) {
    out.push('{');
    let mut first = true;
    let mut oneofs_done: Vec<String> = Vec::new();
    for field in declared(&msg.descriptor()) {
        // A oneof's members are written where the oneof is, only the one that is set.
        let field = match field.containing_oneof() {
            Some(oneof) => {
                if oneofs_done.iter().any(|o| o == oneof.full_name()) {
                    continue;
                }
                oneofs_done.push(oneof.full_name().to_string());
                match oneof.fields().find(|f| msg.has_field(f)) {
                    Some(set) => set,
                    None => continue,
                }
            }
            None if !msg.has_field(&field) => continue,
            None => field,
        };
        if !first {
            out.push(',');
        }
        first = false;
        go_json::write_string(out, field.name());
        out.push(':');
        let value = msg.get_field(&field);
        match value.as_ref() {
            Value::List(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write_singular(&field, item, out);
                }
                out.push(']');
            }
            v => write_singular(&field, v, out),
        }
    }
    out.push('}');
}

fn write_singular(field: &FieldDescriptor, v: &Value, out: &mut String) {
    use std::fmt::Write;
    match v {
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::I32(n) => write!(out, "{n}").expect("write to a String"),
        Value::U32(n) => write!(out, "{n}").expect("write to a String"),
        Value::I64(n) => write!(out, "\"{n}\"").expect("write to a String"),
        Value::U64(n) => write!(out, "\"{n}\"").expect("write to a String"),
        Value::F32(f) => write_float(*f as f64, out),
        Value::F64(f) => write_float(*f, out),
        Value::String(s) => go_json::write_string(out, s),
        Value::Bytes(b) => {
            use base64::Engine;
            out.push('"');
            out.push_str(&base64::engine::general_purpose::STANDARD.encode(b));
            out.push('"');
        }
        Value::EnumNumber(n) => match field.kind() {
            Kind::Enum(e) if e.get_value(*n).is_some() => {
                let name = e.get_value(*n).map(|v| v.name().to_string()).unwrap_or_default();
                go_json::write_string(out, &name);
            }
            _ => write!(out, "{n}").expect("write to a String"),
        },
        Value::Message(m) => write_message(m, out),
        // Lists are written by the caller; etcd's messages have no maps.
        Value::List(_) | Value::Map(_) => out.push_str("null"),
    }
}

/// Floats (no etcd message has one): Go's names for the non-finite ones, else the shortest
/// representation.
fn write_float(f: f64, out: &mut String) {
    use std::fmt::Write;
    if f.is_nan() {
        out.push_str("\"NaN\"");
    } else if f.is_infinite() {
        out.push_str(if f > 0.0 { "\"Infinity\"" } else { "\"-Infinity\"" });
    } else {
        write!(out, "{f}").expect("write to a String");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::etcdserverpb::{RangeResponse, ResponseHeader};
    use crate::proto::mvccpb::KeyValue;

    fn req(name: &str, body: &str) -> Result<DynamicMessage, String> {
        let (v, _) = go_json::decode_next(body.as_bytes(), false).map_err(go_json::eof_as("unexpected EOF"))?.expect("a value");
        read_message(&message(name), &v)
    }

    #[test]
    fn responses_are_written_as_etcds_gateway_writes_them() {
        let resp = RangeResponse {
            header: Some(ResponseHeader { cluster_id: 14841639068965178418, member_id: 10276657743932975437, revision: 2, raft_term: 2 }),
            kvs: vec![KeyValue { key: b"foo".to_vec(), create_revision: 2, mod_revision: 2, version: 1, value: b"bar".to_vec().into(), lease: 0 }],
            more: false,
            count: 1,
        };
        let mut out = String::new();
        response_to_json(&message("etcdserverpb.RangeResponse"), &resp.encode_to_vec(), &mut out).unwrap();
        assert_eq!(
            out,
            r#"{"header":{"cluster_id":"14841639068965178418","member_id":"10276657743932975437","revision":"2","raft_term":"2"},"kvs":[{"key":"Zm9v","create_revision":"2","mod_revision":"2","version":"1","value":"YmFy"}],"count":"1"}"#
        );
    }

    #[test]
    fn requests_are_read_as_etcds_gateway_reads_them() {
        let m = req("etcdserverpb.RangeRequest", r#"{"key":"Zm9v","limit":"2","sortOrder":"DESCEND","bogus":1}"#).unwrap();
        assert_eq!(m.get_field_by_name("limit").unwrap().as_i64(), Some(2));
        assert_eq!(m.get_field_by_name("sort_order").unwrap().as_enum_number(), Some(2));
        assert_eq!(
            req("etcdserverpb.RangeRequest", r#"{"key":"Zm9v","sort_order":"BAD"}"#).unwrap_err(),
            r#"unknown value "\"BAD\"" for enum etcdserverpb.RangeRequest.SortOrder"#
        );
        assert_eq!(req("etcdserverpb.PutRequest", "[1,2]").unwrap_err(), "json: cannot unmarshal array into Go value of type map[string]json.RawMessage");
        assert_eq!(req("etcdserverpb.PutRequest", r#"{"prev_kv":"true"}"#).unwrap_err(), "json: cannot unmarshal string into Go value of type bool");
        assert_eq!(req("etcdserverpb.PutRequest", r#"{"key":"Zm9v_-"}"#).unwrap_err(), "illegal base64 data at input byte 4");
        let ttl = req("etcdserverpb.LeaseGrantRequest", r#"{"TTL":60}"#).unwrap();
        assert_eq!(ttl.get_field_by_name("TTL").unwrap().as_i64(), Some(60));
    }
}

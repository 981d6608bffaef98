//! Watch responses as they go on the wire. A write under a prefix that 1000 watchers follow
//! becomes 1000 responses carrying the same event: built as messages, each watcher's copy of
//! the event was cloned (key, value handle, prev_kv), then encoded field by field on a
//! front-end thread, 1000 times. Instead the hub encodes the events of a release in a watched
//! range once, back to back (`EncodedRun`, with or without prev_kv), and a watcher's response
//! is its own small head (header, watch id) plus a slice of that one buffer
//! (`EncodedResponse`): no copy per watcher until the Watch service's codec
//! (`server/codec.rs`) writes head and slice into the stream. The bytes are exactly prost's
//! encoding of the same `WatchResponse` (fields in tag order, defaults omitted).

use std::ops::Range;

use bytes::{BufMut, Bytes, BytesMut};
use prost::encoding::{encode_key, encode_varint, encoded_len_varint, WireType};
use prost::Message;

use crate::mvcc::events::ChangeEvent;
use crate::proto::etcdserverpb::{ResponseHeader, WatchResponse};
use crate::proto::mvccpb::event::EventType;

/// `WatchResponse.header`'s, `.watch_id`'s and `.events`' field numbers.
const HEADER_TAG: u32 = 1;
const WATCH_ID_TAG: u32 = 2;
const EVENTS_TAG: u32 = 11;
/// `Event.type`'s, `.kv`'s and `.prev_kv`'s field numbers.
const EVENT_TYPE_TAG: u32 = 1;
const EVENT_KV_TAG: u32 = 2;
const EVENT_PREV_KV_TAG: u32 = 3;
/// The most the header field takes: key, length, four varints of at most 10 bytes with their
/// keys.
const HEADER_FIELD_MAX_BYTES: usize = 2 + 4 * 11;
/// The most a response's head takes: the header field and the watch id field (key and a
/// varint).
const HEAD_MAX_BYTES: usize = HEADER_FIELD_MAX_BYTES + 11;

/// A response for a watch stream: a message, or one already encoded.
#[derive(Debug, Clone, PartialEq)]
pub enum WireResponse {
    Message(WatchResponse),
    Encoded(EncodedResponse),
}

impl From<WatchResponse> for WireResponse {
    fn from(m: WatchResponse) -> WireResponse {
        WireResponse::Message(m)
    }
}

impl WireResponse {
    pub fn encoded_len(&self) -> usize {
        match self {
            WireResponse::Message(m) => m.encoded_len(),
            WireResponse::Encoded(r) => r.len(),
        }
    }

    /// Appends the response's encoding (without gRPC's length prefix) to `buf`.
    pub fn encode_raw(self, buf: &mut impl BufMut) {
        match self {
            WireResponse::Message(m) => m.encode_raw(buf),
            WireResponse::Encoded(r) => {
                buf.put_slice(r.head());
                buf.put_slice(&r.events);
            }
        }
    }

    /// The response as a message (for the server's own watchers: Lock, Election).
    pub fn into_message(self) -> crate::error::Result<WatchResponse> {
        match self {
            WireResponse::Message(m) => Ok(m),
            WireResponse::Encoded(r) => {
                let mut bytes = BytesMut::with_capacity(r.len());
                bytes.put_slice(r.head());
                bytes.put_slice(&r.events);
                WatchResponse::decode(bytes).map_err(|e| crate::error::Error::Internal(format!("watch response: {e}")))
            }
        }
    }
}

/// A response header, with its encoding as a `WatchResponse.header` field: made once for
/// every watcher's response at one revision.
#[derive(Debug, Clone, Copy)]
pub struct EncodedHeader {
    pub message: ResponseHeader,
    bytes: [u8; HEADER_FIELD_MAX_BYTES],
    len: u8,
}

impl EncodedHeader {
    pub fn new(message: ResponseHeader) -> EncodedHeader {
        let mut bytes = [0u8; HEADER_FIELD_MAX_BYTES];
        let mut rest: &mut [u8] = &mut bytes;
        prost::encoding::message::encode(HEADER_TAG, &message, &mut rest);
        let len = (HEADER_FIELD_MAX_BYTES - rest.len()) as u8;
        EncodedHeader { message, bytes, len }
    }

    fn field(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

/// An encoded `WatchResponse` of events: its head (header, watch id) inline, its events a
/// slice of a buffer shared with the other watchers.
#[derive(Debug, Clone, PartialEq)]
pub struct EncodedResponse {
    head: [u8; HEAD_MAX_BYTES],
    head_len: u8,
    events: Bytes,
}

impl EncodedResponse {
    /// The response to watcher `watch_id` under `header` whose events are `events` (encoded
    /// `WatchResponse.events` fields, from an `EncodedRun`).
    pub fn new(header: &EncodedHeader, watch_id: i64, events: Bytes) -> EncodedResponse {
        let mut head = [0u8; HEAD_MAX_BYTES];
        let field = header.field();
        head[..field.len()].copy_from_slice(field);
        let mut rest: &mut [u8] = &mut head[field.len()..];
        if watch_id != 0 {
            prost::encoding::int64::encode(WATCH_ID_TAG, &watch_id, &mut rest);
        }
        let head_len = (HEAD_MAX_BYTES - rest.len()) as u8;
        EncodedResponse { head, head_len, events }
    }

    fn head(&self) -> &[u8] {
        &self.head[..usize::from(self.head_len)]
    }

    pub fn len(&self) -> usize {
        usize::from(self.head_len) + self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Events (in revision order) each encoded once as a `WatchResponse.events` field, back to
/// back in one buffer, so a run of them is a slice of it.
pub struct EncodedRun {
    bytes: Bytes,
    /// `ends[k]`: where event `k`'s field ends (it starts where `k - 1`'s ends).
    ends: Vec<u32>,
}

impl EncodedRun {
    /// `events` encoded with their previous key-values when `prev_kv` (and they have one).
    pub fn new<'a>(events: impl Iterator<Item = &'a ChangeEvent>, prev_kv: bool) -> EncodedRun {
        let mut buf = Vec::new();
        let mut ends = Vec::new();
        for e in events {
            encode_event_field(e, prev_kv, &mut buf);
            ends.push(u32::try_from(buf.len()).expect("a release's events in one range stay under 4 GiB"));
        }
        EncodedRun { bytes: Bytes::from(buf), ends }
    }

    fn span(&self, ks: Range<usize>) -> Range<usize> {
        let start = if ks.start == 0 { 0 } else { self.ends[ks.start - 1] as usize };
        start..self.ends[ks.end - 1] as usize
    }

    pub fn field_len(&self, k: usize) -> usize {
        self.span(k..k + 1).len()
    }

    /// The fields of events `ks` (in order): a slice of the buffer when they follow one
    /// another and take at least half of it (a queued slice keeps the whole buffer alive, so
    /// what a stream holds stays within twice what its queue counts), else a copy of them.
    pub fn fields(&self, ks: &[usize]) -> Bytes {
        let (Some(&first), Some(&last)) = (ks.first(), ks.last()) else { return Bytes::new() };
        let span = self.span(first..last + 1);
        if last - first + 1 == ks.len() && span.len() * 2 >= self.bytes.len() {
            return self.bytes.slice(span);
        }
        let mut out = BytesMut::with_capacity(ks.iter().map(|&k| self.field_len(k)).sum());
        for &k in ks {
            out.put_slice(&self.bytes[self.span(k..k + 1)]);
        }
        out.freeze()
    }
}

/// `e` as a `WatchResponse.events` field: as prost encodes `Event { type, kv, prev_kv }`.
fn encode_event_field(e: &ChangeEvent, prev_kv: bool, buf: &mut Vec<u8>) {
    let kind = if e.delete { EventType::Delete } else { EventType::Put } as i32;
    let prev = if prev_kv { e.prev.as_ref() } else { None };
    let kind_len = if kind != 0 { prost::encoding::int32::encoded_len(EVENT_TYPE_TAG, &kind) } else { 0 };
    let prev_len = prev.map_or(0, |p| prost::encoding::message::encoded_len(EVENT_PREV_KV_TAG, p));
    let body = kind_len + prost::encoding::message::encoded_len(EVENT_KV_TAG, &e.kv) + prev_len;
    buf.reserve(1 + encoded_len_varint(body as u64) + body);
    encode_key(EVENTS_TAG, WireType::LengthDelimited, buf);
    encode_varint(body as u64, buf);
    if kind != 0 {
        prost::encoding::int32::encode(EVENT_TYPE_TAG, &kind, buf);
    }
    prost::encoding::message::encode(EVENT_KV_TAG, &e.kv, buf);
    if let Some(p) = prev {
        prost::encoding::message::encode(EVENT_PREV_KV_TAG, p, buf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mvcc::Rev;
    use crate::proto::mvccpb::{Event, KeyValue};

    fn kv(key: &str, value: &str, rev: i64) -> KeyValue {
        KeyValue { key: key.into(), value: value.to_string().into(), create_revision: 2, mod_revision: rev, version: 3, lease: 0 }
    }

    fn change(rev: i64, delete: bool, prev: bool) -> ChangeEvent {
        let prev = prev.then(|| kv("a", "old", rev - 1));
        ChangeEvent { rev: Rev { main: rev, sub: 0 }, delete, kv: kv("a", if delete { "" } else { "new" }, rev), prev }
    }

    fn message(e: &ChangeEvent, prev_kv: bool) -> Event {
        let kind = if e.delete { EventType::Delete } else { EventType::Put };
        Event { r#type: kind as i32, kv: Some(e.kv.clone()), prev_kv: if prev_kv { e.prev.clone() } else { None } }
    }

    fn encode(r: WireResponse) -> Vec<u8> {
        let mut out = Vec::new();
        r.encode_raw(&mut out);
        out
    }

    #[test]
    fn encoded_responses_are_prosts_bytes() {
        let events = [change(5, false, true), change(6, true, true), change(7, false, false), change(8, false, true)];
        let header = ResponseHeader { cluster_id: u64::MAX, member_id: 8, revision: i64::MAX, raft_term: u64::MAX };
        for prev_kv in [false, true] {
            let run = EncodedRun::new(events.iter(), prev_kv);
            for watch_id in [0, 1, 300, -1, i64::MIN] {
                for picked in [vec![0], vec![1, 2], vec![0, 1, 2, 3], vec![0, 2], vec![1, 3], vec![]] {
                    let want = WatchResponse { header: Some(header), watch_id, events: picked.iter().map(|&i| message(&events[i], prev_kv)).collect(), ..Default::default() };
                    let got = WireResponse::Encoded(EncodedResponse::new(&EncodedHeader::new(header), watch_id, run.fields(&picked)));
                    assert_eq!(got.encoded_len(), want.encoded_len());
                    assert_eq!(encode(got.clone()), want.encode_to_vec(), "watch id {watch_id}, prev_kv {prev_kv}, events {picked:?}");
                    assert_eq!(got.into_message().unwrap(), want);
                }
            }
        }
    }
}

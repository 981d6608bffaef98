//! Watch responses as they go on the wire. A write under a prefix that 1000 watchers follow
//! becomes 1000 responses carrying the same event: built as messages, each watcher's copy of
//! the event was cloned (key, value handle, prev_kv), then encoded field by field on a
//! front-end thread, 1000 times. Instead the hub encodes each event of a release once (with
//! and without prev_kv, on first use) and builds a watcher's response by copying those bytes
//! behind its header and watch id: `WireResponse::Encoded`, which the Watch service's codec
//! (`server/codec.rs`) copies into the stream as it is. The bytes are exactly prost's
//! encoding of the same `WatchResponse` (fields in tag order, defaults omitted).

use std::collections::HashMap;

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

/// A response for a watch stream: a message, or one already encoded.
#[derive(Debug, Clone, PartialEq)]
pub enum WireResponse {
    Message(WatchResponse),
    Encoded(Bytes),
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
            WireResponse::Encoded(b) => b.len(),
        }
    }

    /// Appends the response's encoding (without gRPC's length prefix) to `buf`.
    pub fn encode_raw(self, buf: &mut impl BufMut) {
        match self {
            WireResponse::Message(m) => m.encode_raw(buf),
            WireResponse::Encoded(b) => buf.put_slice(&b),
        }
    }

    /// The response as a message (for the server's own watchers: Lock, Election).
    pub fn into_message(self) -> crate::error::Result<WatchResponse> {
        match self {
            WireResponse::Message(m) => Ok(m),
            WireResponse::Encoded(b) => WatchResponse::decode(b).map_err(|e| crate::error::Error::Internal(format!("watch response: {e}"))),
        }
    }
}

/// The events of one release, each encoded once as a `WatchResponse.events` field (key,
/// length, `Event`) in one buffer, with and without its previous key-value, when first asked.
pub struct EncodedEvents<'a> {
    events: &'a [ChangeEvent],
    buf: Vec<u8>,
    /// Per event, per `prev_kv` (0: without, 1: with): where its field lies in `buf`.
    spans: Vec<[Option<(u32, u32)>; 2]>,
    /// Per header revision: where its encoded `header` field lies in `buf` (every watcher's
    /// response at a revision has the same header).
    headers: HashMap<i64, (u32, u32)>,
}

impl<'a> EncodedEvents<'a> {
    pub fn new(events: &'a [ChangeEvent]) -> EncodedEvents<'a> {
        EncodedEvents { events, buf: Vec::new(), spans: vec![[None, None]; events.len()], headers: HashMap::new() }
    }

    pub fn events(&self) -> &'a [ChangeEvent] {
        self.events
    }

    /// Event `i`'s field, with its previous key-value when `prev_kv` (and it has one).
    fn field(&mut self, i: usize, prev_kv: bool) -> &[u8] {
        let (start, end) = match self.spans[i][usize::from(prev_kv)] {
            Some(span) => span,
            None => {
                let start = self.buf.len();
                encode_event_field(&self.events[i], prev_kv, &mut self.buf);
                let span = (to_u32(start), to_u32(self.buf.len()));
                self.spans[i][usize::from(prev_kv)] = Some(span);
                span
            }
        };
        &self.buf[start as usize..end as usize]
    }

    /// `header` encoded as a `WatchResponse.header` field.
    fn header(&mut self, header: &ResponseHeader) -> (u32, u32) {
        *self.headers.entry(header.revision).or_insert_with(|| {
            let start = self.buf.len();
            prost::encoding::message::encode(HEADER_TAG, header, &mut self.buf);
            (to_u32(start), to_u32(self.buf.len()))
        })
    }

    /// The encoded response to watcher `watch_id` under `header` carrying events `indices`.
    /// Every header passed to one `EncodedEvents` at a revision must be the same.
    pub fn response(&mut self, header: &ResponseHeader, watch_id: i64, indices: &[usize], prev_kv: bool) -> Bytes {
        let (head_start, head_end) = self.header(header);
        let id_len = if watch_id != 0 { prost::encoding::int64::encoded_len(WATCH_ID_TAG, &watch_id) } else { 0 };
        let events_bytes: usize = indices.iter().map(|&i| self.field(i, prev_kv).len()).sum();
        let mut out = BytesMut::with_capacity((head_end - head_start) as usize + id_len + events_bytes);
        out.put_slice(&self.buf[head_start as usize..head_end as usize]);
        if watch_id != 0 {
            prost::encoding::int64::encode(WATCH_ID_TAG, &watch_id, &mut out);
        }
        for &i in indices {
            out.put_slice(self.field(i, prev_kv));
        }
        out.freeze()
    }

    /// The bytes event `i`'s field takes in a response.
    pub fn field_len(&mut self, i: usize, prev_kv: bool) -> usize {
        self.field(i, prev_kv).len()
    }
}

fn to_u32(n: usize) -> u32 {
    u32::try_from(n).expect("a release's encoded events stay under 4 GiB")
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

    #[test]
    fn encoded_responses_are_prosts_bytes() {
        let events = vec![change(5, false, true), change(6, true, true), change(7, false, false)];
        let header = ResponseHeader { cluster_id: 9, member_id: 8, revision: 7, raft_term: 2 };
        let mut enc = EncodedEvents::new(&events);
        for watch_id in [0, 1, 300, -1] {
            for prev_kv in [false, true] {
                for picked in [vec![0], vec![1, 2], vec![0, 1, 2], vec![]] {
                    let want = WatchResponse { header: Some(header), watch_id, events: picked.iter().map(|&i| message(&events[i], prev_kv)).collect(), ..Default::default() };
                    let got = enc.response(&header, watch_id, &picked, prev_kv);
                    assert_eq!(got, want.encode_to_vec(), "watch id {watch_id}, prev_kv {prev_kv}, events {picked:?}");
                    assert_eq!(WireResponse::Encoded(got).into_message().unwrap(), want);
                }
            }
        }
    }
}

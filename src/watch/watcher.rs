//! One watcher: what it watches (a key range, filters, prev_kv), where it stands (`next_rev`,
//! the first revision it has not been sent) and how its events become responses: only the
//! events in its range and at or after `next_rev`, without the filtered kinds, prev_kv only
//! when asked, split into fragments when asked and larger than the response limit.

use crate::mvcc::events::ChangeEvent;
use crate::mvcc::KeyRange;
use crate::proto::etcdserverpb::watch_create_request::FilterType;
use crate::proto::etcdserverpb::{ResponseHeader, WatchCreateRequest, WatchResponse};
use crate::proto::mvccpb::{event::EventType, Event};

pub struct Watcher {
    pub id: i64,
    pub range: KeyRange,
    pub next_rev: i64,
    no_put: bool,
    no_delete: bool,
    pub prev_kv: bool,
    pub progress_notify: bool,
    fragment: bool,
    /// Cancelled by a compaction: gets nothing more, but keeps its id until the client
    /// cancels it (as etcd's).
    pub compacted: bool,
    /// Sent nothing since the last progress tick (etcd's progress notification goes only to
    /// watchers that were quiet).
    pub quiet: bool,
    /// Needs events from history before it can follow the live ones (etcd's unsynced group).
    pub unsynced: bool,
}

impl Watcher {
    pub fn new(id: i64, req: &WatchCreateRequest, next_rev: i64) -> Watcher {
        let has = |f: FilterType| req.filters.contains(&(f as i32));
        Watcher {
            id,
            range: range_of(req),
            next_rev,
            no_put: has(FilterType::Noput),
            no_delete: has(FilterType::Nodelete),
            prev_kv: req.prev_kv,
            progress_notify: req.progress_notify,
            fragment: req.fragment,
            compacted: false,
            quiet: true,
            unsynced: false,
        }
    }

    /// Asked for fragments: its responses are cut by size (so built as messages).
    pub fn fragments(&self) -> bool {
        self.fragment
    }

    /// Whether `e` (in the watcher's range) is for this watcher.
    pub fn wants(&self, e: &ChangeEvent) -> bool {
        e.rev.main >= self.next_rev && !(if e.delete { self.no_delete } else { self.no_put })
    }

    pub fn event(&self, e: &ChangeEvent) -> Event {
        let kind = if e.delete { EventType::Delete } else { EventType::Put };
        let prev_kv = if self.prev_kv { e.prev.clone() } else { None };
        Event { r#type: kind as i32, kv: Some(e.kv.clone()), prev_kv }
    }

    /// The responses carrying `events` under `header`: one, or when the watcher asked for
    /// fragments and the whole response reaches `max_bytes` with two events or more,
    /// fragments as etcd cuts them (each below the limit unless it holds a single event, all
    /// but the last marked `fragment`).
    pub fn responses(&self, events: Vec<Event>, header: &ResponseHeader, max_bytes: usize) -> Vec<WatchResponse> {
        let whole = self.response(header, events);
        if !self.fragment || whole.events.len() < 2 || prost::Message::encoded_len(&whole) < max_bytes {
            return vec![whole];
        }
        let empty = WatchResponse { fragment: true, ..self.response(header, Vec::new()) };
        let empty_bytes = prost::Message::encoded_len(&empty);
        let mut out = Vec::new();
        let (mut chunk, mut chunk_bytes) = (Vec::new(), empty_bytes);
        for e in whole.events {
            let bytes = prost::encoding::message::encoded_len(11, &e);
            if !chunk.is_empty() && chunk_bytes + bytes >= max_bytes {
                out.push(WatchResponse { events: std::mem::take(&mut chunk), ..empty.clone() });
                chunk_bytes = empty_bytes;
            }
            chunk_bytes += bytes;
            chunk.push(e);
        }
        out.push(self.response(header, chunk));
        out
    }

    fn response(&self, header: &ResponseHeader, events: Vec<Event>) -> WatchResponse {
        WatchResponse { header: Some(*header), watch_id: self.id, events, ..Default::default() }
    }
}

/// The range a create request names: etcd reads an empty key as "\0" and a `range_end` of
/// "\0" as every key from `key` on.
pub fn range_of(req: &WatchCreateRequest) -> KeyRange {
    let key: &[u8] = if req.key.is_empty() { b"\0" } else { &req.key };
    KeyRange::new(key, &req.range_end)
}

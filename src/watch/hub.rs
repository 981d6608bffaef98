//! The watch hub: one task on shard 0 that owns every watcher of the server. It learns from the
//! raft driver how far apply has gone, asks the shards for the events of the new revisions
//! (`Shards::scatter_events`: merged into revision order, so every event goes out once and in
//! order, all events of a txn together), and fans them out to the watchers whose range they
//! touch. Streams answer on unbounded channels, but the hub counts what each holds: a watcher
//! whose stream holds more than `STREAM_BUFFER_BYTES` (or, while all streams together hold more
//! than `HELD_BUDGET_BYTES`, more than `STREAM_FLOOR_BYTES`) is moved aside (etcd's unsynced
//! group) and caught up later from MVCC, so a stalled client costs neither apply nor other watchers time,
//! and memory stays bounded. Watchers that start in the past (`start_revision`) are caught up the
//! same way; one that falls below the compaction revision is cancelled with it.

use std::cell::Cell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::{select, Either};

use super::index::WatcherIndex;
use super::watcher::{range_of, Watcher};
use super::wire::{EncodedHeader, EncodedResponse, EncodedRun, WireResponse};
use super::{Applied, HubMsg, Outgoing, CATCH_UP_MAX_REVISIONS, COALESCED_RESPONSE_MAX_BYTES, COALESCE_ABOVE_QUEUED_BYTES, HELD_BUDGET_BYTES, RELEASE_MAX_REVISIONS, STREAM_BUFFER_BYTES, STREAM_FLOOR_BYTES, SYNC_INTERVAL};
use crate::background::step_aside;
use crate::error::Error;
use crate::metrics as m;
use crate::mvcc::events::{ChangeEvent, EventQuery};
use crate::proto::etcdserverpb::{ResponseHeader, WatchCreateRequest, WatchResponse};
use crate::proto::mvccpb::Event;
use crate::shard::mailbox::Shards;
use crate::status::ServerStatus;

pub struct HubConfig {
    /// `--experimental-watch-progress-notify-interval`.
    pub progress_interval: Duration,
    /// Fragments are at most this large (`--max-request-bytes`).
    pub max_response_bytes: usize,
}

struct Stream {
    sink: Sink,
    next_id: i64,
    watchers: HashMap<i64, Watcher>,
    /// The stream's own progress ticker (etcd's, one per stream from its start): its period
    /// (the interval plus up to a tenth of it at random) and its next tick.
    progress_period: Duration,
    next_progress: Instant,
}

/// Where a stream's responses go: gathered during a turn of the hub, sent at its end.
struct Sink {
    out: tokio::sync::mpsc::UnboundedSender<Outgoing>,
    /// Bytes sent (or gathered) and not yet taken by the front end.
    queued: Arc<AtomicUsize>,
    /// What all streams hold, at most (shared by the hub's sinks): the sum measured at the last
    /// sync plus everything sent since, so never less than the truth.
    all: Rc<Cell<usize>>,
    pending: Vec<WireResponse>,
    pending_bytes: usize,
}

impl Sink {
    /// Holds its share: `STREAM_BUFFER_BYTES`, or only `STREAM_FLOOR_BYTES` while the streams
    /// together hold more than `HELD_BUDGET_BYTES`.
    fn full(&self) -> bool {
        let held = self.held();
        held >= STREAM_BUFFER_BYTES || (self.all.get() > HELD_BUDGET_BYTES && held >= STREAM_FLOOR_BYTES)
    }

    fn held(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    /// Holds enough that its watchers' events of a release go out coalesced.
    fn backlogged(&self) -> bool {
        self.queued.load(Ordering::Relaxed) >= COALESCE_ABOVE_QUEUED_BYTES
    }

    fn gone(&self) -> bool {
        self.out.is_closed()
    }

    fn send(&mut self, resp: impl Into<WireResponse>) {
        let resp = resp.into();
        let bytes = match &resp {
            WireResponse::Message(m) => approx_bytes(m),
            WireResponse::Encoded(r) => r.len(),
        };
        self.queued.fetch_add(bytes, Ordering::Relaxed);
        self.all.set(self.all.get() + bytes);
        self.pending_bytes += bytes;
        self.pending.push(resp);
    }

    /// Sends what the turn gathered. A stream whose front end is gone is removed at the next
    /// fan-out.
    fn flush(&mut self) {
        if !self.pending.is_empty() {
            let resps = std::mem::take(&mut self.pending);
            let _ = self.out.send(Outgoing { resps, bytes: std::mem::take(&mut self.pending_bytes) });
        }
    }
}

struct Hub {
    cfg: HubConfig,
    shards: Shards,
    status: Arc<ServerStatus>,
    streams: HashMap<u64, Stream>,
    /// Every watcher of every stream, by its range.
    index: WatcherIndex,
    /// What all streams hold, at most (every sink's `all`).
    held: Rc<Cell<usize>>,
    /// Every event up to this revision went out to the synced watchers (a synced watcher
    /// whose `next_rev` is below `released + 1` stands at `released + 1`: a release moves
    /// only the watchers it sends something).
    released: i64,
    /// The earliest of the streams' next progress ticks (none: far ahead).
    next_progress: Instant,
}

/// Runs the hub until every front-end handle and the driver are gone.
pub async fn run(cfg: HubConfig, shards: Shards, status: Arc<ServerStatus>, rx: flume::Receiver<HubMsg>, applied: flume::Receiver<Applied>) {
    let released = status.applied_rev();
    let mut hub = Hub { cfg, shards, status, streams: HashMap::new(), index: WatcherIndex::default(), held: Rc::default(), released, next_progress: far_ahead() };
    // On the shard's beat, as raft's tick: one wake-up for both on an idle shard, none of its
    // own on a busy one (a sync runs in the first turn after it is due).
    let mut next_sync = crate::shard::beat::next_beat(SYNC_INTERVAL, Instant::now());
    let mut sync_timer = glommio::timer::Timer::new(crate::shard::beat::timer_for(next_sync, Instant::now()));
    loop {
        let inputs = select(rx.recv_async(), applied.recv_async());
        let mut timer_fired = false;
        match select(inputs, &mut sync_timer).await {
            Either::Left((Either::Left((Ok(msg), _)), _)) => hub.take(msg).await,
            Either::Left((Either::Right((Ok(first), _)), _)) => {
                let mut waiting = Vec::new();
                let mut newest = first.rev;
                for a in std::iter::once(first).chain(applied.try_iter()) {
                    if a.restored {
                        hub.mark_all_unsynced();
                    }
                    newest = newest.max(a.rev);
                    waiting.extend(a.done);
                }
                hub.release(newest).await;
                for done in waiting {
                    let _ = done.send(());
                }
            }
            Either::Left(_) => break, // the front end or the driver is gone: shutting down
            Either::Right(_) => timer_fired = true, // armed again below
        }
        // Checked on every turn: a hub busy with messages still catches up and notifies.
        let now = Instant::now();
        let synced = now >= next_sync;
        if synced {
            next_sync = crate::shard::beat::next_beat(SYNC_INTERVAL, now);
            hub.drop_gone_streams();
            hub.measure_held();
            hub.catch_up().await;
            hub.publish();
        }
        if synced || timer_fired {
            sync_timer.reset(crate::shard::beat::timer_for(next_sync, Instant::now()));
        }
        if now >= hub.next_progress {
            hub.progress_notify(now);
        }
        hub.flush();
    }
}

impl Hub {
    async fn take(&mut self, msg: HubMsg) {
        match msg {
            HubMsg::Open { stream, out, queued } => {
                let progress_period = with_jitter(self.cfg.progress_interval);
                let next_progress = Instant::now() + progress_period;
                self.next_progress = self.next_progress.min(next_progress);
                let sink = Sink { out, queued, all: self.held.clone(), pending: Vec::new(), pending_bytes: 0 };
                self.streams.insert(stream, Stream { sink, next_id: 0, watchers: HashMap::new(), progress_period, next_progress });
            }
            HubMsg::Close { stream } => self.drop_stream(stream),
            HubMsg::Create { stream, denied: Some(e), .. } => self.refuse(stream, &e),
            HubMsg::Create { stream, req, denied: None } => self.create(stream, req).await,
            HubMsg::Cancel { stream, watch_id } => self.cancel(stream, watch_id),
            HubMsg::Progress { stream } => self.request_progress(stream),
        }
    }

    /// etcd's answer to a create its auth check refused: created and canceled, watch id -1,
    /// the gRPC error's text as the reason.
    fn refuse(&mut self, stream: u64, e: &Error) {
        let rev = self.status.applied_rev();
        let Some(s) = self.streams.get_mut(&stream) else { return };
        let reason = e.as_grpc_text();
        s.sink.send(WatchResponse { header: Some(header(&self.status, rev)), watch_id: -1, created: true, canceled: true, cancel_reason: reason, ..Default::default() });
    }

    async fn create(&mut self, stream: u64, req: WatchCreateRequest) {
        let rev = self.status.applied_rev();
        // Up to date first, so a watch of the past gets its history to the current revision in
        // one catch-up, as etcd sends it.
        self.release(rev).await;
        let released = self.released;
        let Some(s) = self.streams.get_mut(&stream) else { return };
        if let Err(e) = check_create(s, &req) {
            // A refused create is still answered as created (clients pair creates with these).
            let reason = e.to_string();
            s.sink.send(WatchResponse { header: Some(header(&self.status, rev)), watch_id: -1, created: true, canceled: true, cancel_reason: reason, ..Default::default() });
            return;
        }
        let id = if req.watch_id != 0 { req.watch_id } else { next_free_id(s) };
        let start = if req.start_revision > 0 { req.start_revision } else { rev + 1 };
        let mut w = Watcher::new(id, &req, start);
        w.unsynced = start <= released;
        let unsynced = w.unsynced;
        self.index.insert(&w.range, (stream, id), w.prev_kv);
        s.watchers.insert(id, w);
        s.sink.send(WatchResponse { header: Some(header(&self.status, rev)), watch_id: id, created: true, ..Default::default() });
        if unsynced {
            self.catch_up_stream(stream).await;
        }
    }

    fn cancel(&mut self, stream: u64, watch_id: i64) {
        let rev = self.status.applied_rev();
        let Some(s) = self.streams.get_mut(&stream) else { return };
        if let Some(w) = s.watchers.remove(&watch_id) {
            self.index.remove(&w.range, (stream, watch_id), w.prev_kv);
            s.sink.send(WatchResponse { header: Some(header(&self.status, rev)), watch_id, canceled: true, ..Default::default() });
        }
    }

    fn drop_stream(&mut self, stream: u64) {
        if let Some(s) = self.streams.remove(&stream) {
            self.index.remove_stream(stream, s.watchers.values().map(|w| (&w.range, w.prev_kv)));
        }
    }

    /// Sums what the streams hold for their clients (every sync, not every release: in
    /// between, what the hub sends is added and what the clients take is not subtracted).
    fn measure_held(&mut self) {
        let held: usize = self.streams.values().map(|s| s.sink.held()).sum();
        self.held.set(held);
        m::handles().watch_held_bytes.set(held as f64);
    }

    /// Removes the streams whose front end is gone without a `Close`.
    fn drop_gone_streams(&mut self) {
        let gone: Vec<u64> = self.streams.iter().filter(|(_, s)| s.sink.gone()).map(|(&id, _)| id).collect();
        for stream in gone {
            self.drop_stream(stream);
        }
    }

    fn request_progress(&mut self, stream: u64) {
        let released = self.released;
        if let Some(s) = self.streams.get_mut(&stream) {
            answer_progress(s, &self.status, released);
        }
    }

    /// Sends the events of revisions `released+1 ..= rev` to the synced watchers.
    async fn release(&mut self, rev: i64) {
        while self.released < rev {
            let Some(prev) = self.index.any() else {
                self.released = rev; // nobody follows the live events
                break;
            };
            let q = EventQuery { range: None, from: self.released + 1, to: rev, prev, max_revisions: RELEASE_MAX_REVISIONS };
            match self.shards.scatter_events(&q).await {
                Ok(part) => {
                    self.fan_out(&part.events, part.to);
                    self.released = part.to;
                }
                Err(e) => {
                    // Compacted under us (or a shard gone): every synced watcher catches up
                    // from MVCC, which cancels those below the compaction.
                    crate::log::warn("watch: cannot read events; watchers will catch up", &[("error", e.to_string())]);
                    self.mark_all_unsynced();
                    self.released = rev;
                }
            }
        }
    }

    fn mark_all_unsynced(&mut self) {
        let from = self.released + 1;
        for w in self.streams.values_mut().flat_map(|s| s.watchers.values_mut()).filter(|w| !w.unsynced && !w.compacted) {
            w.unsynced = true;
            w.next_rev = w.next_rev.max(from);
        }
    }

    /// Delivers `events` (complete up to `to`) to every synced watcher they concern, found by
    /// the index from the events' keys: watchers no event touches cost nothing. Watchers of
    /// one range share the work of finding their events and their encoding.
    fn fan_out(&mut self, events: &[ChangeEvent], to: i64) {
        let (from, max_bytes) = (self.released + 1, self.cfg.max_response_bytes);
        let mut hits: HashMap<usize, InRange> = HashMap::new();
        for (i, e) in events.iter().enumerate() {
            self.index.find(&e.kv.key, |slot| hits.entry(slot).or_insert_with(|| InRange::new(Vec::new())).indices.push(i));
        }
        // Every watcher's response at a revision has the same header: encoded once.
        let mut heads: HashMap<i64, EncodedHeader> = HashMap::new();
        let mut mine = Vec::new();
        let mut sent = 0;
        for (&slot, found) in hits.iter_mut() {
            for &(stream, id) in &self.index.entry(slot).watchers {
                let Some(s) = self.streams.get_mut(&stream) else { continue };
                let Some(w) = s.watchers.get_mut(&id).filter(|w| !w.unsynced && !w.compacted) else { continue };
                mine.clear();
                mine.extend((0..found.indices.len()).filter(|&k| w.wants(&events[found.indices[k]])));
                if mine.is_empty() {
                    continue;
                }
                if s.sink.full() {
                    // Its client is not keeping up: caught up from MVCC later.
                    w.unsynced = true;
                    w.next_rev = w.next_rev.max(from);
                    continue;
                }
                sent += mine.len();
                if w.fragments() {
                    // One response per revision, at that revision, as etcd sends them, cut
                    // into fragments where they are too large.
                    for (rev, events) in by_revision(mine.iter().map(|&k| &events[found.indices[k]]), w) {
                        let head = heads.entry(rev).or_insert_with(|| EncodedHeader::new(header(&self.status, rev)));
                        for resp in w.responses(events, &head.message, max_bytes) {
                            s.sink.send(resp);
                        }
                    }
                } else {
                    let coalesce = s.sink.backlogged();
                    let (indices, run) = found.run(events, w.prev_kv);
                    for group in response_groups(events, indices, run, &mine, coalesce) {
                        let ks = &mine[group];
                        let rev = events[indices[ks[ks.len() - 1]]].rev.main;
                        let head = heads.entry(rev).or_insert_with(|| EncodedHeader::new(header(&self.status, rev)));
                        s.sink.send(WireResponse::Encoded(EncodedResponse::new(head, w.id, run.fields(ks))));
                    }
                }
                w.quiet = false;
                w.next_rev = to + 1;
            }
        }
        m::handles().watch_events.increment(sent as u64);
    }

    /// Watchers of one range share each read of MVCC (etcd's syncWatchers reads once for its
    /// unsynced group): 1000 watchers of a prefix that fell behind together cost one read per
    /// step, not 1000. Between steps the hub steps aside (`background.rs`): the hub and shard
    /// 0's loop handing each other one step after another kept glommio from taking a reactor
    /// turn, so a request from a client's thread (a linearizable read waits for the raft
    /// driver, on shard 0) waited for the preemption timer, up to 80 ms, while a watcher far
    /// behind was caught up.
    async fn catch_up(&mut self) {
        let mut by_range: HashMap<crate::mvcc::KeyRange, Vec<(u64, i64)>> = HashMap::new();
        for (&stream, s) in self.streams.iter().filter(|(_, s)| !s.sink.full()) {
            for w in s.watchers.values().filter(|w| w.unsynced) {
                by_range.entry(w.range.clone()).or_default().push((stream, w.id));
            }
        }
        for (range, members) in by_range {
            self.catch_up_range(range, &members).await;
        }
    }

    /// Catches up `members` (stream, watcher), all watching `range`: reads from the earliest
    /// revision one of them still needs, sends each what it has not seen, until each is caught
    /// up or its stream full. A read below the compaction leaves each to its own steps (which
    /// cancel those whose start is gone).
    async fn catch_up_range(&mut self, range: crate::mvcc::KeyRange, members: &[(u64, i64)]) {
        loop {
            let released = self.released;
            let (mut from, mut prev) = (None, false);
            for &(stream, id) in members {
                let Some(s) = self.streams.get_mut(&stream) else { continue };
                let full = s.sink.full();
                let Some(w) = s.watchers.get_mut(&id).filter(|w| w.unsynced && !full) else { continue };
                if w.next_rev > released {
                    w.unsynced = false;
                    continue;
                }
                from = Some(from.unwrap_or(i64::MAX).min(w.next_rev));
                prev |= w.prev_kv;
            }
            let Some(from) = from else { return };
            let q = EventQuery { range: Some(range.clone()), from, to: released, prev, max_revisions: CATCH_UP_MAX_REVISIONS };
            let part = match self.shards.scatter_events(&q).await {
                Ok(part) => part,
                Err(Error::Compacted) => {
                    for &(stream, id) in members {
                        while self.catch_up_step(stream, id).await {
                            step_aside().await;
                        }
                    }
                    return;
                }
                Err(e) => return crate::log::warn("watch: catching up failed; retrying", &[("error", e.to_string())]),
            };
            let (head, max_bytes) = (EncodedHeader::new(header(&self.status, released)), self.cfg.max_response_bytes);
            let mut encoded = InRange::all(&part.events);
            for &(stream, id) in members {
                let Some(s) = self.streams.get_mut(&stream) else { continue };
                let full = s.sink.full();
                // Only a watcher the read covers from its own position: one whose stream was
                // full when `from` was taken may have room now, but the read began past it.
                if let Some(w) = s.watchers.get_mut(&id).filter(|w| w.unsynced && !full && (from..=part.to).contains(&w.next_rev)) {
                    send_caught_up(&mut s.sink, w, &part.events, &mut encoded, &head, max_bytes);
                    w.next_rev = part.to + 1;
                    w.unsynced = part.to < released;
                }
            }
            step_aside().await;
        }
    }

    async fn catch_up_stream(&mut self, stream: u64) {
        let Some(ids) = self.streams.get(&stream).map(|s| s.watchers.values().filter(|w| w.unsynced).map(|w| w.id).collect::<Vec<_>>()) else {
            return;
        };
        for id in ids {
            while self.catch_up_step(stream, id).await {
                step_aside().await;
            }
        }
    }

    /// Sends watcher `id` of `stream` its next events from MVCC; true while it stays behind
    /// and its stream has room for more.
    async fn catch_up_step(&mut self, stream: u64, id: i64) -> bool {
        let released = self.released;
        let Some(s) = self.streams.get_mut(&stream) else { return false };
        let Some(w) = s.watchers.get_mut(&id) else { return false };
        if s.sink.full() || !w.unsynced {
            return false;
        }
        if w.next_rev > released {
            w.unsynced = false;
            return false;
        }
        let q = EventQuery { range: Some(w.range.clone()), from: w.next_rev, to: released, prev: w.prev_kv, max_revisions: CATCH_UP_MAX_REVISIONS };
        let result = self.shards.scatter_events(&q).await;
        let (max_bytes, compact_rev) = (self.cfg.max_response_bytes, self.status.compact_rev());
        let Some(s) = self.streams.get_mut(&stream) else { return false };
        let Some(w) = s.watchers.get_mut(&id) else { return false };
        match result {
            Ok(part) => {
                send_caught_up(&mut s.sink, w, &part.events, &mut InRange::all(&part.events), &EncodedHeader::new(header(&self.status, released)), max_bytes);
                w.next_rev = part.to + 1;
                w.unsynced = part.to < released;
                w.unsynced
            }
            Err(Error::Compacted) => {
                // etcd's answer, header revision 0 included; the id stays taken until the
                // client cancels it.
                w.compacted = true;
                w.unsynced = false;
                s.sink.send(WatchResponse { header: Some(header(&self.status, 0)), watch_id: id, canceled: true, compact_revision: compact_rev, ..Default::default() });
                false
            }
            Err(e) => {
                crate::log::warn("watch: catching up failed; retrying", &[("error", e.to_string())]);
                false
            }
        }
    }

    /// etcd's progress notifications: at each tick of a stream's ticker, each of its synced
    /// watchers that asked for them and was sent nothing since the last tick gets an empty
    /// response at the current revision. A watch's first comes at its stream's next tick.
    fn progress_notify(&mut self, now: Instant) {
        let released = self.released;
        self.next_progress = far_ahead();
        for s in self.streams.values_mut() {
            if s.next_progress > now {
                self.next_progress = self.next_progress.min(s.next_progress);
                continue;
            }
            // As Go's ticker, ticks missed meanwhile are dropped.
            while s.next_progress <= now {
                s.next_progress += s.progress_period;
            }
            self.next_progress = self.next_progress.min(s.next_progress);
            let mut due = Vec::new();
            for w in s.watchers.values_mut() {
                if w.progress_notify && w.quiet && !w.unsynced && !w.compacted && w.next_rev <= released + 1 {
                    due.push(w.id);
                }
                w.quiet = true;
            }
            for id in due {
                s.sink.send(WatchResponse { header: Some(header(&self.status, released)), watch_id: id, ..Default::default() });
            }
        }
    }

    /// Sends every stream what this turn gathered for it.
    fn flush(&mut self) {
        for s in self.streams.values_mut() {
            s.sink.flush();
        }
    }

    fn publish(&self) {
        let applied = self.status.applied_rev();
        let (mut watchers, mut slow, mut oldest_wait) = (0, 0, applied + 1);
        for w in self.streams.values().flat_map(|s| s.watchers.values()) {
            watchers += 1;
            slow += usize::from(w.unsynced);
            if !w.compacted {
                let at = if w.unsynced { w.next_rev } else { w.next_rev.max(self.released + 1) };
                oldest_wait = oldest_wait.min(at);
            }
        }
        let h = m::handles();
        h.watch_streams.set(self.streams.len() as f64);
        h.watchers.set(watchers as f64);
        h.slow_watchers.set(slow as f64);
        h.watch_lag.set((applied + 1 - oldest_wait) as f64);
    }
}

/// About the bytes a response encodes to (keys, values, their previous ones, and a margin for
/// the fixed fields): cheaper than encoding it twice, and close enough for the stream budget.
fn approx_bytes(resp: &WatchResponse) -> usize {
    let kv = |kv: &Option<crate::proto::mvccpb::KeyValue>| kv.as_ref().map_or(0, |kv| kv.key.len() + kv.value.len() + 40);
    48 + resp.events.iter().map(|e| 8 + kv(&e.kv) + kv(&e.prev_kv)).sum::<usize>() + resp.cancel_reason.len()
}

/// The next automatic id: etcd counts up from 0, skipping ids in use.
fn next_free_id(s: &mut Stream) -> i64 {
    while s.watchers.contains_key(&s.next_id) {
        s.next_id += 1;
    }
    let id = s.next_id;
    s.next_id += 1;
    id
}

/// A progress period as etcd's `GetProgressReportInterval`: the interval plus a random jitter
/// of up to a tenth of it, so streams opened together do not notify together.
fn with_jitter(interval: Duration) -> Duration {
    use rand::Rng;
    let tenth_ns = (interval.as_nanos() / 10).min(u64::MAX as u128) as u64;
    interval + Duration::from_nanos(if tenth_ns == 0 { 0 } else { rand::thread_rng().gen_range(0..tenth_ns) })
}

/// A deadline no stream has (an hour ahead: the hub wakes on its sync timer anyway).
fn far_ahead() -> Instant {
    Instant::now() + Duration::from_secs(3600)
}

/// Answers a RequestProgress as etcd 3.5.13+ does: only when the stream has watchers and every
/// one is synced (none behind, cancelled by a compaction, or waiting for a future start), with
/// watch id -1 at the revision up to which every event was sent; otherwise not at all.
fn answer_progress(s: &mut Stream, status: &ServerStatus, released: i64) {
    let synced = |w: &Watcher| !w.unsynced && !w.compacted && w.next_rev <= released + 1;
    if !s.watchers.is_empty() && s.watchers.values().all(synced) {
        s.sink.send(WatchResponse { header: Some(header(status, released)), watch_id: -1, ..Default::default() });
    }
}

/// etcd's response header: cluster, member and term, at `rev`.
fn header(status: &ServerStatus, rev: i64) -> ResponseHeader {
    ResponseHeader { cluster_id: status.cluster_id, member_id: status.member_id, revision: rev, raft_term: status.term() }
}

/// etcd's checks of a create request, in its order.
fn check_create(s: &Stream, req: &WatchCreateRequest) -> Result<(), Error> {
    if req.start_revision < 0 {
        return Err(Error::Compacted);
    }
    let range = range_of(req);
    if range.bounds().is_none() {
        return Err(Error::WatchRangeEmpty);
    }
    if req.watch_id != 0 && s.watchers.contains_key(&req.watch_id) {
        return Err(Error::DuplicateWatchId);
    }
    Ok(())
}

/// Sends `w` its events among `events` (read from MVCC to catch it up, all in its range:
/// `found`) in one response under `head`, as etcd sends a catching-up watcher its batch (or
/// in fragments when it asked).
fn send_caught_up(sink: &mut Sink, w: &mut Watcher, events: &[ChangeEvent], found: &mut InRange, head: &EncodedHeader, max_bytes: usize) {
    let mine: Vec<usize> = (0..events.len()).filter(|&k| w.wants(&events[found.indices[k]])).collect();
    if mine.is_empty() {
        return;
    }
    m::handles().watch_events.increment(mine.len() as u64);
    if w.fragments() {
        let events = mine.iter().map(|&k| w.event(&events[found.indices[k]])).collect();
        for resp in w.responses(events, &head.message, max_bytes) {
            sink.send(resp);
        }
    } else {
        let fields = found.run(events, w.prev_kv).1.fields(&mine);
        sink.send(WireResponse::Encoded(EncodedResponse::new(head, w.id, fields)));
    }
    w.quiet = false;
}

/// The events of a release in one watched range: their indices, and their encoding with and
/// without prev_kv, made when first asked for.
struct InRange {
    indices: Vec<usize>,
    runs: [Option<EncodedRun>; 2],
}

impl InRange {
    fn new(indices: Vec<usize>) -> InRange {
        InRange { indices, runs: [None, None] }
    }

    /// Every one of `events` (a read of one range).
    fn all(events: &[ChangeEvent]) -> InRange {
        InRange::new((0..events.len()).collect())
    }

    /// The indices, and the events' encoding for watchers that want `prev_kv` or not.
    fn run(&mut self, events: &[ChangeEvent], prev_kv: bool) -> (&[usize], &EncodedRun) {
        let InRange { indices, runs } = self;
        let run = runs[usize::from(prev_kv)].get_or_insert_with(|| EncodedRun::new(indices.iter().map(|&i| &events[i]), prev_kv));
        (indices, run)
    }
}

/// A watcher's events of a release (`mine`: positions in `indices`, which index `events`, in
/// revision order) cut into responses: one per revision, or when `coalesce`, runs of whole
/// revisions cut once they reach `COALESCED_RESPONSE_MAX_BYTES` (a txn's events always share
/// a response). Ranges of positions in `mine`.
fn response_groups(events: &[ChangeEvent], indices: &[usize], run: &EncodedRun, mine: &[usize], coalesce: bool) -> Vec<std::ops::Range<usize>> {
    let rev = |k: usize| events[indices[k]].rev.main;
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (p, &k) in mine.iter().enumerate() {
        let new_rev = p > 0 && rev(k) != rev(mine[p - 1]);
        if new_rev && (!coalesce || bytes >= COALESCED_RESPONSE_MAX_BYTES) {
            out.push(start..p);
            (start, bytes) = (p, 0);
        }
        if coalesce {
            bytes += run.field_len(k);
        }
    }
    if start < mine.len() {
        out.push(start..mine.len());
    }
    out
}

/// Events (in revision order) grouped by main revision.
fn by_revision<'a>(events: impl Iterator<Item = &'a ChangeEvent>, w: &Watcher) -> Vec<(i64, Vec<Event>)> {
    let mut out: Vec<(i64, Vec<Event>)> = Vec::new();
    for e in events {
        match out.last_mut() {
            Some((rev, evs)) if *rev == e.rev.main => evs.push(w.event(e)),
            _ => out.push((e.rev.main, vec![w.event(e)])),
        }
    }
    out
}

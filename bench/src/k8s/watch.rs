//! The apiserver's watches: one per resource prefix, as its watch cache opens them after the
//! initial LIST (etcd3/watcher.go): the prefix, from the LIST's revision + 1, with prev_kv and
//! progress_notify. One Watch stream per resource, spread over `CONNS` connections owned by a
//! thread of their own (a current-thread runtime), so the traffic's thread does not delay them.
//! Every `progress_every` each stream also sends a RequestProgress, as the watch cache does when
//! it serves consistent reads (k8s ≥ 1.31, ConsistentListFromCache).
//!
//! Responses are decoded with a reduced message (per event: type, key, mod_revision and the
//! prev_kv's mod_revision; prost skips the values). Each event is logged with its arrival time
//! for the check against the writes (`check.rs`); per stream, revisions must increase, a
//! progress answer must not be behind the last event, and no event may follow at or below the
//! revision of a progress answer (the guarantee the apiserver's watch cache relies on when it
//! treats a progress notification as "everything up to here was sent").
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ballast_bench::proto::etcdserverpb::{
    watch_request, WatchCreateRequest, WatchProgressRequest, WatchRequest,
};
use tokio::sync::{mpsc, oneshot, watch};
use tonic::Streaming;

use super::objects::Resource;
use crate::watch::{connect, prefix_end};

/// Connections the watch streams are spread over.
const CONNS: usize = 2;

/// The response header's revision only (also decoded by the store's LIST pages).
#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct LiteHeader {
    #[prost(int64, tag = "3")]
    pub(super) revision: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
struct LiteKv {
    #[prost(bytes = "vec", tag = "1")]
    key: Vec<u8>,
    #[prost(int64, tag = "3")]
    mod_revision: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
struct LiteEvent {
    #[prost(int32, tag = "1")]
    kind: i32,
    #[prost(message, optional, tag = "2")]
    kv: Option<LiteKv>,
    #[prost(message, optional, tag = "3")]
    prev_kv: Option<LiteKv>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct LiteResponse {
    #[prost(message, optional, tag = "1")]
    header: Option<LiteHeader>,
    #[prost(int64, tag = "2")]
    watch_id: i64,
    #[prost(bool, tag = "3")]
    created: bool,
    #[prost(bool, tag = "4")]
    canceled: bool,
    #[prost(int64, tag = "5")]
    compact_revision: i64,
    #[prost(string, tag = "6")]
    cancel_reason: String,
    #[prost(message, repeated, tag = "11")]
    events: Vec<LiteEvent>,
}

/// One event as received.
pub struct Seen {
    pub rev: i64,
    pub key: Vec<u8>,
    pub delete: bool,
    /// mod_revision of the prev_kv (0: none sent).
    pub prev_rev: i64,
    /// Arrival, ns since the workload's base instant.
    pub at_ns: u64,
}

/// What one resource's watch received.
#[derive(Default)]
pub struct StreamLog {
    pub events: Vec<Seen>,
    /// Events whose revision was not above the previous one's (equal is in order for deletes
    /// of distinct keys: a lease's expiry deletes its keys in one revision).
    pub disorder: u64,
    /// Progress answers (no events, not the creation) and those behind the last event.
    pub progress: u64,
    pub progress_behind: u64,
    /// Events at or below the revision of an earlier progress answer.
    pub after_progress: u64,
    /// The first progress answer behind, or event after one: what it was.
    pub first_odd: Option<String>,
    last_rev: i64,
    last_key: Vec<u8>,
    progress_rev: i64,
}

/// What every watch received, and the stream errors (ended, canceled, broken).
#[derive(Default)]
pub struct WatchLog {
    pub streams: Vec<StreamLog>,
    pub errors: u64,
    pub first_error: Option<String>,
}

impl WatchLog {
    fn error(&mut self, e: String) {
        self.errors += 1;
        self.first_error.get_or_insert(e);
    }
}

struct Shared {
    log: Mutex<WatchLog>,
    created: AtomicU64,
    events: AtomicU64,
    /// Of those, deletes of events (objects the traffic never deletes: their lease expired).
    expired: AtomicU64,
    base: Instant,
}

pub struct Watches {
    thread: Option<std::thread::JoinHandle<()>>,
    stop: watch::Sender<bool>,
    shared: Arc<Shared>,
}

fn create(r: Resource, start_rev: i64) -> WatchRequest {
    WatchRequest {
        request_union: Some(watch_request::RequestUnion::CreateRequest(
            WatchCreateRequest {
                key: r.prefix().as_bytes().to_vec(),
                range_end: prefix_end(r.prefix()),
                start_revision: start_rev,
                progress_notify: true,
                prev_kv: true,
                ..Default::default()
            },
        )),
    }
}

fn progress_request() -> WatchRequest {
    WatchRequest {
        request_union: Some(watch_request::RequestUnion::ProgressRequest(
            WatchProgressRequest {},
        )),
    }
}

/// Opens a Watch stream whose first request (the create) is queued before the call; responses
/// are not size-bounded, as kube-apiserver's client.
async fn open(
    ch: tonic::transport::Channel,
    first: WatchRequest,
) -> Result<(mpsc::Sender<WatchRequest>, Streaming<LiteResponse>), String> {
    crate::watch::clients::open_watch(ch, vec![first], 16, usize::MAX).await
}

/// Receives the watch of resource `s` until stop.
async fn receive(
    s: usize,
    mut stream: Streaming<LiteResponse>,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    let stopped = stop.changed();
    tokio::pin!(stopped);
    loop {
        let msg = tokio::select! {
            m = stream.message() => m,
            _ = &mut stopped => return,
        };
        let r = match msg {
            Ok(Some(r)) => r,
            Ok(None) => {
                return shared
                    .log
                    .lock()
                    .expect("watch log")
                    .error(format!("watch {s}: stream ended by the server"))
            }
            Err(e) => {
                return shared
                    .log
                    .lock()
                    .expect("watch log")
                    .error(format!("watch {s}: {e}"))
            }
        };
        let at_ns = shared.base.elapsed().as_nanos() as u64;
        let mut log = shared.log.lock().expect("watch log");
        if r.canceled || r.compact_revision != 0 {
            log.error(format!(
                "watch {s} canceled (compact_revision {}): {}",
                r.compact_revision, r.cancel_reason
            ));
        }
        if r.created {
            shared.created.fetch_add(1, Ordering::Relaxed);
        }
        let st = &mut log.streams[s];
        if r.events.is_empty() {
            if !r.created {
                let rev = r.header.map_or(0, |h| h.revision);
                st.progress += 1;
                if rev < st.last_rev {
                    st.progress_behind += 1;
                    let last = st.last_rev;
                    st.first_odd.get_or_insert_with(|| {
                        format!(
                            "{}: progress answer at revision {rev} after an event at {last}",
                            Resource::ALL[s].prefix()
                        )
                    });
                }
                st.progress_rev = st.progress_rev.max(rev);
            }
            continue;
        }
        let n = r.events.len() as u64;
        for e in r.events {
            let Some(kv) = e.kv else { continue };
            let delete = e.kind == 1;
            let one_txn = delete && kv.mod_revision == st.last_rev && kv.key != st.last_key;
            st.disorder += u64::from(kv.mod_revision <= st.last_rev && !one_txn);
            if delete && Resource::ALL[s] == Resource::Events {
                shared.expired.fetch_add(1, Ordering::Relaxed);
            }
            if kv.mod_revision <= st.progress_rev {
                st.after_progress += 1;
                let (rev, p) = (kv.mod_revision, st.progress_rev);
                st.first_odd.get_or_insert_with(|| {
                    format!(
                        "{}: event at revision {rev} after a progress answer at {p}",
                        Resource::ALL[s].prefix()
                    )
                });
            }
            st.last_rev = kv.mod_revision;
            st.last_key.clone_from(&kv.key);
            st.events.push(Seen {
                rev: kv.mod_revision,
                key: kv.key,
                delete,
                prev_rev: e.prev_kv.map_or(0, |p| p.mod_revision),
                at_ns,
            });
        }
        shared.events.fetch_add(n, Ordering::Relaxed);
    }
}

/// Sends a RequestProgress on `tx` every `every` until stop.
async fn request_progress(
    tx: mpsc::Sender<WatchRequest>,
    every: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                if tx.send(progress_request()).await.is_err() {
                    return;
                }
            }
            _ = stop.changed() => return,
        }
    }
}

type Opened = oneshot::Sender<Result<(), String>>;

fn thread_main(
    url: String,
    starts: Vec<(Resource, i64)>,
    every: Duration,
    shared: Arc<Shared>,
    stop: watch::Receiver<bool>,
    opened: Opened,
) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return drop(opened.send(Err(format!("watch runtime: {e}")))),
    };
    rt.block_on(async move {
        let mut chans = Vec::new();
        for _ in 0..CONNS {
            match connect(&url).await {
                Ok(ch) => chans.push(ch),
                Err(e) => return drop(opened.send(Err(e))),
            }
        }
        let mut tasks = Vec::new();
        for (k, (r, rev)) in starts.into_iter().enumerate() {
            match open(chans[k % CONNS].clone(), create(r, rev)).await {
                Ok((tx, rx)) => {
                    tasks.push(tokio::spawn(receive(
                        r.index(),
                        rx,
                        shared.clone(),
                        stop.clone(),
                    )));
                    tasks.push(tokio::spawn(request_progress(tx, every, stop.clone())));
                }
                Err(e) => return drop(opened.send(Err(e))),
            }
        }
        let _ = opened.send(Ok(()));
        for t in tasks {
            let _ = t.await;
        }
    });
}

impl Watches {
    /// Opens one watch per `(resource, start revision)`; returns once every stream is open (see
    /// `wait_created` for the watches themselves). Arrival times count from `base`.
    pub async fn start(
        url: &str,
        starts: Vec<(Resource, i64)>,
        base: Instant,
        progress_every: Duration,
    ) -> Result<Watches, String> {
        let shared = Arc::new(Shared {
            log: Mutex::new(WatchLog {
                streams: Resource::ALL.iter().map(|_| StreamLog::default()).collect(),
                ..Default::default()
            }),
            created: AtomicU64::new(0),
            events: AtomicU64::new(0),
            expired: AtomicU64::new(0),
            base,
        });
        let (stop, stop_rx) = watch::channel(false);
        let (tx, rx) = oneshot::channel();
        let (url, sh) = (url.to_string(), shared.clone());
        let thread =
            std::thread::spawn(move || thread_main(url, starts, progress_every, sh, stop_rx, tx));
        let w = Watches {
            thread: Some(thread),
            stop,
            shared,
        };
        match rx.await {
            Ok(Ok(())) => Ok(w),
            Ok(Err(e)) => Err(e),
            Err(_) => Err("watch thread died".into()),
        }
    }

    /// Waits until the server confirmed `n` watches (bounded by `secs`).
    pub async fn wait_created(&self, n: u64, secs: f64) -> Result<(), String> {
        let until = Instant::now() + Duration::from_secs_f64(secs);
        while self.shared.created.load(Ordering::Relaxed) < n {
            if let Some(e) = self
                .shared
                .log
                .lock()
                .expect("watch log")
                .first_error
                .clone()
            {
                return Err(e);
            }
            if Instant::now() > until {
                return Err(format!(
                    "only {} of {n} watches created after {secs:.0} s",
                    self.shared.created.load(Ordering::Relaxed)
                ));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok(())
    }

    /// Events received so far.
    /// Events received for writes of the traffic (not counting expired events' deletes).
    pub fn events(&self) -> u64 {
        self.shared.events.load(Ordering::Relaxed) - self.shared.expired.load(Ordering::Relaxed)
    }

    /// Stops the streams and returns what they received.
    pub fn stop(mut self) -> WatchLog {
        let _ = self.stop.send(true);
        if let Some(h) = self.thread.take() {
            let _ = h.join();
        }
        std::mem::take(&mut *self.shared.log.lock().expect("watch log"))
    }
}

impl Drop for Watches {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

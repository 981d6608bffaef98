//! The watchers: `streams` Watch streams spread round-robin over `conns` gRPC connections, each
//! stream carrying its share of the watchers (all on one prefix). The connections, and the streams
//! on them, are owned by `LOADGEN_THREADS` threads, each a current-thread tokio runtime (as the KV
//! load generator in kv/drive.rs, for the same reason: FIFO service of ready streams).
//!
//! Responses are decoded with a reduced message (`Lite*` below) that keeps only what the bench
//! reads — watch id, flags, and per event the key and mod_revision — so prost skips the values
//! instead of copying them: the receiving side stays cheap next to the server it measures.
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ballast_bench::proto::etcdserverpb::{watch_request, WatchCreateRequest, WatchRequest};
use ballast_bench::LOADGEN_THREADS;
use tokio::sync::{mpsc, oneshot, watch};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::codegen::tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};
use tonic::Streaming;

use super::shared::{index_of, prefix_end, Shared, StepSeen};

#[derive(Clone, PartialEq, prost::Message)]
pub struct LiteResponse {
    #[prost(int64, tag = "2")]
    pub watch_id: i64,
    #[prost(bool, tag = "3")]
    pub created: bool,
    #[prost(bool, tag = "4")]
    pub canceled: bool,
    #[prost(int64, tag = "5")]
    pub compact_revision: i64,
    #[prost(string, tag = "6")]
    pub cancel_reason: String,
    #[prost(message, repeated, tag = "11")]
    pub events: Vec<LiteEvent>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct LiteEvent {
    #[prost(message, optional, tag = "2")]
    pub kv: Option<LiteKv>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct LiteKv {
    #[prost(bytes = "vec", tag = "1")]
    pub key: Vec<u8>,
    #[prost(int64, tag = "3")]
    pub mod_revision: i64,
}

/// A connection without a per-request timeout (a watch stream lives for the whole workload).
pub async fn connect(url: &str) -> Result<Channel, String> {
    Endpoint::from_shared(url.to_string())
        .map_err(|e| e.to_string())?
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
        .connect()
        .await
        .map_err(|e| format!("connect {url}: {e}"))
}

fn create_request(prefix: &str) -> WatchRequest {
    WatchRequest {
        request_union: Some(watch_request::RequestUnion::CreateRequest(
            WatchCreateRequest {
                key: prefix.as_bytes().to_vec(),
                range_end: prefix_end(prefix),
                ..Default::default()
            },
        )),
    }
}

/// Opens a Watch stream whose first `creates` requests are queued before the call (a server may
/// send its response headers only with its first message).
async fn open_stream(
    ch: Channel,
    prefix: &str,
    creates: usize,
) -> Result<(mpsc::Sender<WatchRequest>, Streaming<LiteResponse>), String> {
    let first = (0..creates).map(|_| create_request(prefix)).collect();
    open_watch(ch, first, creates.max(1) + 64, 4 << 20).await
}

/// Opens a Watch stream decoding responses as `R` (a lighter message than WatchResponse), with
/// `first` queued before the call and room for `queue` requests; responses up to
/// `max_decoding_bytes`.
pub(crate) async fn open_watch<R>(
    ch: Channel,
    first: Vec<WatchRequest>,
    queue: usize,
    max_decoding_bytes: usize,
) -> Result<(mpsc::Sender<WatchRequest>, Streaming<R>), String>
where
    R: prost::Message + Default + Send + 'static,
{
    let (tx, rx) = mpsc::channel(queue.max(first.len()).max(1));
    for req in first {
        tx.try_send(req).map_err(|e| format!("queue create: {e}"))?;
    }
    let mut grpc = tonic::client::Grpc::new(ch).max_decoding_message_size(max_decoding_bytes);
    grpc.ready()
        .await
        .map_err(|e| format!("watch stream not ready: {e}"))?;
    let path = PathAndQuery::from_static("/etcdserverpb.Watch/Watch");
    let codec = tonic_prost::ProstCodec::<WatchRequest, R>::default();
    let resp = grpc
        .streaming(tonic::Request::new(ReceiverStream::new(rx)), path, codec)
        .await
        .map_err(|e| format!("open watch stream: {e}"))?;
    Ok((tx, resp.into_inner()))
}

/// Receives one stream until `stop`: counts creations, records each event's latency into its
/// thread's per-step `seen`, checks per-watcher revision order.
async fn receive(
    mut stream: Streaming<LiteResponse>,
    shared: Arc<Shared>,
    seen: Arc<Mutex<Vec<StepSeen>>>,
    mut stop: watch::Receiver<bool>,
) {
    let mut last_rev: HashMap<i64, i64> = HashMap::new();
    let mut per_step = vec![0u64; shared.steps()];
    // One stop future for the whole loop: re-creating it per message registers and drops a
    // waiter each time (a few % of the client's CPU at high event rates).
    let stopped = stop.changed();
    tokio::pin!(stopped);
    loop {
        let msg = tokio::select! {
            m = stream.message() => m,
            _ = &mut stopped => return,
        };
        let r = match msg {
            Ok(Some(r)) => r,
            Ok(None) => return shared.error("watch stream ended by the server".into()),
            Err(e) => return shared.error(format!("watch stream: {e}")),
        };
        if r.created {
            shared.created.fetch_add(1, Ordering::Relaxed);
        }
        if r.canceled || r.compact_revision != 0 {
            shared.error(format!(
                "watch {} canceled (compact_revision {}): {}",
                r.watch_id, r.compact_revision, r.cancel_reason
            ));
        }
        if r.events.is_empty() {
            continue;
        }
        let now = shared.now_ns();
        let last = last_rev.entry(r.watch_id).or_insert(0);
        let mut st = seen.lock().expect("seen lock");
        for kv in r.events.iter().filter_map(|e| e.kv.as_ref()) {
            let Some((i, s)) = index_of(&kv.key).and_then(|i| Some((i, shared.step_of(i)?))) else {
                continue;
            };
            let sent = shared.sent_ns[i as usize].load(Ordering::Acquire);
            let step = &mut st[s];
            step.lat.record(now.saturating_sub(sent) / 1000);
            step.last_ns = step.last_ns.max(now);
            if kv.mod_revision <= *last {
                step.disorder += 1;
            }
            *last = kv.mod_revision;
            per_step[s] += 1;
        }
        drop(st);
        for (s, n) in per_step.iter_mut().enumerate().filter(|(_, n)| **n > 0) {
            shared.delivered[s].fetch_add(*n, Ordering::Relaxed);
            *n = 0;
        }
    }
}

/// How the watchers are spread.
#[derive(Clone, Copy)]
pub struct Layout {
    pub conns: usize,
    pub streams: usize,
    /// Watchers each stream creates when it opens (at least 1).
    pub per_stream: usize,
}

pub struct Watchers {
    threads: Vec<std::thread::JoinHandle<()>>,
    stop: watch::Sender<bool>,
    /// Request side of every stream (`create_more` sends further creates here).
    txs: Vec<mpsc::Sender<WatchRequest>>,
    /// Per thread: what its watchers saw, per step.
    seen: Vec<Arc<Mutex<Vec<StepSeen>>>>,
    prefix: String,
}

type Opened = Result<Vec<mpsc::Sender<WatchRequest>>, String>;

/// What one load-generator thread needs.
struct ThreadCtx {
    url: String,
    prefix: String,
    layout: Layout,
    shared: Arc<Shared>,
    seen: Arc<Mutex<Vec<StepSeen>>>,
    stop: watch::Receiver<bool>,
}

/// One load-generator thread: connects connections `t, t + threads, ...`, opens the streams that
/// use them (stream k uses connection k % conns), receives until stop.
fn thread_main(t: usize, cx: ThreadCtx, opened: oneshot::Sender<Opened>) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return drop(opened.send(Err(format!("watcher runtime: {e}")))),
    };
    let l = cx.layout;
    let threads = LOADGEN_THREADS.min(l.conns).max(1);
    rt.block_on(async move {
        let mut chans = HashMap::new();
        for j in (t..l.conns).step_by(threads) {
            match connect(&cx.url).await {
                Ok(ch) => chans.insert(j, ch),
                Err(e) => return drop(opened.send(Err(e))),
            };
        }
        let mut txs = Vec::new();
        let mut tasks = Vec::new();
        for k in (0..l.streams).filter(|k| chans.contains_key(&(k % l.conns))) {
            let ch = chans[&(k % l.conns)].clone();
            match open_stream(ch, &cx.prefix, l.per_stream.max(1)).await {
                Ok((tx, rx)) => {
                    txs.push(tx);
                    let f = receive(rx, cx.shared.clone(), cx.seen.clone(), cx.stop.clone());
                    tasks.push(tokio::spawn(f));
                }
                Err(e) => return drop(opened.send(Err(e))),
            }
        }
        let _ = opened.send(Ok(txs));
        for task in tasks {
            let _ = task.await;
        }
    });
}

impl Watchers {
    /// Opens the streams with `layout.per_stream` watchers each on `prefix`; returns once every
    /// stream is open (not necessarily every watcher created: see `wait_created`).
    pub async fn start(
        url: &str,
        prefix: &str,
        layout: Layout,
        shared: Arc<Shared>,
    ) -> Result<Watchers, String> {
        let threads = LOADGEN_THREADS.min(layout.conns).max(1);
        let (stop, stop_rx) = watch::channel(false);
        let mut w = Watchers {
            threads: Vec::new(),
            stop,
            txs: Vec::new(),
            seen: Vec::new(),
            prefix: prefix.to_string(),
        };
        let mut waits = Vec::new();
        for t in 0..threads {
            let seen = Arc::new(Mutex::new(vec![StepSeen::default(); shared.steps()]));
            let (tx, rx) = oneshot::channel();
            let cx = ThreadCtx {
                url: url.to_string(),
                prefix: prefix.to_string(),
                layout,
                shared: shared.clone(),
                seen: seen.clone(),
                stop: stop_rx.clone(),
            };
            w.threads
                .push(std::thread::spawn(move || thread_main(t, cx, tx)));
            w.seen.push(seen);
            waits.push(rx);
        }
        for rx in waits {
            match rx.await {
                Ok(Ok(txs)) => w.txs.extend(txs),
                Ok(Err(e)) => return Err(e),
                Err(_) => return Err("watcher thread died".into()),
            }
        }
        Ok(w)
    }

    /// Sends `per_stream` more creates on every stream.
    pub async fn create_more(&self, per_stream: usize) -> Result<(), String> {
        for tx in &self.txs {
            for _ in 0..per_stream {
                tx.send(create_request(&self.prefix))
                    .await
                    .map_err(|_| "watch stream closed".to_string())?;
            }
        }
        Ok(())
    }

    /// Merged over the threads: what the watchers saw of step `s` so far.
    pub fn seen(&self, s: usize) -> StepSeen {
        let mut all = StepSeen::default();
        for t in &self.seen {
            let t = t.lock().expect("seen lock");
            all.lat.merge(&t[s].lat);
            all.last_ns = all.last_ns.max(t[s].last_ns);
            all.disorder += t[s].disorder;
        }
        all
    }

    pub fn stop(self) {
        let _ = self.stop.send(true);
        for h in self.threads {
            let _ = h.join();
        }
    }
}

/// Polls until the server confirmed `n` watchers (bounded by `secs`); fails on a stream error.
pub async fn wait_created(shared: &Shared, n: u64, secs: f64) -> Result<f64, String> {
    let t0 = Instant::now();
    while shared.created.load(Ordering::Relaxed) < n {
        if let Some(e) = shared.first_error() {
            return Err(e);
        }
        if t0.elapsed().as_secs_f64() > secs {
            return Err(format!(
                "only {} of {n} watchers created after {secs:.0} s",
                shared.created.load(Ordering::Relaxed)
            ));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(t0.elapsed().as_secs_f64())
}

//! Harness of the Watch differential test (tests/watch_differential.rs): etcd 3.5 and ballast
//! started empty, the same KV writes sent to both, and one watch stream per server driven in
//! step, their responses compared per watch id. Every wait is bounded.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use ballast::proto::etcdserverpb::kv_client::KvClient;
use ballast::proto::etcdserverpb::watch_client::WatchClient;
use ballast::proto::etcdserverpb::*;
use ballast::proto::mvccpb::{Event, KeyValue};
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::transport::{Channel, Endpoint};

use crate::{common, etcd};

/// A response that has not come within this time is missing.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long both servers must stay silent where etcd sends nothing.
pub const QUIET: Duration = Duration::from_millis(300);

/// A KV write sent to both servers.
#[derive(Debug, Clone)]
pub enum Write {
    Put(PutRequest),
    Delete(DeleteRangeRequest),
    Txn(TxnRequest),
    Compact(i64),
}

// ---------------------------------------------------------------------------------------------
// The two servers

pub async fn channel(endpoint: &str) -> Channel {
    let ep = Endpoint::from_shared(format!("http://{endpoint}")).unwrap().connect_timeout(Duration::from_secs(5));
    let mut last = None;
    for _ in 0..50 {
        match ep.connect().await {
            Ok(ch) => return ch,
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("cannot connect to {endpoint}: {last:?}");
}

/// etcd and ballast, started empty with the same flags.
pub struct Pair {
    pub etcd: etcd::Etcd,
    pub ballast: common::Server,
    pub channels: [Channel; 2],
}

impl Pair {
    pub async fn start(flags: &[&str]) -> Pair {
        Pair::start_with(flags, &[]).await
    }

    /// With `flags` for both and `ballast_flags` for ballast alone.
    pub async fn start_with(flags: &[&str], ballast_flags: &[&str]) -> Pair {
        if let Err(e) = etcd::find_etcd35() {
            panic!("etcd 3.5 is needed for the watch differential test: {e}");
        }
        let etcd = etcd::Etcd::start_with(flags);
        let ballast = common::Server::start(&[flags, ballast_flags].concat());
        let channels = [channel(&etcd.endpoint).await, channel(&ballast.endpoint).await];
        Pair { etcd, ballast, channels }
    }

    /// Sends `w` to both; their answers must agree. Returns the store revision after it.
    pub async fn write(&self, w: Write) -> i64 {
        let (e, b) = tokio::join!(write_to(&self.channels[0], &w), write_to(&self.channels[1], &w));
        if b != e {
            let log = self.ballast.log();
            let tail: Vec<&str> = log.lines().rev().take(6).collect::<Vec<_>>().into_iter().rev().collect();
            panic!("KV answers differ for {w:?}\n  etcd:    {e:?}\n  ballast: {b:?}\n  ballast log tail:\n    {}", tail.join("\n    "));
        }
        e.expect("the write succeeds").0
    }

    /// A new watch stream on each server.
    pub fn stream(&self) -> Streams {
        Streams { halves: [Half::open(self.channels[0].clone()), Half::open(self.channels[1].clone())] }
    }
}

/// The answer to a write as (revision, normalized Debug text), or the error.
pub async fn write_to(ch: &Channel, w: &Write) -> Result<(i64, String), String> {
    let mut c = KvClient::new(ch.clone());
    let call = async {
        match w.clone() {
            Write::Put(r) => c.put(r).await.map(|r| normalized(r.into_inner(), |r| &mut r.header)),
            Write::Delete(r) => c.delete_range(r).await.map(|r| normalized(r.into_inner(), |r| &mut r.header)),
            Write::Txn(r) => c.txn(r).await.map(|r| normalized(r.into_inner(), |r| &mut r.header)),
            Write::Compact(revision) => c
                .compact(CompactionRequest { revision, physical: true })
                .await
                .map(|r| normalized(r.into_inner(), |r| &mut r.header)),
        }
    };
    match tokio::time::timeout(RESPONSE_TIMEOUT, call).await {
        Ok(Ok(answer)) => Ok(answer),
        Ok(Err(status)) => Err(format!("{:?}: {}", status.code(), status.message())),
        Err(_) => Err(format!("no answer in {RESPONSE_TIMEOUT:?}")),
    }
}

pub fn normalized<R: std::fmt::Debug>(mut r: R, header: impl Fn(&mut R) -> &mut Option<ResponseHeader>) -> (i64, String) {
    let h = header(&mut r).as_mut().expect("a header");
    (h.cluster_id, h.member_id, h.raft_term) = (0, 0, 0);
    (h.revision, format!("{r:?}"))
}

/// One watch stream on one server. A task owns the gRPC call and passes each response (or
/// the error that ended the stream) on; dropping the Half ends the call.
pub struct Half {
    requests: Option<mpsc::UnboundedSender<WatchRequest>>,
    responses: mpsc::UnboundedReceiver<Result<WatchResponse, String>>,
    task: tokio::task::JoinHandle<()>,
}

impl Half {
    pub fn open(ch: Channel) -> Half {
        let (requests, rx) = mpsc::unbounded_channel();
        let (tx, responses) = mpsc::unbounded_channel();
        // etcd (grpc-go) sends the response headers with its first message, so the call is
        // awaited in the task, never before the first request is sent.
        let task = tokio::spawn(async move {
            match WatchClient::new(ch).watch(UnboundedReceiverStream::new(rx)).await {
                Ok(stream) => pump(stream.into_inner(), tx).await,
                Err(e) => drop(tx.send(Err(format!("watch call failed: {e}")))),
            }
        });
        Half { requests: Some(requests), responses, task }
    }

    pub fn send(&self, req: WatchRequest) {
        self.requests.as_ref().expect("not half-closed").send(req).expect("the stream task runs");
    }

    /// Up to `n` responses, each waited for at most `wait`, normalized; an error ends the list
    /// and is returned beside it.
    pub async fn take(&mut self, n: usize, wait: Duration) -> (Vec<WatchResponse>, Option<String>) {
        let mut got = Vec::new();
        while got.len() < n {
            match tokio::time::timeout(wait, self.responses.recv()).await {
                Ok(Some(Ok(mut r))) => {
                    if let Some(h) = r.header.as_mut() {
                        (h.cluster_id, h.member_id, h.raft_term) = (0, 0, 0);
                    }
                    got.push(r);
                }
                Ok(Some(Err(e))) => return (got, Some(e)),
                Ok(None) => return (got, Some("the stream task ended".into())),
                Err(_) => break,
            }
        }
        (got, None)
    }
}

impl Drop for Half {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The same watch stream on etcd ([0]) and on ballast ([1]).
pub struct Streams {
    halves: [Half; 2],
}

impl Streams {
    pub fn send(&self, req: WatchRequest) {
        for h in &self.halves {
            h.send(req.clone());
        }
    }

    /// The client stops sending (half-close); the streams stay open.
    pub fn close_send(&mut self) {
        for h in &mut self.halves {
            h.requests = None;
        }
    }

    /// Sends `req` and compares the `n` responses it causes.
    pub async fn ask(&mut self, req: WatchRequest, n: usize, what: &str) -> Vec<WatchResponse> {
        self.send(req);
        self.expect(n, what).await
    }

    /// The next `n` responses of both servers, which must agree (per watch id, in order).
    /// Returns etcd's, in arrival order.
    pub async fn expect(&mut self, n: usize, what: &str) -> Vec<WatchResponse> {
        let [e, b] = &mut self.halves;
        let ((er, ee), (br, be)) = tokio::join!(e.take(n, RESPONSE_TIMEOUT), b.take(n, RESPONSE_TIMEOUT));
        if ee.is_some() || er.len() != n {
            panic!("{what}: etcd gave {} of {n} responses ({ee:?}): test expectation wrong?\n{}", er.len(), show_all(&er));
        }
        if by_id(&br) != by_id(&er) || be.is_some() {
            panic!(
                "{what}: responses differ{}\n  first difference: {}\n  etcd:\n{}  ballast:\n{}",
                be.map(|e| format!(" (ballast: {e})")).unwrap_or_default(),
                first_difference(&er, &br),
                show_all(&er),
                show_all(&br)
            );
        }
        er
    }

    /// Neither server sends anything for `QUIET`.
    pub async fn expect_none(&mut self, what: &str) {
        let [e, b] = &mut self.halves;
        let ((er, ee), (br, be)) = tokio::join!(e.take(1, QUIET), b.take(1, QUIET));
        assert!(er.is_empty() && ee.is_none(), "{what}: etcd sent something: {ee:?}\n{}", show_all(&er));
        assert!(br.is_empty() && be.is_none(), "{what}: etcd sent nothing, ballast did: {be:?}\n{}", show_all(&br));
    }
}

pub fn by_id(rs: &[WatchResponse]) -> BTreeMap<i64, Vec<&WatchResponse>> {
    let mut m: BTreeMap<i64, Vec<&WatchResponse>> = BTreeMap::new();
    for r in rs {
        m.entry(r.watch_id).or_default().push(r);
    }
    m
}

// ---------------------------------------------------------------------------------------------
// Readable responses (for failure messages)

pub fn b(bytes: &[u8]) -> String {
    if bytes.len() > 24 {
        return format!("<{} bytes>", bytes.len());
    }
    let mut s = String::from("\"");
    for &c in bytes {
        match c {
            0x20..=0x7e if c != b'"' && c != b'\\' => s.push(c as char),
            _ => write!(s, "\\x{c:02x}").unwrap(),
        }
    }
    s.push('"');
    s
}

pub fn show_kv(kv: &KeyValue) -> String {
    format!("{}={} c{} m{} v{} l{}", b(&kv.key), b(&kv.value), kv.create_revision, kv.mod_revision, kv.version, kv.lease)
}

pub fn show_event(e: &Event) -> String {
    let kind = if e.r#type == 0 { "PUT" } else { "DELETE" };
    let mut s = format!("{kind} {}", e.kv.as_ref().map_or("(no kv)".into(), show_kv));
    if let Some(p) = &e.prev_kv {
        write!(s, " prev[{}]", show_kv(p)).unwrap();
    }
    s
}

pub fn show(r: &WatchResponse) -> String {
    let mut s = format!("id={} rev={}", r.watch_id, r.header.as_ref().map_or(-99, |h| h.revision));
    for (name, on) in [("created", r.created), ("canceled", r.canceled), ("fragment", r.fragment)] {
        if on {
            write!(s, " {name}").unwrap();
        }
    }
    if r.compact_revision != 0 {
        write!(s, " compact_revision={}", r.compact_revision).unwrap();
    }
    if !r.cancel_reason.is_empty() {
        write!(s, " reason={:?}", r.cancel_reason).unwrap();
    }
    let shown: Vec<String> = match r.events.len() {
        0 => return s,
        n if n <= 12 => r.events.iter().map(show_event).collect(),
        n => {
            let mut v: Vec<String> = r.events[..4].iter().map(show_event).collect();
            v.push(format!("... {} more ...", n - 6));
            v.extend(r.events[n - 2..].iter().map(show_event));
            v
        }
    };
    write!(s, " {} events=[{}]", r.events.len(), shown.join("; ")).unwrap();
    s
}

/// Where two servers' responses (grouped per watch id) first differ.
pub fn first_difference(e: &[WatchResponse], b: &[WatchResponse]) -> String {
    let (eg, bg) = (by_id(e), by_id(b));
    for id in eg.keys().chain(bg.keys()) {
        let (el, bl) = (eg.get(id).map_or(&[][..], |v| v), bg.get(id).map_or(&[][..], |v| v));
        for i in 0..el.len().max(bl.len()) {
            match (el.get(i), bl.get(i)) {
                (Some(x), Some(y)) if x == y => continue,
                (Some(x), Some(y)) => {
                    let at = (0..x.events.len().max(y.events.len())).find(|&j| x.events.get(j) != y.events.get(j));
                    let ev = |r: &WatchResponse, j| r.events.get(j).map_or("(none)".into(), show_event);
                    return match at {
                        Some(j) => format!("id {id}, response {i}, event {j}: etcd {} / ballast {}", ev(x, j), ev(y, j)),
                        None => format!("id {id}, response {i}: etcd {} / ballast {}", show(x), show(y)),
                    };
                }
                (x, y) => return format!("id {id}, response {i}: etcd {:?} / ballast {:?}", x.map(|r| show(r)), y.map(|r| show(r))),
            }
        }
    }
    "none".into()
}

pub fn show_all(rs: &[WatchResponse]) -> String {
    rs.iter().map(|r| format!("    {}\n", show(r))).collect()
}

/// The response with watch id `id` (the first one).
pub fn of(rs: &[WatchResponse], id: i64) -> &WatchResponse {
    rs.iter().find(|r| r.watch_id == id).unwrap_or_else(|| panic!("no response for id {id}:\n{}", show_all(rs)))
}

pub fn rev(r: &WatchResponse) -> i64 {
    r.header.as_ref().expect("a header").revision
}

/// Passes a server stream's messages on, then why it ended (an error, or the server closing
/// it), until the receiver is gone.
pub async fn pump<T>(mut stream: tonic::Streaming<T>, tx: mpsc::UnboundedSender<Result<T, String>>) {
    loop {
        let item = match stream.message().await {
            Ok(Some(r)) => Ok(r),
            Ok(None) => Err("the server ended the stream".to_string()),
            Err(e) => Err(format!("stream error: {e}")),
        };
        let end = item.is_err();
        if tx.send(item).is_err() || end {
            return;
        }
    }
}

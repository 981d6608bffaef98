//! Watch on a real ballast: exactly-once, in-order delivery under concurrent writers on two
//! shards (checked against the writes' own revisions), history replayed across a snapshot and
//! a restart, compaction, 10,000 watchers beside a stalled consumer (the others keep their
//! pace, the server's memory stays bounded), and etcdctl's watch forms. The field-by-field
//! comparison with etcd itself is tests/watch_differential.rs.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use ballast::proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use ballast::proto::etcdserverpb::kv_client::KvClient;
use ballast::proto::etcdserverpb::request_op::Request as Op;
use ballast::proto::etcdserverpb::watch_client::WatchClient;
use ballast::proto::etcdserverpb::watch_request::RequestUnion;
use ballast::proto::etcdserverpb::*;
use ballast::proto::mvccpb;
use common::Server;
use tokio_stream::StreamExt;
use tonic::transport::{Channel, Endpoint};

/// No single expected response takes longer than this.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(20);

async fn channel(s: &Server) -> Channel {
    let ep = Endpoint::from_shared(format!("http://{}", s.endpoint)).unwrap().connect_timeout(Duration::from_secs(5));
    ep.connect().await.expect("connect")
}

/// An endpoint whose HTTP/2 windows are the protocol's smallest default, so a stream its
/// client reads late keeps its backlog on the server.
fn small_window_endpoint(s: &Server) -> Endpoint {
    Endpoint::from_shared(format!("http://{}", s.endpoint)).unwrap().initial_stream_window_size(65_535).initial_connection_window_size(65_535)
}

/// Runs `writers` concurrent writers of `each` writes (`write(kv, writer, i)`, returning the
/// write's revision) on `ch`; the revisions of all of them, sorted.
async fn write_concurrently<F, Fut>(ch: &Channel, writers: usize, each: usize, write: F) -> Vec<i64>
where
    F: Fn(KvClient<Channel>, usize, usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = i64> + Send,
{
    let tasks: Vec<_> = (0..writers)
        .map(|id| {
            let (kv, write) = (KvClient::new(ch.clone()), write.clone());
            tokio::spawn(async move {
                let mut revs = Vec::with_capacity(each);
                for i in 0..each {
                    revs.push(write(kv.clone(), id, i).await);
                }
                revs
            })
        })
        .collect();
    let mut revs = Vec::new();
    for t in tasks {
        revs.extend(t.await.unwrap());
    }
    revs.sort();
    revs
}

/// One watch stream.
struct Stream {
    tx: tokio::sync::mpsc::Sender<WatchRequest>,
    rx: tonic::Streaming<WatchResponse>,
}

impl Stream {
    async fn open(ch: Channel) -> Stream {
        let (tx, rx) = tokio::sync::mpsc::channel(16 * 1024);
        let rx = WatchClient::new(ch).watch(tokio_stream::wrappers::ReceiverStream::new(rx)).await.expect("watch").into_inner();
        Stream { tx, rx }
    }

    async fn send(&self, r: RequestUnion) {
        self.tx.send(WatchRequest { request_union: Some(r) }).await.expect("stream open");
    }

    async fn create(&self, key: &[u8], range_end: &[u8], start_revision: i64) {
        let req = WatchCreateRequest { key: key.to_vec(), range_end: range_end.to_vec(), start_revision, ..Default::default() };
        self.send(RequestUnion::CreateRequest(req)).await;
    }

    async fn next(&mut self) -> WatchResponse {
        match tokio::time::timeout(RESPONSE_TIMEOUT, self.rx.next()).await {
            Ok(Some(Ok(r))) => r,
            other => panic!("no watch response within {RESPONSE_TIMEOUT:?}: {other:?}"),
        }
    }

    /// Events of the next responses until `want` events arrived (bounded by the timeout).
    async fn events(&mut self, want: usize) -> Vec<(i64, mvccpb::Event)> {
        let mut out = Vec::new();
        while out.len() < want {
            let r = self.next().await;
            assert!(!r.canceled, "watch canceled: {r:?}");
            let rev = r.header.as_ref().unwrap().revision;
            out.extend(r.events.into_iter().map(|e| (rev, e)));
        }
        assert_eq!(out.len(), want, "more events than written");
        out
    }
}

fn put(key: &str, value: &str) -> RequestOp {
    RequestOp { request: Some(Op::RequestPut(PutRequest { key: key.into(), value: value.into(), ..Default::default() })) }
}

/// What a write should produce: its revision and its events (key, is delete), in order.
type Expected = BTreeMap<i64, Vec<(Vec<u8>, bool)>>;

/// One writer: puts, multi-key txns and range deletes under `w/`, recording their events.
async fn writer(ch: Channel, id: usize, ops: usize) -> Expected {
    let mut kv = KvClient::new(ch);
    let mut expected = Expected::new();
    for i in 0..ops {
        match i % 5 {
            0 | 1 => {
                let key = format!("w/{id}/k{i}");
                let r = kv.put(PutRequest { key: key.clone().into(), value: b"v".to_vec(), ..Default::default() }).await.unwrap().into_inner();
                expected.insert(r.header.unwrap().revision, vec![(key.into_bytes(), false)]);
            }
            2 | 3 => {
                // Keys spread over both shards, in one revision: events in op order.
                let keys: Vec<String> = (0..3).map(|j| format!("w/{id}/t{i}-{j}")).collect();
                let cmp = Compare { result: CompareResult::Greater as i32, target: CompareTarget::Version as i32, key: b"never".to_vec(), target_union: Some(TargetUnion::Version(-1)), ..Default::default() };
                let txn = TxnRequest { compare: vec![cmp], success: keys.iter().map(|k| put(k, "t")).collect(), failure: vec![] };
                let r = kv.txn(txn).await.unwrap().into_inner();
                assert!(r.succeeded);
                expected.insert(r.header.unwrap().revision, keys.into_iter().map(|k| (k.into_bytes(), false)).collect());
            }
            _ => {
                // Deletes the puts of the last round: several keys on both shards.
                let (from, to) = (format!("w/{id}/k"), format!("w/{id}/l"));
                let d = DeleteRangeRequest { key: from.into(), range_end: to.into(), prev_kv: true };
                let r = kv.delete_range(d).await.unwrap().into_inner();
                if r.deleted > 0 {
                    let mut keys: Vec<Vec<u8>> = r.prev_kvs.into_iter().map(|kv| kv.key).collect();
                    keys.sort();
                    expected.insert(r.header.unwrap().revision, keys.into_iter().map(|k| (k, true)).collect());
                }
            }
        }
    }
    expected
}

#[tokio::test]
async fn events_arrive_once_in_revision_order_from_concurrent_writers_on_two_shards() {
    let s = Server::start(&["--shards", "2"]);
    let ch = channel(&s).await;
    let mut w = Stream::open(ch.clone()).await;
    w.create(b"w/", b"w0", 0).await;
    assert!(w.next().await.created);
    let writers: Vec<_> = (0..4).map(|id| tokio::spawn(writer(ch.clone(), id, 150))).collect();
    let mut expected = Expected::new();
    for wr in writers {
        for (rev, evs) in wr.await.unwrap() {
            assert!(expected.insert(rev, evs).is_none(), "revision {rev} given to two writes");
        }
    }
    let want: usize = expected.values().map(Vec::len).sum();
    let got = w.events(want).await;
    let mut by_rev = Expected::new();
    let mut last = 0;
    for (header_rev, e) in got {
        let kv = e.kv.unwrap();
        assert!(kv.mod_revision >= last, "event at {} after one at {last}", kv.mod_revision);
        assert!(header_rev >= kv.mod_revision, "a response's header is at or past its events' revisions");
        last = kv.mod_revision;
        by_rev.entry(kv.mod_revision).or_default().push((kv.key, e.r#type == mvccpb::event::EventType::Delete as i32));
    }
    assert_eq!(by_rev, expected, "every write's events exactly once, in order");
}

#[tokio::test]
async fn history_is_replayed_across_a_snapshot_and_a_restart_then_live_events_follow() {
    let mut s = Server::start(&["--snapshot-count", "16"]);
    let mut kv = KvClient::new(channel(&s).await);
    for i in 0..100 {
        kv.put(PutRequest { key: format!("h/{}", i % 7).into(), value: format!("{i}").into(), ..Default::default() }).await.unwrap();
    }
    s.kill(); // a crash: the snapshot and the WAL after it
    s.restart();
    let ch = channel(&s).await;
    let mut w = Stream::open(ch.clone()).await;
    w.create(b"h/", b"h0", 2).await;
    let created = w.next().await;
    assert!(created.created && created.header.unwrap().revision == 101);
    let got = w.events(100).await;
    for (i, (_, e)) in got.iter().enumerate() {
        let kv = e.kv.as_ref().unwrap();
        assert_eq!((kv.mod_revision, kv.value.to_vec()), (i as i64 + 2, format!("{i}").into_bytes()));
    }
    KvClient::new(ch).put(PutRequest { key: b"h/x".to_vec(), value: b"live".to_vec(), ..Default::default() }).await.unwrap();
    let live = w.events(1).await;
    assert_eq!(live[0].1.kv.as_ref().unwrap().mod_revision, 102);
}

/// A stream its client reads late holds a backlog (the client's HTTP/2 window is kept small,
/// so the backlog stays with the server): while it does, each watcher's events of a release
/// go out in one response, at the last event's revision, whole revisions only, and no larger
/// than the cap plus one revision. Every event still arrives once and in order.
#[tokio::test]
async fn a_backlogged_stream_gets_each_release_coalesced_and_every_event_once() {
    const WRITERS: usize = 8;
    const TXNS: usize = 128;
    const VALUE_BYTES: usize = 1024;
    const CAP_BYTES: usize = 64 << 10;
    let s = Server::start(&[]);
    let mut w = Stream::open(small_window_endpoint(&s).connect().await.expect("connect")).await;
    w.create(b"c/", b"c0", 0).await;
    assert!(w.next().await.created);
    let ch = channel(&s).await;
    let revs = write_concurrently(&ch, WRITERS, TXNS, |mut kv, id, i| async move {
        let keys = [format!("c/{id}/{i}/a"), format!("c/{id}/{i}/b")];
        let ops = keys.iter().map(|k| RequestOp { request: Some(Op::RequestPut(PutRequest { key: k.clone().into(), value: vec![b'v'; VALUE_BYTES], ..Default::default() })) }).collect();
        kv.txn(TxnRequest { compare: vec![], success: ops, failure: vec![] }).await.unwrap().into_inner().header.unwrap().revision
    })
    .await;
    let (mut got, mut coalesced) = (Vec::new(), 0);
    while got.len() < revs.len() * 2 {
        let r = w.next().await;
        assert!(!r.canceled && !r.events.is_empty(), "{r:?}");
        let resp_revs: Vec<i64> = r.events.iter().map(|e| e.kv.as_ref().unwrap().mod_revision).collect();
        assert_eq!(r.header.unwrap().revision, *resp_revs.last().unwrap(), "a response is at its last event's revision");
        let first_rev_bytes: usize = r.events.iter().filter(|e| e.kv.as_ref().unwrap().mod_revision == resp_revs[0]).map(prost::Message::encoded_len).sum();
        let last_rev_bytes: usize = r.events.iter().filter(|e| e.kv.as_ref().unwrap().mod_revision == *resp_revs.last().unwrap()).map(prost::Message::encoded_len).sum();
        let bytes: usize = r.events.iter().map(prost::Message::encoded_len).sum();
        assert!(bytes < CAP_BYTES + first_rev_bytes.max(last_rev_bytes) + 64, "a coalesced response of {bytes} bytes");
        coalesced += usize::from(resp_revs[0] != *resp_revs.last().unwrap());
        got.extend(resp_revs);
    }
    let want: Vec<i64> = revs.iter().flat_map(|&r| [r, r]).collect();
    assert_eq!(got, want, "every txn's two events, once, in revision order");
    assert!(coalesced > 0, "no response carried several revisions while the stream was backlogged");
    eprintln!("{coalesced} coalesced responses for {} txns", revs.len());
}

/// Streams whose clients read slowly (small HTTP/2 windows, pauses) pass the stream budget
/// again and again while writes go on: their watchers are moved aside and caught up from
/// MVCC, several streams at once from shared reads, each from where it stands. Every watcher
/// still gets every event once and in order.
#[tokio::test]
async fn slow_readers_moved_aside_and_caught_up_get_every_event_once() {
    const STREAMS: usize = 6;
    const PER_STREAM: usize = 2;
    const WRITERS: usize = 4;
    const PUTS_EACH: usize = 500;
    const VALUE_BYTES: usize = 2 << 10;
    let s = Server::start(&[]);
    let ep = small_window_endpoint(&s);
    let mut streams = Vec::new();
    for _ in 0..STREAMS {
        let mut st = Stream::open(ep.connect().await.expect("connect")).await;
        for _ in 0..PER_STREAM {
            st.create(b"s/", b"s0", 0).await;
        }
        for _ in 0..PER_STREAM {
            assert!(st.next().await.created);
        }
        streams.push(st);
    }
    let want_events = WRITERS * PUTS_EACH;
    // Each reader pauses after every few responses, each at its own pace.
    let readers: Vec<_> = streams
        .into_iter()
        .enumerate()
        .map(|(n, mut st)| {
            tokio::spawn(async move {
                let mut seen: HashMap<i64, Vec<i64>> = HashMap::new();
                while seen.len() < PER_STREAM || seen.values().any(|v| v.len() < want_events) {
                    let r = st.next().await;
                    assert!(!r.canceled, "{r:?}");
                    seen.entry(r.watch_id).or_default().extend(r.events.iter().map(|e| e.kv.as_ref().unwrap().mod_revision));
                    // About 8 KiB/ms for the fastest reader, a sixth of that for the slowest.
                    tokio::time::sleep(Duration::from_micros(r.events.len() as u64 * 250 * (1 + n as u64))).await;
                }
                seen
            })
        })
        .collect();
    let ch = channel(&s).await;
    let revs = write_concurrently(&ch, WRITERS, PUTS_EACH, |mut kv, id, i| async move {
        let put = PutRequest { key: format!("s/{id}/{i}").into(), value: vec![b'v'; VALUE_BYTES], ..Default::default() };
        kv.put(put).await.unwrap().into_inner().header.unwrap().revision
    })
    .await;
    for r in readers {
        let seen = tokio::time::timeout(Duration::from_secs(120), r).await.expect("readers finish within 120 s").unwrap();
        for (id, got) in seen {
            assert_eq!(got, revs, "watcher {id}: every event once, in revision order");
        }
    }
}

#[tokio::test]
async fn a_watch_below_the_compaction_is_cancelled_with_the_compact_revision() {
    let s = Server::start(&[]);
    let ch = channel(&s).await;
    let mut kv = KvClient::new(ch.clone());
    for i in 0..10 {
        kv.put(PutRequest { key: b"c".to_vec(), value: format!("{i}").into(), ..Default::default() }).await.unwrap();
    }
    kv.compact(CompactionRequest { revision: 6, physical: true }).await.unwrap();
    let mut w = Stream::open(ch).await;
    w.create(b"c", b"", 3).await;
    assert!(w.next().await.created);
    let cancel = w.next().await;
    assert!(cancel.canceled && cancel.compact_revision == 6 && cancel.header.as_ref().unwrap().revision == 0, "{cancel:?}");
    // From the compaction revision itself the history is still there.
    w.create(b"c", b"", 6).await;
    assert!(w.next().await.created);
    let got = w.events(6).await;
    assert_eq!(got[0].1.kv.as_ref().unwrap().mod_revision, 6);
}

#[tokio::test]
async fn a_synced_watcher_gets_every_event_even_when_compaction_follows_at_once() {
    let s = Server::start(&[]);
    let ch = channel(&s).await;
    let mut w = Stream::open(ch.clone()).await;
    w.create(b"z", b"", 0).await;
    assert!(w.next().await.created);
    let mut kv = KvClient::new(ch);
    for round in 0..20i64 {
        // Puts and a compaction at their last revision, pipelined into the same raft turns (the
        // compaction may arrive first and be refused as a future revision; then it is re-sent).
        let puts: Vec<_> = (0..5)
            .map(|i| {
                let mut kv = kv.clone();
                tokio::spawn(async move { kv.put(PutRequest { key: b"z".to_vec(), value: format!("{round}-{i}").into(), ..Default::default() }).await.unwrap() })
            })
            .collect();
        let last = 1 + 5 * (round + 1);
        tokio::time::sleep(Duration::from_micros(300 * (round as u64 % 5))).await;
        let early = kv.compact(CompactionRequest { revision: last, physical: false }).await;
        for p in puts {
            p.await.unwrap();
        }
        if early.is_err() {
            kv.compact(CompactionRequest { revision: last, physical: false }).await.unwrap();
        }
    }
    // etcd never cancels a watcher that follows the live events because of a compaction.
    let got = w.events(100).await;
    let revs: Vec<i64> = got.iter().map(|(_, e)| e.kv.as_ref().unwrap().mod_revision).collect();
    assert_eq!(revs, (2..102).collect::<Vec<_>>());
}

/// RSS of a process in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::test]
async fn ten_thousand_watchers_keep_their_pace_beside_a_stalled_consumer_in_bounded_memory() {
    const STREAMS: usize = 10;
    const PER_STREAM: usize = 1000;
    const PUTS: usize = 10;
    const BIG_PUTS: usize = 600;
    const BIG_BYTES: usize = 128 << 10;
    let s = Server::start(&[]);
    let ch = channel(&s).await;
    let mut kv = KvClient::new(ch.clone());
    // The stalled consumer: watches every big write and never reads.
    let stalled = Stream::open(channel(&s).await).await;
    stalled.create(b"big", b"", 0).await;
    let mut streams = Vec::new();
    for _ in 0..STREAMS {
        let st = Stream::open(channel(&s).await).await;
        for _ in 0..PER_STREAM {
            st.create(b"p/", b"p0", 0).await;
        }
        streams.push(st);
    }
    for st in &mut streams {
        for _ in 0..PER_STREAM {
            assert!(st.next().await.created);
        }
    }
    let rss_before = rss_kib(s.pid());
    // 75 MiB of events the stalled consumer never takes; compaction keeps the store small.
    let value = vec![7u8; BIG_BYTES];
    for i in 0..BIG_PUTS {
        let r = kv.put(PutRequest { key: b"big".to_vec(), value: value.clone(), ..Default::default() }).await.unwrap().into_inner();
        if i % 50 == 49 {
            kv.compact(CompactionRequest { revision: r.header.unwrap().revision, physical: true }).await.unwrap();
        }
    }
    // Meanwhile the other watchers get each of their events promptly.
    let mut worst = Duration::ZERO;
    for i in 0..PUTS {
        let sent = Instant::now();
        kv.put(PutRequest { key: format!("p/{i}").into(), value: b"x".to_vec(), ..Default::default() }).await.unwrap();
        for st in &mut streams {
            let mut per_watch: HashMap<i64, usize> = HashMap::new();
            while per_watch.len() < PER_STREAM {
                let r = st.next().await;
                assert_eq!(r.events.len(), 1, "{r:?}");
                *per_watch.entry(r.watch_id).or_default() += 1;
            }
            assert!(per_watch.values().all(|&n| n == 1), "an event twice");
        }
        worst = worst.max(sent.elapsed());
    }
    let grown_mib = rss_kib(s.pid()).saturating_sub(rss_before) / 1024;
    eprintln!("10000 watchers: slowest event reached all of them in {worst:?}; RSS grew {grown_mib} MiB while a consumer stalled");
    assert!(worst < Duration::from_secs(5), "an event took {worst:?} to reach 10,000 watchers");
    assert!(grown_mib < 48, "RSS grew {grown_mib} MiB while a consumer stalled on 75 MiB of events");
    drop(stalled);
}

#[test]
fn etcdctl_watch_forms_behave_as_with_etcd() {
    let s = Server::start(&[]);
    let ctl = common::etcdctl_path();
    let endpoints = format!("--endpoints={}", s.endpoint);
    // `watch key -- command`: the command runs per event with etcd's variables.
    let exec = std::process::Command::new("timeout")
        .args(["4", &ctl, &endpoints, "watch", "e", "--", "sh", "-c", "echo \"$ETCD_WATCH_EVENT_TYPE $ETCD_WATCH_KEY $ETCD_WATCH_VALUE $ETCD_WATCH_REVISION\""])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Interactive mode: commands on stdin.
    let mut interactive = std::process::Command::new("timeout")
        .args(["4", &ctl, &endpoints, "watch", "-i"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = interactive.stdin.take().unwrap();
        writeln!(stdin, "watch e --prev-kv").unwrap();
        std::thread::sleep(Duration::from_millis(1500));
        s.ctl(&["put", "e", "1"]);
        s.ctl(&["put", "e", "2"]);
        // stdin stays open until the watch is done.
        std::thread::sleep(Duration::from_millis(1000));
        drop(stdin);
    }
    let exec = String::from_utf8(exec.wait_with_output().unwrap().stdout).unwrap();
    // etcdctl prints each event, then runs the command (which prints etcd's quoted values).
    assert_eq!(exec, "PUT\ne\n1\n\"PUT\" \"e\" \"1\" 2\nPUT\ne\n2\n\"PUT\" \"e\" \"2\" 3\n");
    let interactive = String::from_utf8(interactive.wait_with_output().unwrap().stdout).unwrap();
    assert_eq!(interactive, "PUT\ne\n1\nPUT\ne\n1\ne\n2\n");
    // --rev replays history.
    let replay = std::process::Command::new("timeout").args(["2", &ctl, &endpoints, "watch", "e", "--rev", "2"]).output().unwrap();
    assert_eq!(String::from_utf8(replay.stdout).unwrap(), "PUT\ne\n1\nPUT\ne\n2\n");
}

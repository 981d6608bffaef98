//! The JSON gateway's bounds on a real ballast: `--max-concurrent-streams` holds further
//! streams until one closes, and a watch stream whose client does not read holds up neither
//! writes nor other watchers, and later gets every event. (Answers are compared with etcd's in
//! tests/gateway_differential.rs.)

mod common;
#[path = "common/http.rs"]
mod http;

use std::time::Duration;

use common::Server;

const WAIT: Duration = Duration::from_secs(10);

fn b64(s: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

#[test]
fn streams_past_max_concurrent_streams_wait_for_a_turn() {
    let s = Server::start(&["--max-concurrent-streams", "2"]);
    let watch = format!(r#"{{"create_request":{{"key":"{}"}}}}"#, b64(b"k"));
    let mut open: Vec<http::Stream> = (0..2).map(|_| http::Stream::open(&s.endpoint, "/v3/watch", &watch)).collect();
    for w in &mut open {
        assert!(w.line(WAIT).is_some_and(|l| l.contains("\"created\":true")));
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let endpoint = s.endpoint.clone();
    let third = std::thread::spawn(move || {
        let mut w = http::Stream::open(&endpoint, "/v3/watch", &watch);
        let _ = tx.send(w.line(WAIT));
    });
    // Unary calls are not streams: served meanwhile.
    let put = http::post(&s.endpoint, "/v3/kv/put", &format!(r#"{{"key":"{}","value":"{}"}}"#, b64(b"x"), b64(b"1")));
    assert_eq!(put.status, 200, "{put:?}");
    assert!(rx.recv_timeout(Duration::from_secs(1)).is_err(), "a third stream opened past the bound");
    drop(open.pop());
    let line = rx.recv_timeout(WAIT).expect("the third stream opens once one closes");
    assert!(line.is_some_and(|l| l.contains("\"created\":true")));
    third.join().unwrap();
}

#[test]
fn a_watch_reader_that_stalls_holds_up_nobody_and_misses_nothing() {
    let s = Server::start(&[]);
    let prefix = format!(r#"{{"create_request":{{"key":"{}","range_end":"{}"}}}}"#, b64(b"s/"), b64(b"s0"));
    let mut stalled = http::Stream::open(&s.endpoint, "/v3/watch", &prefix);
    let mut reader = http::Stream::open(&s.endpoint, "/v3/watch", &prefix);
    assert!(stalled.line(WAIT).is_some_and(|l| l.contains("\"created\":true")));
    assert!(reader.line(WAIT).is_some_and(|l| l.contains("\"created\":true")));
    // 300 puts of 64 KiB (19 MiB of events, past the socket buffers and the stream's 4 MiB
    // budget) while `stalled` reads nothing: each put is answered, `reader` gets each event.
    const PUTS: usize = 300;
    let value = b64(&vec![b'v'; 64 * 1024]);
    let mut seen = 0;
    for i in 0..PUTS {
        let key = b64(format!("s/{i:04}").as_bytes());
        let put = http::post(&s.endpoint, "/v3/kv/put", &format!(r#"{{"key":"{key}","value":"{value}"}}"#));
        assert_eq!(put.status, 200, "put {i}: {put:?}");
        while seen <= i {
            let line = reader.line(WAIT).unwrap_or_else(|| panic!("event {seen} did not come"));
            assert!(line.contains(&format!("\"key\":\"{}\"", b64(format!("s/{seen:04}").as_bytes()))), "event {seen}: {}", &line[..200.min(line.len())]);
            seen += 1;
        }
    }
    // The stalled reader now reads: every event, in order, none twice (a watcher caught up
    // from the store may get several events in one response, as etcd's).
    let mut next = 0;
    while next < PUTS {
        let line = stalled.line(WAIT).unwrap_or_else(|| panic!("stalled reader: event {next} did not come"));
        for part in line.split("\"kv\":{\"key\":\"").skip(1) {
            let key = part.split('"').next().unwrap();
            assert_eq!(key, b64(format!("s/{next:04}").as_bytes()), "stalled reader: event {next}");
            next += 1;
        }
    }
}

#[test]
fn request_bodies_past_the_limit_are_refused_unread() {
    let s = Server::start(&["--max-request-bytes", "1024"]);
    // The limit etcd's gRPC server applies: --max-request-bytes plus 512 KiB.
    let value = b64(&vec![b'v'; 600 * 1024]);
    let put = http::post(&s.endpoint, "/v3/kv/put", &format!(r#"{{"key":"{}","value":"{value}"}}"#, b64(b"k")));
    assert_eq!(put.status, 429, "{put:?}");
    assert!(put.body.contains("grpc: received message larger than max (") && put.body.contains(" vs. 525312)"), "{put:?}");
    let small = http::post(&s.endpoint, "/v3/kv/put", &format!(r#"{{"key":"{}","value":"{}"}}"#, b64(b"k"), b64(&[b'v'; 2000])));
    assert_eq!(small.status, 400, "{small:?}");
    assert!(small.body.contains("etcdserver: request is too large"), "{small:?}");
}

#![allow(dead_code)]
//! A raw HTTP/1.1 client for the JSON gateway tests: one connection per request, the answer's
//! status, headers and body as they came (chunked bodies joined), streams read line by line.
//! Every read has a timeout.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

const READ_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub status: u16,
    /// Header names lowercased, in the order sent; `date` dropped.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

fn send(endpoint: &str, method: &str, path: &str, body: &str, headers: &[(&str, &str)]) -> TcpStream {
    let mut conn = TcpStream::connect(endpoint).expect("connect");
    conn.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {endpoint}\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    conn.write_all(req.as_bytes()).unwrap();
    conn
}

/// One request; the whole answer.
pub fn request(endpoint: &str, method: &str, path: &str, body: &str, headers: &[(&str, &str)]) -> Answer {
    let mut conn = send(endpoint, method, path, body, headers);
    let mut raw = Vec::new();
    let _ = conn.read_to_end(&mut raw);
    let ((status, headers), rest) = parse_head(&raw).unwrap_or_else(|| panic!("no HTTP head in {:?}", String::from_utf8_lossy(&raw)));
    let chunked = headers.iter().any(|(n, v)| n == "transfer-encoding" && v == "chunked");
    let body = if chunked { dechunk(rest).0 } else { rest.to_vec() };
    Answer { status, headers, body: String::from_utf8_lossy(&body).into_owned() }
}

pub fn post(endpoint: &str, path: &str, body: &str) -> Answer {
    request(endpoint, "POST", path, body, &[])
}

/// An answer's head: status and headers.
type Head = (u16, Vec<(String, String)>);

/// The head of `raw` and the bytes after it.
fn parse_head(raw: &[u8]) -> Option<(Head, &[u8])> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .filter(|(n, _)| n != "date")
        .collect();
    Some(((status, headers), &raw[end + 4..]))
}

/// A chunked body's data, and whether its last chunk came.
fn dechunk(mut raw: &[u8]) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    loop {
        let Some(eol) = raw.windows(2).position(|w| w == b"\r\n") else { return (out, false) };
        let Ok(size) = usize::from_str_radix(String::from_utf8_lossy(&raw[..eol]).trim(), 16) else { return (out, false) };
        if size == 0 {
            return (out, true);
        }
        if raw.len() < eol + 2 + size {
            return (out, false);
        }
        out.extend_from_slice(&raw[eol + 2..eol + 2 + size]);
        raw = &raw[(eol + 4 + size).min(raw.len())..];
    }
}

/// A streaming answer read as it comes.
pub struct Stream {
    conn: TcpStream,
    raw: Vec<u8>,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// Body bytes already handed out as lines.
    taken: usize,
}

impl Stream {
    /// Sends the request and reads the answer's head (waits at most `READ_TIMEOUT`).
    pub fn open(endpoint: &str, path: &str, body: &str) -> Stream {
        Stream::open_with(endpoint, path, body, &[])
    }

    /// `open` with extra request headers.
    pub fn open_with(endpoint: &str, path: &str, body: &str, headers: &[(&str, &str)]) -> Stream {
        let mut conn = send(endpoint, "POST", path, body, headers);
        let mut raw = Vec::new();
        let mut buf = [0u8; 65536];
        loop {
            if let Some(((status, headers), rest)) = parse_head(&raw) {
                let rest = rest.to_vec();
                return Stream { conn, raw: rest, status, headers, taken: 0 };
            }
            let n = conn.read(&mut buf).expect("read the answer's head");
            assert!(n > 0, "connection closed before the head: {:?}", String::from_utf8_lossy(&raw));
            raw.extend_from_slice(&buf[..n]);
        }
    }

    /// The next newline-ended line of the body, waiting at most `timeout`; None when none came.
    pub fn line(&mut self, timeout: Duration) -> Option<String> {
        let deadline = std::time::Instant::now() + timeout;
        let mut buf = [0u8; 65536];
        loop {
            let (body, _) = dechunk(&self.raw);
            if let Some(nl) = body[self.taken..].iter().position(|&b| b == b'\n') {
                let line = String::from_utf8_lossy(&body[self.taken..self.taken + nl]).into_owned();
                self.taken += nl + 1;
                return Some(line);
            }
            let left = deadline.checked_duration_since(std::time::Instant::now())?;
            self.conn.set_read_timeout(Some(left.max(Duration::from_millis(1)))).unwrap();
            match self.conn.read(&mut buf) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.raw.extend_from_slice(&buf[..n]),
            }
        }
    }

    /// What the body held past the lines taken (a last chunk without a newline), after
    /// waiting up to `timeout` for the answer to end.
    pub fn rest(&mut self, timeout: Duration) -> String {
        self.finish(timeout).0
    }

    /// `rest`, and whether the body ended as a chunked body must (its last, empty chunk).
    pub fn finish(&mut self, timeout: Duration) -> (String, bool) {
        let deadline = std::time::Instant::now() + timeout;
        let mut buf = [0u8; 65536];
        while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
            if dechunk(&self.raw).1 {
                break;
            }
            self.conn.set_read_timeout(Some(left.max(Duration::from_millis(1)))).unwrap();
            match self.conn.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => self.raw.extend_from_slice(&buf[..n]),
            }
        }
        let (body, ended) = dechunk(&self.raw);
        (String::from_utf8_lossy(&body[self.taken..]).into_owned(), ended)
    }
}

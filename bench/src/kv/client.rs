//! One client of a KV workload: its connection, its requests (put, range, compare-and-swap) and
//! what it measured.
use std::sync::Arc;
use std::time::Instant;

use ballast_bench::proto::etcdserverpb::{
    compare, request_op, response_op, AuthenticateResponse, Compare, PutRequest, PutResponse,
    RangeRequest, RangeResponse, RequestOp, TxnRequest, TxnResponse,
};

use super::lean::{Conn, Method};
use super::workload::{key, keyed_value, Op, Rng, Workload};
use crate::secure::{Link, Secure};

/// A client's latencies (µs, of its successful ops) and errors.
#[derive(Default)]
pub struct ClientOut {
    pub lat_us: Vec<u32>,
    pub errors: u64,
    pub first_error: Option<String>,
}

impl ClientOut {
    /// Records an op's outcome; its latency counts from `since`.
    pub fn record(&mut self, since: Instant, r: Result<(), String>) {
        match r {
            Ok(()) => self
                .lat_us
                .push(since.elapsed().as_micros().min(u32::MAX as u128) as u32),
            Err(e) => {
                self.errors += 1;
                self.first_error.get_or_insert(e);
            }
        }
    }
}

/// A connection of the load generator (`lean.rs`); on a secure target TLS with the client
/// certificate, logged in once as the bench user.
pub async fn open(link: &Link) -> Result<Conn, String> {
    let Some(s) = &link.secure else {
        return Conn::connect(&link.url, None).await;
    };
    let conn = Conn::connect(&link.url, Some(s.lean_tls())).await?;
    let login: AuthenticateResponse = conn
        .unary(Method::Authenticate, &Secure::login_request())
        .await
        .map_err(|e| format!("authenticate: {e}"))?;
    conn.with_token(&login.token)
}

/// A client's connection and state: its randomness, and for CAS its key and the last revision
/// it wrote there.
pub struct Client {
    w: Workload,
    kv: Conn,
    rng: Rng,
    value: Arc<Vec<u8>>,
    cas_key: Vec<u8>,
    cas_rev: i64,
}

impl Client {
    pub fn new(
        w: Workload,
        kv: Conn,
        client: usize,
        value: Arc<Vec<u8>>,
    ) -> Client {
        Client {
            cas_key: key(w.prefix, client as u64),
            w,
            kv,
            rng: Rng(0x9E37_79B9_7F4A_7C15 ^ ((client as u64 + 1) * 0xD1B5_4A32_D192_ED03)),
            value,
            cas_rev: 0,
        }
    }

    /// Op number `i` of the workload.
    pub async fn one(&mut self, i: u64) -> Result<(), String> {
        match self.w.op {
            Op::PutRandom | Op::PutSeq => self.put(i).await,
            Op::Range { serializable } => self.range(serializable).await,
            Op::Cas => self.cas().await,
        }
    }

    async fn put(&mut self, i: u64) -> Result<(), String> {
        let k = if let Op::PutSeq = self.w.op {
            i
        } else {
            self.rng.next() % self.w.keyspace
        };
        let req = PutRequest {
            key: key(self.w.prefix, k),
            value: if self.w.keyed_values {
                keyed_value(k, self.w.value_len)
            } else {
                self.value.to_vec()
            },
            ..Default::default()
        };
        self.kv.unary::<_, PutResponse>(Method::Put, &req).await.map(|_| ())
    }

    async fn range(&mut self, serializable: bool) -> Result<(), String> {
        let req = RangeRequest {
            key: key(self.w.prefix, self.rng.next() % self.w.keyspace),
            serializable,
            ..Default::default()
        };
        self.kv.unary::<_, RangeResponse>(Method::Range, &req).await.map(|_| ())
    }

    /// mod_revision(own key) == last written ? put : range (which tells the revision seen).
    fn cas_request(&self) -> TxnRequest {
        TxnRequest {
            compare: vec![Compare {
                result: compare::CompareResult::Equal as i32,
                target: compare::CompareTarget::Mod as i32,
                key: self.cas_key.clone(),
                target_union: Some(compare::TargetUnion::ModRevision(self.cas_rev)),
                range_end: Vec::new(),
            }],
            success: vec![RequestOp {
                request: Some(request_op::Request::RequestPut(PutRequest {
                    key: self.cas_key.clone(),
                    value: self.value.to_vec(),
                    ..Default::default()
                })),
            }],
            failure: vec![RequestOp {
                request: Some(request_op::Request::RequestRange(RangeRequest {
                    key: self.cas_key.clone(),
                    ..Default::default()
                })),
            }],
        }
    }

    async fn cas(&mut self) -> Result<(), String> {
        let resp: TxnResponse = self.kv.unary(Method::Txn, &self.cas_request()).await?;
        if resp.succeeded {
            self.cas_rev = resp.header.map_or(0, |h| h.revision);
            return Ok(());
        }
        let seen = seen_revision(resp);
        let msg = format!(
            "CAS compare failed: expected mod_revision {}, server has {seen:?}",
            self.cas_rev
        );
        self.cas_rev = seen.unwrap_or(0);
        Err(msg)
    }
}

/// The mod_revision a failed CAS's range saw (0: no key), if it answered one.
fn seen_revision(resp: TxnResponse) -> Option<i64> {
    resp.responses.into_iter().find_map(|r| match r.response {
        Some(response_op::Response::ResponseRange(rr)) => {
            Some(rr.kvs.first().map_or(0, |kv| kv.mod_revision))
        }
        _ => None,
    })
}

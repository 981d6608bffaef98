//! Speed-of-light server: etcd's KV service (Put/Range/Txn/DeleteRange) answered from an
//! in-memory hash map, with no raft, no WAL, no fsync, no MVCC history, on a 2-thread tokio
//! runtime. It bounds what any etcd-compatible server can reach through the same gRPC stack.
//!
//! Accepts etcd-style flags; only `--listen-client-urls http://HOST:PORT` is used (the first
//! URL), everything else is ignored.
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;

use ballast_bench::proto::etcdserverpb::kv_server::{Kv, KvServer};
use ballast_bench::proto::etcdserverpb::{
    compare, request_op, response_op, CompactionRequest, CompactionResponse, Compare,
    DeleteRangeRequest, DeleteRangeResponse, PutRequest, PutResponse, RangeRequest, RangeResponse,
    RequestOp, ResponseHeader, ResponseOp, TxnRequest, TxnResponse,
};
use ballast_bench::proto::mvccpb::KeyValue;
use tonic::{Request, Response, Status};

#[derive(Default)]
struct State {
    rev: i64,
    map: HashMap<Vec<u8>, KeyValue>,
}

#[derive(Default)]
struct Sol {
    state: Mutex<State>,
}

fn header(rev: i64) -> Option<ResponseHeader> {
    Some(ResponseHeader {
        cluster_id: 1,
        member_id: 1,
        revision: rev,
        raft_term: 1,
    })
}

impl State {
    fn put(&mut self, p: PutRequest, rev: i64) -> PutResponse {
        let prev = self.map.get(&p.key).cloned();
        let kv = KeyValue {
            create_revision: prev.as_ref().map_or(rev, |k| k.create_revision),
            mod_revision: rev,
            version: prev.as_ref().map_or(1, |k| k.version + 1),
            lease: p.lease,
            value: p.value,
            key: p.key.clone(),
        };
        self.map.insert(p.key, kv);
        PutResponse {
            header: header(rev),
            prev_kv: if p.prev_kv { prev } else { None },
        }
    }

    /// Single-key lookups only (range_end empty); a range_end returns a full scan match.
    fn range(&self, r: &RangeRequest) -> RangeResponse {
        let kvs: Vec<KeyValue> = if r.range_end.is_empty() {
            self.map.get(&r.key).cloned().into_iter().collect()
        } else {
            let all = r.range_end == b"\0";
            let mut v: Vec<KeyValue> = self
                .map
                .values()
                .filter(|kv| kv.key >= r.key && (all || kv.key < r.range_end))
                .cloned()
                .collect();
            v.sort_by(|a, b| a.key.cmp(&b.key));
            if r.limit > 0 {
                v.truncate(r.limit as usize);
            }
            v
        };
        let count = kvs.len() as i64;
        let kvs = if r.count_only { Vec::new() } else { kvs };
        RangeResponse {
            header: header(self.rev),
            kvs,
            more: false,
            count,
        }
    }

    fn delete(&mut self, d: &DeleteRangeRequest, rev: i64) -> DeleteRangeResponse {
        let prev = self.map.remove(&d.key);
        let deleted = prev.is_some() as i64;
        DeleteRangeResponse {
            header: header(rev),
            deleted,
            prev_kvs: if d.prev_kv {
                prev.into_iter().collect()
            } else {
                Vec::new()
            },
        }
    }

    fn compare(&self, c: &Compare) -> bool {
        use compare::{CompareResult as R, TargetUnion as T};
        let kv = self.map.get(&c.key);
        let ord = match &c.target_union {
            Some(T::Version(v)) => kv.map_or(0, |k| k.version).cmp(v),
            Some(T::CreateRevision(v)) => kv.map_or(0, |k| k.create_revision).cmp(v),
            Some(T::ModRevision(v)) => kv.map_or(0, |k| k.mod_revision).cmp(v),
            Some(T::Lease(v)) => kv.map_or(0, |k| k.lease).cmp(v),
            Some(T::Value(v)) => match kv {
                Some(k) => k.value.as_slice().cmp(v.as_slice()),
                None => return false,
            },
            None => return false,
        };
        match R::try_from(c.result).unwrap_or(R::Equal) {
            R::Equal => ord.is_eq(),
            R::Greater => ord.is_gt(),
            R::Less => ord.is_lt(),
            R::NotEqual => ord.is_ne(),
        }
    }

    fn txn(&mut self, t: TxnRequest) -> TxnResponse {
        let succeeded = t.compare.iter().all(|c| self.compare(c));
        let ops: Vec<RequestOp> = if succeeded { t.success } else { t.failure };
        let writes = ops.iter().any(|o| {
            matches!(
                o.request,
                Some(request_op::Request::RequestPut(_))
                    | Some(request_op::Request::RequestDeleteRange(_))
            )
        });
        let rev = if writes { self.rev + 1 } else { self.rev };
        let mut responses = Vec::with_capacity(ops.len());
        for op in ops {
            let resp = match op.request {
                Some(request_op::Request::RequestPut(p)) => {
                    response_op::Response::ResponsePut(self.put(p, rev))
                }
                Some(request_op::Request::RequestRange(r)) => {
                    response_op::Response::ResponseRange(self.range(&r))
                }
                Some(request_op::Request::RequestDeleteRange(d)) => {
                    response_op::Response::ResponseDeleteRange(self.delete(&d, rev))
                }
                Some(request_op::Request::RequestTxn(inner)) => {
                    response_op::Response::ResponseTxn(self.txn(inner))
                }
                None => continue,
            };
            responses.push(ResponseOp {
                response: Some(resp),
            });
        }
        self.rev = rev;
        TxnResponse {
            header: header(rev),
            succeeded,
            responses,
        }
    }
}

#[tonic::async_trait]
impl Kv for Sol {
    async fn range(&self, req: Request<RangeRequest>) -> Result<Response<RangeResponse>, Status> {
        let r = req.into_inner();
        Ok(Response::new(self.state.lock().unwrap().range(&r)))
    }

    async fn put(&self, req: Request<PutRequest>) -> Result<Response<PutResponse>, Status> {
        let p = req.into_inner();
        let mut s = self.state.lock().unwrap();
        s.rev += 1;
        let rev = s.rev;
        Ok(Response::new(s.put(p, rev)))
    }

    async fn delete_range(
        &self,
        req: Request<DeleteRangeRequest>,
    ) -> Result<Response<DeleteRangeResponse>, Status> {
        let d = req.into_inner();
        let mut s = self.state.lock().unwrap();
        s.rev += 1;
        let rev = s.rev;
        Ok(Response::new(s.delete(&d, rev)))
    }

    async fn txn(&self, req: Request<TxnRequest>) -> Result<Response<TxnResponse>, Status> {
        let t = req.into_inner();
        Ok(Response::new(self.state.lock().unwrap().txn(t)))
    }

    async fn compact(
        &self,
        _req: Request<CompactionRequest>,
    ) -> Result<Response<CompactionResponse>, Status> {
        let rev = self.state.lock().unwrap().rev;
        Ok(Response::new(CompactionResponse {
            header: header(rev),
        }))
    }
}

fn listen_addr() -> Result<SocketAddr, String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut url = None;
    for (i, a) in args.iter().enumerate() {
        if let Some(v) = a.strip_prefix("--listen-client-urls=") {
            url = Some(v.to_string());
        } else if a == "--listen-client-urls" {
            url = args.get(i + 1).cloned();
        }
    }
    let url = url.unwrap_or_else(|| "http://127.0.0.1:2379".to_string());
    let first = url.split(',').next().unwrap_or_default();
    let hostport = first.trim_start_matches("http://").trim_end_matches('/');
    hostport
        .parse()
        .map_err(|e| format!("bad --listen-client-urls {url:?}: {e}"))
}

fn main() {
    let addr = match listen_addr() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("sol: {e}");
            std::process::exit(2);
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async move {
        eprintln!("sol: serving etcd KV on {addr}");
        if let Err(e) = tonic::transport::Server::builder()
            .add_service(KvServer::new(Sol::default()))
            .serve(addr)
            .await
        {
            eprintln!("sol: {e}");
            std::process::exit(1);
        }
    });
}

//! etcd's require-leader calls (clientv3's `WithRequireLeader`, which kube-apiserver puts on
//! its watches): a gRPC call with the metadata `hasleader: true` is refused with Unavailable
//! "etcdserver: no leader" while this member knows no leader, and a stream of such a call
//! (Watch, LeaseKeepAlive, Observe, Snapshot) is ended with that status once the member has
//! been without a leader for `NO_LEADER_ELECTIONS` election timeouts in a row, so that the
//! client moves to a member that has one (etcd: its gRPC interceptors and `monitorLeader`).
//! A stream without the metadata is left alone.
//!
//! The monitor counts the election timeouts without a leader and, from the third on, bumps a
//! generation; each such stream's answer body ends with the status when the generation moves
//! (dropping the stream inside, which cancels its watchers as a client leaving would).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http_body::{Body, Frame};

use crate::status::ServerStatus;

/// etcd's `maxNoLeaderCnt`.
const NO_LEADER_ELECTIONS: u32 = 3;
const HEADER: &str = "hasleader";

/// Whether a call asks for a leader (etcd compares the first value with "true").
pub fn required<B>(req: &http::Request<B>) -> bool {
    req.headers().get(HEADER).is_some_and(|v| v.as_bytes() == b"true")
}

/// etcd's refusal: Unavailable "etcdserver: no leader".
pub fn no_leader() -> tonic::Status {
    tonic::Status::from(crate::error::Error::NoLeader)
}

/// The streams' side: a receiver of the monitor's generation.
#[derive(Clone)]
pub struct LeaderLoss(tokio::sync::watch::Receiver<u64>);

/// The monitor's side.
pub struct Monitor(tokio::sync::watch::Sender<u64>);

pub fn channel() -> (Monitor, LeaderLoss) {
    let (tx, rx) = tokio::sync::watch::channel(0);
    (Monitor(tx), LeaderLoss(rx))
}

impl Monitor {
    /// Checks once an election timeout whether the member knows a leader, as etcd does; runs
    /// until the server stops.
    pub async fn run(self, status: Arc<ServerStatus>, election: Duration) {
        let mut without = 0;
        loop {
            tokio::time::sleep(election).await;
            without = if status.leader() == 0 { without + 1 } else { 0 };
            if without >= NO_LEADER_ELECTIONS {
                self.0.send_modify(|generation| *generation += 1);
            }
        }
    }
}

impl LeaderLoss {
    /// `answer`, ended with "no leader" when the monitor next gives up on the leader.
    pub fn bound(&self, answer: http::Response<tonic::body::Body>) -> http::Response<tonic::body::Body> {
        let mut changes = self.0.clone();
        changes.mark_unchanged();
        // Pending for good if the monitor is gone (the server stops).
        let lost: BoxFuture<'static, ()> = Box::pin(async move {
            if changes.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        });
        answer.map(|inner| tonic::body::Body::new(LeaderBound { inner: Some(inner), lost }))
    }
}

/// A stream's answer body that ends with the trailers of "no leader" when `lost` yields.
struct LeaderBound {
    /// None once ended: the stream inside is dropped.
    inner: Option<tonic::body::Body>,
    lost: BoxFuture<'static, ()>,
}

impl Body for LeaderBound {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, tonic::Status>>> {
        let me = &mut *self;
        let Some(inner) = me.inner.as_mut() else { return Poll::Ready(None) };
        if me.lost.as_mut().poll(cx).is_ready() {
            me.inner = None;
            let mut trailers = http::HeaderMap::new();
            let _ = no_leader().add_header(&mut trailers);
            return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
        }
        Pin::new(inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(Body::is_end_stream)
    }
}

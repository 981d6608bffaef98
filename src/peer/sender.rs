//! One peer's outgoing stream (etcd's rafthttp streamWriter): dial the peer's URLs in turn,
//! open `Peer.Stream`, and write everything queued as one batch per stream write. A broken
//! stream or a failed dial reports the peer unreachable to the driver and waits a backoff
//! before the next dial; messages queued meanwhile are dropped (raft sends again: a follower
//! being probed gets one append per heartbeat), so a dead peer's queue never fills with stale
//! messages. Once every URL of the peer has refused the connection (nothing listens: its
//! process is gone, not merely slow or cut off), the driver is told it is down instead. HTTP/2
//! flow control is the only thing a slow peer can hold up: this task, and, once its queue is
//! full, the messages to that peer (`outbox.rs`). A change of the peer's URLs
//! (MemberUpdate) is taken at the next dial, as etcd's picker: the stream open now stays, so a
//! member whose URLs were updated stays reachable until it restarts on the new ones.

use std::time::Duration;

use futures_util::Stream;
use raft::eraftpb::Message;

use super::stats::Outgoing;
use super::{url_at, Identity, Inbound, PeerUrls, CLUSTER_ID_MISMATCH, MAX_BATCH_BYTES, RECONNECT_BACKOFF_MAX, RECONNECT_BACKOFF_MIN};
use crate::log;
use crate::proto::ballastpeerpb::{peer_client::PeerClient, MessageBatch};

/// Messages per batch at most (etcd flushes its stream writer every half buffer).
const MAX_BATCH_MSGS: usize = super::PEER_QUEUE_CAPACITY_MSGS / 2;

pub struct Sender {
    pub me: Identity,
    pub peer: u64,
    pub urls: PeerUrls,
    pub queue: flume::Receiver<Message>,
    pub inbound: flume::Sender<Inbound>,
    /// How to dial `https://` peer URLs.
    pub tls: Option<std::sync::Arc<rustls::ClientConfig>>,
}

impl Sender {
    /// Runs until the task is aborted (the member was removed), with the peer's prober beside it.
    pub async fn run(self) {
        let prober = super::prober::Prober { peer: self.peer, urls: self.urls.clone(), tls: self.tls.clone() };
        futures_util::future::join(self.stream(), prober.run()).await;
    }

    async fn stream(self) {
        let mut failures = 0u32;
        let mut url_index = 0;
        // Dials refused in a row: once every URL of the peer has refused, it is down.
        let mut refusals = 0usize;
        let mut stats = Outgoing::new(self.me.member_id, self.peer);
        loop {
            let url = url_at(&self.urls, url_index);
            let ended = self.stream_to(&url, failures == 0, &mut stats).await;
            stats.deactivate();
            // Anything queued while the stream was down is stale.
            self.queue.drain().count();
            refusals = match &ended {
                Ended::DialFailed(e) if e.refused => refusals + 1,
                _ => 0,
            };
            let down = refusals >= self.urls.lock().expect("not poisoned").len().max(1);
            let _ = self.inbound.try_send(if down { Inbound::Down(self.peer) } else { Inbound::Unreachable(self.peer) });
            match ended {
                Ended::Broken(e) => {
                    log::warn("lost TCP streaming connection with remote peer", &[("remote-peer-id", format!("{:x}", self.peer)), ("error", e)]);
                    failures = 0;
                }
                Ended::DialFailed(e) => {
                    log::debug("failed to dial remote peer", &[("remote-peer-id", format!("{:x}", self.peer)), ("url", url.clone()), ("error", e.text)]);
                    url_index += 1;
                    failures += 1;
                }
                Ended::Refused(status) if status.message() == super::MEMBER_REMOVED => {
                    log::error("failed to read from remote peer", &[("remote-peer-id", format!("{:x}", self.peer)), ("error", super::MEMBER_REMOVED.into())]);
                    let _ = self.inbound.send_async(Inbound::Removed).await;
                    failures += 1;
                }
                Ended::Refused(status) => {
                    self.log_refused(&status);
                    failures += 1;
                }
            }
            tokio::time::sleep(backoff_after(failures)).await;
        }
    }

    /// Dials `url` and streams until the stream ends.
    async fn stream_to(&self, url: &str, log_open: bool, stats: &mut Outgoing) -> Ended {
        let channel = match super::dial::connect(url, self.tls.clone()).await {
            Ok(c) => c,
            Err(e) => return Ended::DialFailed(e),
        };
        stats.activate();
        let mut client = PeerClient::new(channel).max_encoding_message_size(usize::MAX).max_decoding_message_size(usize::MAX);
        if log_open {
            log::info("established TCP streaming connection with remote peer", &[("remote-peer-id", format!("{:x}", self.peer))]);
        }
        match client.stream(batches(self.me, self.peer, self.queue.clone(), stats.sent_bytes())).await {
            Ok(_) => Ended::Broken("the peer ended the stream".into()),
            Err(status) if status.code() == tonic::Code::FailedPrecondition => Ended::Refused(status),
            Err(status) => Ended::Broken(status.to_string()),
        }
    }

    fn log_refused(&self, status: &tonic::Status) {
        if status.message() == CLUSTER_ID_MISMATCH {
            log::warn(
                "request sent was ignored due to cluster ID mismatch",
                &[
                    ("remote-peer-id", format!("{:x}", self.peer)),
                    ("local-member-cluster-id", format!("{:x}", self.me.cluster_id)),
                    ("error", CLUSTER_ID_MISMATCH.into()),
                ],
            );
        } else {
            log::warn("request sent was ignored by remote peer", &[("remote-peer-id", format!("{:x}", self.peer)), ("error", status.message().to_string())]);
        }
    }
}

enum Ended {
    DialFailed(super::dial::DialError),
    /// The peer refused the stream (another cluster, or another member at that URL).
    Refused(tonic::Status),
    /// The stream was open and broke (the peer stopped, or the connection failed).
    Broken(String),
}

/// The stream's batches: an empty one first (so the peer checks who we are at once), then
/// everything queued at each poll, up to `MAX_BATCH_BYTES`.
fn batches(me: Identity, to: u64, queue: flume::Receiver<Message>, sent_bytes: metrics::Counter) -> impl Stream<Item = MessageBatch> + Send + 'static {
    let header = move |messages| MessageBatch { cluster_id: me.cluster_id, from: me.member_id, to, messages };
    futures_util::stream::unfold((queue, true, sent_bytes), move |(queue, first, sent_bytes)| async move {
        if first {
            return Some((header(Vec::new()), (queue, false, sent_bytes)));
        }
        let m = queue.recv_async().await.ok()?;
        let mut bytes = 0;
        let mut messages = Vec::new();
        let mut next = Some(m);
        while let Some(m) = next.take() {
            let encoded = protobuf::Message::write_to_bytes(&m).unwrap_or_else(|e| panic!("encoding a raft message: {e}"));
            bytes += encoded.len();
            messages.push(encoded);
            if bytes < MAX_BATCH_BYTES && messages.len() < MAX_BATCH_MSGS {
                next = queue.try_recv().ok();
            }
        }
        sent_bytes.increment(bytes as u64);
        Some((header(messages), (queue, false, sent_bytes)))
    })
}

/// How long a sender waits before dialling again after `failures` failed attempts in a row
/// (a stream that was open and broke: the shortest wait).
fn backoff_after(failures: u32) -> Duration {
    RECONNECT_BACKOFF_MIN.saturating_mul(1 << failures.min(16)).min(RECONNECT_BACKOFF_MAX)
}

//! The peer transport: raft messages between the members, as etcd's rafthttp streams, over
//! gRPC (`proto/peer.proto`: one client stream `Peer.Stream` per ordered pair of members,
//! carrying batches of encoded raft-rs messages with the sender's cluster and member ids).
//!
//! It runs on a thread of its own (`peer`, a current-thread tokio runtime), so neither client
//! load nor the raft driver's glommio executor holds it up:
//!
//! * `outbox` — the driver's side: one bounded queue per peer
//!   (`PEER_QUEUE_CAPACITY_MSGS`); a message to a full queue is dropped and the core is told
//!   the peer is unreachable (raft's `report_unreachable`), as etcd's rafthttp does, so a slow
//!   or dead follower never blocks the driver or the leader's write path.
//! * `sender` — one task per peer: dials its peer URLs (rotating on failure, with backoff),
//!   opens the stream and writes everything queued as one batch per stream write.
//! * `server` — the `Peer` service on `--listen-peer-urls`: checks each batch's cluster id and
//!   `to` (etcd's "cluster ID mismatch" / "to field mismatch"), decodes the messages and hands
//!   them to the driver on their own bounded queue (`INBOUND_QUEUE_CAPACITY_MSGS`, not the
//!   clients' queue: client load cannot starve raft traffic). The driver steps them into the
//!   core (`raft/driver.rs`).
//! * `prober` — round-trip times to each peer (etcd's prober); `stats` — etcd's peer network
//!   metrics (`etcd_network_*`).
//! * `dial` — dialling a peer URL, `https://` with rustls (the `--peer-*` TLS flags).
//! * `forward` — calls a follower makes on the leader (lease renewals and TimeToLive, as
//!   etcd's follower forwards them over its peer HTTP API).
//! * `initial` — where the member's cluster comes from at start: its data dir, or the
//!   bootstrap flags.
//! * `discovery` — `--discovery <url>`: etcd's v2 discovery protocol.
//! * `srv` — `--discovery-srv`: the initial cluster from DNS SRV records (`dns`: the lookups).
//! * `bootstrap` — `--initial-cluster-state existing` with no data: the running cluster's
//!   members and ids, asked from a peer (`Peer.Members`) and checked as etcd checks them.
//! * `members` — follows the live membership (`cluster::Membership`): a member added gets a
//!   sender, a member removed loses it; the listener opens once the cluster has a second member
//!   (a lone member listens on no peer port, as ballast always has).

pub mod bootstrap;
pub mod dial;
pub mod discovery;
pub mod dns;
pub mod forward;
pub mod initial;
pub mod members;
pub mod outbox;
pub mod prober;
pub mod sender;
pub mod server;
pub mod snapshot;
pub mod srv;
pub mod stats;

use std::time::Duration;

use raft::eraftpb::Message;

pub use outbox::Outbox;

/// Messages queued for one peer (etcd's streamBufSize).
pub const PEER_QUEUE_CAPACITY_MSGS: usize = 4096;
/// Messages from all peers waiting for the driver (etcd's recvBufSize).
pub const INBOUND_QUEUE_CAPACITY_MSGS: usize = 4096;
/// A batch stops growing past this many bytes of encoded messages (at least one is sent).
pub const MAX_BATCH_BYTES: usize = 4 << 20;
/// The largest batch a member accepts: one raft message is at most 1 MiB of entries
/// (`max_size_per_msg`, as etcd) but a single entry may be larger (a request up to
/// `--max-request-bytes`), so the bound is generous.
pub const MAX_BATCH_DECODE_BYTES: usize = 256 << 20;
/// etcd's rafthttp dial timeout.
pub const DIAL_TIMEOUT: Duration = Duration::from_secs(1);
/// Reconnect backoff: first wait, doubling up to the last.
pub const RECONNECT_BACKOFF_MIN: Duration = Duration::from_millis(50);
pub const RECONNECT_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// HTTP/2 keepalive pings on a peer stream, and how long an unanswered one may wait before the
/// connection counts as dead (a peer whose host went away without a reset).
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(1);
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(5);

/// etcd's rafthttp error texts (`ErrClusterIDMismatch`, the stream handler's `to` check).
pub const CLUSTER_ID_MISMATCH: &str = "cluster ID mismatch";
pub const TO_FIELD_MISMATCH: &str = "to field mismatch";
/// etcd's errMemberRemoved: a removed member's stream is refused with it (etcd's HTTP 410), and
/// the removed member stops on reading it.
pub const MEMBER_REMOVED: &str = "the member has been permanently removed from the cluster";

/// What the transport tells the driver.
pub enum Inbound {
    /// A message from a peer, for `Core::step`.
    Message(Message),
    /// A peer's stream broke or could not be opened: raft should probe it (`report_unreachable`).
    Unreachable(u64),
    /// Every peer URL of a peer refused the connection: its process is gone (`Core::peer_down`).
    Down(u64),
    /// A peer refused this member's stream because the cluster removed it: it stops.
    Removed,
    /// A follower's lease call for this member's lessor: answered None when this member is not
    /// the leader (etcd's ErrNotPrimary).
    Lease(LeaseAsk),
}

/// How the leader runs a promotion a follower forwarded (`Peer.MemberPromote`): through the
/// raft handle, which the transport does not know (the server wires it).
pub type PromoteFn = std::sync::Arc<dyn Fn(u64) -> futures_util::future::BoxFuture<'static, crate::error::Result<Vec<crate::cluster::Member>>> + Send + Sync>;

/// A lease call forwarded by a follower (`Peer.LeaseRenew`, `Peer.LeaseTimeToLive`).
pub enum LeaseAsk {
    Renew { ids: Vec<i64>, reply: tokio::sync::oneshot::Sender<Option<Vec<i64>>> },
    /// (remaining seconds, granted TTL, keys put with it), or None when the lease is unknown.
    TimeToLive { id: i64, reply: tokio::sync::oneshot::Sender<Option<Option<LeaseTtl>>> },
}

/// A lease's (remaining seconds, granted TTL, keys put with it).
pub type LeaseTtl = (i64, i64, Vec<Vec<u8>>);

/// A peer's URLs, which the membership task (`members.rs`) replaces when they change; its
/// sender and prober read them at each dial.
pub type PeerUrls = std::sync::Arc<std::sync::Mutex<Vec<String>>>;

/// URL `i` (modulo their count) of `urls`.
pub fn url_at(urls: &PeerUrls, i: usize) -> String {
    let urls = urls.lock().expect("not poisoned");
    urls.get(i % urls.len().max(1)).cloned().unwrap_or_default()
}

/// TLS between members: the peer listener's (`https://` --listen-peer-urls) and how to dial
/// `https://` peers; None: plaintext only.
#[derive(Clone, Default)]
pub struct PeerTls {
    pub server: Option<std::sync::Arc<rustls::ServerConfig>>,
    pub client: Option<std::sync::Arc<rustls::ClientConfig>>,
}

/// Who this member is, as the peers see it.
#[derive(Clone, Copy, Debug)]
pub struct Identity {
    pub cluster_id: u64,
    pub member_id: u64,
}

/// Starts the transport's thread: the peer listener (bound now when the cluster has several
/// members or this member is joining one, so a port in use refuses to start) and a sender per
/// peer. `remotes`: a joining member's running peers (`bootstrap`); `promote`: how this member
/// runs a forwarded promotion. Returns the driver's
/// outbox and inbound queue.
pub fn start(
    me: Identity,
    listen_urls: &[String],
    membership: crate::cluster::Membership,
    remotes: Vec<crate::cluster::Member>,
    promote: PromoteFn,
    tls: PeerTls,
    snap_dir: std::path::PathBuf,
) -> Result<(Outbox, flume::Receiver<Inbound>), String> {
    let (inbound_tx, inbound_rx) = flume::bounded(INBOUND_QUEUE_CAPACITY_MSGS);
    let outbox = Outbox::default();
    let current = membership.current();
    let joining = current.member(me.member_id).is_none() || !remotes.is_empty();
    let listeners = if current.members.len() > 1 || joining { Some(server::bind_all(listen_urls, tls.server.is_some())?) } else { None };
    let task = members::Follower { me, listen_urls: listen_urls.to_vec(), membership, remotes, promote, table: outbox.table(), inbound: inbound_tx, tls, snap_dir };
    std::thread::Builder::new()
        .name("peer".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    crate::log::error("cannot start the peer transport's runtime", &[("error", e.to_string())]);
                    std::process::abort();
                }
            };
            rt.block_on(task.run(listeners));
        })
        .map_err(|e| format!("cannot start the peer transport thread: {e}"))?;
    Ok((outbox, inbound_rx))
}

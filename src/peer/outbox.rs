//! The driver's side of the transport: raft messages go onto their peer's bounded queue
//! without waiting. A full queue (the peer or its link is slower than the leader) drops the
//! message and reports the peer unreachable, as etcd's rafthttp `peer.send`: raft then probes
//! the peer (one append per heartbeat) instead of streaming to it, and the leader's write path
//! never waits for a follower.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use raft::eraftpb::{Message, MessageType};

/// A dropped message is logged at most this often per peer.
const DROP_LOG_INTERVAL: Duration = Duration::from_secs(1);

/// The queue of every peer with a sender, replaced whole when the membership changes.
#[derive(Clone, Default)]
pub struct Table(Arc<ArcSwap<HashMap<u64, flume::Sender<Message>>>>);

impl Table {
    pub fn set(&self, queues: HashMap<u64, flume::Sender<Message>>) {
        self.0.store(Arc::new(queues));
    }

    pub fn get(&self) -> Arc<HashMap<u64, flume::Sender<Message>>> {
        self.0.load_full()
    }
}

/// A message that could not be queued: the core reports its peer unreachable (and, for a
/// snapshot, the snapshot failed).
pub struct Undelivered {
    pub to: u64,
    pub snapshot: bool,
}

#[derive(Default)]
pub struct Outbox {
    table: Table,
    warned: HashMap<u64, Instant>,
}

impl Outbox {
    pub fn table(&self) -> Table {
        self.table.clone()
    }

    /// Queues each message for its peer; returns those that could not be.
    pub fn send(&mut self, messages: Vec<Message>) -> Vec<Undelivered> {
        if messages.is_empty() {
            return Vec::new();
        }
        let queues = self.table.get();
        let mut undelivered = Vec::new();
        for m in messages {
            let (to, kind) = (m.to, m.get_msg_type());
            let full = match queues.get(&to) {
                Some(q) => q.try_send(m).is_err(),
                None => {
                    crate::log::debug("dropped a raft message to an unknown peer", &[("to", format!("{to:x}"))]);
                    true
                }
            };
            if full {
                super::stats::sent_failure(&super::stats::id(to));
                self.warn_dropped(to, kind);
                undelivered.push(Undelivered { to, snapshot: kind == MessageType::MsgSnapshot });
            }
        }
        undelivered
    }

    fn warn_dropped(&mut self, to: u64, kind: MessageType) {
        let now = Instant::now();
        if self.warned.get(&to).is_some_and(|&at| now.duration_since(at) < DROP_LOG_INTERVAL) {
            return;
        }
        self.warned.insert(to, now);
        crate::log::warn(
            "dropped internal Raft message since sending buffer is full",
            &[("message-type", format!("{kind:?}")), ("remote-peer-id", format!("{to:x}"))],
        );
    }
}

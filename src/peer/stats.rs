//! etcd's peer network metrics (rafthttp/metrics.go), with its labels: member ids as etcd
//! prints them (`types.ID`: lower-case hex), `To` on what this member sends, `From` on what it
//! receives, `Local`/`Remote` on the connection gauge. Handles are resolved once per peer.

use std::time::Instant;

use metrics::{counter, gauge, histogram, Counter, Gauge};

use crate::metrics::{
    ACTIVE_PEERS, DISCONNECTED_PEERS, PEER_RECEIVED_BYTES, PEER_RECEIVED_FAILURES, PEER_RTT_SECONDS, PEER_SENT_BYTES, PEER_SENT_FAILURES, SNAPSHOT_RECEIVE_FAILURES, SNAPSHOT_RECEIVE_INFLIGHTS,
    SNAPSHOT_RECEIVE_SECONDS, SNAPSHOT_RECEIVE_SUCCESS, SNAPSHOT_SEND_FAILURES, SNAPSHOT_SEND_INFLIGHTS, SNAPSHOT_SEND_SECONDS, SNAPSHOT_SEND_SUCCESS,
};

/// A member id as etcd's labels and logs print it.
pub fn id(member: u64) -> String {
    format!("{member:x}")
}

/// What this member sends to one peer, and the state of its stream to it.
pub struct Outgoing {
    sent_bytes: Counter,
    active: Gauge,
    disconnected: Counter,
    to: String,
    is_active: bool,
}

impl Outgoing {
    pub fn new(local: u64, remote: u64) -> Outgoing {
        let labels = [("Local", id(local)), ("Remote", id(remote))];
        Outgoing {
            sent_bytes: counter!(PEER_SENT_BYTES, "To" => id(remote)),
            active: gauge!(ACTIVE_PEERS, &labels),
            disconnected: counter!(DISCONNECTED_PEERS, &labels),
            to: id(remote),
            is_active: false,
        }
    }

    /// A counter handle for the stream's batches (they are encoded in the stream's own task).
    pub fn sent_bytes(&self) -> Counter {
        self.sent_bytes.clone()
    }

    /// The stream to the peer is open (etcd's peerStatus.activate).
    pub fn activate(&mut self) {
        if !self.is_active {
            self.is_active = true;
            self.active.set(1.0);
        }
    }

    /// The stream broke (etcd's peerStatus.deactivate); a failure to send.
    pub fn deactivate(&mut self) {
        if self.is_active {
            self.is_active = false;
            self.active.set(0.0);
            self.disconnected.increment(1);
            sent_failure(&self.to);
        }
    }
}

/// A message to `to` that could not be sent (its queue was full, or its stream broke).
pub fn sent_failure(to: &str) {
    counter!(PEER_SENT_FAILURES, "To" => to.to_string()).increment(1);
}

/// The counter of bytes of raft messages received from `from` (a stream resolves it once).
pub fn received_bytes(from: u64) -> Counter {
    counter!(PEER_RECEIVED_BYTES, "From" => id(from))
}

/// A batch refused or undecodable, from member `from`, or from a sender that is not a member
/// (labelled "unknown": a refused sender's claimed id must not make new series).
pub fn receive_failure(from: Option<u64>) {
    counter!(PEER_RECEIVED_FAILURES, "From" => from.map_or_else(|| "unknown".to_string(), id)).increment(1);
}

/// A smoothed round-trip time to `to`, as etcd's prober reports it.
pub fn rtt(to: &str, seconds: f64) {
    histogram!(PEER_RTT_SECONDS, "To" => to.to_string()).record(seconds);
}

/// One snapshot transfer, sent or received: in flight while it lives; `done` records its outcome
/// and duration, and a transfer dropped unfinished counts as failed.
pub struct Transfer {
    names: [&'static str; 4],
    label: (&'static str, String),
    started: Instant,
    finished: bool,
}

impl Transfer {
    /// A snapshot sent to `to`.
    pub fn send(to: u64) -> Transfer {
        Transfer::start([SNAPSHOT_SEND_INFLIGHTS, SNAPSHOT_SEND_SUCCESS, SNAPSHOT_SEND_FAILURES, SNAPSHOT_SEND_SECONDS], ("To", id(to)))
    }

    /// A snapshot received from `from`.
    pub fn receive(from: u64) -> Transfer {
        Transfer::start([SNAPSHOT_RECEIVE_INFLIGHTS, SNAPSHOT_RECEIVE_SUCCESS, SNAPSHOT_RECEIVE_FAILURES, SNAPSHOT_RECEIVE_SECONDS], ("From", id(from)))
    }

    fn start(names: [&'static str; 4], label: (&'static str, String)) -> Transfer {
        gauge!(names[0], label.0 => label.1.clone()).increment(1.0);
        Transfer { names, label, started: Instant::now(), finished: false }
    }

    pub fn done(mut self, ok: bool) {
        self.finish(ok);
    }

    fn finish(&mut self, ok: bool) {
        if self.finished {
            return;
        }
        self.finished = true;
        let (key, value) = (self.label.0, self.label.1.clone());
        gauge!(self.names[0], key => value.clone()).decrement(1.0);
        if ok {
            counter!(self.names[1], key => value.clone()).increment(1);
            histogram!(self.names[3], key => value).record(self.started.elapsed().as_secs_f64());
        } else {
            counter!(self.names[2], key => value).increment(1);
        }
    }
}

impl Drop for Transfer {
    fn drop(&mut self) {
        self.finish(false);
    }
}

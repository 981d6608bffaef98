//! etcd's check that a leader sends its heartbeats on time (its `contention.TimeoutDetector`
//! in `raftNode.processMessages`): a heartbeat to a peer more than two heartbeat intervals
//! after the previous one to it means the leader's loop was held up (by a slow disk, most
//! likely), and followers may soon start an election. It is logged as etcd logs it and counted
//! in `etcd_server_heartbeat_send_failures_total`. The record starts afresh when the leader
//! changes.

use std::collections::HashMap;
use std::time::{Duration, Instant};

pub struct HeartbeatDetector {
    heartbeat: Duration,
    /// Peer → when the last heartbeat to it was sent.
    last: HashMap<u64, Instant>,
}

impl HeartbeatDetector {
    pub fn new(heartbeat: Duration) -> HeartbeatDetector {
        HeartbeatDetector { heartbeat, last: HashMap::new() }
    }

    pub fn reset(&mut self) {
        self.last.clear();
    }

    /// A heartbeat to `to` leaves at `now`: by how much it is later than two intervals after
    /// the last one to `to`, if it is.
    pub fn observe(&mut self, to: u64, now: Instant) -> Option<Duration> {
        let late = self.last.insert(to, now).and_then(|prev| now.duration_since(prev).checked_sub(2 * self.heartbeat));
        late.filter(|d| !d.is_zero())
    }

    /// Observes each heartbeat of `messages`: a late one is warned of and counted.
    pub fn check(&mut self, messages: &[raft::eraftpb::Message]) {
        let now = Instant::now();
        for m in messages.iter().filter(|m| m.get_msg_type() == raft::eraftpb::MessageType::MsgHeartbeat) {
            if let Some(exceeded) = self.observe(m.to, now) {
                use crate::log::go_duration;
                crate::log::warn(
                    "leader failed to send out heartbeat on time; took too long, leader is overloaded likely from slow disk",
                    &[
                        ("to", format!("{:x}", m.to)),
                        ("heartbeat-interval", go_duration(self.heartbeat)),
                        ("expected-duration", go_duration(2 * self.heartbeat)),
                        ("exceeded-duration", go_duration(exceeded)),
                    ],
                );
                crate::metrics::handles().heartbeat_send_failures.increment(1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_heartbeat_later_than_two_intervals_is_late_by_the_excess() {
        let mut d = HeartbeatDetector::new(Duration::from_millis(100));
        let t0 = Instant::now();
        assert_eq!(d.observe(2, t0), None, "the first heartbeat to a peer has nothing to compare with");
        assert_eq!(d.observe(2, t0 + Duration::from_millis(200)), None, "two intervals exactly are on time");
        assert_eq!(d.observe(3, t0 + Duration::from_millis(450)), None, "each peer on its own");
        assert_eq!(d.observe(2, t0 + Duration::from_millis(450)), Some(Duration::from_millis(50)));
        d.reset();
        assert_eq!(d.observe(2, t0 + Duration::from_millis(900)), None, "a new leader starts afresh");
    }
}

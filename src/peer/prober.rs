//! Round-trip times to one peer, as etcd's rafthttp prober measures them (probing_status.go):
//! a `Peer.Probe` every `PROBE_INTERVAL` on a connection of its own, a smoothed RTT (the
//! probing library's: the first sample, then 1/8 of each new one), observed into
//! `etcd_network_peer_round_trip_time_seconds` every `REPORT_INTERVAL_HEALTHY` (every
//! `REPORT_INTERVAL_UNHEALTHY` while probes fail, with etcd's warning).

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::log;
use crate::proto::ballastpeerpb::{peer_client::PeerClient, ProbeRequest};

/// etcd's proberInterval (ConnReadTimeout − 1 s).
const PROBE_INTERVAL: Duration = Duration::from_secs(4);
/// A probe unanswered this long failed (etcd's ConnReadTimeout).
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// etcd's statusMonitoringInterval and statusErrorInterval.
const REPORT_INTERVAL_HEALTHY: Duration = Duration::from_secs(30);
const REPORT_INTERVAL_UNHEALTHY: Duration = Duration::from_secs(5);
/// The smoothing of the probing library's SRTT.
const SRTT_WEIGHT_NEW: f64 = 0.125;

pub struct Prober {
    pub peer: u64,
    pub urls: super::PeerUrls,
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

/// The probes' outcome so far.
#[derive(Default)]
struct Status {
    srtt: Option<Duration>,
    healthy: bool,
    error: String,
}

impl Status {
    fn sample(&mut self, rtt: Duration) {
        self.healthy = true;
        self.srtt = Some(match self.srtt {
            None => rtt,
            Some(s) => s.mul_f64(1.0 - SRTT_WEIGHT_NEW) + rtt.mul_f64(SRTT_WEIGHT_NEW),
        });
    }

    fn failed(&mut self, error: String) {
        self.healthy = false;
        self.error = error;
    }
}

impl Prober {
    /// Probes until the task is aborted (with the peer's sender).
    pub async fn run(self) {
        let to = super::stats::id(self.peer);
        let mut status = Status::default();
        let mut client = None;
        let mut url_index = 0;
        let mut report_at = Instant::now() + REPORT_INTERVAL_UNHEALTHY;
        loop {
            match self.probe(&mut client, &super::url_at(&self.urls, url_index)).await {
                Ok(rtt) => status.sample(rtt),
                Err(e) => {
                    client = None;
                    url_index += 1;
                    status.failed(e);
                }
            }
            if Instant::now() >= report_at {
                report_at = Instant::now() + self.report(&to, &status);
            }
            tokio::time::sleep(PROBE_INTERVAL).await;
        }
    }

    /// One probe over `client` (dialled to `url` first when there is none): its round trip,
    /// the dial left out.
    async fn probe(&self, client: &mut Option<PeerClient<tonic::transport::Channel>>, url: &str) -> Result<Duration, String> {
        let timed_out = |_| format!("probe timed out after {PROBE_TIMEOUT:?}");
        if client.is_none() {
            let channel = tokio::time::timeout(PROBE_TIMEOUT, super::dial::connect(url, self.tls.clone())).await.map_err(timed_out)??;
            *client = Some(PeerClient::new(channel));
        }
        let c = client.as_mut().ok_or("not connected")?;
        let started = Instant::now();
        tokio::time::timeout(PROBE_TIMEOUT, c.probe(ProbeRequest {})).await.map_err(timed_out)?.map_err(|s| s.message().to_string())?;
        Ok(started.elapsed())
    }

    /// Observes the smoothed RTT (when there is one) and warns of failing probes; returns how
    /// long until the next report.
    fn report(&self, to: &str, status: &Status) -> Duration {
        let srtt = status.srtt.unwrap_or_default();
        if !status.healthy {
            log::warn(
                "prober detected unhealthy status",
                &[("round-tripper-name", "ROUND_TRIPPER_RAFT_MESSAGE".into()), ("remote-peer-id", to.to_string()), ("rtt", format!("{srtt:?}")), ("error", status.error.clone())],
            );
        }
        if status.srtt.is_some() {
            super::stats::rtt(to, srtt.as_secs_f64());
        }
        if status.healthy {
            REPORT_INTERVAL_HEALTHY
        } else {
            REPORT_INTERVAL_UNHEALTHY
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn srtt_starts_at_the_first_sample_then_moves_an_eighth_of_the_way() {
        let mut s = Status::default();
        s.sample(Duration::from_millis(8));
        assert_eq!(s.srtt, Some(Duration::from_millis(8)));
        s.sample(Duration::from_millis(16));
        assert_eq!(s.srtt, Some(Duration::from_millis(9)));
        s.failed("down".into());
        assert!(!s.healthy);
        assert_eq!(s.srtt, Some(Duration::from_millis(9)), "a failed probe keeps the last SRTT");
    }
}

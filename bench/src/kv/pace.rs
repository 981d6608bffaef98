//! How a client issues its requests: a closed loop (the next request when the previous one is
//! answered) or an open loop (requests due on a fixed schedule, latency counted from the due time,
//! so a stall that holds sends back is measured rather than hidden: no coordinated omission).
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, Mutex};

use super::client::{Client, ClientOut};

/// Closed loop: takes op numbers from `next` until `ops` (if counted) are taken or `deadline`
/// passed; each op's latency is from its send to its answer.
pub async fn closed_loop(
    mut c: Client,
    ops: Option<u64>,
    next: Arc<AtomicU64>,
    deadline: Instant,
) -> ClientOut {
    let mut out = ClientOut::default();
    loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        if ops.is_some_and(|n| i >= n) || Instant::now() >= deadline {
            break;
        }
        let t0 = Instant::now();
        let r = c.one(i).await;
        out.record(t0, r);
    }
    out
}

/// An open loop's tickets: ticket i is due at `start + i / rate`; the tickets due before `end`
/// are issued, and none is sent after `stop` (a server far behind its schedule ends the run).
#[derive(Clone, Copy)]
pub struct Schedule {
    pub start: Instant,
    pub rate: f64,
    pub end: Instant,
    pub stop: Instant,
}

impl Schedule {
    /// The schedule of `secs` at `rate` from `start`; sends stop at twice `secs`.
    pub fn new(start: Instant, rate: f64, secs: f64) -> Schedule {
        Schedule {
            start,
            rate,
            end: start + Duration::from_secs_f64(secs),
            stop: start + Duration::from_secs_f64(2.0 * secs),
        }
    }

    pub fn due(&self, i: u64) -> Instant {
        self.start + Duration::from_secs_f64(i as f64 / self.rate)
    }

    /// Tickets due before `end`.
    pub fn tickets(&self) -> u64 {
        ((self.end - self.start).as_secs_f64() * self.rate).ceil() as u64
    }
}

/// One load generator thread's queue of due tickets: its free clients take them in order.
pub type Tickets = Arc<Mutex<mpsc::UnboundedReceiver<u64>>>;

/// `n` ticket queues: the pacer's ends and the clients' ends.
pub fn ticket_queues(n: usize) -> (Vec<mpsc::UnboundedSender<u64>>, Vec<Tickets>) {
    (0..n)
        .map(|_| {
            let (tx, rx) = mpsc::unbounded_channel();
            (tx, Arc::new(Mutex::new(rx)))
        })
        .unzip()
}

/// The pacer, on a thread of its own: puts ticket i into queue i mod queues.len() at its due
/// time, until the last ticket or `s.stop` (or until no queue is left). It sleeps in the OS
/// (nanosleep, default 50 µs timer slack), so tickets come out within ~0.1 ms of their due time:
/// with tokio's timers (1 ms resolution, rounded up) every latency carried ~1.3 ms of the
/// harness's own lateness (p50 1.37 ms vs 0.15 ms on sol at 5000 puts/s).
pub fn pacer(s: Schedule, queues: Vec<mpsc::UnboundedSender<u64>>) {
    let n = s.tickets();
    let mut i = 0;
    while i < n {
        let now = Instant::now();
        if now >= s.stop {
            return;
        }
        while i < n && s.due(i) <= now {
            if queues[i as usize % queues.len()].send(i).is_err() {
                return;
            }
            i += 1;
        }
        if i < n {
            std::thread::sleep(s.due(i).saturating_duration_since(Instant::now()));
        }
    }
}

/// Open loop: takes the next due ticket from `tickets` (waiting for one if none is due yet) and
/// sends it; its latency is from the due time to the answer, so a ticket that waited for a free
/// client (every client held by the server) counts its wait. Ends when the pacer is done and the
/// queue empty, or at `s.stop`.
pub async fn open_loop(mut c: Client, s: Schedule, tickets: Tickets) -> ClientOut {
    let mut out = ClientOut::default();
    loop {
        let Some(i) = tickets.lock().await.recv().await else {
            break;
        };
        if Instant::now() >= s.stop {
            break;
        }
        let r = c.one(i).await;
        out.record(s.due(i), r);
    }
    out
}

//! State shared by the writer and the watcher threads of one watch workload: when each put was
//! sent (so a watcher turns an event into a latency), which step a put belongs to, and how many
//! events each step has delivered so far (the controller waits on these to drain a step).
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use ballast_bench::hist::Hist;

/// Keys are `PREFIX` + the put's index, zero-padded to 32 bytes.
pub const PREFIX: &str = "wch/";
const KEY_LEN: usize = 32;

pub fn key(i: u64) -> Vec<u8> {
    let width = KEY_LEN - PREFIX.len();
    format!("{PREFIX}{i:0width$}").into_bytes()
}

/// The put index a key of `key` names (None for a foreign key).
pub fn index_of(k: &[u8]) -> Option<u64> {
    let digits = k.strip_prefix(PREFIX.as_bytes())?;
    digits.iter().try_fold(0u64, |n, d| {
        d.is_ascii_digit().then(|| n * 10 + u64::from(d - b'0'))
    })
}

/// The end of the range of every key under `prefix` (its last byte + 1).
pub fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    *end.last_mut().expect("non-empty prefix") += 1;
    end
}

/// What the watchers of one load-generator thread saw of one step.
#[derive(Default, Clone)]
pub struct StepSeen {
    /// Event latency in µs (put sent → event received).
    pub lat: Hist,
    /// Arrival of the step's last event, ns since `Shared::base`.
    pub last_ns: u64,
    /// Events whose mod_revision was not above the previous event of the same watcher.
    pub disorder: u64,
}

pub struct Shared {
    pub base: Instant,
    /// Send time of put i (ns since `base`, 0 = not sent yet).
    pub sent_ns: Vec<AtomicU64>,
    /// Step s covers put indices `bounds[s]..bounds[s + 1]`.
    pub bounds: Vec<u64>,
    /// Events delivered per step, all watchers.
    pub delivered: Vec<AtomicU64>,
    /// Watchers whose creation the server confirmed.
    pub created: AtomicU64,
    pub errors: AtomicU64,
    pub first_error: Mutex<Option<String>>,
}

impl Shared {
    /// `steps[s]` = number of puts of step s.
    pub fn new(steps: &[u64]) -> Shared {
        let mut bounds = vec![0];
        for n in steps {
            bounds.push(bounds.last().copied().unwrap_or(0) + n);
        }
        let total = *bounds.last().expect("bounds start with 0");
        Shared {
            base: Instant::now(),
            sent_ns: (0..total.max(1)).map(|_| AtomicU64::new(0)).collect(),
            bounds,
            delivered: steps.iter().map(|_| AtomicU64::new(0)).collect(),
            created: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            first_error: Mutex::new(None),
        }
    }

    pub fn now_ns(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64
    }

    pub fn steps(&self) -> usize {
        self.delivered.len()
    }

    pub fn step_of(&self, i: u64) -> Option<usize> {
        let s = self.bounds.partition_point(|b| *b <= i);
        (s >= 1 && s <= self.steps()).then(|| s - 1)
    }

    pub fn mark_sent(&self, i: u64) {
        self.sent_ns[i as usize].store(self.now_ns().max(1), Ordering::Release);
    }

    pub fn error(&self, e: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let mut first = self.first_error.lock().expect("error lock");
        first.get_or_insert(e);
    }

    pub fn first_error(&self) -> Option<String> {
        self.first_error.lock().expect("error lock").clone()
    }
}

//! Linearizable reads (raft ReadIndex). The reads queued in one core turn share one ReadIndex
//! request, issued only once the leader has committed an entry of its term (raft-rs drops
//! earlier ones silently; they wait here for a later turn). Raft answers with the commit index
//! at the time of the request; the reads are released once everything up to it is applied.

use std::collections::HashMap;

pub struct Reads<R> {
    /// Reads of the current turn, not yet asked of raft.
    queued: Vec<R>,
    /// ReadIndex context → its reads.
    asked: HashMap<u64, Vec<R>>,
    /// (read index, reads) waiting for apply to reach the index.
    ready: Vec<(u64, Vec<R>)>,
    next_ctx: u64,
}

impl<R> Default for Reads<R> {
    fn default() -> Self {
        Reads { queued: Vec::new(), asked: HashMap::new(), ready: Vec::new(), next_ctx: 1 }
    }
}

impl<R> Reads<R> {
    pub fn queue(&mut self, read: R) {
        self.queued.push(read);
    }

    /// The context of a ReadIndex request for the queued reads, if any.
    pub fn ask(&mut self) -> Option<Vec<u8>> {
        if self.queued.is_empty() {
            return None;
        }
        let ctx = self.next_ctx;
        self.next_ctx += 1;
        self.asked.insert(ctx, std::mem::take(&mut self.queued));
        Some(ctx.to_le_bytes().to_vec())
    }

    /// Raft answered the request `ctx` with `index`.
    pub fn answered(&mut self, ctx: &[u8], index: u64) {
        let ctx = u64::from_le_bytes(ctx.try_into().unwrap_or_default());
        if let Some(reads) = self.asked.remove(&ctx) {
            self.ready.push((index, reads));
        }
    }

    /// The reads whose index is applied.
    pub fn release(&mut self, applied: u64) -> Vec<R> {
        let mut done = Vec::new();
        for (_, reads) in self.ready.extract_if(.., |(index, _)| *index <= applied) {
            done.extend(reads);
        }
        done
    }
}

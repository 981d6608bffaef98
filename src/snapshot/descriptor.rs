//! What a raft snapshot sent to a follower carries as data: not the segments, only which
//! snapshot of the sender's they are (its number and raft position, revision and shard count),
//! so the follower can fetch exactly those files, or learn that the sender no longer holds
//! them (a newer snapshot replaced it: the fetch fails and raft sends a newer one).

use serde::{Deserialize, Serialize};

use super::Manifest;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Descriptor {
    /// The sender's snapshot number (`Manifest::seq`).
    pub seq: u64,
    pub index: u64,
    pub term: u64,
    pub rev: i64,
    pub shards: usize,
}

impl Descriptor {
    pub fn of(m: &Manifest) -> Descriptor {
        Descriptor { seq: m.seq, index: m.index, term: m.term, rev: m.rev, shards: m.shards }
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a descriptor encodes")
    }

    pub fn decode(data: &[u8]) -> Result<Descriptor, String> {
        serde_json::from_slice(data).map_err(|e| format!("bad snapshot descriptor: {e}"))
    }

    /// Whether manifest `m` is the snapshot this names.
    pub fn names(&self, m: &Manifest) -> bool {
        *self == Descriptor::of(m)
    }
}

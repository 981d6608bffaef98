//! The objects of the k8s workload: kube-apiserver's key layout under `/registry/`, object sizes
//! (1–10 KiB, per resource, from a seeded generator) and values, and the apiserver's view of
//! each object it writes (its last known mod_revision). Every object has an async lock: a write
//! holds it until its answer, so at most one write per object is in flight and the mod_revision
//! it compares against is the current one (no CAS conflicts by construction; any that happen
//! anyway are counted).
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use tokio::sync::OwnedMutexGuard;

/// Namespaces the namespaced objects are spread over (object i is in namespace i mod this).
pub const NAMESPACES: u64 = 50;
const SEED: u64 = 0x6b38_7365_7461_6c6c;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Resource {
    Pods,
    ConfigMaps,
    Services,
    Nodes,
    NodeLeases,
    Events,
}

impl Resource {
    pub const ALL: [Resource; 6] = [
        Resource::Pods,
        Resource::ConfigMaps,
        Resource::Services,
        Resource::Nodes,
        Resource::NodeLeases,
        Resource::Events,
    ];

    /// The key prefix kube-apiserver stores the resource under (Nodes are "minions").
    pub fn prefix(self) -> &'static str {
        match self {
            Resource::Pods => "/registry/pods/",
            Resource::ConfigMaps => "/registry/configmaps/",
            Resource::Services => "/registry/services/specs/",
            Resource::Nodes => "/registry/minions/",
            Resource::NodeLeases => "/registry/leases/kube-node-lease/",
            Resource::Events => "/registry/events/",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }

    /// Object sizes in bytes, smallest and largest (uniform in between, per object).
    fn sizes(self) -> (u64, u64) {
        match self {
            Resource::Pods | Resource::ConfigMaps => (1 << 10, 10 << 10),
            Resource::Services => (1 << 10, 4 << 10),
            Resource::Nodes => (4 << 10, 10 << 10),
            Resource::NodeLeases => (1 << 10, 1536),
            Resource::Events => (1 << 10, 2 << 10),
        }
    }

    fn stem(self) -> &'static str {
        match self {
            Resource::Pods => "pod",
            Resource::ConfigMaps => "cm",
            Resource::Services => "svc",
            Resource::Nodes | Resource::NodeLeases => "node",
            Resource::Events => "ev",
        }
    }

    /// Nodes and their Lease objects are one per node, not namespaced (the node leases' namespace
    /// is in the prefix).
    fn per_node(self) -> bool {
        matches!(self, Resource::Nodes | Resource::NodeLeases)
    }

    /// The key of object `i`.
    pub fn key(self, i: u64) -> Vec<u8> {
        if self.per_node() {
            format!("{}{}-{i:05}", self.prefix(), self.stem())
        } else {
            format!(
                "{}{}/{}-{i:08}",
                self.prefix(),
                namespace(i % NAMESPACES),
                self.stem()
            )
        }
        .into_bytes()
    }

    /// The size of object `i` (the same for every write of it).
    pub fn size(self, i: u64) -> usize {
        let (lo, hi) = self.sizes();
        (lo + mix(SEED ^ ((self.index() as u64) << 56) ^ i) % (hi - lo + 1)) as usize
    }

    /// The value of the `gen`-th write of object `i`: pseudo-random bytes (not compressible),
    /// different per write.
    pub fn value(self, i: u64, gen: u64) -> Vec<u8> {
        let filler = filler();
        let len = self.size(i);
        let off = (mix(i.wrapping_mul(31) ^ gen ^ (self.index() as u64) << 40) % 4096) as usize;
        filler[off..off + len].to_vec()
    }
}

pub fn namespace(j: u64) -> String {
    format!("ns-{j:02}")
}

/// The key prefix of namespace `j` of `r` (what a namespaced LIST ranges over).
pub fn namespace_prefix(r: Resource, j: u64) -> String {
    format!("{}{}/", r.prefix(), namespace(j))
}

/// splitmix64's finalizer: a well-spread hash of `x`.
pub fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// 4 KiB more than the largest object, filled from the seeded generator once.
fn filler() -> &'static [u8] {
    static F: OnceLock<Vec<u8>> = OnceLock::new();
    F.get_or_init(|| {
        (0..(14 << 10) / 8)
            .flat_map(|i| mix(SEED ^ i).to_le_bytes())
            .collect()
    })
}

/// The apiserver's view of one object.
pub struct Obj {
    pub i: u64,
    /// mod_revision of the last write the apiserver knows of (0: not created).
    pub mod_rev: i64,
    /// Writes so far (selects the value of the next one).
    pub gen: u64,
    /// False once deleted.
    pub alive: bool,
}

pub type Slot = Arc<tokio::sync::Mutex<Obj>>;
pub type Held = OwnedMutexGuard<Obj>;

fn slot(i: u64, mod_rev: i64) -> Slot {
    Arc::new(tokio::sync::Mutex::new(Obj {
        i,
        mod_rev,
        gen: 1,
        alive: true,
    }))
}

/// The objects of one resource the workload writes: a fixed population (nodes, node leases:
/// object k is slot k) or a changing one (pods: created, picked at random, deleted).
#[derive(Default)]
pub struct Pool {
    slots: Mutex<Vec<Slot>>,
    /// Index of the next object to create.
    next: AtomicU64,
}

impl Pool {
    /// Adds object `i`, created at `mod_rev`.
    pub fn add(&self, i: u64, mod_rev: i64) {
        self.slots.lock().expect("pool").push(slot(i, mod_rev));
    }

    /// A fresh object index (for a create).
    pub fn next_index(&self) -> u64 {
        self.next.fetch_add(1, Ordering::Relaxed)
    }

    /// Makes `next_index` start at `n` (after a preload of objects 0..n).
    pub fn set_next(&self, n: u64) {
        self.next.store(n, Ordering::Relaxed);
    }

    pub fn len(&self) -> usize {
        self.slots.lock().expect("pool").len()
    }

    /// Object slot `k` mod the population (fixed populations: node k's object).
    pub fn nth(&self, k: u64) -> Option<Slot> {
        let s = self.slots.lock().expect("pool");
        (!s.is_empty()).then(|| s[(k % s.len() as u64) as usize].clone())
    }

    /// A random live object (from `seed`), locked: an idle one if one of a few picks is idle,
    /// else the last pick once its write in flight is answered.
    pub async fn pick(&self, seed: u64) -> Option<Held> {
        for attempt in 0..8u64 {
            let picked = {
                let s = self.slots.lock().expect("pool");
                if s.is_empty() {
                    return None;
                }
                s[(mix(seed ^ attempt << 48) % s.len() as u64) as usize].clone()
            };
            let held = match picked.clone().try_lock_owned() {
                Ok(h) => h,
                Err(_) if attempt < 3 => continue,
                Err(_) => picked.lock_owned().await,
            };
            // A delete may have taken it meanwhile.
            if held.alive {
                return Some(held);
            }
        }
        None
    }

    /// Removes a random object (from `seed`) and locks it (after its write in flight, if any).
    pub async fn take(&self, seed: u64) -> Option<Held> {
        let taken = {
            let mut s = self.slots.lock().expect("pool");
            if s.is_empty() {
                return None;
            }
            let k = (mix(seed) % s.len() as u64) as usize;
            s.swap_remove(k)
        };
        Some(taken.lock_owned().await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sizes_values() {
        assert_eq!(
            Resource::Pods.key(7),
            b"/registry/pods/ns-07/pod-00000007".to_vec()
        );
        assert_eq!(
            Resource::NodeLeases.key(3),
            b"/registry/leases/kube-node-lease/node-00003".to_vec()
        );
        for r in Resource::ALL {
            for i in 0..1000 {
                let n = r.size(i);
                assert!((1024..=10240).contains(&n), "{r:?} {i}: {n}");
                assert_eq!(r.value(i, 5).len(), n);
            }
        }
        assert_ne!(Resource::Pods.value(1, 1), Resource::Pods.value(1, 2));
    }
}

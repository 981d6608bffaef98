//! The cluster as it stands before the apiserver starts: `pods` pods, a fifth as many
//! configmaps, a tenth as many services, half as many events (with the lease manager's lease),
//! and per node a Node object and its Lease object, written as the store creates them (txns on
//! mod_revision == 0), `CALLS` at a time over `CONNS` connections. Not measured; the mod_revision
//! of each pod, node and node lease seeds the apiserver's view of it.
use std::sync::Arc;
use std::time::{Duration, Instant};

use ballast_bench::proto::etcdserverpb::kv_client::KvClient;
use ballast_bench::proto::etcdserverpb::lease_client::LeaseClient;

use super::objects::Resource;
use super::store::{self, Outcome};
use super::World;
use crate::watch::connect;

const CONNS: usize = 4;
const CALLS: usize = 64;

pub struct Preloaded {
    /// Objects per resource (in `Resource::ALL` order).
    pub objects: Vec<u64>,
    pub bytes: u64,
    pub secs: f64,
    /// The events written (key, create revision): their leases expire in a long run.
    pub events: Vec<(Vec<u8>, i64)>,
}

/// How many objects of each resource the preload writes.
pub fn counts(pods: u64, nodes: u64) -> Vec<u64> {
    Resource::ALL
        .iter()
        .map(|r| match r {
            Resource::Pods => pods,
            Resource::ConfigMaps => pods / 5,
            Resource::Services => pods / 10,
            Resource::Nodes | Resource::NodeLeases => nodes,
            Resource::Events => pods / 2,
        })
        .collect()
}

pub async fn run(
    url: &str,
    world: &Arc<World>,
    pods: u64,
    nodes: u64,
    max_secs: f64,
) -> Result<Preloaded, String> {
    let objects = counts(pods, nodes);
    let todo: Arc<Vec<(Resource, u64)>> = Arc::new(
        Resource::ALL
            .iter()
            .zip(&objects)
            .flat_map(|(r, n)| (0..*n).map(|i| (*r, i)))
            .collect(),
    );
    let bytes = todo.iter().map(|(r, i)| r.size(*i) as u64).sum();
    let mut chans = Vec::new();
    for _ in 0..CONNS {
        chans.push(connect(url).await?);
    }
    let t0 = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for g in 0..CALLS {
        let ch = chans[g % CONNS].clone();
        let (todo, world) = (todo.clone(), world.clone());
        tasks.spawn(async move {
            let (mut kv, mut lc) = (KvClient::new(ch.clone()), LeaseClient::new(ch));
            let mut events = Vec::new();
            for (r, i) in todo.iter().skip(g).step_by(CALLS).copied() {
                let lease = if r == Resource::Events {
                    world.leases.get(&mut lc).await?
                } else {
                    0
                };
                let rev = match store::create(&mut kv, &r.key(i), r.value(i, 0), lease).await? {
                    Outcome::Done(rev) => rev,
                    Outcome::Conflict(_) => {
                        return Err(format!("preload: {:?} {i} exists already", r))
                    }
                };
                match r {
                    Resource::Pods => world.pods.add(i, rev),
                    Resource::Nodes => world.nodes.add(i, rev),
                    Resource::NodeLeases => world.node_leases.add(i, rev),
                    Resource::Events => events.push((r.key(i), rev)),
                    _ => {}
                }
            }
            Ok::<_, String>(events)
        });
    }
    let all = tokio::time::timeout(Duration::from_secs_f64(max_secs), tasks.join_all())
        .await
        .map_err(|_| format!("preloading {} objects took over {max_secs} s", todo.len()))?;
    let events = all.into_iter().collect::<Result<Vec<_>, String>>()?.concat();
    world.pods.set_next(pods);
    world.events.set_next(objects[Resource::Events.index()]);
    Ok(Preloaded {
        objects,
        bytes,
        secs: t0.elapsed().as_secs_f64(),
        events,
    })
}

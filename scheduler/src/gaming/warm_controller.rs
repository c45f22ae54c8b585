//! The warm-pool controller: on the leader, once a second, compares each warm pool of the
//! catalog with its target size (see [`crate::gaming::pools::target_size`]) and fills it, or
//! shrinks it, by one command per pool. Every replica runs it; only the leader acts, from the
//! state it has applied, so a new leader takes over where the last one stopped.

use std::sync::Arc;
use std::time::Duration;

use vmcloud_proto::pb::{self, command::Body};
use vmcloud_proto::{InstanceId, ProjectId};

use crate::catalog::Catalog;
use crate::gaming::pools::{WarmClass, target_size};
use crate::instances::types::{InstanceState, WARM_POOL_PROJECT};
use crate::jobs::queue::free_whole_gpus;
use crate::raft_handle::Cluster;
use crate::state::ClusterState;

/// Most VMs one fill or shrink names (one log entry each).
pub const BATCH: usize = 500;

/// How often pools are looked at.
const EVERY: Duration = Duration::from_secs(1);

/// A pool's size now, against its target.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PoolSize {
    pub target: u32,
    /// Booted and idle.
    pub ready: u32,
    /// Waiting for a host, or booting.
    pub booting: u32,
    /// Of those, waiting for a host.
    pub unplaced: u32,
    /// Taken off the pool: being reclaimed by real work, or being removed.
    pub leaving: u32,
}

/// What one pool's VMs are doing, and which may go first when it shrinks (waiting ones first,
/// newest first; then idle ones, newest first).
fn pool_members(state: &ClusterState, class: &WarmClass) -> (PoolSize, Vec<InstanceId>) {
    let project = ProjectId::parse(WARM_POOL_PROJECT).expect("a valid project id");
    let mut size = PoolSize::default();
    let (mut waiting, mut idle) = (Vec::new(), Vec::new());
    for (_, id) in state.index.per_project.get(&project).into_iter().flatten() {
        let Some(i) = state.instances.get(id) else {
            continue;
        };
        if !class.holds(i) {
            continue;
        }
        if i.state == InstanceState::Deleting || i.reclaimed_at_ms.is_some() {
            size.leaving += 1;
        } else if i.state == InstanceState::Running {
            size.ready += 1;
            idle.push(id.clone());
        } else {
            size.booting += 1;
            size.unplaced += u32::from(i.node.is_none());
            waiting.push(id.clone());
        }
    }
    waiting.reverse();
    idle.reverse();
    waiting.extend(idle);
    (size, waiting)
}

/// A pool's size and target now.
pub fn pool_size(
    state: &ClusterState,
    config: &crate::gaming::catalog::WarmPoolConfig,
    now_ms: i64,
) -> PoolSize {
    let class = WarmClass::of_config(config);
    let (mut size, _) = pool_members(state, &class);
    size.target = target_size(config, state.gaming.warm.get(&class.key()), now_ms);
    size
}

/// The commands that bring every pool to its target: fills and shrinks.
pub fn plan(state: &ClusterState, catalog: &Catalog, now_ms: i64) -> Vec<Body> {
    let project = ProjectId::parse(WARM_POOL_PROJECT).expect("a valid project id");
    let mut out = Vec::new();
    for config in &catalog.gaming.warm_pools {
        let class = WarmClass::of_config(config);
        let Some(flavor) = catalog.flavors.get(&config.flavor) else {
            continue;
        };
        let (size, removable) = pool_members(state, &class);
        let target = target_size(config, state.gaming.warm.get(&class.key()), now_ms) as usize;
        let have = (size.ready + size.booting) as usize;
        // VMs that would wait for a host are not added: only what free GPUs can boot (real
        // work still reclaims warm VMs, and a pool short of its target says so).
        let room = flavor.gpu.as_ref().map_or(0, |g| {
            let free = free_whole_gpus(state, &config.region, &g.model, config.pool.as_deref());
            usize::try_from(free).unwrap_or(0) / g.count.max(1) as usize
        });
        let room = room.saturating_sub(size.unplaced as usize);
        if have < target && room > 0 {
            let vms = (0..(target - have).min(BATCH).min(room))
                .map(|_| {
                    let id = InstanceId::generate();
                    let name = format!("warm-{}-{}", config.region, &id.as_str()[2..8]);
                    pb::CreateInstance {
                        pool: config.pool.clone().unwrap_or_default(),
                        ..flavor
                            .spec(name, &config.flavor, &config.image, &config.region)
                            .create_command(&id, &project)
                    }
                })
                .collect();
            out.push(Body::FillWarmPool(pb::FillWarmPool { vms }));
        } else if have > target {
            let instance_ids = removable
                .into_iter()
                .take((have - target).min(BATCH))
                .map(|id| id.to_string())
                .collect();
            out.push(Body::ShrinkWarmPool(pb::ShrinkWarmPool { instance_ids }));
        }
    }
    out
}

/// Runs on every replica; acts while it leads. Nothing to do without warm pools.
pub async fn run(cluster: Cluster, catalog: Arc<Catalog>) {
    if catalog.gaming.warm_pools.is_empty() {
        return;
    }
    let mut status = cluster.raft_status();
    loop {
        let leading = status.borrow_and_update().is_leader;
        if leading {
            let commands = plan(&cluster.state(), &catalog, crate::clock::now_ms());
            for body in commands {
                match cluster.propose(body).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => tracing::warn!(error = %e, "a warm pool change was refused"),
                    Err(e) => {
                        tracing::debug!(error = %e, "could not propose a warm pool change");
                        break;
                    }
                }
            }
        }
        crate::raft_handle::lead_changes(&mut status, EVERY).await;
    }
}

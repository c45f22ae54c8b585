//! Warm pools and the launch queue. A launch that found no booted warm VM waits in its
//! region's queue; when a warm VM of its class finishes booting (a pool refilling), `apply`
//! hands it to the first launch waiting for that class (VIP, then Priority+, then standard,
//! each in launch order) — the launch runs at once on it instead of waiting for a GPU and a
//! boot of its own, and no later launch takes the VM before it. The session continues under
//! the warm VM's id; its first id still answers (see [`crate::gaming::types::GamingBook::moved`]).
//! The queue's expected starts count these refills: a booting warm VM of the class frees its
//! GPU for the queue when it is expected to be ready ([`ClusterState::warm_refills`]).

use vmcloud_proto::{InstanceId, ProjectId};

use crate::gaming::pools::WarmClass;
use crate::instances::types::{Instance, InstanceState, Market, WARM_POOL_PROJECT};
use crate::sessions::queue::launch_rank;
use crate::state::ClusterState;

/// Boot time assumed for a pool that has not booted a VM yet.
const UNMEASURED_BOOT_MS: i64 = 60_000;

/// How long a session's first id keeps answering after it moved to a warm VM.
const MOVED_KEPT_MS: i64 = 86_400_000;

impl ClusterState {
    /// The first launch waiting for a warm VM of `class` (one that could take one: on demand,
    /// not on a reservation), in the queue's order.
    fn first_waiting(&self, class: &WarmClass) -> Option<&Instance> {
        let mut best: Option<(u8, &Instance)> = None;
        for i in self.pending() {
            if i.is_warm()
                || i.session.is_none()
                || i.market != Market::OnDemand
                || i.reservation.is_some()
                || !class.holds(i)
            {
                continue;
            }
            let rank = launch_rank(i);
            if best.as_ref().is_none_or(|(r, _)| rank < *r) {
                best = Some((rank, i));
                if rank == 0 {
                    break;
                }
            }
        }
        best.map(|(_, i)| i)
    }

    /// A warm VM `warm` just booted: the first launch waiting for its class takes it.
    pub(crate) fn hand_warm_to_queue(&mut self, warm: &InstanceId, at: i64) {
        let Some(class) = self
            .instances
            .get(warm)
            .filter(|i| i.is_warm())
            .map(|i| WarmClass::of(i))
        else {
            return;
        };
        if !self.warm_ready(warm, &class) {
            return;
        }
        let Some(queued) = self.first_waiting(&class).cloned() else {
            return;
        };
        // The launch leaves the queue...
        self.instances.remove(&queued.id);
        self.index
            .pending
            .remove(&(queued.created_at_ms, queued.id.clone()));
        self.forget(&queued);
        self.capacity_epoch += 1;
        // ... and takes the warm VM, as the session it was admitted as (its length, its
        // household's checks were settled when it was launched).
        let session = Instance {
            id: warm.clone(),
            nominated_node: None,
            ..queued.clone()
        };
        if self.claim_warm(session, None, at, false).is_err() {
            return;
        }
        let old: Vec<InstanceId> = self
            .gaming
            .moved
            .iter()
            .filter(|(_, (_, when))| *when + MOVED_KEPT_MS <= at)
            .map(|(k, _)| k.clone())
            .collect();
        for k in old {
            self.gaming.moved.remove(&k);
        }
        self.gaming.moved.insert(queued.id, (warm.clone(), at));
    }

    /// The session a launch's id names now: itself, or the warm VM it moved to.
    pub fn session_now(&self, id: &InstanceId) -> Option<&Instance> {
        self.instances.get(id).map(|i| &**i).or_else(|| {
            let (to, _) = self.gaming.moved.get(id)?;
            self.instances.get(to).map(|i| &**i)
        })
    }

    /// Warm VMs of `region`'s `model` GPUs in `pool` that the launch queue will get: when each
    /// is expected to be booted (now for a booted one; placed + the pool's measured boot time
    /// for one booting) and its GPUs. Those being reclaimed count where their notice ends
    /// instead (see [`crate::jobs::queue`]'s timeline); those not placed yet, not at all.
    pub fn warm_refills(&self, region: &str, model: &str, pool: Option<&str>) -> Vec<(i64, i64)> {
        let Ok(project) = ProjectId::parse(WARM_POOL_PROJECT) else {
            return Vec::new();
        };
        self.index
            .per_project
            .get(&project)
            .into_iter()
            .flatten()
            .filter_map(|(_, id)| self.instances.get(id))
            .filter(|i| {
                i.region == region
                    && i.pool.as_deref() == pool
                    && i.reclaimed_at_ms.is_none()
                    && i.gpu.as_ref().is_some_and(|g| g.model == model)
            })
            .filter_map(|i| {
                let ready = match (i.state, i.placed_at_ms) {
                    (InstanceState::Running, _) => self.now_ms,
                    (InstanceState::Scheduled, Some(placed)) => {
                        let boot = self
                            .gaming
                            .warm
                            .get(&WarmClass::of(i).key())
                            .and_then(|f| f.boot_ms)
                            .unwrap_or(UNMEASURED_BOOT_MS);
                        (placed + boot).max(self.now_ms)
                    }
                    _ => return None,
                };
                Some((ready, i.gpus.len() as i64))
            })
            .collect()
    }
}

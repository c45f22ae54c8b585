//! Warm pools (DESIGN.md §8 "Gaming"): per region, GPU class (a game flavor), image and host
//! pool, game VMs kept booted and idle so that a launch runs at once.
//!
//! - A warm VM is an instance of the warm-pool project ([`WARM_POOL_PROJECT`]): placed by
//!   placement and booted by its agent like any other, **spot** while it waits (real work
//!   that needs its GPU reclaims it), never billed.
//! - A launch of its class takes a booted one (`GameSession.claim_warm`, the warm VM's id as
//!   the launch's): in one command the VM becomes the gamer's session — its project, its
//!   title, its length, on demand — and the connection details issued with it. The API picks
//!   the VM from the published state; a launch that lost the race for it is refused here and
//!   the API picks another, or queues a cold launch.
//! - The controller on the leader ([`crate::gaming::warm_controller`]) sizes each pool from
//!   the launches committed in the last hour: the 95th percentile of launches per minute ×
//!   the boot time (measured from the pool's own boots), within the operator's `min`/`max`
//!   (`[[gaming.warm_pools]]` in the catalog); it fills with [`pb::FillWarmPool`] and shrinks
//!   idle VMs with [`pb::ShrinkWarmPool`].

use std::sync::Arc;

use vmcloud_proto::pb;
use vmcloud_proto::{InstanceId, ProjectId};

use crate::gaming::pools::{LaunchMinute, RATE_WINDOW_MIN, WARM_NOTICE_S, WarmClass};
use crate::instances::types::{
    Instance, InstanceSpec, InstanceState, Market, WAITING_FOR_PLACEMENT, WARM_POOL_PROJECT,
};
use crate::sessions::types::StreamToken;
use crate::state::{Applied, ApplyResult, ClusterState, Rejected};

impl ClusterState {
    /// The warm-pool project, made on first use in an organisation of its own.
    fn warm_project(&mut self, at: i64) -> Result<ProjectId, Rejected> {
        let id = ProjectId::parse(WARM_POOL_PROJECT).expect("a valid project id");
        if !self.projects.contains_key(&id) {
            self.create_project(
                pb::CreateProject {
                    project_id: id.to_string(),
                    name: "Warm pools".into(),
                    ..Default::default()
                },
                at,
            )?;
        }
        Ok(self
            .projects
            .get_key_value(&id)
            .map(|(k, _)| k.clone())
            .expect("made above"))
    }

    pub(crate) fn fill_warm_pool(&mut self, c: pb::FillWarmPool, at: i64) -> ApplyResult {
        let project = self.warm_project(at)?;
        for vm in c.vms {
            let Ok(id) = InstanceId::parse(&vm.instance_id) else {
                continue;
            };
            if self.instances.contains_key(&id) || vm.gpu_count == 0 {
                continue;
            }
            let instance = Instance {
                market: Market::Spot,
                preemption_notice_s: WARM_NOTICE_S,
                pool: (!vm.pool.is_empty()).then_some(vm.pool),
                pending_reason: Some(WAITING_FOR_PLACEMENT.into()),
                ..Instance::pending(
                    id,
                    project.clone(),
                    InstanceSpec {
                        name: vm.name,
                        flavor: vm.flavor,
                        image: vm.image,
                        region: vm.region,
                        vcpus: vm.vcpus,
                        memory_mib: vm.memory_mib,
                        disk_gib: vm.disk_gib,
                        gpu: Some(crate::instances::types::GpuRequest {
                            model: vm.gpu_model,
                            count: vm.gpu_count,
                            mig_profile: None,
                        }),
                    },
                    at,
                )
            };
            self.admit_pending(instance);
        }
        Ok(Applied::Done)
    }

    pub(crate) fn shrink_warm_pool(&mut self, c: pb::ShrinkWarmPool, at: i64) -> ApplyResult {
        for id in c.instance_ids {
            let warm = InstanceId::parse(&id)
                .ok()
                .and_then(|id| self.instances.get(&id))
                .is_some_and(|i| i.is_warm() && i.state != InstanceState::Deleting);
            if warm {
                // Only warm VMs of the pool's project are named; one already gone is fine.
                let _ = self.delete_instance(
                    pb::DeleteInstance {
                        instance_id: id,
                        project_id: WARM_POOL_PROJECT.into(),
                    },
                    at,
                );
            }
        }
        Ok(Applied::Done)
    }

    /// Whether `id` is a warm VM a launch of `class` may take now: booted, idle, not being
    /// reclaimed.
    pub fn warm_ready(&self, id: &InstanceId, class: &WarmClass) -> bool {
        self.instances.get(id).is_some_and(|i| {
            i.is_warm()
                && i.state == InstanceState::Running
                && i.reclaimed_at_ms.is_none()
                && class.holds(i)
        })
    }

    /// The host a placed instance runs on (empty when it is not placed).
    pub fn hostname_of(&self, i: &Instance) -> String {
        i.node
            .as_ref()
            .and_then(|n| self.nodes.get(n))
            .map(|n| n.hostname.clone())
            .unwrap_or_default()
    }

    /// The booted, idle warm VMs of `class`.
    pub fn ready_warm<'s>(&'s self, class: &WarmClass) -> impl Iterator<Item = &'s InstanceId> {
        self.index
            .warm
            .get(class)
            .into_iter()
            .flatten()
            .filter(move |id| self.warm_ready(id, class))
    }

    /// A launch takes the warm VM of its id: `session` is the launch as `create_instance`
    /// built it (checked), `token` its connection details; `count_launch`: a new launch (one
    /// handed a VM from the queue was counted when it queued).
    pub(crate) fn claim_warm(
        &mut self,
        mut session: Instance,
        token: Option<StreamToken>,
        at: i64,
        count_launch: bool,
    ) -> ApplyResult {
        let class = WarmClass::of(&session);
        if !self.warm_ready(&session.id, &class) {
            return Err(Rejected::Conflict(format!(
                "warm VM {} was taken by another launch; launch again",
                session.id
            )));
        }
        let warm = self.instances.remove(&session.id).expect("checked above");
        self.forget(&warm);
        let node = warm.node.clone().expect("a running VM is placed");
        if let Some(u) = self.index.usage.get_mut(&node).map(Arc::make_mut) {
            u.remove(&warm);
        }
        session.state = InstanceState::Running;
        session.node = Some(node.clone());
        session.gpus = warm.gpus.clone();
        session.ipv6 = warm.ipv6;
        session.status_message = warm.status_message.clone();
        session.pending_reason = None;
        session.placed_at_ms = Some(at);
        session.running_at_ms = Some(at);
        session.meter_from_ms = Some(at);
        if let Some(limit_s) = session.time_limit_s() {
            let until = at + i64::from(limit_s) * 1000;
            session.terminate_at_ms = Some(until);
            self.index.terminating.insert((until, session.id.clone()));
        }
        if let (Some(s), Some(t)) = (session.session.as_mut(), token) {
            s.stream_tokens.push(t);
        }
        if let Some(u) = self.index.usage.get_mut(&node).map(Arc::make_mut) {
            u.add(&session);
        }
        if let Some(n) = self.nodes.get_mut(&node).map(Arc::make_mut) {
            n.generation += 1;
            self.generation_epoch.bump(&node);
        }
        // No capacity came free (the GPU stays bound, to the session now): placement need not
        // look again.
        if count_launch {
            self.record_launch(&class, true, at);
        }
        self.index_owner(&session);
        self.instances
            .insert(session.id.clone(), Arc::new(session.clone()));
        Ok(Applied::Instance(Box::new(session)))
    }

    /// Counts a session launch of `class` (served warm or not) for the pool's sizing.
    pub(crate) fn record_launch(&mut self, class: &WarmClass, warm: bool, at: i64) {
        let minute = at.div_euclid(60_000);
        let figures = self.gaming.warm.entry(class.key()).or_default();
        let last = figures.minutes.len().checked_sub(1);
        match last.and_then(|n| figures.minutes.get_mut(n)) {
            Some(m) if m.minute == minute => {
                if warm {
                    m.warm += 1;
                } else {
                    m.cold += 1;
                }
            }
            _ => figures.minutes.push_back(LaunchMinute {
                minute,
                warm: u32::from(warm),
                cold: u32::from(!warm),
            }),
        }
        while figures
            .minutes
            .front()
            .is_some_and(|m| m.minute <= minute - RATE_WINDOW_MIN)
        {
            figures.minutes.pop_front();
        }
    }

    /// Keeps the index of booted warm VMs, and the pool's boot time, as its agent reports
    /// `id`.
    pub(crate) fn warm_observed(&mut self, id: &InstanceId) {
        let Some(i) = self.instances.get(id).filter(|i| i.is_warm()) else {
            return;
        };
        let class = WarmClass::of(i);
        if i.state == InstanceState::Running {
            if let (Some(placed), Some(running)) = (i.placed_at_ms, i.running_at_ms) {
                let sample = (running - placed).max(0);
                let figures = self.gaming.warm.entry(class.key()).or_default();
                figures.boot_ms = Some(match figures.boot_ms {
                    Some(old) => (old * 7 + sample) / 8,
                    None => sample,
                });
            }
            self.index.warm.entry(class).or_default().insert(id.clone());
        } else if let Some(set) = self.index.warm.get_mut(&class) {
            set.remove(id);
        }
    }
}

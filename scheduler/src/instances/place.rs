//! Applying a placement plan, re-checked against the newest state.

use std::sync::Arc;

use std::collections::BTreeSet;

use vmcloud_proto::pb;
use vmcloud_proto::{GpuBinding, InstanceId, JobId, NodeId};

use crate::instances::types::{InstanceState, Market};
use crate::nodes::types::NodeState;
use crate::state::{Applied, ApplyResult, ClusterState};
use std::collections::BTreeMap;

impl ClusterState {
    /// Applies a placement plan, re-checking each placement against the newest state: the plan
    /// was computed on a snapshot, and a placement that no longer fits is dropped (the
    /// instance stays pending and is planned again).
    pub(crate) fn place_instances(&mut self, c: pb::PlaceInstances, at: i64) -> ApplyResult {
        // A job's members start all together or not at all: a plan must place every waiting
        // member, and if one no longer fits, the others are taken back.
        let incomplete = self.incomplete_gangs(&c.placements);
        let mut gangs: BTreeMap<JobId, Vec<InstanceId>> = BTreeMap::new();
        let mut broken: BTreeSet<JobId> = BTreeSet::new();
        let mut network_moves: Vec<(String, vmcloud_proto::NodeId)> = Vec::new();
        for p in c.placements {
            let (Ok(id), Ok(node_id)) =
                (InstanceId::parse(&p.instance_id), NodeId::parse(&p.node_id))
            else {
                continue;
            };
            let Some(instance) = self.instances.get(&id) else {
                continue;
            };
            let job = instance.job.as_ref().map(|j| j.id.clone());
            if job.as_ref().is_some_and(|j| incomplete.contains(j)) {
                continue;
            }
            if instance.state != InstanceState::Pending {
                continue;
            }
            let Some(node) = self.nodes.get(&node_id) else {
                continue;
            };
            // The state's own copy of the id: every instance on the node shares it.
            let node_id = node.id.clone();
            let Some(used) = self.index.usage.get_mut(&node_id).map(Arc::make_mut) else {
                continue;
            };
            // A reserved instance takes a free slot of its reservation on this node; the
            // capacity held for other slots stays out of everyone's reach but spot's.
            let own_slot = instance
                .reservation
                .as_ref()
                .and_then(|r| self.reservations.get(r))
                .is_some_and(|r| {
                    r.slots
                        .iter()
                        .any(|s| s.node == node_id && s.instance.is_none())
                });
            if instance.market == Market::Reserved && !own_slot {
                continue;
            }
            let held = used.held.against(instance, own_slot);
            // The plan names GPUs as on the wire; one that names none is not a placement.
            let gpus: Option<Vec<GpuBinding>> =
                p.gpus.iter().map(|g| GpuBinding::parse(g).ok()).collect();
            let gpus = gpus.unwrap_or_default();
            let gpus_left = node
                .whole_gpus()
                .saturating_sub(used.gpus.len() + gpus.len());
            let gpus_ok = gpus.len() == p.gpus.len()
                && match &instance.gpu {
                    None => gpus.is_empty(),
                    Some(req) if req.mig_profile.is_some() => matches!(
                        gpus.as_slice(),
                        [GpuBinding::Slice(s)] if node.slice_fits(used, req, s)
                    ),
                    Some(req) => {
                        gpus_left >= held.gpus as usize && {
                            let distinct: BTreeSet<&GpuBinding> = gpus.iter().collect();
                            distinct.len() == gpus.len()
                                && gpus.len() == req.count as usize
                                && gpus.iter().all(|b| {
                                    let GpuBinding::Whole(pci) = b else {
                                        return false;
                                    };
                                    !used.gpus.contains(pci)
                                        && node.gpus.iter().any(|g| {
                                            &g.pci_address == pci
                                                && g.model == req.model
                                                && !g.mig
                                                && g.unhealthy.is_none()
                                        })
                                })
                        }
                    }
                };
            // Invariant: no GPU bound twice, no host over its capacity; and the host still
            // takes this workload (its state, pools or labels may have changed since the plan).
            let fits = node.region == instance.region
                && node.state == NodeState::Ready
                && node.matches(instance.pool.as_deref(), &instance.node_selector)
                && gpus_ok
                && used.vcpus + held.vcpus + instance.vcpus <= node.allocatable_vcpus()
                && used.memory_mib + held.memory_mib + instance.memory_mib
                    <= node.allocatable_memory_mib();
            if !fits {
                if let Some(j) = job {
                    broken.insert(j);
                }
                continue;
            }
            let instance = self
                .instances
                .get_mut(&id)
                .map(Arc::make_mut)
                .expect("checked above");
            if let Some(spec) = &instance.job {
                gangs.entry(spec.id.clone()).or_default().push(id.clone());
            }
            // A job member runs for at most its maximum run time, a session for its tier's
            // length.
            if let Some(limit_s) = instance.time_limit_s() {
                let until = at + i64::from(limit_s) * 1000;
                instance.terminate_at_ms = Some(until);
                self.index.terminating.insert((until, id.clone()));
            }
            instance.gpus = gpus;
            used.add(instance);
            self.index
                .pending
                .remove(&(instance.created_at_ms, id.clone()));
            instance.state = InstanceState::Scheduled;
            instance.node = Some(node_id.clone());
            instance.nominated_node = None;
            instance.pending_reason = None;
            instance.placed_at_ms = Some(at);
            instance.meter_from_ms = Some(at);
            self.placements.0 += 1;
            instance.ipv6 = match (&instance.nic, node.ipv6_prefix) {
                (Some(nic), Some(prefix)) => crate::nodes::types::ipv6_of(prefix, &nic.mac),
                _ => None,
            };
            if let Some(nic) = &instance.nic {
                network_moves.push((nic.network.clone(), node_id.clone()));
            }
            Arc::make_mut(self.nodes.get_mut(&node_id).expect("checked above")).generation += 1;
            self.generation_epoch.bump(&node_id);
            if own_slot {
                let instance = self.instances[&id].clone();
                self.bind_slot(&instance, &node_id);
            }
        }
        for job in &broken {
            for id in gangs.remove(job).unwrap_or_default() {
                self.unplace(&id);
            }
        }
        for (network, node) in network_moves {
            self.network_hosts_changed(&network, &node);
        }
        for u in c.unplaced {
            let Ok(id) = InstanceId::parse(&u.instance_id) else {
                continue;
            };
            if let Some(instance) = self.instances.get_mut(&id).map(Arc::make_mut)
                && instance.state == InstanceState::Pending
            {
                instance.pending_reason = Some(u.reason);
            }
        }
        self.preempt(c.preemptions, at);
        Ok(Applied::Done)
    }

    /// Jobs with members in `placements` whose waiting members are not all there.
    pub(crate) fn incomplete_gangs(&self, placements: &[pb::Placement]) -> BTreeSet<JobId> {
        let mut planned: BTreeMap<&JobId, usize> = BTreeMap::new();
        for p in placements {
            let job = InstanceId::parse(&p.instance_id)
                .ok()
                .and_then(|id| self.instances.get(&id)?.job.as_ref());
            if let Some(j) = job {
                *planned.entry(&j.id).or_default() += 1;
            }
        }
        if planned.is_empty() {
            return BTreeSet::new();
        }
        let mut waiting: BTreeMap<&JobId, usize> = BTreeMap::new();
        for i in self.pending() {
            if let Some(j) = i.job.as_ref().filter(|j| planned.contains_key(&j.id)) {
                *waiting.entry(&j.id).or_default() += 1;
            }
        }
        planned
            .into_iter()
            .filter(|(j, n)| waiting.get(j) != Some(n))
            .map(|(j, _)| j.clone())
            .collect()
    }
}

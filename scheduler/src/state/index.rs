//! The derived indexes: what placement and the gateway ask of the state on every round, kept
//! current by `apply` instead of recomputed from every instance (a fleet holds hundreds of
//! thousands). Never serialized; rebuilt by [`crate::state::ClusterState::reindex`] after a
//! restore.

use std::collections::BTreeSet;
use std::sync::Arc;

use imbl::{HashMap, OrdSet};

use vmcloud_proto::{GpuBinding, GpuId, InstanceId, MigSliceId, NodeId, ProjectId};

use crate::instances::types::{Instance, Market};
use crate::reservations::types::Held;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct StateIndex {
    /// What each node holds.
    pub usage: HashMap<NodeId, Arc<Usage>>,
    /// Pending instances, oldest first.
    pub pending: OrdSet<(i64, InstanceId)>,
    /// Spot instances given notice, by the time their notice runs out, until they are gone
    /// (reclaimed ones still hold capacity until their agent has removed them).
    pub terminating: OrdSet<(i64, InstanceId)>,
    /// Each project's game session while it has one, per household profile (invariant 7: at
    /// most one per project, or per profile in a household).
    pub sessions: HashMap<(ProjectId, Option<String>), InstanceId>,
    /// Each project's instances in the state (live, or ending), by (creation time, id): lists
    /// page through them and trial limits count them without walking every instance.
    pub per_project: HashMap<ProjectId, OrdSet<(i64, InstanceId)>>,
    /// What each project holds in each region (its instances), for quotas.
    pub quota_used: HashMap<(ProjectId, String), crate::quotas::types::Used>,
    /// Each organisation's projects (a billing run's batch finds its organisations' meters
    /// without walking every project).
    pub org_projects: HashMap<vmcloud_proto::OrgId, OrdSet<ProjectId>>,
    /// Each organisation's project names (unique within it), so that a new project's name is
    /// checked without walking the organisation's projects.
    pub project_names: imbl::HashSet<(vmcloud_proto::OrgId, String)>,
    /// Booted warm VMs by class (see [`crate::gaming::warm`]); a launch checks the one it
    /// takes is still idle.
    pub warm: HashMap<crate::gaming::pools::WarmClass, OrdSet<InstanceId>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Usage {
    pub vcpus: u32,
    pub memory_mib: u64,
    /// The GPUs bound whole on the node.
    pub gpus: BTreeSet<GpuId>,
    /// MIG slices bound on the node (see [`crate::nodes::mig`]).
    pub slices: BTreeSet<MigSliceId>,
    /// Capacity held for reservation slots nobody uses yet.
    pub held: Held,
    /// Spot instances holding capacity here.
    pub spot: u32,
    /// Whole GPUs those spot instances hold: capacity on-demand work may take back.
    pub spot_gpus: u32,
    /// The instances on the node (its desired config is built from them).
    pub instances: OrdSet<InstanceId>,
}

/// The whole GPUs `i` holds if it is spot (none otherwise).
pub(crate) fn spot_gpus(i: &Instance) -> u32 {
    if i.market != Market::Spot {
        return 0;
    }
    i.gpus
        .iter()
        .filter(|g| matches!(g, GpuBinding::Whole(_)))
        .count() as u32
}

impl Usage {
    /// Whole GPUs bound to work that is not spot (on-demand and reserved work): what a
    /// preemption cannot free.
    pub fn firm_gpus(&self) -> usize {
        self.gpus.len().saturating_sub(self.spot_gpus as usize)
    }

    pub(crate) fn add(&mut self, i: &Instance) {
        self.instances.insert(i.id.clone());
        self.spot += u32::from(i.market == Market::Spot);
        self.spot_gpus += spot_gpus(i);
        self.vcpus += i.vcpus;
        self.memory_mib += i.memory_mib;
        for g in &i.gpus {
            self.bind(g);
        }
    }

    /// Records a GPU or MIG slice as bound.
    pub fn bind(&mut self, binding: &GpuBinding) {
        match binding {
            GpuBinding::Whole(g) => self.gpus.insert(g.clone()),
            GpuBinding::Slice(s) => self.slices.insert(s.clone()),
        };
    }

    /// Undoes [`Usage::bind`].
    pub fn unbind(&mut self, binding: &GpuBinding) {
        match binding {
            GpuBinding::Whole(g) => self.gpus.remove(g),
            GpuBinding::Slice(s) => self.slices.remove(s),
        };
    }

    pub(crate) fn remove(&mut self, i: &Instance) {
        self.instances.remove(&i.id);
        self.spot = self
            .spot
            .saturating_sub(u32::from(i.market == Market::Spot));
        self.spot_gpus = self.spot_gpus.saturating_sub(spot_gpus(i));
        self.vcpus = self.vcpus.saturating_sub(i.vcpus);
        self.memory_mib = self.memory_mib.saturating_sub(i.memory_mib);
        for g in &i.gpus {
            self.unbind(g);
        }
    }
}

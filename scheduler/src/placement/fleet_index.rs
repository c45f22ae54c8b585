//! The hosts of one snapshot, indexed for placement (stage 0).

use std::collections::HashMap;

use vmcloud_proto::NodeId;

use crate::instances::types::{Instance, Market};
use crate::nodes::types::{Gpu, Node, NodeState};
use crate::placement::plan::Choice;
use crate::state::ClusterState;
use crate::state::index::Usage;

/// The hosts of one snapshot, indexed for placement: by region, and by region and GPU model.
/// Usage is a `Vec` aligned with [`FleetIndex::hosts`], so a decision does no hashing per host.
pub struct FleetIndex<'s> {
    pub hosts: Vec<&'s Node>,
    pub(crate) position: HashMap<&'s NodeId, usize>,
    pub(crate) by_region: HashMap<&'s str, Vec<usize>>,
    pub(crate) by_region_model: HashMap<(&'s str, &'s str), Vec<usize>>,
    /// Whether all of a host's GPUs are one model and none is in MIG mode (then its free count
    /// is arithmetic).
    pub(crate) single_model: Vec<bool>,
    /// Whether a host is ready and in no pool: the common case, checked without touching the
    /// host's record.
    pub(crate) ready_general: Vec<bool>,
    /// What each host offers, in one dense vector: a decision scans thousands of hosts, and
    /// reading this instead of each host's record keeps the scan in cache.
    pub(crate) capacity: Vec<Capacity>,
    /// Per region and GPU model, when the index was built: the most GPUs free on one host,
    /// and how many of its hosts a request with no pool, labels or spread group leaves out.
    pub(crate) gpu_bounds: HashMap<(&'s str, &'s str), GpuBound>,
    /// Per region and GPU model: the hosts with a GPU of the model in MIG mode, and how a
    /// request with no pool, labels or spread group would count the others.
    pub(crate) mig_hosts: HashMap<(&'s str, &'s str), Vec<usize>>,
    pub(crate) non_mig: HashMap<(&'s str, &'s str), HostCounts>,
}

/// Hosts a request with no pool, labels or spread group finds not ready, in a dedicated pool,
/// or ready for it.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct HostCounts {
    pub(crate) not_ready: usize,
    pub(crate) selector: usize,
    pub(crate) ready: usize,
}

/// The GPUs of `node` a request for whole `model` GPUs may be given beside `used` (`None`:
/// nothing bound): of the model, not in MIG mode, healthy, not bound.
pub(crate) fn free_whole<'n>(
    node: &'n Node,
    used: Option<&'n Usage>,
    model: &'n str,
) -> impl Iterator<Item = &'n Gpu> + 'n {
    node.gpus.iter().filter(move |g| {
        g.model == model
            && !g.mig
            && g.unhealthy.is_none()
            && used.is_none_or(|u| !u.gpus.contains(&g.pci_address))
    })
}

/// See [`FleetIndex::gpu_bounds`].
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct GpuBound {
    pub(crate) max_free: usize,
    pub(crate) not_ready: usize,
    pub(crate) selector: usize,
}

/// A host's allocatable vCPUs and memory, and its GPUs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capacity {
    pub vcpus: u32,
    pub memory_mib: u64,
    pub has_gpus: bool,
    /// GPUs given whole (not in MIG mode).
    pub whole_gpus: u32,
}

impl Capacity {
    pub fn of(node: &Node) -> Capacity {
        Capacity {
            vcpus: node.allocatable_vcpus(),
            memory_mib: node.allocatable_memory_mib(),
            has_gpus: !node.gpus.is_empty(),
            whole_gpus: node.whole_gpus() as u32,
        }
    }
}

/// The whole GPUs of `choice` if `instance` is spot.
fn chosen_spot_gpus(choice: &Choice, instance: &Instance) -> u32 {
    if instance.market != Market::Spot {
        return 0;
    }
    choice
        .gpus
        .iter()
        .filter(|g| matches!(g, vmcloud_proto::GpuBinding::Whole(_)))
        .count() as u32
}

impl<'s> FleetIndex<'s> {
    pub fn new(state: &'s ClusterState) -> Self {
        Self::new_in(state, None)
    }

    /// The hosts of one region (`None`: all).
    pub fn new_in(state: &'s ClusterState, region: Option<&str>) -> Self {
        let hosts: Vec<&Node> = state
            .nodes
            .values()
            .filter(|n| region.is_none_or(|r| n.region == r))
            .map(|n| &**n)
            .collect();
        let mut by_region: HashMap<&str, Vec<usize>> = HashMap::new();
        let mut by_region_model: HashMap<(&str, &str), Vec<usize>> = HashMap::new();
        let mut single_model = Vec::with_capacity(hosts.len());
        for (pos, node) in hosts.iter().enumerate() {
            by_region.entry(node.region.as_str()).or_default().push(pos);
            let mut models: Vec<&str> = node.gpus.iter().map(|g| g.model.as_str()).collect();
            models.dedup();
            single_model.push(
                models.len() <= 1 && node.gpus.iter().all(|g| !g.mig && g.unhealthy.is_none()),
            );
            models.sort_unstable();
            models.dedup();
            for model in models {
                by_region_model
                    .entry((node.region.as_str(), model))
                    .or_default()
                    .push(pos);
            }
        }
        let position = hosts.iter().enumerate().map(|(i, n)| (&n.id, i)).collect();
        let ready_general = hosts
            .iter()
            .map(|n| n.state == NodeState::Ready && n.pools.is_empty())
            .collect();
        let capacity = hosts.iter().map(|n| Capacity::of(n)).collect();
        let no_labels = std::collections::BTreeMap::new();
        let mut gpu_bounds: HashMap<(&str, &str), GpuBound> = HashMap::new();
        let mut mig_hosts: HashMap<(&str, &str), Vec<usize>> = HashMap::new();
        let mut non_mig: HashMap<(&str, &str), HostCounts> = HashMap::new();
        for (&(region, model), positions) in &by_region_model {
            let mut bound = GpuBound::default();
            for &pos in positions {
                let node = hosts[pos];
                let in_mig = node.gpus.iter().any(|g| g.mig && g.model == model);
                if in_mig {
                    mig_hosts.entry((region, model)).or_default().push(pos);
                }
                let counts = non_mig.entry((region, model)).or_default();
                if node.state != NodeState::Ready {
                    bound.not_ready += 1;
                    counts.not_ready += usize::from(!in_mig);
                } else if !node.matches(None, &no_labels) {
                    bound.selector += 1;
                    counts.selector += usize::from(!in_mig);
                } else {
                    counts.ready += usize::from(!in_mig);
                }
                let used = state.index.usage.get(&node.id).map(|u| &**u);
                let free = free_whole(node, used, model).count();
                bound.max_free = bound.max_free.max(free);
            }
            gpu_bounds.insert((region, model), bound);
        }
        FleetIndex {
            hosts,
            position,
            by_region,
            by_region_model,
            single_model,
            ready_general,
            capacity,
            gpu_bounds,
            mig_hosts,
            non_mig,
        }
    }

    /// What each host holds, aligned with `hosts`.
    pub fn usage(&self, state: &ClusterState) -> Vec<Usage> {
        self.hosts.iter().map(|n| state.usage(&n.id)).collect()
    }

    pub fn position(&self, node: &NodeId) -> Option<usize> {
        self.position.get(node).copied()
    }

    /// Undoes [`FleetIndex::take`].
    pub fn give_back(&self, usage: &mut [Usage], choice: &Choice, instance: &Instance) {
        if let Some(pos) = self.position(&choice.node) {
            let u = &mut usage[pos];
            u.vcpus -= instance.vcpus;
            u.memory_mib -= instance.memory_mib;
            for g in &choice.gpus {
                u.unbind(g);
            }
            u.spot -= u32::from(instance.market == Market::Spot);
            u.spot_gpus -= chosen_spot_gpus(choice, instance);
        }
    }

    /// Records a decision in `usage`, so later decisions of the same plan see it.
    pub fn take(&self, usage: &mut [Usage], choice: &Choice, instance: &Instance) {
        if let Some(pos) = self.position(&choice.node) {
            let u = &mut usage[pos];
            u.vcpus += instance.vcpus;
            u.memory_mib += instance.memory_mib;
            for g in &choice.gpus {
                u.bind(g);
            }
            u.spot += u32::from(instance.market == Market::Spot);
            u.spot_gpus += chosen_spot_gpus(choice, instance);
            if instance.market == Market::Reserved {
                // It took one of the slots held here.
                u.held = u.held.against(instance, true);
            }
        }
    }
}

//! Hosts (nodes) and their GPUs, and where scheduler replicas are reached, as the replicated
//! state holds them.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use vmcloud_proto::pb;
use vmcloud_proto::{GpuId, MigSliceId, NodeId};

use crate::instances::types::GpuRequest;
use crate::nodes::mig;
use crate::state::index::Usage;

/// Share of a host's hardware threads offered as vCPUs (VPS CPUs are shared).
pub const CPU_OVERCOMMIT: u32 = 4;
/// Memory kept back on every host for the host itself and the hypervisor.
pub const HOST_RESERVED_MEMORY_MIB: u64 = 1024;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ReplicaAddrs {
    /// The agent gateway, HOST:PORT.
    pub gateway: String,
    /// The HTTP API, HOST:PORT.
    pub api: String,
}

/// What placement asks of the state on every round, kept current instead of recomputed from

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeState {
    #[default]
    Ready,
    Cordoned,
    Draining,
    Maintenance,
    Down,
}

impl NodeState {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Ready => "ready",
            NodeState::Cordoned => "cordoned",
            NodeState::Draining => "draining",
            NodeState::Maintenance => "maintenance",
            NodeState::Down => "down",
        }
    }

    pub fn parse(s: &str) -> Option<NodeState> {
        [
            NodeState::Ready,
            NodeState::Cordoned,
            NodeState::Draining,
            NodeState::Maintenance,
            NodeState::Down,
        ]
        .into_iter()
        .find(|n| n.as_str() == s)
    }

    pub(crate) fn from_pb(s: pb::NodeState) -> Option<NodeState> {
        Some(match s {
            pb::NodeState::Unspecified => return None,
            pb::NodeState::Ready => NodeState::Ready,
            pb::NodeState::Cordoned => NodeState::Cordoned,
            pb::NodeState::Draining => NodeState::Draining,
            pb::NodeState::Maintenance => NodeState::Maintenance,
            pb::NodeState::Down => NodeState::Down,
        })
    }

    pub fn to_pb(self) -> pb::NodeState {
        match self {
            NodeState::Ready => pb::NodeState::Ready,
            NodeState::Cordoned => pb::NodeState::Cordoned,
            NodeState::Draining => pb::NodeState::Draining,
            NodeState::Maintenance => pb::NodeState::Maintenance,
            NodeState::Down => pb::NodeState::Down,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Node {
    pub id: NodeId,
    pub region: String,
    pub hostname: String,
    pub cpu_model: String,
    pub cpu_threads: u32,
    pub memory_bytes: u64,
    pub hypervisor_uri: String,
    pub agent_version: String,
    pub agent_git_sha: String,
    pub registered_at_ms: i64,
    /// Generation of this node's desired config; grows whenever what should run there changes.
    pub generation: u64,
    #[serde(default)]
    pub rack: String,
    #[serde(default)]
    pub gpus: Vec<Gpu>,
    #[serde(default)]
    pub state: NodeState,
    /// The operator's reason for the state.
    #[serde(default)]
    pub state_reason: Option<String>,
    /// For a drain: when the host must be empty.
    #[serde(default)]
    pub drain_deadline_ms: Option<i64>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Dedicated pools; empty: the general fleet.
    #[serde(default)]
    pub pools: BTreeSet<String>,
    /// When the host went down (while it is down).
    #[serde(default)]
    pub down_since_ms: Option<i64>,
    /// Down because its agent went silent (the leader's liveness tracker), not by an operator:
    /// jobs and sessions wait for their lost_after, and the host is ready again when its
    /// agent comes back.
    #[serde(default)]
    pub down_by_liveness: bool,
    /// The host's address on the underlay: where other hosts send its tenant networks' VXLAN
    /// traffic (none: it carries no VXLAN).
    #[serde(default)]
    pub underlay_ipv4: Option<std::net::Ipv4Addr>,
    /// The host's IPv6 /64 (its first address): its instances' addresses are in it.
    #[serde(default)]
    pub ipv6_prefix: Option<std::net::Ipv6Addr>,
    /// A partner's host (it joined with the partner's token): it stays in the partner's POPs.
    #[serde(default)]
    pub partner: Option<String>,
}

/// One GPU of a host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gpu {
    pub model: String,
    pub memory_mib: u64,
    pub pci_address: GpuId,
    pub numa_node: u32,
    /// GPUs joined by NVLink share a group (0: none).
    pub nvlink_group: u32,
    /// MIG mode is on: given out only as MIG slices, never whole.
    #[serde(default)]
    pub mig: bool,
    /// Why its agent will not give it out (failed health check, lost, ECC errors); none:
    /// healthy. Placement skips it; what holds it keeps it.
    #[serde(default)]
    pub unhealthy: Option<String>,
}

impl TryFrom<pb::GpuDevice> for Gpu {
    type Error = vmcloud_proto::ids::IdError;

    fn try_from(g: pb::GpuDevice) -> Result<Self, Self::Error> {
        Ok(Gpu {
            model: g.model,
            memory_mib: g.memory_mib,
            pci_address: GpuId::parse(&g.pci_address)?,
            numa_node: g.numa_node,
            nvlink_group: g.nvlink_group,
            mig: g.mig_mode,
            unhealthy: None,
        })
    }
}

impl Node {
    /// A node first registered at `at`, with nothing known of it yet.
    pub(crate) fn new(id: NodeId, at: i64) -> Node {
        Node {
            id,
            region: String::new(),
            hostname: String::new(),
            cpu_model: String::new(),
            cpu_threads: 0,
            memory_bytes: 0,
            hypervisor_uri: String::new(),
            agent_version: String::new(),
            agent_git_sha: String::new(),
            registered_at_ms: at,
            generation: 0,
            rack: String::new(),
            gpus: Vec::new(),
            state: NodeState::default(),
            state_reason: None,
            drain_deadline_ms: None,
            labels: BTreeMap::new(),
            pools: BTreeSet::new(),
            down_since_ms: None,
            down_by_liveness: false,
            underlay_ipv4: None,
            ipv6_prefix: None,
            partner: None,
        }
    }

    /// What the agent says of its host at registration.
    pub(crate) fn take_inventory(&mut self, inv: pb::HostInventory, build: pb::BuildInfo) {
        self.region = inv.region;
        self.hostname = inv.hostname;
        self.cpu_model = inv.cpu_model;
        self.cpu_threads = inv.cpu_threads;
        self.memory_bytes = inv.memory_bytes;
        self.hypervisor_uri = inv.hypervisor_uri;
        self.rack = inv.rack;
        self.underlay_ipv4 = inv.underlay_ipv4.parse().ok();
        self.ipv6_prefix = parse_prefix64(&inv.ipv6_prefix);
        // A GPU whose address is not one is never given out (the agent reports what NVML
        // says; this does not happen with a real driver).
        self.gpus = inv
            .gpus
            .into_iter()
            .filter_map(|g| match Gpu::try_from(g) {
                Ok(g) => Some(g),
                Err(e) => {
                    tracing::warn!(node = %self.id, error = %e, "GPU left out of the inventory");
                    None
                }
            })
            .collect();
        self.agent_version = build.version;
        self.agent_git_sha = build.git_sha;
    }

    /// GPUs that can be given out whole (not in MIG mode).
    pub fn whole_gpus(&self) -> usize {
        self.gpus.iter().filter(|g| !g.mig).count()
    }

    /// Whether MIG slice `binding` may be bound here for `req` beside what `used` holds: its
    /// GPU is in MIG mode and of the model, the profile is one of the GPU's, the position is
    /// allowed and free (invariant 3 for slices).
    pub fn slice_fits(&self, used: &Usage, req: &GpuRequest, slice: &MigSliceId) -> bool {
        let Some(gpu) = self.gpus.iter().find(|g| {
            g.pci_address == slice.gpu && g.mig && g.model == req.model && g.unhealthy.is_none()
        }) else {
            return false;
        };
        if req.mig_profile.as_deref() != Some(slice.profile.as_str()) {
            return false;
        }
        let Some(profile) = mig::profile(&gpu.model, gpu.memory_mib, &slice.profile) else {
            return false;
        };
        mig::Layout::of(
            &gpu.model,
            gpu.memory_mib,
            &gpu.pci_address,
            mig::slices_on(&used.slices, &gpu.pci_address),
        )
        .and_then(|layout| layout.with(&profile, slice.start))
        .is_some()
    }

    /// Whether a workload asking for `pool` and `selector` may run here (state aside).
    pub fn matches(&self, pool: Option<&str>, selector: &BTreeMap<String, String>) -> bool {
        let pool_ok = match pool {
            None => self.pools.is_empty(),
            Some(p) => self.pools.contains(p),
        };
        pool_ok && selector.iter().all(|(k, v)| self.labels.get(k) == Some(v))
    }

    pub fn allocatable_vcpus(&self) -> u32 {
        self.cpu_threads.saturating_mul(CPU_OVERCOMMIT)
    }

    pub fn allocatable_memory_mib(&self) -> u64 {
        (self.memory_bytes / (1024 * 1024)).saturating_sub(HOST_RESERVED_MEMORY_MIB)
    }
}

/// A /64 as a host reports it (`2001:db8:0:7::/64`): its first address; `None` for anything
/// else.
pub fn parse_prefix64(text: &str) -> Option<std::net::Ipv6Addr> {
    let (ip, len) = text.trim().split_once('/')?;
    let ip: std::net::Ipv6Addr = ip.parse().ok()?;
    (len == "64" && u128::from(ip) & u128::from(u64::MAX) == 0).then_some(ip)
}

/// An instance's address in its host's /64: the prefix and the EUI-64 interface id of its MAC.
pub fn ipv6_of(prefix: std::net::Ipv6Addr, mac: &str) -> Option<std::net::Ipv6Addr> {
    let bytes: Vec<u8> = mac
        .split(':')
        .map(|b| u8::from_str_radix(b, 16))
        .collect::<Result<_, _>>()
        .ok()?;
    let [a, b, c, d, e, f] = <[u8; 6]>::try_from(bytes).ok()?;
    let id = u64::from_be_bytes([a ^ 0x02, b, c, 0xff, 0xfe, d, e, f]);
    Some(std::net::Ipv6Addr::from(
        u128::from(prefix) | u128::from(id),
    ))
}

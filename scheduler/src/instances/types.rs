//! Instances: VMs of every kind (VPS, GPU, job members, game sessions), as the replicated
//! state holds them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use vmcloud_proto::pb;
use vmcloud_proto::{GpuBinding, InstanceId, NodeId, ProjectId, ReservationId};

use crate::jobs::types::JobSpec;
use crate::sessions::types::SessionSpec;

/// Notice a spot instance gets before it is reclaimed, unless it asked for another.
pub const DEFAULT_PREEMPTION_NOTICE_S: u32 = 120;
/// Notices kept per instance (the oldest go first).
const MAX_NOTICES: usize = 20;

/// The project warm game VMs belong to until a launch takes one (see
/// [`crate::gaming::warm`]); made by the first fill, in an organisation nobody is a member of.
pub const WARM_POOL_PROJECT: &str = "warm-pools";

/// The reason a new instance carries until placement has looked at it.
pub const WAITING_FOR_PLACEMENT: &str = "waiting for placement";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InstanceState {
    /// Waiting for a host (see `pending_reason`).
    Pending,
    /// Placed on a node; its agent has not reported it running yet.
    Scheduled,
    Running,
    Stopped,
    Failed,
    /// Delete requested; waiting for the agent to remove the VM.
    Deleting,
    /// Its host is down: it may be gone or may come back with the host; its owner was told.
    Impaired,
}

impl InstanceState {
    pub fn as_str(self) -> &'static str {
        match self {
            InstanceState::Pending => "pending",
            InstanceState::Scheduled => "scheduled",
            InstanceState::Running => "running",
            InstanceState::Stopped => "stopped",
            InstanceState::Failed => "failed",
            InstanceState::Deleting => "deleting",
            InstanceState::Impaired => "impaired",
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Market {
    #[default]
    #[serde(rename = "on-demand")]
    OnDemand,
    #[serde(rename = "spot")]
    Spot,
    #[serde(rename = "reserved")]
    Reserved,
}

impl Market {
    pub fn as_str(self) -> &'static str {
        match self {
            Market::OnDemand => "on-demand",
            Market::Spot => "spot",
            Market::Reserved => "reserved",
        }
    }
}

impl From<pb::Market> for Market {
    fn from(m: pb::Market) -> Self {
        match m {
            pb::Market::OnDemand => Market::OnDemand,
            pb::Market::Spot => Market::Spot,
            pb::Market::Reserved => Market::Reserved,
        }
    }
}

/// Something an instance's owner was told (a host event, a preemption).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notice {
    pub at_ms: i64,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GpuRequest {
    pub model: String,
    pub count: u32,
    /// A MIG profile ("1g.10gb"): one slice of a GPU in MIG mode (`count` is 1).
    #[serde(default)]
    pub mig_profile: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Instance {
    pub id: InstanceId,
    #[serde(alias = "account")]
    pub project: ProjectId,
    pub name: String,
    pub flavor: String,
    pub image: String,
    pub region: String,
    pub vcpus: u32,
    pub memory_mib: u64,
    pub disk_gib: u64,
    pub gpu: Option<GpuRequest>,
    pub state: InstanceState,
    pub node: Option<NodeId>,
    /// Why it is still pending, when it is.
    pub pending_reason: Option<String>,
    /// The agent's last word on it (e.g. the hypervisor error when failed).
    pub status_message: Option<String>,
    pub created_at_ms: i64,
    pub placed_at_ms: Option<i64>,
    pub running_at_ms: Option<i64>,
    /// The node's desired-config generation that no longer contains this instance.
    pub deleted_in_generation: Option<u64>,
    /// GPUs (whole, or MIG slices) bound to it on its node.
    #[serde(default)]
    pub gpus: Vec<GpuBinding>,
    #[serde(default)]
    pub market: Market,
    /// The dedicated pool it runs in; `None`: the general fleet.
    #[serde(default)]
    pub pool: Option<String>,
    /// Labels its host must carry.
    #[serde(default)]
    pub node_selector: BTreeMap<String, String>,
    /// Instances of one project in one spread group never share a host and spread across
    /// racks.
    #[serde(default)]
    pub spread_group: Option<String>,
    /// Notice it gets before it is reclaimed (spot).
    #[serde(default = "default_notice")]
    pub preemption_notice_s: u32,
    /// When it is stopped: a spot instance's notice runs out, a job member's maximum run
    /// time or a session's tier length is reached.
    #[serde(default)]
    pub terminate_at_ms: Option<i64>,
    /// When its spot capacity was reclaimed (notice given by a preemption or a drain).
    #[serde(default)]
    pub reclaimed_at_ms: Option<i64>,
    /// A reclaimed spot job member being stopped: once its agent has removed it, it waits in
    /// the queue again instead of going away.
    #[serde(default)]
    pub requeue_when_gone: bool,
    /// Cloud-init user-data, served by the agent's metadata endpoint.
    #[serde(default)]
    pub user_data: Option<String>,
    /// OpenSSH public keys, served as the metadata's `public-keys`.
    #[serde(default)]
    pub ssh_keys: Vec<String>,
    /// A pending instance waiting for preempted spot capacity on this node.
    #[serde(default)]
    pub nominated_node: Option<NodeId>,
    /// What its owner was told, oldest first.
    #[serde(default)]
    pub notices: Vec<Notice>,
    /// Market reserved: the reservation it draws on.
    #[serde(default)]
    pub reservation: Option<ReservationId>,
    /// Set when it is one member of an AI batch job.
    #[serde(default)]
    pub job: Option<JobSpec>,
    /// Set when it is a cloud-gaming session.
    #[serde(default)]
    pub session: Option<SessionSpec>,
    /// Its NIC on a private network (see [`crate::networks`]).
    #[serde(default)]
    pub nic: Option<crate::networks::types::InstanceNic>,
    /// The firewalls attached to it (see [`crate::firewalls`]).
    #[serde(default)]
    pub firewalls: Vec<String>,
    /// Its own public IPv4 address (see [`crate::public_ips`]).
    #[serde(default)]
    pub public_ipv4: Option<std::net::Ipv4Addr>,
    /// The floating IPs assigned to it.
    #[serde(default)]
    pub floating_ips: Vec<String>,
    /// Its IPv6 address, in its host's /64 (from its placement on a host that has one).
    #[serde(default)]
    pub ipv6: Option<std::net::Ipv6Addr>,
    /// Billable since (a committed command's time) while its meter runs (see
    /// [`crate::billing::meters`]).
    #[serde(default)]
    pub meter_from_ms: Option<i64>,
    /// Since when its host has been declared down (an SLA incident, see
    /// [`crate::billing::sla`]); cleared when the host is back or the instance deleted.
    #[serde(default)]
    pub outage_since_ms: Option<i64>,
}

fn default_notice() -> u32 {
    DEFAULT_PREEMPTION_NOTICE_S
}

/// What a new instance is made of: its name, its flavor's shape, image and region.
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceSpec {
    pub name: String,
    pub flavor: String,
    pub image: String,
    pub region: String,
    pub vcpus: u32,
    pub memory_mib: u64,
    pub disk_gib: u64,
    pub gpu: Option<GpuRequest>,
}

impl InstanceSpec {
    /// The command that creates an instance of this spec: its id, project, name, flavor,
    /// image, region and shape; everything else (market, pool, networks, GPUs' placement
    /// hints…) at its default, for the caller to set with `pb::CreateInstance { field,
    /// ..spec.create_command(..) }`. The one place the spec's fields become the command's
    /// (API handlers, the demo tenant, benches, tests).
    pub fn create_command(&self, id: &InstanceId, project: &ProjectId) -> pb::CreateInstance {
        pb::CreateInstance {
            instance_id: id.to_string(),
            project_id: project.to_string(),
            name: self.name.clone(),
            flavor: self.flavor.clone(),
            image: self.image.clone(),
            region: self.region.clone(),
            vcpus: self.vcpus,
            memory_mib: self.memory_mib,
            disk_gib: self.disk_gib,
            gpu_model: self
                .gpu
                .as_ref()
                .map(|g| g.model.clone())
                .unwrap_or_default(),
            gpu_count: self.gpu.as_ref().map_or(0, |g| g.count),
            gpu_mig_profile: self
                .gpu
                .as_ref()
                .and_then(|g| g.mig_profile.clone())
                .unwrap_or_default(),
            ..Default::default()
        }
    }
}

impl Instance {
    /// A new on-demand instance of `spec`, pending since `at_ms`, with nothing else set: the
    /// one constructor (handlers, generators and tests change the fields they need with
    /// `Instance { field, ..Instance::pending(..) }`).
    pub fn pending(id: InstanceId, project: ProjectId, spec: InstanceSpec, at_ms: i64) -> Instance {
        let InstanceSpec {
            name,
            flavor,
            image,
            region,
            vcpus,
            memory_mib,
            disk_gib,
            gpu,
        } = spec;
        Instance {
            id,
            project,
            name,
            flavor,
            image,
            region,
            vcpus,
            memory_mib,
            disk_gib,
            gpu,
            state: InstanceState::Pending,
            node: None,
            pending_reason: None,
            status_message: None,
            created_at_ms: at_ms,
            placed_at_ms: None,
            running_at_ms: None,
            deleted_in_generation: None,
            gpus: Vec::new(),
            market: Market::OnDemand,
            pool: None,
            node_selector: BTreeMap::new(),
            spread_group: None,
            preemption_notice_s: DEFAULT_PREEMPTION_NOTICE_S,
            terminate_at_ms: None,
            reclaimed_at_ms: None,
            requeue_when_gone: false,
            user_data: None,
            ssh_keys: Vec::new(),
            nominated_node: None,
            notices: Vec::new(),
            reservation: None,
            job: None,
            session: None,
            nic: None,
            firewalls: Vec::new(),
            public_ipv4: None,
            floating_ips: Vec::new(),
            ipv6: None,
            meter_from_ms: None,
            outage_since_ms: None,
        }
    }

    /// How long it may run once placed: a job member's maximum run time, a session's tier
    /// length; `None`: as long as its owner wants.
    pub fn time_limit_s(&self) -> Option<u32> {
        self.job
            .as_ref()
            .map(|j| j.max_runtime_s)
            .or_else(|| self.session.as_ref().map(|s| s.max_length_s()))
    }

    /// Whether it holds capacity on its node.
    pub fn holds_capacity(&self) -> bool {
        self.node.is_some()
    }

    /// Whether a preemption may pick it: spot, on a node, and not already leaving.
    pub fn preemptible(&self) -> bool {
        self.market == Market::Spot
            && self.node.is_some()
            && self.reclaimed_at_ms.is_none()
            && !matches!(
                self.state,
                InstanceState::Deleting | InstanceState::Impaired
            )
    }

    /// A warm game VM waiting for a launch (see [`crate::gaming::warm`]).
    pub fn is_warm(&self) -> bool {
        self.project.as_str() == WARM_POOL_PROJECT
    }

    /// What it is, for messages: `instance`, `job member` or `session`.
    pub fn kind(&self) -> &'static str {
        if self.job.is_some() {
            "job member"
        } else if self.session.is_some() {
            "session"
        } else {
            "instance"
        }
    }

    pub(crate) fn notify(&mut self, at_ms: i64, message: String) {
        if self.notices.len() >= MAX_NOTICES {
            self.notices.remove(0);
        }
        self.notices.push(Notice { at_ms, message });
    }
}

//! The replicated cluster state and the one function that changes it.
//!
//! [`ClusterState::apply`] is the only writer: it takes one committed [`pb::Command`] and is
//! deterministic (time comes from the command, never from this replica's clock), so every
//! replica that applies the same log holds the same state. [`StateMachine`] plugs it into the
//! consensus crate; readers share it through an `Arc<RwLock<_>>`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, RwLock};

use prost::Message;
use serde::{Deserialize, Serialize};
use vmcloud_proto::pb::{self, command::Body};
use vmcloud_proto::{AccountId, InstanceId, JobId, NodeId, ReservationId};

use crate::reservation::{Held, Reservation};
use crate::session::{SessionSpec, SessionTier};

/// Share of a host's hardware threads offered as vCPUs (VPS CPUs are shared).
pub const CPU_OVERCOMMIT: u32 = 4;
/// Memory kept back on every host for the host itself and the hypervisor.
pub const HOST_RESERVED_MEMORY_MIB: u64 = 1024;
/// Notice a spot instance gets before it is reclaimed, unless it asked for another.
pub const DEFAULT_PREEMPTION_NOTICE_S: u32 = 120;
/// Notices kept per instance (the oldest go first).
const MAX_NOTICES: usize = 20;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClusterState {
    pub accounts: BTreeMap<AccountId, Account>,
    /// API keys by their public id.
    pub api_keys: BTreeMap<String, ApiKey>,
    pub instances: BTreeMap<InstanceId, Instance>,
    pub nodes: BTreeMap<NodeId, Node>,
    /// account → Idempotency-Key → the instance that key created.
    pub idempotency: BTreeMap<AccountId, BTreeMap<String, InstanceId>>,
    /// Capacity held for accounts (see [`crate::reservation`]).
    #[serde(default)]
    pub reservations: BTreeMap<ReservationId, Reservation>,
    /// Join tokens by id (secrets are kept hashed).
    #[serde(default)]
    pub join_tokens: BTreeMap<String, crate::join::JoinToken>,
    /// Where each scheduler replica serves agents and the API (announced at start).
    #[serde(default)]
    pub replicas: BTreeMap<u64, ReplicaAddrs>,
    /// account → Idempotency-Key → the reservation that key created.
    #[serde(default)]
    pub reservation_keys: BTreeMap<AccountId, BTreeMap<String, ReservationId>>,
    /// Index of the last applied log entry.
    pub applied_index: u64,
    /// The proposer's clock when the last entry was proposed: "now" for pure functions of the
    /// state (queue estimates).
    #[serde(default)]
    pub now_ms: i64,
    /// Grows whenever capacity may have appeared (a node registered, an instance's capacity
    /// released), so the placement controller knows when waiting instances may now fit.
    #[serde(default)]
    pub capacity_epoch: u64,
    /// Grows whenever any node's desired-config generation grows (not serialized: the agent
    /// gateway compares it between applied batches to skip looking at every node).
    #[serde(skip)]
    pub generation_epoch: Epoch,
    /// Derived from the maps above and never serialized: kept current by `apply`, rebuilt by
    /// [`ClusterState::reindex`] after a restore or after building a state by hand.
    #[serde(skip)]
    index: StateIndex,
}

/// A change counter kept beside the state, not part of its value: states equal in
/// everything else are equal whatever their counters.
#[derive(Debug, Clone, Copy, Default)]
pub struct Epoch(pub u64);

impl PartialEq for Epoch {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

/// The node `raw` names; the error says whether the name or the node was wrong.
fn node_mut<'a>(
    nodes: &'a mut BTreeMap<NodeId, Node>,
    raw: &str,
) -> Result<(NodeId, &'a mut Node), Rejected> {
    let id = NodeId::parse(raw).map_err(|e| Rejected::Invalid(e.to_string()))?;
    let node = nodes
        .get_mut(&id)
        .ok_or_else(|| Rejected::NotFound(format!("node {id}")))?;
    Ok((id, node))
}

/// Where a scheduler replica can be reached.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaAddrs {
    /// The agent gateway, HOST:PORT.
    pub gateway: String,
    /// The HTTP API, HOST:PORT.
    pub api: String,
}

/// What placement asks of the state on every round, kept current instead of recomputed from
/// every instance (a fleet holds hundreds of thousands).
#[derive(Debug, Clone, Default, PartialEq)]
struct StateIndex {
    /// What each node holds.
    usage: HashMap<NodeId, Usage>,
    /// Pending instances, oldest first.
    pending: BTreeSet<(i64, InstanceId)>,
    /// Spot instances given notice, by the time their notice runs out, until they are gone
    /// (reclaimed ones still hold capacity until their agent has removed them).
    terminating: BTreeSet<(i64, InstanceId)>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Account {
    pub id: AccountId,
    pub name: String,
    pub created_at_ms: i64,
    /// Operators run the fleet (host states, labels, pools, cluster membership).
    #[serde(default)]
    pub operator: bool,
    /// Weight of its fair share of the AI job queues (default 1).
    #[serde(default = "one")]
    pub share_weight: u32,
    /// The gamer's subscription tier: its session launches are served in that order.
    #[serde(default)]
    pub gaming_tier: SessionTier,
}

fn one() -> u32 {
    1
}

/// Largest fair-share weight an operator may give an account.
pub const MAX_SHARE_WEIGHT: u32 = 1000;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiKey {
    pub account: AccountId,
    pub secret_sha256: Vec<u8>,
}

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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mig_profile: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Instance {
    pub id: InstanceId,
    pub account: AccountId,
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
    /// GPUs (PCI addresses on its node) bound to it.
    #[serde(default)]
    pub gpus: Vec<String>,
    #[serde(default)]
    pub market: Market,
    /// The dedicated pool it runs in; `None`: the general fleet.
    #[serde(default)]
    pub pool: Option<String>,
    /// Labels its host must carry.
    #[serde(default)]
    pub node_selector: BTreeMap<String, String>,
    /// Instances of one account in one spread group never share a host and spread across
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reclaimed_at_ms: Option<i64>,
    /// A reclaimed spot job member being stopped: once its agent has removed it, it waits in
    /// the queue again instead of going away.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub requeue_when_gone: bool,
    /// Cloud-init user-data, served by the agent's metadata endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_data: Option<String>,
    /// OpenSSH public keys, served as the metadata's `public-keys`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<SessionSpec>,
}

/// Priority classes of AI batch jobs: a higher class is always served first.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum JobPriority {
    Low,
    #[default]
    Normal,
    High,
}

impl JobPriority {
    pub fn as_str(self) -> &'static str {
        match self {
            JobPriority::Low => "low",
            JobPriority::Normal => "normal",
            JobPriority::High => "high",
        }
    }
}

impl From<pb::JobPriority> for JobPriority {
    fn from(p: pb::JobPriority) -> Self {
        match p {
            pb::JobPriority::Low => JobPriority::Low,
            pb::JobPriority::Normal => JobPriority::Normal,
            pb::JobPriority::High => JobPriority::High,
        }
    }
}

/// What makes an instance a member of an AI batch job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSpec {
    pub id: JobId,
    pub priority: JobPriority,
    pub max_runtime_s: u32,
    /// Members of the job; they start all together or not at all.
    pub gang_size: u32,
    pub member: u32,
}

fn default_notice() -> u32 {
    DEFAULT_PREEMPTION_NOTICE_S
}

impl Instance {
    /// How long it may run once placed: a job member's maximum run time, a session's tier
    /// length; `None`: as long as its owner wants.
    pub fn time_limit_s(&self) -> Option<u32> {
        self.job
            .as_ref()
            .map(|j| j.max_runtime_s)
            .or_else(|| self.session.as_ref().map(|s| s.tier.max_length_s()))
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

/// A host's state, set by operators (and by liveness, issue 6).
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

    fn from_pb(s: pb::NodeState) -> Option<NodeState> {
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
}

/// One GPU of a host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gpu {
    pub model: String,
    pub memory_mib: u64,
    pub pci_address: String,
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

impl From<pb::GpuDevice> for Gpu {
    fn from(g: pb::GpuDevice) -> Self {
        Gpu {
            model: g.model,
            memory_mib: g.memory_mib,
            pci_address: g.pci_address,
            numa_node: g.numa_node,
            nvlink_group: g.nvlink_group,
            mig: g.mig_mode,
            unhealthy: None,
        }
    }
}

impl Node {
    /// A node first registered at `at`, with nothing known of it yet.
    fn new(id: NodeId, at: i64) -> Node {
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
        }
    }

    /// What the agent says of its host at registration.
    fn take_inventory(&mut self, inv: pb::HostInventory, build: pb::BuildInfo) {
        self.region = inv.region;
        self.hostname = inv.hostname;
        self.cpu_model = inv.cpu_model;
        self.cpu_threads = inv.cpu_threads;
        self.memory_bytes = inv.memory_bytes;
        self.hypervisor_uri = inv.hypervisor_uri;
        self.rack = inv.rack;
        self.gpus = inv.gpus.into_iter().map(Gpu::from).collect();
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
    pub fn slice_fits(&self, used: &Usage, req: &GpuRequest, binding: &str) -> bool {
        let Some(slice) = crate::mig::Slice::parse(binding) else {
            return false;
        };
        let Some(gpu) = self.gpus.iter().find(|g| {
            g.pci_address == slice.pci && g.mig && g.model == req.model && g.unhealthy.is_none()
        }) else {
            return false;
        };
        if req.mig_profile.as_deref() != Some(slice.profile) {
            return false;
        }
        let Some(profile) = crate::mig::profile(&gpu.model, gpu.memory_mib, slice.profile) else {
            return false;
        };
        crate::mig::Layout::of(
            &gpu.model,
            gpu.memory_mib,
            &gpu.pci_address,
            crate::mig::slices_on(&used.slices, &gpu.pci_address),
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

/// vCPUs and memory in use on a node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Usage {
    pub vcpus: u32,
    pub memory_mib: u64,
    /// PCI addresses of the GPUs bound whole on the node.
    pub gpus: BTreeSet<String>,
    /// MIG slices bound on the node (`<pci>/<profile>@<start>`, see [`crate::mig`]).
    pub slices: BTreeSet<String>,
    /// Capacity held for reservation slots nobody uses yet.
    pub held: Held,
    /// Spot instances holding capacity here.
    pub spot: u32,
    /// The instances on the node (its desired config is built from them).
    pub instances: BTreeSet<InstanceId>,
}

impl Usage {
    pub(crate) fn add(&mut self, i: &Instance) {
        self.instances.insert(i.id.clone());
        self.spot += u32::from(i.market == Market::Spot);
        self.vcpus += i.vcpus;
        self.memory_mib += i.memory_mib;
        for g in &i.gpus {
            self.bind(g);
        }
    }

    /// Records a GPU or MIG slice as bound.
    pub fn bind(&mut self, binding: &str) {
        if crate::mig::is_slice(binding) {
            self.slices.insert(binding.to_owned());
        } else {
            self.gpus.insert(binding.to_owned());
        }
    }

    /// Undoes [`Usage::bind`].
    pub fn unbind(&mut self, binding: &str) {
        if crate::mig::is_slice(binding) {
            self.slices.remove(binding);
        } else {
            self.gpus.remove(binding);
        }
    }

    fn remove(&mut self, i: &Instance) {
        self.instances.remove(&i.id);
        self.spot = self
            .spot
            .saturating_sub(u32::from(i.market == Market::Spot));
        self.vcpus = self.vcpus.saturating_sub(i.vcpus);
        self.memory_mib = self.memory_mib.saturating_sub(i.memory_mib);
        for g in &i.gpus {
            self.unbind(g);
        }
    }
}

/// What applying a command gives back to its proposer.
#[derive(Debug, Clone)]
pub enum Applied {
    Done,
    Instance(Box<Instance>),
    Reservation(Box<Reservation>),
}

/// A command that was committed but changed nothing, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    #[error("the log entry cannot be decoded")]
    Malformed,
    #[error("{0} already exists")]
    Exists(String),
    #[error("{0} does not exist")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
    /// Valid, but the state does not allow it now (capacity taken, a reservation full).
    #[error("{0}")]
    Conflict(String),
}

pub type ApplyResult = Result<Applied, Rejected>;

impl ClusterState {
    /// Applies one committed command. Deterministic.
    pub fn apply(&mut self, index: u64, command: pb::Command) -> ApplyResult {
        self.applied_index = index;
        let at = command.at_unix_ms;
        self.now_ms = self.now_ms.max(at);
        match command.body.ok_or(Rejected::Malformed)? {
            Body::CreateAccount(c) => self.create_account(c, at),
            Body::AddApiKey(c) => self.add_api_key(c),
            Body::CreateInstance(c) => self.create_instance(c, at),
            Body::PlaceInstances(c) => self.place_instances(c, at),
            Body::DeleteInstance(c) => self.delete_instance(c),
            Body::RegisterNode(c) => self.register_node(c, at),
            Body::ObserveInstances(c) => self.observe_instances(c, at),
            Body::SetNodeState(c) => self.set_node_state(c, at),
            Body::LoseInstances(c) => self.lose_instances(c, at),
            Body::SetGpuHealth(c) => self.set_gpu_health(c),
            Body::SetNodeLabels(c) => self.set_node_labels(c),
            Body::ReclaimInstances(c) => self.reclaim_instances(c, at),
            Body::CreateReservation(c) => self.create_reservation(c, at),
            Body::ExpireReservations(c) => self.expire_reservations(c, at),
            Body::CreateJob(c) => self.create_job(c, at),
            Body::UpdateAccount(c) => self.update_account(c),
            Body::CreateJoinToken(c) => self.create_join_token(c, at),
            Body::UseJoinToken(c) => self.use_join_token(c, at),
            Body::AnnounceReplica(c) => {
                self.replicas.insert(
                    c.replica_id,
                    ReplicaAddrs {
                        gateway: c.gateway_addr,
                        api: c.api_addr,
                    },
                );
                Ok(Applied::Done)
            }
        }
    }

    fn create_account(&mut self, c: pb::CreateAccount, at: i64) -> ApplyResult {
        let id = AccountId::parse(&c.account_id).map_err(|e| Rejected::Invalid(e.to_string()))?;
        if self.accounts.contains_key(&id) {
            return Err(Rejected::Exists(format!("account {id}")));
        }
        self.accounts.insert(
            id.clone(),
            Account {
                id,
                name: c.name,
                created_at_ms: at,
                operator: c.operator,
                share_weight: 1,
                gaming_tier: SessionTier::Standard,
            },
        );
        Ok(Applied::Done)
    }

    fn update_account(&mut self, c: pb::UpdateAccount) -> ApplyResult {
        let id = AccountId::parse(&c.account_id).map_err(|e| Rejected::Invalid(e.to_string()))?;
        let tier = c.gaming_tier.map(|_| SessionTier::from(c.gaming_tier()));
        if c.share_weight
            .is_some_and(|w| !(1..=MAX_SHARE_WEIGHT).contains(&w))
        {
            return Err(Rejected::Invalid(format!(
                "share_weight must be between 1 and {MAX_SHARE_WEIGHT}"
            )));
        }
        let account = self
            .accounts
            .get_mut(&id)
            .ok_or_else(|| Rejected::NotFound(format!("account {id}")))?;
        if let Some(w) = c.share_weight {
            account.share_weight = w;
        }
        if let Some(t) = tier {
            account.gaming_tier = t;
        }
        Ok(Applied::Done)
    }

    fn add_api_key(&mut self, c: pb::AddApiKey) -> ApplyResult {
        let account =
            AccountId::parse(&c.account_id).map_err(|e| Rejected::Invalid(e.to_string()))?;
        if !self.accounts.contains_key(&account) {
            return Err(Rejected::NotFound(format!("account {account}")));
        }
        if self.api_keys.contains_key(&c.key_id) {
            return Err(Rejected::Exists(format!("API key {}", c.key_id)));
        }
        self.api_keys.insert(
            c.key_id,
            ApiKey {
                account,
                secret_sha256: c.secret_sha256,
            },
        );
        Ok(Applied::Done)
    }

    fn create_instance(&mut self, c: pb::CreateInstance, at: i64) -> ApplyResult {
        let id = InstanceId::parse(&c.instance_id).map_err(|e| Rejected::Invalid(e.to_string()))?;
        let account =
            AccountId::parse(&c.account_id).map_err(|e| Rejected::Invalid(e.to_string()))?;
        if !self.accounts.contains_key(&account) {
            return Err(Rejected::NotFound(format!("account {account}")));
        }
        if !c.idempotency_key.is_empty()
            && let Some(instance) = self
                .idempotency
                .get(&account)
                .and_then(|keys| keys.get(&c.idempotency_key))
                .and_then(|id| self.instances.get(id))
        {
            return Ok(Applied::Instance(Box::new(instance.clone())));
        }
        if self.instances.contains_key(&id) {
            return Err(Rejected::Exists(format!("instance {id}")));
        }
        let market = c.market();
        let idempotency_key = c.idempotency_key.clone();
        let instance = Instance {
            id: id.clone(),
            account,
            name: c.name,
            flavor: c.flavor,
            image: c.image,
            region: c.region,
            vcpus: c.vcpus,
            memory_mib: c.memory_mib,
            disk_gib: c.disk_gib,
            gpu: (c.gpu_count > 0).then_some(GpuRequest {
                model: c.gpu_model,
                count: c.gpu_count,
                mig_profile: (!c.gpu_mig_profile.is_empty()).then_some(c.gpu_mig_profile),
            }),
            state: InstanceState::Pending,
            node: None,
            pending_reason: Some(crate::placement::WAITING_FOR_PLACEMENT.into()),
            status_message: None,
            created_at_ms: at,
            placed_at_ms: None,
            running_at_ms: None,
            deleted_in_generation: None,
            gpus: Vec::new(),
            market: market.into(),
            pool: (!c.pool.is_empty()).then_some(c.pool),
            node_selector: c.node_selector.into_iter().collect(),
            spread_group: (!c.spread_group.is_empty()).then_some(c.spread_group),
            preemption_notice_s: if c.preemption_notice_s == 0 {
                DEFAULT_PREEMPTION_NOTICE_S
            } else {
                c.preemption_notice_s
            },
            terminate_at_ms: None,
            reclaimed_at_ms: None,
            requeue_when_gone: false,
            user_data: (!c.user_data.is_empty()).then_some(c.user_data),
            ssh_keys: c.ssh_keys,
            nominated_node: None,
            notices: Vec::new(),
            reservation: ReservationId::parse(&c.reservation_id).ok(),
            job: c.job.as_ref().and_then(|j| {
                Some(JobSpec {
                    id: JobId::parse(&j.job_id).ok()?,
                    priority: j.priority().into(),
                    max_runtime_s: j.max_runtime_s,
                    gang_size: j.gang_size.max(1),
                    member: j.member,
                })
            }),
            session: c.session.as_ref().map(|s| SessionSpec {
                tier: s.tier().into(),
                title: s.title.clone(),
                rtt_ms: (s.rtt_ms > 0).then_some(s.rtt_ms),
            }),
        };
        if instance.session.is_some() {
            if instance.job.is_some() {
                return Err(Rejected::Invalid(
                    "a game session is an instance, not a job member".into(),
                ));
            }
            // Invariant 7: one session per account at a time.
            if let Some(other) = crate::session::live_session(self, &instance.account) {
                return Err(Rejected::Conflict(format!(
                    "account {} already has session {} ({}); end it before launching another",
                    instance.account,
                    other.id,
                    if other.state == InstanceState::Deleting {
                        "still ending; try again in a moment"
                    } else {
                        other.state.as_str()
                    }
                )));
            }
        }
        if instance.market == Market::Reserved {
            self.admit_reserved(&instance, at)?;
        }
        if !idempotency_key.is_empty() {
            self.idempotency
                .entry(instance.account.clone())
                .or_default()
                .insert(idempotency_key, id.clone());
        }
        self.index.pending.insert((at, id.clone()));
        self.instances.insert(id, instance.clone());
        Ok(Applied::Instance(Box::new(instance)))
    }

    /// Applies a placement plan, re-checking each placement against the newest state: the plan
    /// was computed on a snapshot, and a placement that no longer fits is dropped (the
    /// instance stays pending and is planned again).
    fn place_instances(&mut self, c: pb::PlaceInstances, at: i64) -> ApplyResult {
        // A job's members start all together or not at all: a plan must place every waiting
        // member, and if one no longer fits, the others are taken back.
        let incomplete = self.incomplete_gangs(&c.placements);
        let mut gangs: BTreeMap<JobId, Vec<InstanceId>> = BTreeMap::new();
        let mut broken: BTreeSet<JobId> = BTreeSet::new();
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
            let Some(used) = self.index.usage.get_mut(&node_id) else {
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
            let gpus_left = node
                .whole_gpus()
                .saturating_sub(used.gpus.len() + p.gpus.len());
            let gpus_ok = match &instance.gpu {
                None => p.gpus.is_empty(),
                Some(req) if req.mig_profile.is_some() => {
                    p.gpus.len() == 1 && node.slice_fits(used, req, &p.gpus[0])
                }
                Some(req) => {
                    gpus_left >= held.gpus as usize && {
                        let distinct: BTreeSet<&String> = p.gpus.iter().collect();
                        distinct.len() == p.gpus.len()
                            && p.gpus.len() == req.count as usize
                            && p.gpus.iter().all(|pci| {
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
            let instance = self.instances.get_mut(&id).expect("checked above");
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
            instance.gpus = p.gpus;
            used.add(instance);
            self.index
                .pending
                .remove(&(instance.created_at_ms, id.clone()));
            instance.state = InstanceState::Scheduled;
            instance.node = Some(node_id.clone());
            instance.nominated_node = None;
            instance.pending_reason = None;
            instance.placed_at_ms = Some(at);
            self.nodes
                .get_mut(&node_id)
                .expect("checked above")
                .generation += 1;
            self.generation_epoch.0 += 1;
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
        for u in c.unplaced {
            let Ok(id) = InstanceId::parse(&u.instance_id) else {
                continue;
            };
            if let Some(instance) = self.instances.get_mut(&id)
                && instance.state == InstanceState::Pending
            {
                instance.pending_reason = Some(u.reason);
            }
        }
        self.preempt(c.preemptions, at);
        Ok(Applied::Done)
    }

    /// Jobs with members in `placements` whose waiting members are not all there.
    fn incomplete_gangs(&self, placements: &[pb::Placement]) -> BTreeSet<JobId> {
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

    /// Takes back a placement made earlier in the same command (a gang that did not fit
    /// whole): the instance is pending again and holds nothing.
    fn unplace(&mut self, id: &InstanceId) {
        let Some(instance) = self.instances.get_mut(id) else {
            return;
        };
        if let Some(u) = instance
            .node
            .as_ref()
            .and_then(|n| self.index.usage.get_mut(n))
        {
            u.remove(instance);
        }
        if let Some(d) = instance.terminate_at_ms.take() {
            self.index.terminating.remove(&(d, id.clone()));
        }
        instance.reclaimed_at_ms = None;
        instance.requeue_when_gone = false;
        instance.gpus.clear();
        instance.node = None;
        instance.placed_at_ms = None;
        instance.state = InstanceState::Pending;
        instance.pending_reason =
            Some("another member of its job no longer fits; planned again".into());
        self.index
            .pending
            .insert((instance.created_at_ms, id.clone()));
    }

    /// Creates every member of an AI batch job at once.
    fn create_job(&mut self, c: pb::CreateJob, at: i64) -> ApplyResult {
        let first = c
            .members
            .first()
            .ok_or_else(|| Rejected::Invalid("a job has at least one member".into()))?;
        let key = (first.account_id.clone(), first.idempotency_key.clone());
        if !key.1.is_empty()
            && let Ok(account) = AccountId::parse(&key.0)
            && let Some(i) = self
                .idempotency
                .get(&account)
                .and_then(|keys| keys.get(&key.1))
                .and_then(|id| self.instances.get(id))
        {
            return Ok(Applied::Instance(Box::new(i.clone())));
        }
        let valid = c.members.iter().all(|m| {
            m.job.is_some()
                && m.session.is_none()
                && m.market() == first.market()
                && m.reservation_id == first.reservation_id
                && m.account_id == key.0
                && InstanceId::parse(&m.instance_id)
                    .is_ok_and(|id| !self.instances.contains_key(&id))
        });
        if !valid {
            return Err(Rejected::Invalid(
                "job members are new instances of one account, one market and one reservation"
                    .into(),
            ));
        }
        // All members or none: what was created before a refusal is taken back.
        let mut first_created = None;
        let mut created: Vec<InstanceId> = Vec::with_capacity(c.members.len());
        for (n, mut m) in c.members.into_iter().enumerate() {
            if n > 0 {
                m.idempotency_key.clear();
            }
            match self.create_instance(m, at) {
                Ok(Applied::Instance(i)) => {
                    created.push(i.id.clone());
                    first_created.get_or_insert(i);
                }
                Ok(_) => {}
                Err(e) => {
                    for id in created {
                        if let Some(i) = self.instances.remove(&id) {
                            self.index.pending.remove(&(i.created_at_ms, id));
                            self.release_slot(&i);
                        }
                    }
                    if let Ok(account) = AccountId::parse(&key.0)
                        && let Some(keys) = self.idempotency.get_mut(&account)
                    {
                        keys.remove(&key.1);
                    }
                    return Err(e);
                }
            }
        }
        Ok(Applied::Instance(
            first_created.expect("one member at least"),
        ))
    }

    /// Gives spot instances their notice so that waiting workloads can take their capacity;
    /// each waiting workload is nominated to its victims' node.
    fn preempt(&mut self, preemptions: Vec<pb::Preemption>, at: i64) {
        let mut victims_for: BTreeMap<InstanceId, (NodeId, u32, i64)> = BTreeMap::new();
        for p in preemptions {
            let (Ok(victim_id), Ok(for_id)) = (
                InstanceId::parse(&p.instance_id),
                InstanceId::parse(&p.for_instance_id),
            ) else {
                continue;
            };
            let waiting = self
                .instances
                .get(&for_id)
                .is_some_and(|i| i.state == InstanceState::Pending && i.market != Market::Spot);
            let Some(victim) = self.instances.get_mut(&victim_id) else {
                continue;
            };
            if !waiting || !victim.preemptible() {
                continue;
            }
            let node_id = victim
                .node
                .clone()
                .expect("preemptible instances are placed");
            let notice = victim.preemption_notice_s;
            let job = victim.job.as_ref().map(|j| j.id.clone());
            let deadline = Self::give_notice(
                &mut self.index.terminating,
                victim,
                at + i64::from(notice) * 1000,
                at,
            );
            victim.notify(
                at,
                format!(
                    "spot capacity reclaimed: this {} stops at {} ({notice} s notice)",
                    victim.kind(),
                    crate::cluster::rfc3339(deadline),
                ),
            );
            if let Some(node) = self.nodes.get_mut(&node_id) {
                node.generation += 1;
                self.generation_epoch.0 += 1;
            }
            // A job runs all together or not at all: its other members stop with it.
            if let Some(job) = job {
                self.reclaim_job(&job, deadline, at);
            }
            let e = victims_for.entry(for_id).or_insert((node_id, 0, deadline));
            e.1 += 1;
            e.2 = e.2.max(deadline);
        }
        for (id, (node, count, until)) in victims_for {
            let instance = self.instances.get_mut(&id).expect("checked above");
            instance.pending_reason = Some(format!(
                "waiting for {count} spot instance(s) on {node} to stop (notice ends {})",
                crate::cluster::rfc3339(until)
            ));
            instance.nominated_node = Some(node);
        }
    }

    /// Gives a spot instance its notice: it stops at `until`, or at its own end when that
    /// comes first. Returns when it stops.
    fn give_notice(
        terminating: &mut BTreeSet<(i64, InstanceId)>,
        instance: &mut Instance,
        until: i64,
        at: i64,
    ) -> i64 {
        instance.reclaimed_at_ms = Some(at);
        if let Some(end) = instance.terminate_at_ms {
            if end <= until {
                return end;
            }
            terminating.remove(&(end, instance.id.clone()));
        }
        instance.terminate_at_ms = Some(until);
        terminating.insert((until, instance.id.clone()));
        until
    }

    /// The members of a spot job that are still running get the same deadline as the one
    /// preempted.
    fn reclaim_job(&mut self, job: &JobId, until: i64, at: i64) {
        let members: Vec<InstanceId> = self
            .instances
            .values()
            .filter(|i| i.job.as_ref().is_some_and(|j| &j.id == job) && i.preemptible())
            .map(|i| i.id.clone())
            .collect();
        for m in members {
            let i = self.instances.get_mut(&m).expect("listed above");
            let deadline = Self::give_notice(&mut self.index.terminating, i, until, at);
            i.notify(
                at,
                format!(
                    "spot capacity reclaimed from job {job}: this member stops at {}",
                    crate::cluster::rfc3339(deadline)
                ),
            );
            if let Some(node) = i.node.as_ref().and_then(|n| self.nodes.get_mut(n)) {
                node.generation += 1;
                self.generation_epoch.0 += 1;
            }
        }
    }

    /// Stops spot instances whose notice has run out: they leave their node's desired config
    /// and their capacity is freed once the agent has removed them.
    fn reclaim_instances(&mut self, c: pb::ReclaimInstances, at: i64) -> ApplyResult {
        for id in c.instance_ids {
            let Ok(id) = InstanceId::parse(&id) else {
                continue;
            };
            let Some(instance) = self.instances.get_mut(&id) else {
                continue;
            };
            if instance.terminate_at_ms.is_none_or(|d| d > at)
                || instance.state == InstanceState::Deleting
            {
                continue;
            }
            // Its own end (run time, session length) may come before a notice.
            let own_end = instance
                .time_limit_s()
                .zip(instance.placed_at_ms)
                .is_some_and(|(limit, placed)| placed + i64::from(limit) * 1000 <= at);
            let reclaimed = instance.reclaimed_at_ms.is_some() && !own_end;
            // (its status, what its owner is told)
            let (status, told) = if reclaimed && instance.job.is_some() {
                // Spot batch work goes back to the queue once its members are gone.
                instance.requeue_when_gone = true;
                let m = "reclaimed: its spot capacity was needed; the job is queued again once its members have stopped";
                (m.to_owned(), m.to_owned())
            } else if reclaimed && instance.session.is_some() {
                let m = "ended: its spot capacity was needed";
                (m.to_owned(), m.to_owned())
            } else if let Some(job) = &instance.job {
                let m = format!(
                    "stopped: job {} reached its maximum run time ({} s)",
                    job.id, job.max_runtime_s
                );
                (m.clone(), m)
            } else if let Some(s) = &instance.session {
                let m = format!(
                    "ended: {} sessions last at most {} h",
                    s.tier.as_str(),
                    s.tier.max_length_s() / 3600
                );
                (m.clone(), m)
            } else {
                (
                    "reclaimed: its spot capacity was needed".to_owned(),
                    "reclaimed: stopped at the end of its notice".to_owned(),
                )
            };
            instance.status_message = Some(status);
            instance.notify(at, told);
            Self::begin_delete(&mut self.nodes, &mut self.generation_epoch, instance);
        }
        Ok(Applied::Done)
    }

    /// Takes an instance that holds capacity out of its node's desired config; it is removed
    /// when its agent reports it gone.
    fn begin_delete(
        nodes: &mut BTreeMap<NodeId, Node>,
        generation_epoch: &mut Epoch,
        instance: &mut Instance,
    ) {
        instance.state = InstanceState::Deleting;
        if let Some(node) = instance.node.as_ref().and_then(|n| nodes.get_mut(n)) {
            node.generation += 1;
            generation_epoch.0 += 1;
            instance.deleted_in_generation = Some(node.generation);
        }
    }

    /// An operator's change of a host's state, and what it means for what runs there.
    fn set_node_state(&mut self, c: pb::SetNodeState, at: i64) -> ApplyResult {
        let state = NodeState::from_pb(c.state())
            .ok_or_else(|| Rejected::Invalid("no node state given".into()))?;
        let (id, node) = node_mut(&mut self.nodes, &c.node_id)?;
        let before = node.state;
        let was_liveness_down = node.down_by_liveness;
        node.state = state;
        node.state_reason = (!c.reason.is_empty()).then_some(c.reason.clone());
        if state != NodeState::Down {
            node.down_since_ms = None;
            node.down_by_liveness = false;
        } else if before != NodeState::Down {
            node.down_since_ms = Some(at);
            node.down_by_liveness = c.by_liveness;
        } else if !c.by_liveness {
            node.down_by_liveness = false;
        }
        node.drain_deadline_ms =
            (state == NodeState::Draining && c.deadline_unix_ms > 0).then_some(c.deadline_unix_ms);
        let deadline = node.drain_deadline_ms;
        if state == NodeState::Ready && before != NodeState::Ready {
            self.capacity_epoch += 1;
        }
        let reason = if c.reason.is_empty() {
            String::new()
        } else {
            format!(" ({})", c.reason)
        };
        if state == before {
            if state == NodeState::Down && was_liveness_down && !c.by_liveness {
                // An operator confirms the host is gone: what waited for its lost_after is
                // lost now.
                let waiting: Vec<InstanceId> = self
                    .instances
                    .values()
                    .filter(|i| {
                        i.node.as_ref() == Some(&id)
                            && i.state != InstanceState::Deleting
                            && (i.job.is_some() || i.session.is_some())
                    })
                    .map(|i| i.id.clone())
                    .collect();
                self.lose(&id, &waiting, &reason, at);
            }
            return Ok(Applied::Done);
        }
        let on_node: Vec<InstanceId> = self
            .instances
            .values()
            .filter(|i| i.node.as_ref() == Some(&id) && i.state != InstanceState::Deleting)
            .map(|i| i.id.clone())
            .collect();
        let mut changed = false;
        let mut lost: Vec<InstanceId> = Vec::new();
        let mut spot_jobs: Vec<(JobId, i64)> = Vec::new();
        for iid in on_node {
            let instance = self.instances.get_mut(&iid).expect("listed above");
            match state {
                NodeState::Down if instance.job.is_some() || instance.session.is_some() => {
                    if c.by_liveness {
                        // Its agent may only be cut off: the leader loses it after its
                        // class's lost_after unless the host comes back first.
                        instance.notify(
                            at,
                            format!("host {id} is down{reason}: this {} is lost unless its host comes back soon", instance.kind()),
                        );
                    } else {
                        lost.push(iid);
                    }
                }
                NodeState::Draining if instance.preemptible() => {
                    // Spot work gets its notice now (cut short by the drain's deadline).
                    let mut until = at + i64::from(instance.preemption_notice_s) * 1000;
                    if let Some(d) = deadline {
                        until = until.min(d.max(at));
                    }
                    let until =
                        Self::give_notice(&mut self.index.terminating, instance, until, at);
                    instance.notify(
                        at,
                        format!(
                            "host {id} is draining{reason}: this spot {} stops at {}",
                            instance.kind(),
                            crate::cluster::rfc3339(until)
                        ),
                    );
                    if let Some(job) = &instance.job {
                        spot_jobs.push((job.id.clone(), until));
                    }
                    changed = true;
                }
                NodeState::Draining => instance.notify(
                    at,
                    match deadline {
                        Some(d) => format!(
                            "host {id} is draining{reason} and must be empty by {}; this instance keeps running until you or an operator stop it (VMs with local disks are not moved)",
                            crate::cluster::rfc3339(d)
                        ),
                        None => format!(
                            "host {id} is draining{reason}; this instance keeps running until you or an operator stop it (VMs with local disks are not moved)"
                        ),
                    },
                ),
                NodeState::Maintenance => instance.notify(
                    at,
                    format!("host {id} is entering maintenance{reason}"),
                ),
                NodeState::Down => {
                    if instance.market == Market::Spot {
                        // Spot work on a lost host is over; if the host comes back, its agent
                        // removes it.
                        instance.status_message = Some(format!("host {id} is down{reason}"));
                        instance.notify(at, format!("host {id} is down{reason}: this spot instance has ended"));
                        Self::begin_delete(&mut self.nodes, &mut self.generation_epoch, instance);
                    } else {
                        // Never silently recreated elsewhere: its disk is on that host.
                        instance.state = InstanceState::Impaired;
                        instance.status_message = Some(format!("host {id} is down{reason}"));
                        instance.notify(
                            at,
                            format!(
                                "host {id} is down{reason}: this instance is impaired; it comes back with the host, or you may delete it and create another"
                            ),
                        );
                    }
                }
                NodeState::Ready if before == NodeState::Down => instance.notify(
                    at,
                    format!("host {id} is back; the instance's state follows its agent's next report"),
                ),
                NodeState::Ready | NodeState::Cordoned => {}
            }
        }
        if changed && let Some(node) = self.nodes.get_mut(&id) {
            node.generation += 1;
            self.generation_epoch.0 += 1;
        }
        for (job, until) in spot_jobs {
            self.reclaim_job(&job, until, at);
        }
        self.lose(&id, &lost, &reason, at);
        // Waiting workloads nominated to a host that no longer takes work look again.
        if state != NodeState::Ready {
            for i in self.instances.values_mut() {
                if i.nominated_node.as_ref() == Some(&id) {
                    i.nominated_node = None;
                    i.pending_reason = Some(crate::placement::WAITING_FOR_PLACEMENT.into());
                }
            }
        }
        Ok(Applied::Done)
    }

    /// The GPUs a node's agent will not give out (the rest are healthy).
    fn set_gpu_health(&mut self, c: pb::SetGpuHealth) -> ApplyResult {
        let (_, node) = node_mut(&mut self.nodes, &c.node_id)?;
        let mut healed = false;
        for gpu in &mut node.gpus {
            let now = c
                .unhealthy
                .iter()
                .find(|u| u.pci_address == gpu.pci_address)
                .map(|u| u.reason.clone());
            healed |= gpu.unhealthy.is_some() && now.is_none();
            gpu.unhealthy = now;
        }
        if healed {
            self.capacity_epoch += 1;
        }
        Ok(Applied::Done)
    }

    fn lose_instances(&mut self, c: pb::LoseInstances, at: i64) -> ApplyResult {
        let id = NodeId::parse(&c.node_id).map_err(|e| Rejected::Invalid(e.to_string()))?;
        let node = self
            .nodes
            .get(&id)
            .ok_or_else(|| Rejected::NotFound(format!("node {id}")))?;
        if node.state != NodeState::Down {
            // The host came back first: its workloads go on.
            return Ok(Applied::Done);
        }
        let ids: Vec<InstanceId> = c
            .instance_ids
            .iter()
            .filter_map(|i| InstanceId::parse(i).ok())
            .filter(|i| {
                self.instances.get(i).is_some_and(|i| {
                    i.node.as_ref() == Some(&id)
                        && i.state != InstanceState::Deleting
                        && (i.job.is_some() || i.session.is_some())
                })
            })
            .collect();
        let reason = if c.reason.is_empty() {
            String::new()
        } else {
            format!(" ({})", c.reason)
        };
        self.lose(&id, &ids, &reason, at);
        Ok(Applied::Done)
    }

    /// Jobs and sessions on a lost host: a session ends (the gamer is better served by a new
    /// launch than by waiting for the host); a job starts again from the queue, all members
    /// together (batch work restarts from its checkpoints). If the host comes back, its
    /// desired config no longer holds them and its agent removes them: one copy of each.
    fn lose(&mut self, id: &NodeId, lost: &[InstanceId], reason: &str, at: i64) {
        let mut requeue: BTreeSet<JobId> = BTreeSet::new();
        for iid in lost {
            let Some(instance) = self.instances.get_mut(iid) else {
                continue;
            };
            if let Some(job) = &instance.job {
                requeue.insert(job.id.clone());
            } else if instance.session.is_some() {
                instance.status_message = Some(format!("host {id} is down{reason}"));
                instance.notify(
                    at,
                    format!("host {id} is down{reason}: this session has ended; launch it again"),
                );
                Self::begin_delete(&mut self.nodes, &mut self.generation_epoch, instance);
            }
        }
        for job in requeue {
            self.capacity_epoch += 1;
            let members: Vec<InstanceId> = self
                .instances
                .values()
                .filter(|i| i.job.as_ref().is_some_and(|j| j.id == job) && i.node.is_some())
                .map(|i| i.id.clone())
                .collect();
            for m in members {
                if let Some(node) = self.instances[&m]
                    .node
                    .as_ref()
                    .and_then(|n| self.nodes.get_mut(n))
                {
                    node.generation += 1;
                    self.generation_epoch.0 += 1;
                }
                self.unplace(&m);
                let i = self.instances.get_mut(&m).expect("listed above");
                i.running_at_ms = None;
                let message = format!(
                    "requeued: host {id} is down{reason}; job {job} starts again when its members fit"
                );
                i.pending_reason = Some(message.clone());
                i.notify(at, message);
            }
        }
    }

    fn set_node_labels(&mut self, c: pb::SetNodeLabels) -> ApplyResult {
        let (_, node) = node_mut(&mut self.nodes, &c.node_id)?;
        node.labels = c.labels.into_iter().collect();
        node.pools = c.pools.into_iter().collect();
        self.capacity_epoch += 1;
        Ok(Applied::Done)
    }

    fn delete_instance(&mut self, c: pb::DeleteInstance) -> ApplyResult {
        let id = InstanceId::parse(&c.instance_id).map_err(|e| Rejected::Invalid(e.to_string()))?;
        let instance = self
            .instances
            .get_mut(&id)
            .filter(|i| i.account.as_str() == c.account_id)
            .ok_or_else(|| Rejected::NotFound(format!("instance {id}")))?;
        match (&instance.node, instance.state) {
            (_, InstanceState::Deleting) => {}
            (None, _) => {
                let removed = self.instances.remove(&id).expect("found above");
                self.index
                    .pending
                    .remove(&(removed.created_at_ms, removed.id.clone()));
                self.release_slot(&removed);
                self.capacity_epoch += 1;
                return Ok(Applied::Instance(Box::new(removed)));
            }
            (Some(_), _) => {
                Self::begin_delete(&mut self.nodes, &mut self.generation_epoch, instance)
            }
        }
        Ok(Applied::Instance(Box::new(self.instances[&id].clone())))
    }

    fn register_node(&mut self, c: pb::RegisterNode, at: i64) -> ApplyResult {
        self.capacity_epoch += 1;
        let id = NodeId::parse(&c.node_id).map_err(|e| Rejected::Invalid(e.to_string()))?;
        let inv = c.inventory.unwrap_or_default();
        let build = c.build.unwrap_or_default();
        self.index.usage.entry(id.clone()).or_default();
        // The inventory is replaced; what operators set (state, labels, pools, drain) and
        // what the node went through (generation, first registration, a down) stay.
        self.nodes
            .entry(id.clone())
            .or_insert_with(|| Node::new(id, at))
            .take_inventory(inv, build);
        Ok(Applied::Done)
    }

    /// Status from a node's agent. Only instances placed on that node are touched: an agent
    /// speaks for its own node only.
    fn observe_instances(&mut self, c: pb::ObserveInstances, at: i64) -> ApplyResult {
        let node = NodeId::parse(&c.node_id).map_err(|e| Rejected::Invalid(e.to_string()))?;
        for status in c.instances {
            let Ok(id) = InstanceId::parse(&status.instance_id) else {
                continue;
            };
            let Some(instance) = self.instances.get_mut(&id) else {
                continue;
            };
            if instance.node.as_ref() != Some(&node) {
                continue;
            }
            let observed = status.state();
            let message = (!status.message.is_empty()).then_some(status.message);
            match (observed, instance.state) {
                (pb::ObservedState::Absent, InstanceState::Deleting) => {
                    if let Some(u) = self.index.usage.get_mut(&node) {
                        u.remove(instance);
                    }
                    if let Some(d) = instance.terminate_at_ms {
                        self.index.terminating.remove(&(d, id.clone()));
                    }
                    self.capacity_epoch += 1;
                    if instance.requeue_when_gone {
                        // A reclaimed spot job member waits in the queue again, in the place
                        // its submission gave it (its job starts when all members are back).
                        instance.state = InstanceState::Pending;
                        instance.node = None;
                        instance.gpus.clear();
                        instance.placed_at_ms = None;
                        instance.running_at_ms = None;
                        instance.terminate_at_ms = None;
                        instance.reclaimed_at_ms = None;
                        instance.requeue_when_gone = false;
                        instance.deleted_in_generation = None;
                        instance.status_message = None;
                        instance.pending_reason = Some(
                            "requeued: its spot capacity was reclaimed; the job starts again when its members fit".into(),
                        );
                        self.index
                            .pending
                            .insert((instance.created_at_ms, id.clone()));
                        continue;
                    }
                    if let Some(removed) = self.instances.remove(&id) {
                        self.release_slot(&removed);
                    }
                }
                (_, InstanceState::Deleting) | (pb::ObservedState::Absent, _) => {}
                (pb::ObservedState::Running, _) => {
                    instance.state = InstanceState::Running;
                    instance.running_at_ms.get_or_insert(at);
                    instance.status_message = message;
                }
                (pb::ObservedState::Stopped, _) => {
                    instance.state = InstanceState::Stopped;
                    instance.status_message = message;
                }
                (pb::ObservedState::Failed, _) => {
                    instance.state = InstanceState::Failed;
                    instance.status_message = message;
                }
                (pb::ObservedState::Unspecified, _) => {}
            }
        }
        Ok(Applied::Done)
    }

    /// Rebuilds the derived index from the maps: after a restore, or after building a state
    /// by hand (generators, tests).
    pub fn reindex(&mut self) {
        let mut index = StateIndex {
            usage: self
                .nodes
                .keys()
                .map(|n| (n.clone(), Usage::default()))
                .collect(),
            pending: BTreeSet::new(),
            terminating: BTreeSet::new(),
        };
        for r in self.reservations.values() {
            for s in r.slots.iter().filter(|s| s.instance.is_none()) {
                index.usage.entry(s.node.clone()).or_default().held.add(r);
            }
        }
        for i in self.instances.values() {
            if let Some(u) = i.node.as_ref().and_then(|n| index.usage.get_mut(n)) {
                u.add(i);
            }
            if i.state == InstanceState::Pending {
                index.pending.insert((i.created_at_ms, i.id.clone()));
            }
            if let Some(d) = i.terminate_at_ms {
                index.terminating.insert((d, i.id.clone()));
            }
        }
        self.index = index;
    }

    /// The capacity held for unused reservation slots on `node`.
    pub(crate) fn held_mut(&mut self, node: &NodeId) -> &mut Held {
        &mut self.index.usage.entry(node.clone()).or_default().held
    }

    /// vCPUs, memory and GPUs held on `node`.
    pub fn usage(&self, node: &NodeId) -> Usage {
        self.index.usage.get(node).cloned().unwrap_or_default()
    }

    /// What every node holds.
    pub fn usage_by_node(&self) -> HashMap<&NodeId, &Usage> {
        self.index.usage.iter().collect()
    }

    /// The earliest time a spot instance's notice runs out, and the instances whose notice
    /// has run out by `now_ms`.
    pub fn notices_ending(&self, now_ms: i64) -> (Option<i64>, Vec<InstanceId>) {
        let running = |id: &InstanceId| {
            self.instances
                .get(id)
                .is_some_and(|i| i.state != InstanceState::Deleting)
        };
        let mut next = None;
        let mut due = Vec::new();
        for (d, id) in &self.index.terminating {
            if !running(id) {
                continue;
            }
            if *d > now_ms {
                next = Some(*d);
                break;
            }
            due.push(id.clone());
        }
        (next, due)
    }

    /// Hosts where spot instances given notice still hold capacity.
    pub fn reclaiming_nodes(&self) -> impl Iterator<Item = &NodeId> {
        self.index.terminating.iter().filter_map(|(_, id)| {
            let i = self.instances.get(id)?;
            (i.market == Market::Spot).then_some(i.node.as_ref()?)
        })
    }

    /// Pending instances, oldest first.
    pub fn pending(&self) -> impl Iterator<Item = &Instance> {
        self.index
            .pending
            .iter()
            .filter_map(|(_, id)| self.instances.get(id))
    }

    /// What should run on `node`: every instance placed there that is not being deleted.
    pub fn desired_config(&self, node: &NodeId) -> Option<pb::DesiredConfig> {
        let n = self.nodes.get(node)?;
        let on_node = self.index.usage.get(node).map(|u| &u.instances);
        let instances = on_node
            .into_iter()
            .flatten()
            .filter_map(|id| self.instances.get(id))
            .filter(|i| i.node.as_ref() == Some(node) && i.state != InstanceState::Deleting)
            .map(|i| pb::DesiredInstance {
                instance_id: i.id.to_string(),
                name: i.name.clone(),
                vcpus: i.vcpus,
                memory_mib: i.memory_mib,
                disk_gib: i.disk_gib,
                image: i.image.clone(),
                gpus: i.gpus.clone(),
                terminate_at_unix_ms: i.terminate_at_ms.unwrap_or(0),
                hostname: i.name.clone(),
                availability_zone: i.region.clone(),
                user_data: i.user_data.clone().unwrap_or_default(),
                ssh_keys: i.ssh_keys.clone(),
                // Owner-driven stop/start and tenant networks are not in the scheduler's model
                // yet; the agent supports them.
                ..Default::default()
            })
            .collect();
        Some(pb::DesiredConfig {
            generation: n.generation,
            instances,
            ..Default::default()
        })
    }

    /// The account an API key belongs to, if `secret` matches its stored hash.
    pub fn authenticate(&self, key_id: &str, secret_sha256: &[u8]) -> Option<&AccountId> {
        self.api_keys
            .get(key_id)
            .filter(|k| k.secret_sha256 == secret_sha256)
            .map(|k| &k.account)
    }
}

/// The cluster state as the consensus crate's state machine.
#[derive(Debug, Clone, Default)]
pub struct SharedState(pub Arc<RwLock<ClusterState>>);

impl SharedState {
    pub fn read(&self) -> std::sync::RwLockReadGuard<'_, ClusterState> {
        self.0.read().expect("cluster state lock poisoned")
    }
}

impl vmcloud_consensus::StateMachine for SharedState {
    type Output = ApplyResult;

    /// The whole state as JSON (versioned by the `Command` types it was built from).
    fn snapshot(&self) -> Vec<u8> {
        serde_json::to_vec(&*self.read()).expect("the cluster state serializes")
    }

    fn restore(&mut self, data: &[u8]) -> Result<(), String> {
        let state: ClusterState = if data.is_empty() {
            ClusterState::default()
        } else {
            serde_json::from_slice(data).map_err(|e| format!("undecodable cluster state: {e}"))?
        };
        let mut state = state;
        state.reindex();
        *self.0.write().expect("cluster state lock poisoned") = state;
        Ok(())
    }

    fn apply(&mut self, index: u64, data: &[u8]) -> ApplyResult {
        let mut state = self.0.write().expect("cluster state lock poisoned");
        match pb::Command::decode(data) {
            Ok(command) => state.apply(index, command),
            Err(_) => {
                state.applied_index = index;
                Err(Rejected::Malformed)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn cmd(at: i64, body: Body) -> pb::Command {
        pb::Command {
            at_unix_ms: at,
            body: Some(body),
        }
    }

    fn state_with_node() -> (ClusterState, AccountId, NodeId) {
        let mut s = ClusterState::default();
        let account = AccountId::parse("acct-1").unwrap();
        let node = NodeId::parse("host-a").unwrap();
        s.apply(
            1,
            cmd(
                1,
                Body::CreateAccount(pb::CreateAccount {
                    account_id: account.to_string(),
                    name: "a".into(),
                    operator: false,
                }),
            ),
        )
        .unwrap();
        s.apply(
            2,
            cmd(
                2,
                Body::RegisterNode(pb::RegisterNode {
                    node_id: node.to_string(),
                    inventory: Some(pb::HostInventory {
                        region: "par".into(),
                        cpu_threads: 1,
                        memory_bytes: 3 * 1024 * 1024 * 1024,
                        ..Default::default()
                    }),
                    build: None,
                }),
            ),
        )
        .unwrap();
        (s, account, node)
    }

    fn create(s: &mut ClusterState, account: &AccountId, memory_mib: u64) -> InstanceId {
        let id = InstanceId::generate();
        s.apply(
            10,
            cmd(
                10,
                Body::CreateInstance(pb::CreateInstance {
                    instance_id: id.to_string(),
                    account_id: account.to_string(),
                    name: "web".into(),
                    region: "par".into(),
                    vcpus: 1,
                    memory_mib,
                    ..Default::default()
                }),
            ),
        )
        .unwrap();
        id
    }

    fn place(s: &mut ClusterState, id: &InstanceId, node: &NodeId) {
        s.apply(
            11,
            cmd(
                11,
                Body::PlaceInstances(pb::PlaceInstances {
                    placements: vec![pb::Placement {
                        instance_id: id.to_string(),
                        node_id: node.to_string(),
                        gpus: vec![],
                    }],
                    unplaced: vec![],
                    preemptions: vec![],
                }),
            ),
        )
        .unwrap();
    }

    fn observe(s: &mut ClusterState, node: &NodeId, id: &InstanceId, state: pb::ObservedState) {
        s.apply(
            12,
            cmd(
                12,
                Body::ObserveInstances(pb::ObserveInstances {
                    node_id: node.to_string(),
                    instances: vec![pb::InstanceStatus {
                        instance_id: id.to_string(),
                        state: state as i32,
                        message: String::new(),
                    }],
                }),
            ),
        )
        .unwrap();
    }

    #[test]
    fn snapshot_restores_the_same_state() {
        use vmcloud_consensus::StateMachine;
        let (mut s, account, node) = state_with_node();
        let id = create(&mut s, &account, 1024);
        place(&mut s, &id, &node);
        s.apply(
            20,
            cmd(
                20,
                Body::CreateInstance(pb::CreateInstance {
                    instance_id: InstanceId::generate().to_string(),
                    account_id: account.to_string(),
                    idempotency_key: "k".into(),
                    ..Default::default()
                }),
            ),
        )
        .unwrap();
        s.apply(
            21,
            cmd(
                21,
                Body::AddApiKey(pb::AddApiKey {
                    account_id: account.to_string(),
                    key_id: "0011223344556677".into(),
                    secret_sha256: vec![7; 32],
                }),
            ),
        )
        .unwrap();
        let original = SharedState(Arc::new(RwLock::new(s)));
        let mut copy = SharedState::default();
        copy.restore(&original.snapshot()).unwrap();
        assert_eq!(*copy.read(), *original.read());
        assert!(
            copy.read()
                .authenticate("0011223344556677", &[7; 32])
                .is_some(),
            "API key hashes survive"
        );
        assert!(copy.restore(b"not json").is_err());
    }

    #[test]
    fn lifecycle_create_place_run_delete() {
        let (mut s, account, node) = state_with_node();
        let id = create(&mut s, &account, 1024);
        assert_eq!(s.instances[&id].state, InstanceState::Pending);
        place(&mut s, &id, &node);
        assert_eq!(s.instances[&id].state, InstanceState::Scheduled);
        assert_eq!(s.nodes[&node].generation, 1);
        assert_eq!(s.desired_config(&node).unwrap().instances.len(), 1);

        observe(&mut s, &node, &id, pb::ObservedState::Running);
        assert_eq!(s.instances[&id].state, InstanceState::Running);
        assert_eq!(s.instances[&id].running_at_ms, Some(12));

        s.apply(
            13,
            cmd(
                13,
                Body::DeleteInstance(pb::DeleteInstance {
                    instance_id: id.to_string(),
                    account_id: account.to_string(),
                }),
            ),
        )
        .unwrap();
        assert_eq!(s.instances[&id].state, InstanceState::Deleting);
        assert_eq!(s.nodes[&node].generation, 2);
        assert!(s.desired_config(&node).unwrap().instances.is_empty());
        observe(&mut s, &node, &id, pb::ObservedState::Absent);
        assert!(!s.instances.contains_key(&id));
    }

    #[test]
    fn placement_that_no_longer_fits_is_dropped() {
        let (mut s, account, node) = state_with_node();
        // 3 GiB host, 1 GiB reserved: room for 2048 MiB.
        let a = create(&mut s, &account, 1536);
        let b = create(&mut s, &account, 1024);
        place(&mut s, &a, &node);
        place(&mut s, &b, &node);
        assert_eq!(s.instances[&a].state, InstanceState::Scheduled);
        assert_eq!(s.instances[&b].state, InstanceState::Pending);
        assert_eq!(s.usage(&node).memory_mib, 1536);
    }

    #[test]
    fn agent_cannot_report_for_another_node() {
        let (mut s, account, node) = state_with_node();
        let id = create(&mut s, &account, 512);
        place(&mut s, &id, &node);
        let other = NodeId::parse("host-b").unwrap();
        observe(&mut s, &other, &id, pb::ObservedState::Failed);
        assert_eq!(s.instances[&id].state, InstanceState::Scheduled);
    }

    #[test]
    fn idempotency_key_returns_the_first_instance() {
        let (mut s, account, _) = state_with_node();
        let mut first = None;
        for _ in 0..2 {
            let r = s
                .apply(
                    5,
                    cmd(
                        5,
                        Body::CreateInstance(pb::CreateInstance {
                            instance_id: InstanceId::generate().to_string(),
                            account_id: account.to_string(),
                            idempotency_key: "k1".into(),
                            ..Default::default()
                        }),
                    ),
                )
                .unwrap();
            let Applied::Instance(i) = r else {
                panic!("expected an instance")
            };
            first.get_or_insert(i.id.clone());
            assert_eq!(Some(&i.id), first.as_ref());
        }
        assert_eq!(s.instances.len(), 1);
    }

    #[test]
    fn deleting_a_pending_instance_removes_it_and_others_cannot_delete() {
        let (mut s, account, _) = state_with_node();
        let id = create(&mut s, &account, 512);
        let del = |acct: &str| {
            cmd(
                14,
                Body::DeleteInstance(pb::DeleteInstance {
                    instance_id: id.to_string(),
                    account_id: acct.into(),
                }),
            )
        };
        assert!(matches!(
            s.apply(14, del("acct-2")),
            Err(Rejected::NotFound(_))
        ));
        s.apply(15, del(account.as_str())).unwrap();
        assert!(s.instances.is_empty());
    }
}

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
use vmcloud_proto::{AccountId, InstanceId, NodeId};

/// Share of a host's hardware threads offered as vCPUs (VPS CPUs are shared).
pub const CPU_OVERCOMMIT: u32 = 4;
/// Memory kept back on every host for the host itself and the hypervisor.
pub const HOST_RESERVED_MEMORY_MIB: u64 = 1024;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClusterState {
    pub accounts: BTreeMap<AccountId, Account>,
    /// API keys by their public id.
    pub api_keys: BTreeMap<String, ApiKey>,
    pub instances: BTreeMap<InstanceId, Instance>,
    pub nodes: BTreeMap<NodeId, Node>,
    /// account → Idempotency-Key → the instance that key created.
    pub idempotency: BTreeMap<AccountId, BTreeMap<String, InstanceId>>,
    /// Index of the last applied log entry.
    pub applied_index: u64,
    /// Grows whenever capacity may have appeared (a node registered, an instance's capacity
    /// released), so the placement controller knows when waiting instances may now fit.
    #[serde(default)]
    pub capacity_epoch: u64,
    /// Derived from the maps above and never serialized: kept current by `apply`, rebuilt by
    /// [`ClusterState::reindex`] after a restore or after building a state by hand.
    #[serde(skip)]
    index: StateIndex,
}

/// What placement asks of the state on every round, kept current instead of recomputed from
/// every instance (a fleet holds hundreds of thousands).
#[derive(Debug, Clone, Default, PartialEq)]
struct StateIndex {
    /// What each node holds.
    usage: HashMap<NodeId, Usage>,
    /// Pending instances, oldest first.
    pending: BTreeSet<(i64, InstanceId)>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Account {
    pub id: AccountId,
    pub name: String,
    pub created_at_ms: i64,
}

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
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GpuRequest {
    pub model: String,
    pub count: u32,
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
}

impl Instance {
    /// Whether it holds capacity on its node.
    pub fn holds_capacity(&self) -> bool {
        self.node.is_some()
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
}

impl From<pb::GpuDevice> for Gpu {
    fn from(g: pb::GpuDevice) -> Self {
        Gpu {
            model: g.model,
            memory_mib: g.memory_mib,
            pci_address: g.pci_address,
            numa_node: g.numa_node,
            nvlink_group: g.nvlink_group,
        }
    }
}

impl Node {
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
    /// PCI addresses of the GPUs bound on the node.
    pub gpus: BTreeSet<String>,
}

impl Usage {
    fn add(&mut self, i: &Instance) {
        self.vcpus += i.vcpus;
        self.memory_mib += i.memory_mib;
        self.gpus.extend(i.gpus.iter().cloned());
    }

    fn remove(&mut self, i: &Instance) {
        self.vcpus = self.vcpus.saturating_sub(i.vcpus);
        self.memory_mib = self.memory_mib.saturating_sub(i.memory_mib);
        for g in &i.gpus {
            self.gpus.remove(g);
        }
    }
}

/// What applying a command gives back to its proposer.
#[derive(Debug, Clone)]
pub enum Applied {
    Done,
    Instance(Box<Instance>),
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
}

pub type ApplyResult = Result<Applied, Rejected>;

impl ClusterState {
    /// Applies one committed command. Deterministic.
    pub fn apply(&mut self, index: u64, command: pb::Command) -> ApplyResult {
        self.applied_index = index;
        let at = command.at_unix_ms;
        match command.body.ok_or(Rejected::Malformed)? {
            Body::CreateAccount(c) => self.create_account(c, at),
            Body::AddApiKey(c) => self.add_api_key(c),
            Body::CreateInstance(c) => self.create_instance(c, at),
            Body::PlaceInstances(c) => self.place_instances(c, at),
            Body::DeleteInstance(c) => self.delete_instance(c),
            Body::RegisterNode(c) => self.register_node(c, at),
            Body::ObserveInstances(c) => self.observe_instances(c, at),
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
            },
        );
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
        if !c.idempotency_key.is_empty() {
            self.idempotency
                .entry(account.clone())
                .or_default()
                .insert(c.idempotency_key.clone(), id.clone());
        }
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
        };
        self.index.pending.insert((at, id.clone()));
        self.instances.insert(id, instance.clone());
        Ok(Applied::Instance(Box::new(instance)))
    }

    /// Applies a placement plan, re-checking each placement against the newest state: the plan
    /// was computed on a snapshot, and a placement that no longer fits is dropped (the
    /// instance stays pending and is planned again).
    fn place_instances(&mut self, c: pb::PlaceInstances, at: i64) -> ApplyResult {
        for p in c.placements {
            let (Ok(id), Ok(node_id)) =
                (InstanceId::parse(&p.instance_id), NodeId::parse(&p.node_id))
            else {
                continue;
            };
            let Some(instance) = self.instances.get(&id) else {
                continue;
            };
            if instance.state != InstanceState::Pending {
                continue;
            }
            let Some(node) = self.nodes.get(&node_id) else {
                continue;
            };
            let Some(used) = self.index.usage.get_mut(&node_id) else {
                continue;
            };
            let gpus_ok = match &instance.gpu {
                None => p.gpus.is_empty(),
                Some(req) => {
                    let distinct: BTreeSet<&String> = p.gpus.iter().collect();
                    distinct.len() == p.gpus.len()
                        && p.gpus.len() == req.count as usize
                        && p.gpus.iter().all(|pci| {
                            !used.gpus.contains(pci)
                                && node
                                    .gpus
                                    .iter()
                                    .any(|g| &g.pci_address == pci && g.model == req.model)
                        })
                }
            };
            // Invariant: no GPU bound twice, no host over its capacity.
            let fits = node.region == instance.region
                && gpus_ok
                && used.vcpus + instance.vcpus <= node.allocatable_vcpus()
                && used.memory_mib + instance.memory_mib <= node.allocatable_memory_mib();
            if !fits {
                continue;
            }
            let instance = self.instances.get_mut(&id).expect("checked above");
            instance.gpus = p.gpus;
            used.add(instance);
            self.index
                .pending
                .remove(&(instance.created_at_ms, id.clone()));
            instance.state = InstanceState::Scheduled;
            instance.node = Some(node_id.clone());
            instance.pending_reason = None;
            instance.placed_at_ms = Some(at);
            self.nodes
                .get_mut(&node_id)
                .expect("checked above")
                .generation += 1;
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
                self.capacity_epoch += 1;
                return Ok(Applied::Instance(Box::new(removed)));
            }
            (Some(node_id), _) => {
                instance.state = InstanceState::Deleting;
                let node = self
                    .nodes
                    .get_mut(node_id)
                    .expect("an instance's node exists");
                node.generation += 1;
                instance.deleted_in_generation = Some(node.generation);
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
        let generation = self.nodes.get(&id).map_or(0, |n| n.generation);
        let registered_at_ms = self.nodes.get(&id).map_or(at, |n| n.registered_at_ms);
        self.nodes.insert(
            id.clone(),
            Node {
                id,
                region: inv.region,
                hostname: inv.hostname,
                cpu_model: inv.cpu_model,
                cpu_threads: inv.cpu_threads,
                memory_bytes: inv.memory_bytes,
                hypervisor_uri: inv.hypervisor_uri,
                agent_version: build.version,
                agent_git_sha: build.git_sha,
                registered_at_ms,
                generation,
                rack: inv.rack,
                gpus: inv.gpus.into_iter().map(Gpu::from).collect(),
            },
        );
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
                    self.instances.remove(&id);
                    self.capacity_epoch += 1;
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
        };
        for i in self.instances.values() {
            if let Some(u) = i.node.as_ref().and_then(|n| index.usage.get_mut(n)) {
                u.add(i);
            }
            if i.state == InstanceState::Pending {
                index.pending.insert((i.created_at_ms, i.id.clone()));
            }
        }
        self.index = index;
    }

    /// vCPUs, memory and GPUs held on `node`.
    pub fn usage(&self, node: &NodeId) -> Usage {
        self.index.usage.get(node).cloned().unwrap_or_default()
    }

    /// What every node holds.
    pub fn usage_by_node(&self) -> HashMap<&NodeId, &Usage> {
        self.index.usage.iter().collect()
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
        let instances = self
            .instances
            .values()
            .filter(|i| i.node.as_ref() == Some(node) && i.state != InstanceState::Deleting)
            .map(|i| pb::DesiredInstance {
                instance_id: i.id.to_string(),
                name: i.name.clone(),
                vcpus: i.vcpus,
                memory_mib: i.memory_mib,
                disk_gib: i.disk_gib,
                image: i.image.clone(),
                gpus: i.gpus.clone(),
            })
            .collect();
        Some(pb::DesiredConfig {
            generation: n.generation,
            instances,
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

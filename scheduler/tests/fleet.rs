//! A replicated state driven through the real `apply` and planner, as the leader's
//! controller drives them: the harness of the scheduler's integration tests.

use vmcloud_proto::pb::{self, command::Body};
use vmcloud_proto::{InstanceId, NodeId};
use vmcloud_scheduler::placement::plan_pending;
use vmcloud_scheduler::state::{ApplyResult, ClusterState};

pub const ACCOUNT: &str = "prj-t";

/// A state and a log position; `at` is the proposer's clock in ms.
pub struct Fleet {
    pub state: ClusterState,
    pub index: u64,
    pub at: i64,
}

impl Fleet {
    pub fn new() -> Fleet {
        let mut f = Fleet {
            state: ClusterState::default(),
            index: 0,
            at: 1_000_000,
        };
        f.apply(Body::CreateProject(pb::CreateProject {
            project_id: ACCOUNT.into(),
            name: "t".into(),
            operator: false,
            ..Default::default()
        }));
        f.unlimited(ACCOUNT);
        f
    }

    /// Lifts `project`'s quotas far above what a simulation asks for (placement is under
    /// test here, not quotas).
    pub fn unlimited(&mut self, project: &str) {
        for region in ["par", "fra", "ams", "lon", "mrs-edge"] {
            self.apply(Body::SetQuota(pb::SetQuota {
                project_id: project.into(),
                region: region.into(),
                limits: Some(pb::QuotaLimits {
                    instances: Some(1_000_000),
                    vcpus: Some(1 << 31),
                    memory_mib: Some(1 << 31),
                    gpus: Some(1_000_000),
                    reservations: Some(1_000_000),
                    ..Default::default()
                }),
            }));
        }
    }

    pub fn apply(&mut self, body: Body) {
        self.try_apply(body).expect("applied");
    }

    /// Applies a command that may be refused.
    pub fn try_apply(&mut self, body: Body) -> ApplyResult {
        self.index += 1;
        self.state.apply(
            self.index,
            pb::Command {
                actor: None,
                request: None,
                at_unix_ms: self.at,
                body: Some(body),
            },
        )
    }

    /// A host in par, in `rack`, with `gpus` H100s in one NVLink group.
    pub fn host(&mut self, id: &str, rack: &str, gpus: u32) -> NodeId {
        self.host_in("par", id, rack, gpus)
    }

    /// [`Fleet::host`] in another region.
    pub fn host_in(&mut self, region: &str, id: &str, rack: &str, gpus: u32) -> NodeId {
        self.apply(Body::RegisterNode(pb::RegisterNode {
            node_id: id.into(),
            inventory: Some(pb::HostInventory {
                region: region.into(),
                rack: rack.into(),
                cpu_threads: 64,
                memory_bytes: 512 << 30,
                gpus: (0..gpus)
                    .map(|g| pb::GpuDevice {
                        model: "H100".into(),
                        memory_mib: 81_920,
                        pci_address: format!("0000:{:02x}:00.0", g + 1),
                        numa_node: 0,
                        nvlink_group: 1,
                        mig_mode: false,
                    })
                    .collect(),
                ..Default::default()
            }),
            build: None,
        }));
        NodeId::parse(id).unwrap()
    }

    pub fn create(&mut self, gpus: u32, tweak: impl FnOnce(&mut pb::CreateInstance)) -> InstanceId {
        let id = InstanceId::generate();
        let mut c = pb::CreateInstance {
            instance_id: id.to_string(),
            project_id: ACCOUNT.into(),
            name: "w".into(),
            region: "par".into(),
            vcpus: 4,
            memory_mib: 8192,
            gpu_model: if gpus > 0 {
                "H100".into()
            } else {
                String::new()
            },
            gpu_count: gpus,
            ..Default::default()
        };
        tweak(&mut c);
        self.apply(Body::CreateInstance(c));
        self.at += 1;
        id
    }

    /// One controller round: plan and apply the plan.
    pub fn place(&mut self) {
        let plan = plan_pending(&self.state, true);
        self.apply(Body::PlaceInstances(plan.to_command()));
    }

    pub fn set_state(&mut self, node: &NodeId, state: pb::NodeState, deadline: i64) {
        self.apply(Body::SetNodeState(pb::SetNodeState {
            node_id: node.to_string(),
            state: state as i32,
            reason: "test".into(),
            deadline_unix_ms: deadline,
            by_liveness: false,
        }));
    }

    pub fn observe(&mut self, node: &NodeId, id: &InstanceId, state: pb::ObservedState) {
        self.apply(Body::ObserveInstances(pb::ObserveInstances {
            node_id: node.to_string(),
            instances: vec![pb::InstanceStatus {
                instance_id: id.to_string(),
                state: state as i32,
                message: String::new(),
            }],
        }));
    }

    pub fn instance(&self, id: &InstanceId) -> &vmcloud_scheduler::instances::types::Instance {
        &self.state.instances[id]
    }
}

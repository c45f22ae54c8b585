//! Property tests: random fleets and random sequences of creates, placements, deletes and
//! new hosts, through the real `apply` and the real placement; after every step the
//! invariants of DESIGN.md §5 (3) hold: no GPU bound twice, no host over its capacity, every
//! bound GPU exists on its host and is of the requested model. And every placement the
//! planner proposes is accepted by apply (planner and verifier agree).
//!
//! proptest prints the minimal failing case and keeps it in the `.proptest-regressions` file
//! beside this one, so it is replayed on every later run.

use std::collections::{BTreeSet, HashSet};

use proptest::prelude::*;
use vmcloud_proto::pb::{self, command::Body};
use vmcloud_proto::{InstanceId, NodeId};
use vmcloud_scheduler::placement::plan_pending;
use vmcloud_scheduler::state::{ClusterState, InstanceState};

const MODELS: [&str; 2] = ["H100", "L40S"];

#[derive(Debug, Clone)]
enum Event {
    /// A host joins: threads, memory GiB, GPUs (model index, count, NVLink group size).
    Host {
        threads: u32,
        memory_gib: u64,
        gpus: Option<(usize, u32, u32)>,
    },
    /// A create: vCPUs, memory MiB, GPU request (model index, count).
    Create {
        vcpus: u32,
        memory_mib: u64,
        gpu: Option<(usize, u32)>,
    },
    /// Delete the n-th instance (modulo), and its VM goes.
    Delete(usize),
    /// Plan and apply.
    Place,
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        1 => (1u32..16, 2u64..64, prop::option::of((0usize..2, 1u32..9, prop_oneof![Just(0u32), Just(2), Just(4)])))
            .prop_map(|(threads, memory_gib, gpus)| Event::Host { threads, memory_gib, gpus }),
        4 => (1u32..8, 256u64..8192, prop::option::of((0usize..2, 1u32..5)))
            .prop_map(|(vcpus, memory_mib, gpu)| Event::Create { vcpus, memory_mib, gpu }),
        1 => any::<usize>().prop_map(Event::Delete),
        3 => Just(Event::Place),
    ]
}

fn command(at: i64, body: Body) -> pb::Command {
    pb::Command {
        at_unix_ms: at,
        body: Some(body),
    }
}

struct World {
    state: ClusterState,
    index: u64,
    hosts: usize,
}

impl World {
    fn apply(&mut self, body: Body) {
        self.index += 1;
        let _ = self
            .state
            .apply(self.index, command(self.index as i64, body));
    }
}

fn check_invariants(state: &ClusterState) -> Result<(), TestCaseError> {
    let mut bound: HashSet<(&NodeId, &String)> = HashSet::new();
    for i in state.instances.values() {
        let Some(node_id) = &i.node else {
            prop_assert!(i.gpus.is_empty(), "an instance without a host holds GPUs");
            continue;
        };
        let node = &state.nodes[node_id];
        match &i.gpu {
            None => prop_assert!(i.gpus.is_empty()),
            Some(req) => {
                prop_assert_eq!(i.gpus.len(), req.count as usize, "GPU count of {}", i.id);
                for pci in &i.gpus {
                    prop_assert!(
                        bound.insert((node_id, pci)),
                        "GPU {pci} on {node_id} bound twice"
                    );
                    let gpu = node.gpus.iter().find(|g| &g.pci_address == pci);
                    prop_assert!(
                        gpu.is_some_and(|g| g.model == req.model),
                        "GPU {pci} missing or of another model"
                    );
                }
            }
        }
    }
    for node in state.nodes.values() {
        let used = state.usage(&node.id);
        prop_assert!(
            used.vcpus <= node.allocatable_vcpus(),
            "{} over its vCPUs",
            node.id
        );
        prop_assert!(
            used.memory_mib <= node.allocatable_memory_mib(),
            "{} over its memory",
            node.id
        );
    }
    // The index kept current by apply equals one rebuilt from scratch.
    let mut rebuilt = state.clone();
    rebuilt.reindex();
    prop_assert!(&rebuilt == state, "the derived index drifted from the maps");
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn placement_never_breaks_the_invariants(events in prop::collection::vec(event(), 1..60)) {
        let mut w = World { state: ClusterState::default(), index: 0, hosts: 0 };
        w.apply(Body::CreateAccount(pb::CreateAccount { account_id: "acct-p".into(), name: "p".into() }));
        for e in events {
            match e {
                Event::Host { threads, memory_gib, gpus } => {
                    let id = format!("h{}", w.hosts);
                    w.hosts += 1;
                    let gpus = gpus.map(|(m, n, group)| (0..n).map(|g| pb::GpuDevice {
                        model: MODELS[m].into(),
                        memory_mib: 1,
                        pci_address: format!("0000:{g:02x}:00.0"),
                        numa_node: g % 2,
                        nvlink_group: g.checked_div(group).map_or(0, |x| x + 1),
                    }).collect()).unwrap_or_default();
                    w.apply(Body::RegisterNode(pb::RegisterNode {
                        node_id: id,
                        inventory: Some(pb::HostInventory {
                            region: "par".into(),
                            cpu_threads: threads,
                            memory_bytes: memory_gib << 30,
                            gpus,
                            ..Default::default()
                        }),
                        build: None,
                    }));
                }
                Event::Create { vcpus, memory_mib, gpu } => {
                    w.apply(Body::CreateInstance(pb::CreateInstance {
                        instance_id: InstanceId::generate().to_string(),
                        account_id: "acct-p".into(),
                        region: "par".into(),
                        vcpus,
                        memory_mib,
                        gpu_model: gpu.map(|(m, _)| MODELS[m].to_owned()).unwrap_or_default(),
                        gpu_count: gpu.map_or(0, |(_, c)| c),
                        ..Default::default()
                    }));
                }
                Event::Delete(n) => {
                    let ids: Vec<_> = w.state.instances.values().map(|i| (i.id.clone(), i.node.clone())).collect();
                    if !ids.is_empty() {
                        let (id, node) = ids[n % ids.len()].clone();
                        w.apply(Body::DeleteInstance(pb::DeleteInstance { instance_id: id.to_string(), account_id: "acct-p".into() }));
                        if let Some(node) = node {
                            w.apply(Body::ObserveInstances(pb::ObserveInstances {
                                node_id: node.to_string(),
                                instances: vec![pb::InstanceStatus { instance_id: id.to_string(), state: pb::ObservedState::Absent as i32, message: String::new() }],
                            }));
                        }
                    }
                }
                Event::Place => {
                    let plan = plan_pending(&w.state, true);
                    let proposed: BTreeSet<InstanceId> = plan.placements.iter().map(|(i, _)| i.clone()).collect();
                    w.apply(Body::PlaceInstances(plan.to_command()));
                    for id in proposed {
                        prop_assert_eq!(w.state.instances[&id].state, InstanceState::Scheduled, "apply refused a planned placement of {}", id);
                    }
                }
            }
            check_invariants(&w.state)?;
        }
    }
}

//! Property tests: random fleets and random sequences of creates (on-demand, spot and
//! reserved), reservations, placements (with preemptions), deletes, new hosts, host state
//! changes and the passing of time (notices running out, reclaims, reservations ending, agents
//! removing VMs), through the real `apply` and the real placement; after every step the
//! invariants of DESIGN.md §5 (3, 4, 5) hold: no GPU bound twice, no host over its capacity,
//! every bound GPU exists on its host and is of the requested model; no MIG slice bound twice
//! (slices of one GPU never overlap, only on GPUs in MIG mode, never a MIG GPU bound whole); nothing is placed on a
//! host that is not ready; reserved capacity is backed (non-spot work plus what is held fits
//! every host, so evicting spot always frees a slot) and a reserved instance with a free slot
//! on a ready host without spot work is placed at once; only spot instances are preempted,
//! and only once their notice has run out (jobs only at their maximum run time, sessions at
//! their tier's length; spot jobs and sessions are preemptible like spot instances); a job's
//! members are all placed or all waiting; a project has at most one game session (7); a plan never stops anything by itself. And every
//! placement the planner proposes is accepted by apply (planner and verifier agree).
//!
//! proptest prints the minimal failing case and keeps it in the `.proptest-regressions` file
//! beside this one, so it is replayed on every later run.

use std::collections::{BTreeSet, HashMap, HashSet};

use proptest::prelude::*;
use vmcloud_proto::pb::{self, command::Body};
use vmcloud_proto::{GpuBinding, GpuId, InstanceId, MigSliceId, NodeId, ReservationId};
use vmcloud_scheduler::instances::types::{InstanceState, Market};
use vmcloud_scheduler::nodes::mig;
use vmcloud_scheduler::nodes::types::{Gpu, NodeState};
use vmcloud_scheduler::placement::plan_pending;
use vmcloud_scheduler::reservations::apply::plan_reservation;
use vmcloud_scheduler::state::ClusterState;

const MODELS: [&str; 2] = ["H100", "L40S"];

/// The MIG profiles of an 80 GB H100 (the memory the generated GPUs have).
const MIG_PROFILES: [&str; 6] = [
    "1g.10gb", "1g.20gb", "2g.20gb", "3g.40gb", "4g.40gb", "7g.80gb",
];

#[derive(Debug, Clone)]
enum Event {
    /// A host joins: threads, memory GiB, GPUs (model index, count, NVLink group size), MIG
    /// mode on (H100 only).
    Host {
        threads: u32,
        memory_gib: u64,
        gpus: Option<(usize, u32, u32)>,
        mig: bool,
    },
    /// A create: vCPUs, memory MiB, GPU request (model index, count), spot.
    Create {
        vcpus: u32,
        memory_mib: u64,
        gpu: Option<(usize, u32)>,
        spot: bool,
    },
    /// A create of one H100 MIG slice: vCPUs, profile index into `MIG_PROFILES`, spot.
    CreateMig {
        vcpus: u32,
        profile: usize,
        spot: bool,
    },
    /// A reservation: slots of (vCPUs, memory MiB, GPU request), how many, lasting seconds.
    Reserve {
        vcpus: u32,
        memory_mib: u64,
        gpu: Option<(usize, u32)>,
        count: u32,
        secs: u32,
    },
    /// A game session launch at a tier (0 standard, 1 Priority+, 2 VIP), one GPU of a model,
    /// on demand or spot.
    Launch { tier: i32, model: usize, spot: bool },
    /// A reserved instance drawing on the n-th reservation (modulo).
    CreateReserved(usize),
    /// An AI job: members, GPUs of each (model index, count), max run time s, priority, on
    /// demand or spot.
    Job {
        members: u32,
        gpu: Option<(usize, u32)>,
        runtime_s: u32,
        priority: i32,
        spot: bool,
    },
    /// Delete the n-th instance (modulo), and its VM goes.
    Delete(usize),
    /// Plan and apply.
    Place,
    /// The n-th host (modulo) goes to a state (index into `HOST_STATES`).
    HostState(usize, usize),
    /// Seconds pass: notices that ran out are reclaimed, agents remove what is deleting.
    Tick(u32),
}

const HOST_STATES: [pb::NodeState; 5] = [
    pb::NodeState::Ready,
    pb::NodeState::Cordoned,
    pb::NodeState::Draining,
    pb::NodeState::Maintenance,
    pb::NodeState::Down,
];

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        1 => (1u32..16, 2u64..64, prop::option::of((0usize..2, 1u32..9, prop_oneof![Just(0u32), Just(2), Just(4)])), prop::bool::weighted(0.3))
            .prop_map(|(threads, memory_gib, gpus, mig)| Event::Host { threads, memory_gib, gpus, mig }),
        2 => (1u32..4, 0usize..6, any::<bool>())
            .prop_map(|(vcpus, profile, spot)| Event::CreateMig { vcpus, profile, spot }),
        4 => (1u32..8, 256u64..8192, prop::option::of((0usize..2, 1u32..5)), any::<bool>())
            .prop_map(|(vcpus, memory_mib, gpu, spot)| Event::Create { vcpus, memory_mib, gpu, spot }),
        1 => (1u32..8, 256u64..8192, prop::option::of((0usize..2, 1u32..5)), 1u32..4, 10u32..600)
            .prop_map(|(vcpus, memory_mib, gpu, count, secs)| Event::Reserve { vcpus, memory_mib, gpu, count, secs }),
        2 => any::<usize>().prop_map(Event::CreateReserved),
        1 => (0i32..3, 0usize..2, any::<bool>()).prop_map(|(tier, model, spot)| Event::Launch { tier, model, spot }),
        2 => (1u32..4, prop::option::of((0usize..2, 1u32..5)), 10u32..400, 0i32..3, any::<bool>())
            .prop_map(|(members, gpu, runtime_s, priority, spot)| Event::Job { members, gpu, runtime_s, priority, spot }),
        1 => any::<usize>().prop_map(Event::Delete),
        3 => Just(Event::Place),
        1 => (any::<usize>(), prop_oneof![4 => Just(0usize), 1 => 1usize..5]).prop_map(|(n, s)| Event::HostState(n, s)),
        1 => (1u32..200).prop_map(Event::Tick),
    ]
}

fn command(at: i64, body: Body) -> pb::Command {
    pb::Command {
        actor: None,
        request: None,
        at_unix_ms: at,
        body: Some(body),
    }
}

struct World {
    state: ClusterState,
    index: u64,
    hosts: usize,
    /// The proposers' clock, ms.
    at: i64,
}

impl World {
    fn apply(&mut self, body: Body) {
        self.index += 1;
        self.at += 1;
        let _ = self.state.apply(self.index, command(self.at, body));
    }

    fn deleting(&self) -> BTreeSet<InstanceId> {
        self.state
            .instances
            .values()
            .filter(|i| i.state == InstanceState::Deleting)
            .map(|i| i.id.clone())
            .collect()
    }
}

fn check_invariants(state: &ClusterState) -> Result<(), TestCaseError> {
    let mut bound: HashSet<(&NodeId, &GpuId)> = HashSet::new();
    let mut slices: HashMap<(&NodeId, &GpuId), (&Gpu, Vec<MigSliceId>)> = HashMap::new();
    for i in state.instances.values() {
        let Some(node_id) = &i.node else {
            prop_assert!(i.gpus.is_empty(), "an instance without a host holds GPUs");
            continue;
        };
        let node = &state.nodes[node_id];
        match &i.gpu {
            None => prop_assert!(i.gpus.is_empty()),
            Some(req) if req.mig_profile.is_some() => {
                prop_assert_eq!(i.gpus.len(), 1, "one slice for {}", i.id);
                let slice = match &i.gpus[0] {
                    GpuBinding::Slice(s) => Some(s),
                    GpuBinding::Whole(_) => None,
                };
                prop_assert!(slice.is_some(), "{} is not a MIG slice", i.gpus[0]);
                let slice = slice.unwrap();
                prop_assert_eq!(Some(slice.profile.as_str()), req.mig_profile.as_deref());
                let gpu = node.gpus.iter().find(|g| g.pci_address == slice.gpu);
                prop_assert!(
                    gpu.is_some_and(|g| g.mig && g.model == req.model),
                    "slice {} on a GPU missing, not in MIG mode or of another model",
                    i.gpus[0]
                );
                let gpu = gpu.unwrap();
                slices
                    .entry((node_id, &gpu.pci_address))
                    .or_insert((gpu, Vec::new()))
                    .1
                    .push(slice.clone());
            }
            Some(req) => {
                prop_assert_eq!(i.gpus.len(), req.count as usize, "GPU count of {}", i.id);
                for b in &i.gpus {
                    let GpuBinding::Whole(pci) = b else {
                        prop_assert!(false, "{b} is a MIG slice, for a whole-GPU request");
                        continue;
                    };
                    prop_assert!(
                        bound.insert((node_id, pci)),
                        "GPU {pci} on {node_id} bound twice"
                    );
                    let gpu = node.gpus.iter().find(|g| &g.pci_address == pci);
                    prop_assert!(
                        gpu.is_some_and(|g| g.model == req.model && !g.mig),
                        "GPU {pci} missing, of another model or in MIG mode"
                    );
                }
            }
        }
    }
    // No MIG slice bound twice: the slices of each GPU overlap in no memory slice and take at
    // most its 7 compute slices, each at a position NVIDIA allows for its profile.
    for ((node, _), (gpu, bound)) in &slices {
        prop_assert!(
            mig::Layout::of(&gpu.model, gpu.memory_mib, &gpu.pci_address, bound).is_some(),
            "MIG slices {:?} on {} of {} overlap or do not fit",
            bound,
            gpu.pci_address,
            node
        );
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
    // A job's members start together: never some placed while others wait (members of a
    // reclaimed spot job that are still stopping are not started).
    let mut gangs: std::collections::HashMap<&vmcloud_proto::JobId, (usize, usize)> =
        Default::default();
    for i in state.instances.values() {
        if let Some(j) = &i.job {
            let g = gangs.entry(&j.id).or_default();
            if i.state == InstanceState::Pending {
                g.0 += 1
            } else if i.state != InstanceState::Deleting {
                g.1 += 1
            }
        }
    }
    for (job, (waiting, started)) in gangs {
        prop_assert!(
            waiting == 0 || started == 0,
            "job {} half started: {} waiting, {} started: {:#?}",
            job,
            waiting,
            started,
            state
                .instances
                .values()
                .filter(|i| i.job.as_ref().is_some_and(|j| &j.id == job))
                .map(|i| (
                    i.state,
                    i.node.clone(),
                    i.reclaimed_at_ms,
                    i.terminate_at_ms,
                    i.pending_reason.clone(),
                    i.notices
                        .iter()
                        .map(|n| n.message.clone())
                        .collect::<Vec<_>>()
                ))
                .collect::<Vec<_>>()
        );
    }
    // Invariant 7: one game session per project at a time.
    let sessions = state
        .instances
        .values()
        .filter(|i| i.session.is_some())
        .count();
    prop_assert!(sessions <= 1, "{} sessions of one project", sessions);
    if let Err(e) = state.check_reservations_backed() {
        prop_assert!(false, "reserved capacity not backed: {}", e);
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
        let mut w = World { state: ClusterState::default(), index: 0, hosts: 0, at: 0 };
        w.apply(Body::CreateProject(pb::CreateProject { project_id: "prj-p".into(), name: "p".into(), ..Default::default() }));
        for e in events {
            match e {
                Event::Host { threads, memory_gib, gpus, mig } => {
                    let id = format!("h{}", w.hosts);
                    w.hosts += 1;
                    let gpus = gpus.map(|(m, n, group)| (0..n).map(|g| pb::GpuDevice {
                        model: MODELS[m].into(),
                        memory_mib: 81920,
                        pci_address: format!("0000:{g:02x}:00.0"),
                        numa_node: g % 2,
                        nvlink_group: g.checked_div(group).map_or(0, |x| x + 1),
                        // Some hosts run part of their H100s in MIG mode.
                        mig_mode: mig && m == 0 && g % 2 == 0,
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
                Event::Create { vcpus, memory_mib, gpu, spot } => {
                    w.apply(Body::CreateInstance(pb::CreateInstance {
                        instance_id: InstanceId::generate().to_string(),
                        project_id: "prj-p".into(),
                        region: "par".into(),
                        vcpus,
                        memory_mib,
                        gpu_model: gpu.map(|(m, _)| MODELS[m].to_owned()).unwrap_or_default(),
                        gpu_count: gpu.map_or(0, |(_, c)| c),
                        market: if spot { pb::Market::Spot as i32 } else { pb::Market::OnDemand as i32 },
                        preemption_notice_s: 60,
                        ..Default::default()
                    }));
                }
                Event::CreateMig { vcpus, profile, spot } => {
                    w.apply(Body::CreateInstance(pb::CreateInstance {
                        instance_id: InstanceId::generate().to_string(),
                        project_id: "prj-p".into(),
                        region: "par".into(),
                        vcpus,
                        memory_mib: 1024,
                        gpu_model: "H100".into(),
                        gpu_count: 1,
                        gpu_mig_profile: MIG_PROFILES[profile].into(),
                        market: if spot { pb::Market::Spot as i32 } else { pb::Market::OnDemand as i32 },
                        preemption_notice_s: 60,
                        ..Default::default()
                    }));
                }
                Event::Reserve { vcpus, memory_mib, gpu, count, secs } => {
                    let mut req = pb::CreateReservation {
                        reservation_id: ReservationId::generate().to_string(),
                        project_id: "prj-p".into(),
                        region: "par".into(),
                        flavor: "f".into(),
                        vcpus,
                        memory_mib,
                        gpu_model: gpu.map(|(m, _)| MODELS[m].to_owned()).unwrap_or_default(),
                        gpu_count: gpu.map_or(0, |(_, c)| c),
                        start_unix_ms: w.at,
                        end_unix_ms: w.at + i64::from(secs) * 1000,
                        count,
                        ..Default::default()
                    };
                    if let Ok(nodes) = plan_reservation(&w.state, &req) {
                        req.slot_nodes = nodes.iter().map(ToString::to_string).collect();
                        w.apply(Body::CreateReservation(req));
                    }
                }
                Event::Launch { tier, model, spot } => {
                    w.apply(Body::CreateInstance(pb::CreateInstance {
                        instance_id: InstanceId::generate().to_string(),
                        project_id: "prj-p".into(),
                        region: "par".into(),
                        vcpus: 2,
                        memory_mib: 2048,
                        gpu_model: MODELS[model].into(),
                        gpu_count: 1,
                        session: Some(pb::GameSession { tier, title: "t".into(), ..Default::default() }),
                        market: if spot { pb::Market::Spot as i32 } else { pb::Market::OnDemand as i32 },
                        preemption_notice_s: 60,
                        ..Default::default()
                    }));
                }
                Event::CreateReserved(n) => {
                    let rsv: Vec<_> = w.state.reservations.values().cloned().collect();
                    if !rsv.is_empty() {
                        let r = &rsv[n % rsv.len()];
                        w.apply(Body::CreateInstance(pb::CreateInstance {
                            instance_id: InstanceId::generate().to_string(),
                            project_id: "prj-p".into(),
                            region: "par".into(),
                            vcpus: r.vcpus,
                            memory_mib: r.memory_mib,
                            gpu_model: r.gpu.as_ref().map(|g| g.model.clone()).unwrap_or_default(),
                            gpu_count: r.gpu.as_ref().map_or(0, |g| g.count),
                            market: pb::Market::Reserved as i32,
                            reservation_id: r.id.to_string(),
                            ..Default::default()
                        }));
                    }
                }
                Event::Job { members, gpu, runtime_s, priority, spot } => {
                    let job = vmcloud_proto::JobId::generate().to_string();
                    w.apply(Body::CreateJob(pb::CreateJob {
                        members: (0..members).map(|n| pb::CreateInstance {
                            instance_id: InstanceId::generate().to_string(),
                            project_id: "prj-p".into(),
                            region: "par".into(),
                            vcpus: 2,
                            memory_mib: 1024,
                            gpu_model: gpu.map(|(m, _)| MODELS[m].to_owned()).unwrap_or_default(),
                            gpu_count: gpu.map_or(0, |(_, c)| c),
                            job: Some(pb::JobSpec { job_id: job.clone(), priority, max_runtime_s: runtime_s, gang_size: members, member: n }),
                            market: if spot { pb::Market::Spot as i32 } else { pb::Market::OnDemand as i32 },
                            preemption_notice_s: 60,
                            ..Default::default()
                        }).collect(),
                    }));
                }
                Event::Delete(n) => {
                    let ids: Vec<_> = w.state.instances.values().map(|i| (i.id.clone(), i.node.clone())).collect();
                    if !ids.is_empty() {
                        let (id, node) = ids[n % ids.len()].clone();
                        w.apply(Body::DeleteInstance(pb::DeleteInstance { instance_id: id.to_string(), project_id: "prj-p".into() }));
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
                    let deleting = w.deleting();
                    w.apply(Body::PlaceInstances(plan.to_command()));
                    for id in proposed {
                        let i = &w.state.instances[&id];
                        prop_assert_eq!(i.state, InstanceState::Scheduled, "apply refused a planned placement of {}", id);
                        let node = &w.state.nodes[i.node.as_ref().unwrap()];
                        prop_assert_eq!(node.state, NodeState::Ready, "{} placed on a host that is not ready", id);
                    }
                    prop_assert_eq!(w.deleting(), deleting, "a plan stopped something by itself");
                    // A reserved instance whose slot's host is ready and has no spot work (so
                    // nothing to evict) is placed by the plan.
                    for i in w.state.pending().filter(|i| i.market == Market::Reserved) {
                        let r = &w.state.reservations[i.reservation.as_ref().unwrap()];
                        for node in r.free_slots().keys() {
                            let n = &w.state.nodes[*node];
                            let spot_there = w.state.instances.values().any(|s| s.market == Market::Spot && s.node.as_ref() == Some(*node));
                            prop_assert!(
                                n.state != NodeState::Ready || spot_there,
                                "reserved {} waits though its slot on {} is free: {:?}", i.id, node, i.pending_reason
                            );
                        }
                    }
                    for (victim, _) in &plan.preemptions {
                        let v = &w.state.instances[victim];
                        prop_assert_eq!(v.market, Market::Spot, "{} is not spot but was preempted", victim);
                        // Its notice, or its own end (job run time, session length) if sooner.
                        let own_end = v.time_limit_s().zip(v.placed_at_ms).map_or(i64::MAX, |(l, p)| p + i64::from(l) * 1000);
                        prop_assert!(v.terminate_at_ms.is_some_and(|t| t >= (w.at + 60_000 - 1).min(own_end)), "{} preempted without its notice", victim);
                    }
                }
                Event::HostState(n, s) => {
                    let nodes: Vec<NodeId> = w.state.nodes.keys().cloned().collect();
                    if !nodes.is_empty() {
                        w.apply(Body::SetNodeState(pb::SetNodeState {
                            node_id: nodes[n % nodes.len()].to_string(),
                            state: HOST_STATES[s] as i32,
                            reason: String::new(),
                            deadline_unix_ms: 0,
                            by_liveness: false,
                        }));
                    }
                }
                Event::Tick(secs) => {
                    w.at += i64::from(secs) * 1000;
                    let (_, ended) = w.state.reservations_ending(w.at);
                    w.apply(Body::ExpireReservations(pb::ExpireReservations {
                        reservation_ids: ended.iter().map(ToString::to_string).collect(),
                    }));
                    let (_, due) = w.state.notices_ending(w.at);
                    let before = w.deleting();
                    w.apply(Body::ReclaimInstances(pb::ReclaimInstances {
                        instance_ids: due.iter().map(ToString::to_string).collect(),
                    }));
                    for id in w.deleting().difference(&before) {
                        let i = &w.state.instances[id];
                        prop_assert!(i.market == Market::Spot || i.job.is_some() || i.session.is_some(), "{} stopped though neither spot, a job nor a session", id);
                        prop_assert!(i.terminate_at_ms.is_some_and(|t| t <= w.at), "{} reclaimed before its notice ran out", id);
                    }
                    // Agents remove what is being deleted.
                    for id in w.deleting() {
                        let node = w.state.instances[&id].node.clone().unwrap();
                        w.apply(Body::ObserveInstances(pb::ObserveInstances {
                            node_id: node.to_string(),
                            instances: vec![pb::InstanceStatus { instance_id: id.to_string(), state: pb::ObservedState::Absent as i32, message: String::new() }],
                        }));
                    }
                }
            }
            check_invariants(&w.state)?;
        }
    }
}

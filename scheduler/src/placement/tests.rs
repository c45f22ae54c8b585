use vmcloud_proto::pb;
use vmcloud_proto::{GpuBinding, GpuId};
use vmcloud_proto::{InstanceId, NodeId, ProjectId};

use crate::instances::types::{GpuRequest, Instance, InstanceSpec};
use crate::nodes::types::{Gpu, Node};
use crate::state::ClusterState;

use crate::instances::types::InstanceState;
use crate::placement::plan::Choice;
use crate::placement::plan::Plan;
use crate::placement::plan_pending;

fn binding(s: &str) -> GpuBinding {
    GpuBinding::parse(s).unwrap()
}

fn node(id: &str, region: &str, threads: u32, mem_gib: u64) -> Node {
    Node {
        id: NodeId::parse(id).unwrap(),
        region: region.into(),
        hostname: id.into(),
        cpu_model: String::new(),
        cpu_threads: threads,
        memory_bytes: mem_gib << 30,
        hypervisor_uri: "test:///default".into(),
        agent_version: String::new(),
        agent_git_sha: String::new(),
        registered_at_ms: 0,
        generation: 0,
        rack: String::new(),
        gpus: Vec::new(),
        state: Default::default(),
        state_reason: None,
        drain_deadline_ms: None,
        labels: Default::default(),
        pools: Default::default(),
        down_since_ms: None,
        down_by_liveness: false,
        underlay_ipv4: None,
        ipv6_prefix: None,
        partner: None,
    }
}

/// A GPU host: `n` GPUs of `model`, NVLink groups of `group` (0: none), two NUMA nodes.
fn gpu_node(id: &str, model: &str, n: u32, group: u32) -> Node {
    let mut node = node(id, "par", 64, 512);
    node.gpus = (0..n)
        .map(|i| Gpu {
            model: model.into(),
            memory_mib: 81920,
            pci_address: GpuId::parse(&format!("0000:{:02x}:00.0", i + 1)).unwrap(),
            numa_node: i / (n / 2).max(1),
            nvlink_group: i.checked_div(group).map_or(0, |g| g + 1),
            mig: false,
            unhealthy: None,
        })
        .collect();
    node
}

fn gpu_pending(model: &str, count: u32, at: i64) -> Instance {
    let mut i = pending("par", 8, 16384, at);
    i.gpu = Some(GpuRequest {
        model: model.into(),
        count,
        mig_profile: None,
    });
    i
}

fn mig_pending(profile: &str, at: i64) -> Instance {
    let mut i = gpu_pending("H100", 1, at);
    i.vcpus = 2;
    i.gpu.as_mut().unwrap().mig_profile = Some(profile.into());
    i
}

fn pending(region: &str, vcpus: u32, memory_mib: u64, at: i64) -> Instance {
    Instance::pending(
        InstanceId::generate(),
        ProjectId::parse("a").unwrap(),
        InstanceSpec {
            name: "x".into(),
            flavor: "f".into(),
            image: "debian-12".into(),
            region: region.into(),
            vcpus,
            memory_mib,
            disk_gib: 10,
            gpu: None,
        },
        at,
    )
}

fn state(nodes: Vec<Node>, instances: Vec<Instance>) -> ClusterState {
    let mut s = ClusterState::default();
    for n in nodes {
        s.nodes.insert(n.id.clone(), std::sync::Arc::new(n));
    }
    for i in instances {
        s.instances.insert(i.id.clone(), std::sync::Arc::new(i));
    }
    s.reindex();
    s
}

#[test]
fn table() {
    struct Case {
        name: &'static str,
        nodes: Vec<Node>,
        instances: Vec<Instance>,
        placed: usize,
        reason: Option<&'static str>,
    }
    let cases = vec![
        Case {
            name: "fits on the only host",
            nodes: vec![node("a", "par", 2, 4)],
            instances: vec![pending("par", 1, 1024, 1)],
            placed: 1,
            reason: None,
        },
        Case {
            name: "no host in region",
            nodes: vec![node("a", "par", 2, 4)],
            instances: vec![pending("fra", 1, 1024, 1)],
            placed: 0,
            reason: Some("no host in region fra yet"),
        },
        Case {
            name: "capacity taken earlier in the same plan counts",
            // 4 GiB - 1 GiB reserved = 3072 MiB: two of 1536 MiB, not three.
            nodes: vec![node("a", "par", 8, 4)],
            instances: vec![
                pending("par", 1, 1536, 1),
                pending("par", 1, 1536, 2),
                pending("par", 1, 1536, 3),
            ],
            placed: 2,
            reason: Some("no host in par with 1 vCPU and 1536 MiB free: 1 full"),
        },
        Case {
            name: "vCPUs are overcommitted 4:1 and no further",
            nodes: vec![node("a", "par", 1, 64)],
            instances: (0..5).map(|i| pending("par", 1, 512, i)).collect(),
            placed: 4,
            reason: Some("no host in par with 1 vCPU and 512 MiB free: 1 full"),
        },
    ];
    for c in cases {
        let s = state(c.nodes, c.instances);
        let plan = plan_pending(&s, true);
        assert_eq!(plan.placements.len(), c.placed, "{}", c.name);
        assert_eq!(
            plan.unplaced.first().map(|(_, r)| r.as_str()),
            c.reason,
            "{}",
            c.name
        );
    }
}

#[test]
fn gpu_requests_explain_why_they_wait() {
    let mut i = pending("par", 16, 1024, 1);
    i.gpu = Some(crate::instances::types::GpuRequest {
        model: "H100".into(),
        count: 1,
        mig_profile: None,
    });
    let s = state(vec![node("a", "par", 2, 4)], vec![i]);
    let plan = plan_pending(&s, true);
    assert_eq!(
        plan.unplaced[0].1,
        "no host in par with 1×H100 free: 1 hosts, 1 without H100, 0 with too few free, 0 without the vCPUs or memory"
    );
}

#[test]
fn gpus_bin_pack_and_stay_local() {
    // Two 8×H100 hosts with NVLink groups of 4; one already has 2 GPUs bound.
    let a = gpu_node("a", "H100", 8, 4);
    let b = gpu_node("b", "H100", 8, 4);
    let mut busy = gpu_pending("H100", 2, 0);
    busy.state = InstanceState::Running;
    busy.node = Some(a.id.clone());
    busy.gpus = vec![binding("0000:01:00.0"), binding("0000:02:00.0")];
    let s = state(
        vec![a, b],
        vec![busy, gpu_pending("H100", 2, 1), gpu_pending("H100", 4, 2)],
    );
    let plan = plan_pending(&s, true);
    assert_eq!(plan.placements.len(), 2);
    // The pair goes where it fills a half-used NVLink group (host a, group 1)…
    let (_, pair) = &plan.placements[0];
    assert_eq!(pair.node.as_str(), "a");
    assert_eq!(
        pair.gpus,
        vec![binding("0000:03:00.0"), binding("0000:04:00.0")]
    );
    // …and the four take a's other whole group, leaving host b entirely free.
    let (_, four) = &plan.placements[1];
    assert_eq!(four.node.as_str(), "a");
    assert_eq!(four.gpus.len(), 4);
    assert!(
        four.gpus.iter().all(|g| !pair.gpus.contains(g)),
        "no GPU bound twice"
    );
}

#[test]
fn mig_slices_pack_onto_mig_gpus_and_whole_requests_avoid_them() {
    // Host m: 4 H100, the first two in MIG mode.
    let mut m = gpu_node("m", "H100", 4, 0);
    m.gpus[0].mig = true;
    m.gpus[1].mig = true;
    let s = state(
        vec![m],
        vec![
            mig_pending("3g.40gb", 1),
            mig_pending("1g.10gb", 2),
            mig_pending("7g.80gb", 3),
            mig_pending("3g.40gb", 4),
            gpu_pending("H100", 3, 5),
            gpu_pending("H100", 2, 6),
        ],
    );
    let plan = plan_pending(&s, true);
    let bound: Vec<String> = plan
        .placements
        .iter()
        .flat_map(|(_, c)| c.gpus.iter().map(ToString::to_string))
        .collect();
    // The 3g and the 1g share GPU 1 (the 1g packs beside the 3g, at the first free
    // position); the 7g takes GPU 2 whole; the second 3g finds no room; the whole-GPU
    // requests see only the two GPUs outside MIG mode.
    assert_eq!(
        bound,
        [
            "0000:01:00.0/3g.40gb@0",
            "0000:01:00.0/1g.10gb@4",
            "0000:02:00.0/7g.80gb@0",
            "0000:03:00.0",
            "0000:04:00.0",
        ]
    );
    let reasons: Vec<&str> = plan.unplaced.iter().map(|(_, r)| r.as_str()).collect();
    assert_eq!(
        reasons,
        [
            "no host in par with a free H100 MIG slice 3g.40gb: 1 hosts, 0 without H100, 0 without one in MIG mode, 1 with no room for the slice, 0 without the vCPUs or memory",
            "no host in par with 3×H100 free: 1 hosts, 0 without H100, 1 with too few free, 0 without the vCPUs or memory",
        ]
    );
    // Apply agrees, and the layout shows on the state.
    let mut applied = s.clone();
    applied
        .apply(
            1,
            pb::Command {
                actor: None,
                request: None,
                at_unix_ms: 10,
                body: Some(pb::command::Body::PlaceInstances(plan.to_command())),
            },
        )
        .unwrap();
    let used = applied.usage(&NodeId::parse("m").unwrap());
    assert_eq!(used.slices.len(), 3);
    assert_eq!(used.gpus.len(), 2);
    // A plan that binds an overlapping slice is refused by apply.
    let mut clash = mig_pending("1g.10gb", 7);
    let clash_id = clash.id.clone();
    clash.pending_reason = None;
    applied
        .instances
        .insert(clash_id.clone(), std::sync::Arc::new(clash));
    applied.reindex();
    let bad = Plan {
        placements: vec![(
            clash_id.clone(),
            Choice {
                node: NodeId::parse("m").unwrap(),
                gpus: vec![binding("0000:01:00.0/1g.10gb@1")],
            },
        )],
        ..Plan::default()
    };
    applied
        .apply(
            2,
            pb::Command {
                actor: None,
                request: None,
                at_unix_ms: 11,
                body: Some(pb::command::Body::PlaceInstances(bad.to_command())),
            },
        )
        .unwrap();
    assert_eq!(applied.instances[&clash_id].state, InstanceState::Pending);
}

#[test]
fn cpu_only_work_stays_off_gpu_hosts() {
    let s = state(
        vec![gpu_node("g", "L40S", 4, 0), node("c", "par", 8, 16)],
        vec![pending("par", 1, 1024, 1)],
    );
    assert_eq!(plan_pending(&s, true).placements[0].1.node.as_str(), "c");
}

#[test]
fn a_gpu_request_that_does_not_fit_says_why() {
    let s = state(
        vec![gpu_node("g", "H100", 8, 8), node("c", "par", 8, 16)],
        vec![gpu_pending("H100", 16, 1)],
    );
    let plan = plan_pending(&s, true);
    assert_eq!(
        plan.unplaced[0].1,
        "no host in par with 16×H100 free: 2 hosts, 1 without H100, 1 with too few free, 0 without the vCPUs or memory"
    );
}

#[test]
fn spreads_to_the_host_with_most_free_memory_and_is_stable() {
    let s = state(
        vec![node("a", "par", 8, 4), node("b", "par", 8, 16)],
        vec![pending("par", 1, 1024, 1)],
    );
    let plan = plan_pending(&s, true);
    assert_eq!(plan.placements[0].1.node.as_str(), "b");
    assert_eq!(plan_pending(&s, true), plan, "placement is deterministic");
}

#[test]
fn recorded_reason_is_not_proposed_again() {
    let mut i = pending("fra", 1, 1024, 1);
    i.pending_reason = Some("no host in region fra yet".into());
    let s = state(vec![node("a", "par", 2, 4)], vec![i]);
    assert!(plan_pending(&s, true).is_empty());
    assert!(
        plan_pending(&s, false).is_empty(),
        "an instance already looked at waits for capacity"
    );
}

/// In a region larger than the sample, CPU work looks at a bounded sample of the hosts that
/// can take it — CPU hosts before any GPU host — and the plan is still a function of the
/// state alone.
#[test]
fn cpu_work_in_a_large_region_scores_a_sample_and_stays_off_gpu_hosts() {
    use crate::placement::select::CPU_SAMPLE;
    let mut nodes: Vec<Node> = (0..CPU_SAMPLE * 4)
        .map(|i| node(&format!("c{i:04}"), "par", 16, 64))
        .collect();
    nodes.extend((0..50).map(|i| gpu_node(&format!("g{i:02}"), "H100", 8, 8)));
    let instances: Vec<Instance> = (0..100).map(|n| pending("par", 2, 4096, n)).collect();
    let s = state(nodes.clone(), instances);
    let plan = plan_pending(&s, true);
    assert_eq!(plan.placements.len(), 100);
    assert!(
        plan.placements
            .iter()
            .all(|(_, c)| c.node.as_str().starts_with('c')),
        "CPU work went to a GPU host while CPU hosts had room"
    );
    // Sampled from different places: the work is spread, not stacked on the first hosts.
    let hosts: std::collections::BTreeSet<&NodeId> =
        plan.placements.iter().map(|(_, c)| &c.node).collect();
    assert!(hosts.len() > 50, "{} hosts for 100 instances", hosts.len());
    assert_eq!(
        plan_pending(&s, true).placements,
        plan.placements,
        "deterministic"
    );

    // Every CPU host full: the work goes to a GPU host (found past the whole CPU pass).
    let full: Vec<Instance> = (0..CPU_SAMPLE * 4)
        .map(|i| {
            let mut f = pending("par", 16, 64 * 1024, i as i64);
            f.state = InstanceState::Running;
            f.node = Some(NodeId::parse(&format!("c{i:04}")).unwrap());
            f
        })
        .chain(std::iter::once(pending("par", 2, 4096, 10_000)))
        .collect();
    let plan = plan_pending(&state(nodes, full), true);
    assert_eq!(plan.placements.len(), 1, "{:?}", plan.unplaced);
    assert!(plan.placements[0].1.node.as_str().starts_with('g'));
}

/// A running instance of `count` GPUs of host `node` (its first free ones from `first`).
fn running_on(
    node: &Node,
    count: u32,
    first: u32,
    market: crate::instances::types::Market,
) -> Instance {
    let mut i = gpu_pending("H100", count, 0);
    i.market = market;
    i.state = InstanceState::Running;
    i.node = Some(node.id.clone());
    i.gpus = (first..first + count)
        .map(|g| binding(&format!("0000:{:02x}:00.0", g + 1)))
        .collect();
    i
}

#[test]
fn on_demand_packs_where_on_demand_runs_and_takes_spot_back_there_rather_than_start_a_whole_host() {
    use crate::instances::types::Market;
    // Host a: 6 GPUs of on-demand work and 2 of spot. Host b: 4 of spot, 4 free. Host c: empty.
    let (a, b, c) = (
        gpu_node("a", "H100", 8, 8),
        gpu_node("b", "H100", 8, 8),
        gpu_node("c", "H100", 8, 8),
    );
    let firm = running_on(&a, 6, 0, Market::OnDemand);
    let spot_a = running_on(&a, 2, 6, Market::Spot);
    let spot_b = running_on(&b, 4, 0, Market::Spot);
    let spot_a_id = spot_a.id.clone();
    // A 1-GPU on-demand request: free GPUs are only on b and c, where no on-demand work runs.
    // Starting either would leave no whole host for an 8-GPU request; host a's spot is taken
    // back instead (with notice), and the request is nominated there.
    let one = gpu_pending("H100", 1, 1);
    let one_id = one.id.clone();
    let s = state(
        vec![a.clone(), b.clone(), c.clone()],
        vec![firm.clone(), spot_a.clone(), spot_b.clone(), one],
    );
    let plan = plan_pending(&s, true);
    assert!(plan.placements.is_empty(), "{plan:?}");
    assert_eq!(plan.preemptions, vec![(spot_a_id, one_id)]);

    // Spot planned in the same round as on-demand work goes after it, and on-demand work with
    // free GPUs on a host it already uses goes there: a 2-GPU on-demand request created after
    // a spot one of 2 GPUs still gets host a's last two free GPUs.
    let spot_new = {
        let mut i = gpu_pending("H100", 2, 2);
        i.market = Market::Spot;
        i
    };
    let two = gpu_pending("H100", 2, 3);
    let two_id = two.id.clone();
    let s = state(vec![a, b, c], vec![firm, spot_b, spot_new, two]);
    let plan = plan_pending(&s, true);
    let (first, choice) = &plan.placements[0];
    assert_eq!(first, &two_id, "on-demand first: {plan:?}");
    assert_eq!(choice.node.as_str(), "a");
    // The spot one then packs where spot already runs (b), leaving c whole.
    let (_, spot_choice) = &plan.placements[1];
    assert_eq!(spot_choice.node.as_str(), "b");
}

#[test]
fn a_decision_bounded_by_the_index_answers_as_the_full_scan_does() {
    use crate::placement::fleet_index::FleetIndex;
    use crate::placement::select::{place_beside_preemptions, place_with};
    // A generated fleet with GPU pools 80 % bound: most 8-GPU requests fit nowhere and are
    // answered from the index's bounds; every answer, placement or reason, is the scan's.
    let s = crate::fleet_generator::generate_fleet(300, 11, 0.8);
    let index = FleetIndex::new(&s);
    let mut usage = index.usage(&s);
    let mut early = 0;
    for (n, (model, count)) in [
        ("H100", 8),
        ("H100", 1),
        ("A100", 8),
        ("L40S", 4),
        ("RTX4090", 2),
        ("A100", 2),
    ]
    .into_iter()
    .cycle()
    .take(300)
    .enumerate()
    {
        let mut i = gpu_pending(model, count, n as i64);
        i.region = ["par", "fra", "ams"][n % 3].into();
        let bounded = place_with(&index, &usage, &i, None);
        let scanned = place_beside_preemptions(&index, &usage, &i, None);
        assert_eq!(bounded, scanned, "request {n}: {count}×{model}");
        let max_free = index.gpu_bounds[&(i.region.as_str(), model)].max_free;
        early += usize::from(count as usize > max_free);
        if let Ok(choice) = bounded {
            index.take(&mut usage, &choice, &i);
        }
    }
    assert!(early > 0, "some requests were answered from the bounds");
}

//! A seedable fleet generator for benchmarks and property tests: a realistic mix of CPU and
//! GPU hosts across the active datacenters, with GPU pools about 80 % full.
//!
//! The mix (per 100 hosts): 60 CPU hosts (64 threads, 512 GiB), 15 with 8×H100 in one
//! NVLink group, 10 with 8×A100 in two NVLink groups of 4, 10 with 4×L40S, 5 with 2×RTX4090
//! (PCIe, no NVLink). One H100 or A100 host in ten has its GPUs in MIG mode, about 80 % of
//! their 1g slices bound. Racks hold 40 hosts. Used capacity is made of running instances bound
//! directly (not through placement), so generating 65,000 hosts takes a moment, not minutes.

use std::sync::Arc;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use vmcloud_proto::{GpuBinding, GpuId, InstanceId, MigSliceId, NodeId, ProjectId};

use crate::instances::types::{GpuRequest, Instance, InstanceSpec, InstanceState};
use crate::nodes::types::{Gpu, Node};
use crate::state::ClusterState;

pub const REGIONS: [&str; 3] = ["par", "fra", "ams"];

/// (share in %, model, GPUs per host, NVLink group size (0: none), memory per GPU MiB)
const GPU_SHAPES: [(u32, &str, u32, u32, u64); 4] = [
    (15, "H100", 8, 8, 81_920),
    (10, "A100", 8, 4, 81_920),
    (10, "L40S", 4, 0, 49_152),
    (5, "RTX4090", 2, 0, 24_576),
];

/// Generates `hosts` hosts from `seed`; `gpu_fill` is the share of GPUs bound (0.0–1.0).
pub fn generate_fleet(hosts: usize, seed: u64, gpu_fill: f64) -> ClusterState {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut state = ClusterState::default();
    let project = ProjectId::parse("prj-sim").expect("a valid project id");
    for h in 0..hosts {
        let region = REGIONS[h % REGIONS.len()];
        let id = NodeId::parse(&format!("{region}-h{h:05}")).expect("a valid node id");
        let roll = rng.random_range(0..100);
        let mut acc = 60;
        let shape = (roll >= acc)
            .then(|| {
                GPU_SHAPES.iter().find(|(share, ..)| {
                    acc += share;
                    roll < acc
                })
            })
            .flatten();
        let gpus: Vec<Gpu> = match shape {
            None => Vec::new(),
            Some(&(_, model, n, group, memory_mib)) => (0..n)
                .map(|i| Gpu {
                    model: model.to_owned(),
                    memory_mib,
                    pci_address: GpuId::parse(&format!("0000:{:02x}:00.0", 0x17 + i))
                        .expect("a PCI address"),
                    numa_node: i / (n / 2).max(1),
                    nvlink_group: i.checked_div(group).map_or(0, |g| g + 1),
                    mig: crate::nodes::mig::capable(model) && h % 10 == 3,
                    unhealthy: None,
                })
                .collect(),
        };
        let (threads, memory_gib) = if gpus.is_empty() {
            (64, 512)
        } else {
            (128, 2048)
        };
        let node = Node {
            id: id.clone(),
            region: region.to_owned(),
            hostname: id.to_string(),
            cpu_model: "AMD EPYC 9554".into(),
            cpu_threads: threads,
            memory_bytes: memory_gib << 30,
            hypervisor_uri: "sim://".into(),
            agent_version: String::new(),
            agent_git_sha: String::new(),
            registered_at_ms: 0,
            generation: 0,
            rack: format!("{region}-r{:03}", h / REGIONS.len() / 40),
            gpus,
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
        };
        // Fill: GPU hosts get GPU instances on ~gpu_fill of their GPUs; CPU hosts get VPSes.
        let mut bound = Vec::new();
        for g in &node.gpus {
            if rng.random_bool(gpu_fill) {
                bound.push(g.clone());
            }
        }
        let mut filled = |rng: &mut StdRng,
                          vcpus: u32,
                          memory_mib: u64,
                          gpu: Option<GpuRequest>,
                          gpus: Vec<GpuBinding>| {
            let hex: String = (0..10)
                .map(|_| format!("{:02x}", rng.random::<u8>()))
                .collect();
            let instance = Instance {
                state: InstanceState::Running,
                node: Some(id.clone()),
                placed_at_ms: Some(0),
                running_at_ms: Some(0),
                gpus,
                ..Instance::pending(
                    InstanceId::parse(&format!("i-{hex}")).expect("a valid instance id"),
                    project.clone(),
                    InstanceSpec {
                        name: "sim".into(),
                        flavor: "sim".into(),
                        image: "debian-12".into(),
                        region: region.to_owned(),
                        vcpus,
                        memory_mib,
                        disk_gib: 25,
                        gpu,
                    },
                    0,
                )
            };
            state
                .instances
                .insert(instance.id.clone(), Arc::new(instance));
        };
        if node.gpus.is_empty() {
            // About 60 % of the vCPUs and memory, in VPSes of 2 vCPU / 4 GiB.
            let count = rng.random_range(50..100);
            for _ in 0..count {
                filled(&mut rng, 2, 4096, None, Vec::new());
            }
        } else {
            // One instance per bound GPU (and its share of CPU and memory); on a GPU in MIG
            // mode, one per bound 1g slice.
            for g in bound {
                let whole = GpuRequest {
                    model: g.model.clone(),
                    count: 1,
                    mig_profile: None,
                };
                if !g.mig {
                    filled(
                        &mut rng,
                        12,
                        98_304,
                        Some(whole),
                        vec![GpuBinding::Whole(g.pci_address)],
                    );
                    continue;
                }
                let profile = crate::nodes::mig::profiles(&g.model, g.memory_mib)
                    .into_iter()
                    .next()
                    .expect("a MIG-capable model has profiles");
                for start in 0..7 {
                    if rng.random_bool(gpu_fill) {
                        let slice = GpuBinding::Slice(MigSliceId {
                            gpu: g.pci_address.clone(),
                            profile: profile.name.clone(),
                            start,
                        });
                        let req = GpuRequest {
                            mig_profile: Some(profile.name.clone()),
                            ..whole.clone()
                        };
                        filled(&mut rng, 2, 12_288, Some(req), vec![slice]);
                    }
                }
            }
        }
        state.nodes.insert(id, Arc::new(node));
    }
    let org = crate::tenancy::migrate::legacy_org_of(&project, "simulated", 0);
    state.projects.insert(
        project.clone(),
        crate::tenancy::types::Project::new(project, org.id.clone(), "simulated".into(), 0),
    );
    state.organisations.insert(org.id.clone(), org);
    state.reindex();
    state
}

/// Share of free GPUs that sit on hosts where no whole-host request of that model would fit
/// (they are free but fragmented). GPUs in MIG mode are left out: they are never given whole.
pub fn gpu_fragmentation(state: &ClusterState) -> f64 {
    let usage = state.usage_by_node();
    let (mut free, mut stranded) = (0usize, 0usize);
    for node in state.nodes.values() {
        if node.gpus.is_empty() {
            continue;
        }
        let used = &usage[&node.id];
        // GPUs in MIG mode are given out as slices and are not counted.
        let whole = node.whole_gpus();
        let free_here = node
            .gpus
            .iter()
            .filter(|g| !g.mig && !used.gpus.contains(&g.pci_address))
            .count();
        free += free_here;
        if free_here < whole {
            stranded += free_here;
        }
    }
    if free == 0 {
        0.0
    } else {
        stranded as f64 / free as f64
    }
}

/// A summary of a fleet: hosts per region, GPUs per model and how many are bound (whole, or
/// with at least one MIG slice bound).
pub fn summary(state: &ClusterState) -> serde_json::Value {
    use std::collections::BTreeMap;
    let usage = state.usage_by_node();
    let mut regions: BTreeMap<&str, usize> = BTreeMap::new();
    let mut gpus: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for node in state.nodes.values() {
        *regions.entry(&node.region).or_default() += 1;
        for g in &node.gpus {
            let e = gpus.entry(&g.model).or_default();
            e.0 += 1;
            let u = &usage[&node.id];
            let sliced = || {
                crate::nodes::mig::slices_on(&u.slices, &g.pci_address)
                    .next()
                    .is_some()
            };
            if u.gpus.contains(&g.pci_address) || sliced() {
                e.1 += 1;
            }
        }
    }
    let total: usize = gpus.values().map(|(t, _)| t).sum();
    let used: usize = gpus.values().map(|(_, u)| u).sum();
    serde_json::json!({
        "hosts": state.nodes.len(),
        "gpu_hosts": state.nodes.values().filter(|n| !n.gpus.is_empty()).count(),
        "hosts_per_region": regions,
        "gpus": gpus.iter().map(|(m, (t, u))| (m.to_string(), serde_json::json!({"total": t, "bound": u}))).collect::<BTreeMap<_, _>>(),
        "gpu_utilization": if total == 0 { 0.0 } else { used as f64 / total as f64 },
        "instances": state.instances.len(),
        "gpu_fragmentation": gpu_fragmentation(state),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_fleet_and_pools_are_about_80_percent_full() {
        let a = generate_fleet(500, 7, 0.8);
        let b = generate_fleet(500, 7, 0.8);
        assert_eq!(summary(&a)["gpus"], summary(&b)["gpus"]);
        let utilization = summary(&a)["gpu_utilization"].as_f64().unwrap();
        assert!((0.7..0.9).contains(&utilization), "{utilization}");
        assert_eq!(a.nodes.values().filter(|n| n.region == "par").count(), 167);
        let gpu_hosts = summary(&a)["gpu_hosts"].as_u64().unwrap();
        assert!(
            (150..250).contains(&gpu_hosts),
            "about 40 % GPU hosts: {gpu_hosts}"
        );
    }
}

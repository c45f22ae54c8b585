//! Placement: a pure function from a snapshot of the cluster state to a plan.
//!
//! No I/O, no clock, no randomness: the same state gives the same plan. The placement
//! controller runs it on the leader and proposes the plan; applying the plan re-checks every
//! placement against the newest state. Today it filters on region, GPU and capacity and picks
//! the host with the most free memory (ties by node id); the full pipeline (eval broker,
//! scoring, preemption, reservations) grows here.

use vmcloud_proto::pb;
use vmcloud_proto::{InstanceId, NodeId};

use crate::state::{ClusterState, Instance, InstanceState, Usage};

/// Where each pending instance goes, or why it cannot go anywhere yet.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub placements: Vec<(InstanceId, NodeId)>,
    pub unplaced: Vec<(InstanceId, String)>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.placements.is_empty() && self.unplaced.is_empty()
    }

    pub fn to_command(&self) -> pb::PlaceInstances {
        pb::PlaceInstances {
            placements: self
                .placements
                .iter()
                .map(|(i, n)| pb::Placement {
                    instance_id: i.to_string(),
                    node_id: n.to_string(),
                })
                .collect(),
            unplaced: self
                .unplaced
                .iter()
                .map(|(i, r)| pb::Unplaced {
                    instance_id: i.to_string(),
                    reason: r.clone(),
                })
                .collect(),
        }
    }
}

/// The reason a new instance carries until placement has looked at it.
pub const WAITING_FOR_PLACEMENT: &str = "waiting for placement";

/// Plans pending instances, oldest first, counting capacity taken earlier in the same plan:
/// every pending instance when `all`, else only those placement has not looked at yet (when
/// no capacity has appeared, the others still do not fit). Unplaced reasons are only included
/// when they differ from the recorded one, so a stable state produces an empty plan.
pub fn plan_pending(state: &ClusterState, all: bool) -> Plan {
    let mut pending: Vec<&Instance> = state
        .instances
        .values()
        .filter(|i| i.state == InstanceState::Pending)
        .filter(|i| all || i.pending_reason.as_deref() == Some(WAITING_FOR_PLACEMENT))
        .collect();
    if pending.is_empty() {
        return Plan::default();
    }
    pending.sort_by(|a, b| (a.created_at_ms, &a.id).cmp(&(b.created_at_ms, &b.id)));

    let mut usage: std::collections::BTreeMap<&NodeId, Usage> =
        state.nodes.keys().map(|n| (n, state.usage(n))).collect();
    let mut plan = Plan::default();
    for instance in pending {
        match place_one(state, &usage, instance) {
            Ok(node) => {
                let u = usage.get_mut(node).expect("every node has a usage entry");
                u.vcpus += instance.vcpus;
                u.memory_mib += instance.memory_mib;
                plan.placements.push((instance.id.clone(), node.clone()));
            }
            Err(reason) => {
                if instance.pending_reason.as_deref() != Some(reason.as_str()) {
                    plan.unplaced.push((instance.id.clone(), reason));
                }
            }
        }
    }
    plan
}

fn place_one<'s>(
    state: &'s ClusterState,
    usage: &std::collections::BTreeMap<&NodeId, Usage>,
    instance: &Instance,
) -> Result<&'s NodeId, String> {
    let in_region: Vec<_> = state
        .nodes
        .values()
        .filter(|n| n.region == instance.region)
        .collect();
    if in_region.is_empty() {
        return Err(format!("no host in region {} yet", instance.region));
    }
    if let Some(gpu) = &instance.gpu {
        return Err(format!(
            "no host in {} with {}×{} free: {} hosts, none with GPUs",
            instance.region,
            gpu.count,
            gpu.model,
            in_region.len()
        ));
    }
    let mut full = 0;
    let mut best: Option<(u64, &NodeId)> = None;
    for node in in_region {
        let used = usage[&node.id];
        let free_vcpus = node.allocatable_vcpus().saturating_sub(used.vcpus);
        let free_mem = node
            .allocatable_memory_mib()
            .saturating_sub(used.memory_mib);
        if free_vcpus < instance.vcpus || free_mem < instance.memory_mib {
            full += 1;
            continue;
        }
        // Most free memory wins; on a tie the first node id (BTreeMap order) stays.
        if best.is_none_or(|(m, _)| free_mem > m) {
            best = Some((free_mem, &node.id));
        }
    }
    best.map(|(_, n)| n).ok_or_else(|| {
        format!(
            "no host in {} with {} vCPU and {} MiB free: {full} full",
            instance.region, instance.vcpus, instance.memory_mib
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Node;
    use vmcloud_proto::AccountId;

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
        }
    }

    fn pending(region: &str, vcpus: u32, memory_mib: u64, at: i64) -> Instance {
        Instance {
            id: InstanceId::generate(),
            account: AccountId::parse("a").unwrap(),
            name: "x".into(),
            flavor: "f".into(),
            image: "debian-12".into(),
            region: region.into(),
            vcpus,
            memory_mib,
            disk_gib: 10,
            gpu: None,
            state: InstanceState::Pending,
            node: None,
            pending_reason: None,
            status_message: None,
            created_at_ms: at,
            placed_at_ms: None,
            running_at_ms: None,
            deleted_in_generation: None,
        }
    }

    fn state(nodes: Vec<Node>, instances: Vec<Instance>) -> ClusterState {
        let mut s = ClusterState::default();
        for n in nodes {
            s.nodes.insert(n.id.clone(), n);
        }
        for i in instances {
            s.instances.insert(i.id.clone(), i);
        }
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
        i.gpu = Some(crate::state::GpuRequest {
            model: "H100".into(),
            count: 1,
        });
        let s = state(vec![node("a", "par", 2, 4)], vec![i]);
        let plan = plan_pending(&s, true);
        assert_eq!(
            plan.unplaced[0].1,
            "no host in par with 1×H100 free: 1 hosts, none with GPUs"
        );
    }

    #[test]
    fn spreads_to_the_host_with_most_free_memory_and_is_stable() {
        let s = state(
            vec![node("a", "par", 8, 4), node("b", "par", 8, 16)],
            vec![pending("par", 1, 1024, 1)],
        );
        let plan = plan_pending(&s, true);
        assert_eq!(plan.placements[0].1.as_str(), "b");
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
}

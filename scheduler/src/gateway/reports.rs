//! Reports → commands: what an agent says (registration, instance status, GPU health) that
//! the replicated state does not know yet becomes a proposed command.

use crate::instances::types::InstanceState;
use crate::raft_handle::Cluster;
use crate::state::ClusterState;
use vmcloud_proto::pb::{self, command::Body};
use vmcloud_proto::{InstanceId, NodeId};

/// A host the leader declared down because its agent went silent is ready again once the
/// agent is back (a host an operator marked down stays down until the operator says).
pub(crate) async fn back_up(cluster: &Cluster, node: &NodeId) {
    let silent_down = cluster
        .state()
        .nodes
        .get(node)
        .is_some_and(|n| n.state == crate::nodes::types::NodeState::Down && n.down_by_liveness);
    if !silent_down {
        return;
    }
    let command = Body::SetNodeState(pb::SetNodeState {
        node_id: node.to_string(),
        state: pb::NodeState::Ready as i32,
        reason: "its agent reconnected".into(),
        deadline_unix_ms: 0,
        by_liveness: false,
    });
    match cluster.propose(command).await {
        Ok(Ok(_)) => tracing::info!(%node, "the host's agent is back: ready again"),
        Ok(Err(e)) => tracing::warn!(%node, error = %e, "could not mark the host ready"),
        Err(e) => tracing::warn!(%node, error = %e, "could not mark the host ready"),
    }
}

/// Records the node's inventory in the replicated state when it is new or has changed.
pub(crate) async fn register_node(cluster: &Cluster, node: &NodeId, register: &pb::Register) {
    let inventory = register.inventory.clone().unwrap_or_default();
    let build = register.build.clone().unwrap_or_default();
    let unchanged = cluster.state().nodes.get(node).is_some_and(|n| {
        n.region == inventory.region
            && n.hostname == inventory.hostname
            && n.cpu_threads == inventory.cpu_threads
            && n.memory_bytes == inventory.memory_bytes
            && n.hypervisor_uri == inventory.hypervisor_uri
            && n.agent_version == build.version
            && n.agent_git_sha == build.git_sha
    });
    if unchanged {
        return;
    }
    let command = Body::RegisterNode(pb::RegisterNode {
        node_id: node.to_string(),
        inventory: Some(inventory),
        build: Some(build),
    });
    match cluster.propose(command).await {
        Ok(Ok(_)) => tracing::info!(%node, "node registered"),
        Ok(Err(e)) => tracing::warn!(%node, error = %e, "node registration rejected"),
        Err(e) => tracing::warn!(%node, error = %e, "node registration not committed"),
    }
}

/// The status changes in `report` that the replicated state does not know yet.
pub fn observations(
    state: &ClusterState,
    node: &NodeId,
    report: &pb::StatusReport,
) -> Vec<pb::InstanceStatus> {
    let mut out = Vec::new();
    let mut reported = std::collections::HashSet::new();
    for status in &report.instances {
        reported.insert(status.instance_id.as_str());
        let Some(instance) = InstanceId::parse(&status.instance_id)
            .ok()
            .and_then(|id| state.instances.get(&id))
            .filter(|i| i.node.as_ref() == Some(node))
        else {
            continue;
        };
        let known = match status.state() {
            pb::ObservedState::Running => instance.state == InstanceState::Running,
            pb::ObservedState::Stopped => instance.state == InstanceState::Stopped,
            pb::ObservedState::Failed => {
                instance.state == InstanceState::Failed
                    && instance.status_message.as_deref().unwrap_or("") == status.message
            }
            pb::ObservedState::Absent | pb::ObservedState::Unspecified => true,
        };
        if !known && instance.state != InstanceState::Deleting {
            out.push(status.clone());
        }
    }
    // A full report for a generation that no longer holds a deleted instance, and does not
    // list it, means its VM is gone.
    for instance in state.instances_on(node) {
        if instance.node.as_ref() == Some(node)
            && instance.state == InstanceState::Deleting
            && instance
                .deleted_in_generation
                .is_some_and(|g| report.generation >= g)
            && !reported.contains(instance.id.as_str())
        {
            out.push(pb::InstanceStatus {
                instance_id: instance.id.to_string(),
                state: pb::ObservedState::Absent as i32,
                message: String::new(),
            });
        }
    }
    out
}

/// Records the GPUs the agent will not give out when that differs from the state (placement
/// must skip them on every replica).
pub(crate) async fn observe_gpus(cluster: &Cluster, node: &NodeId, report: &pb::StatusReport) {
    let differs = cluster.state().nodes.get(node).is_some_and(|n| {
        n.gpus.iter().any(|g| {
            let reported = report
                .unhealthy_gpus
                .iter()
                .find(|u| u.pci_address == g.pci_address.as_str())
                .map(|u| u.reason.as_str());
            reported != g.unhealthy.as_deref()
        })
    });
    if !differs {
        return;
    }
    let command = Body::SetGpuHealth(pb::SetGpuHealth {
        node_id: node.to_string(),
        unhealthy: report.unhealthy_gpus.clone(),
    });
    if let Err(e) = cluster.propose(command).await {
        tracing::warn!(%node, error = %e, "GPU health not committed; it is sent again with the next report");
    }
}

pub(crate) async fn observe(cluster: &Cluster, node: &NodeId, report: &pb::StatusReport) {
    let changes = observations(&cluster.state(), node, report);
    if changes.is_empty() {
        return;
    }
    let command = Body::ObserveInstances(pb::ObserveInstances {
        node_id: node.to_string(),
        instances: changes,
    });
    if let Err(e) = cluster.propose(command).await {
        tracing::warn!(%node, error = %e, "instance status not committed; it is sent again with the next report");
    }
}

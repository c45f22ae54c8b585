//! `/v1/nodes`: the hosts of the fleet as the scheduler sees them (for the NOC and for tests).

use axum::Json;
use axum::extract::State;
use serde::Serialize;

use super::{ApiQuery, ApiState, Caller, Problem, ReadOptions, rfc3339};

#[derive(Debug, Serialize)]
pub struct NodeView {
    pub id: String,
    pub region: String,
    pub hostname: String,
    pub cpu_model: String,
    pub cpu_threads: u32,
    pub memory_mib: u64,
    pub allocatable_vcpus: u32,
    pub allocatable_memory_mib: u64,
    pub used_vcpus: u32,
    pub used_memory_mib: u64,
    pub hypervisor_uri: String,
    pub agent_version: String,
    pub agent_git_sha: String,
    pub generation: u64,
    pub connected: bool,
    pub acked_generation: Option<u64>,
    pub registered_at: String,
}

#[derive(Debug, Serialize)]
pub struct NodeList {
    pub nodes: Vec<NodeView>,
}

pub async fn list(
    State(s): State<ApiState>,
    _caller: Caller,
    ApiQuery(read): ApiQuery<ReadOptions>,
) -> Result<Json<NodeList>, Problem> {
    read.prepare(&s.cluster).await?;
    let links = s.links.snapshot();
    let state = s.cluster.state();
    let nodes = state
        .nodes
        .values()
        .map(|n| {
            let used = state.usage(&n.id);
            let link = links.get(&n.id);
            NodeView {
                id: n.id.to_string(),
                region: n.region.clone(),
                hostname: n.hostname.clone(),
                cpu_model: n.cpu_model.clone(),
                cpu_threads: n.cpu_threads,
                memory_mib: n.memory_bytes / (1024 * 1024),
                allocatable_vcpus: n.allocatable_vcpus(),
                allocatable_memory_mib: n.allocatable_memory_mib(),
                used_vcpus: used.vcpus,
                used_memory_mib: used.memory_mib,
                hypervisor_uri: n.hypervisor_uri.clone(),
                agent_version: n.agent_version.clone(),
                agent_git_sha: n.agent_git_sha.clone(),
                generation: n.generation,
                connected: link.is_some(),
                acked_generation: link.and_then(|l| l.acked_generation),
                registered_at: rfc3339(n.registered_at_ms),
            }
        })
        .collect();
    Ok(Json(NodeList { nodes }))
}

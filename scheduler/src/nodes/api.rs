//! `/v1/nodes`: the hosts of the fleet as the scheduler sees them (for the NOC and for tests),
//! and the operator's changes to them: state (cordon, drain, maintenance, down, ready), labels
//! and pools.

use std::collections::{BTreeMap, BTreeSet};

use axum::Json;
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};
use vmcloud_proto::NodeId;
use vmcloud_proto::pb::{self, command::Body};

use crate::api::context::{ApiJson, ApiQuery, ApiState, Operator, ReadOptions, Who, rfc3339};
use crate::api::problem::Problem;
use crate::api::validate::check_label;
use crate::clock::now_ms;
use crate::nodes::mig;
use crate::nodes::types::{Node, NodeState};
use crate::state::ClusterState;
use crate::tenancy::authz::{Action, Resource};

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct NodeView {
    pub id: String,
    pub region: String,
    /// At a partner POP: the partner owning the site and this host.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub site_partner: Option<String>,
    pub rack: String,
    pub hostname: String,
    pub state: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drain_deadline: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub pools: BTreeSet<String>,
    pub cpu_model: String,
    pub cpu_threads: u32,
    pub memory_mib: u64,
    pub allocatable_vcpus: u32,
    pub allocatable_memory_mib: u64,
    pub used_vcpus: u32,
    pub used_memory_mib: u64,
    /// Held for reservation slots nobody uses yet (spot may borrow it).
    pub held_vcpus: u32,
    pub held_memory_mib: u64,
    pub held_gpus: u32,
    pub gpus: Vec<GpuView>,
    pub hypervisor_uri: String,
    pub agent_version: String,
    pub agent_git_sha: String,
    pub generation: u64,
    pub connected: bool,
    pub acked_generation: Option<u64>,
    pub registered_at: String,
    /// `alive`, `suspect` (silent past the suspect timeout) or `down`, as the leader sees it;
    /// absent on a follower.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub liveness: Option<crate::nodes::liveness::Liveness>,
    /// The agent's latest telemetry summary (while connected).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub telemetry: Option<TelemetryView>,
    /// What the agent says is wrong with the host (`gpu-lost`, `gpu-ecc`, `disk-full`) and
    /// GPUs that failed their scrub or health check.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<ConditionView>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TelemetryView {
    pub cpu_percent: f32,
    pub memory_used_mib: u64,
    pub memory_total_mib: u64,
    pub disk_free_gib: u64,
    pub disk_total_gib: u64,
    pub gpu_utilization_pct: u32,
    /// Each GPU as NVML reads it (those not passed through to a guest).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub gpus: Vec<GpuTelemetryView>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct GpuTelemetryView {
    pub pci_address: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature_c: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub power_w: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub utilization_pct: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ecc_uncorrected: Option<u64>,
    /// Critical XID errors since the agent started (absent: the GPU reports no XID events).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub xid_errors: Option<u64>,
    /// The last critical XID's code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_xid: Option<u64>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ConditionView {
    pub kind: String,
    pub subject: String,
    pub message: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = NodeGpuView)]
pub struct GpuView {
    pub model: String,
    pub pci_address: String,
    pub numa_node: u32,
    pub nvlink_group: u32,
    /// Bound whole to an instance, or (in MIG mode) at least one slice bound.
    pub bound: bool,
    /// MIG mode is on: given out only as slices.
    pub mig: bool,
    /// The MIG profiles it offers (empty without MIG).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mig_profiles: Vec<String>,
    /// Its current MIG layout: the slices bound (`<profile>@<first memory slice>`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mig_slices: Vec<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct NodeList {
    pub nodes: Vec<NodeView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

fn view(s: &ApiState, state: &ClusterState, n: &Node) -> NodeView {
    let used = state.usage(&n.id);
    let links = s.links.snapshot();
    let link = links.get(&n.id);
    NodeView {
        id: n.id.to_string(),
        region: n.region.clone(),
        site_partner: s.catalog.partner_of(&n.region).map(str::to_owned),
        rack: n.rack.clone(),
        hostname: n.hostname.clone(),
        state: n.state.as_str().to_owned(),
        state_reason: n.state_reason.clone(),
        drain_deadline: n.drain_deadline_ms.map(rfc3339),
        labels: n.labels.clone(),
        pools: n.pools.clone(),
        cpu_model: n.cpu_model.clone(),
        cpu_threads: n.cpu_threads,
        memory_mib: n.memory_bytes / (1024 * 1024),
        allocatable_vcpus: n.allocatable_vcpus(),
        allocatable_memory_mib: n.allocatable_memory_mib(),
        used_vcpus: used.vcpus,
        used_memory_mib: used.memory_mib,
        held_vcpus: used.held.vcpus,
        held_memory_mib: used.held.memory_mib,
        held_gpus: used.held.gpus,
        gpus: n
            .gpus
            .iter()
            .map(|g| {
                let mig_slices: Vec<String> = mig::slices_on(&used.slices, &g.pci_address)
                    .map(|s| format!("{}@{}", s.profile, s.start))
                    .collect();
                GpuView {
                    model: g.model.clone(),
                    pci_address: g.pci_address.to_string(),
                    numa_node: g.numa_node,
                    nvlink_group: g.nvlink_group,
                    bound: used.gpus.contains(&g.pci_address) || !mig_slices.is_empty(),
                    mig: g.mig,
                    mig_profiles: mig::profiles(&g.model, g.memory_mib)
                        .into_iter()
                        .map(|p| p.name)
                        .collect(),
                    mig_slices,
                }
            })
            .collect(),
        hypervisor_uri: n.hypervisor_uri.clone(),
        agent_version: n.agent_version.clone(),
        agent_git_sha: n.agent_git_sha.clone(),
        generation: n.generation,
        connected: link.is_some(),
        acked_generation: link.and_then(|l| l.acked_generation),
        registered_at: rfc3339(n.registered_at_ms),
        liveness: s
            .liveness
            .lock()
            .expect("liveness lock")
            .liveness
            .get(&n.id)
            .copied(),
        telemetry: link
            .and_then(|l| l.summary.as_ref())
            .map(|t| TelemetryView {
                cpu_percent: (t.cpu_percent * 10.0).round() / 10.0,
                memory_used_mib: t.memory_used_mib,
                memory_total_mib: t.memory_total_mib,
                disk_free_gib: t.disk_free_gib,
                disk_total_gib: t.disk_total_gib,
                gpu_utilization_pct: t.gpu_utilization_pct,
                gpus: t
                    .gpus
                    .iter()
                    .map(|g| GpuTelemetryView {
                        pci_address: g.pci_address.clone(),
                        temperature_c: g.temperature_c,
                        power_w: g.power_w,
                        utilization_pct: g.utilization_pct,
                        ecc_uncorrected: g.ecc_uncorrected,
                        xid_errors: g.xid_errors,
                        last_xid: g.last_xid,
                    })
                    .collect(),
            }),
        conditions: link
            .map(|l| {
                l.conditions
                    .iter()
                    .map(|c| ConditionView {
                        kind: c.kind.clone(),
                        subject: c.subject.clone(),
                        message: c.message.clone(),
                    })
                    .chain(l.unhealthy_gpus.iter().map(|g| ConditionView {
                        kind: "gpu-unhealthy".into(),
                        subject: g.pci_address.clone(),
                        message: g.reason.clone(),
                    }))
                    .collect()
            })
            .unwrap_or_default(),
    }
}

pub async fn list(
    State(s): State<ApiState>,
    _operator: Operator,
    ApiQuery(q): ApiQuery<crate::api::pagination::ListQuery>,
) -> Result<Json<NodeList>, Problem> {
    let label = match q.label.as_deref() {
        None => None,
        Some(l) => Some(l.split_once('=').ok_or_else(|| {
            Problem::new(
                axum::http::StatusCode::BAD_REQUEST,
                "invalid-query",
                "Invalid query string",
                format!("label `{l}` is not key=value (e.g. ?label=gpu=h100)"),
            )
        })?),
    };
    q.read().prepare(&s.cluster).await?;
    let state = s.cluster.state();
    // By name; filtered on what the view shows (the state as operators read it).
    let nodes = state
        .nodes
        .values()
        .map(|n| view(&s, &state, n))
        .filter(|v| q.state.as_deref().is_none_or(|st| v.state == st))
        .filter(|v| q.region.as_deref().is_none_or(|r| v.region == r))
        .filter(|v| label.is_none_or(|(k, val)| v.labels.get(k).is_some_and(|x| x == val)))
        .map(|v| ((0, v.id.clone()), v))
        .collect();
    let (nodes, next_cursor) = q.page(nodes)?;
    Ok(Json(NodeList { nodes, next_cursor }))
}

fn parse_id(id: &str) -> Result<NodeId, Problem> {
    NodeId::parse(id).map_err(|e| Problem::not_found(format!("no node `{id}`: {e}")))
}

pub async fn get(
    State(s): State<ApiState>,
    _operator: Operator,
    Path(id): Path<String>,
    ApiQuery(read): ApiQuery<ReadOptions>,
) -> Result<Json<NodeView>, Problem> {
    let id = parse_id(&id)?;
    read.prepare(&s.cluster).await?;
    let state = s.cluster.state();
    state
        .nodes
        .get(&id)
        .map(|n| Json(view(&s, &state, n)))
        .ok_or_else(|| Problem::not_found(format!("node {id} does not exist")))
}

/// `PATCH /v1/nodes/{id}`: any of state (with reason and, for a drain, a deadline), labels,
/// pools. Labels and pools replace the old ones when given.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NodePatch {
    #[serde(default)]
    pub state: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
    /// For `draining`: seconds from now until the host must be empty.
    #[serde(default)]
    pub drain_deadline_s: Option<u64>,
    #[serde(default)]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub pools: Option<BTreeSet<String>>,
}

/// `PATCH /v1/nodes/{id}`: operators change any host's state, labels and pools; a partner's
/// admins the state of its POPs' hosts (cordon, drain, maintenance, ready).
pub async fn patch(
    State(s): State<ApiState>,
    who: Who,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<NodePatch>,
) -> Result<Json<NodeView>, Problem> {
    let id = parse_id(&id)?;
    let partner = {
        let state = s.cluster.state();
        state
            .nodes
            .get(&id)
            .and_then(|n| state.partner_of_region(&n.region))
            .map(|p| p.id.clone())
    };
    match &partner {
        Some(p) if req.labels.is_none() && req.pools.is_none() => {
            who.may(&s, Action::ManagePartner, Resource::Partner(p))?;
        }
        _ => {
            Operator::check(&s, &who)?;
        }
    }
    // Everything is checked before anything is proposed: a bad field changes nothing.
    let state = match req.state.as_deref() {
        None => None,
        Some(name) => Some(NodeState::parse(name).ok_or_else(|| {
            Problem::unprocessable(
                "unknown-node-state",
                "Unknown node state",
                format!(
                    "state `{name}` does not exist; choose one of: ready, cordoned, draining, maintenance, down"
                ),
            )
        })?),
    };
    if state.is_none() && (req.reason.is_some() || req.drain_deadline_s.is_some()) {
        return Err(Problem::unprocessable(
            "state-required",
            "State required",
            "reason and drain_deadline_s go with a state; add \"state\"",
        ));
    }
    if req.drain_deadline_s.is_some() && state != Some(NodeState::Draining) {
        return Err(Problem::unprocessable(
            "deadline-for-drain",
            "Deadline is for a drain",
            "drain_deadline_s applies to \"state\": \"draining\" only",
        ));
    }
    if req.reason.as_ref().is_some_and(|r| r.len() > 200) {
        return Err(Problem::unprocessable(
            "invalid-reason",
            "Reason too long",
            "reason must be at most 200 characters",
        ));
    }
    for (k, v) in req.labels.iter().flatten() {
        check_label("label key", k)?;
        check_label("label value", v)?;
    }
    for p in req.pools.iter().flatten() {
        check_label("pool", p)?;
    }
    let existing = {
        let cluster_state = s.cluster.state();
        cluster_state.nodes.get(&id).cloned()
    };
    let node = existing.ok_or_else(|| Problem::not_found(format!("node {id} does not exist")))?;
    if req.labels.is_some() || req.pools.is_some() {
        let command = pb::SetNodeLabels {
            node_id: id.to_string(),
            labels: req
                .labels
                .clone()
                .unwrap_or_else(|| node.labels.clone())
                .into_iter()
                .collect(),
            pools: req
                .pools
                .clone()
                .unwrap_or_else(|| node.pools.clone())
                .into_iter()
                .collect(),
        };
        s.cluster
            .propose_as(who.actor(), Body::SetNodeLabels(command))
            .await??;
    }
    if let Some(state) = state {
        let deadline = req.drain_deadline_s.map_or(0, |d| {
            now_ms() + i64::try_from(d).unwrap_or(i64::MAX / 2) * 1000
        });
        let command = pb::SetNodeState {
            node_id: id.to_string(),
            state: state.to_pb() as i32,
            reason: req.reason.clone().unwrap_or_default(),
            deadline_unix_ms: deadline,
            by_liveness: false,
        };
        s.cluster
            .propose_as(who.actor(), Body::SetNodeState(command))
            .await??;
    }
    let state = s.cluster.state();
    let n = state
        .nodes
        .get(&id)
        .ok_or_else(|| Problem::not_found(format!("node {id} does not exist")))?;
    Ok(Json(view(&s, &state, n)))
}

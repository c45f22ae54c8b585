//! `/v1/sessions`: cloud-gaming sessions. A launch is a GPU VM of a game flavor running the
//! streaming image; one per account at a time; it waits in its region's launch queue (VIP,
//! then Priority+, then standard) when no GPU is free, and ends at its tier's maximum length.
//! A session's id is its instance's.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use vmcloud_proto::InstanceId;
use vmcloud_proto::pb::{self, command::Body};

use super::instances::{check_flavor, check_image, check_label, check_region, check_whole_gpus};
use super::{
    ApiJson, ApiQuery, ApiState, Caller, Problem, QueuePlace, ReadOptions, created,
    idempotency_key, rfc3339,
};
use crate::queue::Standing;
use crate::session::standings;
use crate::state::{Applied, ClusterState, Instance, InstanceState};

/// The image every session boots: the game-streaming server.
pub const SESSION_IMAGE: &str = "game-streaming";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LaunchRequest {
    /// The game (a catalog slug, e.g. `cyberpunk-2077`).
    pub title: String,
    /// A GPU flavor (e.g. `game-rtx4090`).
    pub flavor: String,
    pub region: String,
    /// A dedicated pool (e.g. `anti-cheat`); absent: the general fleet.
    #[serde(default)]
    pub pool: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct SessionView {
    pub id: String,
    pub title: String,
    /// The account's tier when it launched: `standard`, `priority-plus` or `vip`.
    pub tier: String,
    pub region: String,
    pub flavor: String,
    /// `queued`, `starting`, `running`, `ending`, `failed` or `impaired`.
    pub state: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Queued: its place in the queue.
    #[serde(flatten)]
    pub queue: QueuePlace,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pending_reason: Option<String>,
    /// Placed: when it ends at the latest (its tier's length).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ends_by: Option<String>,
    pub launched_at: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notices: Vec<String>,
}

impl SessionView {
    fn new(i: &Instance, standing: Option<&Standing>) -> SessionView {
        let spec = i.session.as_ref().expect("sessions have a spec");
        let state = match i.state {
            InstanceState::Pending => "queued",
            InstanceState::Scheduled => "starting",
            InstanceState::Deleting => "ending",
            other => other.as_str(),
        };
        let queued = i.state == InstanceState::Pending;
        SessionView {
            id: i.id.to_string(),
            title: spec.title.clone(),
            tier: spec.tier.as_str().to_owned(),
            region: i.region.clone(),
            flavor: i.flavor.clone(),
            state: state.to_owned(),
            node: i.node.as_ref().map(ToString::to_string),
            queue: QueuePlace::new(standing, queued),
            pending_reason: i.pending_reason.clone().filter(|_| queued),
            ends_by: i.terminate_at_ms.map(rfc3339),
            launched_at: rfc3339(i.created_at_ms),
            notices: i.notices.iter().map(|n| n.message.clone()).collect(),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct SessionList {
    pub sessions: Vec<SessionView>,
}

fn validate(s: &ApiState, req: &LaunchRequest) -> Result<(), Problem> {
    check_region(&s.catalog, &req.region)?;
    check_flavor(&s.catalog, &req.flavor)?;
    check_whole_gpus(&s.catalog, &req.flavor, "game sessions")?;
    if s.catalog.flavors[&req.flavor].gpu.is_none() {
        let gpu_flavors: Vec<&str> = s
            .catalog
            .flavors
            .iter()
            .filter(|(_, f)| f.gpu.as_ref().is_some_and(|g| g.mig.is_none()))
            .map(|(n, _)| n.as_str())
            .collect();
        return Err(Problem::unprocessable(
            "not-a-gpu-flavor",
            "A session needs a GPU",
            format!(
                "flavor `{}` has no GPU; choose one of: {}",
                req.flavor,
                gpu_flavors.join(", ")
            ),
        ));
    }
    check_image(&s.catalog, SESSION_IMAGE)?;
    check_label("title", &req.title)?;
    if let Some(pool) = &req.pool {
        check_label("pool", pool)?;
    }
    Ok(())
}

pub async fn launch(
    State(s): State<ApiState>,
    Caller(account): Caller,
    headers: HeaderMap,
    ApiJson(req): ApiJson<LaunchRequest>,
) -> Result<Response, Problem> {
    validate(&s, &req)?;
    let flavor = &s.catalog.flavors[&req.flavor];
    let tier = s
        .cluster
        .state()
        .accounts
        .get(&account)
        .map(|a| a.gaming_tier)
        .unwrap_or_default();
    let id = InstanceId::generate();
    let gpu = flavor.gpu.as_ref().expect("checked: a GPU flavor");
    let command = pb::CreateInstance {
        instance_id: id.to_string(),
        account_id: account.to_string(),
        name: format!("{}-{}", req.title, &id.as_str()[2..8]),
        flavor: req.flavor.clone(),
        image: SESSION_IMAGE.to_owned(),
        region: req.region.clone(),
        vcpus: flavor.vcpus,
        memory_mib: flavor.memory_mib,
        disk_gib: flavor.disk_gib,
        gpu_model: gpu.model.clone(),
        gpu_count: gpu.count,
        idempotency_key: idempotency_key(&headers)?,
        pool: req.pool.clone().unwrap_or_default(),
        session: Some(pb::GameSession {
            tier: pb::SessionTier::from(tier) as i32,
            title: req.title.clone(),
        }),
        ..Default::default()
    };
    let instance = match s.cluster.propose(Body::CreateInstance(command)).await?? {
        Applied::Instance(i) => i,
        _ => return Err(Problem::from(crate::state::Rejected::Malformed)),
    };
    let state = s.cluster.state();
    let view = SessionView::new(&instance, standings(&state).get(&instance.id));
    Ok(created(format!("/v1/sessions/{}", instance.id), view))
}

fn own_session<'s>(
    state: &'s ClusterState,
    account: &vmcloud_proto::AccountId,
    id: &str,
) -> Result<&'s Instance, Problem> {
    InstanceId::parse(id)
        .ok()
        .and_then(|id| state.instances.get(&id))
        .filter(|i| &i.account == account && i.session.is_some())
        .ok_or_else(|| Problem::not_found(format!("session {id} does not exist")))
}

pub async fn list(
    State(s): State<ApiState>,
    Caller(account): Caller,
    ApiQuery(read): ApiQuery<ReadOptions>,
) -> Result<Json<SessionList>, Problem> {
    read.prepare(&s.cluster).await?;
    let state = s.cluster.state();
    let standing = standings(&state);
    let mut sessions: Vec<&Instance> = state
        .instances
        .values()
        .filter(|i| i.account == account && i.session.is_some())
        .collect();
    sessions.sort_by_key(|i| i.created_at_ms);
    Ok(Json(SessionList {
        sessions: sessions
            .into_iter()
            .map(|i| SessionView::new(i, standing.get(&i.id)))
            .collect(),
    }))
}

pub async fn get(
    State(s): State<ApiState>,
    Caller(account): Caller,
    Path(id): Path<String>,
    ApiQuery(read): ApiQuery<ReadOptions>,
) -> Result<Json<SessionView>, Problem> {
    read.prepare(&s.cluster).await?;
    let state = s.cluster.state();
    let i = own_session(&state, &account, &id)?;
    Ok(Json(SessionView::new(i, standings(&state).get(&i.id))))
}

/// Ends a session (leaves the queue, or stops the VM).
pub async fn end(
    State(s): State<ApiState>,
    Caller(account): Caller,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let id = own_session(&s.cluster.state(), &account, &id)?.id.clone();
    let command = pb::DeleteInstance {
        instance_id: id.to_string(),
        account_id: account.to_string(),
    };
    s.cluster.propose(Body::DeleteInstance(command)).await??;
    let state = s.cluster.state();
    let body = match state.instances.get(&id) {
        Some(i) => serde_json::to_value(SessionView::new(i, None)).unwrap_or_default(),
        None => serde_json::json!({ "id": id.to_string(), "state": "ended" }),
    };
    Ok((StatusCode::ACCEPTED, Json(body)).into_response())
}

//! The agent's local HTTP API (loopback by default): health, what the hypervisor runs, and the
//! agent's view of its desired config and link. For operators and tests on the host.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use tokio::sync::watch;
use vmcloud_proto::pb;

use crate::hypervisor::{DomainInfo, Hypervisor};

#[derive(Clone)]
pub struct AgentApiState {
    pub node: String,
    pub hypervisor: Arc<dyn Hypervisor>,
    pub desired: watch::Receiver<Option<pb::DesiredConfig>>,
    pub status: watch::Receiver<Option<pb::StatusReport>>,
    pub connected: watch::Receiver<bool>,
    pub telemetry: watch::Receiver<Option<Arc<crate::telemetry::Snapshot>>>,
}

pub fn router(state: AgentApiState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/v1/domains", get(domains))
        .route("/v1/status", get(status))
        .route("/metrics", get(metrics))
        .with_state(state)
}

#[derive(Serialize)]
struct Domains {
    hypervisor_uri: String,
    domains: Vec<DomainInfo>,
}

async fn domains(State(s): State<AgentApiState>) -> Result<Json<Domains>, (StatusCode, String)> {
    let hv = s.hypervisor.clone();
    let listed = tokio::task::spawn_blocking(move || hv.list())
        .await
        .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(|e| (StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    Ok(Json(Domains {
        hypervisor_uri: s.hypervisor.uri().to_owned(),
        domains: listed,
    }))
}

#[derive(Serialize)]
struct Status {
    node: String,
    connected: bool,
    desired_generation: Option<u64>,
    desired_instances: Vec<String>,
    reconciled_generation: Option<u64>,
}

async fn status(State(s): State<AgentApiState>) -> Json<Status> {
    let desired = s.desired.borrow().clone();
    Json(Status {
        node: s.node.clone(),
        connected: *s.connected.borrow(),
        desired_generation: desired.as_ref().map(|d| d.generation),
        desired_instances: desired
            .map(|d| d.instances.into_iter().map(|i| i.instance_id).collect())
            .unwrap_or_default(),
        reconciled_generation: s.status.borrow().as_ref().map(|r| r.generation),
    })
}

/// The host's telemetry in Prometheus' text format (503 until the first read, or when
/// telemetry is off).
async fn metrics(
    State(s): State<AgentApiState>,
) -> (StatusCode, [(&'static str, &'static str); 1], String) {
    let content = [("content-type", "text/plain; version=0.0.4")];
    match s.telemetry.borrow().as_ref() {
        Some(snap) => (StatusCode::OK, content, snap.to_prometheus(&s.node)),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            content,
            "no telemetry yet (it is read every few seconds, or is off for simulated agents)\n"
                .into(),
        ),
    }
}

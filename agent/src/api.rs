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
    pub reconcile: Arc<crate::reconciler::ReconcileStats>,
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

/// The link to the scheduler (up or not) and the instances by observed state (the last
/// status report), in Prometheus' text format.
fn link_and_instances(s: &AgentApiState) -> String {
    use std::fmt::Write;
    let node = &s.node;
    let mut out = format!(
        "# HELP vmcloud_agent_link_connected 1 while the agent's link to the scheduler is up.\n# TYPE vmcloud_agent_link_connected gauge\nvmcloud_agent_link_connected{{node=\"{node}\"}} {}\n",
        u8::from(*s.connected.borrow())
    );
    let mut by_state: std::collections::BTreeMap<&'static str, u32> =
        ["running", "stopped", "failed", "absent", "unknown"]
            .into_iter()
            .map(|st| (st, 0))
            .collect();
    if let Some(report) = s.status.borrow().as_ref() {
        for i in &report.instances {
            let st = match pb::ObservedState::try_from(i.state).unwrap_or_default() {
                pb::ObservedState::Running => "running",
                pb::ObservedState::Stopped => "stopped",
                pb::ObservedState::Failed => "failed",
                pb::ObservedState::Absent => "absent",
                _ => "unknown",
            };
            *by_state.entry(st).or_default() += 1;
        }
    }
    out.push_str("# HELP vmcloud_agent_instances Instances of the desired config by the state the agent observes.\n# TYPE vmcloud_agent_instances gauge\n");
    for (st, n) in by_state {
        let _ = writeln!(
            out,
            "vmcloud_agent_instances{{node=\"{node}\",state=\"{st}\"}} {n}"
        );
    }
    out
}

/// The host's telemetry in Prometheus' text format (503 until the first read, or when
/// telemetry is off).
async fn metrics(
    State(s): State<AgentApiState>,
) -> (StatusCode, [(&'static str, &'static str); 1], String) {
    let content = [("content-type", "text/plain; version=0.0.4")];
    match s.telemetry.borrow().as_ref() {
        Some(snap) => {
            let mut text = snap.to_prometheus(&s.node);
            text.push_str(&s.reconcile.to_prometheus(&s.node));
            text.push_str(&link_and_instances(&s));
            (StatusCode::OK, content, text)
        }
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            content,
            "no telemetry yet (it is read every few seconds, or is off for simulated agents)\n"
                .into(),
        ),
    }
}

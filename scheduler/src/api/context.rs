//! What every handler shares: the [`ApiState`] it can reach, the extractors that decode and
//! authenticate a request into problem+json errors, and small response helpers.

use std::sync::Arc;

use axum::Json;
use axum::extract::{FromRequest, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use vmcloud_proto::{BuildInfo, ProjectId};

use crate::api::problem::Problem;
use crate::catalog::Catalog;
use crate::gateway::links::NodeLinks;
use crate::raft_handle::Cluster;
use crate::tenancy::api_key::ApiKeyToken;

/// What every handler can reach.
#[derive(Clone)]
pub struct ApiState {
    pub cluster: Cluster,
    pub catalog: Arc<Catalog>,
    pub build: BuildInfo,
    pub links: NodeLinks,
    /// Everything `/metrics` serves.
    pub metrics: Arc<prometheus_client::registry::Registry>,
    /// The leader's view of node liveness.
    pub liveness: crate::nodes::liveness::LivenessView,
}

/// A query string whose decoding errors become problem+json 400s.
#[derive(axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(Problem))]
pub struct ApiQuery<T>(pub T);

/// How current a read must be. By default reads are linearizable: the answering replica
/// confirms with a quorum that it has everything committed (ReadIndex), so a read through
/// any replica sees every write acknowledged before it. `?stale=true` skips that (cheaper,
/// for dashboards) and answers from whatever the replica has applied.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadOptions {
    #[serde(default)]
    pub stale: bool,
}

impl ReadOptions {
    pub async fn prepare(&self, cluster: &Cluster) -> Result<(), Problem> {
        if self.stale {
            return Ok(());
        }
        cluster.read_barrier().await.map_err(|e| {
            Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "read-not-confirmed",
                "Read not confirmed",
                format!("this replica cannot confirm it is current ({e}); retry, or add ?stale=true for an answer that may be behind"),
            )
        })
    }
}

/// A JSON body whose decoding errors become problem+json 400s.
#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(Problem))]
pub struct ApiJson<T>(pub T);

/// The project that sent the request, from `Authorization: Bearer <API key>`.
#[derive(Debug, Clone)]
pub struct Caller(pub ProjectId);

impl FromRequestParts<ApiState> for Caller {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Caller, Problem> {
        let header = parts.headers.get(header::AUTHORIZATION).ok_or_else(|| {
            Problem::unauthorized(
                "missing API key: send `Authorization: Bearer <key>` (`vmcloud dev` prints where the dev key is)",
            )
        })?;
        let token = header
            .to_str()
            .ok()
            .and_then(|h| h.strip_prefix("Bearer "))
            .ok_or_else(|| {
                Problem::unauthorized("the Authorization header must be `Bearer <API key>`")
            })?;
        let invalid =
            || Problem::unauthorized("invalid API key: it is malformed, unknown or revoked");
        let key = ApiKeyToken::parse(token.trim()).ok_or_else(invalid)?;
        let state = state.cluster.state();
        let project = state
            .authenticate(&key.key_id, &key.secret_sha256())
            .ok_or_else(invalid)?;
        Ok(Caller(project.clone()))
    }
}

/// A caller whose project operates the fleet; anyone else gets a 403.
#[derive(Debug, Clone)]
pub struct Operator(pub ProjectId);

impl FromRequestParts<ApiState> for Operator {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Operator, Problem> {
        let Caller(project) = Caller::from_request_parts(parts, state).await?;
        let operator = state
            .cluster
            .state()
            .projects
            .get(&project)
            .is_some_and(|a| a.operator);
        if operator {
            Ok(Operator(project))
        } else {
            Err(Problem::new(
                StatusCode::FORBIDDEN,
                "operator-only",
                "Operators only",
                format!(
                    "project {project} is not an operator of this fleet; use an operator's API key"
                ),
            ))
        }
    }
}

pub(crate) use crate::clock::rfc3339;

/// Where a queued workload (a job, a game launch) stands; all absent once it is not queued.
#[derive(Debug, Default, serde::Serialize)]
pub struct QueuePlace {
    /// 1 = next in its queue.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue_length: Option<u32>,
    /// When it is expected to start (absent when it cannot be told).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub estimated_start: Option<String>,
}

impl QueuePlace {
    pub fn new(standing: Option<&crate::jobs::queue::Standing>, queued: bool) -> QueuePlace {
        match standing.filter(|_| queued) {
            None => QueuePlace::default(),
            Some(s) => QueuePlace {
                position: Some(s.position),
                queue_length: Some(s.of),
                estimated_start: s.eta_ms.map(rfc3339),
            },
        }
    }
}

pub(crate) fn created<T: serde::Serialize>(location: String, body: T) -> axum::response::Response {
    use axum::response::IntoResponse;
    (
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(body),
    )
        .into_response()
}

/// The request's `Idempotency-Key` header (empty when absent).
pub(crate) fn idempotency_key(headers: &axum::http::HeaderMap) -> Result<String, Problem> {
    match headers.get("idempotency-key") {
        None => Ok(String::new()),
        Some(v) => v
            .to_str()
            .ok()
            .filter(|k| !k.is_empty() && k.len() <= 255)
            .map(str::to_owned)
            .ok_or_else(|| {
                Problem::new(
                    axum::http::StatusCode::BAD_REQUEST,
                    "invalid-idempotency-key",
                    "Invalid Idempotency-Key",
                    "the Idempotency-Key header must be 1 to 255 visible ASCII characters",
                )
            }),
    }
}

//! What every handler shares: the [`ApiState`] it can reach, the extractors that decode and
//! authenticate a request into problem+json errors, and small response helpers.

use std::sync::Arc;

use axum::Json;
use axum::extract::{FromRequest, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use vmcloud_proto::{BuildInfo, ProjectId, pb};

use crate::api::problem::Problem;
use crate::catalog::Catalog;
use crate::gateway::links::NodeLinks;
use crate::raft_handle::Cluster;
use crate::tenancy::api_key::{ApiKeyToken, LoginToken};
use crate::tenancy::authz::{Action, Denied, Principal, Resource};
use crate::tenancy::commands::actor_of;

/// What every handler can reach.
#[derive(Clone)]
pub struct ApiState {
    pub cluster: Cluster,
    pub catalog: Arc<Catalog>,
    pub build: BuildInfo,
    pub links: NodeLinks,
    /// Everything `/metrics` serves.
    pub metrics: Arc<prometheus_client::registry::Registry>,
    /// Requests by route and status, their durations, rate-limit refusals.
    pub api_metrics: crate::api::metrics::ApiMetrics,
    /// The leader's view of node liveness.
    pub liveness: crate::nodes::liveness::LivenessView,
    pub mailer: Arc<crate::mail::Mailer>,
    /// The key-encryption key(s) for sealed secrets (`--secrets-key`); without it, nothing
    /// that needs one (TOTP) can be set up on this replica.
    pub secrets: Option<Arc<crate::secrets::SecretsKey>>,
    /// Where people reach this service (`http://host:port`, no trailing slash): mailed links.
    pub public_url: String,
    /// This replica's rate-limit buckets.
    pub limiter: Arc<crate::api::limits::Limiter>,
    /// Warm VMs this replica's launches are taking now: launches at once pick others.
    pub warm_claims: Arc<std::sync::Mutex<std::collections::HashSet<vmcloud_proto::InstanceId>>>,
    /// Requests an hour each principal may make (0: no limit).
    pub api_per_hour: u32,
    /// Webhooks may go to `http` and private addresses (`vmcloud dev` only).
    pub webhooks_allow_private: bool,
    /// The cluster's clock may be moved forward (`POST /v1/test-clock`; `vmcloud dev`).
    pub test_clock: bool,
    /// Card payments, when a processor is configured.
    pub stripe: Option<crate::billing::stripe::Stripe>,
}

impl ApiState {
    /// Runs `read` on this replica's history store on a blocking thread (history lives on
    /// disk), once what is applied has been written to it; 503 when the replica keeps no
    /// history, 500 when the store fails.
    pub async fn read_history<T: Send + 'static>(
        &self,
        read: impl FnOnce(
            &crate::history::store::HistoryStore,
        ) -> Result<T, crate::history::store::HistoryError>
        + Send
        + 'static,
    ) -> Result<T, Problem> {
        let (store, written) = self.cluster.history().await.ok_or_else(|| {
            Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "History unavailable",
                "this replica keeps no history store: ask another replica",
            )
        })?;
        if !written {
            return Err(Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "History not written yet",
                "this replica is still writing its history (a snapshot it restored): try again in a few seconds, or ask another replica",
            ));
        }
        tokio::task::spawn_blocking(move || read(&store))
            .await
            .map_err(|e| Problem::internal(format!("the history query stopped: {e}")))?
            .map_err(|e| {
                Problem::internal(format!(
                    "the history store failed: {}",
                    vmcloud_proto::ErrorChain(&e)
                ))
            })
    }
}

/// A query string whose decoding errors become problem+json 400s.
#[derive(axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(Problem))]
pub struct ApiQuery<T>(pub T);

/// How current a read must be. By default reads are linearizable: the answering replica
/// confirms with a quorum that it has everything committed (ReadIndex), so a read through
/// any replica sees every write acknowledged before it. `?stale=true` skips that (cheaper,
/// for dashboards) and answers from whatever the replica has applied.
#[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ReadOptions {
    #[serde(default)]
    pub stale: bool,
    /// The project a user's request acts in (read by [`Caller`], accepted here so that
    /// `?project=` may sit beside `?stale=`).
    #[serde(default)]
    pub project: Option<String>,
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

/// Who sent the request: an API key (`Authorization: Bearer vmc_…`) or a logged-in user (a
/// login token as `Authorization: Bearer vms_…`, or the `vmcloud_session` cookie), and the
/// client's address (for the audit trail).
#[derive(Debug, Clone)]
pub struct Who {
    pub principal: Principal,
    pub source: String,
    /// The login session's public id, for a user.
    pub session: Option<String>,
}

impl Who {
    /// The actor a command proposed for this request carries.
    pub fn actor(&self) -> pb::Actor {
        actor_of(&self.principal, &self.source)
    }

    /// Checks `action` on `resource` against the current state: 404 for what the principal
    /// may not see, 403 for what its role does not allow.
    pub fn may(&self, s: &ApiState, action: Action, resource: Resource<'_>) -> Result<(), Problem> {
        s.cluster
            .state()
            .authorize(&self.principal, action, resource)
            .map_err(|d| Problem::from(crate::state::Rejected::from(d)))
    }
}

/// The cookie a browser's login session travels in.
pub const SESSION_COOKIE: &str = "vmcloud_session";

/// A cookie's value from the request's headers.
pub fn cookie(headers: &axum::http::HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| c.trim().strip_prefix(name)?.strip_prefix('='))
        .map(str::to_owned)
}

fn bearer_or_cookie(parts: &Parts) -> Option<String> {
    if let Some(h) = parts.headers.get(header::AUTHORIZATION) {
        return Some(h.to_str().unwrap_or_default().to_owned());
    }
    cookie(&parts.headers, SESSION_COOKIE).map(|t| format!("Bearer {t}"))
}

/// The client's address (empty when the connection's is unknown, as in-process calls).
pub struct Source(pub String);

impl<S: Send + Sync> FromRequestParts<S> for Source {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Source, Self::Rejection> {
        Ok(Source(
            parts
                .extensions
                .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                .map(|c| c.0.ip().to_string())
                .unwrap_or_default(),
        ))
    }
}

impl Who {
    /// Who sent `parts`, checked against `state` (the key or session must be valid now).
    pub fn of(parts: &Parts, state: &ApiState) -> Result<Who, Problem> {
        let source = parts
            .extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|c| c.0.ip().to_string())
            .unwrap_or_default();
        let header = bearer_or_cookie(parts).ok_or_else(|| {
            Problem::unauthorized(
                "not logged in: send `Authorization: Bearer <API key or login token>` (`vmcloud login`, or the key `vmcloud dev` prints)",
            )
        })?;
        let token = header
            .strip_prefix("Bearer ")
            .map(str::trim)
            .ok_or_else(|| {
                Problem::unauthorized(
                    "the Authorization header must be `Bearer <API key or login token>`",
                )
            })?;
        let cluster_state = state.cluster.state();
        if let Some(key) = ApiKeyToken::parse(token) {
            cluster_state
                .authenticate(&key.key_id, &key.secret_sha256())
                .ok_or_else(|| {
                    Problem::unauthorized("invalid API key: it is unknown, revoked or expired")
                })?;
            return Ok(Who {
                principal: Principal::ApiKey(key.key_id),
                source,
                session: None,
            });
        }
        if let Some(login) = LoginToken::parse(token) {
            let session = cluster_state
                .authenticate_session(&login.session_id, &login.secret_sha256(), crate::clock::now_ms())
                .ok_or_else(|| {
                    Problem::unauthorized("your login session has ended (logged out, expired or revoked); log in again")
                })?;
            return Ok(Who {
                principal: Principal::User {
                    id: session.user.clone(),
                    mfa: session.mfa,
                },
                source,
                session: Some(login.session_id),
            });
        }
        Err(Problem::unauthorized(
            "invalid API key or login token: expected vmc_… (an API key) or vms_… (a login token from `vmcloud login`)",
        ))
    }
}

impl FromRequestParts<ApiState> for Who {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Who, Problem> {
        Who::of(parts, state)
    }
}

/// The project a project-scoped request acts in, and who asks (allowed to read it). An API
/// key acts in its own project; a user names one with `?project=` or the `VMCloud-Project`
/// header, or acts in their only project.
#[derive(Debug, Clone)]
pub struct Caller(pub ProjectId, pub Who);

impl Caller {
    /// Checks that the caller may create and delete workloads in its project.
    pub fn may_deploy(&self, s: &ApiState) -> Result<(), Problem> {
        self.1.may(s, Action::Deploy, Resource::Project(&self.0))
    }
}

impl FromRequestParts<ApiState> for Caller {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Caller, Problem> {
        let who = Who::from_request_parts(parts, state).await?;
        let named = parts
            .headers
            .get("vmcloud-project")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .or_else(|| {
                parts.uri.query().and_then(|q| {
                    q.split('&')
                        .find_map(|kv| kv.strip_prefix("project="))
                        .map(str::to_owned)
                })
            });
        let cluster_state = state.cluster.state();
        let project = match (&who.principal, named) {
            (_, Some(p)) => ProjectId::parse(&p)
                .map_err(|_| Problem::not_found(format!("project `{p}` does not exist")))?,
            (Principal::ApiKey(key_id), None) => cluster_state
                .api_keys
                .get(key_id)
                .map(|k| k.project.clone())
                .ok_or_else(|| Problem::unauthorized("invalid API key"))?,
            (Principal::User { id, .. }, None) => {
                let projects = cluster_state.projects_of_user(id);
                match projects.as_slice() {
                    [only] => only.id.clone(),
                    [] => {
                        return Err(Problem::not_found(
                            "you have no project yet: create one with `vmcloud project create` or POST /v1/projects",
                        ));
                    }
                    _ => {
                        return Err(Problem::new(
                            StatusCode::BAD_REQUEST,
                            "project-required",
                            "Which project?",
                            "you belong to several projects: name one with ?project=<id> or the VMCloud-Project header (`vmcloud project list` shows them)",
                        ));
                    }
                }
            }
            _ => return Err(Problem::unauthorized("log in or send an API key")),
        };
        who.may(state, Action::ReadProject, Resource::Project(&project))?;
        Ok(Caller(project, who))
    }
}

/// A caller allowed to operate the fleet (an operator's key or user); anyone else gets 403.
#[derive(Debug, Clone)]
pub struct Operator(pub Who);

impl Operator {
    /// Whether `who` is an operator of this fleet, with the answer a refusal gives.
    pub fn check(state: &ApiState, who: &Who) -> Result<(), Problem> {
        match state
            .cluster
            .state()
            .authorize(&who.principal, Action::OperateFleet, Resource::Fleet)
        {
            Ok(()) => Ok(()),
            Err(Denied::Unauthenticated(m)) => Err(Problem::unauthorized(m)),
            // A member of the provider without two-step verification: say so, not "operators
            // only".
            Err(Denied::Forbidden(m)) if m == crate::tenancy::authz::MFA_FOR_STAFF => {
                Err(Problem::new(
                    StatusCode::FORBIDDEN,
                    "mfa-required",
                    "Two-step verification required",
                    m,
                ))
            }
            Err(_) => Err(Problem::new(
                StatusCode::FORBIDDEN,
                "operator-only",
                "Operators only",
                "only operators of this fleet may do this; use an operator's API key or log in as an operator",
            )),
        }
    }
}

impl FromRequestParts<ApiState> for Operator {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Operator, Problem> {
        let who = Who::from_request_parts(parts, state).await?;
        Operator::check(state, &who)?;
        Ok(Operator(who))
    }
}

pub(crate) use crate::clock::rfc3339;

/// Where a queued workload (a job, a game launch) stands; all absent once it is not queued.
#[derive(Debug, Default, serde::Serialize, utoipa::ToSchema)]
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

/// A project's object by id — the same 404 whether it does not exist or belongs to another
/// project, so nobody learns of anyone else's ids.
pub fn owned<T: Clone>(
    map: &imbl::OrdMap<String, T>,
    id: &str,
    project: &ProjectId,
    owner: impl Fn(&T) -> &ProjectId,
    what: &str,
) -> Result<T, Problem> {
    map.get(id)
        .filter(|o| owner(o) == project)
        .cloned()
        .ok_or_else(|| Problem::not_found(format!("{what} {id} does not exist")))
}

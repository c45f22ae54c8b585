//! `/v1/projects`: a customer's projects and their API keys; what operators may change about a
//! project (its fair share of the AI job queues, its gamers' subscription tier).

use axum::Json;
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};
use vmcloud_proto::pb::{self, command::Body};
use vmcloud_proto::{OrgId, ProjectId};

use crate::api::context::{
    ApiJson, ApiQuery, ApiState, Operator, ReadOptions, Who, created, rfc3339,
};
use crate::api::pagination::ListQuery;
use crate::api::problem::Problem;
use crate::sessions::types::SessionTier;
use crate::tenancy::api_key::ApiKeyToken;
use crate::tenancy::authz::{Action, Resource};
use crate::tenancy::types::Role;
use crate::tenancy::types::{ApiKey, MAX_SHARE_WEIGHT, Project};
use crate::tenancy::validate;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateProjectRequest {
    /// Weight of its fair share of the AI job queues (1 to 1000).
    #[serde(default)]
    pub share_weight: Option<u32>,
    /// `standard`, `priority-plus` or `vip`.
    #[serde(default)]
    pub gaming_tier: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ProjectView {
    pub id: String,
    pub name: String,
    pub organisation: String,
    pub share_weight: u32,
    pub gaming_tier: String,
    pub created_at: String,
}

impl ProjectView {
    pub fn new(a: &Project) -> ProjectView {
        ProjectView {
            id: a.id.to_string(),
            name: a.name.clone(),
            organisation: a.org.to_string(),
            share_weight: a.share_weight,
            gaming_tier: a.gaming_tier.as_str().to_owned(),
            created_at: rfc3339(a.created_at_ms),
        }
    }
}

fn parse_project(id: &str) -> Result<ProjectId, Problem> {
    ProjectId::parse(id).map_err(|_| Problem::not_found(format!("project `{id}` does not exist")))
}

/// The projects the caller can see: a user's (through their organisations or a project
/// role), an API key's own, every project for operators and support.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ProjectList {
    pub projects: Vec<ProjectView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// The projects the caller may see, oldest first, a page at a time.
pub async fn list(
    State(s): State<ApiState>,
    who: Who,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<ProjectList>, Problem> {
    q.read().prepare(&s.cluster).await?;
    let state = s.cluster.state();
    let visible = state
        .projects
        .values()
        .filter(|p| {
            state
                .authorize(
                    &who.principal,
                    Action::ReadProject,
                    Resource::Project(&p.id),
                )
                .is_ok()
        })
        .map(|p| ((p.created_at_ms, p.id.to_string()), p))
        .collect();
    let (page, next_cursor) = q.page(visible)?;
    Ok(Json(ProjectList {
        projects: page.into_iter().map(ProjectView::new).collect(),
        next_cursor,
    }))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateProjectRequest {
    pub organisation: String,
    pub name: String,
}

pub async fn create(
    State(s): State<ApiState>,
    who: Who,
    ApiJson(req): ApiJson<CreateProjectRequest>,
) -> Result<axum::response::Response, Problem> {
    let org = OrgId::parse(&req.organisation).map_err(|_| {
        Problem::not_found(format!(
            "organisation `{}` does not exist",
            req.organisation
        ))
    })?;
    who.may(&s, Action::CreateProject, Resource::Org(&org))?;
    let name = validate::name("the project's name", &req.name)
        .map_err(|e| Problem::unprocessable("invalid-name", "Invalid name", e.0))?;
    let id = ProjectId::generate();
    let command = pb::CreateProject {
        project_id: id.to_string(),
        name,
        org_id: org.to_string(),
        ..Default::default()
    };
    s.cluster
        .propose_as(who.actor(), Body::CreateProject(command))
        .await??;
    let state = s.cluster.state();
    let project = state
        .projects
        .get(&id)
        .ok_or_else(|| Problem::not_found(format!("project {id} does not exist")))?;
    Ok(created(
        format!("/v1/projects/{id}"),
        ProjectView::new(project),
    ))
}

/// A project the caller can see.
pub async fn get(
    State(s): State<ApiState>,
    who: Who,
    Path(id): Path<String>,
    ApiQuery(read): ApiQuery<ReadOptions>,
) -> Result<Json<ProjectView>, Problem> {
    let id = parse_project(&id)?;
    read.prepare(&s.cluster).await?;
    who.may(&s, Action::ReadProject, Resource::Project(&id))?;
    s.cluster
        .state()
        .projects
        .get(&id)
        .map(|a| Json(ProjectView::new(a)))
        .ok_or_else(|| Problem::not_found(format!("project {id} does not exist")))
}

/// Deletes a project with no workloads left; its keys go with it.
pub async fn delete(
    State(s): State<ApiState>,
    who: Who,
    Path(id): Path<String>,
) -> Result<axum::http::StatusCode, Problem> {
    let id = parse_project(&id)?;
    who.may(&s, Action::ManageProject, Resource::Project(&id))?;
    let command = pb::DeleteProject {
        project_id: id.to_string(),
    };
    s.cluster
        .propose_as(who.actor(), Body::DeleteProject(command))
        .await??;
    Ok(axum::http::StatusCode::NO_CONTENT)
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct KeyView {
    pub id: String,
    pub name: String,
    pub role: String,
    pub created_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<String>,
    /// The whole key: shown once, in the answer to its creation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

impl KeyView {
    fn new(id: &str, k: &ApiKey) -> KeyView {
        KeyView {
            id: id.to_owned(),
            name: k.name.clone(),
            role: k.role.as_str().to_owned(),
            created_at: rfc3339(k.created_at_ms),
            expires_at: k.expires_at_ms.map(rfc3339),
            revoked_at: k.revoked_at_ms.map(rfc3339),
            token: None,
        }
    }
}

/// The project's API keys (never their secrets).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct KeyList {
    pub keys: Vec<KeyView>,
    /// Requests an hour each of the project's keys may make, as a token bucket (bursts up to
    /// the same number, refilled evenly); 0: not limited. Every answer's `RateLimit` header
    /// says where a key stands.
    pub rate_limit_per_hour: u32,
    /// Where it comes from: `organisation` (set by operators for the organisation) or
    /// `default` (this replica's `--api-rate-limit`).
    pub rate_limit_source: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// The project's API keys (never their secrets), oldest first, a page at a time.
pub async fn list_keys(
    State(s): State<ApiState>,
    who: Who,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<KeyList>, Problem> {
    let id = parse_project(&id)?;
    q.read().prepare(&s.cluster).await?;
    who.may(&s, Action::ReadProject, Resource::Project(&id))?;
    let state = s.cluster.state();
    let keys = state
        .api_keys
        .iter()
        .filter(|(_, k)| k.project == id)
        .map(|(key_id, k)| ((k.created_at_ms, key_id.clone()), (key_id, k)))
        .collect();
    let (page, next_cursor) = q.page(keys)?;
    let org_limit = state
        .projects
        .get(&id)
        .and_then(|p| state.organisations.get(&p.org))
        .and_then(|o| o.api_per_hour)
        // A replica started without limits limits nobody.
        .filter(|_| s.api_per_hour > 0);
    Ok(Json(KeyList {
        rate_limit_per_hour: org_limit.unwrap_or(s.api_per_hour),
        rate_limit_source: if org_limit.is_some() {
            "organisation"
        } else {
            "default"
        }
        .to_owned(),
        keys: page
            .into_iter()
            .map(|(key_id, k)| KeyView::new(key_id, k))
            .collect(),
        next_cursor,
    }))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKeyRequest {
    pub name: String,
    /// `project-admin`, `project-member` (default) or `project-viewer` (read-only).
    #[serde(default)]
    pub role: Option<String>,
    /// Days until it stops working (none: until revoked).
    #[serde(default)]
    pub expires_in_days: Option<u32>,
}

/// A new key; the answer holds the whole key, which is never shown again.
pub async fn create_key(
    State(s): State<ApiState>,
    who: Who,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<CreateKeyRequest>,
) -> Result<axum::response::Response, Problem> {
    let id = parse_project(&id)?;
    who.may(&s, Action::ManageKeys, Resource::Project(&id))?;
    let name = validate::name("the key's name", &req.name)
        .map_err(|e| Problem::unprocessable("invalid-name", "Invalid name", e.0))?;
    let role = match req.role.as_deref() {
        None => Role::ProjectMember,
        Some(r) => Role::parse(r)
            .filter(|r| r.is_project_role() || *r == Role::Operator)
            .ok_or_else(|| {
                Problem::unprocessable(
                    "invalid-role",
                    "Invalid role",
                    format!(
                        "`{r}` is not a key role: project-admin, project-member or project-viewer"
                    ),
                )
            })?,
    };
    let expires = match req.expires_in_days {
        None => 0,
        Some(d) if (1..=3650).contains(&d) => crate::clock::now_ms() + i64::from(d) * 86_400_000,
        Some(d) => {
            return Err(Problem::unprocessable(
                "invalid-expiry",
                "Invalid expiry",
                format!("expires_in_days {d} must be between 1 and 3650"),
            ));
        }
    };
    let token = ApiKeyToken::generate();
    let command = pb::AddApiKey {
        project_id: id.to_string(),
        key_id: token.key_id.clone(),
        secret_sha256: token.secret_sha256(),
        name,
        role: role.as_str().to_owned(),
        expires_at_unix_ms: expires,
    };
    s.cluster
        .propose_as(who.actor(), Body::AddApiKey(command))
        .await??;
    let state = s.cluster.state();
    let key = state
        .api_keys
        .get(&token.key_id)
        .ok_or_else(|| Problem::not_found("the key was not kept"))?;
    let mut view = KeyView::new(&token.key_id, key);
    view.token = Some(token.to_string());
    Ok(created(
        format!("/v1/projects/{id}/keys/{}", token.key_id),
        view,
    ))
}

/// Revokes a key: from the moment this answers, every replica refuses it.
pub async fn revoke_key(
    State(s): State<ApiState>,
    who: Who,
    Path((id, key_id)): Path<(String, String)>,
) -> Result<axum::http::StatusCode, Problem> {
    let id = parse_project(&id)?;
    who.may(&s, Action::ManageKeys, Resource::Project(&id))?;
    let hidden = || Problem::not_found(format!("API key {key_id} does not exist"));
    if s.cluster
        .state()
        .api_keys
        .get(&key_id)
        .is_none_or(|k| k.project != id)
    {
        return Err(hidden());
    }
    s.cluster
        .propose_as(
            who.actor(),
            Body::RevokeApiKey(pb::RevokeApiKey {
                key_id: key_id.clone(),
            }),
        )
        .await??;
    Ok(axum::http::StatusCode::NO_CONTENT)
}

pub async fn update(
    State(s): State<ApiState>,
    Operator(who): Operator,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<UpdateProjectRequest>,
) -> Result<Json<ProjectView>, Problem> {
    let id = parse_project(&id)?;
    if let Some(w) = req.share_weight
        && !(1..=MAX_SHARE_WEIGHT).contains(&w)
    {
        return Err(Problem::unprocessable(
            "invalid-share-weight",
            "Invalid share weight",
            format!("share_weight {w} must be between 1 and {MAX_SHARE_WEIGHT}"),
        ));
    }
    let tier = match req.gaming_tier.as_deref() {
        None => None,
        Some(t) => Some(SessionTier::parse(t).ok_or_else(|| {
            Problem::unprocessable(
                "unknown-tier",
                "Unknown gaming tier",
                format!(
                    "gaming_tier `{t}` does not exist; choose one of: standard, priority-plus, vip"
                ),
            )
        })?),
    };
    let command = pb::UpdateProject {
        project_id: id.to_string(),
        share_weight: req.share_weight,
        gaming_tier: tier.map(|t| pb::SessionTier::from(t) as i32),
    };
    s.cluster
        .propose_as(who.actor(), Body::UpdateProject(command))
        .await??;
    let state = s.cluster.state();
    state
        .projects
        .get(&id)
        .map(|a| Json(ProjectView::new(a)))
        .ok_or_else(|| Problem::not_found(format!("project {id} does not exist")))
}

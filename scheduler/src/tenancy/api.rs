//! `/v1/projects/{id}`: what operators may change about a project (its fair share of the AI
//! job queues, its gamers' subscription tier), and reading it back.

use axum::Json;
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};
use vmcloud_proto::ProjectId;
use vmcloud_proto::pb::{self, command::Body};

use crate::api::context::{ApiJson, ApiQuery, ApiState, Caller, Operator, ReadOptions, rfc3339};
use crate::api::problem::Problem;
use crate::sessions::types::SessionTier;
use crate::tenancy::types::{MAX_SHARE_WEIGHT, Project};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateProjectRequest {
    /// Weight of its fair share of the AI job queues (1 to 1000).
    #[serde(default)]
    pub share_weight: Option<u32>,
    /// `standard`, `priority-plus` or `vip`.
    #[serde(default)]
    pub gaming_tier: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct ProjectView {
    pub id: String,
    pub name: String,
    pub operator: bool,
    pub share_weight: u32,
    pub gaming_tier: String,
    pub created_at: String,
}

impl ProjectView {
    fn new(a: &Project) -> ProjectView {
        ProjectView {
            id: a.id.to_string(),
            name: a.name.clone(),
            operator: a.operator,
            share_weight: a.share_weight,
            gaming_tier: a.gaming_tier.as_str().to_owned(),
            created_at: rfc3339(a.created_at_ms),
        }
    }
}

fn parse_project(id: &str) -> Result<ProjectId, Problem> {
    ProjectId::parse(id).map_err(|e| Problem::not_found(format!("no project `{id}`: {e}")))
}

/// A project, for an operator or the project itself.
pub async fn get(
    State(s): State<ApiState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    ApiQuery(read): ApiQuery<ReadOptions>,
) -> Result<Json<ProjectView>, Problem> {
    let id = parse_project(&id)?;
    read.prepare(&s.cluster).await?;
    let state = s.cluster.state();
    let operator = state.projects.get(&caller).is_some_and(|a| a.operator);
    state
        .projects
        .get(&id)
        .filter(|_| operator || caller == id)
        .map(|a| Json(ProjectView::new(a)))
        .ok_or_else(|| Problem::not_found(format!("project {id} does not exist")))
}

pub async fn update(
    State(s): State<ApiState>,
    _operator: Operator,
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
    s.cluster.propose(Body::UpdateProject(command)).await??;
    let state = s.cluster.state();
    state
        .projects
        .get(&id)
        .map(|a| Json(ProjectView::new(a)))
        .ok_or_else(|| Problem::not_found(format!("project {id} does not exist")))
}

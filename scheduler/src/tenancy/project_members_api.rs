//! `/v1/projects/{id}/members`: project-level roles (project-admin, project-member,
//! project-viewer) for people of the organisation or from outside it — a contractor can work in
//! one project without seeing the rest of the organisation.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use vmcloud_proto::pb::{self, command::Body};
use vmcloud_proto::{ProjectId, UserId};

use crate::api::context::{ApiJson, ApiQuery, ApiState, Who};
use crate::api::pagination::ListQuery;
use crate::api::problem::Problem;
use crate::tenancy::authz::{Action, Resource};
use crate::tenancy::types::Role;
use crate::tenancy::validate;

fn parse_project(id: &str) -> Result<ProjectId, Problem> {
    ProjectId::parse(id).map_err(|_| Problem::not_found(format!("project `{id}` does not exist")))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ProjectMemberView {
    pub user_id: String,
    pub email: String,
    pub role: &'static str,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ProjectMemberList {
    pub members: Vec<ProjectMemberView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// The project's members, by user id.
fn members(s: &ApiState, id: &ProjectId) -> Result<Vec<ProjectMemberView>, Problem> {
    let state = s.cluster.state();
    let project = state
        .projects
        .get(id)
        .ok_or_else(|| Problem::not_found(format!("project {id} does not exist")))?;
    Ok(project
        .members
        .iter()
        .map(|(u, r)| ProjectMemberView {
            user_id: u.to_string(),
            email: state
                .users
                .get(u)
                .map(|u| u.email.clone())
                .unwrap_or_default(),
            role: r.as_str(),
        })
        .collect())
}

/// The project's own members (organisation members reach it through their organisation role).
pub async fn list(
    State(s): State<ApiState>,
    who: Who,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<ProjectMemberList>, Problem> {
    let id = parse_project(&id)?;
    q.read().prepare(&s.cluster).await?;
    who.may(&s, Action::ReadProject, Resource::Project(&id))?;
    let all = members(&s, &id)?
        .into_iter()
        .map(|m| ((0, m.user_id.clone()), m))
        .collect();
    let (members, next_cursor) = q.page(all)?;
    Ok(Json(ProjectMemberList {
        members,
        next_cursor,
    }))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProjectMemberRequest {
    pub email: String,
    /// project-admin, project-member or project-viewer.
    pub role: String,
}

async fn propose(
    s: &ApiState,
    who: &Who,
    id: &ProjectId,
    user: &UserId,
    role: &str,
) -> Result<(), Problem> {
    let org = s
        .cluster
        .state()
        .projects
        .get(id)
        .map(|p| p.org.clone())
        .ok_or_else(|| Problem::not_found(format!("project {id} does not exist")))?;
    s.cluster
        .propose_as(
            who.actor(),
            Body::SetMember(pb::SetMember {
                org_id: org.to_string(),
                user_id: user.to_string(),
                project_id: id.to_string(),
                role: role.to_owned(),
            }),
        )
        .await??;
    Ok(())
}

/// Gives a signed-up user a role in the project (or changes it).
pub async fn set(
    State(s): State<ApiState>,
    who: Who,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<ProjectMemberRequest>,
) -> Result<Json<ProjectMemberList>, Problem> {
    let id = parse_project(&id)?;
    who.may(&s, Action::ManageProject, Resource::Project(&id))?;
    let role = Role::parse(&req.role)
        .filter(|r| r.is_project_role())
        .ok_or_else(|| {
            Problem::unprocessable(
                "invalid-role",
                "Invalid role",
                format!(
                    "`{}` is not one of project-admin, project-member, project-viewer",
                    req.role
                ),
            )
        })?;
    let email = validate::email(&req.email)
        .map_err(|e| Problem::unprocessable("invalid-email", "Invalid email", e.0))?;
    let user = s
        .cluster
        .state()
        .users_by_email
        .get(&email)
        .cloned()
        .ok_or_else(|| {
            Problem::not_found(format!(
                "no user has signed up as {email}; ask them to sign up first"
            ))
        })?;
    propose(&s, &who, &id, &user, role.as_str()).await?;
    Ok(Json(ProjectMemberList {
        members: members(&s, &id)?,
        next_cursor: None,
    }))
}

/// Takes a user's project role away.
pub async fn remove(
    State(s): State<ApiState>,
    who: Who,
    Path((id, user)): Path<(String, String)>,
) -> Result<StatusCode, Problem> {
    let id = parse_project(&id)?;
    who.may(&s, Action::ManageProject, Resource::Project(&id))?;
    let user = UserId::parse(&user)
        .map_err(|_| Problem::not_found(format!("member `{user}` does not exist")))?;
    propose(&s, &who, &id, &user, "").await?;
    Ok(StatusCode::NO_CONTENT)
}

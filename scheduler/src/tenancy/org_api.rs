//! `/v1/organisations`: the caller's organisations, a new one, its settings and its members.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use vmcloud_proto::pb::{self, command::Body};
use vmcloud_proto::{OrgId, ProjectId, UserId};

use crate::api::context::{ApiJson, ApiQuery, ApiState, ReadOptions, Who, created, rfc3339};
use crate::api::problem::Problem;
use crate::tenancy::authz::{Action, Principal, Resource};
use crate::tenancy::identity_api::OrganisationRequest;
use crate::tenancy::types::Organisation;
use crate::tenancy::types::Role;
use crate::tenancy::validate;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct OrganisationView {
    pub id: String,
    pub name: String,
    pub kind: &'static str,
    pub billing_country: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vat_id: Option<String>,
    /// Printed on invoices.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub billing_address: Vec<String>,
    pub mfa_required: bool,
    pub trial: bool,
    pub created_at: String,
    pub members: Vec<MemberView>,
    /// Its OpenID Connect log-in (never the client secret).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sso: Option<SsoSummary>,
    /// API requests an hour per principal, when operators set one (else the default).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_per_hour: Option<u32>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SsoSummary {
    pub issuer: String,
    pub client_id: String,
    pub allowed_domains: Vec<String>,
    pub default_role: &'static str,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MemberView {
    pub user_id: String,
    pub email: String,
    pub role: String,
}

fn view(state: &crate::state::ClusterState, o: &Organisation) -> OrganisationView {
    OrganisationView {
        id: o.id.to_string(),
        name: o.name.clone(),
        kind: o.kind.as_str(),
        billing_country: o.billing_country.clone(),
        vat_id: o.vat_id.clone(),
        billing_address: o.billing_address.clone(),
        mfa_required: o.mfa_required,
        trial: o.trial,
        created_at: rfc3339(o.created_at_ms),
        members: o
            .members
            .iter()
            .map(|(u, r)| MemberView {
                user_id: u.to_string(),
                email: state
                    .users
                    .get(u)
                    .map(|u| u.email.clone())
                    .unwrap_or_default(),
                role: r.as_str().to_owned(),
            })
            .collect(),
        api_per_hour: o.api_per_hour,
        sso: o.sso.as_ref().map(|c| SsoSummary {
            issuer: c.issuer.clone(),
            client_id: c.client_id.clone(),
            allowed_domains: c.allowed_domains.clone(),
            default_role: c.default_role.as_str(),
        }),
    }
}

/// The organisation as the state holds it now.
fn current(s: &ApiState, id: &OrgId) -> Result<Json<OrganisationView>, Problem> {
    let state = s.cluster.state();
    state
        .organisations
        .get(id)
        .map(|o| Json(view(&state, o)))
        .ok_or_else(|| Problem::not_found(format!("organisation {id} does not exist")))
}

fn parse_org(id: &str) -> Result<OrgId, Problem> {
    OrgId::parse(id).map_err(|_| Problem::not_found(format!("organisation `{id}` does not exist")))
}

/// The organisations the caller can see.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct OrganisationList {
    pub organisations: Vec<OrganisationView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// The organisations the caller may see, oldest first, a page at a time.
pub async fn list(
    State(s): State<ApiState>,
    who: Who,
    ApiQuery(q): ApiQuery<crate::api::pagination::ListQuery>,
) -> Result<Json<OrganisationList>, Problem> {
    q.read().prepare(&s.cluster).await?;
    let state = s.cluster.state();
    let visible = state
        .organisations
        .values()
        .filter(|o| {
            state
                .authorize(&who.principal, Action::ReadOrg, Resource::Org(&o.id))
                .is_ok()
        })
        .map(|o| ((o.created_at_ms, o.id.to_string()), o))
        .collect();
    let (page, next_cursor) = q.page(visible)?;
    Ok(Json(OrganisationList {
        organisations: page.into_iter().map(|o| view(&state, o)).collect(),
        next_cursor,
    }))
}

pub async fn get(
    State(s): State<ApiState>,
    who: Who,
    Path(id): Path<String>,
    ApiQuery(read): ApiQuery<ReadOptions>,
) -> Result<Json<OrganisationView>, Problem> {
    let id = parse_org(&id)?;
    read.prepare(&s.cluster).await?;
    who.may(&s, Action::ReadOrg, Resource::Org(&id))?;
    current(&s, &id)
}

/// Another organisation for a logged-in user, who owns it; it starts with a `default`
/// project.
pub async fn create(
    State(s): State<ApiState>,
    who: Who,
    ApiJson(req): ApiJson<OrganisationRequest>,
) -> Result<axum::response::Response, Problem> {
    let Principal::User { id: user, .. } = &who.principal else {
        return Err(Problem::new(
            StatusCode::FORBIDDEN,
            "users-only",
            "Users only",
            "organisations are created by logged-in users, not API keys",
        ));
    };
    let organisation = req.validated()?;
    let org_id = OrgId::parse(&organisation.org_id).expect("a generated id");
    let command = pb::CreateOrganisation {
        organisation: Some(organisation),
        owner_user_id: user.to_string(),
        project_id: ProjectId::generate().to_string(),
        provider: false,
        partner_id: String::new(),
    };
    s.cluster
        .propose_as(who.actor(), Body::CreateOrganisation(command))
        .await??;
    let state = s.cluster.state();
    let org = state
        .organisations
        .get(&org_id)
        .ok_or_else(|| Problem::not_found("the organisation was not kept"))?;
    Ok(created(
        format!("/v1/organisations/{org_id}"),
        view(&state, org),
    ))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateOrganisationRequest {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub billing_country: Option<String>,
    #[serde(default)]
    pub vat_id: Option<String>,
    /// Postal address printed on invoices (lines separated by newlines; "" clears it).
    #[serde(default)]
    pub billing_address: Option<String>,
    /// Every member must log in with a second factor.
    #[serde(default)]
    pub mfa_required: Option<bool>,
}

pub async fn update(
    State(s): State<ApiState>,
    who: Who,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<UpdateOrganisationRequest>,
) -> Result<Json<OrganisationView>, Problem> {
    let id = parse_org(&id)?;
    who.may(&s, Action::ManageOrg, Resource::Org(&id))?;
    if req.mfa_required == Some(true)
        && !matches!(
            who.principal,
            crate::tenancy::authz::Principal::User { mfa: true, .. }
        )
    {
        return Err(Problem::new(
            axum::http::StatusCode::CONFLICT,
            "mfa-required",
            "Second factor required",
            "turn on two-step verification for yourself and log in with a code first, so that requiring it does not lock you out",
        ));
    }
    {
        let state = s.cluster.state();
        let org = state
            .organisations
            .get(&id)
            .ok_or_else(|| Problem::not_found(format!("organisation {id} does not exist")))?;
        validate::org_details(
            req.name.as_deref().unwrap_or(&org.name),
            org.kind,
            req.billing_country
                .as_deref()
                .unwrap_or(&org.billing_country),
            req.vat_id
                .as_deref()
                .unwrap_or(org.vat_id.as_deref().unwrap_or_default()),
        )
        .map_err(|e| Problem::unprocessable("invalid-organisation", "Invalid organisation", e.0))?;
        if let Some(a) = &req.billing_address {
            validate::address(a).map_err(|e| {
                Problem::unprocessable("invalid-organisation", "Invalid organisation", e.0)
            })?;
        }
    }
    let command = pb::UpdateOrganisation {
        org_id: id.to_string(),
        name: req.name,
        mfa_required: req.mfa_required,
        billing_country: req.billing_country,
        vat_id: req.vat_id,
        billing_address: req.billing_address,
    };
    s.cluster
        .propose_as(who.actor(), Body::UpdateOrganisation(command))
        .await??;
    current(&s, &id)
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MemberRequest {
    /// The user's email (they must have signed up; invitations by mail come later).
    pub email: String,
    /// owner, admin, billing, member or viewer.
    pub role: String,
}

/// Adds a signed-up user to the organisation with a role, or changes their role; someone
/// without an account gets an invitation by mail instead (`202`).
pub async fn set_member(
    State(s): State<ApiState>,
    who: Who,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<MemberRequest>,
) -> Result<axum::response::Response, Problem> {
    use axum::response::IntoResponse;
    let id = parse_org(&id)?;
    who.may(&s, Action::ManageMembers, Resource::Org(&id))?;
    let email = validate::email(&req.email)
        .map_err(|e| Problem::unprocessable("invalid-email", "Invalid email", e.0))?;
    let role = Role::parse(&req.role)
        .filter(|r| r.is_org_role() || r.is_provider_role())
        .ok_or_else(|| {
            Problem::unprocessable(
                "invalid-role",
                "Invalid role",
                format!(
                    "`{}` is not one of owner, admin, billing, member, viewer",
                    req.role
                ),
            )
        })?;
    let user = s.cluster.state().users_by_email.get(&email).cloned();
    let Some(user) = user else {
        if !role.is_org_role() {
            return Err(Problem::unprocessable(
                "invalid-role",
                "Invalid role",
                "provider roles are given to people who have an account",
            ));
        }
        return crate::tenancy::invitations_api::invite(&s, &who, &id, &email, role)
            .await
            .map(IntoResponse::into_response);
    };
    let was = s
        .cluster
        .state()
        .organisations
        .get(&id)
        .and_then(|o| o.members.get(&user).copied());
    propose_member(&s, &who, &id, &user, role.as_str()).await?;
    if was != Some(role) {
        // Tell them; a mail that cannot go out does not undo the membership.
        let org_name = s
            .cluster
            .state()
            .organisations
            .get(&id)
            .map(|o| o.name.clone())
            .unwrap_or_default();
        let body = format!(
            "You are now {} of the organisation \"{org_name}\" on VMCloud.\n\nLog in to see its projects:\n\n  {}/login\n\nIf you do not know this organisation, tell its owners or ignore this mail.\n",
            role.as_str(),
            s.public_url
        );
        if let Err(e) = s
            .mailer
            .send(
                &email,
                &format!("You were added to {org_name} on VMCloud"),
                &body,
            )
            .await
        {
            tracing::warn!(error = %vmcloud_proto::ErrorChain(&e), to = email, "invitation mail not sent");
        }
    }
    current(&s, &id).map(IntoResponse::into_response)
}

/// Removes a member from the organisation.
pub async fn remove_member(
    State(s): State<ApiState>,
    who: Who,
    Path((id, user)): Path<(String, String)>,
) -> Result<StatusCode, Problem> {
    let id = parse_org(&id)?;
    who.may(&s, Action::ManageMembers, Resource::Org(&id))?;
    let user = UserId::parse(&user)
        .map_err(|_| Problem::not_found(format!("member `{user}` does not exist")))?;
    propose_member(&s, &who, &id, &user, "").await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn propose_member(
    s: &ApiState,
    who: &Who,
    org: &OrgId,
    user: &UserId,
    role: &str,
) -> Result<(), Problem> {
    let command = pb::SetMember {
        org_id: org.to_string(),
        user_id: user.to_string(),
        project_id: String::new(),
        role: role.to_owned(),
    };
    s.cluster
        .propose_as(who.actor(), Body::SetMember(command))
        .await??;
    Ok(())
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimitRequest {
    /// Requests an hour each principal of the organisation may make; 0: the default again.
    pub per_hour: u32,
}

/// Operators set an organisation's API rate limit.
pub async fn set_rate_limit(
    State(s): State<ApiState>,
    crate::api::context::Operator(who): crate::api::context::Operator,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<RateLimitRequest>,
) -> Result<Json<OrganisationView>, Problem> {
    let id = parse_org(&id)?;
    if req.per_hour > 10_000_000 {
        return Err(Problem::unprocessable(
            "invalid-rate-limit",
            "Invalid rate limit",
            "per_hour is 0 (the default) to 10,000,000 requests an hour",
        ));
    }
    s.cluster
        .propose_as(
            who.actor(),
            Body::SetRateLimit(pb::SetRateLimit {
                org_id: id.to_string(),
                per_hour: req.per_hour,
            }),
        )
        .await??;
    current(&s, &id)
}

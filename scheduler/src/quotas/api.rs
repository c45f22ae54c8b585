//! `GET /v1/quotas`, `PUT /v1/projects/{id}/quotas` (operators), and quota requests:
//! `POST|GET /v1/quota-requests`, `POST /v1/quota-requests/{id}/approve|decline` (operators).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use vmcloud_proto::ProjectId;
use vmcloud_proto::pb::{self, command::Body};

use crate::api::context::{
    ApiJson, ApiQuery, ApiState, Caller, Operator, ReadOptions, Who, created, rfc3339,
};
use crate::api::pagination::{self, ListQuery};
use crate::api::problem::Problem;
use crate::quotas::types::{Limits, QuotaRequest, RequestState, Used};
use crate::tenancy::authz::{Action, Principal, Resource};

/// One region's limits and what is used of them.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RegionQuota {
    pub region: String,
    pub limits: Limits,
    pub used: Used,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct QuotaView {
    pub project: String,
    pub regions: Vec<RegionQuota>,
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct QuotaQuery {
    #[serde(default)]
    pub stale: bool,
    #[serde(default)]
    pub project: Option<String>,
    #[serde(default)]
    pub region: Option<String>,
}

fn view(s: &ApiState, project: &ProjectId, region: Option<&str>) -> QuotaView {
    let state = s.cluster.state();
    QuotaView {
        project: project.to_string(),
        regions: s
            .catalog
            .regions
            .keys()
            .filter(|r| region.is_none_or(|want| want == r.as_str()))
            .map(|r| RegionQuota {
                region: r.clone(),
                limits: state.quota_limits(project, r),
                used: state.quota_used(project, r),
            })
            .collect(),
    }
}

fn check_region(s: &ApiState, region: &str) -> Result<(), Problem> {
    if s.catalog.regions.contains_key(region) {
        return Ok(());
    }
    Err(Problem::unprocessable(
        "unknown-region",
        "Unknown region",
        format!(
            "region `{region}` does not exist; choose one of: {}",
            s.catalog
                .regions
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        ),
    ))
}

/// The caller's project's limits and usage in every region (or `?region=`).
pub async fn get(
    State(s): State<ApiState>,
    Caller(project, _who): Caller,
    ApiQuery(q): ApiQuery<QuotaQuery>,
) -> Result<Json<QuotaView>, Problem> {
    if let Some(r) = &q.region {
        check_region(&s, r)?;
    }
    ReadOptions {
        stale: q.stale,
        project: None,
    }
    .prepare(&s.cluster)
    .await?;
    Ok(Json(view(&s, &project, q.region.as_deref())))
}

/// Refuses limits that name a GPU model no flavor has.
fn known_models(s: &ApiState, limits: &Limits) -> Result<(), Problem> {
    let mut models: Vec<String> = s
        .catalog
        .flavors
        .values()
        .filter_map(|f| f.gpu.as_ref().map(|g| g.model.clone()))
        .collect();
    models.sort();
    models.dedup();
    match limits.gpus_by_model.keys().find(|m| !models.contains(m)) {
        None => Ok(()),
        Some(m) => Err(Problem::unprocessable(
            "unknown-gpu-model",
            "Unknown GPU model",
            format!(
                "GPU model `{m}` is in no flavor; choose one of: {}",
                models.join(", ")
            ),
        )),
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetQuotaBody {
    pub region: String,
    #[serde(flatten)]
    pub limits: Limits,
}

/// Operators set a project's limits in a region (over its defaults); a partner's admins set
/// its customers' (within the partner's allowance).
pub async fn set(
    State(s): State<ApiState>,
    who: Who,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<SetQuotaBody>,
) -> Result<Json<QuotaView>, Problem> {
    let project = ProjectId::parse(&id)
        .map_err(|_| Problem::not_found(format!("project `{id}` does not exist")))?;
    let partner = s
        .cluster
        .state()
        .partner_of_project(&project)
        .map(str::to_owned);
    match &partner {
        Some(p) => who.may(&s, Action::ManagePartner, Resource::Partner(p))?,
        None => who.may(&s, Action::OperateFleet, Resource::Fleet)?,
    }
    check_region(&s, &body.region)?;
    known_models(&s, &body.limits)?;
    let limits = body.limits;
    if limits.is_empty() {
        return Err(Problem::unprocessable(
            "invalid-quota",
            "Nothing to set",
            "name at least one limit: instances, vcpus, memory_mib, gpus, gpus_by_model, reservations",
        ));
    }
    s.cluster
        .propose_as(
            who.actor(),
            Body::SetQuota(pb::SetQuota {
                project_id: project.to_string(),
                region: body.region.clone(),
                limits: Some(limits.to_pb()),
            }),
        )
        .await??;
    Ok(Json(view(&s, &project, Some(&body.region))))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QuotaRequestBody {
    pub region: String,
    /// Why: what it is for (operators read it).
    pub reason: String,
    #[serde(flatten)]
    pub wanted: Limits,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct QuotaRequestView {
    pub id: String,
    pub project: String,
    pub region: String,
    pub wanted: Limits,
    pub reason: String,
    pub requested_by: String,
    pub created_at: String,
    pub state: RequestState,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decided_at: Option<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub note: String,
}

impl QuotaRequestView {
    fn new(r: &QuotaRequest) -> QuotaRequestView {
        QuotaRequestView {
            id: r.id.clone(),
            project: r.project.to_string(),
            region: r.region.clone(),
            wanted: r.wanted.clone(),
            reason: r.reason.clone(),
            requested_by: r.requested_by.clone(),
            created_at: rfc3339(r.created_at_ms),
            state: r.state,
            decided_at: r.decided_at_ms.map(rfc3339),
            note: r.note.clone(),
        }
    }
}

fn actor_name(who: &Who) -> String {
    match &who.principal {
        Principal::User { id, .. } => format!("user:{id}"),
        Principal::ApiKey(k) => format!("key:{k}"),
        Principal::Node(n) => format!("node:{n}"),
        Principal::System => "system".into(),
        Principal::Anonymous => "anonymous".into(),
    }
}

/// A project asks for higher limits in a region; operators decide.
pub async fn request(
    State(s): State<ApiState>,
    Caller(project, who): Caller,
    ApiJson(body): ApiJson<QuotaRequestBody>,
) -> Result<Response, Problem> {
    who.may(&s, Action::ManageProject, Resource::Project(&project))?;
    check_region(&s, &body.region)?;
    let reason = body.reason.trim().to_owned();
    if reason.is_empty() || reason.chars().count() > 1000 {
        return Err(Problem::unprocessable(
            "invalid-reason",
            "Invalid reason",
            "say in 1 to 1000 characters what the higher limits are for",
        ));
    }
    known_models(&s, &body.wanted)?;
    let wanted = body.wanted;
    if wanted.is_empty() {
        return Err(Problem::unprocessable(
            "invalid-quota",
            "Nothing asked",
            "name at least one limit you want: instances, vcpus, memory_mib, gpus, gpus_by_model, reservations",
        ));
    }
    let id = format!("qr-{:016x}", rand::random::<u64>());
    s.cluster
        .propose_as(
            who.actor(),
            Body::RequestQuota(pb::RequestQuota {
                request_id: id.clone(),
                project_id: project.to_string(),
                region: body.region,
                wanted: Some(wanted.to_pb()),
                reason,
                requested_by: actor_name(&who),
            }),
        )
        .await??;
    let state = s.cluster.state();
    let r = state.quota_requests.get(&id).ok_or_else(|| {
        Problem::internal("the quota request was applied but is not in the state")
    })?;
    Ok(created(
        format!("/v1/quota-requests/{id}"),
        QuotaRequestView::new(r),
    ))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct QuotaRequestList {
    pub quota_requests: Vec<QuotaRequestView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// Operators: every project's requests (`?state=open` for those waiting); others: their
/// project's.
pub async fn list(
    State(s): State<ApiState>,
    who: Who,
    caller: Result<Caller, Problem>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<QuotaRequestList>, Problem> {
    let limit = q.limit()?;
    let after = q.after()?;
    let wanted_state = match q.state.as_deref() {
        None => None,
        Some("open") => Some(RequestState::Open),
        Some("approved") => Some(RequestState::Approved),
        Some("declined") => Some(RequestState::Declined),
        Some(other) => {
            return Err(Problem::new(
                StatusCode::BAD_REQUEST,
                "invalid-query",
                "Invalid query string",
                format!("state `{other}` is not one of: open, approved, declined"),
            ));
        }
    };
    q.read().prepare(&s.cluster).await?;
    let state = s.cluster.state();
    let operator = state
        .authorize(&who.principal, Action::ReadFleet, Resource::Fleet)
        .is_ok();
    let only: Option<ProjectId> = if operator && q.project.is_none() {
        None
    } else {
        Some(caller?.0)
    };
    let mine: Vec<_> = state
        .quota_requests
        .values()
        .filter(|r| only.as_ref().is_none_or(|p| r.project == *p))
        .filter(|r| wanted_state.is_none_or(|w| r.state == w))
        .filter(|r| q.region.as_deref().is_none_or(|reg| r.region == reg))
        .map(|r| ((r.created_at_ms, r.id.clone()), r))
        .collect();
    let (page, next_cursor) = pagination::page_of(mine, after.as_ref(), limit);
    Ok(Json(QuotaRequestList {
        quota_requests: page.into_iter().map(QuotaRequestView::new).collect(),
        next_cursor,
    }))
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DecisionBody {
    /// Said to the project (why, or what was granted).
    #[serde(default)]
    pub note: String,
}

/// The optional `{"note": "…"}` body of a decision.
fn decision_note(body: &[u8]) -> Result<String, Problem> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(String::new());
    }
    serde_json::from_slice::<DecisionBody>(body)
        .map(|d| d.note)
        .map_err(|e| {
            Problem::new(
                StatusCode::BAD_REQUEST,
                "invalid-body",
                "Invalid body",
                format!("the body is optional; when sent it is {{\"note\": \"…\"}} ({e})"),
            )
        })
}

async fn decide(
    s: ApiState,
    who: Who,
    id: String,
    approve: bool,
    note: String,
) -> Result<Json<QuotaRequestView>, Problem> {
    s.cluster
        .propose_as(
            who.actor(),
            Body::DecideQuotaRequest(pb::DecideQuotaRequest {
                request_id: id.clone(),
                approve,
                note,
            }),
        )
        .await??;
    let state = s.cluster.state();
    let r = state
        .quota_requests
        .get(&id)
        .ok_or_else(|| Problem::not_found(format!("quota request {id} does not exist")))?;
    Ok(Json(QuotaRequestView::new(r)))
}

/// Operators grant a request: its limits become the project's in its region.
pub async fn approve(
    State(s): State<ApiState>,
    Operator(who): Operator,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<QuotaRequestView>, Problem> {
    let note = decision_note(&body)?;
    decide(s, who, id, true, note).await
}

/// Operators decline a request (say why in `note`).
pub async fn decline(
    State(s): State<ApiState>,
    Operator(who): Operator,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<QuotaRequestView>, Problem> {
    let note = decision_note(&body)?;
    decide(s, who, id, false, note).await
}

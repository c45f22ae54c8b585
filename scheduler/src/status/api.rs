//! `/v1/status` (public: no login) and `/v1/incidents` (operators declare and update).

use axum::Json;
use axum::extract::{Path, State};
use axum::response::Response;
use serde::{Deserialize, Serialize};
use vmcloud_proto::pb::{self, command::Body};

use crate::api::context::{ApiJson, ApiState, Operator, created, rfc3339};
use crate::api::problem::Problem;
use crate::status::health::fleet_impact;
use crate::status::types::{HISTORY_MS, Impact, Incident, SERVICES};

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UpdateView {
    pub at: String,
    pub status: String,
    pub message: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct IncidentView {
    pub id: String,
    /// `incident` or `maintenance`.
    pub kind: String,
    pub title: String,
    /// Empty: every region.
    pub regions: Vec<String>,
    /// Empty: every service.
    pub services: Vec<String>,
    pub impact: String,
    /// The latest update's status.
    pub status: String,
    pub created_at: String,
    pub starts_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ends_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolved_at: Option<String>,
    /// Newest first.
    pub updates: Vec<UpdateView>,
}

impl IncidentView {
    pub fn new(i: &Incident) -> IncidentView {
        IncidentView {
            id: i.id.clone(),
            kind: i.kind.as_str().to_owned(),
            title: i.title.clone(),
            regions: i.regions.clone(),
            services: i.services.clone(),
            impact: i.impact.as_str().to_owned(),
            status: i.status().to_owned(),
            created_at: rfc3339(i.created_at_ms),
            starts_at: rfc3339(i.starts_at_ms),
            ends_at: i.ends_at_ms.map(rfc3339),
            resolved_at: i.resolved_at_ms.map(rfc3339),
            updates: i
                .updates
                .iter()
                .rev()
                .map(|u| UpdateView {
                    at: rfc3339(u.at_ms),
                    status: u.status.clone(),
                    message: u.message.clone(),
                })
                .collect(),
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ServiceStatus {
    pub service: String,
    /// `operational`, `maintenance`, `degraded`, `partial-outage` or `major-outage`: the worse
    /// of the fleet's health and the incidents under way.
    pub status: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RegionStatusView {
    pub region: String,
    pub name: String,
    pub services: Vec<ServiceStatus>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct StatusView {
    /// The worst status anywhere.
    pub status: String,
    pub updated_at: String,
    pub regions: Vec<RegionStatusView>,
    /// Incidents open and maintenance under way.
    pub active: Vec<IncidentView>,
    /// Maintenance windows to come.
    pub scheduled: Vec<IncidentView>,
    /// Closed in the last 90 days, newest first.
    pub history: Vec<IncidentView>,
}

/// `GET /v1/status`: every region's services, incidents under way and to come, and the last
/// 90 days — public, for the status page and its feeds.
pub async fn status(State(s): State<ApiState>) -> Json<StatusView> {
    let state = s.cluster.state();
    let now = crate::clock::now_ms().max(state.now_ms);
    let leader_known = s.cluster.raft_status().borrow().leader_id != 0;
    let silent: Vec<String> = s
        .liveness
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .alarms
        .iter()
        .map(|a| a.region.clone())
        .collect();
    let active: Vec<&Incident> = state
        .incidents
        .values()
        .filter(|i| i.active_at(now))
        .collect();
    let mut worst = Impact::Operational;
    let regions = s
        .catalog
        .regions
        .iter()
        .filter(|(_, r)| r.status != crate::catalog::RegionStatus::Planned)
        .map(|(id, r)| RegionStatusView {
            region: id.clone(),
            name: r.name.clone(),
            services: SERVICES
                .iter()
                .map(|service| {
                    let declared = active
                        .iter()
                        .filter(|i| i.covers(id, service))
                        .map(|i| i.impact)
                        .max()
                        .unwrap_or(Impact::Operational);
                    let impact =
                        fleet_impact(&state, id, service, &silent, leader_known).max(declared);
                    worst = worst.max(impact);
                    ServiceStatus {
                        service: (*service).to_owned(),
                        status: impact.as_str().to_owned(),
                    }
                })
                .collect(),
        })
        .collect();
    let mut history: Vec<&Incident> = state
        .incidents
        .values()
        .filter(|i| i.resolved_at_ms.is_some_and(|r| r + HISTORY_MS >= now))
        .collect();
    history.sort_by_key(|i| std::cmp::Reverse(i.resolved_at_ms));
    let mut scheduled: Vec<&Incident> = state
        .incidents
        .values()
        .filter(|i| i.scheduled_at(now))
        .collect();
    scheduled.sort_by_key(|i| i.starts_at_ms);
    Json(StatusView {
        status: worst.as_str().to_owned(),
        updated_at: rfc3339(now),
        regions,
        active: active.into_iter().map(IncidentView::new).collect(),
        scheduled: scheduled.into_iter().map(IncidentView::new).collect(),
        history: history.into_iter().map(IncidentView::new).collect(),
    })
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IncidentRequest {
    /// `incident` (default) or `maintenance`.
    #[serde(default)]
    pub kind: Option<String>,
    pub title: String,
    /// Regions affected (catalog ids); absent or empty: every region.
    #[serde(default)]
    pub regions: Vec<String>,
    /// Services affected (`api`, `console`, `compute`, `gpu`, `gaming`, `billing`); absent or
    /// empty: all.
    #[serde(default)]
    pub services: Vec<String>,
    /// `degraded`, `partial-outage`, `major-outage` (incidents) or `maintenance`.
    pub impact: String,
    pub message: String,
    /// Maintenance: when it starts (RFC 3339; default now) and is planned to end.
    #[serde(default)]
    pub starts_at: Option<String>,
    #[serde(default)]
    pub ends_at: Option<String>,
}

fn time(field: &str, t: Option<&str>) -> Result<i64, Problem> {
    t.map_or(Ok(0), |t| crate::api::validate::rfc3339_ms(field, t))
}

fn one(s: &ApiState, id: &str) -> Result<IncidentView, Problem> {
    s.cluster
        .state()
        .incidents
        .get(id)
        .map(IncidentView::new)
        .ok_or_else(|| Problem::not_found(format!("incident {id} does not exist")))
}

/// `POST /v1/incidents` (operators): declares an incident or a maintenance window.
pub async fn declare(
    State(s): State<ApiState>,
    Operator(operator): Operator,
    ApiJson(req): ApiJson<IncidentRequest>,
) -> Result<Response, Problem> {
    if let Some(r) = req
        .regions
        .iter()
        .find(|r| !s.catalog.regions.contains_key(*r))
    {
        return Err(Problem::unprocessable(
            "invalid-incident",
            "Invalid incident",
            format!(
                "`{r}` is not a region: {}",
                s.catalog
                    .regions
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    let id = format!("inc-{:016x}", rand::random::<u64>());
    s.cluster
        .propose_as(
            operator.actor(),
            Body::DeclareIncident(pb::DeclareIncident {
                incident_id: id.clone(),
                kind: req.kind.unwrap_or_else(|| "incident".into()),
                title: req.title,
                regions: req.regions,
                services: req.services,
                impact: req.impact,
                message: req.message,
                starts_at_unix_ms: time("starts_at", req.starts_at.as_deref())?,
                ends_at_unix_ms: time("ends_at", req.ends_at.as_deref())?,
            }),
        )
        .await??;
    Ok(created(format!("/v1/incidents/{id}"), one(&s, &id)?))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IncidentUpdateRequest {
    /// Incidents: `investigating`, `identified`, `monitoring`, `resolved`; maintenance:
    /// `scheduled`, `in-progress`, `completed`. The last closes it.
    pub status: String,
    pub message: String,
    /// A new impact; absent: unchanged.
    #[serde(default)]
    pub impact: Option<String>,
}

/// `POST /v1/incidents/{id}/updates` (operators).
pub async fn update(
    State(s): State<ApiState>,
    Operator(operator): Operator,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<IncidentUpdateRequest>,
) -> Result<Json<IncidentView>, Problem> {
    s.cluster
        .propose_as(
            operator.actor(),
            Body::UpdateIncident(pb::UpdateIncident {
                incident_id: id.clone(),
                status: req.status,
                message: req.message,
                impact: req.impact.unwrap_or_default(),
            }),
        )
        .await??;
    Ok(Json(one(&s, &id)?))
}

/// `GET /v1/incidents/{id}` (public: incidents are on the status page).
pub async fn get(
    State(s): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<IncidentView>, Problem> {
    Ok(Json(one(&s, &id)?))
}

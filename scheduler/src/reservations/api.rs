//! `/v1/reservations`: capacity held for a project (a count of one flavor in one region,
//! from a start to an end), drawn on by instances created with `"market": "reserved"`.

use axum::Json;
use axum::extract::{Path, State};
use axum::response::Response;
use serde::{Deserialize, Serialize};
use vmcloud_proto::pb::{self, command::Body};
use vmcloud_proto::{ProjectId, ReservationId};

use crate::api::context::{ApiJson, ApiQuery, ApiState, Caller, ReadOptions, created, rfc3339};
use crate::api::pagination::{self, ListQuery};
use crate::api::problem::Problem;
use crate::api::validate::{check_flavor, check_region, check_whole_gpus};
use crate::clock::now_ms;
use crate::reservations::apply::plan_reservation;
use crate::reservations::types::{MAX_SLOTS, Reservation};
use crate::state::Applied;
use crate::tenancy::authz::{Action, Resource};

/// Commitment terms offered, in months.
const TERMS_MONTHS: [u32; 3] = [12, 24, 36];

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateReservationRequest {
    pub region: String,
    pub flavor: String,
    pub count: u32,
    /// RFC 3339; default now.
    #[serde(default)]
    pub start: Option<String>,
    /// RFC 3339; or give `term_months`.
    #[serde(default)]
    pub end: Option<String>,
    /// 12, 24 or 36; or give `end`.
    #[serde(default)]
    pub term_months: Option<u32>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ReservationView {
    pub id: String,
    pub region: String,
    pub flavor: String,
    pub count: u32,
    /// Slots taken by its instances.
    pub used: u32,
    pub start: String,
    pub end: String,
    /// `scheduled`, `active` or `expired`.
    pub status: String,
    pub instances: Vec<String>,
    pub created_at: String,
}

impl ReservationView {
    fn new(r: &Reservation, now: i64) -> Self {
        ReservationView {
            id: r.id.to_string(),
            region: r.region.clone(),
            flavor: r.flavor.clone(),
            count: r.count,
            used: r.instances.len() as u32,
            start: rfc3339(r.start_ms),
            end: rfc3339(r.end_ms),
            status: r.status_at(now).to_owned(),
            instances: r.instances.iter().map(ToString::to_string).collect(),
            created_at: rfc3339(r.created_at_ms),
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ReservationList {
    pub reservations: Vec<ReservationView>,
    /// Pass as `?cursor=` for the next page; absent on the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// Checks a request; gives back its (start, end) in Unix ms.
fn validate(s: &ApiState, req: &CreateReservationRequest, now: i64) -> Result<(i64, i64), Problem> {
    check_region(&s.catalog, &req.region)?;
    check_flavor(&s.catalog, &req.flavor)?;
    check_whole_gpus(&s.catalog, &req.flavor, "reservations")?;
    if req.count == 0 || req.count > MAX_SLOTS {
        return Err(Problem::unprocessable(
            "invalid-count",
            "Invalid count",
            format!("count {} must be between 1 and {MAX_SLOTS}", req.count),
        ));
    }
    let start = match &req.start {
        Some(t) => crate::api::validate::rfc3339_ms("start", t)?,
        None => now,
    };
    if start < now - 60_000 {
        return Err(Problem::unprocessable(
            "invalid-time",
            "Start in the past",
            format!(
                "start {} is in the past; leave it out to start now",
                rfc3339(start)
            ),
        ));
    }
    let end = match (&req.end, req.term_months) {
        (Some(t), None) => crate::api::validate::rfc3339_ms("end", t)?,
        (None, Some(m)) if TERMS_MONTHS.contains(&m) => {
            let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(start) * 1_000_000)
                .expect("a valid time");
            let months = t.month() as u32 - 1 + m;
            let end = t
                .replace_day(1)
                .and_then(|d| d.replace_year(t.year() + (months / 12) as i32))
                .and_then(|d| d.replace_month(time::Month::try_from((months % 12 + 1) as u8)?))
                .and_then(|d| {
                    d.replace_day(t.day().min(time::util::days_in_month(d.month(), d.year())))
                })
                .expect("a valid date");
            (end.unix_timestamp_nanos() / 1_000_000) as i64
        }
        (None, Some(m)) => {
            return Err(Problem::unprocessable(
                "invalid-term",
                "Invalid term",
                format!("term_months {m} is not offered; choose one of: 12, 24, 36"),
            ));
        }
        _ => {
            return Err(Problem::unprocessable(
                "invalid-term",
                "End or term",
                "give either end (RFC 3339) or term_months (12, 24 or 36), not both",
            ));
        }
    };
    if end <= start {
        return Err(Problem::unprocessable(
            "invalid-time",
            "End before start",
            format!(
                "end {} must come after start {}",
                rfc3339(end),
                rfc3339(start)
            ),
        ));
    }
    Ok((start, end))
}

pub async fn create(
    State(s): State<ApiState>,
    Caller(project, who): Caller,
    ApiJson(req): ApiJson<CreateReservationRequest>,
) -> Result<Response, Problem> {
    who.may(&s, Action::Deploy, Resource::Project(&project))?;
    let now = now_ms();
    let (start, end) = validate(&s, &req, now)?;
    let flavor = &s.catalog.flavors[&req.flavor];
    let mut command = pb::CreateReservation {
        reservation_id: ReservationId::generate().to_string(),
        project_id: project.to_string(),
        region: req.region.clone(),
        flavor: req.flavor.clone(),
        vcpus: flavor.vcpus,
        memory_mib: flavor.memory_mib,
        disk_gib: flavor.disk_gib,
        gpu_model: flavor
            .gpu
            .as_ref()
            .map(|g| g.model.clone())
            .unwrap_or_default(),
        gpu_count: flavor.gpu.as_ref().map_or(0, |g| g.count),
        start_unix_ms: start,
        end_unix_ms: end,
        slot_nodes: Vec::new(),
        count: req.count,
    };
    // The leader's choice of hosts, on the current state; apply re-checks it.
    s.cluster.read_barrier().await?;
    command.slot_nodes = plan_reservation(&s.cluster.state(), &command)
        .map_err(|why| {
            Problem::new(
                axum::http::StatusCode::CONFLICT,
                "insufficient-capacity",
                "Not enough capacity to reserve",
                format!("{why}; ask for fewer, another flavor or another region"),
            )
        })?
        .into_iter()
        .map(|n| n.to_string())
        .collect();
    match s
        .cluster
        .propose_as(who.actor(), Body::CreateReservation(command))
        .await??
    {
        Applied::Reservation(r) => Ok(created(
            format!("/v1/reservations/{}", r.id),
            ReservationView::new(&r, now),
        )),
        _ => Err(Problem::from(crate::state::Rejected::Malformed)),
    }
}

/// The project's reservations in creation order, a page at a time, optionally by region.
pub async fn list(
    State(s): State<ApiState>,
    Caller(project, _who): Caller,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<ReservationList>, Problem> {
    let limit = q.limit()?;
    let after = q.after()?;
    q.read().prepare(&s.cluster).await?;
    let now = now_ms();
    let state = s.cluster.state();
    let mine: Vec<_> = state
        .reservations
        .values()
        .filter(|r| r.project == project)
        .filter(|r| q.region.as_deref().is_none_or(|reg| r.region == reg))
        .map(|r| ((r.created_at_ms, r.id.to_string()), r))
        .collect();
    let (page, next_cursor) = pagination::page_of(mine, after.as_ref(), limit);
    Ok(Json(ReservationList {
        reservations: page
            .into_iter()
            .map(|r| ReservationView::new(r, now))
            .collect(),
        next_cursor,
    }))
}

pub async fn get(
    State(s): State<ApiState>,
    Caller(project, _who): Caller,
    Path(id): Path<String>,
    ApiQuery(read): ApiQuery<ReadOptions>,
) -> Result<Json<ReservationView>, Problem> {
    let rid = ReservationId::parse(&id)
        .map_err(|e| Problem::not_found(format!("no reservation `{id}`: {e}")))?;
    read.prepare(&s.cluster).await?;
    let state = s.cluster.state();
    state
        .reservations
        .get(&rid)
        .filter(|r| r.project == project)
        .map(|r| Json(ReservationView::new(r, now_ms())))
        .ok_or_else(|| Problem::not_found(format!("reservation {rid} does not exist")))
}

/// The reservation id new work of `market` records: empty unless it is reserved.
pub(crate) fn for_market(
    s: &ApiState,
    market: vmcloud_proto::pb::Market,
    project: &ProjectId,
    flavor: &str,
    region: &str,
    named: Option<&str>,
    need: usize,
) -> Result<String, Problem> {
    if market != vmcloud_proto::pb::Market::Reserved {
        return Ok(String::new());
    }
    choose(s, project, flavor, region, named, need).map(|r| r.to_string())
}

/// The reservation new reserved work draws on: the one named, or the project's oldest active
/// reservation of this flavor and region with `need` free slots. The error says what to do.
fn choose(
    s: &ApiState,
    project: &ProjectId,
    flavor: &str,
    region: &str,
    named: Option<&str>,
    need: usize,
) -> Result<ReservationId, Problem> {
    let now = now_ms();
    let state = s.cluster.state();
    if let Some(id) = named {
        let rid = ReservationId::parse(id)
            .ok()
            .filter(|rid| {
                state
                    .reservations
                    .get(rid)
                    .is_some_and(|r| &r.project == project)
            })
            .ok_or_else(|| {
                Problem::unprocessable(
                    "unknown-reservation",
                    "Unknown reservation",
                    format!("reservation `{id}` does not exist; see GET /v1/reservations"),
                )
            })?;
        // Apply checks the rest (active, shape, free slot) against the newest state.
        return Ok(rid);
    }
    state
        .reservations
        .values()
        .filter(|r| {
            &r.project == project
                && r.flavor == flavor
                && r.region == region
                && r.active_at(now)
                && r.instances.len() + need <= r.count as usize
        })
        .min_by_key(|r| (r.created_at_ms, &r.id))
        .map(|r| r.id.clone())
        .ok_or_else(|| {
            Problem::new(
                axum::http::StatusCode::CONFLICT,
                "no-reservation",
                "No reservation with a free slot",
                format!(
                    "you have no active reservation of {flavor} in {region} with {need} free slot(s); create one with POST /v1/reservations, or use market on-demand"
                ),
            )
        })
}

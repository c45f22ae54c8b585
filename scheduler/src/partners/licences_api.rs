//! `/v1/partners/{id}/licence`, `…/sites` and `…/statements/{period}`: the terms VMCloud's
//! operators set, the sites a partner licenses (address ranges and seats), and its monthly
//! statement (JSON, or CSV with `?format=csv`).

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use vmcloud_proto::pb::{self, command::Body};

use crate::api::context::{ApiJson, ApiState, Operator, Who, rfc3339};
use crate::api::problem::Problem;
use crate::partners::statement::{Statement, csv, statement};
use crate::partners::types::{Licence, Site};
use crate::state::{ApplyResult, Rejected};
use crate::tenancy::authz::{Action, Resource};

/// A refusal of `apply`, the input's (`Invalid`) as `invalid` makes it.
fn refused(result: ApplyResult, invalid: impl FnOnce(String) -> Problem) -> Result<(), Problem> {
    match result {
        Ok(_) => Ok(()),
        Err(Rejected::Invalid(detail)) => Err(invalid(detail)),
        Err(other) => Err(other.into()),
    }
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LicenceView {
    /// `EUR`, `USD` or `GBP`.
    pub currency: String,
    /// What the partner pays each month, whatever its use (`"250.00"`).
    pub base_monthly: String,
    /// What it pays per monthly active user (a profile that played in the month).
    pub per_active_user: String,
    /// Percent of its customers' invoiced net it keeps.
    pub partner_share_percent: String,
    /// The most it hands out to its customers (absent: no limit).
    #[serde(default)]
    pub allowance: AllowanceView,
    /// What it has handed out now (in answers; ignored in a request).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handed_out: Option<AllowanceView>,
}

#[derive(Debug, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AllowanceView {
    /// vCPUs of quota on its customers' projects, all regions together.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vcpus: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpus: Option<u64>,
    /// Entitlements in force in its customers' households.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entitlements: Option<u64>,
    /// The plans its customers may take (absent: any).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plans: Option<Vec<String>>,
}

impl LicenceView {
    fn of(state: &crate::state::ClusterState, partner: &str, l: &Licence) -> LicenceView {
        let out = state.handed_out(partner, state.now_ms);
        let a = &l.allowance;
        LicenceView {
            currency: l.currency.code().to_owned(),
            base_monthly: l.base_monthly.to_string(),
            per_active_user: l.per_active_user.to_string(),
            partner_share_percent: l.partner_share_percent.to_string(),
            allowance: AllowanceView {
                vcpus: a.vcpus.map(u64::from),
                gpus: a.gpus.map(u64::from),
                entitlements: a.entitlements.map(u64::from),
                plans: a.plans.clone(),
            },
            handed_out: Some(AllowanceView {
                vcpus: Some(out.vcpus),
                gpus: Some(out.gpus),
                entitlements: Some(out.entitlements),
                plans: None,
            }),
        }
    }
}

/// A limit of the request as a command's (a limit above 2^32 is none).
fn cap(v: Option<u64>) -> Option<u32> {
    v.map(|v| u32::try_from(v).unwrap_or(u32::MAX))
}

/// `GET /v1/partners/{id}/licence`: its terms (its staff and VMCloud's).
pub async fn get_licence(
    State(s): State<ApiState>,
    who: Who,
    Path(id): Path<String>,
) -> Result<Json<LicenceView>, Problem> {
    who.may(&s, Action::ReadPartner, Resource::Partner(&id))?;
    let state = s.cluster.state();
    let p = crate::partners::api::find(&state, &id)?;
    Ok(Json(LicenceView::of(&state, &id, &p.licence)))
}

/// `PUT /v1/partners/{id}/licence` (VMCloud's operators): sets its terms.
pub async fn set_licence(
    State(s): State<ApiState>,
    Operator(operator): Operator,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<LicenceView>,
) -> Result<Json<LicenceView>, Problem> {
    let result = s
        .cluster
        .propose_as(
            operator.actor(),
            Body::SetPartnerLicence(pb::SetPartnerLicence {
                partner_id: id.clone(),
                currency: req.currency,
                base_monthly: req.base_monthly,
                per_active_user: req.per_active_user,
                partner_share_percent: req.partner_share_percent,
                allowance: Some(pb::PartnerAllowance {
                    vcpus: cap(req.allowance.vcpus),
                    gpus: cap(req.allowance.gpus),
                    entitlements: cap(req.allowance.entitlements),
                    limit_plans: req.allowance.plans.is_some(),
                    plans: req.allowance.plans.clone().unwrap_or_default(),
                }),
            }),
        )
        .await?;
    refused(result, |d| {
        Problem::unprocessable("invalid-licence", "Invalid licence", d)
    })?;
    let state = s.cluster.state();
    let p = crate::partners::api::find(&state, &id)?;
    Ok(Json(LicenceView::of(&state, &id, &p.licence)))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SiteView {
    pub id: String,
    pub name: String,
    pub ranges: Vec<String>,
    pub seats: u32,
    /// Seats taken by sessions running now.
    pub seats_used: u32,
    /// Its terminals' device codes.
    pub device_codes: Vec<String>,
    /// The customer it belongs to; absent: any of the partner's customers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub org_id: Option<String>,
    pub created_at: String,
}

impl SiteView {
    fn of(state: &crate::state::ClusterState, partner: &str, s: &Site) -> SiteView {
        SiteView {
            id: s.id.clone(),
            name: s.name.clone(),
            ranges: s.ranges.clone(),
            seats: s.seats,
            seats_used: state.seats_used(&Site::key(partner, &s.id)),
            device_codes: s.device_codes.clone(),
            org_id: s.org.as_ref().map(ToString::to_string),
            created_at: rfc3339(s.created_at_ms),
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SiteList {
    pub sites: Vec<SiteView>,
}

/// `GET /v1/partners/{id}/sites`: its sites with the seats in use now.
pub async fn sites(
    State(s): State<ApiState>,
    who: Who,
    Path(id): Path<String>,
) -> Result<Json<SiteList>, Problem> {
    who.may(&s, Action::ReadPartner, Resource::Partner(&id))?;
    let state = s.cluster.state();
    let p = crate::partners::api::find(&state, &id)?;
    Ok(Json(SiteList {
        sites: p
            .sites
            .values()
            .map(|site| SiteView::of(&state, &id, site))
            .collect(),
    }))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SiteRequest {
    pub name: String,
    /// CIDRs its terminals launch from (`192.0.2.0/24`), overlapping no other site's.
    #[serde(default)]
    pub ranges: Vec<String>,
    /// Its terminals' device codes (a launch giving one takes a seat wherever it comes from).
    #[serde(default)]
    pub device_codes: Vec<String>,
    /// How many of its terminals may play at once.
    pub seats: u32,
    /// The customer it belongs to; absent: any of the partner's customers.
    #[serde(default)]
    pub org_id: Option<String>,
}

/// `PUT /v1/partners/{id}/sites/{site}` (its admins): makes or replaces a site.
pub async fn put_site(
    State(s): State<ApiState>,
    who: Who,
    Path((id, site)): Path<(String, String)>,
    ApiJson(req): ApiJson<SiteRequest>,
) -> Result<Json<SiteView>, Problem> {
    who.may(&s, Action::ManagePartner, Resource::Partner(&id))?;
    let result = s
        .cluster
        .propose_as(
            who.actor(),
            Body::PutPartnerSite(pb::PutPartnerSite {
                partner_id: id.clone(),
                site_id: site.clone(),
                name: req.name,
                ranges: req.ranges,
                seats: req.seats,
                org_id: req.org_id.unwrap_or_default(),
                device_codes: req.device_codes,
            }),
        )
        .await?;
    refused(result, |d| {
        Problem::unprocessable("invalid-site", "Invalid site", d)
    })?;
    let state = s.cluster.state();
    let view = state
        .partners
        .get(&id)
        .and_then(|p| p.sites.get(&site))
        .map(|x| SiteView::of(&state, &id, x))
        .ok_or_else(|| Problem::not_found(format!("site {site} was not kept")))?;
    Ok(Json(view))
}

/// `DELETE /v1/partners/{id}/sites/{site}` (its admins): sessions running there keep going.
pub async fn delete_site(
    State(s): State<ApiState>,
    who: Who,
    Path((id, site)): Path<(String, String)>,
) -> Result<StatusCode, Problem> {
    who.may(&s, Action::ManagePartner, Resource::Partner(&id))?;
    s.cluster
        .propose_as(
            who.actor(),
            Body::DeletePartnerSite(pb::DeletePartnerSite {
                partner_id: id,
                site_id: site,
            }),
        )
        .await??;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct StatementQuery {
    /// `csv` for a spreadsheet; JSON otherwise.
    #[serde(default)]
    pub format: Option<String>,
}

/// `GET /v1/partners/{id}/statements/{period}`: the partner's month (`YYYY-MM`, or `current`)
/// — its customers' invoiced net and active users, its licence fees and the share each side
/// keeps.
pub async fn get_statement(
    State(s): State<ApiState>,
    who: Who,
    Path((id, period)): Path<(String, String)>,
    Query(q): Query<StatementQuery>,
) -> Result<Response, Problem> {
    who.may(&s, Action::ReadPartner, Resource::Partner(&id))?;
    let state = s.cluster.state();
    let p = crate::partners::api::find(&state, &id)?;
    let period = if period == "current" {
        crate::billing::types::period_of(state.now_ms)
    } else {
        period
    };
    let st: Statement = statement(&state, p, &period, state.now_ms).ok_or_else(|| {
        Problem::unprocessable(
            "invalid-period",
            "Invalid period",
            format!("`{period}` is not a month: write YYYY-MM (e.g. 2026-11) or `current`"),
        )
    })?;
    match q.format.as_deref() {
        None | Some("json") => Ok(Json(st).into_response()),
        Some("csv") => Ok((
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
                (
                    header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"{id}-{period}.csv\""),
                ),
            ],
            csv(&st),
        )
            .into_response()),
        Some(other) => Err(Problem::new(
            StatusCode::BAD_REQUEST,
            "invalid-query",
            "Invalid query",
            format!("format `{other}` is not one of json, csv"),
        )),
    }
}

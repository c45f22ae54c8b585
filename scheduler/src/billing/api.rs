//! Billing's API for customers: what an organisation used and owes (`/v1/usage`,
//! `/v1/billing/forecast`, `/v1/invoices` with their PDF, `/v1/credits`). Billing staff's
//! routes are in [`crate::billing::staff_api`], cards in [`crate::billing::payment_api`].
//!
//! Customers' reads are about an organisation: `?org=`, or the caller's only one. They need
//! the `billing`, `owner` role there (or a provider role); anyone else gets 404.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use vmcloud_billing::invoice::InvoiceLine;
use vmcloud_billing::prices::PriceBooks;
use vmcloud_proto::{OrgId, ProjectId};

use crate::api::context::{ApiQuery, ApiState, ReadOptions, Who, rfc3339};
use crate::api::pagination;
use crate::api::problem::Problem;
use crate::billing::meters::terms;
use crate::billing::types::{
    Credit, DocumentKind, Invoice, InvoiceStatus, Party, Payment, UsageInterval, currency_of,
    period_bounds, period_of,
};
use crate::billing::usage::{UsageReport, forecast_rest, report};
use crate::history::types::HistoryRecord;
use crate::state::ClusterState;
use crate::tenancy::authz::{Action, Principal, Resource};

/// The price books this replica rates with (the built-in `config/prices.toml`).
pub fn price_books() -> PriceBooks {
    PriceBooks::builtin()
}

/// A billing read: as current as asked (`stale`), about the organisation `billing_org` finds.
pub async fn read_org(
    s: &ApiState,
    who: &Who,
    stale: bool,
    org: Option<&str>,
) -> Result<OrgId, Problem> {
    ReadOptions {
        stale,
        project: None,
    }
    .prepare(&s.cluster)
    .await?;
    billing_org(s, who, org, Action::ReadBilling)
}

/// The organisation a billing read is about: `?org=`, else the caller's only organisation
/// (an API key's project's), checked for `action`.
pub fn billing_org(
    s: &ApiState,
    who: &Who,
    org: Option<&str>,
    action: Action,
) -> Result<OrgId, Problem> {
    let state = s.cluster.state();
    let id = match org {
        Some(o) => OrgId::parse(o)
            .map_err(|_| Problem::not_found(format!("organisation `{o}` does not exist")))?,
        None => match &who.principal {
            Principal::ApiKey(k) => state
                .api_keys
                .get(k)
                .and_then(|k| state.projects.get(&k.project))
                .map(|p| p.org.clone())
                .ok_or_else(|| Problem::unauthorized("invalid API key"))?,
            Principal::User { id, .. } => {
                let mut orgs: Vec<OrgId> = state
                    .organisations
                    .values()
                    .filter(|o| o.members.contains_key(id) && !o.provider)
                    .map(|o| o.id.clone())
                    .collect();
                match orgs.len() {
                    1 => orgs.remove(0),
                    0 => {
                        return Err(Problem::not_found(
                            "you belong to no customer organisation: name one with ?org=<id>",
                        ));
                    }
                    _ => {
                        return Err(Problem::new(
                            StatusCode::BAD_REQUEST,
                            "org-required",
                            "Which organisation?",
                            "you belong to several organisations: name one with ?org=<id> (`vmcloud org list` shows them)",
                        ));
                    }
                }
            }
            _ => return Err(Problem::unauthorized("log in or send an API key")),
        },
    };
    who.may(s, action, Resource::Org(&id))?;
    Ok(id)
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct UsageQuery {
    #[serde(default)]
    pub stale: bool,
    /// The organisation (default: the caller's only one).
    #[serde(default)]
    pub org: Option<String>,
    /// A calendar month `YYYY-MM` (default: this month, to now).
    #[serde(default)]
    pub period: Option<String>,
    /// Only this project.
    #[serde(default)]
    pub project: Option<String>,
}

pub(crate) fn bad_period(p: &str) -> Problem {
    Problem::new(
        StatusCode::BAD_REQUEST,
        "invalid-query",
        "Invalid query string",
        format!("`{p}` is not a period: write the month as YYYY-MM (e.g. 2026-11)"),
    )
}

/// The org's usage report over `period` (to `now` while it runs), rated: what the state
/// holds, with `closed` (what a run billed, from history: [`closed_usage`]).
pub(crate) fn usage_report(
    state: &ClusterState,
    org: &OrgId,
    period: &str,
    project: Option<&ProjectId>,
    now: i64,
    closed: Vec<UsageInterval>,
) -> Result<(UsageReport, i64, i64), Problem> {
    let (start, end) = period_bounds(period).ok_or_else(|| bad_period(period))?;
    let to = end.min(now);
    let books = price_books();
    let o = state
        .organisations
        .get(org)
        .ok_or_else(|| Problem::not_found(format!("organisation {org} does not exist")))?;
    let book = books
        .0
        .get(&currency_of(o))
        .ok_or_else(|| Problem::internal("no price book for the organisation's currency"))?;
    let mut intervals = state.usage_between(org, start, to.max(start), &terms(&books));
    intervals.extend(closed);
    if let Some(p) = project {
        intervals.retain(|i| &i.project == p);
    }
    let r = report(org, book, &intervals, start, to.max(start))
        .map_err(|e| Problem::internal(format!("rating failed: {e}")))?;
    Ok((r, start, end))
}

/// Usage and its cost so far in a month (default: this one, to now), by resource, with
/// totals by project, flavor and region and the cost of each hour.
pub async fn usage(
    State(s): State<ApiState>,
    who: Who,
    ApiQuery(q): ApiQuery<UsageQuery>,
) -> Result<Json<UsageReport>, Problem> {
    let org = read_org(&s, &who, q.stale, q.org.as_deref()).await?;
    let state = s.cluster.state();
    let project = match &q.project {
        Some(p) => {
            let id = ProjectId::parse(p)
                .ok()
                .filter(|id| state.projects.get(id).is_some_and(|pr| pr.org == org))
                .ok_or_else(|| Problem::not_found(format!("project `{p}` does not exist")))?;
            Some(id)
        }
        None => None,
    };
    let now = crate::clock::now_ms();
    let period = q.period.clone().unwrap_or_else(|| period_of(now));
    let closed = closed_usage(&s, &state, &org, &period).await?;
    let (r, _, _) = usage_report(&state, &org, &period, project.as_ref(), now, closed)?;
    Ok(Json(r))
}

/// This month so far and where it is heading.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Forecast {
    pub organisation: String,
    pub period: String,
    pub currency: String,
    /// Rated so far (before credits and VAT).
    #[schema(value_type = String)]
    pub month_to_date: Decimal,
    /// What what runs now would add by the month's end (on demand no further than its cap).
    #[schema(value_type = String)]
    pub rest_of_month: Decimal,
    #[schema(value_type = String)]
    pub forecast: Decimal,
    /// Credit left to draw on.
    #[schema(value_type = String)]
    pub credit_left: Decimal,
}

pub async fn forecast(
    State(s): State<ApiState>,
    who: Who,
    ApiQuery(q): ApiQuery<UsageQuery>,
) -> Result<Json<Forecast>, Problem> {
    if q.period.is_some() || q.project.is_some() {
        return Err(Problem::new(
            StatusCode::BAD_REQUEST,
            "invalid-query",
            "Invalid query string",
            "the forecast is of this month for the whole organisation: ask with ?org= only",
        ));
    }
    let org = read_org(&s, &who, q.stale, q.org.as_deref()).await?;
    let state = s.cluster.state();
    let now = crate::clock::now_ms();
    let period = period_of(now);
    let (so_far, _, end) = usage_report(&state, &org, &period, None, now, Vec::new())?;
    let books = price_books();
    let currency = state
        .organisations
        .get(&org)
        .map(currency_of)
        .ok_or_else(|| Problem::not_found(format!("organisation {org} does not exist")))?;
    let book = &books.0[&currency];
    // What runs now: the meters open at `now`.
    let running: Vec<_> = state
        .usage_between(&org, now - 1, now, &terms(&books))
        .into_iter()
        .filter(|i| i.to_ms == now)
        .collect();
    let rest = forecast_rest(book, &so_far, &running, now, end);
    let credit_left = state
        .billing
        .credits
        .get(&org)
        .into_iter()
        .flatten()
        .filter(|k| k.currency == currency && k.expires_at_ms.is_none_or(|e| e > now))
        .map(|k| k.remaining)
        .sum();
    Ok(Json(Forecast {
        organisation: org.to_string(),
        period,
        currency: currency.code().to_owned(),
        month_to_date: so_far.total,
        rest_of_month: rest,
        forecast: so_far.total + rest,
        credit_left,
    }))
}

/// An invoice or credit note as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct InvoiceView {
    pub id: String,
    pub organisation: String,
    pub period: String,
    pub kind: DocumentKind,
    pub status: InvoiceStatus,
    /// `VMC-2026-000001`, once finalized.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub number: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub corrects: Option<String>,
    pub seller: Party,
    pub buyer: Party,
    pub created_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issued_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub due_at: Option<String>,
    pub tax_date: String,
    #[schema(value_type = Vec<Object>)]
    pub lines: Vec<InvoiceLine>,
    #[schema(value_type = Object)]
    pub totals: vmcloud_billing::invoice::Totals,
    pub payments: Vec<Payment>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub void_reason: Option<String>,
    /// Issued by VMCloud in its seller's name (a partner's share): VMCloud pays it.
    pub self_billed: bool,
}

impl InvoiceView {
    pub fn new(i: &Invoice) -> InvoiceView {
        InvoiceView {
            id: i.id.clone(),
            organisation: i.org.to_string(),
            period: i.period.clone(),
            kind: i.kind,
            status: i.status,
            number: i.number.clone(),
            corrects: i.corrects.clone(),
            seller: i.seller.clone(),
            buyer: i.buyer.clone(),
            created_at: rfc3339(i.created_at_ms),
            issued_at: i.issued_at_ms.map(rfc3339),
            due_at: i.due_at_ms.map(rfc3339),
            tax_date: i.tax_date.clone(),
            lines: i.lines.clone(),
            totals: i.totals.clone(),
            payments: i.payments.clone(),
            void_reason: i.voided.as_ref().map(|(_, r)| r.clone()),
            self_billed: i.self_billed,
        }
    }
}

/// An invoice in a list: no lines.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct InvoiceSummary {
    pub id: String,
    pub organisation: String,
    pub period: String,
    pub kind: DocumentKind,
    pub status: InvoiceStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub number: Option<String>,
    pub currency: String,
    #[schema(value_type = String)]
    pub total: Decimal,
    #[schema(value_type = String)]
    pub amount_due: Decimal,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issued_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub due_at: Option<String>,
    pub self_billed: bool,
}

impl InvoiceSummary {
    pub fn new(i: &Invoice) -> InvoiceSummary {
        InvoiceSummary {
            id: i.id.clone(),
            organisation: i.org.to_string(),
            period: i.period.clone(),
            kind: i.kind,
            status: i.status,
            number: i.number.clone(),
            currency: i.totals.currency.code().to_owned(),
            total: i.totals.total,
            amount_due: i.totals.amount_due,
            issued_at: i.issued_at_ms.map(rfc3339),
            due_at: i.due_at_ms.map(rfc3339),
            self_billed: i.self_billed,
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct InvoiceList {
    pub invoices: Vec<InvoiceSummary>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct InvoiceQuery {
    #[serde(default)]
    pub stale: bool,
    #[serde(default)]
    pub org: Option<String>,
    /// Only in this status (`draft`, `open`, `paid`, `void`); drafts are shown to
    /// operators only.
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub limit: Option<usize>,
    #[serde(default)]
    pub cursor: Option<String>,
}

/// Whether the caller sees drafts (operators and finance do; customers see finalized
/// documents only).
fn sees_drafts(s: &ApiState, who: &Who) -> bool {
    s.cluster
        .state()
        .authorize(&who.principal, Action::ManageBilling, Resource::Fleet)
        .is_ok()
}

pub async fn list_invoices(
    State(s): State<ApiState>,
    who: Who,
    ApiQuery(q): ApiQuery<InvoiceQuery>,
) -> Result<Json<InvoiceList>, Problem> {
    if let Some(st) = &q.status
        && !matches!(st.as_str(), "draft" | "open" | "paid" | "void")
    {
        return Err(Problem::new(
            StatusCode::BAD_REQUEST,
            "invalid-query",
            "Invalid query string",
            format!("status `{st}` is not one of: draft, open, paid, void"),
        ));
    }
    let org = read_org(&s, &who, q.stale, q.org.as_deref()).await?;
    let drafts = sees_drafts(&s, &who);
    let state = s.cluster.state();
    let items = state
        .billing
        .by_org
        .get(&org)
        .into_iter()
        .flatten()
        .filter_map(|id| state.billing.invoices.get(id))
        .filter(|i| drafts || i.status != InvoiceStatus::Draft)
        .filter(|i| q.status.as_deref().is_none_or(|st| st == i.status.as_str()))
        .map(|i| ((i.created_at_ms, i.id.clone()), InvoiceSummary::new(i)))
        .collect();
    let limit = match q.limit {
        None => pagination::DEFAULT_LIMIT,
        Some(n) if (1..=pagination::MAX_LIMIT).contains(&n) => n,
        Some(n) => {
            return Err(Problem::new(
                StatusCode::BAD_REQUEST,
                "invalid-query",
                "Invalid query string",
                format!(
                    "limit {n} is out of range: ask for 1 to {} items a page",
                    pagination::MAX_LIMIT
                ),
            ));
        }
    };
    let after = q.cursor.as_deref().map(pagination::decode).transpose()?;
    let (invoices, next_cursor) = pagination::page_of(items, after.as_ref(), limit);
    Ok(Json(InvoiceList {
        invoices,
        next_cursor,
    }))
}

/// An invoice the caller may read: 404 for anyone else's (and for drafts, to customers).
/// A finalized one with every line as it was issued (read from history; the state keeps its
/// status and one line per kind).
pub async fn readable_invoice(s: &ApiState, who: &Who, id: &str) -> Result<Invoice, Problem> {
    let mut inv = {
        let state = s.cluster.state();
        let missing = || Problem::not_found(format!("invoice `{id}` does not exist"));
        let inv = state.billing.invoices.get(id).ok_or_else(missing)?;
        if state
            .authorize(&who.principal, Action::ReadBilling, Resource::Org(&inv.org))
            .is_err()
        {
            return Err(missing());
        }
        if inv.status == InvoiceStatus::Draft && !sees_drafts(s, who) {
            return Err(missing());
        }
        Invoice::clone(inv)
    };
    if inv.status != InvoiceStatus::Draft {
        let dimension = format!("invoice:{id}");
        let (issued, _) = s
            .read_history(move |h| h.dimension_page(&dimension, None, 1))
            .await?;
        match issued.into_iter().next() {
            Some(HistoryRecord::InvoiceIssued(doc)) => inv.lines = doc.lines,
            _ => {
                return Err(Problem::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "Invoice not in history yet",
                    "this replica has not written the issued invoice to its history yet: try again in a few seconds, or ask another replica",
                ));
            }
        }
    }
    Ok(inv)
}

/// The usage of `org` in `period` that runs billed by `state` (the same copy the rest of the
/// report reads, so nothing is counted twice): history keeps it once the period's invoice is
/// made (empty before).
pub async fn closed_usage(
    s: &ApiState,
    state: &ClusterState,
    org: &OrgId,
    period: &str,
) -> Result<Vec<UsageInterval>, Problem> {
    let billed = state
        .billing
        .runs
        .get(period)
        .is_some_and(|r| r.complete || r.cursor.as_ref().is_some_and(|c| c >= org));
    if !billed {
        return Ok(Vec::new());
    }
    let dimension = format!("usage:{org}:{period}");
    let mut out = Vec::new();
    let mut before = None;
    loop {
        let d = dimension.clone();
        let (page, last) = s
            .read_history(move |h| h.dimension_page(&d, before, 256))
            .await?;
        for record in page {
            if let HistoryRecord::ClosedUsage { intervals, .. } = record {
                out.extend(intervals);
            }
        }
        match last {
            Some(k) => before = Some(k),
            None => break,
        }
    }
    Ok(out)
}

pub async fn get_invoice(
    State(s): State<ApiState>,
    who: Who,
    Path(id): Path<String>,
    ApiQuery(read): ApiQuery<ReadOptions>,
) -> Result<Json<InvoiceView>, Problem> {
    read.prepare(&s.cluster).await?;
    Ok(Json(InvoiceView::new(
        &readable_invoice(&s, &who, &id).await?,
    )))
}

/// A credit as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CreditView {
    pub id: String,
    /// `sla`, `trial` or `promotional`.
    pub kind: String,
    pub description: String,
    pub currency: String,
    #[schema(value_type = String)]
    pub amount: Decimal,
    #[schema(value_type = String)]
    pub remaining: Decimal,
    pub granted_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
}

impl CreditView {
    pub fn new(k: &Credit) -> CreditView {
        CreditView {
            id: k.id.clone(),
            kind: serde_json::to_value(k.kind)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            description: k.description.clone(),
            currency: k.currency.code().to_owned(),
            amount: k.amount,
            remaining: k.remaining,
            granted_at: rfc3339(k.granted_at_ms),
            expires_at: k.expires_at_ms.map(rfc3339),
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CreditList {
    pub organisation: String,
    pub credits: Vec<CreditView>,
}

pub async fn credits(
    State(s): State<ApiState>,
    who: Who,
    ApiQuery(q): ApiQuery<UsageQuery>,
) -> Result<Json<CreditList>, Problem> {
    let org = read_org(&s, &who, q.stale, q.org.as_deref()).await?;
    let state = s.cluster.state();
    Ok(Json(CreditList {
        organisation: org.to_string(),
        credits: state
            .billing
            .credits
            .get(&org)
            .into_iter()
            .flatten()
            .map(CreditView::new)
            .collect(),
    }))
}

/// The invoice as PDF (`invoice-VMC-2026-000001.pdf`).
pub async fn invoice_pdf(
    State(s): State<ApiState>,
    who: Who,
    Path(id): Path<String>,
    ApiQuery(read): ApiQuery<ReadOptions>,
) -> Result<axum::response::Response, Problem> {
    use axum::response::IntoResponse;
    read.prepare(&s.cluster).await?;
    let inv = readable_invoice(&s, &who, &id).await?;
    let name = inv
        .number
        .clone()
        .unwrap_or_else(|| format!("draft-{}", inv.id));
    Ok((
        [
            (
                axum::http::header::CONTENT_TYPE,
                "application/pdf".to_owned(),
            ),
            (
                axum::http::header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"invoice-{name}.pdf\""),
            ),
        ],
        crate::billing::pdf::render(&inv),
    )
        .into_response())
}

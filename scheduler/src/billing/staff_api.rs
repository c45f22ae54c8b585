//! Billing staff's API (operators, finance): monthly runs, previews, finalizing, payments
//! received, voids and credit notes, credits, the accounting journal, and the test clock.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use vmcloud_billing::prices::BUILTIN_PRICES;
use vmcloud_billing::tax::BUILTIN_TABLE as BUILTIN_VAT;
use vmcloud_proto::OrgId;
use vmcloud_proto::pb::{self, command::Body};

use crate::api::context::{ApiJson, ApiQuery, ApiState, Operator, ReadOptions, Who, rfc3339};
use crate::api::problem::Problem;
use crate::billing::api::{CreditView, InvoiceSummary, InvoiceView, bad_period, readable_invoice};
use crate::billing::types::{Invoice, InvoiceStatus, period_bounds};
use crate::state::ClusterState;
use crate::tenancy::authz::{Action, Resource};

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RunRequest {
    /// `YYYY-MM`, a month that has ended.
    pub period: String,
    /// Stop at drafts (default: finalize them, numbering each).
    #[serde(default)]
    pub draft: bool,
    /// Days until the invoices are due (default 14).
    #[serde(default)]
    pub due_days: Option<u32>,
}

/// What a run made.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RunView {
    pub period: String,
    pub at: String,
    pub invoices: Vec<InvoiceSummary>,
    /// Totals per currency of the run's invoices.
    pub totals: std::collections::BTreeMap<String, String>,
}

fn run_view<'a>(
    state: &ClusterState,
    period: &str,
    ids: impl IntoIterator<Item = &'a String>,
    at: i64,
) -> RunView {
    let invoices: Vec<InvoiceSummary> = ids
        .into_iter()
        .filter_map(|id| state.billing.invoices.get(id))
        .map(|i| InvoiceSummary::new(i))
        .collect();
    let mut totals: std::collections::BTreeMap<String, Decimal> = Default::default();
    for i in &invoices {
        *totals.entry(i.currency.clone()).or_default() += i.total;
    }
    RunView {
        period: period.to_owned(),
        at: rfc3339(at),
        invoices,
        totals: totals
            .into_iter()
            .map(|(k, v)| (k, v.to_string()))
            .collect(),
    }
}

fn run_command(req: &RunRequest) -> Result<pb::RunBilling, Problem> {
    period_bounds(&req.period).ok_or_else(|| {
        Problem::unprocessable(
            "invalid-period",
            "Invalid period",
            format!(
                "`{}` is not a period: write the month as YYYY-MM (e.g. 2026-11)",
                req.period
            ),
        )
    })?;
    Ok(pb::RunBilling {
        period: req.period.clone(),
        prices_toml: BUILTIN_PRICES.to_owned(),
        vat_toml: BUILTIN_VAT.to_owned(),
        finalize: !req.draft,
        due_days: req.due_days.unwrap_or(0),
        after_org: String::new(),
        max_orgs: 0,
    })
}

/// A caller allowed to manage billing for the whole provider (operators, finance); anyone
/// else gets 403 before anything is looked up or read from the request.
#[derive(Debug, Clone)]
pub struct BillingStaff(pub Who);

impl axum::extract::FromRequestParts<ApiState> for BillingStaff {
    type Rejection = Problem;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &ApiState,
    ) -> Result<BillingStaff, Problem> {
        let who = Who::from_request_parts(parts, state).await?;
        match state.cluster.state().authorize(
            &who.principal,
            Action::ManageBilling,
            Resource::Fleet,
        ) {
            Ok(()) => Ok(BillingStaff(who)),
            Err(crate::tenancy::authz::Denied::Unauthenticated(m)) => Err(Problem::unauthorized(m)),
            Err(_) => Err(Problem::new(
                StatusCode::FORBIDDEN,
                "billing-staff-only",
                "Billing staff only",
                "only VMCloud's operators and finance staff may do this",
            )),
        }
    }
}

/// Runs a month's billing (operators, finance).
pub async fn run(
    State(s): State<ApiState>,
    BillingStaff(who): BillingStaff,
    ApiJson(req): ApiJson<RunRequest>,
) -> Result<axum::response::Response, Problem> {
    let command = run_command(&req)?;
    crate::billing::controller::run_month(
        &s.cluster,
        Some(who.actor()),
        &command.period,
        command.finalize,
        command.due_days,
    )
    .await??;
    let state = s.cluster.state();
    let record = state
        .billing
        .runs
        .get(&req.period)
        .ok_or_else(|| Problem::internal("the run was not kept"))?;
    Ok(crate::api::context::created(
        format!("/v1/billing/runs/{}", req.period),
        run_view(&state, &req.period, &record.invoices, record.at_ms),
    ))
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct PreviewQuery {
    /// `YYYY-MM`.
    pub period: String,
}

/// What running a period now would make, without making it: the run applied to a copy of
/// the state.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Preview {
    pub period: String,
    pub invoices: Vec<InvoiceView>,
}

pub async fn preview(
    State(s): State<ApiState>,
    BillingStaff(_who): BillingStaff,
    ApiQuery(q): ApiQuery<PreviewQuery>,
) -> Result<Json<Preview>, Problem> {
    ReadOptions::default().prepare(&s.cluster).await?;
    let mut command = run_command(&RunRequest {
        period: q.period.clone(),
        draft: true,
        due_days: None,
    })?;
    command.finalize = false;
    let mut copy = ClusterState::clone(&s.cluster.state());
    let now = crate::clock::now_ms();
    copy.run_billing(command, now).map_err(Problem::from)?;
    let ids = copy
        .billing
        .runs
        .get(&q.period)
        .map(|r| r.invoices.iter().cloned().collect::<Vec<_>>())
        .unwrap_or_default();
    Ok(Json(Preview {
        period: q.period,
        invoices: ids
            .iter()
            .filter_map(|id| copy.billing.invoices.get(id))
            .map(|i| InvoiceView::new(i))
            .collect(),
    }))
}

pub async fn get_run(
    State(s): State<ApiState>,
    BillingStaff(_who): BillingStaff,
    Path(period): Path<String>,
    ApiQuery(read): ApiQuery<ReadOptions>,
) -> Result<Json<RunView>, Problem> {
    read.prepare(&s.cluster).await?;
    let state = s.cluster.state();
    let r = state
        .billing
        .runs
        .get(&period)
        .ok_or_else(|| Problem::not_found(format!("period `{period}` has not been billed")))?;
    Ok(Json(run_view(&state, &period, &r.invoices, r.at_ms)))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FinalizeRequest {
    /// Only these drafts (default: all the period's).
    #[serde(default)]
    pub invoices: Vec<String>,
    #[serde(default)]
    pub due_days: Option<u32>,
}

pub async fn finalize(
    State(s): State<ApiState>,
    BillingStaff(who): BillingStaff,
    Path(period): Path<String>,
    ApiJson(req): ApiJson<FinalizeRequest>,
) -> Result<Json<RunView>, Problem> {
    s.cluster
        .propose_as(
            who.actor(),
            Body::FinalizeInvoices(pb::FinalizeInvoices {
                period: period.clone(),
                invoice_ids: req.invoices,
                due_days: req.due_days.unwrap_or(0),
            }),
        )
        .await??;
    let state = s.cluster.state();
    let r = state
        .billing
        .runs
        .get(&period)
        .ok_or_else(|| Problem::not_found(format!("period `{period}` has not been billed")))?;
    Ok(Json(run_view(&state, &period, &r.invoices, r.at_ms)))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PaymentRequest {
    /// `bank-transfer` (recorded by an operator) or `card`.
    pub method: String,
    /// The bank's reference.
    pub reference: String,
    /// The whole amount due, as a decimal string.
    pub amount: String,
}

/// Records a payment received (operators: a bank transfer seen on the account).
pub async fn record_payment(
    State(s): State<ApiState>,
    BillingStaff(who): BillingStaff,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<PaymentRequest>,
) -> Result<Json<InvoiceView>, Problem> {
    s.cluster
        .propose_as(
            who.actor(),
            Body::RecordPayment(pb::RecordPayment {
                invoice_id: id.clone(),
                method: req.method,
                reference: req.reference,
                amount: req.amount,
            }),
        )
        .await??;
    Ok(Json(InvoiceView::new(
        &readable_invoice(&s, &who, &id).await?,
    )))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VoidRequest {
    /// Printed on the credit note.
    pub reason: String,
}

/// Voids an open invoice, or issues a credit note for a paid one.
pub async fn void(
    State(s): State<ApiState>,
    BillingStaff(who): BillingStaff,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<VoidRequest>,
) -> Result<Json<InvoiceView>, Problem> {
    s.cluster
        .propose_as(
            who.actor(),
            Body::VoidInvoice(pb::VoidInvoice {
                invoice_id: id.clone(),
                reason: req.reason,
            }),
        )
        .await??;
    Ok(Json(InvoiceView::new(
        &readable_invoice(&s, &who, &id).await?,
    )))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreditRequest {
    /// A decimal string in the organisation's currency.
    pub amount: String,
    /// Printed on invoices that draw on it.
    pub description: String,
    /// `promotional` (default) or `sla`.
    #[serde(default)]
    pub kind: Option<String>,
    /// RFC 3339; default: never.
    #[serde(default)]
    pub expires_at: Option<String>,
}

/// Grants an organisation credit (operators, finance).
pub async fn grant_credit(
    State(s): State<ApiState>,
    BillingStaff(who): BillingStaff,
    Path(org): Path<String>,
    ApiJson(req): ApiJson<CreditRequest>,
) -> Result<axum::response::Response, Problem> {
    let org_id = OrgId::parse(&org)
        .map_err(|_| Problem::not_found(format!("organisation `{org}` does not exist")))?;
    let expires = match &req.expires_at {
        None => 0,
        Some(t) => time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
            .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
            .map_err(|_| {
                Problem::unprocessable(
                    "invalid-credit",
                    "Invalid credit",
                    format!(
                        "`expires_at` {t:?} is not an RFC 3339 time (e.g. 2027-01-31T00:00:00Z)"
                    ),
                )
            })?,
    };
    let id = format!("credit-{:016x}", rand::random::<u64>());
    s.cluster
        .propose_as(
            who.actor(),
            Body::GrantCredit(pb::GrantCredit {
                org_id: org_id.to_string(),
                credit_id: id.clone(),
                kind: req.kind.unwrap_or_else(|| "promotional".into()),
                description: req.description,
                amount: req.amount,
                currency: String::new(),
                expires_at_unix_ms: expires,
            }),
        )
        .await??;
    let state = s.cluster.state();
    let credit = state
        .billing
        .credits
        .get(&org_id)
        .and_then(|ks| ks.iter().find(|k| k.id == id))
        .ok_or_else(|| Problem::internal("the credit was not kept"))?;
    Ok(crate::api::context::created(
        format!("/v1/credits?org={org_id}"),
        CreditView::new(credit),
    ))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClockRequest {
    /// How far to move the cluster's clock: seconds.
    pub advance_s: i64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ClockView {
    /// The cluster's time now.
    pub now: String,
    /// Its lead over this machine's clock, in seconds.
    pub lead_s: i64,
}

/// Moves the test clock forward (clusters started with `--test-clock` only; operators).
pub async fn advance_clock(
    State(s): State<ApiState>,
    Operator(who): Operator,
    ApiJson(req): ApiJson<ClockRequest>,
) -> Result<Json<ClockView>, Problem> {
    if !s.test_clock {
        return Err(Problem::new(
            StatusCode::CONFLICT,
            "no-test-clock",
            "No test clock",
            "this cluster runs on real time; only clusters started with --test-clock (vmcloud dev) have a test clock",
        ));
    }
    s.cluster
        .propose_as(
            who.actor(),
            Body::AdvanceClock(pb::AdvanceClock {
                by_ms: req.advance_s.saturating_mul(1000),
            }),
        )
        .await??;
    let lead = s.cluster.state().billing.clock_offset_ms;
    Ok(Json(ClockView {
        now: rfc3339(crate::clock::now_ms()),
        lead_s: lead / 1000,
    }))
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct JournalQuery {
    /// `YYYY-MM`: the documents issued in that month.
    #[serde(default)]
    pub period: Option<String>,
}

/// Billing staff: the double entries of the documents issued in a month, as CSV.
pub async fn journal(
    State(s): State<ApiState>,
    BillingStaff(_who): BillingStaff,
    ApiQuery(q): ApiQuery<JournalQuery>,
) -> Result<axum::response::Response, Problem> {
    use axum::response::IntoResponse;
    let period = q.period.ok_or_else(|| {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "invalid-query",
            "Invalid query string",
            "say which month: ?period=YYYY-MM (the documents issued in it)",
        )
    })?;
    let (start, end) = period_bounds(&period).ok_or_else(|| bad_period(&period))?;
    ReadOptions::default().prepare(&s.cluster).await?;
    let state = s.cluster.state();
    let mut docs: Vec<&Invoice> = state
        .billing
        .invoices
        .values()
        .map(|i| i.as_ref())
        .filter(|i| i.issued_at_ms.is_some_and(|t| t >= start && t < end))
        .collect();
    docs.sort_by(|a, b| a.number.cmp(&b.number));
    Ok((
        [
            (
                axum::http::header::CONTENT_TYPE,
                "text/csv; charset=utf-8".to_owned(),
            ),
            (
                axum::http::header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"journal-{period}.csv\""),
            ),
        ],
        crate::billing::journal::journal(&docs),
    )
        .into_response())
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CouponRequest {
    /// What customers type (3 to 32 letters, digits or `-`; kept upper case).
    pub code: String,
    /// A percent off (e.g. "20"), or …
    #[serde(default)]
    pub percent_off: Option<String>,
    /// … an amount off (e.g. "10.00") in `currency`.
    #[serde(default)]
    pub amount_off: Option<String>,
    #[serde(default)]
    pub currency: Option<String>,
    /// `once` (default), `repeating` (with `months`) or `forever`.
    #[serde(default)]
    pub duration: Option<String>,
    #[serde(default)]
    pub months: Option<u32>,
    #[serde(default)]
    pub max_redemptions: Option<u32>,
    /// RFC 3339; default: never.
    #[serde(default)]
    pub expires_at: Option<String>,
}

/// A coupon as billing staff see it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CouponView {
    pub code: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub percent_off: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub amount_off: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    /// Invoices it applies to (absent: every one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub invoices: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_redemptions: Option<u32>,
    pub redemptions: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
}

impl CouponView {
    fn new(c: &crate::billing::types::Coupon) -> CouponView {
        use crate::billing::types::Off;
        let (percent_off, amount_off, currency) = match c.off {
            Off::Percent(p) => (Some(p.to_string()), None, None),
            Off::Amount(a, cur) => (None, Some(a.to_string()), Some(cur.code().to_owned())),
        };
        CouponView {
            code: c.code.clone(),
            percent_off,
            amount_off,
            currency,
            invoices: c.invoices,
            max_redemptions: c.max_redemptions,
            redemptions: c.redemptions,
            expires_at: c.expires_at_ms.map(rfc3339),
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CouponList {
    pub coupons: Vec<CouponView>,
}

/// Billing staff: a new coupon.
pub async fn create_coupon(
    State(s): State<ApiState>,
    BillingStaff(who): BillingStaff,
    ApiJson(req): ApiJson<CouponRequest>,
) -> Result<axum::response::Response, Problem> {
    let expires = match &req.expires_at {
        None => 0,
        Some(t) => time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
            .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
            .map_err(|_| {
                Problem::unprocessable(
                    "invalid-coupon",
                    "Invalid coupon",
                    format!("`expires_at` {t:?} is not an RFC 3339 time"),
                )
            })?,
    };
    s.cluster
        .propose_as(
            who.actor(),
            Body::CreateCoupon(pb::CreateCoupon {
                code: req.code.clone(),
                percent_off: req.percent_off.unwrap_or_default(),
                amount_off: req.amount_off.unwrap_or_default(),
                currency: req.currency.unwrap_or_default(),
                duration: req.duration.unwrap_or_default(),
                months: req.months.unwrap_or(0),
                max_redemptions: req.max_redemptions.unwrap_or(0),
                expires_at_unix_ms: expires,
            }),
        )
        .await??;
    let code = req.code.trim().to_ascii_uppercase();
    let state = s.cluster.state();
    let coupon = state
        .billing
        .coupons
        .get(&code)
        .ok_or_else(|| Problem::internal("the coupon was not kept"))?;
    Ok(crate::api::context::created(
        "/v1/billing/coupons".to_owned(),
        CouponView::new(coupon),
    ))
}

/// Billing staff: every coupon.
pub async fn list_coupons(
    State(s): State<ApiState>,
    BillingStaff(_who): BillingStaff,
    ApiQuery(read): ApiQuery<ReadOptions>,
) -> Result<Json<CouponList>, Problem> {
    read.prepare(&s.cluster).await?;
    let state = s.cluster.state();
    Ok(Json(CouponList {
        coupons: state
            .billing
            .coupons
            .values()
            .map(CouponView::new)
            .collect(),
    }))
}

/// What is owed, by how late: amounts due not overdue yet, then 1–30, 31–60, 61–90 and more
/// than 90 days past their due date.
#[derive(Debug, Default, Serialize, utoipa::ToSchema)]
pub struct Aging {
    #[schema(value_type = String)]
    pub not_due: Decimal,
    #[schema(value_type = String)]
    pub days_1_30: Decimal,
    #[schema(value_type = String)]
    pub days_31_60: Decimal,
    #[schema(value_type = String)]
    pub days_61_90: Decimal,
    #[schema(value_type = String)]
    pub over_90: Decimal,
    #[schema(value_type = String)]
    pub total: Decimal,
}

impl Aging {
    fn add(&mut self, amount: Decimal, days_late: i64) {
        let bucket = match days_late {
            ..=0 => &mut self.not_due,
            1..=30 => &mut self.days_1_30,
            31..=60 => &mut self.days_31_60,
            61..=90 => &mut self.days_61_90,
            _ => &mut self.over_90,
        };
        *bucket += amount;
        self.total += amount;
    }
}

/// One organisation's open invoices.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct OrgReceivable {
    pub organisation: String,
    pub name: String,
    pub currency: String,
    #[schema(value_type = String)]
    pub amount_due: Decimal,
    pub open_invoices: u32,
    /// The oldest due date among them.
    pub oldest_due_at: String,
    /// Days past that date (0: not overdue).
    pub days_overdue: i64,
    /// Failed charges of those invoices (dunning steps).
    pub failed_charges: u32,
    pub suspended: bool,
}

/// Receivables: what customers owe, aged, per currency and per organisation (most overdue
/// first).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Receivables {
    pub at: String,
    /// Per currency.
    pub totals: std::collections::BTreeMap<String, Aging>,
    pub organisations: Vec<OrgReceivable>,
    /// More organisations owe than `limit` shows.
    pub truncated: bool,
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ReceivablesQuery {
    #[serde(default)]
    pub stale: bool,
    /// Organisations shown (1 to 1000, default 100); the totals count every one.
    #[serde(default)]
    pub limit: Option<usize>,
}

/// Billing staff: `GET /v1/billing/receivables`.
pub async fn receivables(
    State(s): State<ApiState>,
    BillingStaff(_who): BillingStaff,
    ApiQuery(q): ApiQuery<ReceivablesQuery>,
) -> Result<Json<Receivables>, Problem> {
    let limit = match q.limit {
        None => 100,
        Some(n) if (1..=1000).contains(&n) => n,
        Some(n) => {
            return Err(Problem::new(
                StatusCode::BAD_REQUEST,
                "invalid-query",
                "Invalid query string",
                format!("limit {n} is out of range: ask for 1 to 1000 organisations"),
            ));
        }
    };
    ReadOptions {
        stale: q.stale,
        project: None,
    }
    .prepare(&s.cluster)
    .await?;
    let state = s.cluster.state();
    let now = crate::clock::now_ms();
    let day = 86_400_000;
    let mut totals: std::collections::BTreeMap<String, Aging> = Default::default();
    let mut by_org: std::collections::BTreeMap<&OrgId, OrgReceivable> = Default::default();
    for inv in state.billing.invoices.values().filter(|i| {
        i.status == InvoiceStatus::Open && i.totals.amount_due > Decimal::ZERO && !i.self_billed
    }) {
        let due = inv.due_at_ms.unwrap_or(inv.created_at_ms);
        let late = ((now - due) / day).max(0);
        let currency = inv.totals.currency.code().to_owned();
        totals
            .entry(currency.clone())
            .or_default()
            .add(inv.totals.amount_due, late);
        let entry = by_org.entry(&inv.org).or_insert_with(|| OrgReceivable {
            organisation: inv.org.to_string(),
            name: inv.buyer.name.clone(),
            currency,
            amount_due: Decimal::ZERO,
            open_invoices: 0,
            oldest_due_at: rfc3339(due),
            days_overdue: late,
            failed_charges: 0,
            suspended: state
                .billing
                .accounts
                .get(&inv.org)
                .is_some_and(|a| a.suspended.is_some()),
        });
        entry.amount_due += inv.totals.amount_due;
        entry.open_invoices += 1;
        entry.failed_charges += inv.failures.len() as u32;
        if late > entry.days_overdue {
            entry.days_overdue = late;
            entry.oldest_due_at = rfc3339(due);
        }
    }
    let mut organisations: Vec<OrgReceivable> = by_org.into_values().collect();
    organisations.sort_by(|a, b| {
        b.days_overdue
            .cmp(&a.days_overdue)
            .then(b.amount_due.cmp(&a.amount_due))
            .then(a.organisation.cmp(&b.organisation))
    });
    let truncated = organisations.len() > limit;
    organisations.truncate(limit);
    Ok(Json(Receivables {
        at: rfc3339(now),
        totals,
        organisations,
        truncated,
    }))
}

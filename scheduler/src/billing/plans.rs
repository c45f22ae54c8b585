//! Monthly plans (gaming plans, support plans): an organisation takes one with `SetPlan`,
//! changes it (prorated by the second: the old plan's rest of the month given back, the new
//! one's charged) or cancels it (it runs to the end of the month, which was paid). Each
//! month's invoice carries the adjustment of the month it closes and the next month in
//! advance (the money logic is [`vmcloud_billing::plans`]); `apply` keeps the spans and what
//! was billed ahead in the organisation's [`Account`](crate::billing::types::Account).

use axum::Json;
use axum::extract::State;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use vmcloud_billing::invoice::{InvoiceLine, LineKind};
use vmcloud_billing::plans::{self, Advanced, Charge, Span};
use vmcloud_billing::prices::PriceBook;
use vmcloud_billing::rating::RatingError;
use vmcloud_proto::OrgId;
use vmcloud_proto::pb::{self, command::Body};

use crate::api::context::{ApiJson, ApiQuery, ApiState, Who};
use crate::api::problem::Problem;
use crate::billing::api::{UsageQuery, billing_org, price_books, read_org};
use crate::billing::types::{
    PlanSpan, PlansAdvanced, currency_of, date_of, period_bounds, period_of,
};
use crate::clock::rfc3339;
use crate::state::{Applied, ApplyResult, ClusterState, Rejected};
use crate::tenancy::authz::Action;

/// The end of the calendar month `at` falls in.
fn month_end(at: i64) -> i64 {
    period_bounds(&period_of(at)).map_or(at, |(_, end)| end)
}

/// The plan held at `at`, if any.
pub fn held_at(spans: &[PlanSpan], at: i64) -> Option<&PlanSpan> {
    spans
        .iter()
        .rev()
        .find(|s| s.from_ms <= at && s.to_ms.is_none_or(|t| t > at))
}

impl ClusterState {
    pub(crate) fn set_plan(&mut self, c: pb::SetPlan, at: i64) -> ApplyResult {
        let org = OrgId::parse(&c.org_id).map_err(|e| Rejected::Invalid(e.to_string()))?;
        if !self.organisations.contains_key(&org) {
            return Err(Rejected::NotFound(format!("organisation {org}")));
        }
        let account = self.billing.accounts.entry(org.clone()).or_default();
        if c.plan.is_empty() {
            let end = month_end(at);
            let Some(span) = account
                .plan_spans
                .iter_mut()
                .rev()
                .find(|s| s.from_ms <= at && s.to_ms.is_none_or(|t| t > at))
            else {
                return Err(Rejected::NotFound(format!(
                    "a plan of organisation {org} to cancel"
                )));
            };
            if let Some(t) = span.to_ms {
                return Err(Rejected::Conflict(format!(
                    "plan {} already ends at {}",
                    span.plan,
                    rfc3339(t)
                )));
            }
            span.to_ms = Some(end);
            return Ok(Applied::Done);
        }
        if c.plan.len() > 64
            || !c
                .plan
                .chars()
                .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-')
        {
            return Err(Rejected::Invalid(format!(
                "`{}` is not a plan id (lower-case letters, digits and dashes; GET /v1/billing/plan lists them)",
                c.plan
            )));
        }
        if let Some(s) = &account.suspended {
            return Err(Rejected::Conflict(format!(
                "organisation {org} is suspended ({}): pay what is due before changing plans",
                s.reason
            )));
        }
        // A partner's customer: the plans its partner offers.
        self.plan_allowed(&org, &c.plan)?;
        let account = self.billing.accounts.entry(org.clone()).or_default();
        let held = account
            .plan_spans
            .iter_mut()
            .rev()
            .find(|s| s.from_ms <= at && s.to_ms.is_none_or(|t| t > at));
        match held {
            Some(s) if s.plan == c.plan => {
                if s.to_ms.is_none() {
                    return Err(Rejected::Conflict(format!(
                        "organisation {org} is on plan {} already",
                        c.plan
                    )));
                }
                // Taken again before its cancellation took effect: it goes on.
                s.to_ms = None;
            }
            Some(s) => {
                s.to_ms = Some(at);
                account.plan_spans.push(PlanSpan {
                    plan: c.plan,
                    from_ms: at,
                    to_ms: None,
                });
            }
            None => account.plan_spans.push(PlanSpan {
                plan: c.plan,
                from_ms: at,
                to_ms: None,
            }),
        }
        Ok(Applied::Done)
    }

    /// The plan lines of `org`'s invoice for the period ending at `end` (and the next month
    /// in advance), and what billing them leaves in its account. Empty without plans.
    pub(crate) fn bill_plans(
        &mut self,
        org: &OrgId,
        book: &PriceBook,
        end: i64,
    ) -> Result<Vec<InvoiceLine>, RatingError> {
        let Some(account) = self.billing.accounts.get(org) else {
            return Ok(Vec::new());
        };
        if account.plan_spans.is_empty() && account.plans_advanced.is_none() {
            return Ok(Vec::new());
        }
        let spans: Vec<Span> = account
            .plan_spans
            .iter()
            .map(|s| Span {
                plan: s.plan.clone(),
                from_ms: s.from_ms,
                to_ms: s.to_ms,
            })
            .collect();
        let advanced = account
            .plans_advanced
            .as_ref()
            .map(|a| Advanced {
                plans: a.plans.clone(),
                from_ms: a.from_ms,
                to_ms: a.to_ms,
            })
            .unwrap_or_default();
        // The months to close: from what was billed (or the first span) to `end`.
        let from = account
            .plans_billed_to_ms
            .or_else(|| spans.iter().map(|s| s.from_ms).min())
            .unwrap_or(end);
        let mut months = Vec::new();
        let mut at = from;
        while at < end {
            let Some(bounds) = period_bounds(&period_of(at)) else {
                break;
            };
            months.push(bounds);
            at = bounds.1;
        }
        let next = period_bounds(&period_of(end)).unwrap_or((end, end));
        let lines = plans::plan_lines(book, &spans, &advanced, &months, next)?;
        let ahead = plans::advanced_for(&spans, next);
        let account = self.billing.accounts.entry(org.clone()).or_default();
        account
            .plan_spans
            .retain(|s| s.to_ms.is_none_or(|t| t > end));
        account.plans_billed_to_ms = Some(end);
        account.plans_advanced = (!ahead.plans.is_empty()).then_some(PlansAdvanced {
            plans: ahead.plans,
            from_ms: ahead.from_ms,
            to_ms: ahead.to_ms,
        });
        let month = |ms: i64| {
            let d = date_of(ms);
            format!("{} {}", d.month(), d.year())
        };
        Ok(lines
            .into_iter()
            .map(|l| {
                let (description, quantity) = match l.charge {
                    Charge::Advance => (
                        format!("{} ({}), {} in advance", l.name, l.plan, month(next.0)),
                        "1 month".to_owned(),
                    ),
                    Charge::Adjustment {
                        held_ms,
                        advanced_ms,
                    } if held_ms > advanced_ms => (
                        format!(
                            "{} ({}), prorated: held from {} not billed before",
                            l.name,
                            l.plan,
                            date_of(
                                from.max(
                                    spans
                                        .iter()
                                        .filter(|s| s.plan == l.plan)
                                        .map(|s| s.from_ms)
                                        .min()
                                        .unwrap_or(from)
                                )
                            )
                        ),
                        format!("{} d", days(held_ms - advanced_ms)),
                    ),
                    Charge::Adjustment {
                        held_ms,
                        advanced_ms,
                    } => (
                        format!(
                            "{} ({}), prorated: left before the end of the month billed in advance",
                            l.name, l.plan
                        ),
                        format!("-{} d", days(advanced_ms - held_ms)),
                    ),
                };
                InvoiceLine {
                    kind: LineKind::Fee,
                    description,
                    quantity,
                    amount: l.amount.amount,
                    source: None,
                }
            })
            .collect())
    }
}

/// Milliseconds as days with two decimals.
fn days(ms: i64) -> Decimal {
    (Decimal::from(ms) / Decimal::from(86_400_000)).round_dp(2)
}

/// A plan and its price in the organisation's currency.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PlanOffer {
    pub plan: String,
    pub name: String,
    #[schema(value_type = String)]
    pub monthly: Decimal,
}

/// The organisation's plan, and the plans it may take.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PlanView {
    pub organisation: String,
    pub currency: String,
    /// The plan held now, if any.
    pub current: Option<PlanOffer>,
    /// Since when it is held.
    pub since: Option<String>,
    /// When it ends (a cancellation takes effect at the end of the month).
    pub ends_at: Option<String>,
    pub available: Vec<PlanOffer>,
    /// Packs of gaming hours, bought once (on top of a gaming plan's monthly hours).
    pub hour_packs: Vec<PackOffer>,
}

/// A pack of gaming hours and its price in the organisation's currency.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PackOffer {
    pub pack: String,
    pub name: String,
    pub hours: u32,
    #[schema(value_type = String)]
    pub price: Decimal,
}

fn view(s: &ApiState, org: &OrgId) -> Result<PlanView, Problem> {
    let state = s.cluster.state();
    let currency = state
        .organisations
        .get(org)
        .map(currency_of)
        .ok_or_else(|| Problem::not_found(format!("organisation {org} does not exist")))?;
    let books = price_books();
    let book = books
        .book(currency)
        .ok_or_else(|| Problem::internal("no price book for the organisation's currency"))?;
    let offer = |id: &str| {
        book.plans.get(id).map(|p| PlanOffer {
            plan: id.to_owned(),
            name: p.name.clone(),
            monthly: p.monthly,
        })
    };
    let now = crate::clock::now_ms();
    let held = state
        .billing
        .accounts
        .get(org)
        .and_then(|a| held_at(&a.plan_spans, now))
        .cloned();
    Ok(PlanView {
        organisation: org.to_string(),
        currency: currency.to_string(),
        current: held.as_ref().and_then(|h| offer(&h.plan)),
        since: held.as_ref().map(|h| rfc3339(h.from_ms)),
        ends_at: held.as_ref().and_then(|h| h.to_ms).map(rfc3339),
        available: book.plans.keys().filter_map(|id| offer(id)).collect(),
        hour_packs: book
            .hour_packs
            .iter()
            .map(|(id, p)| PackOffer {
                pack: id.clone(),
                name: p.name.clone(),
                hours: p.hours,
                price: p.price,
            })
            .collect(),
    })
}

/// `GET /v1/billing/plan`: the organisation's plan and the plans on offer.
pub async fn get(
    State(s): State<ApiState>,
    who: Who,
    ApiQuery(q): ApiQuery<UsageQuery>,
) -> Result<Json<PlanView>, Problem> {
    let org = read_org(&s, &who, q.stale, q.org.as_deref()).await?;
    Ok(Json(view(&s, &org)?))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanRequest {
    /// The organisation (default: the caller's only one).
    #[serde(default)]
    pub org: Option<String>,
    /// A plan id from `available`.
    pub plan: String,
}

/// `PUT /v1/billing/plan`: takes or changes the plan (prorated on the next invoice).
pub async fn put(
    State(s): State<ApiState>,
    who: Who,
    ApiJson(req): ApiJson<PlanRequest>,
) -> Result<Json<PlanView>, Problem> {
    let org = billing_org(&s, &who, req.org.as_deref(), Action::ManageBilling)?;
    let books = price_books();
    if !books.0.values().any(|b| b.plans.contains_key(&req.plan)) {
        let known: Vec<&str> = books
            .0
            .values()
            .next()
            .map(|b| b.plans.keys().map(String::as_str).collect())
            .unwrap_or_default();
        return Err(Problem::unprocessable(
            "invalid-plan",
            "No such plan",
            format!(
                "there is no plan `{}`: choose one of {}",
                req.plan,
                known.join(", ")
            ),
        ));
    }
    s.cluster
        .propose_as(
            who.actor(),
            Body::SetPlan(pb::SetPlan {
                org_id: org.to_string(),
                plan: req.plan,
            }),
        )
        .await??;
    Ok(Json(view(&s, &org)?))
}

/// `DELETE /v1/billing/plan`: cancels the plan at the end of this month (it was paid).
pub async fn cancel(
    State(s): State<ApiState>,
    who: Who,
    ApiQuery(q): ApiQuery<UsageQuery>,
) -> Result<Json<PlanView>, Problem> {
    let org = billing_org(&s, &who, q.org.as_deref(), Action::ManageBilling)?;
    s.cluster
        .propose_as(
            who.actor(),
            Body::SetPlan(pb::SetPlan {
                org_id: org.to_string(),
                plan: String::new(),
            }),
        )
        .await??;
    Ok(Json(view(&s, &org)?))
}

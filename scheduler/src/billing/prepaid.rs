//! Prepaid balance: money an organisation pays in advance — by card (`POST
//! /v1/billing/top-ups`, charged through Stripe at once) or by bank transfer (recorded by
//! billing staff with the bank's reference). A billing run takes each invoice's total from
//! the balance first (after credits and VAT: a prepayment is a payment, not a discount), so
//! an invoice the balance covers is finalized as paid. Voiding an open invoice puts back
//! what it took; a credit note for a paid one gives back to the balance what the balance
//! paid (and refunds the card for the rest).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use vmcloud_billing::money::Currency;
use vmcloud_proto::OrgId;
use vmcloud_proto::pb::{self, command::Body};

use crate::api::context::{ApiJson, ApiQuery, ApiState, Who};
use crate::api::problem::Problem;
use crate::billing::api::{UsageQuery, billing_org, read_org};
use crate::billing::types::{TopUp, currency_of, positive_amount};
use crate::state::{Applied, ApplyResult, ClusterState, Rejected};
use crate::tenancy::authz::{Action, Resource};

/// The most one top-up may add (a typo guard; larger prepayments are several top-ups).
const MAX_TOP_UP: Decimal = Decimal::from_parts(1_000_000, 0, 0, false, 0);

impl ClusterState {
    pub(crate) fn top_up_prepaid(&mut self, c: pb::TopUpPrepaid, at: i64) -> ApplyResult {
        let org = OrgId::parse(&c.org_id).map_err(|e| Rejected::Invalid(e.to_string()))?;
        let o = self
            .organisations
            .get(&org)
            .ok_or_else(|| Rejected::NotFound(format!("organisation {org}")))?;
        let amount = positive_amount("amount", &c.amount)?;
        if amount > MAX_TOP_UP {
            return Err(Rejected::Invalid(format!(
                "a top-up is at most {MAX_TOP_UP}: pay more as several top-ups, or by bank transfer"
            )));
        }
        let currency = currency_of(o);
        if Currency::parse(&c.currency) != Some(currency) {
            return Err(Rejected::Invalid(format!(
                "organisation {org} is invoiced in {currency}, so its prepaid balance is too (got `{}`)",
                c.currency
            )));
        }
        if !matches!(c.method.as_str(), "card" | "bank-transfer") {
            return Err(Rejected::Invalid(format!(
                "payment method `{}` is not one of: card, bank-transfer",
                c.method
            )));
        }
        let reference = c.reference.trim();
        if reference.is_empty() || reference.chars().count() > 200 {
            return Err(Rejected::Invalid(
                "a top-up needs the payment's reference (at most 200 characters)".into(),
            ));
        }
        let account = self.billing.accounts.entry(org.clone()).or_default();
        if account.top_ups.iter().any(|t| t.reference == reference) {
            return Err(Rejected::Exists(format!(
                "a top-up with reference `{reference}`"
            )));
        }
        if let Some(held) = account.prepaid_currency
            && held != currency
            && !account.prepaid.is_zero()
        {
            return Err(Rejected::Conflict(format!(
                "the prepaid balance of {org} is {} {held}; it is used up before one in {currency} starts",
                account.prepaid
            )));
        }
        account.prepaid_currency = Some(currency);
        account.prepaid += amount;
        account.top_ups.push(TopUp {
            at_ms: at,
            amount,
            method: c.method,
            reference: reference.to_owned(),
        });
        Ok(Applied::Done)
    }

    /// What the prepaid balance of `org` can pay of an invoice in `currency`.
    pub(crate) fn prepaid_available(&self, org: &OrgId, currency: Currency) -> Decimal {
        self.billing
            .accounts
            .get(org)
            .filter(|a| a.prepaid_currency == Some(currency))
            .map_or(Decimal::ZERO, |a| a.prepaid)
    }

    /// Takes `amount` from the balance (a run's invoice paid it) or, negative, puts it back
    /// (an invoice voided or credited).
    pub(crate) fn draw_prepaid(&mut self, org: &OrgId, amount: Decimal) {
        if amount.is_zero() {
            return;
        }
        let account = self.billing.accounts.entry(org.clone()).or_default();
        account.prepaid -= amount;
    }
}

/// The balance and its top-ups.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PrepaidView {
    pub organisation: String,
    pub currency: String,
    #[schema(value_type = String)]
    pub balance: Decimal,
    /// Newest first.
    pub top_ups: Vec<TopUpView>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TopUpView {
    pub at: String,
    #[schema(value_type = String)]
    pub amount: Decimal,
    pub method: String,
    pub reference: String,
}

fn view(s: &ApiState, org: &OrgId) -> PrepaidView {
    let state = s.cluster.state();
    let currency = state
        .organisations
        .get(org)
        .map(currency_of)
        .unwrap_or(Currency::Eur);
    let account = state.billing.accounts.get(org);
    PrepaidView {
        organisation: org.to_string(),
        currency: account
            .and_then(|a| a.prepaid_currency)
            .unwrap_or(currency)
            .to_string(),
        balance: account.map_or(Decimal::ZERO, |a| a.prepaid),
        top_ups: account
            .map(|a| {
                a.top_ups
                    .iter()
                    .rev()
                    .map(|t| TopUpView {
                        at: crate::api::context::rfc3339(t.at_ms),
                        amount: t.amount,
                        method: t.method.clone(),
                        reference: t.reference.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default(),
    }
}

/// `GET /v1/billing/top-ups`: the organisation's prepaid balance and top-ups.
pub async fn get(
    State(s): State<ApiState>,
    who: Who,
    ApiQuery(q): ApiQuery<UsageQuery>,
) -> Result<Json<PrepaidView>, Problem> {
    let org = read_org(&s, &who, q.stale, q.org.as_deref()).await?;
    Ok(Json(view(&s, &org)))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TopUpRequest {
    /// The organisation (default: the caller's only one).
    #[serde(default)]
    pub org: Option<String>,
    /// In the organisation's currency, e.g. `"50.00"`.
    pub amount: String,
    /// `card` (the default: the saved card is charged now) or `bank-transfer` (billing staff
    /// record a transfer they received; `reference` is then the bank's).
    #[serde(default)]
    pub method: Option<String>,
    #[serde(default)]
    pub reference: Option<String>,
}

/// `POST /v1/billing/top-ups`: adds to the prepaid balance — the saved card is charged at
/// once (owners and billing members), or billing staff record a bank transfer.
pub async fn top_up(
    State(s): State<ApiState>,
    who: Who,
    ApiJson(req): ApiJson<TopUpRequest>,
) -> Result<(StatusCode, Json<PrepaidView>), Problem> {
    let org = billing_org(&s, &who, req.org.as_deref(), Action::ManageBilling)?;
    // Checked before any card is charged.
    let amount = positive_amount("amount", &req.amount).map_err(Problem::from)?;
    let (currency, card) = {
        let state = s.cluster.state();
        let currency = state
            .organisations
            .get(&org)
            .map(currency_of)
            .ok_or_else(|| Problem::not_found(format!("organisation {org} does not exist")))?;
        let card = state.billing.accounts.get(&org).and_then(|a| {
            a.card
                .as_ref()
                .zip(a.processor_customer.as_ref())
                .map(|(card, customer)| (card.payment_method.clone(), customer.clone()))
        });
        (currency, card)
    };
    let (method, reference) = match req.method.as_deref().unwrap_or("card") {
        "card" => {
            let Some(stripe) = s.stripe.clone() else {
                return Err(Problem::new(
                    StatusCode::CONFLICT,
                    "no-payment-processor",
                    "No card payments here",
                    "no payment processor is configured on this cluster: top up by bank transfer (billing staff record it)",
                ));
            };
            let Some((payment_method, customer)) = card else {
                return Err(Problem::new(
                    StatusCode::CONFLICT,
                    "no-payment-method",
                    "No card saved",
                    "save a card first (POST /v1/billing/payment-method, or the console's billing page), then top up",
                ));
            };
            // One charge per request: the idempotency key names the request.
            let request = format!("topup-{org}-{}", rand::random::<u64>());
            let charge = stripe
                .charge(
                    &customer,
                    &payment_method,
                    crate::billing::collect::cents(amount),
                    currency.code(),
                    &request,
                    0,
                )
                .await
                .map_err(crate::billing::payment_api::declined)?;
            ("card", charge.payment_intent)
        }
        "bank-transfer" => {
            who.may(&s, Action::ManageBilling, Resource::Fleet)
                .map_err(|_| {
                    Problem::new(
                        StatusCode::FORBIDDEN,
                        "forbidden",
                        "Forbidden",
                        "only billing staff record bank transfers; customers top up by card",
                    )
                })?;
            let Some(reference) = req.reference.clone() else {
                return Err(Problem::unprocessable(
                    "invalid-top-up",
                    "Invalid top-up",
                    "a bank transfer needs `reference`: the bank's reference of the transfer",
                ));
            };
            ("bank-transfer", reference)
        }
        other => {
            return Err(Problem::unprocessable(
                "invalid-top-up",
                "Invalid top-up",
                format!("method `{other}` is not one of: card, bank-transfer"),
            ));
        }
    };
    s.cluster
        .propose_as(
            who.actor(),
            Body::TopUpPrepaid(pb::TopUpPrepaid {
                org_id: org.to_string(),
                amount: amount.to_string(),
                currency: currency.code().to_owned(),
                method: method.to_owned(),
                reference,
            }),
        )
        .await??;
    Ok((StatusCode::CREATED, Json(view(&s, &org))))
}

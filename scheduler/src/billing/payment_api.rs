//! Cards: `GET|POST /v1/billing/payment-method` (the organisation's saved card; saving one
//! lifts the trial's limits and charges what is open), and Stripe's webhooks
//! (`POST /v1/stripe/webhook`, verified by `Stripe-Signature`).

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use vmcloud_proto::pb::{self, command::Body};

use crate::api::context::{ApiJson, ApiQuery, ApiState, Who};
use crate::api::problem::Problem;
use crate::billing::api::{UsageQuery, billing_org, read_org};
use crate::billing::stripe::{StripeError, verify_signature};
use crate::billing::types::InvoiceStatus;
use crate::tenancy::authz::Action;

/// The organisation's card, as far as it may be shown.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PaymentMethodView {
    pub organisation: String,
    /// `stripe` when cards are taken here; absent: bank transfer only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub processor: Option<&'static str>,
    /// Test mode: Stripe's test cards may be given by number.
    pub test_mode: bool,
    /// Stripe's own card form may be used (`POST /v1/billing/setup-intents`, then Stripe.js
    /// in the browser).
    pub card_form: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub card: Option<CardView>,
    /// Why the organisation is suspended, when it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suspended: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CardView {
    pub brand: String,
    pub last4: String,
    pub exp_month: u32,
    pub exp_year: u32,
}

fn view(s: &ApiState, org: &vmcloud_proto::OrgId) -> PaymentMethodView {
    let state = s.cluster.state();
    let account = state.billing.accounts.get(org);
    PaymentMethodView {
        organisation: org.to_string(),
        processor: s.stripe.as_ref().map(|_| "stripe"),
        test_mode: s.stripe.as_ref().is_some_and(|st| st.config().test_mode()),
        card_form: s
            .stripe
            .as_ref()
            .is_some_and(|st| st.config().publishable_key.is_some()),
        card: account.and_then(|a| a.card.as_ref()).map(|c| CardView {
            brand: c.brand.clone(),
            last4: c.last4.clone(),
            exp_month: c.exp_month,
            exp_year: c.exp_year,
        }),
        suspended: account
            .and_then(|a| a.suspended.as_ref())
            .map(|s| s.reason.clone()),
    }
}

pub async fn get(
    State(s): State<ApiState>,
    who: Who,
    ApiQuery(q): ApiQuery<UsageQuery>,
) -> Result<Json<PaymentMethodView>, Problem> {
    let org = read_org(&s, &who, q.stale, q.org.as_deref()).await?;
    Ok(Json(view(&s, &org)))
}

/// A test card (test mode only).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TestCard {
    pub number: String,
    pub exp_month: u32,
    pub exp_year: u32,
    pub cvc: String,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PaymentMethodRequest {
    /// The organisation (default: the caller's only one).
    #[serde(default)]
    pub org: Option<String>,
    /// A payment method made by Stripe's own card form (`pm_…`).
    #[serde(default)]
    pub payment_method: Option<String>,
    /// Or, in test mode only, one of Stripe's test cards.
    #[serde(default)]
    pub card: Option<TestCard>,
    /// Or a SetupIntent (`seti_…`, from `POST /v1/billing/setup-intents`) that Stripe's card
    /// form confirmed in the browser.
    #[serde(default)]
    pub setup_intent: Option<String>,
}

/// What the browser needs to show Stripe's card form and confirm a SetupIntent with it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SetupIntentView {
    pub organisation: String,
    pub setup_intent: String,
    /// For `stripe.confirmCardSetup` in the browser.
    pub client_secret: String,
    pub publishable_key: String,
    /// Where to load Stripe.js from.
    pub js: String,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetupIntentRequest {
    /// The organisation (default: the caller's only one).
    #[serde(default)]
    pub org: Option<String>,
}

fn no_processor() -> Problem {
    Problem::new(
        StatusCode::CONFLICT,
        "no-payment-processor",
        "No card payments here",
        "no payment processor is configured on this cluster: pay invoices by bank transfer (each invoice says how)",
    )
}

/// The organisation's Stripe customer: the one saved, or a new one (one per organisation:
/// Stripe's idempotency key makes a retry return the same).
async fn customer_of(
    s: &ApiState,
    stripe: &crate::billing::stripe::Stripe,
    org: &vmcloud_proto::OrgId,
) -> Result<String, Problem> {
    let (customer, name) = {
        let state = s.cluster.state();
        (
            state
                .billing
                .accounts
                .get(org)
                .and_then(|a| a.processor_customer.clone()),
            state
                .organisations
                .get(org)
                .map(|o| o.name.clone())
                .unwrap_or_default(),
        )
    };
    match customer {
        Some(c) => Ok(c),
        None => stripe
            .create_customer(org.as_str(), &name)
            .await
            .map_err(declined),
    }
}

/// `POST /v1/billing/setup-intents`: a SetupIntent for Stripe's card form (owners and
/// billing members); the browser confirms it with Stripe.js, then posts its id to
/// `POST /v1/billing/payment-method`.
pub async fn setup_intent(
    State(s): State<ApiState>,
    who: Who,
    ApiJson(req): ApiJson<SetupIntentRequest>,
) -> Result<(StatusCode, Json<SetupIntentView>), Problem> {
    let org = billing_org(&s, &who, req.org.as_deref(), Action::ManageBilling)?;
    let Some(stripe) = s.stripe.clone() else {
        return Err(no_processor());
    };
    let Some(publishable_key) = stripe.config().publishable_key.clone() else {
        return Err(Problem::new(
            StatusCode::CONFLICT,
            "no-card-form",
            "No card form here",
            "this cluster has no Stripe publishable key (--stripe-publishable-key), so Stripe's card form cannot be shown: pay by bank transfer, or ask the operators",
        ));
    };
    let customer = customer_of(&s, &stripe, &org).await?;
    let (id, client_secret) = stripe
        .setup_intent(&customer, org.as_str())
        .await
        .map_err(declined)?;
    Ok((
        StatusCode::CREATED,
        Json(SetupIntentView {
            organisation: org.to_string(),
            setup_intent: id,
            client_secret,
            publishable_key,
            js: stripe.config().js.clone(),
        }),
    ))
}

pub(crate) fn declined(e: StripeError) -> Problem {
    match e {
        StripeError::Declined { code, message } => Problem::new(
            StatusCode::PAYMENT_REQUIRED,
            "card-declined",
            "Card declined",
            format!("the card was declined ({code}: {message}); try another card"),
        ),
        other => Problem::new(
            StatusCode::BAD_GATEWAY,
            "payment-processor-error",
            "Payment processor error",
            format!("{other}; try again in a minute"),
        ),
    }
}

/// Saves a card for the organisation (owners and billing members).
pub async fn set(
    State(s): State<ApiState>,
    who: Who,
    ApiJson(req): ApiJson<PaymentMethodRequest>,
) -> Result<Json<PaymentMethodView>, Problem> {
    let org = billing_org(&s, &who, req.org.as_deref(), Action::ManageBilling)?;
    let Some(stripe) = s.stripe.clone() else {
        return Err(no_processor());
    };
    let saved = match (&req.payment_method, &req.card, &req.setup_intent) {
        (None, None, Some(si)) if si.starts_with("seti_") => stripe
            .confirmed_card(si, org.as_str())
            .await
            .map_err(|e| match e {
                StripeError::Api { status: 404, .. } => Problem::unprocessable(
                    "invalid-payment-method",
                    "Invalid payment method",
                    format!("setup intent `{si}` is not one of this organisation's: start the card form again"),
                ),
                other => declined(other),
            })?,
        (Some(pm), None, None) if pm.starts_with("pm_") => {
            let customer = customer_of(&s, &stripe, &org).await?;
            stripe.save_card(&customer, pm).await.map_err(declined)?
        }
        (None, Some(card), None) if stripe.config().test_mode() => {
            let pm = stripe
                .test_card(&card.number, card.exp_month, card.exp_year, &card.cvc)
                .await
                .map_err(declined)?;
            let customer = customer_of(&s, &stripe, &org).await?;
            stripe.save_card(&customer, &pm).await.map_err(declined)?
        }
        (None, Some(_), None) => {
            return Err(Problem::unprocessable(
                "invalid-payment-method",
                "Invalid payment method",
                "card numbers are taken only in test mode: enter the card in the console's card form",
            ));
        }
        _ => {
            return Err(Problem::unprocessable(
                "invalid-payment-method",
                "Invalid payment method",
                "give one of: `setup_intent` (seti_…, confirmed by the card form), `payment_method` (pm_…) or, in test mode, `card`",
            ));
        }
    };
    s.cluster
        .propose_as(
            who.actor(),
            Body::SetPaymentMethod(pb::SetPaymentMethod {
                org_id: org.to_string(),
                processor_customer: saved.customer,
                payment_method: saved.payment_method,
                brand: saved.brand,
                last4: saved.last4,
                exp_month: saved.exp_month,
                exp_year: saved.exp_year,
            }),
        )
        .await??;
    Ok(Json(view(&s, &org)))
}

/// What the webhook did.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WebhookAnswer {
    pub received: bool,
    /// What it changed, if anything.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recorded: Option<String>,
}

/// Stripe's events: a `payment_intent.succeeded` for one of our invoices records the payment
/// (once: an invoice already paid is left alone).
pub async fn webhook(
    State(s): State<ApiState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<WebhookAnswer>, Problem> {
    let secret = s
        .stripe
        .as_ref()
        .and_then(|st| st.config().webhook_secret.clone())
        .ok_or_else(|| Problem::not_found("no Stripe webhook is configured here"))?;
    let signature = headers
        .get("stripe-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let real_now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    verify_signature(signature, &body, &secret, real_now).map_err(|why| {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "invalid-signature",
            "Invalid signature",
            format!("the Stripe-Signature does not verify: {why}"),
        )
    })?;
    let event: Value = serde_json::from_slice(&body).map_err(|e| {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "malformed-json",
            "Malformed JSON",
            e.to_string(),
        )
    })?;
    if event["type"] != "payment_intent.succeeded" {
        return Ok(Json(WebhookAnswer {
            received: true,
            recorded: None,
        }));
    }
    let pi = &event["data"]["object"];
    let invoice = pi["metadata"]["invoice"].as_str().unwrap_or_default();
    let open = s
        .cluster
        .state()
        .billing
        .invoices
        .get(invoice)
        .filter(|i| i.status == InvoiceStatus::Open && !i.self_billed)
        .map(|i| i.totals.amount_due);
    let Some(due) = open else {
        return Ok(Json(WebhookAnswer {
            received: true,
            recorded: None,
        }));
    };
    s.cluster
        .propose(Body::RecordPayment(pb::RecordPayment {
            invoice_id: invoice.to_owned(),
            method: "card".into(),
            reference: pi["id"].as_str().unwrap_or_default().to_owned(),
            amount: due.to_string(),
        }))
        .await??;
    Ok(Json(WebhookAnswer {
        received: true,
        recorded: Some(format!("payment of {invoice}")),
    }))
}

/// An organisation's budget alerts.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BudgetView {
    pub organisation: String,
    pub currency: String,
    /// Amounts of the month's cost so far that are mailed and sent as a webhook when crossed.
    pub thresholds: Vec<String>,
    /// Those crossed this month (already sent).
    pub sent_this_month: Vec<String>,
}

fn budget_view(s: &ApiState, org: &vmcloud_proto::OrgId) -> BudgetView {
    let state = s.cluster.state();
    let period = crate::billing::types::period_of(crate::clock::now_ms());
    let account = state.billing.accounts.get(org);
    BudgetView {
        organisation: org.to_string(),
        currency: state
            .organisations
            .get(org)
            .map(|o| crate::billing::types::currency_of(o).code().to_owned())
            .unwrap_or_default(),
        thresholds: account
            .map(|a| a.budget_thresholds.iter().map(|t| t.to_string()).collect())
            .unwrap_or_default(),
        sent_this_month: account
            .map(|a| {
                a.budget_alerts_sent
                    .iter()
                    .filter(|(p, _)| *p == period)
                    .map(|(_, t)| t.to_string())
                    .collect()
            })
            .unwrap_or_default(),
    }
}

pub async fn get_budget(
    State(s): State<ApiState>,
    who: Who,
    ApiQuery(q): ApiQuery<UsageQuery>,
) -> Result<Json<BudgetView>, Problem> {
    let org = read_org(&s, &who, q.stale, q.org.as_deref()).await?;
    Ok(Json(budget_view(&s, &org)))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BudgetRequest {
    #[serde(default)]
    pub org: Option<String>,
    /// Amounts in the organisation's currency (at most 10; empty: none).
    pub thresholds: Vec<String>,
}

/// Sets the budget alerts (owners and billing members).
pub async fn set_budget(
    State(s): State<ApiState>,
    who: Who,
    ApiJson(req): ApiJson<BudgetRequest>,
) -> Result<Json<BudgetView>, Problem> {
    let org = billing_org(&s, &who, req.org.as_deref(), Action::ManageBilling)?;
    s.cluster
        .propose_as(
            who.actor(),
            Body::SetBudgetAlerts(pb::SetBudgetAlerts {
                org_id: org.to_string(),
                thresholds: req.thresholds,
            }),
        )
        .await??;
    Ok(Json(budget_view(&s, &org)))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RedeemRequest {
    #[serde(default)]
    pub org: Option<String>,
    pub code: String,
}

/// What an organisation's redeemed coupons still take off.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RedeemedView {
    pub organisation: String,
    /// `CODE: 20% off, 2 invoices left` …
    pub coupons: Vec<String>,
}

/// Redeems a coupon for the organisation (owners and billing members).
pub async fn redeem(
    State(s): State<ApiState>,
    who: Who,
    ApiJson(req): ApiJson<RedeemRequest>,
) -> Result<Json<RedeemedView>, Problem> {
    let org = billing_org(&s, &who, req.org.as_deref(), Action::ManageBilling)?;
    s.cluster
        .propose_as(
            who.actor(),
            Body::RedeemCoupon(pb::RedeemCoupon {
                org_id: org.to_string(),
                code: req.code,
            }),
        )
        .await??;
    let state = s.cluster.state();
    let coupons = state
        .billing
        .accounts
        .get(&org)
        .map(|a| {
            a.coupons
                .iter()
                .map(|r| {
                    let off = match r.off {
                        crate::billing::types::Off::Percent(p) => format!("{}% off", p.normalize()),
                        crate::billing::types::Off::Amount(a, c) => format!("{a} {c} off"),
                    };
                    match r.invoices_left {
                        Some(n) => format!("{}: {off}, {n} invoice(s) left", r.code),
                        None => format!("{}: {off}, on every invoice", r.code),
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(Json(RedeemedView {
        organisation: org.to_string(),
        coupons,
    }))
}

//! An organisation's billing in the console: this month's cost so far and its forecast (with
//! a chart of the cost of each day, drawn as SVG on the server), usage by resource, credits,
//! and invoices with their PDF.

use axum::extract::Path;
use axum::http::{Method, header};
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use rust_decimal::Decimal;
use serde_json::Value;

use crate::auth_pages::urlencode;
use crate::client::{items, s};
use crate::i18n::Msg;
use crate::layout::Ctx;

fn dec(v: &Value) -> Decimal {
    v.as_str().and_then(|t| t.parse().ok()).unwrap_or_default()
}

/// Days in a month (`YYYY-MM`).
fn days_in(period: &str) -> usize {
    let (y, m) = period.split_once('-').unwrap_or(("1970", "01"));
    let (y, m): (i32, u32) = (y.parse().unwrap_or(1970), m.parse().unwrap_or(1));
    match m {
        4 | 6 | 9 | 11 => 30,
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        _ => 31,
    }
}

/// The cost of each day of the month (from the report's hours), as SVG bars: one slot a day
/// of the whole month, the days to come empty.
fn chart(ctx: &Ctx, usage: &Value) -> Markup {
    let period = s(usage, "from").get(..7).unwrap_or("1970-01").to_owned();
    let mut days = vec![Decimal::ZERO; days_in(&period)];
    for h in items(usage, "hourly") {
        let day: usize = s(&h, "hour")
            .get(8..10)
            .and_then(|d| d.parse().ok())
            .unwrap_or(1);
        if let Some(d) = days.get_mut(day.saturating_sub(1)) {
            *d += dec(&h["amount"]);
        }
    }
    let max = days
        .iter()
        .copied()
        .max()
        .unwrap_or_default()
        .max(Decimal::new(1, 2));
    let (width, height, gap) = (620.0f64, 140.0f64, 3.0f64);
    let bar = width / days.len() as f64;
    let currency = s(usage, "currency");
    html! {
        figure.card #cost-chart {
            svg width=(width) height=(height + 20.0) viewBox={ "0 0 " (width) " " (height + 20.0) } role="img" aria-label=(ctx.t(Msg::CostPerDay)) {
                @for (k, amount) in days.iter().enumerate() {
                    @let h = (amount / max).to_string().parse::<f64>().unwrap_or(0.0) * height;
                    @if !amount.is_zero() {
                        rect x=(k as f64 * bar + gap / 2.0) y=(height - h) width=((bar - gap).max(1.0)) height=(h.max(0.5)) fill="#3b6fd8" {
                            title { (period) "-" (format!("{:02}", k + 1)) ": " (amount.round_dp(2)) " " (currency) }
                        }
                    }
                }
                line x1="0" y1=(height) x2=(width) y2=(height) stroke="#999";
                text x="0" y=(height + 15.0) font-size="11" { (period) "-01" }
                text x=(width) y=(height + 15.0) font-size="11" text-anchor="end" { (period) "-" (days.len()) }
                text x="0" y="11" font-size="11" { (max.round_dp(2)) " " (currency) }
            }
            figcaption.muted { (ctx.t(Msg::CostPerDay)) " (" (currency) ", " (ctx.t(Msg::BeforeCreditsAndVat)) ")" }
        }
    }
}

/// `/console/orgs/{id}/billing`.
/// The billing page's query: `?card=new` shows the card form beside a saved card.
#[derive(Debug, Default, serde::Deserialize)]
pub struct BillingQuery {
    #[serde(default)]
    card: Option<String>,
}

/// The page's policy with Stripe.js allowed: its script and frames from where it is loaded,
/// its calls to Stripe's API (or to the localstripe that served it).
fn csp_with_stripe(js: &str) -> Option<header::HeaderValue> {
    let origin = |url: &str| -> Option<String> {
        let (scheme, rest) = url.split_once("://")?;
        let host = rest.split('/').next()?;
        (!host.is_empty() && matches!(scheme, "http" | "https"))
            .then(|| format!("{scheme}://{host}"))
    };
    let js_origin = origin(js)?;
    let api = if js_origin == "https://js.stripe.com" {
        "https://api.stripe.com".to_owned()
    } else {
        js_origin.clone()
    };
    let policy = crate::layout::CSP
        .replace(
            "script-src 'self'",
            &format!("script-src 'self' {js_origin}"),
        )
        .replace("connect-src 'self'", &format!("connect-src 'self' {api}"))
        + &format!("; frame-src {js_origin} https://hooks.stripe.com");
    header::HeaderValue::from_str(&policy).ok()
}

pub async fn billing(
    ctx: Ctx,
    Path(org): Path<String>,
    axum::extract::Query(bq): axum::extract::Query<BillingQuery>,
) -> Response {
    let q = format!("org={}", urlencode(&org));
    let budget = ctx
        .api
        .get(&format!("/v1/billing/budget-alerts?{q}"))
        .await
        .unwrap_or(Value::Null);
    let prepaid = ctx
        .api
        .get(&format!("/v1/billing/top-ups?{q}"))
        .await
        .unwrap_or(Value::Null);
    let plan = ctx
        .api
        .get(&format!("/v1/billing/plan?{q}"))
        .await
        .unwrap_or(Value::Null);
    let (usage, forecast, invoices, credits, card) = match (
        ctx.api.get(&format!("/v1/usage?{q}&stale=true")).await,
        ctx.api
            .get(&format!("/v1/billing/forecast?{q}&stale=true"))
            .await,
        ctx.api.get(&format!("/v1/invoices?{q}&limit=100")).await,
        ctx.api.get(&format!("/v1/credits?{q}")).await,
        ctx.api
            .get(&format!("/v1/billing/payment-method?{q}"))
            .await,
    ) {
        (Ok(u), Ok(f), Ok(i), Ok(c), Ok(pm)) => (u, f, i, c, pm),
        (Err(p), ..)
        | (_, Err(p), ..)
        | (_, _, Err(p), ..)
        | (_, _, _, Err(p), _)
        | (.., Err(p)) => {
            return ctx.problem(&p);
        }
    };
    // Stripe's card form: a SetupIntent for the browser to confirm (owners and billing
    // members; nothing for those who may not save a card).
    let setup = if card["card_form"] == true
        && (!card["card"].is_object() || bq.card.as_deref() == Some("new"))
    {
        ctx.api
            .post(
                "/v1/billing/setup-intents",
                serde_json::json!({ "org": org }),
            )
            .await
            .ok()
    } else {
        None
    };
    let currency = s(&forecast, "currency").to_owned();
    let mut rows = items(&usage, "rows");
    rows.sort_by(|a, b| dec(&b["amount"]).cmp(&dec(&a["amount"])));
    let mut response = ctx.page(
        Msg::Billing,
        html! {
            h1 { (ctx.t(Msg::Billing)) }
            p { a href={ "/console/orgs/" (org) } { (ctx.t(Msg::Back)) } }
            @if let Some(why) = card["suspended"].as_str() {
                p.error #suspended { (ctx.t(Msg::Suspended)) " " (why) }
            }
            section #month {
                div.card {
                    div.muted { (ctx.t(Msg::MonthToDate)) " (" (s(&forecast, "period")) ")" }
                    div.big #month-to-date { (s(&forecast, "month_to_date")) " " (currency) }
                }
                div.card {
                    div.muted { (ctx.t(Msg::Forecast)) }
                    div.big #forecast { (s(&forecast, "forecast")) " " (currency) }
                }
                div.card {
                    div.muted { (ctx.t(Msg::CreditLeft)) }
                    div.big #credit-left { (s(&forecast, "credit_left")) " " (currency) }
                }
                @if !prepaid.is_null() {
                    div.card {
                        div.muted { (ctx.t(Msg::PrepaidBalance)) }
                        div.big #prepaid { (s(&prepaid, "balance")) " " (s(&prepaid, "currency")) }
                    }
                }
            }
            (chart(&ctx, &usage))
            h2 { (ctx.t(Msg::UsageByResource)) }
            table #usage {
                thead { tr {
                    th { (ctx.t(Msg::Resource)) } th { (ctx.t(Msg::Flavor)) } th { (ctx.t(Msg::Market)) }
                    th { (ctx.t(Msg::Region)) } th { (ctx.t(Msg::Hours)) } th.num { (ctx.t(Msg::Amount)) }
                } }
                tbody {
                    @if rows.is_empty() { tr { td colspan="6" .muted { (ctx.t(Msg::NoUsage)) } } }
                    @for r in &rows {
                        tr {
                            td.mono { (s(r, "resource")) }
                            td { (s(r, "flavor")) }
                            td { (s(r, "market")) }
                            td { (s(r, "region")) }
                            td { (format!("{:.2}", r["seconds"].as_f64().unwrap_or(0.0) / 3600.0)) }
                            td.num { (s(r, "amount")) " " (currency) @if r["capped"] == true { " *" } }
                        }
                    }
                }
            }
            p.muted { (ctx.t(Msg::CapNote)) }
            h2 { (ctx.t(Msg::Invoices)) }
            table #invoices {
                thead { tr {
                    th { (ctx.t(Msg::Number)) } th { (ctx.t(Msg::Period)) } th { (ctx.t(Msg::State)) }
                    th.num { (ctx.t(Msg::Total)) } th.num { (ctx.t(Msg::Due)) } th { "PDF" }
                } }
                tbody {
                    @let list = items(&invoices, "invoices");
                    @if list.is_empty() { tr { td colspan="6" .muted { (ctx.t(Msg::NoInvoices)) } } }
                    @for i in list.iter().rev() {
                        tr data-id=(s(i, "id")) {
                            td.mono { (i["number"].as_str().unwrap_or("—")) @if i["kind"] == "credit-note" { " (" (ctx.t(Msg::CreditNote)) ")" } }
                            td { (s(i, "period")) }
                            td { (s(i, "status")) }
                            td.num { (s(i, "total")) " " (s(i, "currency")) }
                            td.num { (s(i, "amount_due")) " " (s(i, "currency")) }
                            td { a.pdf href={ "/console/orgs/" (org) "/invoices/" (s(i, "id")) "/pdf" } { (ctx.t(Msg::Download)) } }
                        }
                    }
                }
            }
            @if !plan.is_null() { (plan_section(&ctx, &org, &plan)) }
            h2 { (ctx.t(Msg::PaymentMethod)) }
            (payment_method(&ctx, &org, &card, setup.as_ref()))
            @if card["card"].is_object() && !prepaid.is_null() {
                form.card.row method="post" action={ "/console/orgs/" (org) "/top-up" } {
                    (ctx.csrf_field())
                    label { (ctx.t(Msg::TopUpAmount)) " (" (s(&prepaid, "currency")) ")"
                        input type="text" name="amount" id="top-up-amount" required value="50.00" inputmode="decimal" pattern="[0-9]+([.,][0-9]{1,2})?"; }
                    button type="submit" id="top-up" { (ctx.t(Msg::TopUp)) }
                }
                p.muted { (ctx.t(Msg::TopUpText)) }
            }
            h2 { (ctx.t(Msg::BudgetAlerts)) }
            p.muted { (ctx.t(Msg::BudgetAlertsText)) }
            form.card.row method="post" action={ "/console/orgs/" (org) "/budget" } {
                (ctx.csrf_field())
                @let list: Vec<&str> = budget["thresholds"].as_array().into_iter().flatten().filter_map(|t| t.as_str()).collect();
                label { (ctx.t(Msg::Amounts)) " (" (currency) ")"
                    input type="text" name="thresholds" id="budget-thresholds" value=(list.join(", ")) placeholder="100, 500";
                }
                button type="submit" id="save-budget" { (ctx.t(Msg::Save)) }
            }
            @let sent: Vec<&str> = budget["sent_this_month"].as_array().into_iter().flatten().filter_map(|t| t.as_str()).collect();
            @if !sent.is_empty() {
                p #budget-sent { (ctx.t(Msg::BudgetSent)) " " (sent.join(", ")) " " (currency) }
            }
            h2 { (ctx.t(Msg::Credits)) }
            table #credits {
                thead { tr { th { (ctx.t(Msg::Description)) } th.num { (ctx.t(Msg::Left)) } th { (ctx.t(Msg::Expires)) } } }
                tbody {
                    @let list = items(&credits, "credits");
                    @if list.is_empty() { tr { td colspan="3" .muted { "—" } } }
                    @for k in &list {
                        tr {
                            td { (s(k, "description")) }
                            td.num { (s(k, "remaining")) " / " (s(k, "amount")) " " (s(k, "currency")) }
                            td { (k["expires_at"].as_str().map(|e| e.get(..10).unwrap_or(e)).unwrap_or("—")) }
                        }
                    }
                }
            }
        },
    );
    if let Some(policy) = setup.as_ref().and_then(|si| csp_with_stripe(s(si, "js"))) {
        response
            .headers_mut()
            .insert(header::CONTENT_SECURITY_POLICY, policy);
    }
    response
}

/// The monthly plan: the one held (and when it ends, once cancelled), a choice of the others,
/// and cancelling.
fn plan_section(ctx: &Ctx, org: &str, plan: &Value) -> Markup {
    let current = plan["current"]["plan"].as_str();
    let currency = s(plan, "currency");
    html! {
        h2 { (ctx.t(Msg::Plan)) }
        @match current {
            Some(_) => p #plan {
                strong { (s(&plan["current"], "name")) } " — " (s(&plan["current"], "monthly")) " " (currency) " " (ctx.t(Msg::PerMonth))
                @if let Some(end) = plan["ends_at"].as_str() { " · " (ctx.t(Msg::PlanEnds)) " " (end.get(..16).unwrap_or(end).replace('T', " ")) " UTC" }
            },
            None => p.muted #plan { (ctx.t(Msg::NoPlan)) },
        }
        form.card.row method="post" action={ "/console/orgs/" (org) "/plan" } {
            (ctx.csrf_field())
            label { (ctx.t(Msg::Plan))
                select name="plan" id="plan-choice" {
                    @for p in items(plan, "available") {
                        @if Some(s(&p, "plan")) != current {
                            option value=(s(&p, "plan")) { (s(&p, "name")) " — " (s(&p, "monthly")) " " (currency) }
                        }
                    }
                }
            }
            button type="submit" id="take-plan" { (ctx.t(if current.is_some() { Msg::ChangePlan } else { Msg::TakePlan })) }
            @if current.is_some() && plan["ends_at"].is_null() {
                button.danger type="submit" name="cancel" value="1" id="cancel-plan" formnovalidate { (ctx.t(Msg::CancelPlan)) }
            }
        }
        p.muted { (ctx.t(Msg::PlanText)) }
    }
}

#[derive(Debug, serde::Deserialize)]
pub struct PlanForm {
    #[serde(default)]
    plan: String,
    #[serde(default)]
    cancel: Option<String>,
}

/// `POST /console/orgs/{id}/plan`: takes, changes or cancels the monthly plan.
pub async fn set_plan(
    ctx: Ctx,
    Path(org): Path<String>,
    axum::Form(f): axum::Form<PlanForm>,
) -> Response {
    let answer = if f.cancel.is_some() {
        ctx.api
            .call(
                Method::DELETE,
                &format!("/v1/billing/plan?org={}", urlencode(&org)),
                None,
            )
            .await
    } else {
        ctx.api
            .call(
                Method::PUT,
                "/v1/billing/plan",
                Some(serde_json::json!({"org": org, "plan": f.plan})),
            )
            .await
    };
    match answer {
        Ok(_) => crate::layout::done(&format!("/console/orgs/{org}/billing"), Msg::NoticeSaved),
        Err(p) => ctx.problem(&p),
    }
}

/// `/console/orgs/{id}/invoices/{invoice}/pdf`: the API's PDF, passed through.
pub async fn invoice_pdf(ctx: Ctx, Path((_org, invoice)): Path<(String, String)>) -> Response {
    match ctx
        .api
        .raw(
            Method::GET,
            &format!("/v1/invoices/{}/pdf", urlencode(&invoice)),
        )
        .await
    {
        Ok((headers, bytes)) => {
            let mut response = bytes.into_response();
            for name in [header::CONTENT_TYPE, header::CONTENT_DISPOSITION] {
                if let Some(v) = headers.get(&name) {
                    response.headers_mut().insert(name, v.clone());
                }
            }
            response
        }
        Err(p) => ctx.problem(&p),
    }
}

/// The saved card, or how to save one: Stripe's card form (with a publishable key), a test
/// card number (test mode without one), or bank transfer (no processor).
fn payment_method(ctx: &Ctx, org: &str, pm: &Value, setup: Option<&Value>) -> Markup {
    html! {
        @if pm["card"].is_object() {
            p #card {
                (s(&pm["card"], "brand")) " •••• " (s(&pm["card"], "last4")) " — "
                (pm["card"]["exp_month"]) "/" (pm["card"]["exp_year"])
            }
        } @else {
            p.muted #card { (ctx.t(Msg::NoCard)) }
        }
        @if pm["processor"].is_null() {
            p.muted { (ctx.t(Msg::BankTransferOnly)) }
        } @else if let Some(si) = setup {
            form.card #stripe-card method="post" action={ "/console/orgs/" (org) "/card" }
                data-key=(s(si, "publishable_key")) data-secret=(s(si, "client_secret"))
                data-unavailable=(ctx.t(Msg::CardFormUnavailable)) {
                (ctx.csrf_field())
                input type="hidden" name="setup_intent";
                div #card-element {}
                p.error #card-errors role="alert" {}
                button type="submit" id="save-card" { (ctx.t(Msg::SaveCard)) }
            }
            p.muted { (ctx.t(Msg::CardFormText)) @if pm["test_mode"] == true { " " (ctx.t(Msg::TestCards)) } }
            script src=(s(si, "js")) {}
            script src="/assets/card.js" {}
        } @else if pm["card_form"] == true {
            p { a #replace-card href={ "/console/orgs/" (org) "/billing?card=new#stripe-card" } { (ctx.t(Msg::ReplaceCard)) } }
        } @else if pm["test_mode"] == true {
            form.card.row method="post" action={ "/console/orgs/" (org) "/card" } {
                (ctx.csrf_field())
                label { (ctx.t(Msg::CardNumber)) input type="text" name="number" id="card-number" required value="4242424242424242" inputmode="numeric" autocomplete="off"; }
                label { "MM/YY" input type="text" name="exp" id="card-exp" required value="12/34" pattern="[0-9]{1,2}/[0-9]{2,4}"; }
                label { "CVC" input type="text" name="cvc" id="card-cvc" required value="123" autocomplete="off"; }
                button type="submit" id="save-card" { (ctx.t(Msg::SaveCard)) }
            }
            p.muted { (ctx.t(Msg::TestCards)) }
        } @else {
            p.muted { (ctx.t(Msg::LiveCardsLater)) }
        }
    }
}

#[derive(Debug, serde::Deserialize)]
pub struct CardForm {
    /// Stripe's card form: the SetupIntent it confirmed.
    #[serde(default)]
    setup_intent: Option<String>,
    /// Test mode without the card form: a test card.
    #[serde(default)]
    number: String,
    #[serde(default)]
    exp: String,
    #[serde(default)]
    cvc: String,
}

/// `POST /console/orgs/{id}/card`: saves the card Stripe's form confirmed (or, in test mode
/// without it, a test card).
pub async fn save_card(
    ctx: Ctx,
    Path(org): Path<String>,
    axum::Form(f): axum::Form<CardForm>,
) -> Response {
    let body = match f.setup_intent.filter(|si| !si.is_empty()) {
        Some(si) => serde_json::json!({"org": org, "setup_intent": si}),
        None => {
            let (m, y) = f
                .exp
                .split_once('/')
                .and_then(|(m, y)| {
                    Some((m.trim().parse::<u32>().ok()?, y.trim().parse::<u32>().ok()?))
                })
                .unwrap_or((0, 0));
            serde_json::json!({"org": org, "card": {
                "number": f.number.replace(' ', ""), "exp_month": m,
                "exp_year": if y < 100 { 2000 + y } else { y }, "cvc": f.cvc}})
        }
    };
    match ctx.api.post("/v1/billing/payment-method", body).await {
        Ok(_) => crate::layout::done(
            &format!("/console/orgs/{org}/billing"),
            Msg::NoticeCardSaved,
        ),
        Err(p) => ctx.problem(&p),
    }
}

#[derive(Debug, serde::Deserialize)]
pub struct TopUpForm {
    amount: String,
}

/// `POST /console/orgs/{id}/top-up`: charges the saved card and adds to the prepaid balance.
pub async fn top_up(
    ctx: Ctx,
    Path(org): Path<String>,
    axum::Form(f): axum::Form<TopUpForm>,
) -> Response {
    let body = serde_json::json!({"org": org, "amount": f.amount.trim().replace(',', ".")});
    match ctx.api.post("/v1/billing/top-ups", body).await {
        Ok(_) => crate::layout::done(&format!("/console/orgs/{org}/billing"), Msg::NoticeToppedUp),
        Err(p) => ctx.problem(&p),
    }
}

#[derive(Debug, serde::Deserialize)]
pub struct BudgetForm {
    thresholds: String,
}

/// `POST /console/orgs/{id}/budget`: the budget alerts, comma-separated.
pub async fn save_budget(
    ctx: Ctx,
    Path(org): Path<String>,
    axum::Form(f): axum::Form<BudgetForm>,
) -> Response {
    let thresholds: Vec<String> = f
        .thresholds
        .split([',', ';', ' '])
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect();
    match ctx
        .api
        .call(
            Method::PUT,
            "/v1/billing/budget-alerts",
            Some(serde_json::json!({"org": org, "thresholds": thresholds})),
        )
        .await
    {
        Ok(_) => crate::layout::done(&format!("/console/orgs/{org}/billing"), Msg::NoticeSaved),
        Err(p) => ctx.problem(&p),
    }
}

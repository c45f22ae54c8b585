//! The partner console (`/partner`), on the partner's own domain: its customers (and a form
//! to make one, whose owner is invited by mail), its licensed sites and their seats, this
//! month's statement (and its CSV), and the health of its POPs, whose hosts its admins cordon,
//! drain and put back from here. A partner's
//! staff reach it; on another partner's domain the page answers as if there were nothing
//! (a page never shows two brands).

use axum::Form;
use axum::response::Response;
use maud::html;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth_pages::urlencode;
use crate::client::{items, s};
use crate::i18n::Msg;
use crate::layout::{Ctx, done};

/// The partner the page is for: the host's brand when it is a partner's, else the caller's
/// only partner (on VMCloud's own host).
async fn partner(ctx: &Ctx) -> Result<Value, Response> {
    let list = ctx
        .api
        .get("/v1/partners")
        .await
        .map_err(|p| ctx.problem(&p))?;
    let partners = items(&list, "partners");
    let chosen = match &ctx.brand.partner {
        Some(host_partner) => partners
            .into_iter()
            .find(|p| p["id"].as_str() == Some(host_partner.as_str())),
        None => partners.into_iter().next(),
    };
    chosen.ok_or_else(|| {
        let mut r = ctx.page(
            Msg::PartnerConsole,
            html! { h1 { (ctx.t(Msg::PartnerConsole)) } p.problem #no-partner { (ctx.t(Msg::NoPartner)) } },
        );
        *r.status_mut() = axum::http::StatusCode::NOT_FOUND;
        r
    })
}

/// `GET /partner`.
pub async fn home(ctx: Ctx) -> Response {
    let p = match partner(&ctx).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let id = s(&p, "id").to_owned();
    let customers = match ctx
        .api
        .get(&format!("/v1/partners/{}/customers", urlencode(&id)))
        .await
    {
        Ok(v) => v,
        Err(e) => return ctx.problem(&e),
    };
    let pop = match ctx
        .api
        .get(&format!("/v1/partners/{}/pop", urlencode(&id)))
        .await
    {
        Ok(v) => v,
        Err(e) => return ctx.problem(&e),
    };
    let sites = match ctx
        .api
        .get(&format!("/v1/partners/{}/sites", urlencode(&id)))
        .await
    {
        Ok(v) => v,
        Err(e) => return ctx.problem(&e),
    };
    let month = match ctx
        .api
        .get(&format!(
            "/v1/partners/{}/statements/current",
            urlencode(&id)
        ))
        .await
    {
        Ok(v) => v,
        Err(e) => return ctx.problem(&e),
    };
    let csv = format!(
        "/v1/partners/{}/statements/{}?format=csv",
        urlencode(&id),
        urlencode(s(&month, "period"))
    );
    let cur = s(&month, "currency").to_owned();
    ctx.page(
        Msg::PartnerConsole,
        html! {
            h1 { (ctx.t(Msg::PartnerConsole)) " — " span #partner-name { (s(&p["brand"], "name")) } }
            p.muted { (ctx.t(Msg::Domains)) ": " span #domains { (items(&p, "domains").iter().filter_map(Value::as_str).collect::<Vec<_>>().join(", ")) } }
            h2 { (ctx.t(Msg::PartnerCustomers)) " " span.muted #customer-count { "(" (customers["total"]) ")" } }
            p.muted { (ctx.t(Msg::PartnerCustomersText)) }
            table #customers {
                thead { tr { th { (ctx.t(Msg::Name)) } th { (ctx.t(Msg::Kind)) } th { "" } th { (ctx.t(Msg::Members)) } } }
                tbody { @for c in items(&customers, "customers") {
                    tr data-customer=(s(&c, "id")) {
                        td { (s(&c, "name")) } td { (s(&c, "kind")) } td.mono { (s(&c, "billing_country")) }
                        td { (c["members"]) @for i in items(&c, "invited") { " · " (i.as_str().unwrap_or_default()) " (" (ctx.t(Msg::Invited)) ")" } }
                    }
                } }
            }
            form.card.row method="post" action="/partner/customers" #new-customer {
                (ctx.csrf_field())
                label { (ctx.t(Msg::Name)) input type="text" name="name" id="customer-name" required; }
                label { (ctx.t(Msg::Kind)) select name="kind" id="customer-kind" {
                    option value="household" { "household" } option value="company" { "company" } option value="person" { "person" }
                } }
                label { (ctx.t(Msg::Country)) input type="text" name="billing_country" id="customer-country" value="FR" required; }
                label { (ctx.t(Msg::OwnerEmail)) input type="email" name="owner_email" id="customer-owner" required; }
                button type="submit" id="create-customer" { (ctx.t(Msg::NewCustomer)) }
            }
            h2 { (ctx.t(Msg::Sites)) }
            p.muted { (ctx.t(Msg::SitesText)) }
            table #sites {
                thead { tr { th { (ctx.t(Msg::Name)) } th { (ctx.t(Msg::Ranges)) } th { (ctx.t(Msg::Seats)) } } }
                tbody { @for x in items(&sites, "sites") {
                    tr data-site=(s(&x, "id")) {
                        td { (s(&x, "name")) }
                        td.mono { (items(&x, "ranges").iter().filter_map(Value::as_str).collect::<Vec<_>>().join(", ")) }
                        td { (x["seats_used"]) " / " (x["seats"]) }
                    }
                } }
            }
            h2 { (ctx.t(Msg::ThisMonth)) " " span.muted { (s(&month, "period")) } }
            table #statement {
                tbody {
                    tr { th { (ctx.t(Msg::ActiveUsers)) } td #active-users { (month["active_users"]) } }
                    tr { th { (ctx.t(Msg::CustomersNet)) } td { (s(&month, "customers_net")) " " (cur) } }
                    tr { th { (ctx.t(Msg::YourShare)) " (" (s(&month, "partner_share_percent")) " %)" } td { (s(&month, "partner_keeps")) " " (cur) } }
                    tr { th { (ctx.t(Msg::LicenceFees)) } td #licence-fees { (s(&month, "licence_fees")) " " (cur) } }
                    tr { th { (ctx.t(Msg::Balance)) } td #balance { (s(&month, "balance")) " " (cur) } }
                }
            }
            p { a #statement-csv href=(csv) { (ctx.t(Msg::DownloadCsv)) } }
            h2 { (ctx.t(Msg::YourPops)) }
            p.muted { (ctx.t(Msg::YourPopsText)) }
            div #pops { @for r in items(&pop, "regions") {
                div.card data-region=(s(&r, "region")) {
                    h3 { (s(&r, "region")) @if r["silent"] == true { " " span.state.state-down { "silent" } } }
                    p { @for (state, n) in r["hosts"].as_object().cloned().unwrap_or_default() { span.state { (state) " " (n) } " " } }
                    p.muted { @for (model, states) in r["gpus"].as_object().cloned().unwrap_or_default() {
                        (model) ": " @for (st, n) in states.as_object().cloned().unwrap_or_default() { (st) " " (n) " " } " "
                    } }
                }
            } }
            p #pop-sessions { (pop["sessions"]) " " (ctx.t(Msg::GameSessions)) }
            table.dense #pop-hosts {
                thead { tr { th { "Host" } th { (ctx.t(Msg::Region)) } th { (ctx.t(Msg::State)) } th { "GPU" } th { (ctx.t(Msg::Actions)) } } }
                tbody { @for h in items(&pop, "hosts") {
                    @let node = s(&h, "id");
                    @let state = s(&h, "state");
                    tr data-node=(node) {
                        td { (s(&h, "hostname")) } td { (s(&h, "region")) } td.state { (state) } td { (h["gpus_bound"]) " / " (h["gpus"]) }
                        td { form.inline method="post" action={ "/partner/hosts/" (urlencode(node)) } {
                            (ctx.csrf_field())
                            @if state == "ready" {
                                button type="submit" name="state" value="cordoned" id={ "cordon-" (node) } { (ctx.t(Msg::Cordon)) } " "
                                button type="submit" name="state" value="draining" id={ "drain-" (node) } { (ctx.t(Msg::Drain)) }
                            } @else {
                                button type="submit" name="state" value="ready" id={ "ready-" (node) } { (ctx.t(Msg::Uncordon)) }
                            }
                        } }
                    }
                } }
            }
        },
    )
}

#[derive(Debug, Deserialize)]
pub struct NewCustomer {
    name: String,
    kind: String,
    billing_country: String,
    owner_email: String,
}

/// `POST /partner/customers`.
pub async fn create_customer(ctx: Ctx, Form(f): Form<NewCustomer>) -> Response {
    let p = match partner(&ctx).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    match ctx
        .api
        .post(
            &format!("/v1/partners/{}/customers", urlencode(s(&p, "id"))),
            json!({"name": f.name, "kind": f.kind, "billing_country": f.billing_country, "owner_email": f.owner_email}),
        )
        .await
    {
        Ok(_) => done("/partner", Msg::CustomerCreated),
        Err(e) => ctx.problem(&e),
    }
}

#[derive(Debug, Deserialize)]
pub struct HostState {
    state: String,
}

/// `POST /partner/hosts/{id}`: cordons, drains (an hour's deadline) or readies one of the
/// partner's POP hosts.
pub async fn host_state(
    ctx: Ctx,
    axum::extract::Path(id): axum::extract::Path<String>,
    Form(f): Form<HostState>,
) -> Response {
    let mut body = json!({"state": f.state, "reason": "from the partner console"});
    if f.state == "draining" {
        body["drain_deadline_s"] = json!(3600);
    }
    match ctx
        .api
        .call(
            axum::http::Method::PATCH,
            &format!("/v1/nodes/{}", urlencode(&id)),
            Some(body),
        )
        .await
    {
        Ok(_) => done("/partner", Msg::HostStateChanged),
        Err(e) => ctx.problem(&e),
    }
}

//! A project's webhook endpoints in the console: the list (with each one's state: live,
//! failing since, disabled), a form that makes one and shows its signing secret once, and an
//! endpoint's page with its delivery attempts (a resend button on each event), what is queued,
//! and a "send a test event" button that shows what the endpoint answered.

use axum::Form;
use axum::extract::Path;
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use serde_json::{Value, json};

use crate::auth_pages::urlencode;
use crate::client::s;
use crate::i18n::Msg;
use crate::layout::{Ctx, done};

/// The event types an endpoint may take (the form's checkboxes).
const EVENT_TYPES: &[&str] = vmcloud_scheduler::webhooks::types::EVENT_TYPES;

fn endpoint_state(ctx: &Ctx, e: &Value) -> Markup {
    html! {
        @if let Some(at) = e["disabled_at"].as_str() {
            span.danger { (ctx.t(Msg::Disabled)) " " (at) }
        } @else if let Some(at) = e["failing_since"].as_str() {
            span.danger { (ctx.t(Msg::FailingSince)) " " (at) }
        } @else {
            (ctx.t(Msg::Active))
        }
    }
}

fn events_of(ctx: &Ctx, e: &Value) -> String {
    let types: Vec<&str> = e["event_types"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    if types.is_empty() {
        ctx.t(Msg::AllEvents).to_owned()
    } else {
        types.join(", ")
    }
}

/// `/console/projects/{project}/webhooks`.
pub async fn list(ctx: Ctx, Path(project): Path<String>) -> Response {
    list_page(&ctx, &project, None).await
}

async fn list_page(ctx: &Ctx, project: &str, made: Option<&Value>) -> Response {
    let endpoints = match ctx
        .api
        .get(&format!(
            "/v1/webhook-endpoints?project={}&limit=1000",
            urlencode(project)
        ))
        .await
    {
        Ok(v) => v,
        Err(p) => return ctx.problem(&p),
    };
    let base = format!("/console/projects/{project}/webhooks");
    ctx.page(
        Msg::Webhooks,
        html! {
            h1 { (ctx.t(Msg::Webhooks)) }
            p { a href={ "/console/projects/" (project) } { (ctx.t(Msg::Back)) } }
            p.muted { (ctx.t(Msg::WebhooksText)) }
            @if let Some(e) = made {
                div.card.secret {
                    p { strong { (ctx.t(Msg::SecretShownOnce)) } }
                    p.mono { (s(e, "url")) }
                    code #new-secret { (s(e, "secret")) }
                }
            }
            @let list = endpoints["endpoints"].as_array().cloned().unwrap_or_default();
            @if list.is_empty() {
                p #no-endpoints { (ctx.t(Msg::NoEndpoints)) }
            } @else {
                table #endpoints {
                    thead { tr {
                        th { "URL" } th { (ctx.t(Msg::EventTypes)) } th { (ctx.t(Msg::State)) }
                        th { (ctx.t(Msg::Created)) } th {}
                    } }
                    tbody {
                        @for e in &list {
                            tr {
                                td.mono {
                                    a href={ (base) "/" (s(e, "id")) } { (s(e, "url")) }
                                    @if !s(e, "description").is_empty() {
                                        br; span.muted { (s(e, "description")) }
                                    }
                                }
                                td { (events_of(ctx, e)) }
                                td { (endpoint_state(ctx, e)) }
                                td { (s(e, "created_at")) }
                                td {
                                    form.inline method="post" action={ (base) "/" (s(e, "id")) "/delete" } {
                                        (ctx.csrf_field())
                                        button.link.danger type="submit" { (ctx.t(Msg::Delete)) }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            h2 { (ctx.t(Msg::NewEndpoint)) }
            form.card method="post" action=(base) {
                (ctx.csrf_field())
                p { label { "URL" input type="url" name="url" id="endpoint-url" required placeholder="https://example.org/hooks/vmcloud"; } }
                p { label { (ctx.t(Msg::Description)) input type="text" name="description" maxlength="200"; } }
                fieldset {
                    legend { (ctx.t(Msg::EventTypes)) " (" (ctx.t(Msg::NoneTickedAll)) ")" }
                    @for t in EVENT_TYPES {
                        label.check { input type="checkbox" name="event_types" value=(t); " " (t) }
                    }
                }
                button type="submit" id="create-endpoint" { (ctx.t(Msg::NewEndpoint)) }
            }
        },
    )
}

/// The endpoint form, as pairs: its event types are repeated checkboxes.
pub async fn create(
    ctx: Ctx,
    Path(project): Path<String>,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Response {
    let field = |name: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .map_or("", |(_, v)| v.trim())
    };
    let event_types: Vec<&str> = pairs
        .iter()
        .filter(|(k, _)| k == "event_types")
        .map(|(_, v)| v.as_str())
        .collect();
    let path = format!("/v1/webhook-endpoints?project={}", urlencode(&project));
    let body = json!({"url": field("url"), "description": field("description"), "event_types": event_types});
    match ctx.api.post(&path, body).await {
        Ok(made) => list_page(&ctx, &project, Some(&made)).await,
        Err(p) => ctx.problem(&p),
    }
}

pub async fn delete(ctx: Ctx, Path((project, id)): Path<(String, String)>) -> Response {
    let path = format!(
        "/v1/webhook-endpoints/{}?project={}",
        urlencode(&id),
        urlencode(&project)
    );
    match ctx.api.call(axum::http::Method::DELETE, &path, None).await {
        Ok(_) => done(
            &format!("/console/projects/{project}/webhooks"),
            Msg::NoticeEndpointDeleted,
        ),
        Err(p) => ctx.problem(&p),
    }
}

/// `/console/projects/{project}/webhooks/{id}`: the endpoint, its queue and its attempts.
pub async fn endpoint(ctx: Ctx, Path((project, id)): Path<(String, String)>) -> Response {
    endpoint_page(&ctx, &project, &id, None).await
}

async fn endpoint_page(ctx: &Ctx, project: &str, id: &str, test: Option<&Value>) -> Response {
    let q = format!("project={}", urlencode(project));
    let e = match ctx
        .api
        .get(&format!("/v1/webhook-endpoints/{}?{q}", urlencode(id)))
        .await
    {
        Ok(v) => v,
        Err(p) => return ctx.problem(&p),
    };
    let log = match ctx
        .api
        .get(&format!(
            "/v1/webhook-endpoints/{}/deliveries?{q}&limit=200",
            urlencode(id)
        ))
        .await
    {
        Ok(v) => v,
        Err(p) => return ctx.problem(&p),
    };
    let base = format!("/console/projects/{project}/webhooks/{id}");
    let pending = log["pending"].as_array().cloned().unwrap_or_default();
    let attempts = log["deliveries"].as_array().cloned().unwrap_or_default();
    ctx.page_titled(
        s(&e, "url"),
        html! {
            h1.mono { (s(&e, "url")) }
            p { a href={ "/console/projects/" (project) "/webhooks" } { (ctx.t(Msg::Back)) } }
            p { (events_of(ctx, &e)) " · " (endpoint_state(ctx, &e)) " · " span.mono { (s(&e, "id")) } }
            form.inline method="post" action={ (base) "/test" } {
                (ctx.csrf_field())
                button type="submit" id="send-test" { (ctx.t(Msg::SendTest)) }
            }
            @if let Some(t) = test {
                div.card #test-result {
                    p { strong { (ctx.t(Msg::TestResult)) " " span.mono { (s(t, "webhook_id")) } } }
                    @if t["delivered"] == true {
                        p { (ctx.t(Msg::Delivered)) " — HTTP " (t["status"]) ", " (t["duration_ms"]) " ms" }
                    } @else {
                        p.danger { (ctx.t(Msg::Failed)) ": " (s(t, "error")) }
                    }
                }
            }
            h2 { (ctx.t(Msg::Deliveries)) }
            @if pending.is_empty() && attempts.is_empty() {
                p { (ctx.t(Msg::NoDeliveries)) }
            } @else {
                table #deliveries {
                    thead { tr {
                        th { (ctx.t(Msg::Time)) } th { (ctx.t(Msg::Event)) } th { (ctx.t(Msg::Attempt)) }
                        th { (ctx.t(Msg::Outcome)) } th {}
                    } }
                    tbody {
                        @for p in &pending {
                            tr {
                                td { (s(p, "next_attempt_at")) }
                                td.mono { (s(p, "event_id")) }
                                td { (p["attempts"].as_u64().unwrap_or(0) + 1) }
                                td { (ctx.t(Msg::Queued)) }
                                td {}
                            }
                        }
                        @for d in &attempts {
                            tr {
                                td { (s(d, "at")) }
                                td.mono { (s(d, "event_id")) }
                                td { (d["attempt"]) }
                                td {
                                    @if d["delivered"] == true {
                                        (ctx.t(Msg::Delivered)) " " (d["status"])
                                    } @else {
                                        span.danger { (ctx.t(Msg::Failed)) " " (d["status"].as_u64().map(|c| c.to_string()).unwrap_or_default()) }
                                        " " span.muted { (s(d, "error")) }
                                    }
                                }
                                td {
                                    @if s(d, "event_id").starts_with("evt_") {
                                        form.inline method="post" action={ (base) "/resend/" (s(d, "event_id")) } {
                                            (ctx.csrf_field())
                                            button.link type="submit" { (ctx.t(Msg::Resend)) }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        },
    )
}

pub async fn test(ctx: Ctx, Path((project, id)): Path<(String, String)>) -> Response {
    let path = format!(
        "/v1/webhook-endpoints/{}/test?project={}",
        urlencode(&id),
        urlencode(&project)
    );
    match ctx.api.post(&path, json!({})).await {
        Ok(result) => endpoint_page(&ctx, &project, &id, Some(&result)).await,
        Err(p) => ctx.problem(&p),
    }
}

/// A reload of the test's answer page goes back to the endpoint (it does not send again).
pub async fn back_to_endpoint(Path((project, id)): Path<(String, String)>) -> Response {
    axum::response::Redirect::to(&format!("/console/projects/{project}/webhooks/{id}"))
        .into_response()
}

pub async fn resend(
    ctx: Ctx,
    Path((project, id, event)): Path<(String, String, String)>,
) -> Response {
    let path = format!(
        "/v1/webhook-endpoints/{}/deliveries/{}/resend?project={}",
        urlencode(&id),
        urlencode(&event),
        urlencode(&project)
    );
    match ctx.api.post(&path, json!({})).await {
        Ok(_) => done(
            &format!("/console/projects/{project}/webhooks/{id}"),
            Msg::NoticeResent,
        ),
        Err(p) => ctx.problem(&p),
    }
}

//! The public status page (`/status`, no login) and its feeds (`/status/feed.json`: JSON
//! Feed 1.1; `/status/feed.atom`: Atom): every region's services, incidents under way,
//! maintenance to come, the last 90 days — all from `GET /v1/status`.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use serde_json::{Value, json};

use crate::client::{items, s};
use crate::i18n::{Lang, Msg};
use crate::layout::Ctx;

fn status_label(lang: Lang, st: &str) -> &'static str {
    lang.t(match st {
        "operational" => Msg::StOperational,
        "maintenance" => Msg::StMaintenance,
        "degraded" => Msg::StDegraded,
        "partial-outage" => Msg::StPartialOutage,
        _ => Msg::StMajorOutage,
    })
}

fn service_label(lang: Lang, service: &str) -> &'static str {
    lang.t(match service {
        "api" => Msg::SvcApi,
        "console" => Msg::SvcConsole,
        "compute" => Msg::SvcCompute,
        "gpu" => Msg::SvcGpu,
        "gaming" => Msg::SvcGaming,
        _ => Msg::SvcBilling,
    })
}

fn badge(lang: Lang, st: &str) -> Markup {
    html! { span class={ "st st-" (st) } data-status=(st) { (status_label(lang, st)) } }
}

/// `YYYY-MM-DD HH:MM UTC` of an RFC 3339 time.
fn when(t: &str) -> String {
    match (t.get(..10), t.get(11..16)) {
        (Some(d), Some(h)) => format!("{d} {h} UTC"),
        _ => t.to_owned(),
    }
}

fn incident(lang: Lang, i: &Value) -> Markup {
    let scope = |key: &str, all: Msg| {
        let list: Vec<String> = items(i, key)
            .iter()
            .map(|v| v.as_str().unwrap_or("").to_owned())
            .collect();
        if list.is_empty() {
            lang.t(all).to_owned()
        } else {
            list.join(", ")
        }
    };
    html! {
        div.card.incident id=(s(i, "id")) data-incident=(s(i, "id")) {
            h3 { (s(i, "title")) " " (badge(lang, s(i, "impact"))) }
            p.muted {
                (scope("regions", Msg::AllRegions)) " · " (scope("services", Msg::AllServices))
                " · " (when(s(i, "starts_at")))
                @if let Some(e) = i["ends_at"].as_str() { " → " (when(e)) }
            }
            @for u in items(i, "updates") {
                div.update {
                    strong { (s(&u, "status")) } " · " span.muted { (when(s(&u, "at"))) }
                    p { (s(&u, "message")) }
                }
            }
        }
    }
}

/// `GET /status`.
pub async fn page(ctx: Ctx) -> Response {
    let v = match ctx.api.get("/v1/status").await {
        Ok(v) => v,
        Err(p) => return ctx.problem(&p),
    };
    let lang = ctx.lang;
    let services: Vec<Value> = items(&v, "regions")
        .first()
        .map(|r| items(r, "services"))
        .unwrap_or_default();
    ctx.page(
        Msg::StatusPage,
        html! {
            h1 { (ctx.t(Msg::StatusPage)) }
            p class={ "overall st-" (s(&v, "status")) } #overall data-status=(s(&v, "status")) {
                @if s(&v, "status") == "operational" { (ctx.t(Msg::AllOperational)) }
                @else { (status_label(lang, s(&v, "status"))) }
            }
            table.status-grid #status-grid {
                thead { tr {
                    th { (ctx.t(Msg::Region)) }
                    @for sv in &services { th { (service_label(lang, s(sv, "service"))) } }
                } }
                tbody {
                    @for r in items(&v, "regions") {
                        tr data-region=(s(&r, "region")) {
                            th { (s(&r, "name")) }
                            @for sv in items(&r, "services") {
                                td data-service=(s(&sv, "service")) { (badge(lang, s(&sv, "status"))) }
                            }
                        }
                    }
                }
            }
            h2 { (ctx.t(Msg::ActiveIncidents)) }
            section #active {
                @for i in items(&v, "active") { (incident(lang, &i)) }
                @if items(&v, "active").is_empty() { p.muted { (ctx.t(Msg::NoIncidents)) } }
            }
            @if !items(&v, "scheduled").is_empty() {
                h2 { (ctx.t(Msg::ScheduledMaintenance)) }
                section #scheduled { @for i in items(&v, "scheduled") { (incident(lang, &i)) } }
            }
            h2 { (ctx.t(Msg::PastIncidents)) }
            section #history {
                @for i in items(&v, "history") { (incident(lang, &i)) }
                @if items(&v, "history").is_empty() { p.muted { (ctx.t(Msg::NoPastIncidents)) } }
            }
            p.muted {
                (ctx.t(Msg::UpdatedAt)) " " (when(s(&v, "updated_at"))) " · "
                a href="/status/feed.atom" { "Atom" } " · " a href="/status/feed.json" { "JSON Feed" }
            }
        },
    )
}

/// Every incident of the page, newest first (active, scheduled, then closed).
fn all_incidents(v: &Value) -> Vec<Value> {
    let mut all: Vec<Value> = ["active", "scheduled", "history"]
        .iter()
        .flat_map(|k| items(v, k))
        .collect();
    all.sort_by(|a, b| {
        let last = |i: &Value| {
            s(
                &items(i, "updates").first().cloned().unwrap_or_default(),
                "at",
            )
            .to_owned()
        };
        last(b).cmp(&last(a))
    });
    all
}

fn latest(i: &Value) -> (String, String, String) {
    let u = items(i, "updates").first().cloned().unwrap_or_default();
    (
        s(&u, "at").to_owned(),
        s(&u, "status").to_owned(),
        s(&u, "message").to_owned(),
    )
}

/// `GET /status/feed.json`: JSON Feed 1.1, one item per incident (its latest update).
pub async fn json_feed(ctx: Ctx, State(web): State<crate::Web>) -> Response {
    let v = match ctx.api.get("/v1/status").await {
        Ok(v) => v,
        Err(p) => return ctx.problem(&p),
    };
    let base = &web.state.public_url;
    let feed = json!({
        "version": "https://jsonfeed.org/version/1.1",
        "title": "VMCloud status",
        "home_page_url": format!("{base}/status"),
        "feed_url": format!("{base}/status/feed.json"),
        "items": all_incidents(&v).iter().map(|i| {
            let (at, status, message) = latest(i);
            json!({
                "id": s(i, "id"),
                "url": format!("{base}/status#{}", s(i, "id")),
                "title": format!("{} ({status})", s(i, "title")),
                "content_text": message,
                "date_published": s(i, "created_at"),
                "date_modified": at,
                "tags": [s(i, "kind"), s(i, "impact")],
            })
        }).collect::<Vec<_>>(),
    });
    (
        [(header::CONTENT_TYPE, "application/feed+json; charset=utf-8")],
        feed.to_string(),
    )
        .into_response()
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// `GET /status/feed.atom`: Atom, one entry per incident (its latest update).
pub async fn atom_feed(ctx: Ctx, State(web): State<crate::Web>) -> Response {
    let v = match ctx.api.get("/v1/status").await {
        Ok(v) => v,
        Err(p) => return ctx.problem(&p),
    };
    let base = &web.state.public_url;
    let incidents = all_incidents(&v);
    let updated = incidents
        .first()
        .map(|i| latest(i).0)
        .unwrap_or_else(|| s(&v, "updated_at").to_owned());
    let mut out = format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<feed xmlns=\"http://www.w3.org/2005/Atom\">\n  <id>{base}/status</id>\n  <title>VMCloud status</title>\n  <updated>{}</updated>\n  <link rel=\"alternate\" href=\"{base}/status\"/>\n  <link rel=\"self\" href=\"{base}/status/feed.atom\"/>\n  <author><name>VMCloud NOC</name></author>\n",
        xml(&updated)
    );
    for i in &incidents {
        let (at, status, message) = latest(i);
        out.push_str(&format!(
            "  <entry>\n    <id>{base}/status#{id}</id>\n    <title>{title} ({status})</title>\n    <updated>{at}</updated>\n    <published>{published}</published>\n    <link href=\"{base}/status#{id}\"/>\n    <category term=\"{impact}\"/>\n    <content type=\"text\">{message}</content>\n  </entry>\n",
            id = xml(s(i, "id")),
            title = xml(s(i, "title")),
            status = xml(&status),
            at = xml(&at),
            published = xml(s(i, "created_at")),
            impact = xml(s(i, "impact")),
            message = xml(&message),
        ));
    }
    out.push_str("</feed>\n");
    (
        [(header::CONTENT_TYPE, "application/atom+xml; charset=utf-8")],
        out,
    )
        .into_response()
}

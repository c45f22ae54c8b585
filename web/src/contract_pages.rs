//! The API contract in the console: a project's quotas (used and limit per region, a form to
//! ask for more, its requests and what operators decided) and an organisation's audit trail
//! (newest first, filtered by actor or resource, a page at a time).

use axum::Form;
use axum::extract::{Path, Query};
use axum::response::Response;
use maud::html;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth_pages::urlencode;
use crate::client::s;
use crate::i18n::Msg;
use crate::layout::{Ctx, done};

fn limit(v: &Value) -> String {
    v.as_u64().map_or("∞".to_owned(), |n| n.to_string())
}

/// `/console/projects/{project}/quotas`.
pub async fn quotas(ctx: Ctx, Path(project): Path<String>) -> Response {
    let p = urlencode(&project);
    let view = match ctx.api.get(&format!("/v1/quotas?project={p}")).await {
        Ok(v) => v,
        Err(problem) => return ctx.problem(&problem),
    };
    let requests = ctx
        .api
        .get(&format!("/v1/quota-requests?project={p}&limit=1000"))
        .await
        .unwrap_or(Value::Null);
    let regions: Vec<&str> = view["regions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["region"].as_str())
        .collect();
    ctx.page(
        Msg::Quotas,
        html! {
            h1 { (ctx.t(Msg::Quotas)) }
            p { a href={ "/console/projects/" (project) } { (ctx.t(Msg::Back)) } }
            p.muted { (ctx.t(Msg::QuotasText)) }
            table #quotas {
                thead { tr {
                    th { (ctx.t(Msg::Region)) } th { (ctx.t(Msg::Instances)) } th { "vCPU" }
                    th { (ctx.t(Msg::MemoryGib)) } th { "GPU" } th { (ctx.t(Msg::Reservations)) }
                } }
                tbody {
                    @for r in view["regions"].as_array().into_iter().flatten() {
                        @let (l, u) = (&r["limits"], &r["used"]);
                        tr {
                            td { (s(r, "region")) }
                            td { (u["instances"]) " / " (limit(&l["instances"])) }
                            td { (u["vcpus"]) " / " (limit(&l["vcpus"])) }
                            td { (u["memory_mib"].as_u64().unwrap_or(0) / 1024) " / "
                                 (l["memory_mib"].as_u64().map_or("∞".to_owned(), |m| (m / 1024).to_string())) }
                            td { (u["gpus"]) " / " (limit(&l["gpus"])) }
                            td { (u["reservations"]) " / " (limit(&l["reservations"])) }
                        }
                    }
                }
            }
            h2 { (ctx.t(Msg::AskForMore)) }
            form.card.row method="post" action={ "/console/projects/" (project) "/quotas" } {
                (ctx.csrf_field())
                label { (ctx.t(Msg::Region))
                    select name="region" id="quota-region" {
                        @for r in &regions { option value=(r) { (r) } }
                    }
                }
                label { "vCPU" input type="number" name="vcpus" id="quota-vcpus" min="1"; }
                label { (ctx.t(Msg::Instances)) input type="number" name="instances" min="1"; }
                label { "GPU" input type="number" name="gpus" min="1"; }
                label { (ctx.t(Msg::Reason)) input type="text" name="reason" id="quota-reason" required; }
                button type="submit" id="ask-quota" { (ctx.t(Msg::Send)) }
            }
            h2 { (ctx.t(Msg::QuotaRequests)) }
            table #quota-requests {
                thead { tr {
                    th { (ctx.t(Msg::Created)) } th { (ctx.t(Msg::Region)) } th { (ctx.t(Msg::Wanted)) }
                    th { (ctx.t(Msg::Reason)) } th { (ctx.t(Msg::State)) } th { (ctx.t(Msg::Note)) }
                } }
                tbody {
                    @for r in requests["quota_requests"].as_array().into_iter().flatten() {
                        tr {
                            td { (s(r, "created_at")) }
                            td { (s(r, "region")) }
                            td.mono { (r["wanted"]) }
                            td { (s(r, "reason")) }
                            td { (s(r, "state")) }
                            td { (s(r, "note")) }
                        }
                    }
                }
            }
        },
    )
}

#[derive(Debug, Deserialize)]
pub struct QuotaAsk {
    region: String,
    reason: String,
    #[serde(default)]
    vcpus: String,
    #[serde(default)]
    instances: String,
    #[serde(default)]
    gpus: String,
}

pub async fn ask(ctx: Ctx, Path(project): Path<String>, Form(f): Form<QuotaAsk>) -> Response {
    let mut body = json!({"region": f.region, "reason": f.reason});
    for (k, v) in [
        ("vcpus", &f.vcpus),
        ("instances", &f.instances),
        ("gpus", &f.gpus),
    ] {
        if let Ok(n) = v.trim().parse::<u32>() {
            body[k] = json!(n);
        }
    }
    let path = format!("/v1/quota-requests?project={}", urlencode(&project));
    match ctx.api.post(&path, body).await {
        Ok(_) => done(
            &format!("/console/projects/{project}/quotas"),
            Msg::NoticeQuotaAsked,
        ),
        Err(p) => ctx.problem(&p),
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct AuditFilter {
    #[serde(default)]
    actor: String,
    #[serde(default)]
    resource: String,
    #[serde(default)]
    cursor: String,
}

/// `/console/orgs/{id}/audit`: the organisation's audit trail, newest first.
pub async fn audit(ctx: Ctx, Path(org): Path<String>, Query(f): Query<AuditFilter>) -> Response {
    let mut path = format!("/v1/audit-events?org={}&limit=50", urlencode(&org));
    for (k, v) in [
        ("actor", &f.actor),
        ("resource", &f.resource),
        ("cursor", &f.cursor),
    ] {
        if !v.trim().is_empty() {
            path.push_str(&format!("&{k}={}", urlencode(v.trim())));
        }
    }
    let page = match ctx.api.get(&path).await {
        Ok(v) => v,
        Err(problem) => return ctx.problem(&problem),
    };
    let next = page["next_cursor"].as_str().map(|c| {
        format!(
            "/console/orgs/{org}/audit?actor={}&resource={}&cursor={}",
            urlencode(&f.actor),
            urlencode(&f.resource),
            urlencode(c)
        )
    });
    ctx.page(
        Msg::AuditTrail,
        html! {
            h1 { (ctx.t(Msg::AuditTrail)) }
            p { a href={ "/console/orgs/" (org) } { (ctx.t(Msg::Back)) } }
            p.muted { (ctx.t(Msg::AuditText)) }
            form.card.row method="get" action={ "/console/orgs/" (org) "/audit" } {
                label { (ctx.t(Msg::Actor)) input type="text" name="actor" value=(f.actor) placeholder="user:usr_…"; }
                label { (ctx.t(Msg::Resource)) input type="text" name="resource" value=(f.resource) placeholder="instance/i-…"; }
                button type="submit" id="filter-audit" { (ctx.t(Msg::Filter)) }
            }
            table #audit {
                thead { tr {
                    th { (ctx.t(Msg::Time)) } th { (ctx.t(Msg::Actor)) } th { (ctx.t(Msg::Source)) }
                    th { (ctx.t(Msg::Action)) } th { (ctx.t(Msg::Resource)) } th { (ctx.t(Msg::Outcome)) }
                } }
                tbody {
                    @for e in page["events"].as_array().into_iter().flatten() {
                        tr {
                            td.mono { (vmcloud_scheduler::clock::rfc3339(e["at_ms"].as_i64().unwrap_or(0))) }
                            td.mono { (s(e, "actor")) }
                            td.mono { (s(e, "source")) }
                            td { (s(e, "action")) }
                            td.mono { (s(e, "resource")) }
                            td { (s(e, "outcome")) }
                        }
                    }
                }
            }
            @if let Some(next) = next {
                p { a href=(next) id="older" { (ctx.t(Msg::Older)) } }
            }
        },
    )
}

//! The customer console: organisations and projects, a project's instances (created from the
//! catalog's choices, listed live by server-sent events, deleted after a confirmation) and its
//! API keys.

use std::convert::Infallible;
use std::time::Duration;

use axum::Form;
use axum::extract::{Path, State};
use axum::http::Method;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::Stream;
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::Web;
use crate::auth_pages::urlencode;
use crate::client::{Api, s};
use crate::i18n::{Lang, Msg};
use crate::layout::{Ctx, done};

/// `/console`: the user's organisations and projects, and a form for a new project.
pub async fn home(ctx: Ctx) -> Response {
    let me = match ctx.api.get("/v1/me").await {
        Ok(me) => me,
        Err(p) => return ctx.problem(&p),
    };
    let orgs = me["organisations"].as_array().cloned().unwrap_or_default();
    let projects = ctx
        .api
        .get("/v1/projects?limit=1000")
        .await
        .unwrap_or(Value::Null);
    let projects = projects["projects"].as_array().cloned().unwrap_or_default();
    let org_name = |id: &str| {
        orgs.iter()
            .find(|o| s(o, "id") == id)
            .map(|o| s(o, "name").to_owned())
            .unwrap_or_else(|| id.to_owned())
    };
    ctx.page(
        Msg::Console,
        html! {
            h1 { (ctx.t(Msg::Projects)) }
            p.muted { (s(&me, "email")) }
            table #projects {
                thead { tr { th { (ctx.t(Msg::Name)) } th { (ctx.t(Msg::Organisation)) } th { "ID" } } }
                tbody {
                    @for p in &projects {
                        tr {
                            td { a href={ "/console/projects/" (s(p, "id")) } { (s(p, "name")) } }
                            td { (org_name(s(p, "organisation"))) }
                            td.mono { (s(p, "id")) }
                        }
                    }
                }
            }
            h2 { (ctx.t(Msg::NewProject)) }
            form.card.row method="post" action="/console/projects" {
                (ctx.csrf_field())
                label { (ctx.t(Msg::Organisation))
                    select name="organisation" id="project-org" {
                        @for o in &orgs { option value=(s(o, "id")) { (s(o, "name")) } }
                    }
                }
                label { (ctx.t(Msg::Name)) input type="text" name="name" id="project-name" required pattern="[a-z0-9][a-z0-9-]{0,62}"; }
                button type="submit" id="create-project" { (ctx.t(Msg::Create)) }
            }
            h2 { (ctx.t(Msg::Organisations)) }
            ul #organisations {
                @for o in &orgs {
                    li { a href={ "/console/orgs/" (s(o, "id")) } { (s(o, "name")) } " — " (s(o, "role")) }
                }
            }
        },
    )
}

#[derive(Debug, Deserialize)]
pub struct NewProject {
    organisation: String,
    name: String,
}

pub async fn create_project(ctx: Ctx, Form(f): Form<NewProject>) -> Response {
    match ctx
        .api
        .post(
            "/v1/projects",
            json!({"organisation": f.organisation, "name": f.name}),
        )
        .await
    {
        Ok(p) => done(
            &format!("/console/projects/{}", s(&p, "id")),
            Msg::NoticeProjectCreated,
        ),
        Err(p) => ctx.problem(&p),
    }
}

fn instances_path(project: &str) -> String {
    // The first 1,000 (a page of the API at most); more than that needs a search box.
    format!(
        "/v1/instances?project={}&stale=true&limit=1000",
        urlencode(project)
    )
}

/// The rows of the instance table (the page and the live updates render the same).
pub fn instance_rows(lang: Lang, project: &str, list: &Value) -> Markup {
    let instances = list["instances"].as_array().cloned().unwrap_or_default();
    html! {
        @if instances.is_empty() {
            tr { td colspan="7" .muted { (lang.t(Msg::NoInstances)) } }
        }
        @for i in &instances {
            tr data-id=(s(i, "id")) {
                td { a href={ "/console/projects/" (project) "/instances/" (s(i, "id")) } { (s(i, "name")) } }
                td { (s(i, "flavor")) }
                td { (s(i, "region")) }
                td { span class={ "state state-" (s(i, "state")) } data-state=(s(i, "state")) { (s(i, "state")) } }
                td.mono { (i["node"].as_str().unwrap_or("—")) }
                td.mono.private-ip {
                    (i["private_ipv4"].as_str().unwrap_or("—"))
                    @if let Some(p) = i["public_ipv4"].as_str() { br; (p) }
                }
                td.mono { (s(i, "created_at")) }
            }
        }
    }
}

/// A project: its instances (live), a form for a new one, a link to its keys.
pub async fn project(State(web): State<Web>, ctx: Ctx, Path(id): Path<String>) -> Response {
    let project = match ctx
        .api
        .get(&format!("/v1/projects/{}", urlencode(&id)))
        .await
    {
        Ok(p) => p,
        Err(p) => return ctx.problem(&p),
    };
    let list = match ctx.api.get(&instances_path(&id)).await {
        Ok(l) => l,
        Err(p) => return ctx.problem(&p),
    };
    let org = ctx
        .api
        .get(&format!(
            "/v1/organisations/{}",
            s(&project, "organisation")
        ))
        .await
        .unwrap_or(Value::Null);
    let trial = org["trial"].as_bool().unwrap_or(false);
    let catalog = &web.state.catalog;
    // Smallest first, GPU flavors after; the region with the most ready hosts preselected.
    let mut flavors: Vec<_> = catalog.flavors.iter().collect();
    flavors.sort_by_key(|(name, f)| (f.gpu.is_some(), f.vcpus, f.memory_mib, name.as_str()));
    let busiest = {
        let state = web.state.cluster.state();
        let mut hosts: std::collections::BTreeMap<&str, usize> = Default::default();
        for n in state.nodes.values() {
            if n.state == vmcloud_scheduler::nodes::types::NodeState::Ready {
                *hosts.entry(n.region.as_str()).or_default() += 1;
            }
        }
        hosts
            .into_iter()
            .max_by_key(|(_, n)| *n)
            .map(|(r, _)| r.to_owned())
    };
    ctx.page_titled(
        s(&project, "name"),
        html! {
            h1 { (ctx.t(Msg::Project)) " " (s(&project, "name")) }
            p {
                a href={ "/console/projects/" (id) "/keys" } id="keys-link" { (ctx.t(Msg::ApiKeys)) }
                " · "
                a href={ "/console/projects/" (id) "/quotas" } id="quotas-link" { (ctx.t(Msg::Quotas)) }
                " · "
                a href={ "/console/projects/" (id) "/webhooks" } id="webhooks-link" { (ctx.t(Msg::Webhooks)) }
                " · "
                a href={ "/console/projects/" (id) "/networks" } id="networks-link" { (ctx.t(Msg::Networks)) }
                " · "
                a href={ "/console/projects/" (id) "/firewalls" } id="firewalls-link" { (ctx.t(Msg::Firewalls)) }
                " · "
                a.danger href={ "/console/projects/" (id) "/delete" } id="delete-project" { (ctx.t(Msg::Delete)) }
            }
            h2 { (ctx.t(Msg::Instances)) " " small.muted { (ctx.t(Msg::Live)) } }
            table #instances data-events={ "/console/projects/" (id) "/instances/events" } {
                thead { tr {
                    th { (ctx.t(Msg::Name)) } th { (ctx.t(Msg::Flavor)) } th { (ctx.t(Msg::Region)) }
                    th { (ctx.t(Msg::State)) } th { (ctx.t(Msg::Host)) } th { (ctx.t(Msg::PrivateIp)) } th { (ctx.t(Msg::Created)) }
                } }
                tbody { (instance_rows(ctx.lang, &id, &list)) }
            }
            h2 { (ctx.t(Msg::NewInstance)) }
            @if trial { p.muted #trial { (ctx.t(Msg::Trial)) } }
            form.card.row method="post" action={ "/console/projects/" (id) "/instances" } {
                (ctx.csrf_field())
                label { (ctx.t(Msg::Name)) input type="text" name="name" id="instance-name" pattern="[a-z0-9][a-z0-9-]{0,62}"; }
                label { (ctx.t(Msg::Flavor))
                    select name="flavor" id="flavor" {
                        @for (name, f) in &flavors {
                            @let gpu = f.gpu.as_ref().map(|g| format!(", {}× {}", g.count, g.model)).unwrap_or_default();
                            option value=(name) disabled[trial && f.gpu.is_some()] {
                                (name) " (" (f.vcpus) " vCPU, " (f.memory_mib / 1024) " GiB" (gpu) ")"
                            }
                        }
                    }
                }
                label { (ctx.t(Msg::Image))
                    select name="image" id="image" {
                        @for (name, i) in &catalog.images { option value=(name) { (i.name) } }
                    }
                }
                label { (ctx.t(Msg::Region))
                    select name="region" id="region" {
                        @for (name, r) in &catalog.regions {
                            option value=(name) selected[busiest.as_deref() == Some(name.as_str())] { (r.name) " (" (name) ")" }
                        }
                    }
                }
                button type="submit" id="create-instance" { (ctx.t(Msg::Create)) }
            }
            script src="/assets/live.js" {}
        },
    )
}

#[derive(Debug, Deserialize)]
pub struct NewInstance {
    #[serde(default)]
    name: String,
    flavor: String,
    image: String,
    region: String,
}

pub async fn create_instance(
    ctx: Ctx,
    Path(id): Path<String>,
    Form(f): Form<NewInstance>,
) -> Response {
    let name = Some(f.name.trim()).filter(|n| !n.is_empty());
    let body = json!({"name": name, "flavor": f.flavor, "image": f.image, "region": f.region});
    match ctx
        .api
        .post(&format!("/v1/instances?project={}", urlencode(&id)), body)
        .await
    {
        Ok(_) => done(
            &format!("/console/projects/{id}"),
            Msg::NoticeInstanceCreated,
        ),
        Err(p) => ctx.problem(&p),
    }
}

/// Server-sent events: the instance table's rows whenever they change (checked twice a
/// second against this replica's state), until the session ends.
pub async fn instance_events(
    ctx: Ctx,
    Path(id): Path<String>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let (api, lang) = (ctx.api.clone(), ctx.lang);
    let stream = futures::stream::unfold(
        (api, None::<String>, false),
        move |(api, last, ended): (Api, Option<String>, bool)| {
            let id = id.clone();
            async move {
                if ended {
                    return None;
                }
                loop {
                    match api.get(&instances_path(&id)).await {
                        Ok(list) => {
                            let html = instance_rows(lang, &id, &list).into_string();
                            if last.as_deref() != Some(html.as_str()) {
                                let event = Event::default().event("rows").data(html.clone());
                                return Some((Ok(event), (api, Some(html), false)));
                            }
                        }
                        // The session ended or the project went: tell the page, then stop.
                        Err(_) => {
                            let event = Event::default().event("end").data("");
                            return Some((Ok(event), (api, last, true)));
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        },
    );
    Sse::new(stream).keep_alive(KeepAlive::default())
}

/// One instance.
pub async fn instance(ctx: Ctx, Path((project, id)): Path<(String, String)>) -> Response {
    let path = format!(
        "/v1/instances/{}?project={}",
        urlencode(&id),
        urlencode(&project)
    );
    let i = match ctx.api.get(&path).await {
        Ok(i) => i,
        Err(p) => return ctx.problem(&p),
    };
    let rows: Vec<(&str, String)> = vec![
        ("ID", s(&i, "id").to_owned()),
        (ctx.t(Msg::State), s(&i, "state").to_owned()),
        (ctx.t(Msg::Flavor), s(&i, "flavor").to_owned()),
        (ctx.t(Msg::Image), s(&i, "image").to_owned()),
        (ctx.t(Msg::Region), s(&i, "region").to_owned()),
        (
            ctx.t(Msg::Host),
            i["node"].as_str().unwrap_or("—").to_owned(),
        ),
        ("vCPU", i["vcpus"].to_string()),
        ("MiB", i["memory_mib"].to_string()),
        (ctx.t(Msg::Created), s(&i, "created_at").to_owned()),
    ];
    ctx.page_titled(
        s(&i, "name"),
        html! {
            h1 { (s(&i, "name")) }
            dl #instance {
                @for (k, v) in &rows { dt { (k) } dd { (v) } }
            }
            @if let Some(msg) = i["status_message"].as_str() { p.muted { (msg) } }
            p {
                a.button.danger href={ "/console/projects/" (project) "/instances/" (id) "/delete" } id="delete" { (ctx.t(Msg::Delete)) }
                " "
                a href={ "/console/projects/" (project) } { (ctx.t(Msg::Back)) }
            }
        },
    )
}

/// "Delete this instance?": says what will happen, asks to confirm.
pub async fn confirm_delete(ctx: Ctx, Path((project, id)): Path<(String, String)>) -> Response {
    let path = format!(
        "/v1/instances/{}?project={}",
        urlencode(&id),
        urlencode(&project)
    );
    let i = match ctx.api.get(&path).await {
        Ok(i) => i,
        Err(p) => return ctx.problem(&p),
    };
    ctx.page(
        Msg::DeleteInstance,
        html! {
            h1 { (ctx.t(Msg::DeleteInstance)) }
            p { strong { (s(&i, "name")) } " (" (s(&i, "flavor")) ", " (s(&i, "region")) ")" }
            p.problem { (ctx.t(Msg::DeleteWarning)) }
            form.inline method="post" action={ "/console/projects/" (project) "/instances/" (id) "/delete" } {
                (ctx.csrf_field())
                button.danger type="submit" id="confirm-delete" { (ctx.t(Msg::Delete)) }
            }
            " "
            a href={ "/console/projects/" (project) "/instances/" (id) } { (ctx.t(Msg::Cancel)) }
        },
    )
}

pub async fn delete_instance(ctx: Ctx, Path((project, id)): Path<(String, String)>) -> Response {
    let path = format!(
        "/v1/instances/{}?project={}",
        urlencode(&id),
        urlencode(&project)
    );
    match ctx.api.call(Method::DELETE, &path, None).await {
        Ok(_) => done(
            &format!("/console/projects/{project}"),
            Msg::NoticeInstanceDeleted,
        ),
        Err(p) => ctx.problem(&p),
    }
}

/// A project's API keys; a form for a new one.
pub async fn keys(ctx: Ctx, Path(project): Path<String>) -> Response {
    let keys = match ctx
        .api
        .get(&format!(
            "/v1/projects/{}/keys?limit=1000",
            urlencode(&project)
        ))
        .await
    {
        Ok(k) => k,
        Err(p) => return ctx.problem(&p),
    };
    keys_page(&ctx, &project, &keys, None)
}

fn keys_page(ctx: &Ctx, project: &str, keys: &Value, new_token: Option<&str>) -> Response {
    ctx.page(
        Msg::ApiKeys,
        html! {
            h1 { (ctx.t(Msg::ApiKeys)) }
            p { a href={ "/console/projects/" (project) } { (ctx.t(Msg::Back)) } }
            @if let Some(token) = new_token {
                div.card.secret {
                    p { strong { (ctx.t(Msg::KeyShownOnce)) } }
                    code #new-key { (token) }
                }
            }
            div.card #rate-limit {
                p {
                    strong { (ctx.t(Msg::RateLimit)) ": " }
                    @match keys["rate_limit_per_hour"].as_u64() {
                        Some(0) | None => { (ctx.t(Msg::Unlimited)) }
                        Some(n) => { (n) " " (ctx.t(Msg::PerHour)) }
                    }
                    " ("
                    @if keys["rate_limit_source"] == "organisation" { (ctx.t(Msg::SetByOrganisation)) } @else { (ctx.t(Msg::DefaultLimit)) }
                    ")"
                }
                p.muted { (ctx.t(Msg::RateLimitKeys)) }
            }
            table #keys {
                thead { tr { th { (ctx.t(Msg::Name)) } th { "ID" } th { (ctx.t(Msg::Role)) } th { (ctx.t(Msg::Expires)) } th { (ctx.t(Msg::State)) } th {} } }
                tbody {
                    @for k in keys["keys"].as_array().into_iter().flatten() {
                        @let revoked = k["revoked_at"].is_string();
                        tr {
                            td { (s(k, "name")) }
                            td.mono { (s(k, "id")) }
                            td { (s(k, "role")) }
                            td { (k["expires_at"].as_str().unwrap_or(ctx.t(Msg::Never))) }
                            td { @if revoked { (ctx.t(Msg::Revoked)) } @else { (ctx.t(Msg::Active)) } }
                            td {
                                @if !revoked {
                                    form.inline method="post" action={ "/console/projects/" (project) "/keys/" (s(k, "id")) "/revoke" } {
                                        (ctx.csrf_field())
                                        button.link.danger type="submit" { (ctx.t(Msg::Revoke)) }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            h2 { (ctx.t(Msg::NewKey)) }
            form.card.row method="post" action={ "/console/projects/" (project) "/keys" } {
                (ctx.csrf_field())
                label { (ctx.t(Msg::Name)) input type="text" name="name" id="key-name" required; }
                label { (ctx.t(Msg::Role))
                    select name="role" id="key-role" {
                        option value="project-member" { "project-member" }
                        option value="project-viewer" { "project-viewer" }
                        option value="project-admin" { "project-admin" }
                    }
                }
                label { (ctx.t(Msg::ExpiresInDays)) input type="number" name="expires_in_days" min="1" max="3650"; }
                button type="submit" id="create-key" { (ctx.t(Msg::Create)) }
            }
        },
    )
}

#[derive(Debug, Deserialize)]
pub struct NewKey {
    name: String,
    role: String,
    #[serde(default)]
    expires_in_days: String,
}

pub async fn create_key(ctx: Ctx, Path(project): Path<String>, Form(f): Form<NewKey>) -> Response {
    let days: Option<u32> = f.expires_in_days.trim().parse().ok();
    let path = format!("/v1/projects/{}/keys", urlencode(&project));
    let made = match ctx
        .api
        .post(
            &path,
            json!({"name": f.name, "role": f.role, "expires_in_days": days}),
        )
        .await
    {
        Ok(k) => k,
        Err(p) => return ctx.problem(&p),
    };
    match ctx.api.get(&format!("{path}?limit=1000")).await {
        Ok(keys) => keys_page(&ctx, &project, &keys, Some(s(&made, "token"))),
        Err(p) => ctx.problem(&p),
    }
}

pub async fn revoke_key(ctx: Ctx, Path((project, key)): Path<(String, String)>) -> Response {
    let path = format!(
        "/v1/projects/{}/keys/{}",
        urlencode(&project),
        urlencode(&key)
    );
    match ctx.api.call(Method::DELETE, &path, None).await {
        Ok(_) => done(
            &format!("/console/projects/{project}/keys"),
            Msg::NoticeKeyRevoked,
        ),
        Err(p) => ctx.problem(&p),
    }
    .into_response()
}

/// "Delete this project?": says what happens to its keys and instances.
pub async fn confirm_delete_project(ctx: Ctx, Path(id): Path<String>) -> Response {
    let project = match ctx
        .api
        .get(&format!("/v1/projects/{}", urlencode(&id)))
        .await
    {
        Ok(p) => p,
        Err(p) => return ctx.problem(&p),
    };
    ctx.page(
        Msg::DeleteProject,
        html! {
            h1 { (ctx.t(Msg::DeleteProject)) }
            p { strong { (s(&project, "name")) } " (" (id) ")" }
            p.problem { (ctx.t(Msg::DeleteProjectWarning)) }
            form.inline method="post" action={ "/console/projects/" (id) "/delete" } {
                (ctx.csrf_field())
                button.danger type="submit" id="confirm-delete-project" { (ctx.t(Msg::Delete)) }
            }
            " "
            a href={ "/console/projects/" (id) } { (ctx.t(Msg::Cancel)) }
        },
    )
}

pub async fn delete_project(ctx: Ctx, Path(id): Path<String>) -> Response {
    let path = format!("/v1/projects/{}", urlencode(&id));
    match ctx.api.call(Method::DELETE, &path, None).await {
        Ok(_) => done("/console", Msg::NoticeProjectDeleted),
        Err(p) => ctx.problem(&p),
    }
}

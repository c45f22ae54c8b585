//! The NOC's pages (operators, logged in with two-step verification — the API says so): the
//! fleet (`/noc`: per datacenter hosts by state, GPU tension by model, CPU and memory
//! allocated and held against capacity, work waiting, silent datacenters, Raft; live by
//! server-sent events; the hosts matching a search, densely) and a host (`/noc/hosts/{id}`:
//! its GPUs and what runs there, live, and who it belongs to; cordon, drain with a deadline,
//! maintenance, uncordon — each after a page that says what will happen to whom).

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, Query};
use axum::http::Method;
use axum::response::Response;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use maud::{Markup, html};
use serde_json::{Value, json};

use crate::auth_pages::urlencode;
use crate::client::{items, s};
use crate::i18n::{Lang, Msg};
use crate::layout::Ctx;

#[derive(Debug, Default, Clone, serde::Deserialize)]
pub struct FleetQuery {
    #[serde(default)]
    region: Option<String>,
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    q: Option<String>,
}

impl FleetQuery {
    fn api_path(&self) -> String {
        let mut parts = Vec::new();
        for (k, v) in [
            ("region", &self.region),
            ("state", &self.state),
            ("q", &self.q),
        ] {
            if let Some(v) = v.as_deref().filter(|v| !v.is_empty()) {
                parts.push(format!("{k}={}", urlencode(v)));
            }
        }
        if parts.is_empty() {
            "/v1/noc/fleet".into()
        } else {
            format!("/v1/noc/fleet?{}", parts.join("&"))
        }
    }
}

fn n(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

fn pct(part: u64, whole: u64) -> String {
    if whole == 0 {
        "–".into()
    } else {
        format!("{:.0} %", part as f64 * 100.0 / whole as f64)
    }
}

/// The per-datacenter cards and Raft's line (sent again by the events when they change).
pub fn summary(lang: Lang, v: &Value) -> Markup {
    let raft = &v["raft"];
    html! {
        p #raft data-state=(if n(&raft["leader"]) == 0 { "no-leader" } else { "ok" }) {
            "Raft: " (lang.t(Msg::Term)) " " (raft["term"]) " · " (lang.t(Msg::Leader)) " "
            @if n(&raft["leader"]) == 0 { strong.danger { (lang.t(Msg::NoLeader)) } } @else { (raft["leader"]) }
            " · " (lang.t(Msg::Voters)) " " (items(raft, "voters").len()) " · commit " (raft["commit_index"])
            @let lagging: Vec<String> = items(raft, "lagging").iter().map(|v| v.to_string()).collect();
            @if !lagging.is_empty() { " · " span.st.st-major-outage #lagging { (lang.t(Msg::Lagging)) " " (lagging.join(", ")) } }
        }
        div.cards {
            @for r in items(v, "regions") {
                div.card.region data-region=(s(&r, "region")) {
                    h3 { (s(&r, "region")) @if r["silent"] == true { " " span.st.st-major-outage { (lang.t(Msg::Silent)) } } }
                    p {
                        @for (st, count) in r["hosts"].as_object().into_iter().flatten() {
                            span class={ "st st-host-" (st) } data-hosts=(st) { (st) " " (count) } " "
                        }
                        @if n(&r["suspect"]) > 0 { span.st.st-degraded { "suspect " (r["suspect"]) } }
                    }
                    p { "GPU " (lang.t(Msg::Tension)) " " strong.tension { (format!("{:.0} %", r["gpu_tension"].as_f64().unwrap_or(0.0) * 100.0)) } }
                    @for (model, by_state) in r["gpus"].as_object().into_iter().flatten() {
                        p.muted { (model) ": "
                            @for (st, count) in by_state.as_object().into_iter().flatten() { (st) " " (count) " · " }
                        }
                    }
                    p.muted {
                        "vCPU " (pct(n(&r["vcpus_allocated"]), n(&r["vcpus_capacity"]))) " (" (lang.t(Msg::Held)) " " (pct(n(&r["vcpus_held"]), n(&r["vcpus_capacity"]))) ")"
                        " · RAM " (pct(n(&r["memory_allocated_mib"]), n(&r["memory_capacity_mib"]))) " (" (lang.t(Msg::Held)) " " (pct(n(&r["memory_held_mib"]), n(&r["memory_capacity_mib"]))) ")"
                    }
                    @let pending = r["pending"].as_object().cloned().unwrap_or_default();
                    @if !pending.is_empty() {
                        p { (lang.t(Msg::Waiting)) ": "
                            @for (kind, count) in &pending { (kind) " " (count) " · " }
                            (lang.t(Msg::Longest)) " " (n(&r["oldest_pending_s"]) / 60) " min"
                        }
                    }
                }
            }
        }
    }
}

/// `GET /noc`.
pub async fn fleet(ctx: Ctx, Query(q): Query<FleetQuery>) -> Response {
    let v = match ctx.api.get(&q.api_path()).await {
        Ok(v) => v,
        Err(p) => return ctx.problem(&p),
    };
    ctx.page(Msg::Fleet, fleet_body(ctx.lang, &v, &q))
}

/// The fleet page's body for the API's fleet view `v` (pure: the benchmark renders it too).
pub fn fleet_body(lang: Lang, v: &Value, q: &FleetQuery) -> Markup {
    let v = v.clone();
    let regions: Vec<String> = items(&v, "regions")
        .iter()
        .map(|r| s(r, "region").to_owned())
        .collect();
    let sel = |a: &Option<String>, b: &str| a.as_deref() == Some(b);
    {
        html! {
            h1 { (lang.t(Msg::Fleet)) }
            div #summary data-events="/noc/events" { (summary(lang, &v)) }
            form.card.row method="get" action="/noc" #host-search {
                label { (lang.t(Msg::Search)) input type="search" name="q" id="q" value=(q.q.clone().unwrap_or_default()) placeholder="gpu-par-0042"; }
                label { (lang.t(Msg::Region)) select name="region" id="filter-region" {
                    option value="" { "–" }
                    @for r in &regions { option value=(r) selected[sel(&q.region, r)] { (r) } }
                } }
                label { (lang.t(Msg::State)) select name="state" id="filter-state" {
                    option value="" { "–" }
                    @for st in ["ready", "cordoned", "draining", "maintenance", "down", "suspect"] {
                        option value=(st) selected[sel(&q.state, st)] { (st) }
                    }
                } }
                button type="submit" id="search" { (lang.t(Msg::Search)) }
            }
            p.muted #matching { (lang.t(Msg::Showing)) " " (items(&v, "hosts").len()) " / " (v["matching"]) }
            table.dense #hosts {
                thead { tr {
                    th { (lang.t(Msg::Host)) } th { (lang.t(Msg::Region)) } th { (lang.t(Msg::State)) }
                    th { "GPU" } th { "vCPU" } th { (lang.t(Msg::Workloads)) }
                } }
                tbody {
                    @for h in items(&v, "hosts") {
                        tr data-node=(s(&h, "id")) data-state=(s(&h, "state")) {
                            td { a href={ "/noc/hosts/" (s(&h, "id")) } { (s(&h, "hostname")) } }
                            td { (s(&h, "region")) }
                            td { span class={ "state state-" (s(&h, "state")) } { (s(&h, "state")) }
                                 @if let Some(l) = h["liveness"].as_str().filter(|l| *l != "alive") { " " span.st.st-degraded { (l) } } }
                            td { (h["gpus_bound"]) " / " (h["gpus"]) @if n(&h["gpus_unhealthy"]) > 0 { " " span.st.st-major-outage { (h["gpus_unhealthy"]) " ✗" } } }
                            td { (h["vcpus_allocated"]) " / " (h["vcpus"]) }
                            td { (h["instances"]) }
                        }
                    }
                }
            }
            script src="/assets/live.js" {}
        }
    }
}

/// `GET /noc/events`: the summary whenever it changes (checked every 2 s).
pub async fn events(ctx: Ctx) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let (api, lang) = (ctx.api.clone(), ctx.lang);
    let stream = futures::stream::unfold(None::<String>, move |last| {
        let api = api.clone();
        async move {
            loop {
                if let Ok(v) = api.get("/v1/noc/fleet?q=%00").await {
                    let html = summary(lang, &v).into_string();
                    if last.as_deref() != Some(html.as_str()) {
                        let event = Event::default().event("html").data(html.clone());
                        return Some((Ok(event), Some(html)));
                    }
                }
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

/// `GET /noc/hosts/{id}`.
pub async fn host(ctx: Ctx, Path(id): Path<String>) -> Response {
    let node = match ctx.api.get(&format!("/v1/nodes/{}", urlencode(&id))).await {
        Ok(v) => v,
        Err(p) => return ctx.problem(&p),
    };
    let w = match ctx
        .api
        .get(&format!("/v1/nodes/{}/workloads", urlencode(&id)))
        .await
    {
        Ok(v) => v,
        Err(p) => return ctx.problem(&p),
    };
    let events = match ctx
        .api
        .get(&format!(
            "/v1/audit-events?resource={}&limit=20",
            urlencode(&format!("node/{id}"))
        ))
        .await
    {
        Ok(v) => v,
        Err(p) => return ctx.problem(&p),
    };
    ctx.page_titled(
        s(&node, "hostname"),
        host_body(ctx.lang, &id, &node, &w, &events),
    )
}

/// A host page's body for the API's node `node`, its workloads `w` and its audit events
/// `events` (pure: the benchmark renders it too).
pub fn host_body(lang: Lang, id: &str, node: &Value, w: &Value, events: &Value) -> Markup {
    let state = s(node, "state");
    {
        html! {
            h1 { (s(node, "hostname")) " " span class={ "state state-" (state) } #host-state data-state=(state) { (state) } }
            p { a href="/noc" { (lang.t(Msg::Back)) } }
            p.muted { (s(node, "region")) " · " (s(node, "cpu_model")) " · " (node["cpu_threads"]) " threads · "
                (node["used_vcpus"]) " / " (node["allocatable_vcpus"]) " vCPU · agent " (s(node, "agent_version"))
                @if node["connected"] == true { " · " (lang.t(Msg::Connected)) } @else { " · " strong { (lang.t(Msg::NotConnected)) } } }
            @if let Some(reason) = node["state_reason"].as_str() { p #state-reason { (reason) } }
            @if let Some(d) = node["drain_deadline"].as_str() { p #drain-deadline { (lang.t(Msg::Deadline)) " " (d) } }
            h2 { (lang.t(Msg::Affected)) }
            p #affected { strong { (w["organisations"]) } " " (lang.t(Msg::Organisations)) " — "
                (w["customers"]) " " (lang.t(Msg::Customers)) ", " (w["households"]) " " (lang.t(Msg::Households))
                " · " (w["sessions"]) " " (lang.t(Msg::GameSessions)) " · " (w["spot"]) " spot · " (w["warm"]) " warm" }
            h2 { (lang.t(Msg::Actions)) }
            p.actions {
                @for (action, label) in [("cordoned", Msg::Cordon), ("draining", Msg::Drain), ("maintenance", Msg::Maintenance), ("ready", Msg::Uncordon)] {
                    @if action != state {
                        a.button href={ "/noc/hosts/" (id) "/confirm?action=" (action) } id={ "act-" (action) } { (lang.t(label)) } " "
                    }
                }
            }
            h2 { "GPU" }
            table.dense #gpus data-events={ "/noc/hosts/" (urlencode(id)) "/events?part=gpus" } {
                thead { tr { th { "PCI" } th { (lang.t(Msg::Model)) } th { (lang.t(Msg::State)) } th { "°C" } th { "W" } th { "%" } th { "ECC" } th { "XID" } } }
                tbody { (gpu_rows(node)) }
            }
            @let conditions = items(node, "conditions");
            @if !conditions.is_empty() {
                ul #conditions { @for c in &conditions { li { strong { (s(c, "kind")) } " " (s(c, "subject")) ": " (s(c, "message")) } } }
            }
            h2 { (lang.t(Msg::Workloads)) }
            table.dense #workloads data-events={ "/noc/hosts/" (urlencode(id)) "/events?part=workloads" } {
                thead { tr { th { (lang.t(Msg::Organisation)) } th { (lang.t(Msg::Kind)) } th { (lang.t(Msg::Name)) } th { (lang.t(Msg::State)) } th { "market" } th { "GPU" } } }
                tbody { (workload_rows(lang, w)) }
            }
            h2 { (lang.t(Msg::HostEvents)) }
            p.muted { (lang.t(Msg::HostEventsText)) }
            table.dense #events {
                thead { tr { th { (lang.t(Msg::Time)) } th { (lang.t(Msg::Actor)) } th { (lang.t(Msg::Action)) } th { (lang.t(Msg::Event)) } th { (lang.t(Msg::Outcome)) } } }
                tbody { @for e in items(events, "events") {
                    tr data-action=(s(&e, "action")) {
                        td.mono { (vmcloud_scheduler::clock::rfc3339(e["at_ms"].as_i64().unwrap_or(0))) }
                        td.mono { (s(&e, "actor")) } td { (s(&e, "action")) } td { (s(&e, "detail")) } td { (s(&e, "outcome")) }
                    }
                } }
            }
            script src="/assets/live.js" {}
        }
    }
}

/// A host's GPU rows: each device with its last telemetry sample.
fn gpu_rows(node: &Value) -> Markup {
    let samples = items(&node["telemetry"], "gpus");
    html! {
        @for g in items(node, "gpus") {
            @let t = samples.iter().find(|t| t["pci_address"] == g["pci_address"]).cloned().unwrap_or_default();
            tr data-gpu=(s(&g, "pci_address")) { td { (s(&g, "pci_address")) } td { (s(&g, "model")) }
                td { @if g["bound"] == true { "bound" } @else { "free" } @if g["mig"] == true { " · MIG" } }
                td.temperature { (t["temperature_c"].as_u64().map_or("–".into(), |v| v.to_string())) }
                td { (t["power_w"].as_f64().map_or("–".into(), |v| format!("{v:.0}"))) }
                td { (t["utilization_pct"].as_u64().map_or("–".into(), |v| v.to_string())) }
                td.ecc { (t["ecc_uncorrected"].as_u64().map_or("–".into(), |v| v.to_string())) }
                td.xid { (t["xid_errors"].as_u64().map_or("–".into(), |v| v.to_string()))
                    @if let Some(last) = t["last_xid"].as_u64() { " (last " (last) ")" } } }
        }
    }
}

/// A host's workload rows: what runs there and whose it is (a row saying so when nothing
/// does: an event with no data is never delivered).
fn workload_rows(lang: Lang, w: &Value) -> Markup {
    let rows = items(w, "workloads");
    html! {
        @if rows.is_empty() { tr.empty { td colspan="6" { (lang.t(Msg::NothingRunsHere)) } } }
        @for x in rows {
            tr data-instance=(s(&x, "id")) {
                td { (s(&x, "organisation_name")) " " span.muted { (s(&x, "organisation_kind")) } }
                td { (s(&x, "kind")) } td { (s(&x, "name")) } td { (s(&x, "state")) } td { (s(&x, "market")) } td { (x["gpus"]) }
            }
        }
    }
}

#[derive(Debug, serde::Deserialize)]
pub struct PartQuery {
    part: String,
}

/// `GET /noc/hosts/{id}/events?part=gpus|workloads`: that table's rows whenever they change
/// (checked every 2 s).
pub async fn host_events(
    ctx: Ctx,
    Path(id): Path<String>,
    Query(q): Query<PartQuery>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let (api, lang) = (ctx.api.clone(), ctx.lang);
    let workloads = q.part == "workloads";
    let path = if workloads {
        format!("/v1/nodes/{}/workloads", urlencode(&id))
    } else {
        format!("/v1/nodes/{}", urlencode(&id))
    };
    let stream = futures::stream::unfold(None::<String>, move |last| {
        let (api, path) = (api.clone(), path.clone());
        async move {
            loop {
                if let Ok(v) = api.get(&path).await {
                    let rows = if workloads {
                        workload_rows(lang, &v)
                    } else {
                        gpu_rows(&v)
                    };
                    let html = rows.into_string();
                    if last.as_deref() != Some(html.as_str()) {
                        let event = Event::default().event("rows").data(html.clone());
                        return Some((Ok(event), Some(html)));
                    }
                }
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

#[derive(Debug, serde::Deserialize)]
pub struct ActionQuery {
    action: String,
}

/// What an action does, in words, with the host's workloads counted.
fn consequences(lang: Lang, action: &str, w: &Value) -> String {
    let (orgs, customers, households, sessions, spot, warm) = (
        n(&w["organisations"]),
        n(&w["customers"]),
        n(&w["households"]),
        n(&w["sessions"]),
        n(&w["spot"]),
        n(&w["warm"]),
    );
    let who = format!(
        "{orgs} organisations ({customers} {}, {households} {})",
        lang.t(Msg::Customers),
        lang.t(Msg::Households)
    );
    match (action, lang) {
        ("cordoned", Lang::En) => format!(
            "No new placements on this host. What runs there stays: nobody is affected now ({who} have work here)."
        ),
        ("cordoned", Lang::Fr) => format!(
            "Plus aucun placement sur cet hôte. Ce qui y tourne reste : personne n'est touché maintenant ({who} y ont du travail)."
        ),
        ("draining", Lang::En) => format!(
            "The host empties: no new placements; its {spot} spot workloads get their notice now and its {warm} warm game VMs leave; the owners of the rest — {who} — are told the deadline; {sessions} game sessions end by it."
        ),
        ("draining", Lang::Fr) => format!(
            "L'hôte se vide : plus de placements ; ses {spot} charges spot reçoivent leur préavis maintenant et ses {warm} VM de jeu en attente partent ; les propriétaires du reste — {who} — sont prévenus de l'échéance ; {sessions} sessions de jeu s'arrêtent avant."
        ),
        ("maintenance", Lang::En) => format!(
            "Planned work: no new placements; the owners of what runs here — {who} — are told."
        ),
        ("maintenance", Lang::Fr) => format!(
            "Travaux prévus : plus de placements ; les propriétaires de ce qui tourne ici — {who} — sont prévenus."
        ),
        (_, Lang::En) => "Back to ready: the host takes placements again.".into(),
        (_, Lang::Fr) => "Retour en service : l'hôte reçoit de nouveau des placements.".into(),
    }
}

/// `GET /noc/hosts/{id}/confirm?action=`: what the action will do to whom, then do it.
pub async fn confirm(ctx: Ctx, Path(id): Path<String>, Query(a): Query<ActionQuery>) -> Response {
    let w = match ctx
        .api
        .get(&format!("/v1/nodes/{}/workloads", urlencode(&id)))
        .await
    {
        Ok(v) => v,
        Err(p) => return ctx.problem(&p),
    };
    ctx.page(
        Msg::Confirm,
        html! {
            h1 { (ctx.t(Msg::Confirm)) ": " (a.action) }
            p #consequences { (consequences(ctx.lang, &a.action, &w)) }
            form.card method="post" action={ "/noc/hosts/" (id) "/action" } {
                (ctx.csrf_field())
                input type="hidden" name="action" value=(a.action);
                @if a.action != "ready" {
                    label { (ctx.t(Msg::Reason)) input type="text" name="reason" id="reason" maxlength="200" required; }
                }
                @if a.action == "draining" {
                    label { (ctx.t(Msg::Deadline)) select name="deadline_h" id="deadline" {
                        @for h in [1, 2, 4, 24] { option value=(h) selected[h == 2] { (h) " h" } }
                    } }
                }
                button.danger type="submit" id="confirm" { (ctx.t(Msg::Confirm)) }
            }
            p { a href={ "/noc/hosts/" (id) } { (ctx.t(Msg::Back)) } }
        },
    )
}

#[derive(Debug, serde::Deserialize)]
pub struct ActionForm {
    action: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    deadline_h: Option<u64>,
}

/// `POST /noc/hosts/{id}/action`.
pub async fn act(
    ctx: Ctx,
    Path(id): Path<String>,
    axum::Form(f): axum::Form<ActionForm>,
) -> Response {
    let mut body = json!({"state": f.action});
    if !f.reason.trim().is_empty() {
        body["reason"] = f.reason.trim().into();
    }
    if f.action == "draining" {
        body["drain_deadline_s"] = (f.deadline_h.unwrap_or(2) * 3600).into();
    }
    match ctx
        .api
        .call(
            Method::PATCH,
            &format!("/v1/nodes/{}", urlencode(&id)),
            Some(body),
        )
        .await
    {
        Ok(_) => crate::layout::done(&format!("/noc/hosts/{id}"), Msg::NoticeSaved),
        Err(p) => ctx.problem(&p),
    }
}

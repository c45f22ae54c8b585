//! A project's networks in the console: its private networks (make, delete), its floating IPs
//! (take, assign, move, unassign, give back, reverse DNS) and its firewalls (rules written one a
//! line as the CLI writes them, attached to and detached from instances).

use axum::Form;
use axum::extract::Path;
use axum::http::Method;
use axum::response::Response;
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::{Value, json};
use vmcloud_scheduler::firewalls::api::{RuleBody, parse_rule, rule_text};

use crate::auth_pages::urlencode;
use crate::client::{ApiProblem, items, s};
use crate::i18n::Msg;
use crate::layout::{Ctx, done};

fn scoped(path: &str, project: &str) -> String {
    let sep = if path.contains('?') { '&' } else { '?' };
    format!("{path}{sep}project={}", urlencode(project))
}

/// A select of the project's instances (id → name and private address).
fn instance_select(ctx: &Ctx, name: &str, instances: &[Value], region: Option<&str>) -> Markup {
    html! {
        select name=(name) required {
            @for i in instances.iter().filter(|i| region.is_none_or(|r| i["region"] == r)) {
                option value=(s(i, "id")) {
                    (s(i, "name")) " (" (i["private_ipv4"].as_str().unwrap_or("—")) ")"
                }
            }
        }
        @if instances.is_empty() { span.muted { (ctx.t(Msg::NoInstances)) } }
    }
}

/// `/console/projects/{project}/networks`: networks and floating IPs.
pub async fn networks(ctx: Ctx, Path(project): Path<String>) -> Response {
    let (nets, fips, instances, catalog) = match (
        ctx.api
            .get(&scoped("/v1/networks?limit=1000", &project))
            .await,
        ctx.api
            .get(&scoped("/v1/floating-ips?limit=1000", &project))
            .await,
        ctx.api
            .get(&scoped("/v1/instances?limit=1000", &project))
            .await,
        ctx.api.get("/v1/catalog").await,
    ) {
        (Ok(n), Ok(f), Ok(i), Ok(c)) => (n, f, i, c),
        (Err(p), ..) | (_, Err(p), ..) | (_, _, Err(p), _) | (.., Err(p)) => {
            return ctx.problem(&p);
        }
    };
    let instances = items(&instances, "instances");
    let regions: Vec<(String, bool)> = catalog["regions"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(code, r)| {
            (
                code.clone(),
                r["public_ipv4"].as_array().is_some_and(|p| !p.is_empty()),
            )
        })
        .collect();
    let base = format!("/console/projects/{project}/networks");
    ctx.page(
        Msg::Networks,
        html! {
            h1 { (ctx.t(Msg::Networks)) }
            p {
                a href={ "/console/projects/" (project) } { (ctx.t(Msg::Back)) }
                " · " a href={ "/console/projects/" (project) "/firewalls" } id="firewalls-link" { (ctx.t(Msg::Firewalls)) }
            }
            p.muted { (ctx.t(Msg::NetworksText)) }
            @let list = items(&nets, "networks");
            @if list.is_empty() {
                p #no-networks { (ctx.t(Msg::NoNetworks)) }
            } @else {
                table #networks {
                    thead { tr {
                        th { (ctx.t(Msg::Name)) } th { (ctx.t(Msg::Subnet)) } th { (ctx.t(Msg::Region)) }
                        th { "VNI" } th { (ctx.t(Msg::Addresses)) } th {}
                    } }
                    tbody {
                        @for n in &list {
                            tr data-id=(s(n, "id")) {
                                td { (s(n, "name")) @if n["default"] == true { " " span.muted { "(" (ctx.t(Msg::DefaultNetwork)) ")" } } br; span.mono.muted { (s(n, "id")) } }
                                td.mono { (s(n, "subnet")) }
                                td { (n["region"].as_str().unwrap_or(ctx.t(Msg::AllRegions))) }
                                td.mono { (n["vni"]) }
                                td { (n["addresses_used"]) " / " (n["addresses_total"]) }
                                td {
                                    form.inline method="post" action={ (base) "/" (s(n, "id")) "/delete" } {
                                        (ctx.csrf_field())
                                        button.link.danger type="submit" { (ctx.t(Msg::Delete)) }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            h2 { (ctx.t(Msg::NewNetwork)) }
            form.card.row method="post" action=(base) {
                (ctx.csrf_field())
                label { (ctx.t(Msg::Name)) input type="text" name="name" id="network-name" required maxlength="63"; }
                label { (ctx.t(Msg::Subnet)) input type="text" name="subnet" id="network-subnet" placeholder="10.20.0.0/24" title=(ctx.t(Msg::SubnetHint)); }
                label { (ctx.t(Msg::Region))
                    select name="region" id="network-region" {
                        option value="" { (ctx.t(Msg::AllRegions)) }
                        @for (code, _) in &regions { option value=(code) { (code) } }
                    }
                }
                button type="submit" id="create-network" { (ctx.t(Msg::NewNetwork)) }
            }
            h2 { (ctx.t(Msg::FloatingIps)) }
            p.muted { (ctx.t(Msg::FloatingIpsText)) }
            @let fips = items(&fips, "floating_ips");
            @if fips.is_empty() {
                p { (ctx.t(Msg::NoFloatingIps)) }
            } @else {
                table #floating-ips {
                    thead { tr {
                        th { (ctx.t(Msg::Address)) } th { (ctx.t(Msg::Region)) } th { (ctx.t(Msg::Instance)) }
                        th { (ctx.t(Msg::ReverseDns)) } th {}
                    } }
                    tbody {
                        @for f in &fips {
                            @let id = s(f, "id");
                            tr data-id=(id) {
                                td.mono { (s(f, "address")) }
                                td { (s(f, "region")) }
                                td.mono {
                                    @if let Some(i) = f["instance"].as_str() {
                                        (i)
                                        form.inline method="post" action={ (base) "/floating/" (id) "/unassign" } {
                                            (ctx.csrf_field())
                                            " " button.link type="submit" { (ctx.t(Msg::Unassign)) }
                                        }
                                    }
                                    form.inline method="post" action={ (base) "/floating/" (id) "/assign" } {
                                        (ctx.csrf_field())
                                        (instance_select(&ctx, "instance", &instances, f["region"].as_str()))
                                        button.link type="submit" { (ctx.t(Msg::Assign)) }
                                    }
                                }
                                td {
                                    form.inline method="post" action={ (base) "/floating/" (id) "/rdns" } {
                                        (ctx.csrf_field())
                                        input type="hidden" name="address" value=(s(f, "address"));
                                        input type="text" name="name" value=(s(f, "reverse_dns")) placeholder="mail.example.org";
                                        button.link type="submit" { (ctx.t(Msg::Save)) }
                                    }
                                }
                                td {
                                    form.inline method="post" action={ (base) "/floating/" (id) "/delete" } {
                                        (ctx.csrf_field())
                                        button.link.danger type="submit" { (ctx.t(Msg::Release)) }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            form.card.row method="post" action={ (base) "/floating" } {
                (ctx.csrf_field())
                label { (ctx.t(Msg::Region))
                    select name="region" id="fip-region" {
                        @for (code, public) in &regions { @if *public { option value=(code) { (code) } } }
                    }
                }
                button type="submit" id="take-fip" { (ctx.t(Msg::TakeFloatingIp)) }
            }
        },
    )
}

fn back(
    ctx: &Ctx,
    project: &str,
    page: &str,
    notice: Msg,
    r: Result<Value, ApiProblem>,
) -> Response {
    match r {
        Ok(_) => done(&format!("/console/projects/{project}/{page}"), notice),
        Err(p) => ctx.problem(&p),
    }
}

#[derive(Debug, Deserialize)]
pub struct NetworkForm {
    name: String,
    #[serde(default)]
    subnet: String,
    #[serde(default)]
    region: String,
}

pub async fn create_network(
    ctx: Ctx,
    Path(project): Path<String>,
    Form(f): Form<NetworkForm>,
) -> Response {
    let mut body = json!({"name": f.name.trim()});
    if !f.subnet.trim().is_empty() {
        body["subnet"] = f.subnet.trim().into();
    }
    if !f.region.is_empty() {
        body["region"] = f.region.into();
    }
    let r = ctx.api.post(&scoped("/v1/networks", &project), body).await;
    back(&ctx, &project, "networks", Msg::NoticeNetworkCreated, r)
}

pub async fn delete_network(ctx: Ctx, Path((project, id)): Path<(String, String)>) -> Response {
    let path = scoped(&format!("/v1/networks/{}", urlencode(&id)), &project);
    let r = ctx
        .api
        .call(Method::DELETE, &path, None)
        .await
        .map(|a| a.body);
    back(&ctx, &project, "networks", Msg::NoticeNetworkDeleted, r)
}

#[derive(Debug, Deserialize)]
pub struct RegionForm {
    region: String,
}

pub async fn take_floating(
    ctx: Ctx,
    Path(project): Path<String>,
    Form(f): Form<RegionForm>,
) -> Response {
    let r = ctx
        .api
        .post(
            &scoped("/v1/floating-ips", &project),
            json!({"region": f.region}),
        )
        .await;
    back(&ctx, &project, "networks", Msg::NoticeFloatingIpTaken, r)
}

#[derive(Debug, Deserialize)]
pub struct InstanceForm {
    instance: String,
}

pub async fn assign_floating(
    ctx: Ctx,
    Path((project, id)): Path<(String, String)>,
    Form(f): Form<InstanceForm>,
) -> Response {
    let path = scoped(
        &format!("/v1/floating-ips/{}/assign", urlencode(&id)),
        &project,
    );
    let r = ctx.api.post(&path, json!({"instance": f.instance})).await;
    back(&ctx, &project, "networks", Msg::NoticeFloatingIpChanged, r)
}

pub async fn unassign_floating(ctx: Ctx, Path((project, id)): Path<(String, String)>) -> Response {
    let path = scoped(
        &format!("/v1/floating-ips/{}/unassign", urlencode(&id)),
        &project,
    );
    let r = ctx.api.post(&path, json!({})).await;
    back(&ctx, &project, "networks", Msg::NoticeFloatingIpChanged, r)
}

pub async fn delete_floating(ctx: Ctx, Path((project, id)): Path<(String, String)>) -> Response {
    let path = scoped(&format!("/v1/floating-ips/{}", urlencode(&id)), &project);
    let r = ctx
        .api
        .call(Method::DELETE, &path, None)
        .await
        .map(|a| a.body);
    back(&ctx, &project, "networks", Msg::NoticeFloatingIpChanged, r)
}

#[derive(Debug, Deserialize)]
pub struct RdnsForm {
    address: String,
    #[serde(default)]
    name: String,
}

pub async fn reverse_dns(
    ctx: Ctx,
    Path((project, _id)): Path<(String, String)>,
    Form(f): Form<RdnsForm>,
) -> Response {
    let path = scoped(
        &format!("/v1/reverse-dns/{}", urlencode(&f.address)),
        &project,
    );
    let r = ctx
        .api
        .call(Method::PUT, &path, Some(json!({"name": f.name.trim()})))
        .await
        .map(|a| a.body);
    back(&ctx, &project, "networks", Msg::NoticeSaved, r)
}

/// The rules of a form's text area, one a line; the error names the line.
fn rules_of(text: &str) -> Result<Vec<RuleBody>, String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .enumerate()
        .map(|(n, l)| parse_rule(l).map_err(|e| format!("line {}: {e}", n + 1)))
        .collect()
}

fn bad_rules(ctx: &Ctx, detail: String) -> Response {
    ctx.problem(&ApiProblem {
        status: axum::http::StatusCode::UNPROCESSABLE_ENTITY,
        kind: "invalid-firewall-rule".into(),
        detail,
    })
}

fn rules_text(f: &Value) -> String {
    items(f, "rules")
        .into_iter()
        .filter_map(|r| serde_json::from_value::<RuleBody>(r).ok())
        .map(|r| rule_text(&r))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `/console/projects/{project}/firewalls`.
pub async fn firewalls(ctx: Ctx, Path(project): Path<String>) -> Response {
    let list = match ctx
        .api
        .get(&scoped("/v1/firewalls?limit=1000", &project))
        .await
    {
        Ok(l) => l,
        Err(p) => return ctx.problem(&p),
    };
    let base = format!("/console/projects/{project}/firewalls");
    ctx.page(
        Msg::Firewalls,
        html! {
            h1 { (ctx.t(Msg::Firewalls)) }
            p {
                a href={ "/console/projects/" (project) } { (ctx.t(Msg::Back)) }
                " · " a href={ "/console/projects/" (project) "/networks" } { (ctx.t(Msg::Networks)) }
            }
            p.muted { (ctx.t(Msg::FirewallsText)) }
            @let fws = items(&list, "firewalls");
            @if fws.is_empty() {
                p #no-firewalls { (ctx.t(Msg::NoFirewalls)) }
            } @else {
                table #firewalls {
                    thead { tr { th { (ctx.t(Msg::Name)) } th { (ctx.t(Msg::Rules)) } th { (ctx.t(Msg::Attached)) } } }
                    tbody {
                        @for f in &fws {
                            tr data-id=(s(f, "id")) {
                                td { a href={ (base) "/" (s(f, "id")) } { (s(f, "name")) } br; span.mono.muted { (s(f, "id")) } }
                                td.mono { @for line in rules_text(f).lines() { (line) br; } }
                                td { (items(f, "instances").len()) }
                            }
                        }
                    }
                }
            }
            h2 { (ctx.t(Msg::NewFirewall)) }
            form.card method="post" action=(base) {
                (ctx.csrf_field())
                label { (ctx.t(Msg::Name)) input type="text" name="name" id="firewall-name" required maxlength="63"; }
                label { (ctx.t(Msg::Rules))
                    textarea name="rules" id="firewall-rules" rows="5" placeholder="in tcp 22 203.0.113.0/24\nin tcp 443" {}
                }
                button type="submit" id="create-firewall" { (ctx.t(Msg::NewFirewall)) }
            }
        },
    )
}

#[derive(Debug, Deserialize)]
pub struct FirewallForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    rules: String,
}

pub async fn create_firewall(
    ctx: Ctx,
    Path(project): Path<String>,
    Form(f): Form<FirewallForm>,
) -> Response {
    let rules = match rules_of(&f.rules) {
        Ok(r) => r,
        Err(e) => return bad_rules(&ctx, e),
    };
    let body = json!({"name": f.name.trim(), "rules": rules});
    match ctx.api.post(&scoped("/v1/firewalls", &project), body).await {
        Ok(made) => done(
            &format!("/console/projects/{project}/firewalls/{}", s(&made, "id")),
            Msg::NoticeFirewallChanged,
        ),
        Err(p) => ctx.problem(&p),
    }
}

/// `/console/projects/{project}/firewalls/{id}`: its rules (editable), the instances it is
/// attached to, attach and detach.
pub async fn firewall(ctx: Ctx, Path((project, id)): Path<(String, String)>) -> Response {
    let (f, instances) = match (
        ctx.api
            .get(&scoped(
                &format!("/v1/firewalls/{}", urlencode(&id)),
                &project,
            ))
            .await,
        ctx.api
            .get(&scoped("/v1/instances?limit=1000", &project))
            .await,
    ) {
        (Ok(f), Ok(i)) => (f, items(&i, "instances")),
        (Err(p), _) | (_, Err(p)) => return ctx.problem(&p),
    };
    let attached: Vec<String> = items(&f, "instances")
        .iter()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect();
    let attachable: Vec<Value> = instances
        .iter()
        .filter(|i| i.get("private_ipv4").is_some())
        .filter(|i| !attached.iter().any(|a| i["id"] == a.as_str()))
        .cloned()
        .collect();
    let base = format!("/console/projects/{project}/firewalls/{id}");
    ctx.page_titled(
        s(&f, "name"),
        html! {
            h1 { (ctx.t(Msg::Firewall)) " " (s(&f, "name")) }
            p { a href={ "/console/projects/" (project) "/firewalls" } { (ctx.t(Msg::Back)) } }
            form.card method="post" action={ (base) "/rules" } {
                (ctx.csrf_field())
                label { (ctx.t(Msg::Rules))
                    textarea name="rules" id="firewall-rules" rows="6" { (rules_text(&f)) }
                }
                p.muted { (ctx.t(Msg::FirewallsText)) }
                button type="submit" id="save-rules" { (ctx.t(Msg::SaveRules)) }
            }
            h2 { (ctx.t(Msg::Attached)) }
            table #attached {
                tbody {
                    @for a in &attached {
                        @let i = instances.iter().find(|i| i["id"] == a.as_str());
                        tr {
                            td { (i.map_or(a.as_str(), |i| s(i, "name"))) }
                            td.mono { (a) }
                            td.mono { (i.and_then(|i| i["private_ipv4"].as_str()).unwrap_or("—")) }
                            td {
                                form.inline method="post" action={ (base) "/detach/" (a) } {
                                    (ctx.csrf_field())
                                    button.link type="submit" { (ctx.t(Msg::Detach)) }
                                }
                            }
                        }
                    }
                }
            }
            @if !attachable.is_empty() {
                form.card.row method="post" action={ (base) "/attach" } {
                    (ctx.csrf_field())
                    label { (ctx.t(Msg::Instance)) (instance_select(&ctx, "instance", &attachable, None)) }
                    button type="submit" id="attach" { (ctx.t(Msg::Attach)) }
                }
            }
            form.inline method="post" action={ (base) "/delete" } {
                (ctx.csrf_field())
                button.danger type="submit" id="delete-firewall" { (ctx.t(Msg::Delete)) }
            }
        },
    )
}

pub async fn set_rules(
    ctx: Ctx,
    Path((project, id)): Path<(String, String)>,
    Form(f): Form<FirewallForm>,
) -> Response {
    let rules = match rules_of(&f.rules) {
        Ok(r) => r,
        Err(e) => return bad_rules(&ctx, e),
    };
    let path = scoped(&format!("/v1/firewalls/{}/rules", urlencode(&id)), &project);
    let r = ctx
        .api
        .call(Method::PUT, &path, Some(json!({"rules": rules})))
        .await
        .map(|a| a.body);
    back(
        &ctx,
        &project,
        &format!("firewalls/{id}"),
        Msg::NoticeFirewallChanged,
        r,
    )
}

pub async fn attach(
    ctx: Ctx,
    Path((project, id)): Path<(String, String)>,
    Form(f): Form<InstanceForm>,
) -> Response {
    let path = scoped(
        &format!("/v1/firewalls/{}/attach", urlencode(&id)),
        &project,
    );
    let r = ctx.api.post(&path, json!({"instance": f.instance})).await;
    back(
        &ctx,
        &project,
        &format!("firewalls/{id}"),
        Msg::NoticeFirewallChanged,
        r,
    )
}

pub async fn detach(
    ctx: Ctx,
    Path((project, id, instance)): Path<(String, String, String)>,
) -> Response {
    let path = scoped(
        &format!("/v1/firewalls/{}/detach", urlencode(&id)),
        &project,
    );
    let r = ctx.api.post(&path, json!({"instance": instance})).await;
    back(
        &ctx,
        &project,
        &format!("firewalls/{id}"),
        Msg::NoticeFirewallChanged,
        r,
    )
}

pub async fn delete_firewall(ctx: Ctx, Path((project, id)): Path<(String, String)>) -> Response {
    let path = scoped(&format!("/v1/firewalls/{}", urlencode(&id)), &project);
    let r = ctx
        .api
        .call(Method::DELETE, &path, None)
        .await
        .map(|a| a.body);
    back(&ctx, &project, "firewalls", Msg::NoticeFirewallDeleted, r)
}

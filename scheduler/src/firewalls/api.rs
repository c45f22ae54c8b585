//! `POST|GET /v1/firewalls`, `GET|DELETE /v1/firewalls/{id}`, `PUT /v1/firewalls/{id}/rules`,
//! `POST /v1/firewalls/{id}/attach|detach`: a project's firewalls.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use vmcloud_proto::pb::{self, command::Body};

use crate::api::context::{
    ApiJson, ApiQuery, ApiState, Caller, ReadOptions, created, owned, rfc3339,
};
use crate::api::pagination::ListQuery;
use crate::api::problem::Problem;
use crate::firewalls::types::{Direction, Firewall, Rule, rules_from_pb};
use crate::tenancy::authz::{Action, Resource};

/// One allow rule.
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleBody {
    /// `inbound` (to the instances) or `outbound` (from them).
    pub direction: String,
    /// `tcp`, `udp`, `icmp` or `any` (the default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    /// tcp and udp: a port (`"22"`) or a range (`"8000-8100"`); absent: every port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports: Option<String>,
    /// Inbound: where traffic may come from (IPv4 CIDRs; absent with no peer: anywhere).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<String>,
    /// Outbound: where traffic may go (IPv4 CIDRs; absent with no peer: anywhere).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub destinations: Vec<String>,
    /// Another firewall of the project (or this one): the instances it is attached to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_firewall: Option<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateFirewallRequest {
    /// 1 to 63 characters, unique in the project.
    pub name: String,
    #[serde(default)]
    pub rules: Vec<RuleBody>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FirewallRules {
    /// The whole new rule set (it replaces the old one).
    pub rules: Vec<RuleBody>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AttachRequest {
    /// An instance of the project (`i-…`).
    pub instance: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct FirewallView {
    pub id: String,
    pub project: String,
    pub name: String,
    pub rules: Vec<RuleBody>,
    /// The instances it is attached to.
    pub instances: Vec<String>,
    pub created_at: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct FirewallList {
    pub firewalls: Vec<FirewallView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

fn rule_view(r: &Rule) -> RuleBody {
    let (sources, destinations) = match r.direction {
        Direction::Inbound => (r.cidrs.clone(), Vec::new()),
        Direction::Outbound => (Vec::new(), r.cidrs.clone()),
    };
    RuleBody {
        direction: match r.direction {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
        }
        .into(),
        protocol: Some(r.protocol.as_str().into()),
        ports: r.ports.map(|(a, b)| {
            if a == b {
                a.to_string()
            } else {
                format!("{a}-{b}")
            }
        }),
        sources,
        destinations,
        peer_firewall: r.peer_firewall.clone(),
        description: r.description.clone(),
    }
}

impl FirewallView {
    pub fn new(f: &Firewall) -> FirewallView {
        FirewallView {
            id: f.id.clone(),
            project: f.project.to_string(),
            name: f.name.clone(),
            rules: f.rules.iter().map(rule_view).collect(),
            instances: f.instances.iter().map(ToString::to_string).collect(),
            created_at: rfc3339(f.created_at_ms),
        }
    }
}

/// A rule as people write it: `in|out PROTOCOL [PORTS] [CIDR,…|fw-…]` (`in tcp 22
/// 203.0.113.0/24`, `in tcp 443`, `in any fw-0123…`, `out udp 53 10.0.0.2`). The CLI and the
/// console read rules this way.
pub fn parse_rule(text: &str) -> Result<RuleBody, String> {
    let words: Vec<&str> = text.split_whitespace().collect();
    let (direction, rest) = match words.split_first() {
        Some((&("in" | "inbound"), rest)) => ("inbound", rest),
        Some((&("out" | "outbound"), rest)) => ("outbound", rest),
        _ => {
            return Err(format!(
                "rule {text:?}: start with `in` or `out` (e.g. `in tcp 22 203.0.113.0/24`)"
            ));
        }
    };
    let (protocol, rest) = rest
        .split_first()
        .ok_or_else(|| format!("rule {text:?}: name a protocol: tcp, udp, icmp or any"))?;
    let mut rule = RuleBody {
        direction: direction.into(),
        protocol: Some((*protocol).into()),
        ports: None,
        sources: Vec::new(),
        destinations: Vec::new(),
        peer_firewall: None,
        description: String::new(),
    };
    let mut rest = rest.iter();
    let mut next = rest.next();
    if let Some(p) = next
        && p.chars().next().is_some_and(|c| c.is_ascii_digit())
        && !p.contains('.')
    {
        rule.ports = Some((*p).into());
        next = rest.next();
    }
    if let Some(target) = next {
        if target.starts_with("fw-") {
            rule.peer_firewall = Some((*target).into());
        } else {
            let cidrs: Vec<String> = target.split(',').map(str::to_owned).collect();
            if direction == "inbound" {
                rule.sources = cidrs;
            } else {
                rule.destinations = cidrs;
            }
        }
    }
    if let Some(extra) = rest.next() {
        return Err(format!("rule {text:?}: {extra:?} is one word too many"));
    }
    Ok(rule)
}

/// A rule as [`parse_rule`] reads it.
pub fn rule_text(r: &RuleBody) -> String {
    let mut out = format!(
        "{} {}",
        if r.direction == "inbound" {
            "in"
        } else {
            "out"
        },
        r.protocol.as_deref().unwrap_or("any")
    );
    for part in r
        .ports
        .iter()
        .cloned()
        .chain((!r.sources.is_empty()).then(|| r.sources.join(",")))
        .chain((!r.destinations.is_empty()).then(|| r.destinations.join(",")))
        .chain(r.peer_firewall.iter().cloned())
    {
        out.push(' ');
        out.push_str(&part);
    }
    out
}

fn invalid(detail: String) -> Problem {
    Problem::unprocessable("invalid-firewall-rule", "Invalid firewall rule", detail)
}

/// The rules of a request on the wire, checked as `apply` checks them (so a bad one is a
/// 422 naming the field before anything is proposed).
pub fn rules_to_pb(rules: &[RuleBody]) -> Result<Vec<pb::FirewallRule>, Problem> {
    let mut out = Vec::with_capacity(rules.len());
    for (n, r) in rules.iter().enumerate() {
        let (port_from, port_to) = match r.ports.as_deref().map(str::trim) {
            None | Some("") => (0, 0),
            Some(p) => {
                let (a, b) = p.split_once('-').unwrap_or((p, p));
                match (a.trim().parse::<u32>(), b.trim().parse::<u32>()) {
                    (Ok(a), Ok(b)) => (a, b),
                    _ => {
                        return Err(invalid(format!(
                            "`rules[{n}].ports` {p:?} is not a port (22) or a range (8000-8100)"
                        )));
                    }
                }
            }
        };
        let inbound = matches!(r.direction.as_str(), "inbound" | "in");
        if inbound && !r.destinations.is_empty() {
            return Err(invalid(format!(
                "`rules[{n}].destinations` is for outbound rules; an inbound rule names `sources`"
            )));
        }
        if !inbound && !r.sources.is_empty() {
            return Err(invalid(format!(
                "`rules[{n}].sources` is for inbound rules; an outbound rule names `destinations`"
            )));
        }
        out.push(pb::FirewallRule {
            direction: r.direction.clone(),
            protocol: r.protocol.clone().unwrap_or_default(),
            port_from,
            port_to,
            cidrs: if inbound {
                r.sources.clone()
            } else {
                r.destinations.clone()
            },
            peer_firewall: r.peer_firewall.clone().unwrap_or_default(),
            description: r.description.clone(),
        });
    }
    rules_from_pb(&out).map_err(invalid)?;
    Ok(out)
}

fn firewall_of(
    s: &ApiState,
    project: &vmcloud_proto::ProjectId,
    id: &str,
) -> Result<Firewall, Problem> {
    let state = s.cluster.state();
    owned(&state.firewalls, id, project, |f| &f.project, "firewall")
}

fn view_of(s: &ApiState, id: &str) -> Result<FirewallView, Problem> {
    let state = s.cluster.state();
    let f = state
        .firewalls
        .get(id)
        .ok_or_else(|| Problem::internal("the firewall was applied but is not in the state"))?;
    Ok(FirewallView::new(f))
}

pub async fn create(
    State(s): State<ApiState>,
    Caller(project, who): Caller,
    ApiJson(req): ApiJson<CreateFirewallRequest>,
) -> Result<Response, Problem> {
    who.may(&s, Action::ManageProject, Resource::Project(&project))?;
    let rules = rules_to_pb(&req.rules)?;
    let id = format!("fw-{:016x}", rand::random::<u64>());
    s.cluster
        .propose_as(
            who.actor(),
            Body::CreateFirewall(pb::CreateFirewall {
                firewall_id: id.clone(),
                project_id: project.to_string(),
                name: req.name,
                rules,
            }),
        )
        .await??;
    Ok(created(format!("/v1/firewalls/{id}"), view_of(&s, &id)?))
}

/// The project's firewalls, oldest first.
pub async fn list(
    State(s): State<ApiState>,
    Caller(project, _who): Caller,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<FirewallList>, Problem> {
    q.read().prepare(&s.cluster).await?;
    let state = s.cluster.state();
    let mine = state
        .firewalls
        .values()
        .filter(|f| f.project == project)
        .map(|f| ((f.created_at_ms, f.id.clone()), FirewallView::new(f)))
        .collect();
    let (firewalls, next_cursor) = q.page(mine)?;
    Ok(Json(FirewallList {
        firewalls,
        next_cursor,
    }))
}

pub async fn get(
    State(s): State<ApiState>,
    Caller(project, _who): Caller,
    Path(id): Path<String>,
    ApiQuery(read): ApiQuery<ReadOptions>,
) -> Result<Json<FirewallView>, Problem> {
    read.prepare(&s.cluster).await?;
    Ok(Json(FirewallView::new(&firewall_of(&s, &project, &id)?)))
}

/// Replaces the rules; the hosts of the instances it filters apply them at once.
pub async fn set_rules(
    State(s): State<ApiState>,
    Caller(project, who): Caller,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<FirewallRules>,
) -> Result<Json<FirewallView>, Problem> {
    firewall_of(&s, &project, &id)?;
    who.may(&s, Action::ManageProject, Resource::Project(&project))?;
    let rules = rules_to_pb(&req.rules)?;
    s.cluster
        .propose_as(
            who.actor(),
            Body::SetFirewallRules(pb::SetFirewallRules {
                firewall_id: id.clone(),
                project_id: project.to_string(),
                rules,
            }),
        )
        .await??;
    Ok(Json(view_of(&s, &id)?))
}

pub async fn delete(
    State(s): State<ApiState>,
    Caller(project, who): Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, Problem> {
    firewall_of(&s, &project, &id)?;
    who.may(&s, Action::ManageProject, Resource::Project(&project))?;
    s.cluster
        .propose_as(
            who.actor(),
            Body::DeleteFirewall(pb::DeleteFirewall {
                firewall_id: id,
                project_id: project.to_string(),
            }),
        )
        .await??;
    Ok(StatusCode::NO_CONTENT)
}

async fn attach_or_detach(
    s: ApiState,
    Caller(project, who): Caller,
    id: String,
    instance: String,
    detach: bool,
) -> Result<Json<FirewallView>, Problem> {
    firewall_of(&s, &project, &id)?;
    who.may(&s, Action::Deploy, Resource::Project(&project))?;
    s.cluster
        .propose_as(
            who.actor(),
            Body::AttachFirewall(pb::AttachFirewall {
                firewall_id: id.clone(),
                project_id: project.to_string(),
                instance_id: instance,
                detach,
            }),
        )
        .await??;
    Ok(Json(view_of(&s, &id)?))
}

/// Attaches the firewall to an instance: its host filters the instance's NIC at once.
pub async fn attach(
    State(s): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<AttachRequest>,
) -> Result<Json<FirewallView>, Problem> {
    attach_or_detach(s, caller, id, req.instance, false).await
}

pub async fn detach(
    State(s): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<AttachRequest>,
) -> Result<Json<FirewallView>, Problem> {
    attach_or_detach(s, caller, id, req.instance, true).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_read_as_written_and_back() {
        for text in [
            "in tcp 22 203.0.113.0/24,198.51.100.7",
            "out udp 53 10.0.0.2",
            "in any fw-0011",
            "in tcp 8000-8100",
            "in icmp",
        ] {
            assert_eq!(rule_text(&parse_rule(text).unwrap()), text);
        }
        let r = parse_rule("in tcp 22 203.0.113.0/24").unwrap();
        assert_eq!(r.sources, ["203.0.113.0/24"]);
        assert_eq!(r.ports.as_deref(), Some("22"));
        assert!(parse_rule("sideways tcp").is_err());
        assert!(parse_rule("in tcp 22 10.0.0.0/8 extra").is_err());
    }
}

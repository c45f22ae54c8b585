//! A firewall and its rules as the replicated state keeps them, and the rules' checks.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};
use vmcloud_proto::{InstanceId, ProjectId, pb};

/// Rules a firewall may hold.
pub const MAX_RULES: usize = 50;
/// Firewalls an instance may have.
pub const MAX_PER_INSTANCE: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Inbound,
    Outbound,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
    Icmp,
    Any,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Icmp => "icmp",
            Protocol::Any => "any",
        }
    }
}

/// One allow rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    pub direction: Direction,
    pub protocol: Protocol,
    /// tcp and udp: the port range; `None`: every port.
    pub ports: Option<(u16, u16)>,
    /// Inbound: sources; outbound: destinations. Empty (and no peer): anywhere.
    pub cidrs: Vec<String>,
    /// A firewall of the same project: the addresses of the instances it is attached to.
    pub peer_firewall: Option<String>,
    pub description: String,
}

/// A project's firewall.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Firewall {
    pub id: String,
    pub project: ProjectId,
    pub name: String,
    pub rules: Vec<Rule>,
    /// The instances it is attached to.
    pub instances: BTreeSet<InstanceId>,
    pub created_at_ms: i64,
}

/// An IPv4 CIDR as a rule takes it (`203.0.113.0/24`, or an address alone for /32), its host
/// bits zero; returned in its canonical form.
pub fn parse_cidr(text: &str) -> Result<String, String> {
    let (ip, prefix) = match text.trim().split_once('/') {
        Some((ip, p)) => (ip, p),
        None => (text.trim(), "32"),
    };
    let ip: Ipv4Addr = ip
        .parse()
        .map_err(|_| format!("{text:?} is not an IPv4 address or CIDR (203.0.113.0/24)"))?;
    let prefix: u8 = prefix
        .parse()
        .ok()
        .filter(|p| *p <= 32)
        .ok_or_else(|| format!("{text:?} has a prefix that is not 0 to 32"))?;
    let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
    let base = u32::from(ip) & mask;
    if base != u32::from(ip) {
        return Err(format!(
            "{text:?} has host bits set: did you mean {}/{prefix}?",
            Ipv4Addr::from(base)
        ));
    }
    Ok(format!("{ip}/{prefix}"))
}

impl Rule {
    /// A rule from the wire, checked; errors name the field (`rules[2].ports`).
    pub fn from_pb(r: &pb::FirewallRule, n: usize) -> Result<Rule, String> {
        let field = |f: &str| format!("`rules[{n}].{f}`");
        let direction = match r.direction.as_str() {
            "inbound" | "in" => Direction::Inbound,
            "outbound" | "out" => Direction::Outbound,
            other => {
                return Err(format!(
                    "{} {other:?} is not one of: inbound, outbound",
                    field("direction")
                ));
            }
        };
        let protocol = match r.protocol.as_str() {
            "tcp" => Protocol::Tcp,
            "udp" => Protocol::Udp,
            "icmp" => Protocol::Icmp,
            "any" | "" => Protocol::Any,
            other => {
                return Err(format!(
                    "{} {other:?} is not one of: tcp, udp, icmp, any",
                    field("protocol")
                ));
            }
        };
        let ports = match (r.port_from, r.port_to) {
            (0, 0) => None,
            (from, to) if matches!(protocol, Protocol::Tcp | Protocol::Udp) => {
                if from == 0 || to > 65535 || from > to {
                    return Err(format!(
                        "{} {from}-{to} is not a port range: ports are 1 to 65535, the first not above the last",
                        field("ports")
                    ));
                }
                Some((from as u16, to as u16))
            }
            _ => {
                return Err(format!(
                    "{} are for tcp and udp only, not {}",
                    field("ports"),
                    protocol.as_str()
                ));
            }
        };
        let mut cidrs = Vec::with_capacity(r.cidrs.len());
        for (i, c) in r.cidrs.iter().enumerate() {
            cidrs
                .push(parse_cidr(c).map_err(|e| format!("{} {e}", field(&format!("cidrs[{i}]"))))?);
        }
        if cidrs.len() > 100 {
            return Err(format!("{} holds at most 100 CIDRs", field("cidrs")));
        }
        if r.description.chars().count() > 200 {
            return Err(format!(
                "{} is at most 200 characters",
                field("description")
            ));
        }
        Ok(Rule {
            direction,
            protocol,
            ports,
            cidrs,
            peer_firewall: (!r.peer_firewall.is_empty()).then(|| r.peer_firewall.clone()),
            description: r.description.clone(),
        })
    }

    /// The rule on the wire, its peer firewall resolved to `peer_addresses` (`None`: it names
    /// no peer).
    pub fn to_pb(&self, peer_addresses: Option<Vec<String>>) -> pb::FirewallRule {
        let mut cidrs = self.cidrs.clone();
        if let Some(peers) = peer_addresses {
            cidrs.extend(peers);
        }
        pb::FirewallRule {
            direction: match self.direction {
                Direction::Inbound => "inbound",
                Direction::Outbound => "outbound",
            }
            .into(),
            protocol: self.protocol.as_str().into(),
            port_from: self.ports.map_or(0, |p| u32::from(p.0)),
            port_to: self.ports.map_or(0, |p| u32::from(p.1)),
            cidrs,
            peer_firewall: self.peer_firewall.clone().unwrap_or_default(),
            description: self.description.clone(),
        }
    }
}

/// The rules of a request, checked.
pub fn rules_from_pb(rules: &[pb::FirewallRule]) -> Result<Vec<Rule>, String> {
    if rules.len() > MAX_RULES {
        return Err(format!(
            "`rules` holds {} rules; a firewall holds at most {MAX_RULES}",
            rules.len()
        ));
    }
    rules
        .iter()
        .enumerate()
        .map(|(n, r)| Rule::from_pb(r, n))
        .collect()
}

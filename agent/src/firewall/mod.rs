//! The `Firewall` trait: instances' firewalls on the host.
//!
//! Each filtered instance is known on its host by its network's bridge (`vmcbr<VNI>`) and its
//! address there (unique in a network). Its rules become chains of one nftables table
//! (`inet vmcloud`) on the forward hook, which bridged IPv4 traffic goes through with
//! `br_netfilter` (`net.bridge.bridge-nf-call-iptables = 1`, set by the agent in the tenant
//! namespace): traffic to the instance is dropped but for what its inbound rules allow,
//! traffic from it likewise when it has outbound rules; answers to allowed traffic pass
//! (conntrack, one zone per network so that two projects' equal addresses never share a
//! connection's state). ARP is not IP and passes. The whole table is replaced in one
//! transaction whenever the rules change (conntrack entries outlive it, so open connections
//! stay open) and removed when nothing is filtered.
//!
//! Real implementation: [`nft::Nft`] (the `nft` program). Simulated: [`SimFirewall`].

pub mod nft;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

use vmcloud_proto::pb;

/// The name of an instance's port on its bridge (at most 15 bytes, as Linux wants): `vmt` and
/// the id's last 11 characters (its random part).
pub fn port_name(instance_id: &str) -> String {
    let tail: String = instance_id
        .chars()
        .rev()
        .take(11)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    format!("vmt{tail}")
}

/// What one instance's NIC is filtered by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortRules {
    /// Its network's VNI (its bridge is `vmcbr<VNI>`).
    pub vni: u32,
    /// Its address on that network.
    pub ip: std::net::Ipv4Addr,
    /// Its IPv6 address (in its host's /64), filtered alike: rules naming IPv4 CIDRs do not
    /// match IPv6 traffic, rules for anywhere do.
    pub ipv6: Option<std::net::Ipv6Addr>,
    pub inbound: Vec<pb::FirewallRule>,
    /// `None`: outbound is not filtered.
    pub outbound: Option<Vec<pb::FirewallRule>>,
}

/// Every filtered NIC of the host, by port name.
pub type Ruleset = BTreeMap<String, PortRules>;

#[derive(Debug, thiserror::Error)]
pub enum FirewallError {
    #[error("cannot run nft: {0}")]
    Spawn(String),
    #[error("nft refused the rules: {0}")]
    Refused(String),
}

/// The host's packet filter.
pub trait Firewall: Send + Sync + 'static {
    /// Makes the host filter exactly `ruleset` (an empty one: nothing). Atomic: the old rules
    /// hold until the new ones replace them all.
    fn apply(&self, ruleset: &Ruleset) -> Result<(), FirewallError>;
}

/// Firewalls kept in memory: simulated hosts and the dev fleet.
#[derive(Debug, Default)]
pub struct SimFirewall {
    applied: Mutex<Ruleset>,
}

impl SimFirewall {
    pub fn applied(&self) -> Ruleset {
        self.applied.lock().unwrap().clone()
    }
}

impl Firewall for SimFirewall {
    fn apply(&self, ruleset: &Ruleset) -> Result<(), FirewallError> {
        *self.applied.lock().unwrap() = ruleset.clone();
        Ok(())
    }
}

/// The nftables table that holds every instance's rules.
pub const TABLE: &str = "vmcloud";

/// The conntrack zone of a network's traffic on a host: from its VNI, so that it stays the
/// same whatever else the host carries (two VNIs 65535 apart would share one).
pub fn zone(vni: u32) -> u32 {
    vni % 65535 + 1
}

/// One rule as an nftables statement; `None` for one that cannot match anything.
fn statement(r: &pb::FirewallRule, inbound: bool) -> Option<String> {
    let mut s = String::new();
    if !r.cidrs.is_empty() {
        // Only addresses we checked reach here; anything else is left out.
        let cidrs: Vec<&str> = r
            .cidrs
            .iter()
            .map(String::as_str)
            .filter(|c| {
                c.chars()
                    .all(|ch| ch.is_ascii_digit() || ch == '.' || ch == '/')
            })
            .collect();
        if cidrs.is_empty() {
            return None;
        }
        let _ = write!(
            s,
            "ip {} {{ {} }} ",
            if inbound { "saddr" } else { "daddr" },
            cidrs.join(", ")
        );
    }
    match r.protocol.as_str() {
        "tcp" | "udp" => {
            let p = &r.protocol;
            let _ = match (r.port_from, r.port_to) {
                (0, _) => write!(s, "meta l4proto {p} "),
                (a, b) if a == b => write!(s, "{p} dport {a} "),
                (a, b) => write!(s, "{p} dport {a}-{b} "),
            };
        }
        "icmp" if r.cidrs.is_empty() => s.push_str("meta l4proto { icmp, ipv6-icmp } "),
        "icmp" => s.push_str("meta l4proto icmp "),
        _ => {}
    }
    s.push_str("accept");
    Some(s)
}

/// The nft script that makes the table hold exactly `ruleset`: the old table (if any) deleted
/// and the new one made, in one transaction.
pub fn script(ruleset: &Ruleset) -> String {
    let mut x = String::new();
    // `add table` first, so that the delete finds one whatever was there.
    let _ = writeln!(x, "add table inet {TABLE}\ndelete table inet {TABLE}");
    if ruleset.is_empty() {
        return x;
    }
    let _ = writeln!(x, "table inet {TABLE} {{");
    let vnis: std::collections::BTreeSet<u32> = ruleset.values().map(|r| r.vni).collect();
    let _ = writeln!(
        x,
        "  chain zones {{\n    type filter hook prerouting priority raw; policy accept;"
    );
    for vni in &vnis {
        let _ = writeln!(x, "    iifname \"vmcbr{vni}\" ct zone set {}", zone(*vni));
    }
    let _ = writeln!(x, "  }}");
    let _ = writeln!(
        x,
        "  chain forward {{\n    type filter hook forward priority filter; policy accept;"
    );
    for (port, r) in ruleset {
        let addresses = std::iter::once(format!("ip {{}} {}", r.ip))
            .chain(r.ipv6.map(|v6| format!("ip6 {{}} {v6}")));
        for a in addresses {
            let _ = writeln!(
                x,
                "    oifname \"vmcbr{}\" {} jump in_{port}",
                r.vni,
                a.replace("{}", "daddr")
            );
            if r.outbound.is_some() {
                let _ = writeln!(
                    x,
                    "    iifname \"vmcbr{}\" {} jump out_{port}",
                    r.vni,
                    a.replace("{}", "saddr")
                );
            }
        }
    }
    let _ = writeln!(x, "  }}");
    // IPv6 neighbour discovery is how the guest's address is found at all.
    let common = "    ct state established,related accept\n    ct state invalid drop\n    icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-solicit, nd-router-advert } accept";
    for (port, rules) in ruleset {
        let _ = writeln!(x, "  chain in_{port} {{\n{common}");
        for r in &rules.inbound {
            if let Some(st) = statement(r, true) {
                let _ = writeln!(x, "    {st}");
            }
        }
        let _ = writeln!(x, "    drop\n  }}");
        if let Some(outbound) = &rules.outbound {
            let _ = writeln!(x, "  chain out_{port} {{\n{common}");
            for r in outbound {
                if let Some(st) = statement(r, false) {
                    let _ = writeln!(x, "    {st}");
                }
            }
            let _ = writeln!(x, "    drop\n  }}");
        }
    }
    let _ = writeln!(x, "}}");
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(protocol: &str, ports: (u32, u32), cidrs: &[&str]) -> pb::FirewallRule {
        pb::FirewallRule {
            direction: "inbound".into(),
            protocol: protocol.into(),
            port_from: ports.0,
            port_to: ports.1,
            cidrs: cidrs.iter().map(|c| (*c).to_owned()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn port_names_fit_linux_and_rules_render_as_nft_statements() {
        let port = port_name("i-01a22d03e7524c90169e");
        assert_eq!(port, "vmt7524c90169e");
        assert!(port.len() <= 15);
        assert_eq!(
            statement(&rule("tcp", (22, 22), &["203.0.113.0/24"]), true).unwrap(),
            "ip saddr { 203.0.113.0/24 } tcp dport 22 accept"
        );
        assert_eq!(
            statement(&rule("udp", (8000, 8100), &[]), true).unwrap(),
            "udp dport 8000-8100 accept"
        );
        assert_eq!(
            statement(&rule("tcp", (0, 0), &[]), true).unwrap(),
            "meta l4proto tcp accept"
        );
        assert_eq!(
            statement(&rule("icmp", (0, 0), &["10.0.0.3/32"]), false).unwrap(),
            "ip daddr { 10.0.0.3/32 } meta l4proto icmp accept"
        );
        assert_eq!(
            statement(&rule("any", (0, 0), &[]), true).unwrap(),
            "accept"
        );
        assert_eq!(
            statement(&rule("icmp", (0, 0), &[]), true).unwrap(),
            "meta l4proto { icmp, ipv6-icmp } accept"
        );
        let mut set = Ruleset::new();
        set.insert(
            port.clone(),
            PortRules {
                vni: 4096,
                ip: "10.0.0.3".parse().unwrap(),
                ipv6: Some("2001:db8:0:7::5".parse().unwrap()),
                inbound: vec![rule("tcp", (22, 22), &[])],
                outbound: None,
            },
        );
        let s = script(&set);
        assert!(
            s.contains(&format!(
                "oifname \"vmcbr4096\" ip daddr 10.0.0.3 jump in_{port}"
            )),
            "{s}"
        );
        assert!(s.contains("iifname \"vmcbr4096\" ct zone set 4097"), "{s}");
        assert!(
            s.contains(&format!(
                "oifname \"vmcbr4096\" ip6 daddr 2001:db8:0:7::5 jump in_{port}"
            )),
            "{s}"
        );
        assert!(!s.contains("ip saddr"), "outbound is not filtered: {s}");
        assert!(s.contains("tcp dport 22 accept\n    drop"), "{s}");
        assert_eq!(
            script(&Ruleset::new()),
            "add table inet vmcloud\ndelete table inet vmcloud\n"
        );
    }
}

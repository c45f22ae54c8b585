//! Public IPv4 addresses: the region pools they come from, who holds each, floating IPs.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};
use vmcloud_proto::{InstanceId, ProjectId};

/// A floating IP: a public address a project holds, assigned to one of its instances in the
/// region or to none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FloatingIp {
    pub id: String,
    pub project: ProjectId,
    pub region: String,
    pub address: Ipv4Addr,
    pub instance: Option<InstanceId>,
    pub description: String,
    pub created_at_ms: i64,
}

/// Who holds a public address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    pub project: ProjectId,
    pub region: String,
    /// An instance's own address (`i-…`) or a floating IP (`fip-…`).
    pub by: String,
    /// Its reverse DNS name, when its holder set one.
    pub reverse_dns: Option<String>,
    /// Billable since (the command that took it, or the last billing run's cut).
    #[serde(default)]
    pub since_ms: i64,
}

/// An IPv4 pool CIDR as the catalog writes it: its first and last address.
pub fn pool_range(cidr: &str) -> Option<(u32, u32)> {
    let (ip, prefix) = cidr.split_once('/')?;
    let ip: Ipv4Addr = ip.parse().ok()?;
    let prefix: u32 = prefix.parse().ok().filter(|p| *p <= 32)?;
    let mask = u32::MAX.checked_shl(32 - prefix).unwrap_or(0);
    let base = u32::from(ip) & mask;
    let last = base | !mask;
    // A pool of more than two addresses keeps its network and broadcast addresses out.
    Some(if prefix <= 30 {
        (base + 1, last - 1)
    } else {
        (base, last)
    })
}

/// Checks a reverse DNS name: a hostname of labels of letters, digits and `-`, at most 253.
pub fn check_reverse_dns(name: &str) -> Result<(), String> {
    let n = name.trim_end_matches('.');
    let ok = !n.is_empty()
        && n.len() <= 253
        && n.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`reverse_dns` {name:?} is not a host name (labels of letters, digits and `-`, e.g. mail.example.org)"
        ))
    }
}

//! A private network, an IPv4 subnet, and an instance's NIC as the replicated state keeps them.

use std::fmt;
use std::net::Ipv4Addr;

use imbl::OrdMap;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use vmcloud_proto::{InstanceId, ProjectId};

/// The MTU of tenant NICs: 1500 on the underlay less VXLAN's 50 bytes.
pub const TENANT_MTU: u32 = 1450;

/// Host numbers reserved in every subnet besides the network and broadcast addresses: the
/// gateway (`.1`) and the metadata and DNS address (`.2`).
pub const RESERVED_HOSTS: u32 = 2;

/// An IPv4 subnet: its first address and prefix length, the host bits zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Subnet {
    pub base: Ipv4Addr,
    pub prefix: u8,
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.base, self.prefix)
    }
}

/// Private ranges (RFC 1918).
const RFC1918: [(u32, u8); 3] = [
    (0x0a00_0000, 8),  // 10.0.0.0/8
    (0xac10_0000, 12), // 172.16.0.0/12
    (0xc0a8_0000, 16), // 192.168.0.0/16
];

fn mask(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

impl Subnet {
    /// Parses `a.b.c.d/n` as a tenant subnet: private (RFC 1918), /16 to /28, its host bits
    /// zero. The error says what was wrong and what would do.
    pub fn parse_private(text: &str) -> Result<Subnet, String> {
        let (ip, prefix) = text
            .trim()
            .split_once('/')
            .ok_or_else(|| format!("`{text}` is not a subnet: write it as 10.1.0.0/24"))?;
        let ip: Ipv4Addr = ip
            .parse()
            .map_err(|_| format!("`{ip}` is not an IPv4 address (subnet `{text}`)"))?;
        let prefix: u8 = prefix
            .parse()
            .ok()
            .filter(|p| (16..=28).contains(p))
            .ok_or_else(|| {
                format!("a private network's prefix is /16 to /28, not /{prefix} (subnet `{text}`)")
            })?;
        let bits = u32::from(ip);
        let base = bits & mask(prefix);
        if base != bits {
            return Err(format!(
                "`{text}` has host bits set: the subnet that holds it is {}/{prefix}",
                Ipv4Addr::from(base)
            ));
        }
        if !RFC1918
            .iter()
            .any(|(net, len)| *len <= prefix && base & mask(*len) == *net)
        {
            return Err(format!(
                "`{text}` is not a private range: use one inside 10.0.0.0/8, 172.16.0.0/12 or 192.168.0.0/16 (RFC 1918)"
            ));
        }
        Ok(Subnet { base: ip, prefix })
    }

    /// How many addresses it spans.
    pub fn size(&self) -> u32 {
        1u32 << (32 - u32::from(self.prefix))
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & mask(self.prefix) == u32::from(self.base)
    }

    pub fn overlaps(&self, other: &Subnet) -> bool {
        let shorter = self.prefix.min(other.prefix);
        u32::from(self.base) & mask(shorter) == u32::from(other.base) & mask(shorter)
    }

    /// The address of host number `n` (0 is the network address).
    pub fn host(&self, n: u32) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.base) + n)
    }

    /// The host number of `ip` in it.
    pub fn host_number(&self, ip: Ipv4Addr) -> u32 {
        u32::from(ip) - u32::from(self.base)
    }

    /// Host numbers instances may get: after the network address, the gateway and the
    /// metadata address; before the broadcast address.
    pub fn assignable(&self) -> std::ops::Range<u32> {
        (1 + RESERVED_HOSTS)..(self.size() - 1)
    }

    pub fn gateway(&self) -> Ipv4Addr {
        self.host(1)
    }
}

/// A project's private network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Network {
    pub id: String,
    pub project: ProjectId,
    pub name: String,
    pub subnet: Subnet,
    /// `None`: every region.
    pub region: Option<String>,
    pub vni: u32,
    /// The project's default network of its region (made on first use).
    pub default: bool,
    pub created_at_ms: i64,
    /// Host number → the instance that holds it.
    pub addresses: OrdMap<u32, InstanceId>,
}

impl Network {
    /// Whether instances of `region` may join it.
    pub fn serves(&self, region: &str) -> bool {
        self.region.as_deref().is_none_or(|r| r == region)
    }

    /// Whether it and `other` may hold instances of one region (then their subnets must not
    /// overlap within one project).
    pub fn shares_a_region(&self, other_region: Option<&str>) -> bool {
        match (self.region.as_deref(), other_region) {
            (Some(a), Some(b)) => a == b,
            _ => true,
        }
    }

    /// The first free host number, if any.
    pub fn first_free(&self) -> Option<u32> {
        let mut next = self.subnet.assignable().start;
        for (n, _) in self.addresses.range(next..) {
            if *n != next {
                break;
            }
            next += 1;
        }
        self.subnet.assignable().contains(&next).then_some(next)
    }
}

/// An instance's NIC on a private network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceNic {
    pub network: String,
    pub vni: u32,
    pub mac: String,
    pub ipv4: Ipv4Addr,
    pub prefix: u8,
}

impl InstanceNic {
    /// `"10.0.0.3/24"`, as the agent takes it.
    pub fn cidr(&self) -> String {
        format!("{}/{}", self.ipv4, self.prefix)
    }
}

/// The id of `project`'s default network in `region`: the same on every replica, so a
/// command can make it.
pub fn default_network_id(project: &ProjectId, region: &str) -> String {
    let digest = Sha256::digest(format!("default-network/{project}/{region}"));
    format!("net-{}", hex::encode(&digest[..8]))
}

/// The MAC address of an instance's NIC: locally administered, unicast, from its id.
pub fn mac_of(instance: &InstanceId) -> String {
    let d = Sha256::digest(format!("mac/{instance}"));
    format!(
        "02:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        d[0], d[1], d[2], d[3], d[4]
    )
}

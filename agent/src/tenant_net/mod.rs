//! The `NetLinks` trait: the host's side of tenant networks.
//!
//! Every tenant network is a Linux bridge on each host that runs one of its guests
//! (`vmcbr<vni>`), joined across hosts by a VXLAN device (`vmcvx<vni>`, the network's VNI,
//! over the host's underlay address) enslaved to the bridge. libvirt attaches each guest's tap
//! to the bridge. Names are derived from the VNI so the agent finds its links again after a
//! restart; a link with such a name that is not what the agent would make is a clash and is
//! refused, never changed.
//!
//! Real implementation: [`crate::tenant_net::linux::Rtnetlink`] (rtnetlink). Simulated: [`SimLinks`].

pub mod linux;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Mutex;

/// The VXLAN UDP port (IANA).
pub const VXLAN_PORT: u16 = 4789;
/// Bytes VXLAN adds on an IPv4 underlay (outer IP, UDP, VXLAN, inner Ethernet).
pub const VXLAN_OVERHEAD: u32 = 50;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantNetwork {
    pub vni: u32,
    /// MTU of the bridge and the guests' NICs.
    pub mtu: u32,
}

impl TenantNetwork {
    pub fn bridge(&self) -> String {
        bridge_name(self.vni)
    }
    pub fn vxlan(&self) -> String {
        vxlan_name(self.vni)
    }
}

pub fn bridge_name(vni: u32) -> String {
    format!("vmcbr{vni}")
}

pub fn vxlan_name(vni: u32) -> String {
    format!("vmcvx{vni}")
}

/// The VNI of one of our bridge names.
pub fn vni_of_bridge(name: &str) -> Option<u32> {
    name.strip_prefix("vmcbr")?.parse().ok()
}

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("VNI {0} is out of range: a VNI is 1 to 16777215")]
    BadVni(u32),
    #[error("MTU {mtu} for VNI {vni} is out of range (576 to {max})")]
    BadMtu { vni: u32, mtu: u32, max: u32 },
    #[error(
        "link name clash: {name} exists and is {found}, not the {wanted} the agent makes for this network; rename or remove that link"
    )]
    Clash {
        name: String,
        found: String,
        wanted: String,
    },
    #[error("{operation} failed: {message}")]
    Netlink { operation: String, message: String },
}

/// The host's network plumbing.
pub trait NetLinks: Send + Sync + 'static {
    /// Makes the network's bridge (and VXLAN device, when the host has an underlay) exist, be
    /// up and have the MTU. Idempotent. Returns the bridge name.
    fn ensure_network(&self, net: &TenantNetwork) -> Result<String, NetError>;
    /// Removes the network's bridge and VXLAN device. Idempotent.
    fn remove_network(&self, vni: u32) -> Result<(), NetError>;
    /// The VNIs of the networks that exist on the host.
    fn networks(&self) -> Result<Vec<u32>, NetError>;
    /// Routes a local guest's address (/32 or /128) to its network's bridge, so the host — the
    /// metadata endpoint — can answer the guest, and its public addresses reach it.
    /// Idempotent; a route to that address on another bridge is replaced.
    fn route_guest(&self, vni: u32, ip: IpAddr) -> Result<(), NetError>;
    /// Removes the route to a guest's address. Idempotent.
    fn unroute_guest(&self, ip: IpAddr) -> Result<(), NetError>;
    /// Makes the network's VXLAN device flood to exactly `peers` (the other hosts that carry
    /// it): entries added and removed as needed. Nothing to do on a host without an underlay
    /// or before the network's device exists.
    fn set_peers(&self, vni: u32, peers: &[Ipv4Addr]) -> Result<(), NetError>;
}

/// Checks a network before any link is made for it.
pub fn validate(net: &TenantNetwork, underlay_mtu: Option<u32>) -> Result<(), NetError> {
    if net.vni == 0 || net.vni > 0x00ff_ffff {
        return Err(NetError::BadVni(net.vni));
    }
    let max = underlay_mtu.map_or(9000, |m| m.saturating_sub(VXLAN_OVERHEAD));
    if net.mtu < 576 || net.mtu > max {
        return Err(NetError::BadMtu {
            vni: net.vni,
            mtu: net.mtu,
            max,
        });
    }
    Ok(())
}

/// Where VXLAN traffic leaves the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Underlay {
    /// The underlay interface (`eth0`).
    pub device: String,
    /// The host's address on it (the VXLAN source address).
    pub local: Ipv4Addr,
}

/// Networks kept in memory: for simulated hosts and for the dev fleet, which must not change
/// the developer's machine.
#[derive(Debug, Default)]
pub struct SimLinks {
    networks: Mutex<BTreeMap<u32, TenantNetwork>>,
    routes: Mutex<BTreeMap<IpAddr, u32>>,
    peers: Mutex<BTreeMap<u32, Vec<Ipv4Addr>>>,
}

impl SimLinks {
    /// The guest routes: address → VNI.
    pub fn routes(&self) -> BTreeMap<IpAddr, u32> {
        self.routes.lock().unwrap().clone()
    }

    /// Each network's flood list.
    pub fn peers(&self) -> BTreeMap<u32, Vec<Ipv4Addr>> {
        self.peers.lock().unwrap().clone()
    }
}

impl NetLinks for SimLinks {
    fn ensure_network(&self, net: &TenantNetwork) -> Result<String, NetError> {
        validate(net, None)?;
        self.networks.lock().unwrap().insert(net.vni, net.clone());
        Ok(net.bridge())
    }

    fn remove_network(&self, vni: u32) -> Result<(), NetError> {
        self.networks.lock().unwrap().remove(&vni);
        self.peers.lock().unwrap().remove(&vni);
        // The kernel drops routes through a deleted device.
        self.routes.lock().unwrap().retain(|_, v| *v != vni);
        Ok(())
    }

    fn networks(&self) -> Result<Vec<u32>, NetError> {
        Ok(self.networks.lock().unwrap().keys().copied().collect())
    }

    fn route_guest(&self, vni: u32, ip: IpAddr) -> Result<(), NetError> {
        self.routes.lock().unwrap().insert(ip, vni);
        Ok(())
    }

    fn unroute_guest(&self, ip: IpAddr) -> Result<(), NetError> {
        self.routes.lock().unwrap().remove(&ip);
        Ok(())
    }

    fn set_peers(&self, vni: u32, peers: &[Ipv4Addr]) -> Result<(), NetError> {
        if self.networks.lock().unwrap().contains_key(&vni) {
            let mut sorted = peers.to_vec();
            sorted.sort_unstable();
            self.peers.lock().unwrap().insert(vni, sorted);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_validation() {
        let net = TenantNetwork {
            vni: 16_777_215,
            mtu: 1450,
        };
        // Linux link names are at most 15 bytes.
        assert!(net.bridge().len() <= 15 && net.vxlan().len() <= 15);
        assert_eq!(vni_of_bridge(&net.bridge()), Some(16_777_215));
        assert!(validate(&net, Some(1500)).is_ok());
        let err = validate(&TenantNetwork { vni: 7, mtu: 1500 }, Some(1500)).unwrap_err();
        assert!(err.to_string().contains("576 to 1450"), "{err}");
        assert!(matches!(
            validate(&TenantNetwork { vni: 0, mtu: 1400 }, None),
            Err(NetError::BadVni(0))
        ));
        let sim = SimLinks::default();
        assert_eq!(sim.ensure_network(&net).unwrap(), "vmcbr16777215");
        assert_eq!(sim.networks().unwrap(), vec![16_777_215]);
        sim.remove_network(16_777_215).unwrap();
        sim.remove_network(16_777_215).unwrap();
        assert!(sim.networks().unwrap().is_empty());
    }
}

//! Tenant networks on the host: an instance's NIC on its network's bridge, its address routed
//! there, and bridges no desired instance uses any more removed.

use std::collections::HashSet;

use vmcloud_proto::pb;

use super::error::InstanceError;
use super::{Host, Memory};
use crate::hypervisor::{DomainSpec, Nic};
use crate::tenant_net::TenantNetwork;

/// The guest's address and prefix length from its NIC (`"10.42.0.5/24"`), if it has one.
pub(super) fn guest_address(
    nic: &pb::DesiredNic,
) -> Result<Option<(std::net::Ipv4Addr, u8)>, InstanceError> {
    if nic.ipv4.is_empty() {
        return Ok(None);
    }
    let bad = || InstanceError::GuestAddress {
        value: nic.ipv4.clone(),
    };
    let (ip, prefix) = nic.ipv4.split_once('/').ok_or_else(bad)?;
    let ip = ip.parse().map_err(|_| bad())?;
    let prefix: u8 = prefix
        .parse()
        .ok()
        .filter(|p| (1..=32).contains(p))
        .ok_or_else(bad)?;
    Ok(Some((ip, prefix)))
}

impl Host {
    /// Puts the instance's NIC on its network's bridge (made if missing) and routes its
    /// address there.
    pub(super) fn attach_nic(
        &self,
        spec: &mut DomainSpec,
        nic: &pb::DesiredNic,
        memory: &mut Memory,
    ) -> Result<(), InstanceError> {
        let net = TenantNetwork {
            vni: nic.vni,
            mtu: nic.mtu,
        };
        let bridge = self
            .links
            .ensure_network(&net)
            .map_err(|error| InstanceError::Network {
                vni: nic.vni,
                error,
            })?;
        spec.nic = Some(Nic {
            bridge,
            port: crate::firewall::port_name(spec.instance_id.as_str()),
            mac: nic.mac.clone(),
            mtu: nic.mtu,
        });
        if let Some((ip, prefix)) = guest_address(nic)? {
            self.links
                .route_guest(nic.vni, ip.into())
                .map_err(|error| InstanceError::Route { ip, error })?;
            memory.routes.insert(spec.instance_id.clone(), ip);
            // Images booted directly get their address the kernel's way (`ip=`).
            if let Some(boot) = &mut spec.boot {
                let mask = std::net::Ipv4Addr::from(
                    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0),
                );
                boot.cmdline = format!("{} ip={ip}:::{mask}::eth0:off", boot.cmdline)
                    .trim_start()
                    .to_owned();
            }
        }
        Ok(())
    }

    /// Routes the instance's public addresses (its own IPv4, floating ones, its IPv6) to its
    /// bridge, and
    /// no longer routes those it lost; false if one could not be.
    pub(super) fn route_public(&self, want: &pb::DesiredInstance, memory: &mut Memory) -> bool {
        let Ok(id) = vmcloud_proto::InstanceId::parse(&want.instance_id) else {
            return true;
        };
        let wanted: std::collections::BTreeSet<std::net::IpAddr> = want
            .nic
            .iter()
            .flat_map(|n| {
                n.public_ipv4s
                    .iter()
                    .map(String::as_str)
                    .chain(n.ipv6.split('/').next().filter(|a| !a.is_empty()))
            })
            .filter_map(|a| a.parse().ok())
            .collect();
        let have = memory.public.get(&id).cloned().unwrap_or_default();
        if wanted == have {
            return true;
        }
        let mut ok = true;
        let mut now = have.clone();
        for ip in have.difference(&wanted) {
            match self.links.unroute_guest(*ip) {
                Ok(()) => {
                    now.remove(ip);
                }
                Err(e) => {
                    ok = false;
                    tracing::warn!(instance = %id, %ip, error = %e, "an address could not be unrouted");
                }
            }
        }
        if let Some(nic) = &want.nic {
            for ip in wanted.difference(&have) {
                match self.links.route_guest(nic.vni, *ip) {
                    Ok(()) => {
                        tracing::info!(instance = %id, %ip, "public address routed to the instance");
                        now.insert(*ip);
                    }
                    Err(e) => {
                        ok = false;
                        tracing::warn!(instance = %id, %ip, error = %e, "a public address could not be routed");
                    }
                }
            }
        }
        if now.is_empty() {
            memory.public.remove(&id);
        } else {
            memory.public.insert(id, now);
        }
        ok
    }

    /// Points each network in use at the other hosts that carry it (VXLAN flooding); false if
    /// one could not be.
    pub(super) fn set_peers(&self, networks: &[pb::VxlanPeers], in_use: &HashSet<u32>) -> bool {
        let mut ok = true;
        for n in networks.iter().filter(|n| in_use.contains(&n.vni)) {
            let peers: Vec<std::net::Ipv4Addr> = n
                .peers
                .iter()
                .filter_map(|p| match p.parse() {
                    Ok(ip) => Some(ip),
                    Err(_) => {
                        tracing::warn!(
                            vni = n.vni,
                            peer = p,
                            "a VXLAN peer that is not an IPv4 address is left out"
                        );
                        None
                    }
                })
                .collect();
            if let Err(e) = self.links.set_peers(n.vni, &peers) {
                ok = false;
                tracing::warn!(vni = n.vni, error = %e, "VXLAN peers could not be set");
            }
        }
        ok
    }

    /// Filters every desired instance's NIC as its firewalls say (and nothing else); false if
    /// the rules could not be applied.
    pub(super) fn apply_firewalls(&self, desired: &pb::DesiredConfig) -> bool {
        let ruleset: crate::firewall::Ruleset = desired
            .instances
            .iter()
            .filter_map(|i| {
                let nic = i.nic.as_ref().filter(|n| n.filtered)?;
                let Ok(Some((ip, _))) = guest_address(nic) else {
                    tracing::warn!(
                        instance = i.instance_id,
                        "a filtered NIC without an address is not filtered"
                    );
                    return None;
                };
                Some((
                    crate::firewall::port_name(&i.instance_id),
                    crate::firewall::PortRules {
                        vni: nic.vni,
                        ip,
                        ipv6: nic.ipv6.split('/').next().and_then(|a| a.parse().ok()),
                        inbound: nic.inbound.clone(),
                        outbound: nic.outbound_restricted.then(|| nic.outbound.clone()),
                    },
                ))
            })
            .collect();
        match self.firewall.apply(&ruleset) {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(error = %e, ports = ruleset.len(), "firewall rules could not be applied");
                false
            }
        }
    }

    /// Removes the networks no desired instance uses any more; false if one could not be.
    pub(super) fn remove_unused_networks(&self, in_use: &HashSet<u32>) -> bool {
        let mut ok = true;
        match self.links.networks() {
            Ok(vnis) => {
                for vni in vnis.into_iter().filter(|v| !in_use.contains(v)) {
                    match self.links.remove_network(vni) {
                        Ok(()) => tracing::info!(vni, "tenant network removed from this host"),
                        Err(e) => {
                            ok = false;
                            tracing::warn!(vni, error = %e, "tenant network could not be removed");
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot list tenant networks"),
        }
        ok
    }
}

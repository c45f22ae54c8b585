//! `apply`'s side of private networks: making and deleting them, VNIs, and IPAM (an address
//! for each instance's NIC, held for the instance's life).

use std::net::Ipv4Addr;

use vmcloud_proto::{InstanceId, ProjectId, pb};

use crate::instances::types::Instance;
use crate::networks::types::{InstanceNic, Network, Subnet, default_network_id, mac_of};
use crate::state::{Applied, ApplyResult, ClusterState, Rejected};

/// Networks a project may have.
pub const MAX_PER_PROJECT: usize = 64;

/// What an instance's NIC will be, worked out before anything changes (so that a later refusal
/// of the create leaves nothing behind): the network (to make first, when it is the default
/// one and new) and the host number.
#[derive(Debug)]
pub(crate) struct NicPlan {
    new_network: Option<Network>,
    network: String,
    vni: u32,
    subnet: Subnet,
    host: u32,
}

fn invalid(msg: String) -> Rejected {
    Rejected::Invalid(msg)
}

impl ClusterState {
    /// The next VNI of `range` never given before; refused when the range is spent.
    fn next_vni(&self, range: Option<&pb::VniRange>) -> Result<u32, Rejected> {
        let range = range
            .filter(|r| r.first >= 1 && r.first <= r.last && r.last <= 0x00ff_ffff)
            .ok_or_else(|| invalid("the command carries no valid VNI range".into()))?;
        let vni = self.last_vni.saturating_add(1).max(range.first);
        if vni > range.last {
            return Err(Rejected::Conflict(format!(
                "every VNI of the range {}–{} has been given: the operators must widen the catalog's [networks] vni_range",
                range.first, range.last
            )));
        }
        Ok(vni)
    }

    /// `project`'s networks that may hold instances of the same region as one in `region`.
    fn overlapping<'a>(
        &'a self,
        project: &'a ProjectId,
        region: Option<&'a str>,
        subnet: &'a Subnet,
    ) -> impl Iterator<Item = &'a Network> + 'a {
        self.networks.values().filter(move |n| {
            n.project == *project && n.shares_a_region(region) && n.subnet.overlaps(subnet)
        })
    }

    pub(crate) fn create_network(&mut self, c: pb::CreateNetwork, at: i64) -> ApplyResult {
        let project =
            ProjectId::parse(&c.project_id).map_err(|e| Rejected::Invalid(e.to_string()))?;
        if !self.projects.contains_key(&project) {
            return Err(Rejected::NotFound(format!("project {project}")));
        }
        if self.networks.contains_key(&c.network_id) {
            return Err(Rejected::Exists(format!("network {}", c.network_id)));
        }
        let name = c.name.trim();
        if name.is_empty() || name.chars().count() > 63 {
            return Err(invalid(format!(
                "`name` must be 1 to 63 characters, not {:?}",
                c.name
            )));
        }
        let subnet =
            Subnet::parse_private(&c.subnet).map_err(|e| invalid(format!("`subnet`: {e}")))?;
        let region = (!c.region.is_empty()).then_some(c.region.clone());
        let mine: Vec<&Network> = self
            .networks
            .values()
            .filter(|n| n.project == project)
            .collect();
        if mine.len() >= MAX_PER_PROJECT {
            return Err(Rejected::Conflict(format!(
                "project {project} has {} networks, the most it may have; delete one first",
                mine.len()
            )));
        }
        if let Some(same) = mine.iter().find(|n| n.name == name) {
            return Err(Rejected::Conflict(format!(
                "project {project} already has a network named {name:?} ({}); choose another name",
                same.id
            )));
        }
        if let Some(other) = self
            .overlapping(&project, region.as_deref(), &subnet)
            .next()
        {
            return Err(invalid(format!(
                "`subnet` {subnet} overlaps {} ({}, {}) of this project: networks of one project that share a region must not overlap; choose another range",
                other.id, other.name, other.subnet
            )));
        }
        let vni = self.next_vni(c.vnis.as_ref())?;
        self.last_vni = vni;
        self.networks.insert(
            c.network_id.clone(),
            Network {
                id: c.network_id,
                project,
                name: name.to_owned(),
                subnet,
                region,
                vni,
                default: false,
                created_at_ms: at,
                addresses: Default::default(),
            },
        );
        Ok(Applied::Done)
    }

    pub(crate) fn delete_network(&mut self, c: pb::DeleteNetwork) -> ApplyResult {
        let n = self
            .networks
            .get(&c.network_id)
            .filter(|n| n.project.as_str() == c.project_id)
            .ok_or_else(|| Rejected::NotFound(format!("network {}", c.network_id)))?;
        if !n.addresses.is_empty() {
            let some: Vec<String> = n
                .addresses
                .values()
                .take(3)
                .map(ToString::to_string)
                .collect();
            return Err(Rejected::Conflict(format!(
                "network {} still has {} instance(s) ({}{}); delete them first",
                n.id,
                n.addresses.len(),
                some.join(", "),
                if n.addresses.len() > 3 { ", …" } else { "" }
            )));
        }
        self.networks.remove(&c.network_id);
        Ok(Applied::Done)
    }

    /// The project's default network for `region` as it would be made now: the first
    /// 10.x.0.0/24 that overlaps none of the project's networks there.
    fn new_default_network(
        &self,
        project: &ProjectId,
        region: &str,
        vnis: Option<&pb::VniRange>,
        at: i64,
    ) -> Result<Network, Rejected> {
        let subnet = (0..=255u8)
            .map(|x| Subnet {
                base: Ipv4Addr::new(10, x, 0, 0),
                prefix: 24,
            })
            .find(|s| self.overlapping(project, Some(region), s).next().is_none())
            .ok_or_else(|| {
                Rejected::Conflict(format!(
                    "no 10.x.0.0/24 is free among project {project}'s networks in {region} for its default network; name a network for the instance"
                ))
            })?;
        Ok(Network {
            id: default_network_id(project, region),
            project: project.clone(),
            name: format!("default-{region}"),
            subnet,
            region: Some(region.to_owned()),
            vni: self.next_vni(vnis)?,
            default: true,
            created_at_ms: at,
            addresses: Default::default(),
        })
    }

    /// Works out the NIC a new instance gets (see [`NicPlan`]); `None`: the command asks for
    /// none (simulations and benchmarks).
    pub(crate) fn plan_nic(
        &self,
        c: &pb::CreateInstance,
        project: &ProjectId,
        at: i64,
    ) -> Result<Option<NicPlan>, Rejected> {
        let (network, new_network) = if c.network_id.is_empty() {
            if c.vnis.is_none() {
                return Ok(None);
            }
            let id = default_network_id(project, &c.region);
            match self.networks.get(&id) {
                Some(n) => (n.clone(), None),
                None => {
                    let n = self.new_default_network(project, &c.region, c.vnis.as_ref(), at)?;
                    (n.clone(), Some(n))
                }
            }
        } else {
            let n = self
                .networks
                .get(&c.network_id)
                .filter(|n| n.project == *project)
                .ok_or_else(|| Rejected::NotFound(format!("network {}", c.network_id)))?;
            if !n.serves(&c.region) {
                return Err(invalid(format!(
                    "`network` {} is in region {}, not {}: choose a network of {} (or of every region)",
                    n.id,
                    n.region.as_deref().unwrap_or("-"),
                    c.region,
                    c.region
                )));
            }
            (n.clone(), None)
        };
        let subnet = network.subnet;
        let host = if c.private_ipv4.is_empty() {
            network.first_free().ok_or_else(|| {
                Rejected::Conflict(format!(
                    "network {} ({subnet}) has no free address: all {} are taken; use a larger network",
                    network.id,
                    subnet.assignable().len()
                ))
            })?
        } else {
            let ip: Ipv4Addr = c.private_ipv4.parse().map_err(|_| {
                invalid(format!(
                    "`private_ipv4` {:?} is not an IPv4 address",
                    c.private_ipv4
                ))
            })?;
            if !subnet.contains(ip) {
                return Err(invalid(format!(
                    "`private_ipv4` {ip} is outside network {}'s subnet {subnet}",
                    network.id
                )));
            }
            let host = subnet.host_number(ip);
            if !subnet.assignable().contains(&host) {
                return Err(invalid(format!(
                    "`private_ipv4` {ip} is reserved in {subnet} (the network and broadcast addresses, the gateway {} and the metadata address {}); choose from {} to {}",
                    subnet.gateway(),
                    subnet.host(2),
                    subnet.host(subnet.assignable().start),
                    subnet.host(subnet.assignable().end - 1)
                )));
            }
            if let Some(holder) = network.addresses.get(&host) {
                return Err(invalid(format!(
                    "`private_ipv4` {ip} is taken by instance {holder}; choose another or leave it out for the first free one"
                )));
            }
            host
        };
        Ok(Some(NicPlan {
            new_network,
            network: network.id.clone(),
            vni: network.vni,
            subnet,
            host,
        }))
    }

    /// Makes what [`plan_nic`](Self::plan_nic) worked out: the default network when new, and
    /// the address held for the instance.
    pub(crate) fn commit_nic(&mut self, plan: NicPlan, instance: &mut Instance) {
        if let Some(n) = plan.new_network {
            self.last_vni = self.last_vni.max(n.vni);
            self.networks.insert(n.id.clone(), n);
        }
        if let Some(n) = self.networks.get_mut(&plan.network) {
            n.addresses.insert(plan.host, instance.id.clone());
        }
        instance.nic = Some(InstanceNic {
            network: plan.network,
            vni: plan.vni,
            mac: mac_of(&instance.id),
            ipv4: plan.subnet.host(plan.host),
            prefix: plan.subnet.prefix,
        });
    }

    /// Gives back the address of an instance that left the state.
    pub(crate) fn release_nic(&mut self, id: &InstanceId, nic: &InstanceNic) {
        if let Some(n) = self.networks.get_mut(&nic.network) {
            let host = n.subnet.host_number(nic.ipv4);
            if n.addresses.get(&host) == Some(id) {
                n.addresses.remove(&host);
            }
        }
    }
}

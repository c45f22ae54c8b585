//! `apply`'s side of public addresses: taking one from a region's pools, floating IPs, reverse
//! DNS, and giving addresses back when their instance goes.

use std::net::Ipv4Addr;
use std::sync::Arc;

use vmcloud_proto::{InstanceId, ProjectId, pb};

use crate::instances::types::{Instance, InstanceState};
use crate::public_ips::types::{FloatingIp, Holder, check_reverse_dns, pool_range};
use crate::state::{Applied, ApplyResult, ClusterState, Rejected};

/// Floating IPs a project may hold.
pub const MAX_FLOATING_PER_PROJECT: usize = 32;

impl ClusterState {
    /// The first free address of `pool` (the region's CIDRs), or why there is none.
    pub(crate) fn free_public_ipv4(&self, region: &str, pool: &[String]) -> Result<u32, Rejected> {
        if pool.is_empty() {
            return Err(Rejected::Invalid(format!(
                "region {region} has no public IPv4 pool: public addresses are not offered there"
            )));
        }
        for cidr in pool {
            let Some((first, last)) = pool_range(cidr) else {
                continue;
            };
            let mut next = first;
            for (taken, _) in self.public_ips.range(first..=last) {
                if *taken != next {
                    break;
                }
                next += 1;
            }
            if next <= last {
                return Ok(next);
            }
        }
        Err(Rejected::Exhausted(format!(
            "every public IPv4 address of {region} ({}) is taken: release a floating IP you no longer use, or ask VMCloud's operators for more",
            pool.join(", ")
        )))
    }

    /// Gives an instance's own public address back and unassigns the floating IPs it had.
    pub(crate) fn forget_public_ips(&mut self, removed: &Instance) {
        if let Some(ip) = removed.public_ipv4 {
            self.stop_public_ip(u32::from(ip));
            self.public_ips.remove(&u32::from(ip));
        }
        for fip in &removed.floating_ips {
            if let Some(f) = self.floating_ips.get_mut(fip)
                && f.instance.as_ref() == Some(&removed.id)
            {
                f.instance = None;
            }
        }
    }

    /// The public addresses routed to an instance: its own, then its floating IPs'.
    pub fn public_ipv4s_of(&self, i: &Instance) -> Vec<Ipv4Addr> {
        i.public_ipv4
            .into_iter()
            .chain(
                i.floating_ips
                    .iter()
                    .filter_map(|f| self.floating_ips.get(f))
                    .map(|f| f.address),
            )
            .collect()
    }

    fn touch_host_of(&mut self, instance: &InstanceId) {
        if let Some(node) = self.instances.get(instance).and_then(|i| i.node.clone())
            && let Some(n) = self.nodes.get_mut(&node)
        {
            Arc::make_mut(n).generation += 1;
            self.generation_epoch.bump(&node);
        }
    }

    pub(crate) fn create_floating_ip(&mut self, c: pb::CreateFloatingIp, at: i64) -> ApplyResult {
        let project =
            ProjectId::parse(&c.project_id).map_err(|e| Rejected::Invalid(e.to_string()))?;
        if !self.projects.contains_key(&project) {
            return Err(Rejected::NotFound(format!("project {project}")));
        }
        if self.floating_ips.contains_key(&c.floating_ip_id) {
            return Err(Rejected::Exists(format!(
                "floating IP {}",
                c.floating_ip_id
            )));
        }
        let held = self
            .floating_ips
            .values()
            .filter(|f| f.project == project)
            .count();
        if held >= MAX_FLOATING_PER_PROJECT {
            return Err(Rejected::QuotaExceeded(format!(
                "project {project} holds {held} floating IPs, the most it may; delete one it no longer uses"
            )));
        }
        if c.description.chars().count() > 200 {
            return Err(Rejected::Invalid(
                "`description` is at most 200 characters".into(),
            ));
        }
        let address = self.free_public_ipv4(&c.region, &c.public_pool)?;
        self.public_ips.insert(
            address,
            Holder {
                project: project.clone(),
                region: c.region.clone(),
                by: c.floating_ip_id.clone(),
                reverse_dns: None,
                since_ms: at,
            },
        );
        self.floating_ips.insert(
            c.floating_ip_id.clone(),
            FloatingIp {
                id: c.floating_ip_id,
                project,
                region: c.region,
                address: Ipv4Addr::from(address),
                instance: None,
                description: c.description,
                created_at_ms: at,
            },
        );
        Ok(Applied::Done)
    }

    pub(crate) fn assign_floating_ip(&mut self, c: pb::AssignFloatingIp) -> ApplyResult {
        let f = self
            .floating_ips
            .get(&c.floating_ip_id)
            .filter(|f| f.project.as_str() == c.project_id)
            .ok_or_else(|| Rejected::NotFound(format!("floating IP {}", c.floating_ip_id)))?;
        let before = f.instance.clone();
        let after = if c.instance_id.is_empty() {
            None
        } else {
            let id =
                InstanceId::parse(&c.instance_id).map_err(|e| Rejected::Invalid(e.to_string()))?;
            let i = self
                .instances
                .get(&id)
                .filter(|i| i.project == f.project)
                .ok_or_else(|| Rejected::NotFound(format!("instance {id}")))?;
            if i.region != f.region {
                return Err(Rejected::Invalid(format!(
                    "floating IP {} ({}) is in {}, instance {id} in {}: a floating IP goes to instances of its own region",
                    f.id, f.address, f.region, i.region
                )));
            }
            if i.nic.is_none() {
                return Err(Rejected::Invalid(format!(
                    "instance {id} has no NIC to route {} to",
                    f.address
                )));
            }
            if i.state == InstanceState::Deleting {
                return Err(Rejected::Conflict(format!(
                    "instance {id} is being deleted"
                )));
            }
            Some(id)
        };
        if before == after {
            return Ok(Applied::Done);
        }
        let fip = c.floating_ip_id.clone();
        if let Some(old) = &before {
            if let Some(i) = self.instances.get_mut(old) {
                Arc::make_mut(i).floating_ips.retain(|x| *x != fip);
            }
            self.touch_host_of(old);
        }
        if let Some(new) = &after {
            if let Some(i) = self.instances.get_mut(new) {
                Arc::make_mut(i).floating_ips.push(fip.clone());
            }
            self.touch_host_of(new);
        }
        self.floating_ips
            .get_mut(&fip)
            .expect("found above")
            .instance = after;
        Ok(Applied::Done)
    }

    pub(crate) fn delete_floating_ip(&mut self, c: pb::DeleteFloatingIp) -> ApplyResult {
        let f = self
            .floating_ips
            .get(&c.floating_ip_id)
            .filter(|f| f.project.as_str() == c.project_id)
            .cloned()
            .ok_or_else(|| Rejected::NotFound(format!("floating IP {}", c.floating_ip_id)))?;
        if let Some(old) = &f.instance {
            if let Some(i) = self.instances.get_mut(old) {
                Arc::make_mut(i).floating_ips.retain(|x| *x != f.id);
            }
            self.touch_host_of(old);
        }
        self.stop_public_ip(u32::from(f.address));
        self.public_ips.remove(&u32::from(f.address));
        self.floating_ips.remove(&f.id);
        Ok(Applied::Done)
    }

    pub(crate) fn set_reverse_dns(&mut self, c: pb::SetReverseDns) -> ApplyResult {
        let ip: Ipv4Addr = c.address.parse().map_err(|_| {
            Rejected::Invalid(format!("`address` {:?} is not an IPv4 address", c.address))
        })?;
        if !c.name.is_empty() {
            check_reverse_dns(&c.name).map_err(Rejected::Invalid)?;
        }
        let holder = self
            .public_ips
            .get_mut(&u32::from(ip))
            .filter(|h| h.project.as_str() == c.project_id)
            .ok_or_else(|| Rejected::NotFound(format!("public address {ip} of this project")))?;
        holder.reverse_dns = (!c.name.is_empty()).then(|| c.name.trim_end_matches('.').to_owned());
        Ok(Applied::Done)
    }
}

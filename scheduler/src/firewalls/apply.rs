//! `apply`'s side of firewalls: making, changing, deleting, attaching; and which hosts must
//! hear of a change (those of the instances it filters, and of the instances filtered by rules
//! that name it as a peer).

use std::collections::BTreeSet;
use std::sync::Arc;

use vmcloud_proto::{InstanceId, NodeId, ProjectId, pb};

use crate::firewalls::types::{Firewall, MAX_PER_INSTANCE, rules_from_pb};
use crate::instances::types::{Instance, InstanceState};
use crate::state::{Applied, ApplyResult, ClusterState, Rejected};

/// How an instance's NIC is filtered.
#[derive(Debug, Default)]
pub struct NicFilter {
    /// Some firewall is attached: inbound is denied but for `inbound`.
    pub filtered: bool,
    pub inbound: Vec<pb::FirewallRule>,
    /// Outbound rules exist: outbound is denied but for `outbound`.
    pub outbound_restricted: bool,
    pub outbound: Vec<pb::FirewallRule>,
}

/// Firewalls a project may have.
pub const MAX_PER_PROJECT: usize = 50;

impl ClusterState {
    fn firewall_of(&self, id: &str, project: &str) -> Result<&Firewall, Rejected> {
        self.firewalls
            .get(id)
            .filter(|f| f.project.as_str() == project)
            .ok_or_else(|| Rejected::NotFound(format!("firewall {id}")))
    }

    /// Checks that every peer a rule names is a firewall of `project` (or `itself`).
    fn check_peers(
        &self,
        project: &ProjectId,
        itself: &str,
        rules: &[crate::firewalls::types::Rule],
    ) -> Result<(), Rejected> {
        for (n, r) in rules.iter().enumerate() {
            if let Some(peer) = &r.peer_firewall
                && peer != itself
                && self
                    .firewalls
                    .get(peer)
                    .is_none_or(|f| f.project != *project)
            {
                return Err(Rejected::Invalid(format!(
                    "`rules[{n}].peer_firewall` {peer} is not a firewall of project {project}"
                )));
            }
        }
        Ok(())
    }

    pub(crate) fn create_firewall(&mut self, c: pb::CreateFirewall, at: i64) -> ApplyResult {
        let project =
            ProjectId::parse(&c.project_id).map_err(|e| Rejected::Invalid(e.to_string()))?;
        if !self.projects.contains_key(&project) {
            return Err(Rejected::NotFound(format!("project {project}")));
        }
        if self.firewalls.contains_key(&c.firewall_id) {
            return Err(Rejected::Exists(format!("firewall {}", c.firewall_id)));
        }
        let name = c.name.trim();
        if name.is_empty() || name.chars().count() > 63 {
            return Err(Rejected::Invalid(format!(
                "`name` must be 1 to 63 characters, not {:?}",
                c.name
            )));
        }
        let mine: Vec<&Firewall> = self
            .firewalls
            .values()
            .filter(|f| f.project == project)
            .collect();
        if mine.len() >= MAX_PER_PROJECT {
            return Err(Rejected::Conflict(format!(
                "project {project} has {} firewalls, the most it may have; delete one first",
                mine.len()
            )));
        }
        if let Some(same) = mine.iter().find(|f| f.name == name) {
            return Err(Rejected::Conflict(format!(
                "project {project} already has a firewall named {name:?} ({}); choose another name",
                same.id
            )));
        }
        let rules = rules_from_pb(&c.rules).map_err(Rejected::Invalid)?;
        self.check_peers(&project, &c.firewall_id, &rules)?;
        self.firewalls.insert(
            c.firewall_id.clone(),
            Firewall {
                id: c.firewall_id,
                project,
                name: name.to_owned(),
                rules,
                instances: BTreeSet::new(),
                created_at_ms: at,
            },
        );
        Ok(Applied::Done)
    }

    pub(crate) fn set_firewall_rules(&mut self, c: pb::SetFirewallRules) -> ApplyResult {
        let project = self
            .firewall_of(&c.firewall_id, &c.project_id)?
            .project
            .clone();
        let rules = rules_from_pb(&c.rules).map_err(Rejected::Invalid)?;
        self.check_peers(&project, &c.firewall_id, &rules)?;
        let f = self.firewalls.get_mut(&c.firewall_id).expect("found above");
        f.rules = rules;
        let filtered: Vec<InstanceId> = f.instances.iter().cloned().collect();
        self.touch_hosts_of(filtered);
        Ok(Applied::Done)
    }

    pub(crate) fn delete_firewall(&mut self, c: pb::DeleteFirewall) -> ApplyResult {
        let f = self.firewall_of(&c.firewall_id, &c.project_id)?;
        if !f.instances.is_empty() {
            return Err(Rejected::Conflict(format!(
                "firewall {} is attached to {} instance(s); detach it first",
                f.id,
                f.instances.len()
            )));
        }
        if let Some(other) = self.firewalls.values().find(|o| {
            o.id != f.id
                && o.rules
                    .iter()
                    .any(|r| r.peer_firewall.as_deref() == Some(f.id.as_str()))
        }) {
            return Err(Rejected::Conflict(format!(
                "firewall {} is named as a peer by rules of firewall {} ({}); change those rules first",
                f.id, other.id, other.name
            )));
        }
        self.firewalls.remove(&c.firewall_id);
        Ok(Applied::Done)
    }

    pub(crate) fn attach_firewall(&mut self, c: pb::AttachFirewall) -> ApplyResult {
        self.firewall_of(&c.firewall_id, &c.project_id)?;
        let id = InstanceId::parse(&c.instance_id).map_err(|e| Rejected::Invalid(e.to_string()))?;
        let instance = self
            .instances
            .get(&id)
            .filter(|i| i.project.as_str() == c.project_id)
            .ok_or_else(|| Rejected::NotFound(format!("instance {id}")))?;
        let attached = instance.firewalls.contains(&c.firewall_id);
        if c.detach {
            if !attached {
                return Ok(Applied::Done);
            }
        } else {
            if attached {
                return Ok(Applied::Done);
            }
            if instance.nic.is_none() {
                return Err(Rejected::Invalid(format!(
                    "instance {id} has no NIC on a private network, so nothing to filter"
                )));
            }
            if instance.state == InstanceState::Deleting {
                return Err(Rejected::Conflict(format!(
                    "instance {id} is being deleted"
                )));
            }
            if instance.firewalls.len() >= MAX_PER_INSTANCE {
                return Err(Rejected::Conflict(format!(
                    "instance {id} has {} firewalls, the most it may have; detach one first",
                    instance.firewalls.len()
                )));
            }
        }
        let i = Arc::make_mut(self.instances.get_mut(&id).expect("found above"));
        let f = self.firewalls.get_mut(&c.firewall_id).expect("found above");
        if c.detach {
            i.firewalls.retain(|x| *x != c.firewall_id);
            f.instances.remove(&id);
        } else {
            i.firewalls.push(c.firewall_id.clone());
            f.instances.insert(id.clone());
        }
        self.touch_hosts_of([id]);
        self.firewall_members_changed(&c.firewall_id);
        Ok(Applied::Done)
    }

    /// An instance that left the state leaves its firewalls.
    pub(crate) fn forget_firewalls(&mut self, removed: &Instance) {
        for fw in &removed.firewalls {
            if let Some(f) = self.firewalls.get_mut(fw) {
                f.instances.remove(&removed.id);
            }
        }
        for fw in &removed.firewalls {
            self.firewall_members_changed(fw);
        }
    }

    /// `firewall`'s instances changed: rules that name it as a peer now mean other
    /// addresses, so the hosts of the instances those rules filter hear of it.
    fn firewall_members_changed(&mut self, firewall: &str) {
        let filtered: Vec<InstanceId> = self
            .firewalls
            .values()
            .filter(|f| {
                f.rules
                    .iter()
                    .any(|r| r.peer_firewall.as_deref() == Some(firewall))
            })
            .flat_map(|f| f.instances.iter().cloned())
            .collect();
        self.touch_hosts_of(filtered);
    }

    /// The hosts of `instances` get a new desired config.
    fn touch_hosts_of(&mut self, instances: impl IntoIterator<Item = InstanceId>) {
        let nodes: BTreeSet<NodeId> = instances
            .into_iter()
            .filter_map(|id| self.instances.get(&id)?.node.clone())
            .collect();
        for node in nodes {
            if let Some(n) = self.nodes.get_mut(&node) {
                Arc::make_mut(n).generation += 1;
                self.generation_epoch.bump(&node);
            }
        }
    }

    /// The filtering of an instance's NIC, as its host applies it (see `DesiredNic`).
    pub fn firewall_of_instance(&self, i: &Instance) -> NicFilter {
        let mut out = NicFilter::default();
        for f in i.firewalls.iter().filter_map(|id| self.firewalls.get(id)) {
            out.filtered = true;
            for r in &f.rules {
                if r.direction == crate::firewalls::types::Direction::Outbound {
                    out.outbound_restricted = true;
                }
                let peers = r.peer_firewall.as_ref().map(|peer| {
                    self.firewalls
                        .get(peer)
                        .into_iter()
                        .flat_map(|p| p.instances.iter())
                        .filter_map(|id| self.instances.get(id)?.nic.as_ref())
                        .map(|nic| format!("{}/32", nic.ipv4))
                        .collect::<Vec<String>>()
                });
                // A peer with no instances allows nobody (not everybody).
                if r.cidrs.is_empty() && peers.as_ref().is_some_and(Vec::is_empty) {
                    continue;
                }
                let rule = r.to_pb(peers);
                match r.direction {
                    crate::firewalls::types::Direction::Inbound => out.inbound.push(rule),
                    crate::firewalls::types::Direction::Outbound => out.outbound.push(rule),
                }
            }
        }
        out
    }
}

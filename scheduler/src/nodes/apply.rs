//! Applying node commands: registration, operator states, GPU health, labels, lost hosts,
//! and replicas announcing themselves.

use std::sync::Arc;

use vmcloud_proto::pb;
use vmcloud_proto::{InstanceId, NodeId};

use crate::instances::types::{InstanceState, Market};
use crate::nodes::types::{Node, NodeState, ReplicaAddrs};
use crate::state::{Applied, ApplyResult, ClusterState, Rejected};
use std::collections::BTreeSet;
use vmcloud_proto::JobId;

/// The node `raw` names; the error says whether the name or the node was wrong.
fn node_mut<'a>(
    nodes: &'a mut imbl::OrdMap<NodeId, Arc<Node>>,
    raw: &str,
) -> Result<(NodeId, &'a mut Node), Rejected> {
    let id = NodeId::parse(raw).map_err(|e| Rejected::Invalid(e.to_string()))?;
    let node = nodes
        .get_mut(&id)
        .map(Arc::make_mut)
        .ok_or_else(|| Rejected::NotFound(format!("node {id}")))?;
    Ok((id, node))
}

impl ClusterState {
    pub(crate) fn announce_replica(&mut self, c: pb::AnnounceReplica) -> ApplyResult {
        self.replicas.insert(
            c.replica_id,
            ReplicaAddrs {
                gateway: c.gateway_addr,
                api: c.api_addr,
            },
        );
        Ok(Applied::Done)
    }

    pub(crate) fn register_node(&mut self, c: pb::RegisterNode, at: i64) -> ApplyResult {
        self.capacity_epoch += 1;
        let id = NodeId::parse(&c.node_id).map_err(|e| Rejected::Invalid(e.to_string()))?;
        let inv = c.inventory.unwrap_or_default();
        let build = c.build.unwrap_or_default();
        if let Some(prefix) = crate::nodes::types::parse_prefix64(&inv.ipv6_prefix)
            && let Some(other) = self
                .nodes
                .values()
                .find(|n| n.id != id && n.ipv6_prefix == Some(prefix))
        {
            return Err(Rejected::Conflict(format!(
                "host {id} reports the IPv6 prefix {}, which host {} has: each host needs a /64 of its own (--ipv6-prefix)",
                inv.ipv6_prefix, other.id
            )));
        }
        // A partner's host (it joined with the partner's token) stays in the partner's POPs.
        let partner = self
            .nodes
            .get(&id)
            .and_then(|n| n.partner.clone())
            .or_else(|| {
                self.join_tokens
                    .values()
                    .filter(|t| t.node == id && t.used_at_ms.is_some())
                    .max_by_key(|t| t.used_at_ms)
                    .and_then(|t| t.partner.clone())
            });
        if let Some(p) = &partner {
            let pops = self
                .partners
                .get(p)
                .map(|p| p.pops.clone())
                .unwrap_or_default();
            if !pops.contains(&inv.region) {
                return Err(Rejected::Forbidden(format!(
                    "host {id} joined with partner {p}'s token: it may only be in its POPs ({}), not in `{}`",
                    pops.join(", "),
                    inv.region
                )));
            }
        }
        self.index.usage.entry(id.clone()).or_default();
        // The inventory is replaced; what operators set (state, labels, pools, drain) and
        // what the node went through (generation, first registration, a down) stay.
        let node = self
            .nodes
            .entry(id.clone())
            .or_insert_with(|| Arc::new(Node::new(id, at)));
        let node = Arc::make_mut(node);
        node.take_inventory(inv, build);
        node.partner = partner;
        Ok(Applied::Done)
    }

    /// An operator's change of a host's state, and what it means for what runs there.
    pub(crate) fn set_node_state(&mut self, c: pb::SetNodeState, at: i64) -> ApplyResult {
        let state = NodeState::from_pb(c.state())
            .ok_or_else(|| Rejected::Invalid("no node state given".into()))?;
        let (id, node) = node_mut(&mut self.nodes, &c.node_id)?;
        let before = node.state;
        let was_liveness_down = node.down_by_liveness;
        node.state = state;
        node.state_reason = (!c.reason.is_empty()).then_some(c.reason.clone());
        if state != NodeState::Down {
            node.down_since_ms = None;
            node.down_by_liveness = false;
        } else if before != NodeState::Down {
            node.down_since_ms = Some(at);
            node.down_by_liveness = c.by_liveness;
        } else if !c.by_liveness {
            node.down_by_liveness = false;
        }
        node.drain_deadline_ms =
            (state == NodeState::Draining && c.deadline_unix_ms > 0).then_some(c.deadline_unix_ms);
        let deadline = node.drain_deadline_ms;
        if state == NodeState::Ready && before != NodeState::Ready {
            self.capacity_epoch += 1;
        }
        let reason = if c.reason.is_empty() {
            String::new()
        } else {
            format!(" ({})", c.reason)
        };
        if state == before {
            if state == NodeState::Down && was_liveness_down && !c.by_liveness {
                // An operator confirms the host is gone: what waited for its lost_after is
                // lost now.
                let waiting: Vec<InstanceId> = self
                    .instances
                    .values()
                    .filter(|i| {
                        i.node.as_ref() == Some(&id)
                            && i.state != InstanceState::Deleting
                            && (i.job.is_some() || i.session.is_some())
                    })
                    .map(|i| i.id.clone())
                    .collect();
                self.lose(&id, &waiting, &reason, at);
            }
            return Ok(Applied::Done);
        }
        let on_node: Vec<InstanceId> = self
            .instances
            .values()
            .filter(|i| i.node.as_ref() == Some(&id) && i.state != InstanceState::Deleting)
            .map(|i| i.id.clone())
            .collect();
        let mut changed = false;
        let mut lost: Vec<InstanceId> = Vec::new();
        let mut spot_jobs: Vec<(JobId, i64)> = Vec::new();
        for iid in on_node {
            let instance = self
                .instances
                .get_mut(&iid)
                .map(Arc::make_mut)
                .expect("listed above");
            match state {
                NodeState::Down if instance.job.is_some() || instance.session.is_some() => {
                    if c.by_liveness {
                        // Its agent may only be cut off: the leader loses it after its
                        // class's lost_after unless the host comes back first.
                        instance.notify(
                            at,
                            format!("host {id} is down{reason}: this {} is lost unless its host comes back soon", instance.kind()),
                        );
                    } else {
                        lost.push(iid);
                    }
                }
                NodeState::Draining if instance.preemptible() => {
                    // Spot work gets its notice now (cut short by the drain's deadline).
                    let mut until = at + i64::from(instance.preemption_notice_s) * 1000;
                    if let Some(d) = deadline {
                        until = until.min(d.max(at));
                    }
                    let until = Self::give_notice(
                        &mut self.index.terminating,
                        &mut self.webhook_pending,
                        instance,
                        until,
                        at,
                    );
                    instance.notify(
                        at,
                        format!(
                            "host {id} is draining{reason}: this spot {} stops at {}",
                            instance.kind(),
                            crate::clock::rfc3339(until)
                        ),
                    );
                    if let Some(job) = &instance.job {
                        spot_jobs.push((job.id.clone(), until));
                    }
                    changed = true;
                }
                NodeState::Draining => instance.notify(
                    at,
                    match deadline {
                        Some(d) => format!(
                            "host {id} is draining{reason} and must be empty by {}; this instance keeps running until you or an operator stop it (VMs with local disks are not moved)",
                            crate::clock::rfc3339(d)
                        ),
                        None => format!(
                            "host {id} is draining{reason}; this instance keeps running until you or an operator stop it (VMs with local disks are not moved)"
                        ),
                    },
                ),
                NodeState::Maintenance => instance.notify(
                    at,
                    format!("host {id} is entering maintenance{reason}"),
                ),
                NodeState::Down => {
                    if instance.market == Market::Spot {
                        // Spot work on a lost host is over; if the host comes back, its agent
                        // removes it.
                        instance.status_message = Some(format!("host {id} is down{reason}"));
                        instance.notify(at, format!("host {id} is down{reason}: this spot instance has ended"));
                        Self::begin_delete(
                    &mut self.nodes,
                    &mut self.generation_epoch,
                    crate::instances::apply::Meter::of(&mut self.billing, &mut self.gaming, &self.projects),
                    instance,
                    at,
                );
                    } else {
                        // Never silently recreated elsewhere: its disk is on that host.
                        instance.state = InstanceState::Impaired;
                        instance.outage_since_ms.get_or_insert(at);
                        instance.status_message = Some(format!("host {id} is down{reason}"));
                        instance.notify(
                            at,
                            format!(
                                "host {id} is down{reason}: this instance is impaired; it comes back with the host, or you may delete it and create another"
                            ),
                        );
                    }
                }
                NodeState::Ready if before == NodeState::Down => {
                    crate::billing::sla::close_outage(
                        &mut self.billing.incidents,
                        &self.projects,
                        &id,
                        instance,
                        at,
                    );
                    instance.notify(
                        at,
                        format!("host {id} is back; the instance's state follows its agent's next report"),
                    )
                }
                NodeState::Ready | NodeState::Cordoned => {}
            }
        }
        if changed && let Some(node) = self.nodes.get_mut(&id).map(Arc::make_mut) {
            node.generation += 1;
            self.generation_epoch.bump(&id);
        }
        for (job, until) in spot_jobs {
            self.reclaim_job(&job, until, at);
        }
        self.lose(&id, &lost, &reason, at);
        // Waiting workloads nominated to a host that no longer takes work look again.
        if state != NodeState::Ready {
            let nominated: Vec<InstanceId> = self
                .instances
                .values()
                .filter(|i| i.nominated_node.as_ref() == Some(&id))
                .map(|i| i.id.clone())
                .collect();
            for n in nominated {
                if let Some(i) = self.instances.get_mut(&n).map(Arc::make_mut) {
                    i.nominated_node = None;
                    i.pending_reason = Some(crate::instances::types::WAITING_FOR_PLACEMENT.into());
                }
            }
        }
        Ok(Applied::Done)
    }

    /// The GPUs a node's agent will not give out (the rest are healthy).
    pub(crate) fn set_gpu_health(&mut self, c: pb::SetGpuHealth) -> ApplyResult {
        let (_, node) = node_mut(&mut self.nodes, &c.node_id)?;
        let mut healed = false;
        for gpu in &mut node.gpus {
            let now = c
                .unhealthy
                .iter()
                .find(|u| u.pci_address == gpu.pci_address.as_str())
                .map(|u| u.reason.clone());
            healed |= gpu.unhealthy.is_some() && now.is_none();
            gpu.unhealthy = now;
        }
        if healed {
            self.capacity_epoch += 1;
        }
        Ok(Applied::Done)
    }

    pub(crate) fn lose_instances(&mut self, c: pb::LoseInstances, at: i64) -> ApplyResult {
        let id = NodeId::parse(&c.node_id).map_err(|e| Rejected::Invalid(e.to_string()))?;
        let node = self
            .nodes
            .get(&id)
            .ok_or_else(|| Rejected::NotFound(format!("node {id}")))?;
        if node.state != NodeState::Down {
            // The host came back first: its workloads go on.
            return Ok(Applied::Done);
        }
        let ids: Vec<InstanceId> = c
            .instance_ids
            .iter()
            .filter_map(|i| InstanceId::parse(i).ok())
            .filter(|i| {
                self.instances.get(i).is_some_and(|i| {
                    i.node.as_ref() == Some(&id)
                        && i.state != InstanceState::Deleting
                        && (i.job.is_some() || i.session.is_some())
                })
            })
            .collect();
        let reason = if c.reason.is_empty() {
            String::new()
        } else {
            format!(" ({})", c.reason)
        };
        self.lose(&id, &ids, &reason, at);
        Ok(Applied::Done)
    }

    /// Jobs and sessions on a lost host: a session ends (the gamer is better served by a new
    /// launch than by waiting for the host); a job starts again from the queue, all members
    /// together (batch work restarts from its checkpoints). If the host comes back, its
    /// desired config no longer holds them and its agent removes them: one copy of each.
    pub(crate) fn lose(&mut self, id: &NodeId, lost: &[InstanceId], reason: &str, at: i64) {
        let mut requeue: BTreeSet<JobId> = BTreeSet::new();
        for iid in lost {
            let Some(instance) = self.instances.get_mut(iid).map(Arc::make_mut) else {
                continue;
            };
            if let Some(job) = &instance.job {
                requeue.insert(job.id.clone());
            } else if instance.session.is_some() {
                instance.status_message = Some(format!("host {id} is down{reason}"));
                instance.notify(
                    at,
                    format!("host {id} is down{reason}: this session has ended; launch it again"),
                );
                Self::begin_delete(
                    &mut self.nodes,
                    &mut self.generation_epoch,
                    crate::instances::apply::Meter::of(
                        &mut self.billing,
                        &mut self.gaming,
                        &self.projects,
                    ),
                    instance,
                    at,
                );
            }
        }
        for job in requeue {
            self.capacity_epoch += 1;
            let members: Vec<InstanceId> = self
                .instances
                .values()
                .filter(|i| i.job.as_ref().is_some_and(|j| j.id == job) && i.node.is_some())
                .map(|i| i.id.clone())
                .collect();
            for m in members {
                if let Some(node) = self.instances[&m]
                    .node
                    .as_ref()
                    .and_then(|n| self.nodes.get_mut(n).map(Arc::make_mut))
                {
                    node.generation += 1;
                    self.generation_epoch.bump(&node.id);
                }
                self.unplace(&m);
                let i = self
                    .instances
                    .get_mut(&m)
                    .map(Arc::make_mut)
                    .expect("listed above");
                i.running_at_ms = None;
                let message = format!(
                    "requeued: host {id} is down{reason}; job {job} starts again when its members fit"
                );
                i.pending_reason = Some(message.clone());
                i.notify(at, message);
            }
        }
    }

    pub(crate) fn set_node_labels(&mut self, c: pb::SetNodeLabels) -> ApplyResult {
        let (_, node) = node_mut(&mut self.nodes, &c.node_id)?;
        node.labels = c.labels.into_iter().collect();
        node.pools = c.pools.into_iter().collect();
        self.capacity_epoch += 1;
        Ok(Applied::Done)
    }
}

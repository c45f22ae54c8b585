//! Applying reservations: admission (re-checked against the newest state), slots taken by
//! reserved instances, expiry; and the pure choice of hosts for a new reservation.

use std::sync::Arc;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use vmcloud_proto::pb;
use vmcloud_proto::{GpuBinding, NodeId, ProjectId, ReservationId};

use crate::clock::rfc3339;
use crate::instances::types::{GpuRequest, Instance, Market};
use crate::nodes::types::{Node, NodeState};
use crate::reservations::types::{Held, MAX_SLOTS, Reservation, Slot};
use crate::state::{Applied, ApplyResult, ClusterState, Rejected};

/// How many more slots of a reservation's shape `node` can hold, given what non-spot work
/// uses there and what is held already.
fn room_for(node: &Node, used: &NonSpot, held: &Held, shape: &pb::CreateReservation) -> u32 {
    let vcpus = node
        .allocatable_vcpus()
        .saturating_sub(used.vcpus + held.vcpus);
    let memory = node
        .allocatable_memory_mib()
        .saturating_sub(used.memory_mib + held.memory_mib);
    let mut room = (vcpus / shape.vcpus.max(1))
        .min(u32::try_from(memory / shape.memory_mib.max(1)).unwrap_or(u32::MAX));
    let with_model = node
        .gpus
        .iter()
        .filter(|g| g.model == shape.gpu_model && !g.mig)
        .count() as u32;
    let free_gpus = with_model.saturating_sub(used.gpus + held.gpus);
    if let Some(gpu_room) = free_gpus.checked_div(shape.gpu_count) {
        room = room.min(gpu_room);
    }
    room
}

/// What non-spot work holds on a host: the part of its capacity that evicting spot cannot
/// free.
#[derive(Debug, Default, Clone, Copy)]
struct NonSpot {
    vcpus: u32,
    memory_mib: u64,
    gpus: u32,
}

fn non_spot_usage<'a>(
    state: &ClusterState,
    nodes: impl IntoIterator<Item = &'a NodeId>,
) -> HashMap<NodeId, NonSpot> {
    let mut out: HashMap<NodeId, NonSpot> = nodes
        .into_iter()
        .map(|n| (n.clone(), NonSpot::default()))
        .collect();
    for i in state.instances.values() {
        if i.market == Market::Spot {
            continue;
        }
        if let Some(u) = i.node.as_ref().and_then(|n| out.get_mut(n)) {
            u.vcpus += i.vcpus;
            u.memory_mib += i.memory_mib;
            u.gpus += i
                .gpus
                .iter()
                .filter(|g| matches!(g, GpuBinding::Whole(_)))
                .count() as u32;
        }
    }
    out
}

/// A host may hold slots when it is ready, in the general fleet and in the region.
fn may_hold(node: &Node, region: &str) -> bool {
    node.region == region && node.state == NodeState::Ready && node.pools.is_empty()
}

/// Chooses a host for each slot of a reservation request, on a snapshot: hosts that fit the
/// fewest slots first (bin-packing keeps big hosts whole), then by node id. The error says
/// how many slots could be held and why not more.
pub fn plan_reservation(
    state: &ClusterState,
    req: &pb::CreateReservation,
) -> Result<Vec<NodeId>, String> {
    let hosts: Vec<&Node> = state
        .nodes
        .values()
        .filter(|n| n.region == req.region)
        .map(|n| &**n)
        .collect();
    let usable: Vec<&Node> = hosts
        .iter()
        .copied()
        .filter(|n| may_hold(n, &req.region))
        .collect();
    let used = non_spot_usage(state, usable.iter().map(|n| &n.id));
    let mut rooms: Vec<(u32, &NodeId)> = usable
        .iter()
        .map(|n| {
            let held = state.usage(&n.id).held;
            (room_for(n, &used[&n.id], &held, req), &n.id)
        })
        .filter(|(room, _)| *room > 0)
        .collect();
    rooms.sort();
    let mut slots = Vec::with_capacity(req.count as usize);
    for (room, node) in rooms {
        let take = room.min(req.count - slots.len() as u32);
        slots.extend(std::iter::repeat_n(node.clone(), take as usize));
        if slots.len() as u32 == req.count {
            return Ok(slots);
        }
    }
    Err(format!(
        "only {} of {} {} slots can be held in {} now: {} hosts, {} of them ready and in the general fleet; the rest of their capacity is used by on-demand and reserved work or held for other reservations",
        slots.len(),
        req.count,
        req.flavor,
        req.region,
        hosts.len(),
        usable.len()
    ))
}

impl ClusterState {
    pub(crate) fn create_reservation(&mut self, c: pb::CreateReservation, at: i64) -> ApplyResult {
        let id = ReservationId::parse(&c.reservation_id)
            .map_err(|e| Rejected::Invalid(e.to_string()))?;
        let project =
            ProjectId::parse(&c.project_id).map_err(|e| Rejected::Invalid(e.to_string()))?;
        if !self.projects.contains_key(&project) {
            return Err(Rejected::NotFound(format!("project {project}")));
        }
        if self.reservations.contains_key(&id) {
            return Err(Rejected::Exists(format!("reservation {id}")));
        }
        self.check_reservation_quota(&project, &c.region)?;
        if c.count == 0 || c.count > MAX_SLOTS || c.slot_nodes.len() != c.count as usize {
            return Err(Rejected::Invalid(format!(
                "a reservation holds 1 to {MAX_SLOTS} slots, one node each"
            )));
        }
        if c.end_unix_ms <= c.start_unix_ms || c.end_unix_ms <= at {
            return Err(Rejected::Invalid(
                "a reservation must end after it starts and in the future".into(),
            ));
        }
        // Re-check the leader's choice against the newest state: every slot must be backed by
        // capacity that only spot work uses.
        let mut wanted: BTreeMap<NodeId, u32> = BTreeMap::new();
        for n in &c.slot_nodes {
            let node = NodeId::parse(n).map_err(|e| Rejected::Invalid(e.to_string()))?;
            *wanted.entry(node).or_default() += 1;
        }
        let used = non_spot_usage(self, wanted.keys());
        for (node_id, n) in &wanted {
            let node = self
                .nodes
                .get(node_id)
                .filter(|node| may_hold(node, &c.region))
                .ok_or_else(|| {
                    Rejected::Conflict(format!(
                        "host {node_id} can no longer hold a slot in {}; try again",
                        c.region
                    ))
                })?;
            let held = self.usage(node_id).held;
            if room_for(node, &used[node_id], &held, &c) < *n {
                return Err(Rejected::Conflict(format!(
                    "the capacity chosen on {node_id} was taken meanwhile; try again"
                )));
            }
        }
        let reservation = Reservation {
            id: id.clone(),
            project,
            region: c.region,
            flavor: c.flavor,
            vcpus: c.vcpus,
            memory_mib: c.memory_mib,
            disk_gib: c.disk_gib,
            gpu: (c.gpu_count > 0).then_some(GpuRequest {
                model: c.gpu_model,
                count: c.gpu_count,
                mig_profile: None,
            }),
            count: c.count,
            start_ms: c.start_unix_ms,
            end_ms: c.end_unix_ms,
            created_at_ms: at,
            slots: c
                .slot_nodes
                .iter()
                .map(|n| Slot {
                    node: NodeId::parse(n).expect("parsed above"),
                    instance: None,
                })
                .collect(),
            instances: BTreeSet::new(),
            expired: false,
            billed_to_ms: None,
        };
        for s in &reservation.slots {
            self.held_mut(&s.node).add(&reservation);
        }
        self.reservations.insert(id, reservation.clone());
        Ok(Applied::Reservation(Box::new(reservation)))
    }

    /// Checks that a new reserved instance may draw on the reservation it names and records
    /// it there.
    pub(crate) fn admit_reserved(&mut self, instance: &Instance, at: i64) -> Result<(), Rejected> {
        let rid = instance
            .reservation
            .as_ref()
            .ok_or_else(|| Rejected::Invalid("a reserved instance names its reservation".into()))?;
        let r = self
            .reservations
            .get_mut(rid)
            .filter(|r| r.project == instance.project)
            .ok_or_else(|| Rejected::NotFound(format!("reservation {rid}")))?;
        if !r.active_at(at) {
            return Err(Rejected::Conflict(format!(
                "reservation {rid} is {} (it runs from {} to {})",
                r.status_at(at),
                rfc3339(r.start_ms),
                rfc3339(r.end_ms)
            )));
        }
        if !r.shape_matches(instance) {
            return Err(Rejected::Conflict(format!(
                "reservation {rid} holds {} in {}; create the instance with that flavor and region",
                r.flavor, r.region
            )));
        }
        if r.instances.len() >= r.count as usize {
            return Err(Rejected::Conflict(format!(
                "all {} slots of reservation {rid} are in use; delete one of its instances or create this one on demand",
                r.count
            )));
        }
        r.instances.insert(instance.id.clone());
        Ok(())
    }

    /// A reserved instance placed on `node` takes a free slot there.
    pub(crate) fn bind_slot(&mut self, instance: &Instance, node: &NodeId) -> bool {
        let Some(r) = instance
            .reservation
            .as_ref()
            .and_then(|rid| self.reservations.get_mut(rid))
        else {
            return false;
        };
        let Some(slot) = r
            .slots
            .iter_mut()
            .find(|s| &s.node == node && s.instance.is_none())
        else {
            return false;
        };
        slot.instance = Some(instance.id.clone());
        let r = r.clone();
        self.held_mut(node).remove(&r);
        true
    }

    /// An instance drawing on a reservation is gone: its slot, if it had one, is held again.
    pub(crate) fn release_slot(&mut self, instance: &Instance) {
        let Some(r) = instance
            .reservation
            .as_ref()
            .and_then(|rid| self.reservations.get_mut(rid))
        else {
            return;
        };
        r.instances.remove(&instance.id);
        let Some(slot) = r
            .slots
            .iter_mut()
            .find(|s| s.instance.as_ref() == Some(&instance.id))
        else {
            return;
        };
        slot.instance = None;
        let (node, r) = (slot.node.clone(), r.clone());
        self.held_mut(&node).add(&r);
        self.capacity_epoch += 1;
    }

    /// Ends reservations whose time is up: nothing is held any more, and their instances go
    /// on running on demand (their owners are told).
    pub(crate) fn expire_reservations(
        &mut self,
        c: pb::ExpireReservations,
        at: i64,
    ) -> ApplyResult {
        for rid in c.reservation_ids {
            let Ok(rid) = ReservationId::parse(&rid) else {
                continue;
            };
            let Some(r) = self.reservations.get_mut(&rid) else {
                continue;
            };
            if r.expired || r.end_ms > at {
                continue;
            }
            r.expired = true;
            let slots = std::mem::take(&mut r.slots);
            let instances = std::mem::take(&mut r.instances);
            let r = r.clone();
            for s in slots.iter().filter(|s| s.instance.is_none()) {
                self.held_mut(&s.node).remove(&r);
            }
            for iid in instances {
                if let Some(i) = self.instances.get_mut(&iid).map(Arc::make_mut) {
                    i.market = Market::OnDemand;
                    i.reservation = None;
                    i.notify(
                        at,
                        format!(
                            "reservation {rid} has ended: this instance goes on running on demand"
                        ),
                    );
                }
            }
            self.capacity_epoch += 1;
        }
        Ok(Applied::Done)
    }

    /// The earliest end of a reservation still holding capacity, and those ended by `now_ms`.
    pub fn reservations_ending(&self, now_ms: i64) -> (Option<i64>, Vec<ReservationId>) {
        let mut next: Option<i64> = None;
        let mut due = Vec::new();
        for r in self.reservations.values().filter(|r| !r.expired) {
            if r.end_ms <= now_ms {
                due.push(r.id.clone());
            } else {
                next = Some(next.map_or(r.end_ms, |n| n.min(r.end_ms)));
            }
        }
        (next, due)
    }

    /// Checks invariant 4 on every host: non-spot work plus held capacity fits the host, so
    /// evicting spot always frees a reserved slot. Gives the first host where it does not.
    pub fn check_reservations_backed(&self) -> Result<(), String> {
        let used = non_spot_usage(self, self.nodes.keys());
        for (id, node) in &self.nodes {
            let u = &used[id];
            let held = self.usage(id).held;
            let gpus = node.whole_gpus() as u32;
            if u.vcpus + held.vcpus > node.allocatable_vcpus()
                || u.memory_mib + held.memory_mib > node.allocatable_memory_mib()
                || u.gpus + held.gpus > gpus
            {
                return Err(format!(
                    "host {id}: non-spot use {u:?} plus held {held:?} exceeds its capacity"
                ));
            }
        }
        Ok(())
    }
}

//! Placement: a pure function from a snapshot of the cluster state to a plan.
//!
//! No I/O, no clock, no randomness: the same state gives the same plan. The placement
//! controller runs it on the leader and proposes the plan; applying the plan re-checks every
//! placement against the newest state (no GPU bound twice, no host over capacity).
//!
//! For each pending instance, oldest first: **filter** the hosts of its region on state,
//! pool and labels, spread group, vCPUs, memory and, for GPU flavors, free GPUs of the model,
//! leaving capacity held for reservations to its owners (and to spot, which borrows it);
//! **choose GPUs** on each host (the tightest NVLink group that holds the request, else one
//! NUMA node, else any); **score**: spread groups across racks; spot where it is easy to
//! reclaim (beside other spot, or on held capacity); GPU requests bin-pack (the host left with
//! the fewest free GPUs wins, so whole hosts and NVLink groups stay free for big requests;
//! local GPU sets break ties), CPU-only requests stay off GPU hosts when they can and spread
//! by free memory. A reserved instance goes to a free slot of its reservation. Work that
//! fits nowhere may **preempt** spot (the cheapest set on one host, with notice). Every "no"
//! is explained with counts.

use std::collections::{BTreeMap, HashMap, HashSet};

use vmcloud_proto::pb;
use vmcloud_proto::{AccountId, InstanceId, JobId, NodeId, ReservationId};

use crate::mig;
use crate::reservation::Held;
use crate::state::{ClusterState, Gpu, GpuRequest, Instance, Market, Node, NodeState, Usage};

/// One decision: the node and the GPUs (PCI addresses) to bind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    pub node: NodeId,
    pub gpus: Vec<String>,
}

/// Where each pending instance goes, or why it cannot go anywhere yet.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub placements: Vec<(InstanceId, Choice)>,
    pub unplaced: Vec<(InstanceId, String)>,
    /// (spot instance to preempt, the waiting instance it makes room for).
    pub preemptions: Vec<(InstanceId, InstanceId)>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.placements.is_empty() && self.unplaced.is_empty() && self.preemptions.is_empty()
    }

    pub fn to_command(&self) -> pb::PlaceInstances {
        pb::PlaceInstances {
            placements: self
                .placements
                .iter()
                .map(|(i, c)| pb::Placement {
                    instance_id: i.to_string(),
                    node_id: c.node.to_string(),
                    gpus: c.gpus.clone(),
                })
                .collect(),
            unplaced: self
                .unplaced
                .iter()
                .map(|(i, r)| pb::Unplaced {
                    instance_id: i.to_string(),
                    reason: r.clone(),
                })
                .collect(),
            preemptions: self
                .preemptions
                .iter()
                .map(|(victim, for_instance)| pb::Preemption {
                    instance_id: victim.to_string(),
                    for_instance_id: for_instance.to_string(),
                })
                .collect(),
        }
    }
}

/// Most new instances one plan takes: planning holds the state's read lock, so a burst of
/// creates is planned in slices and the applier is never held up for long.
pub const MAX_NEW_PER_PLAN: usize = 4096;

/// The reason a new instance carries until placement has looked at it.
pub const WAITING_FOR_PLACEMENT: &str = "waiting for placement";

/// The hosts of one snapshot, indexed for placement: by region, and by region and GPU model.
/// Usage is a `Vec` aligned with [`FleetIndex::hosts`], so a decision does no hashing per host.
pub struct FleetIndex<'s> {
    pub hosts: Vec<&'s Node>,
    position: HashMap<&'s NodeId, usize>,
    by_region: HashMap<&'s str, Vec<usize>>,
    by_region_model: HashMap<(&'s str, &'s str), Vec<usize>>,
    /// Whether all of a host's GPUs are one model and none is in MIG mode (then its free count
    /// is arithmetic).
    single_model: Vec<bool>,
    /// Whether a host is ready and in no pool: the common case, checked without touching the
    /// host's record.
    ready_general: Vec<bool>,
}

impl<'s> FleetIndex<'s> {
    pub fn new(state: &'s ClusterState) -> Self {
        Self::new_in(state, None)
    }

    /// The hosts of one region (`None`: all).
    pub fn new_in(state: &'s ClusterState, region: Option<&str>) -> Self {
        let hosts: Vec<&Node> = state
            .nodes
            .values()
            .filter(|n| region.is_none_or(|r| n.region == r))
            .collect();
        let mut by_region: HashMap<&str, Vec<usize>> = HashMap::new();
        let mut by_region_model: HashMap<(&str, &str), Vec<usize>> = HashMap::new();
        let mut single_model = Vec::with_capacity(hosts.len());
        for (pos, node) in hosts.iter().enumerate() {
            by_region.entry(node.region.as_str()).or_default().push(pos);
            let mut models: Vec<&str> = node.gpus.iter().map(|g| g.model.as_str()).collect();
            models.dedup();
            single_model.push(
                models.len() <= 1 && node.gpus.iter().all(|g| !g.mig && g.unhealthy.is_none()),
            );
            models.sort_unstable();
            models.dedup();
            for model in models {
                by_region_model
                    .entry((node.region.as_str(), model))
                    .or_default()
                    .push(pos);
            }
        }
        let position = hosts.iter().enumerate().map(|(i, n)| (&n.id, i)).collect();
        let ready_general = hosts
            .iter()
            .map(|n| n.state == NodeState::Ready && n.pools.is_empty())
            .collect();
        FleetIndex {
            hosts,
            position,
            by_region,
            by_region_model,
            single_model,
            ready_general,
        }
    }

    /// What each host holds, aligned with `hosts`.
    pub fn usage(&self, state: &ClusterState) -> Vec<Usage> {
        self.hosts.iter().map(|n| state.usage(&n.id)).collect()
    }

    pub fn position(&self, node: &NodeId) -> Option<usize> {
        self.position.get(node).copied()
    }

    /// Undoes [`FleetIndex::take`].
    pub fn give_back(&self, usage: &mut [Usage], choice: &Choice, instance: &Instance) {
        if let Some(pos) = self.position(&choice.node) {
            let u = &mut usage[pos];
            u.vcpus -= instance.vcpus;
            u.memory_mib -= instance.memory_mib;
            for g in &choice.gpus {
                u.unbind(g);
            }
            u.spot -= u32::from(instance.market == Market::Spot);
        }
    }

    /// Records a decision in `usage`, so later decisions of the same plan see it.
    pub fn take(&self, usage: &mut [Usage], choice: &Choice, instance: &Instance) {
        if let Some(pos) = self.position(&choice.node) {
            let u = &mut usage[pos];
            u.vcpus += instance.vcpus;
            u.memory_mib += instance.memory_mib;
            for g in &choice.gpus {
                u.bind(g);
            }
            u.spot += u32::from(instance.market == Market::Spot);
            if instance.market == Market::Reserved {
                // It took one of the slots held here.
                u.held = u.held.against(instance, true);
            }
        }
    }
}

/// Plans pending instances, oldest first (those nominated to a host by a preemption before
/// the rest), counting capacity taken earlier in the same plan: every pending instance when
/// `all`, else only those placement has not looked at yet (when no capacity has appeared, the
/// others still do not fit; at most [`MAX_NEW_PER_PLAN`]). An on-demand instance that fits
/// nowhere gets the cheapest set of spot instances on one host preempted for it. Unplaced
/// reasons are only included when they differ from the recorded one, so a stable state
/// produces an empty plan.
pub fn plan_pending(state: &ClusterState, all: bool) -> Plan {
    plan_region(state, all, None)
}

/// [`plan_pending`] for the waiting work of one region (`None`: all regions). Regions share
/// no host, so plans of different regions made on one snapshot never conflict: the eval
/// broker's evaluations are planned in parallel this way.
pub fn plan_region(state: &ClusterState, all: bool, region: Option<&str>) -> Plan {
    let mut pending: Vec<&Instance> = state
        .pending()
        .filter(|i| region.is_none_or(|r| i.region == r))
        .filter(|i| all || i.pending_reason.as_deref() == Some(WAITING_FOR_PLACEMENT))
        .take(if all { usize::MAX } else { MAX_NEW_PER_PLAN })
        .collect();
    if pending.is_empty() {
        return Plan::default();
    }
    // Game launches of VIP, then Priority+ gamers go first (see [`crate::session`]).
    pending.sort_by_key(|i| (i.nominated_node.is_none(), crate::session::launch_rank(i)));
    // AI jobs wait in queues of their own, served after instances (below).
    let jobs_waiting = pending.iter().any(|i| i.job.is_some());
    pending.retain(|i| i.job.is_none());

    let index = FleetIndex::new_in(state, region);
    let mut usage = index.usage(state);
    let mut plan = Plan::default();
    // Hosts where spot instances are still leaving: their nominees wait for them.
    let reclaiming: HashSet<&NodeId> = state.reclaiming_nodes().collect();
    let mut spread = SpreadGroups::new(state, &pending);
    let mut spot: Option<SpotByHost> = None;
    let mut claimed: HashSet<InstanceId> = HashSet::new();
    // Reservation slots taken earlier in this plan, by (reservation, host position).
    let mut slots_taken: HashMap<(&ReservationId, usize), u32> = HashMap::new();
    for instance in pending {
        // Waiting for spot instances to leave its nominated host: it goes elsewhere if room
        // has appeared there, and otherwise keeps waiting (no new preemption, same reason).
        let waiting = instance
            .nominated_node
            .as_ref()
            .is_some_and(|n| reclaiming.contains(n));
        let group = spread.get(instance);
        // A reserved instance goes to a free slot of its reservation, nowhere else.
        let slots = (instance.market == Market::Reserved)
            .then(|| free_slots(state, &index, instance, &slots_taken));
        let decision = match &slots {
            Some(slots) => place_reserved(&index, &usage, instance, slots),
            None => place_with(&index, &usage, instance, group),
        };
        match decision {
            Ok(choice) => {
                index.take(&mut usage, &choice, instance);
                spread.record(instance, &index, &choice.node);
                if let (Some(rid), Some(pos)) =
                    (&instance.reservation, index.position(&choice.node))
                {
                    *slots_taken.entry((rid, pos)).or_default() += 1;
                }
                plan.placements.push((instance.id.clone(), choice));
            }
            Err(_) if waiting => {}
            Err(reason) => {
                if instance.market != Market::Spot {
                    let spot = spot.get_or_insert_with(|| SpotByHost::new(state, &index));
                    if let Some(victims) = find_preemption(
                        &index,
                        &usage,
                        instance,
                        group,
                        spot,
                        &claimed,
                        slots.as_ref(),
                    ) {
                        for v in victims {
                            claimed.insert(v.clone());
                            plan.preemptions.push((v, instance.id.clone()));
                        }
                        continue;
                    }
                }
                if instance.pending_reason.as_deref() != Some(reason.as_str()) {
                    plan.unplaced.push((instance.id.clone(), reason));
                }
            }
        }
    }
    if jobs_waiting {
        let mut ctx = JobCtx {
            state,
            index: &index,
            slots_taken,
        };
        plan_jobs(&mut ctx, region, &mut usage, &mut plan, &reclaiming);
    }
    plan
}

/// Serves the AI job queues in order (see [`crate::queue`]): each job's members all at once
/// or not at all; behind a job that cannot start, only jobs that finish before its estimated
/// start (backfill).
fn plan_jobs<'s>(
    ctx: &mut JobCtx<'s, '_>,
    region: Option<&str>,
    usage: &mut [Usage],
    plan: &mut Plan,
    reclaiming: &HashSet<&NodeId>,
) {
    // Per region and GPU model: the first job that could not start and when it should.
    let mut blocked: HashMap<(&str, &str), (&JobId, Option<i64>)> = HashMap::new();
    let mut spot: Option<SpotByHost> = None;
    let mut claimed: HashSet<InstanceId> = HashSet::new();
    let state = ctx.state;
    let pending = state
        .pending()
        .filter(|i| region.is_none_or(|r| i.region == r));
    for gang in crate::queue::queue(state, pending) {
        let key = (gang.region, gang.model);
        let reason = match blocked.get(&key) {
            // A head with no estimated start (waiting cannot be told to help) blocks nobody.
            Some((head, Some(start))) if state.now_ms + gang.runtime_ms() > *start => Err(format!(
                "queued behind job {head}, which needs these {} GPUs first; only jobs that finish before it starts may go ahead",
                if gang.model.is_empty() {
                    "CPU"
                } else {
                    gang.model
                }
            )),
            _ => place_gang(ctx, usage, &gang.members),
        };
        match reason {
            Ok(choices) => plan.placements.extend(choices),
            // Spot it preempted is still leaving: it waits for that room.
            Err(_)
                if gang.members.iter().any(|m| {
                    m.nominated_node
                        .as_ref()
                        .is_some_and(|n| reclaiming.contains(n))
                }) =>
            {
                blocked.entry(key).or_insert((&gang.spec.id, None));
            }
            Err(reason) => {
                // The first job that cannot start in its queue may preempt spot, unless it
                // is spot itself.
                if !blocked.contains_key(&key) && gang.members[0].market != Market::Spot {
                    let spot = spot.get_or_insert_with(|| SpotByHost::new(state, ctx.index));
                    if let Some(victims) =
                        preempt_for_gang(ctx, usage, &gang.members, spot, &claimed)
                    {
                        for (v, m) in victims {
                            claimed.insert(v.clone());
                            plan.preemptions.push((v, m));
                        }
                        blocked.insert(key, (&gang.spec.id, None));
                        continue;
                    }
                }
                if !blocked.contains_key(&key) && gang.gpus > 0 {
                    blocked.insert(key, (&gang.spec.id, crate::queue::head_start(state, &gang)));
                }
                let reason = if gang.members.len() > 1 {
                    format!(
                        "job of {} members, all or none: {reason}",
                        gang.members.len()
                    )
                } else {
                    reason
                };
                for m in &gang.members {
                    if m.pending_reason.as_deref() != Some(reason.as_str()) {
                        plan.unplaced.push((m.id.clone(), reason.clone()));
                    }
                }
            }
        }
    }
}

/// Spot instances whose leaving lets every member of a job start, each with the member it
/// makes room for: members that fit as things are take their room, the others the cheapest
/// preemption each (see [`find_preemption`]), counted one after another. `None` when some
/// member would still not fit, or none needs a preemption.
fn preempt_for_gang<'s>(
    ctx: &JobCtx<'s, '_>,
    usage: &[Usage],
    members: &[&'s Instance],
    spot: &SpotByHost<'_>,
    claimed: &HashSet<InstanceId>,
) -> Option<Vec<(InstanceId, InstanceId)>> {
    if spot.by_host.is_empty() {
        return None;
    }
    let (state, index) = (ctx.state, ctx.index);
    let mut usage = usage.to_vec();
    let mut claimed = claimed.clone();
    let mut victims = Vec::new();
    for m in members {
        if let Ok(choice) = ctx.decide(&usage, m) {
            index.take(&mut usage, &choice, m);
            continue;
        }
        let slots = ctx.slots(m);
        let set = find_preemption(index, &usage, m, None, spot, &claimed, slots.as_ref())?;
        for v in set {
            let victim = state.instances.get(&v)?;
            let pos = victim.node.as_ref().and_then(|n| index.position(n))?;
            without(&mut usage[pos], victim);
            claimed.insert(v.clone());
            victims.push((v, m.id.clone()));
        }
        let choice = ctx.decide(&usage, m).ok()?;
        index.take(&mut usage, &choice, m);
    }
    (!victims.is_empty()).then_some(victims)
}

/// What job placement works with: the snapshot, its index and the reservation slots taken
/// earlier in the plan.
struct JobCtx<'s, 'i> {
    state: &'s ClusterState,
    index: &'i FleetIndex<'s>,
    slots_taken: HashMap<(&'s ReservationId, usize), u32>,
}

impl<'s> JobCtx<'s, '_> {
    /// A reserved member's free slots; `None` for other members.
    fn slots(&self, m: &Instance) -> Option<HashMap<usize, u32>> {
        (m.market == Market::Reserved)
            .then(|| free_slots(self.state, self.index, m, &self.slots_taken))
    }

    /// Where one member would go now: a reserved one to a free slot of its reservation.
    fn decide(&self, usage: &[Usage], m: &Instance) -> Result<Choice, String> {
        match self.slots(m) {
            Some(slots) => place_reserved(self.index, usage, m, &slots),
            None => place_with(self.index, usage, m, None),
        }
    }

    /// Counts (`+1`) or gives back (`-1`) the reservation slot a placed member takes.
    fn count_slot(&mut self, m: &'s Instance, choice: &Choice, delta: i32) {
        if let (Some(rid), Some(pos)) = (&m.reservation, self.index.position(&choice.node)) {
            let n = self.slots_taken.entry((rid, pos)).or_default();
            *n = n.saturating_add_signed(delta);
        }
    }
}

/// Places every member of a job, or none (what was taken is given back).
fn place_gang<'s>(
    ctx: &mut JobCtx<'s, '_>,
    usage: &mut [Usage],
    members: &[&'s Instance],
) -> Result<Vec<(InstanceId, Choice)>, String> {
    let mut taken: Vec<(InstanceId, Choice)> = Vec::with_capacity(members.len());
    for m in members {
        match ctx.decide(usage, m) {
            Ok(choice) => {
                ctx.index.take(usage, &choice, m);
                ctx.count_slot(m, &choice, 1);
                taken.push((m.id.clone(), choice));
            }
            Err(reason) => {
                for ((_, choice), m) in taken.iter().zip(members) {
                    ctx.index.give_back(usage, choice, m);
                    ctx.count_slot(m, choice, -1);
                }
                return Err(reason);
            }
        }
    }
    Ok(taken)
}

/// Free slots of a reserved instance's reservation, by host position, less those taken
/// earlier in the plan.
fn free_slots(
    state: &ClusterState,
    index: &FleetIndex<'_>,
    instance: &Instance,
    taken: &HashMap<(&ReservationId, usize), u32>,
) -> HashMap<usize, u32> {
    let Some((rid, r)) = instance
        .reservation
        .as_ref()
        .and_then(|rid| Some((rid, state.reservations.get(rid)?)))
    else {
        return HashMap::new();
    };
    r.free_slots()
        .into_iter()
        .filter_map(|(node, n)| {
            let pos = index.position(node)?;
            let left = n.saturating_sub(taken.get(&(rid, pos)).copied().unwrap_or(0));
            (left > 0).then_some((pos, left))
        })
        .collect()
}

/// Decides a reserved instance: the first host (by node id) holding a free slot of its
/// reservation where the slot's capacity is free now. When spot instances borrowed it, the
/// caller preempts them.
fn place_reserved(
    index: &FleetIndex<'_>,
    usage: &[Usage],
    instance: &Instance,
    slots: &HashMap<usize, u32>,
) -> Result<Choice, String> {
    let rid = instance
        .reservation
        .as_ref()
        .map_or(String::new(), ToString::to_string);
    let (mut not_ready, mut lent) = (0, 0);
    let mut positions: Vec<usize> = slots.keys().copied().collect();
    positions.sort_unstable();
    for pos in positions {
        let node = index.hosts[pos];
        if host_filter(node, instance, None).is_err() {
            not_ready += 1;
            continue;
        }
        let u = &usage[pos];
        let held = u.held.against(instance, true);
        let gpus = match &instance.gpu {
            _ if !fits_cpu_mem(node, u, instance, &held) => None,
            None => Some(Vec::new()),
            Some(req) if leaves_held_gpus(node, u, req, &held) => {
                pick_for(node, u, req).map(|(g, _)| g)
            }
            Some(_) => None,
        };
        match gpus {
            Some(gpus) => {
                return Ok(Choice {
                    node: node.id.clone(),
                    gpus,
                });
            }
            None => lent += 1,
        }
    }
    Err(if slots.is_empty() {
        format!("reservation {rid} has no free slot (its instances use them all, or it has ended)")
    } else {
        format!(
            "reservation {rid} holds a free slot on {} host(s): {lent} lent to spot instances that must stop first, {not_ready} not ready (cordoned, draining, in maintenance or down)",
            slots.len()
        )
    })
}

/// Where the instances of each (account, spread group) in this plan already are.
struct SpreadGroups<'s> {
    groups: HashMap<(&'s AccountId, &'s str), Spread>,
}

/// One spread group: the hosts holding one of its instances (never a second) and how many
/// sit in each rack (fewest first).
#[derive(Debug, Default)]
pub struct Spread {
    pub name: String,
    pub hosts: HashSet<NodeId>,
    pub racks: HashMap<String, u32>,
}

impl<'s> SpreadGroups<'s> {
    fn new(state: &'s ClusterState, pending: &[&'s Instance]) -> Self {
        let mut groups: HashMap<(&AccountId, &str), Spread> = pending
            .iter()
            .filter_map(|i| Some(((&i.account, i.spread_group.as_deref()?), i)))
            .map(|(k, i)| {
                (
                    k,
                    Spread {
                        name: i.spread_group.clone().unwrap_or_default(),
                        ..Spread::default()
                    },
                )
            })
            .collect();
        if !groups.is_empty() {
            for i in state.instances.values() {
                let (Some(g), Some(node)) = (i.spread_group.as_deref(), i.node.as_ref()) else {
                    continue;
                };
                if let Some(spread) = groups.get_mut(&(&i.account, g)) {
                    spread.hosts.insert(node.clone());
                    let rack = state.nodes.get(node).map(|n| n.rack.clone());
                    *spread.racks.entry(rack.unwrap_or_default()).or_default() += 1;
                }
            }
        }
        SpreadGroups { groups }
    }

    fn get(&self, i: &'s Instance) -> Option<&Spread> {
        self.groups.get(&(&i.account, i.spread_group.as_deref()?))
    }

    fn record(&mut self, i: &'s Instance, index: &FleetIndex<'_>, node: &NodeId) {
        let Some(g) = i.spread_group.as_deref() else {
            return;
        };
        if let Some(spread) = self.groups.get_mut(&(&i.account, g)) {
            spread.hosts.insert(node.clone());
            let rack = index
                .position(node)
                .map(|p| index.hosts[p].rack.clone())
                .unwrap_or_default();
            *spread.racks.entry(rack).or_default() += 1;
        }
    }
}

/// Spot instances that a preemption may pick, by host position.
struct SpotByHost<'s> {
    by_host: HashMap<usize, Vec<&'s Instance>>,
}

impl<'s> SpotByHost<'s> {
    fn new(state: &'s ClusterState, index: &FleetIndex<'_>) -> Self {
        let mut by_host: HashMap<usize, Vec<&Instance>> = HashMap::new();
        for i in state.instances.values().filter(|i| i.preemptible()) {
            if let Some(pos) = i.node.as_ref().and_then(|n| index.position(n)) {
                by_host.entry(pos).or_default().push(i);
            }
        }
        SpotByHost { by_host }
    }
}

/// A host's usage once spot instance `v` has left it.
fn without(u: &mut Usage, v: &Instance) {
    u.vcpus = u.vcpus.saturating_sub(v.vcpus);
    u.memory_mib = u.memory_mib.saturating_sub(v.memory_mib);
    for g in &v.gpus {
        u.unbind(g);
    }
}

/// (instances stopped, GPUs freed, vCPUs freed, host position): smaller is cheaper.
type PreemptionCost = (usize, usize, u32, usize);

/// The cheapest set of spot instances on one host whose leaving lets `instance` fit there:
/// fewest instances, then fewest GPUs, then fewest vCPUs stopped, then the first host. Per host
/// the smallest single instance that suffices, else a greedy set taken largest first. `None`
/// when no host can be freed enough.
fn find_preemption(
    index: &FleetIndex<'_>,
    usage: &[Usage],
    instance: &Instance,
    spread: Option<&Spread>,
    spot: &SpotByHost<'_>,
    claimed: &HashSet<InstanceId>,
    slots: Option<&HashMap<usize, u32>>,
) -> Option<Vec<InstanceId>> {
    let mut best: Option<(PreemptionCost, Vec<InstanceId>)> = None;
    for (&pos, victims) in &spot.by_host {
        let node = index.hosts[pos];
        if node.region != instance.region
            || host_filter(node, instance, spread).is_err()
            || slots.is_some_and(|s| !s.contains_key(&pos))
        {
            continue;
        }
        // Evicting spot changes nothing held; a reserved instance takes one of its slots.
        let held = usage[pos].held.against(instance, slots.is_some());
        let mut candidates: Vec<&&Instance> = victims
            .iter()
            .filter(|v| !claimed.contains(&v.id))
            .collect();
        if candidates.is_empty() {
            continue;
        }
        let fits = |u: &Usage| {
            fits_cpu_mem(node, u, instance, &held)
                && instance.gpu.as_ref().is_none_or(|req| {
                    leaves_held_gpus(node, u, req, &held) && pick_for(node, u, req).is_some()
                })
        };
        // The cost of a set: how many instances, then GPUs, then vCPUs it stops.
        let cost = |set: &[&&Instance]| {
            (
                set.len(),
                set.iter().map(|v| v.gpus.len()).sum::<usize>(),
                set.iter().map(|v| v.vcpus).sum::<u32>(),
                pos,
            )
        };
        // Largest first (GPUs, then memory), so the greedy set stays small.
        candidates.sort_by_key(|v| {
            (
                std::cmp::Reverse(v.gpus.len()),
                std::cmp::Reverse(v.memory_mib),
                &v.id,
            )
        });
        // One victim that suffices, the smallest such; else the greedy set, largest first.
        let single = candidates
            .iter()
            .filter(|v| {
                let mut u = usage[pos].clone();
                without(&mut u, v);
                fits(&u)
            })
            .min_by_key(|v| cost(&[*v]));
        let set: Option<Vec<&&Instance>> = match single {
            Some(v) => Some(vec![*v]),
            None => {
                let mut u = usage[pos].clone();
                let mut taken = Vec::new();
                let mut found = false;
                for v in &candidates {
                    without(&mut u, v);
                    taken.push(*v);
                    if fits(&u) {
                        found = true;
                        break;
                    }
                }
                found.then_some(taken)
            }
        };
        if let Some(set) = set {
            let c = cost(&set);
            if best.as_ref().is_none_or(|(b, _)| c < *b) {
                best = Some((c, set.iter().map(|v| v.id.clone()).collect()));
            }
        }
    }
    best.map(|(_, victims)| victims)
}

/// Picks `count` free GPUs of `model` on `node`, as local as possible: the smallest NVLink
/// group with enough free GPUs (an exact fit leaves no group broken), else the NUMA node with
/// the fewest free ones that suffices, else the first free ones. Returns the GPUs and whether
/// the set is local (one NVLink group or one NUMA node).
pub fn pick_gpus(
    node: &Node,
    used: &Usage,
    model: &str,
    count: usize,
) -> Option<(Vec<String>, bool)> {
    let free: Vec<&Gpu> = node
        .gpus
        .iter()
        .filter(|g| {
            g.model == model
                && !g.mig
                && g.unhealthy.is_none()
                && !used.gpus.contains(&g.pci_address)
        })
        .collect();
    if free.len() < count {
        return None;
    }
    let take = |set: &[&Gpu]| {
        set.iter()
            .take(count)
            .map(|g| g.pci_address.clone())
            .collect::<Vec<_>>()
    };
    let mut groups: BTreeMap<u32, Vec<&Gpu>> = BTreeMap::new();
    let mut numa: BTreeMap<u32, Vec<&Gpu>> = BTreeMap::new();
    for g in &free {
        if g.nvlink_group != 0 {
            groups.entry(g.nvlink_group).or_default().push(g);
        }
        numa.entry(g.numa_node).or_default().push(g);
    }
    let tightest = |sets: &BTreeMap<u32, Vec<&Gpu>>| {
        sets.values()
            .filter(|set| set.len() >= count)
            .min_by_key(|set| set.len())
            .map(|set| take(set))
    };
    if let Some(set) = tightest(&groups) {
        return Some((set, true));
    }
    if let Some(set) = tightest(&numa) {
        return Some((set, true));
    }
    Some((take(&free), false))
}

/// Whether `instance`'s vCPUs and memory fit on `node` beside `used` and what is `held`.
fn fits_cpu_mem(node: &Node, used: &Usage, instance: &Instance, held: &Held) -> bool {
    used.vcpus + held.vcpus + instance.vcpus <= node.allocatable_vcpus()
        && used.memory_mib + held.memory_mib + instance.memory_mib <= node.allocatable_memory_mib()
}

/// Whether `instance`'s vCPUs and memory fit on `node` beside `used` and `held`; if not,
/// counts the host as `full`, or as `reserved` when only the held capacity is in the way.
fn has_room(
    node: &Node,
    used: &Usage,
    instance: &Instance,
    held: &Held,
    full: &mut usize,
    reserved: &mut usize,
) -> bool {
    if fits_cpu_mem(node, used, instance, held) {
        return true;
    }
    if fits_cpu_mem(node, used, instance, &Held::default()) {
        *reserved += 1;
    } else {
        *full += 1;
    }
    false
}

/// Whether binding what `req` asks on `node` leaves the `held` GPUs free (a MIG slice takes
/// no whole GPU).
fn leaves_held_gpus(node: &Node, used: &Usage, req: &GpuRequest, held: &Held) -> bool {
    let count = if req.mig_profile.is_some() {
        0
    } else {
        req.count as usize
    };
    node.whole_gpus().saturating_sub(used.gpus.len() + count) >= held.gpus as usize
}

/// The GPUs (or MIG slice) `req` would get on `node`, and whether they are local.
fn pick_for(node: &Node, used: &Usage, req: &GpuRequest) -> Option<(Vec<String>, bool)> {
    match &req.mig_profile {
        Some(profile) => pick_slice(node, used, &req.model, profile).map(|(s, _)| (vec![s], true)),
        None => pick_gpus(node, used, &req.model, req.count as usize),
    }
}

/// A MIG slice of `profile` on one of `node`'s GPUs of `model` in MIG mode: on the GPU that
/// keeps the fewest compute slices free afterwards (bin-packing keeps other GPUs whole for big
/// profiles), at the first allowed position. Returns the slice's name and the compute slices
/// left free on that GPU.
pub fn pick_slice(node: &Node, used: &Usage, model: &str, profile: &str) -> Option<(String, u8)> {
    let mut best: Option<(u8, String)> = None;
    for gpu in node
        .gpus
        .iter()
        .filter(|g| g.mig && g.model == model && g.unhealthy.is_none())
    {
        let Some(p) = mig::profile(&gpu.model, gpu.memory_mib, profile) else {
            continue;
        };
        let bound = mig::slices_on(&used.slices, &gpu.pci_address);
        let Some(layout) = mig::Layout::of(&gpu.model, gpu.memory_mib, &gpu.pci_address, bound)
        else {
            continue;
        };
        let Some(start) = layout.first_fit(&p) else {
            continue;
        };
        let left = layout.free_compute() - p.compute;
        if best.as_ref().is_none_or(|(l, _)| left < *l) {
            best = Some((left, mig::slice_name(&gpu.pci_address, profile, start)));
        }
    }
    best.map(|(left, name)| (name, left))
}

/// Why a host is out for an instance before its capacity is looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Skip {
    /// Cordoned, draining, in maintenance or down.
    NotReady,
    /// Not in the pool asked for, or missing a label.
    Selector,
    /// Already holds one of the instance's spread group.
    Spread,
}

/// [`host_filter`] for the host at `pos`, without reading its record when the instance asks
/// for nothing special and the host is a ready general-fleet host.
fn host_filter_at(
    index: &FleetIndex<'_>,
    pos: usize,
    instance: &Instance,
    spread: Option<&Spread>,
) -> Result<(), Skip> {
    let plain = instance.pool.is_none() && instance.node_selector.is_empty() && spread.is_none();
    if plain && index.ready_general[pos] {
        return Ok(());
    }
    host_filter(index.hosts[pos], instance, spread)
}

fn host_filter(node: &Node, instance: &Instance, spread: Option<&Spread>) -> Result<(), Skip> {
    if node.state != NodeState::Ready {
        return Err(Skip::NotReady);
    }
    if !node.matches(instance.pool.as_deref(), &instance.node_selector) {
        return Err(Skip::Selector);
    }
    if spread.is_some_and(|s| s.hosts.contains(&node.id)) {
        return Err(Skip::Spread);
    }
    Ok(())
}

/// Counts of hosts left out by [`host_filter`], for explanations.
#[derive(Debug, Default)]
struct Skipped {
    not_ready: usize,
    selector: usize,
    spread: usize,
}

impl Skipped {
    fn count(&mut self, skip: Skip) {
        match skip {
            Skip::NotReady => self.not_ready += 1,
            Skip::Selector => self.selector += 1,
            Skip::Spread => self.spread += 1,
        }
    }

    /// ", 3 not ready (cordoned, draining, in maintenance or down), …" — only the non-zero.
    fn explain(&self, instance: &Instance, spread: Option<&Spread>) -> String {
        let mut out = String::new();
        if self.not_ready > 0 {
            out += &format!(
                ", {} not ready (cordoned, draining, in maintenance or down)",
                self.not_ready
            );
        }
        if self.selector > 0 {
            let what = match &instance.pool {
                Some(p) => format!("outside pool {p} or without the labels asked for"),
                None if instance.node_selector.is_empty() => "in a dedicated pool".to_owned(),
                None => "in a dedicated pool or without the labels asked for".to_owned(),
            };
            out += &format!(", {} {what}", self.selector);
        }
        if self.spread > 0 {
            out += &format!(
                ", {} already hold one of spread group {}",
                self.spread,
                spread.map_or("", |s| s.name.as_str())
            );
        }
        out
    }
}

/// Decides one instance against `usage` (aligned with `index.hosts`), without spread groups.
pub fn place_one(
    index: &FleetIndex<'_>,
    usage: &[Usage],
    instance: &Instance,
) -> Result<Choice, String> {
    place_with(index, usage, instance, None)
}

/// Decides one instance; `spread` is where its spread group already is.
pub fn place_with(
    index: &FleetIndex<'_>,
    usage: &[Usage],
    instance: &Instance,
    spread: Option<&Spread>,
) -> Result<Choice, String> {
    let Some(hosts) = index
        .by_region
        .get(instance.region.as_str())
        .filter(|h| !h.is_empty())
    else {
        return Err(format!("no host in region {} yet", instance.region));
    };
    match &instance.gpu {
        Some(req) if req.mig_profile.is_some() => {
            place_mig(index, hosts.len(), usage, instance, req, spread)
        }
        Some(req) => place_gpu(index, hosts.len(), usage, instance, req, spread),
        None => place_cpu(index, hosts, usage, instance, spread),
    }
}

/// Whether `instance` is spot and the host is where spot is easy to reclaim: it already runs
/// spot work (one preemption frees more) or lends capacity held for reservations (their owners
/// will want it back). Other work never prefers such hosts.
fn easy_to_reclaim(instance: &Instance, used: &Usage) -> bool {
    instance.market == Market::Spot && (used.spot > 0 || used.held != Held::default())
}

/// ", 3 with the room held for reservations" — empty for 0.
fn held_note(reserved: usize) -> String {
    if reserved == 0 {
        String::new()
    } else {
        format!(", {reserved} with the room held for reservations")
    }
}

/// How many instances of the spread group sit in `node`'s rack (0 without a group).
fn rack_load(spread: Option<&Spread>, node: &Node) -> u32 {
    spread
        .and_then(|s| s.racks.get(&node.rack))
        .copied()
        .unwrap_or(0)
}

fn place_gpu(
    index: &FleetIndex<'_>,
    in_region: usize,
    usage: &[Usage],
    instance: &Instance,
    req: &GpuRequest,
    spread: Option<&Spread>,
) -> Result<Choice, String> {
    let count = req.count as usize;
    let empty = Vec::new();
    let with_model = index
        .by_region_model
        .get(&(instance.region.as_str(), req.model.as_str()))
        .unwrap_or(&empty);
    let (mut gpus_busy, mut full, mut reserved) = (0, 0, 0);
    let mut skipped = Skipped::default();
    // Spread first (the rack holding the fewest of the group); spot where it is easy to
    // reclaim; then bin-packing: the host left with the fewest free GPUs of the model wins;
    // among those, one where the GPUs can be local; then the first by node id.
    let mut best: (u32, bool, usize) = (u32::MAX, true, usize::MAX);
    let mut tied: Vec<usize> = Vec::new();
    for &pos in with_model {
        let node = index.hosts[pos];
        if let Err(skip) = host_filter_at(index, pos, instance, spread) {
            skipped.count(skip);
            continue;
        }
        let u = &usage[pos];
        let free = if index.single_model[pos] {
            node.gpus.len().saturating_sub(u.gpus.len())
        } else {
            node.gpus
                .iter()
                .filter(|g| {
                    g.model == req.model
                        && !g.mig
                        && g.unhealthy.is_none()
                        && !u.gpus.contains(&g.pci_address)
                })
                .count()
        };
        if free < count {
            gpus_busy += 1;
            continue;
        }
        let held = u.held.against(instance, false);
        if !has_room(node, u, instance, &held, &mut full, &mut reserved) {
            continue;
        }
        if !leaves_held_gpus(node, u, req, &held) {
            reserved += 1;
            continue;
        }
        let key = (
            rack_load(spread, node),
            !easy_to_reclaim(instance, u),
            free - count,
        );
        if key < best {
            best = key;
            tied.clear();
        }
        if key == best && tied.len() < 32 {
            tied.push(pos);
        }
    }
    let mut fallback = None;
    for pos in tied {
        let node = index.hosts[pos];
        if let Some((gpus, local)) = pick_gpus(node, &usage[pos], &req.model, count) {
            let choice = Choice {
                node: node.id.clone(),
                gpus,
            };
            if local {
                return Ok(choice);
            }
            fallback.get_or_insert(choice);
        }
    }
    fallback.ok_or_else(|| {
        format!(
            "no host in {} with {}×{} free: {} hosts, {} without {}, {gpus_busy} with too few free, {full} without the vCPUs or memory{}{}",
            instance.region,
            req.count,
            req.model,
            in_region,
            in_region - with_model.len(),
            req.model,
            held_note(reserved),
            skipped.explain(instance, spread)
        )
    })
}

/// Decides a MIG slice: hosts with a GPU of the model in MIG mode and room for the profile;
/// spread and spot scoring as for whole GPUs, then the GPU left with the fewest free compute
/// slices (partly used GPUs fill up first), then node id order.
fn place_mig(
    index: &FleetIndex<'_>,
    in_region: usize,
    usage: &[Usage],
    instance: &Instance,
    req: &GpuRequest,
    spread: Option<&Spread>,
) -> Result<Choice, String> {
    let profile = req.mig_profile.as_deref().unwrap_or_default();
    let empty = Vec::new();
    let with_model = index
        .by_region_model
        .get(&(instance.region.as_str(), req.model.as_str()))
        .unwrap_or(&empty);
    let (mut no_mig, mut no_room, mut full, mut reserved) = (0, 0, 0, 0);
    let mut skipped = Skipped::default();
    let mut best: Option<((u32, bool, u8, usize), String)> = None;
    for &pos in with_model {
        let node = index.hosts[pos];
        if let Err(skip) = host_filter_at(index, pos, instance, spread) {
            skipped.count(skip);
            continue;
        }
        if !node.gpus.iter().any(|g| g.mig && g.model == req.model) {
            no_mig += 1;
            continue;
        }
        let u = &usage[pos];
        let held = u.held.against(instance, false);
        if !has_room(node, u, instance, &held, &mut full, &mut reserved) {
            continue;
        }
        let Some((slice, left)) = pick_slice(node, u, &req.model, profile) else {
            no_room += 1;
            continue;
        };
        let key = (
            rack_load(spread, node),
            !easy_to_reclaim(instance, u),
            left,
            pos,
        );
        if best.as_ref().is_none_or(|(b, _)| key < *b) {
            best = Some((key, slice));
        }
    }
    best.map(|((.., pos), slice)| Choice {
        node: index.hosts[pos].id.clone(),
        gpus: vec![slice],
    })
    .ok_or_else(|| {
        format!(
            "no host in {} with a free {} MIG slice {profile}: {} hosts, {} without {}, {no_mig} without one in MIG mode, {no_room} with no room for the slice, {full} without the vCPUs or memory{}{}",
            instance.region,
            req.model,
            in_region,
            in_region - with_model.len(),
            req.model,
            held_note(reserved),
            skipped.explain(instance, spread)
        )
    })
}

fn place_cpu(
    index: &FleetIndex<'_>,
    hosts: &[usize],
    usage: &[Usage],
    instance: &Instance,
    spread: Option<&Spread>,
) -> Result<Choice, String> {
    let (mut full, mut reserved) = (0, 0);
    let mut skipped = Skipped::default();
    // (rack load of the spread group, has GPUs, most free memory first, position = node id
    // order) — smallest wins.
    let mut best: Option<(u32, bool, bool, std::cmp::Reverse<u64>, usize)> = None;
    for &pos in hosts {
        let node = index.hosts[pos];
        if let Err(skip) = host_filter_at(index, pos, instance, spread) {
            skipped.count(skip);
            continue;
        }
        let u = &usage[pos];
        let held = u.held.against(instance, false);
        if !has_room(node, u, instance, &held, &mut full, &mut reserved) {
            continue;
        }
        let free_mem = node.allocatable_memory_mib().saturating_sub(u.memory_mib);
        let key = (
            rack_load(spread, node),
            !node.gpus.is_empty(),
            !easy_to_reclaim(instance, u),
            std::cmp::Reverse(free_mem),
            pos,
        );
        if best.is_none_or(|b| key < b) {
            best = Some(key);
        }
    }
    best.map(|(.., pos)| Choice {
        node: index.hosts[pos].id.clone(),
        gpus: Vec::new(),
    })
    .ok_or_else(|| {
        format!(
            "no host in {} with {} vCPU and {} MiB free: {full} full{}{}",
            instance.region,
            instance.vcpus,
            instance.memory_mib,
            held_note(reserved),
            skipped.explain(instance, spread)
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{InstanceState, Node};
    use vmcloud_proto::AccountId;

    fn node(id: &str, region: &str, threads: u32, mem_gib: u64) -> Node {
        Node {
            id: NodeId::parse(id).unwrap(),
            region: region.into(),
            hostname: id.into(),
            cpu_model: String::new(),
            cpu_threads: threads,
            memory_bytes: mem_gib << 30,
            hypervisor_uri: "test:///default".into(),
            agent_version: String::new(),
            agent_git_sha: String::new(),
            registered_at_ms: 0,
            generation: 0,
            rack: String::new(),
            gpus: Vec::new(),
            state: Default::default(),
            state_reason: None,
            drain_deadline_ms: None,
            labels: Default::default(),
            pools: Default::default(),
            down_since_ms: None,
            down_by_liveness: false,
        }
    }

    /// A GPU host: `n` GPUs of `model`, NVLink groups of `group` (0: none), two NUMA nodes.
    fn gpu_node(id: &str, model: &str, n: u32, group: u32) -> Node {
        let mut node = node(id, "par", 64, 512);
        node.gpus = (0..n)
            .map(|i| Gpu {
                model: model.into(),
                memory_mib: 81920,
                pci_address: format!("0000:{:02x}:00.0", i + 1),
                numa_node: i / (n / 2).max(1),
                nvlink_group: i.checked_div(group).map_or(0, |g| g + 1),
                mig: false,
                unhealthy: None,
            })
            .collect();
        node
    }

    fn gpu_pending(model: &str, count: u32, at: i64) -> Instance {
        let mut i = pending("par", 8, 16384, at);
        i.gpu = Some(GpuRequest {
            model: model.into(),
            count,
            mig_profile: None,
        });
        i
    }

    fn mig_pending(profile: &str, at: i64) -> Instance {
        let mut i = gpu_pending("H100", 1, at);
        i.vcpus = 2;
        i.gpu.as_mut().unwrap().mig_profile = Some(profile.into());
        i
    }

    fn pending(region: &str, vcpus: u32, memory_mib: u64, at: i64) -> Instance {
        Instance {
            id: InstanceId::generate(),
            account: AccountId::parse("a").unwrap(),
            name: "x".into(),
            flavor: "f".into(),
            image: "debian-12".into(),
            region: region.into(),
            vcpus,
            memory_mib,
            disk_gib: 10,
            gpu: None,
            state: InstanceState::Pending,
            node: None,
            pending_reason: None,
            status_message: None,
            created_at_ms: at,
            placed_at_ms: None,
            running_at_ms: None,
            deleted_in_generation: None,
            gpus: Vec::new(),
            market: Default::default(),
            pool: None,
            node_selector: Default::default(),
            spread_group: None,
            preemption_notice_s: crate::state::DEFAULT_PREEMPTION_NOTICE_S,
            terminate_at_ms: None,
            reclaimed_at_ms: None,
            requeue_when_gone: false,
            user_data: None,
            ssh_keys: Vec::new(),
            nominated_node: None,
            reservation: None,
            job: None,
            session: None,
            notices: Vec::new(),
        }
    }

    fn state(nodes: Vec<Node>, instances: Vec<Instance>) -> ClusterState {
        let mut s = ClusterState::default();
        for n in nodes {
            s.nodes.insert(n.id.clone(), n);
        }
        for i in instances {
            s.instances.insert(i.id.clone(), i);
        }
        s.reindex();
        s
    }

    #[test]
    fn table() {
        struct Case {
            name: &'static str,
            nodes: Vec<Node>,
            instances: Vec<Instance>,
            placed: usize,
            reason: Option<&'static str>,
        }
        let cases = vec![
            Case {
                name: "fits on the only host",
                nodes: vec![node("a", "par", 2, 4)],
                instances: vec![pending("par", 1, 1024, 1)],
                placed: 1,
                reason: None,
            },
            Case {
                name: "no host in region",
                nodes: vec![node("a", "par", 2, 4)],
                instances: vec![pending("fra", 1, 1024, 1)],
                placed: 0,
                reason: Some("no host in region fra yet"),
            },
            Case {
                name: "capacity taken earlier in the same plan counts",
                // 4 GiB - 1 GiB reserved = 3072 MiB: two of 1536 MiB, not three.
                nodes: vec![node("a", "par", 8, 4)],
                instances: vec![
                    pending("par", 1, 1536, 1),
                    pending("par", 1, 1536, 2),
                    pending("par", 1, 1536, 3),
                ],
                placed: 2,
                reason: Some("no host in par with 1 vCPU and 1536 MiB free: 1 full"),
            },
            Case {
                name: "vCPUs are overcommitted 4:1 and no further",
                nodes: vec![node("a", "par", 1, 64)],
                instances: (0..5).map(|i| pending("par", 1, 512, i)).collect(),
                placed: 4,
                reason: Some("no host in par with 1 vCPU and 512 MiB free: 1 full"),
            },
        ];
        for c in cases {
            let s = state(c.nodes, c.instances);
            let plan = plan_pending(&s, true);
            assert_eq!(plan.placements.len(), c.placed, "{}", c.name);
            assert_eq!(
                plan.unplaced.first().map(|(_, r)| r.as_str()),
                c.reason,
                "{}",
                c.name
            );
        }
    }

    #[test]
    fn gpu_requests_explain_why_they_wait() {
        let mut i = pending("par", 16, 1024, 1);
        i.gpu = Some(crate::state::GpuRequest {
            model: "H100".into(),
            count: 1,
            mig_profile: None,
        });
        let s = state(vec![node("a", "par", 2, 4)], vec![i]);
        let plan = plan_pending(&s, true);
        assert_eq!(
            plan.unplaced[0].1,
            "no host in par with 1×H100 free: 1 hosts, 1 without H100, 0 with too few free, 0 without the vCPUs or memory"
        );
    }

    #[test]
    fn gpus_bin_pack_and_stay_local() {
        // Two 8×H100 hosts with NVLink groups of 4; one already has 2 GPUs bound.
        let a = gpu_node("a", "H100", 8, 4);
        let b = gpu_node("b", "H100", 8, 4);
        let mut busy = gpu_pending("H100", 2, 0);
        busy.state = InstanceState::Running;
        busy.node = Some(a.id.clone());
        busy.gpus = vec!["0000:01:00.0".into(), "0000:02:00.0".into()];
        let s = state(
            vec![a, b],
            vec![busy, gpu_pending("H100", 2, 1), gpu_pending("H100", 4, 2)],
        );
        let plan = plan_pending(&s, true);
        assert_eq!(plan.placements.len(), 2);
        // The pair goes where it fills a half-used NVLink group (host a, group 1)…
        let (_, pair) = &plan.placements[0];
        assert_eq!(pair.node.as_str(), "a");
        assert_eq!(
            pair.gpus,
            vec!["0000:03:00.0".to_owned(), "0000:04:00.0".to_owned()]
        );
        // …and the four take a's other whole group, leaving host b entirely free.
        let (_, four) = &plan.placements[1];
        assert_eq!(four.node.as_str(), "a");
        assert_eq!(four.gpus.len(), 4);
        assert!(
            four.gpus.iter().all(|g| !pair.gpus.contains(g)),
            "no GPU bound twice"
        );
    }

    #[test]
    fn mig_slices_pack_onto_mig_gpus_and_whole_requests_avoid_them() {
        // Host m: 4 H100, the first two in MIG mode.
        let mut m = gpu_node("m", "H100", 4, 0);
        m.gpus[0].mig = true;
        m.gpus[1].mig = true;
        let s = state(
            vec![m],
            vec![
                mig_pending("3g.40gb", 1),
                mig_pending("1g.10gb", 2),
                mig_pending("7g.80gb", 3),
                mig_pending("3g.40gb", 4),
                gpu_pending("H100", 3, 5),
                gpu_pending("H100", 2, 6),
            ],
        );
        let plan = plan_pending(&s, true);
        let bound: Vec<&str> = plan
            .placements
            .iter()
            .flat_map(|(_, c)| c.gpus.iter().map(String::as_str))
            .collect();
        // The 3g and the 1g share GPU 1 (the 1g packs beside the 3g, at the first free
        // position); the 7g takes GPU 2 whole; the second 3g finds no room; the whole-GPU
        // requests see only the two GPUs outside MIG mode.
        assert_eq!(
            bound,
            [
                "0000:01:00.0/3g.40gb@0",
                "0000:01:00.0/1g.10gb@4",
                "0000:02:00.0/7g.80gb@0",
                "0000:03:00.0",
                "0000:04:00.0",
            ]
        );
        let reasons: Vec<&str> = plan.unplaced.iter().map(|(_, r)| r.as_str()).collect();
        assert_eq!(
            reasons,
            [
                "no host in par with a free H100 MIG slice 3g.40gb: 1 hosts, 0 without H100, 0 without one in MIG mode, 1 with no room for the slice, 0 without the vCPUs or memory",
                "no host in par with 3×H100 free: 1 hosts, 0 without H100, 1 with too few free, 0 without the vCPUs or memory",
            ]
        );
        // Apply agrees, and the layout shows on the state.
        let mut applied = s.clone();
        applied
            .apply(
                1,
                pb::Command {
                    at_unix_ms: 10,
                    body: Some(pb::command::Body::PlaceInstances(plan.to_command())),
                },
            )
            .unwrap();
        let used = applied.usage(&NodeId::parse("m").unwrap());
        assert_eq!(used.slices.len(), 3);
        assert_eq!(used.gpus.len(), 2);
        // A plan that binds an overlapping slice is refused by apply.
        let mut clash = mig_pending("1g.10gb", 7);
        let clash_id = clash.id.clone();
        clash.pending_reason = None;
        applied.instances.insert(clash_id.clone(), clash);
        applied.reindex();
        let bad = Plan {
            placements: vec![(
                clash_id.clone(),
                Choice {
                    node: NodeId::parse("m").unwrap(),
                    gpus: vec!["0000:01:00.0/1g.10gb@1".into()],
                },
            )],
            ..Plan::default()
        };
        applied
            .apply(
                2,
                pb::Command {
                    at_unix_ms: 11,
                    body: Some(pb::command::Body::PlaceInstances(bad.to_command())),
                },
            )
            .unwrap();
        assert_eq!(applied.instances[&clash_id].state, InstanceState::Pending);
    }

    #[test]
    fn cpu_only_work_stays_off_gpu_hosts() {
        let s = state(
            vec![gpu_node("g", "L40S", 4, 0), node("c", "par", 8, 16)],
            vec![pending("par", 1, 1024, 1)],
        );
        assert_eq!(plan_pending(&s, true).placements[0].1.node.as_str(), "c");
    }

    #[test]
    fn a_gpu_request_that_does_not_fit_says_why() {
        let s = state(
            vec![gpu_node("g", "H100", 8, 8), node("c", "par", 8, 16)],
            vec![gpu_pending("H100", 16, 1)],
        );
        let plan = plan_pending(&s, true);
        assert_eq!(
            plan.unplaced[0].1,
            "no host in par with 16×H100 free: 2 hosts, 1 without H100, 1 with too few free, 0 without the vCPUs or memory"
        );
    }

    #[test]
    fn spreads_to_the_host_with_most_free_memory_and_is_stable() {
        let s = state(
            vec![node("a", "par", 8, 4), node("b", "par", 8, 16)],
            vec![pending("par", 1, 1024, 1)],
        );
        let plan = plan_pending(&s, true);
        assert_eq!(plan.placements[0].1.node.as_str(), "b");
        assert_eq!(plan_pending(&s, true), plan, "placement is deterministic");
    }

    #[test]
    fn recorded_reason_is_not_proposed_again() {
        let mut i = pending("fra", 1, 1024, 1);
        i.pending_reason = Some("no host in region fra yet".into());
        let s = state(vec![node("a", "par", 2, 4)], vec![i]);
        assert!(plan_pending(&s, true).is_empty());
        assert!(
            plan_pending(&s, false).is_empty(),
            "an instance already looked at waits for capacity"
        );
    }
}

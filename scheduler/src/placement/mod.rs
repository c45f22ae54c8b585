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
//! reclaim (beside other spot, or on held capacity); GPU requests bin-pack — work that cannot
//! be preempted on the GPUs such work already holds (spot counts as free: it can be taken
//! back), then on free GPUs — so whole hosts and NVLink groups stay free for big requests
//! (local GPU sets break ties); CPU-only requests stay off GPU hosts when they can and spread
//! by free memory. A reserved instance goes to a free slot of its reservation. Work that
//! fits nowhere may **preempt** spot (on the most-used host, then the cheapest set, with
//! notice); so may on-demand GPU work that would otherwise be the first on a whole host
//! (`vmcloud sim efficiency` measures what this keeps whole). Spot is planned after the rest.
//! Every "no" is explained with counts.

pub mod explain;
pub mod filters;
pub mod fleet_index;
pub mod gpus;
pub mod jobs;
pub mod mig_slices;
pub mod plan;
pub mod preemption;
pub mod reserved;
pub mod score;
pub mod select;
pub mod spread;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};

use vmcloud_proto::{InstanceId, NodeId, ReservationId};

use crate::instances::types::WAITING_FOR_PLACEMENT;
use crate::instances::types::{Instance, Market};
use crate::placement::fleet_index::FleetIndex;
use crate::placement::jobs::JobCtx;
use crate::placement::jobs::plan_jobs;
use crate::placement::plan::Choice;
use crate::placement::plan::MAX_NEW_PER_PLAN;
use crate::placement::plan::Plan;
use crate::placement::preemption::SpotByHost;
use crate::placement::preemption::find_preemption;
use crate::placement::reserved::free_slots;
use crate::placement::reserved::place_reserved;
use crate::placement::select::place_with;
use crate::placement::spread::SpreadGroups;
use crate::state::ClusterState;
use crate::state::index::Usage;

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

/// Whether `choice` puts whole GPUs of work that cannot be preempted on a host where no such
/// work runs yet, leaving part of it free.
fn starts_a_whole_host(
    index: &FleetIndex<'_>,
    usage: &[Usage],
    instance: &Instance,
    choice: &Choice,
) -> bool {
    let whole_request = instance
        .gpu
        .as_ref()
        .is_some_and(|g| g.mig_profile.is_none());
    if instance.market == Market::Spot || !whole_request {
        return false;
    }
    let Some(pos) = index.position(&choice.node) else {
        return false;
    };
    usage[pos].firm_gpus() == 0 && choice.gpus.len() < index.capacity[pos].whole_gpus as usize
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
    // Game launches of VIP, then Priority+ gamers go first (see [`crate::session`]); spot
    // after the rest, so capacity that has just come free goes to work that cannot be
    // preempted before spot fills it.
    pending.sort_by_key(|i| {
        (
            i.nominated_node.is_none(),
            crate::sessions::queue::launch_rank(i),
            i.market == Market::Spot,
        )
    });
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
        // Work that cannot be preempted would be the first such work on a host: if spot can
        // make room for it on a host such work already uses, it goes there instead and the
        // whole host stays for a request that needs one (it starts once the spot instances'
        // notice has run out). Without this, hosts fill with small on-demand instances one
        // by one and 8-GPU requests find none.
        let decision = match decision {
            Ok(choice)
                if slots.is_none()
                    && group.is_none()
                    && starts_a_whole_host(&index, &usage, instance, &choice) =>
            {
                if waiting {
                    // Its nominated host's spot is leaving: it waits for that room.
                    continue;
                }
                let spot = spot.get_or_insert_with(|| SpotByHost::new(state, &index));
                match find_preemption(&index, &usage, instance, group, spot, &claimed, None) {
                    Some((pos, victims)) if usage[pos].firm_gpus() > 0 => {
                        for v in victims {
                            claimed.insert(v.clone());
                            plan.preemptions.push((v, instance.id.clone()));
                        }
                        continue;
                    }
                    _ => Ok(choice),
                }
            }
            decision => decision,
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
                    if let Some((_, victims)) = find_preemption(
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

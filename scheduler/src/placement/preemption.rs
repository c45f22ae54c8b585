//! Preemption: the cheapest set of spot instances on one host whose leaving makes room.

use std::collections::{HashMap, HashSet};

use vmcloud_proto::InstanceId;

use crate::instances::types::Instance;
use crate::placement::filters::fits_cpu_mem;
use crate::placement::filters::host_filter;
use crate::placement::fleet_index::Capacity;
use crate::placement::fleet_index::FleetIndex;
use crate::placement::gpus::firm_free_after;
use crate::placement::gpus::leaves_held_gpus;
use crate::placement::gpus::pick_for;
use crate::placement::spread::Spread;
use crate::state::ClusterState;
use crate::state::index::Usage;

/// Spot instances that a preemption may pick, by host position.
pub(crate) struct SpotByHost<'s> {
    pub(crate) by_host: HashMap<usize, Vec<&'s Instance>>,
}

impl<'s> SpotByHost<'s> {
    pub(crate) fn new(state: &'s ClusterState, index: &FleetIndex<'_>) -> Self {
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
pub(crate) fn without(u: &mut Usage, v: &Instance) {
    u.vcpus = u.vcpus.saturating_sub(v.vcpus);
    u.memory_mib = u.memory_mib.saturating_sub(v.memory_mib);
    for g in &v.gpus {
        u.unbind(g);
    }
    u.spot_gpus = u
        .spot_gpus
        .saturating_sub(crate::state::index::spot_gpus(v));
}

/// Whether `v` is a warm VM of the class `instance` (a session launch) waits for: booting, it
/// is handed to the launch queue once booted ([`crate::gaming::warm_queue`]), so stopping it
/// for a launch of its own class would only boot another.
fn refill_for(v: &Instance, instance: &Instance) -> bool {
    instance.session.is_some()
        && v.is_warm()
        && v.region == instance.region
        && v.flavor == instance.flavor
        && v.image == instance.image
        && v.pool == instance.pool
}

/// (GPUs left that the waiting work could have had, instances stopped, GPUs freed, vCPUs
/// freed, host position): smaller is cheaper.
pub(crate) type PreemptionCost = (usize, usize, usize, u32, usize);

/// The cheapest set of spot instances on one host whose leaving lets `instance` fit there:
/// on the host where work that cannot be preempted holds the most GPUs, then fewest
/// instances, then fewest GPUs, then fewest vCPUs stopped, then the first host. Per host
/// the smallest single instance that suffices, else a greedy set taken largest first. `None`
/// when no host can be freed enough; else the host's position and the instances to stop.
pub(crate) fn find_preemption(
    index: &FleetIndex<'_>,
    usage: &[Usage],
    instance: &Instance,
    spread: Option<&Spread>,
    spot: &SpotByHost<'_>,
    claimed: &HashSet<InstanceId>,
    slots: Option<&HashMap<usize, u32>>,
) -> Option<(usize, Vec<InstanceId>)> {
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
            .filter(|v| !claimed.contains(&v.id) && !refill_for(v, instance))
            .collect();
        if candidates.is_empty() {
            continue;
        }
        let fits = |u: &Usage| {
            fits_cpu_mem(&Capacity::of(node), u, instance, &held)
                && instance.gpu.as_ref().is_none_or(|req| {
                    leaves_held_gpus(node, u, req, &held) && pick_for(node, u, req).is_some()
                })
        };
        // Packing first (the host where work that cannot be preempted already holds the most
        // GPUs, as [`crate::placement::gpus::place_gpu`] packs), then the cost of a set: how
        // many instances, then GPUs, then vCPUs it stops.
        let packing = instance.gpu.as_ref().map_or(0, |req| {
            let count = if req.mig_profile.is_some() {
                0
            } else {
                req.count as usize
            };
            firm_free_after(&index.capacity[pos], &usage[pos], instance, count)
        });
        let cost = |set: &[&&Instance]| {
            (
                packing,
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
    best.map(|(cost, victims)| (cost.4, victims))
}

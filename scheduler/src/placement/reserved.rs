//! Reserved instances: a free slot of their reservation.

use std::collections::HashMap;

use vmcloud_proto::ReservationId;

use crate::instances::types::Instance;
use crate::placement::filters::fits_cpu_mem;
use crate::placement::filters::host_filter;
use crate::placement::fleet_index::Capacity;
use crate::placement::fleet_index::FleetIndex;
use crate::placement::gpus::leaves_held_gpus;
use crate::placement::gpus::pick_for;
use crate::placement::plan::Choice;
use crate::state::ClusterState;
use crate::state::index::Usage;

/// Free slots of a reserved instance's reservation, by host position, less those taken
/// earlier in the plan.
pub(crate) fn free_slots(
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
pub(crate) fn place_reserved(
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
            _ if !fits_cpu_mem(&Capacity::of(node), u, instance, &held) => None,
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

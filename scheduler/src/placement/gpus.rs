//! Whole GPUs: the most local set on a host (NVLink group, then NUMA node), bin-packed.

use std::collections::BTreeMap;

use vmcloud_proto::{GpuBinding, GpuId};

use crate::instances::types::{GpuRequest, Instance};
use crate::nodes::types::{Gpu, Node};
use crate::placement::explain::Skipped;
use crate::placement::explain::held_note;
use crate::placement::filters::has_room;
use crate::placement::filters::host_filter_at;
use crate::placement::fleet_index::{Capacity, FleetIndex, free_whole};
use crate::placement::mig_slices::pick_slice;
use crate::placement::plan::Choice;
use crate::placement::score::easy_to_reclaim;
use crate::placement::score::rack_load;
use crate::placement::spread::Spread;
use crate::reservations::types::Held;
use crate::state::index::Usage;

/// Picks `count` free GPUs of `model` on `node`, as local as possible: the smallest NVLink
/// group with enough free GPUs (an exact fit leaves no group broken), else the NUMA node with
/// the fewest free ones that suffices, else the first free ones. Returns the GPUs and whether
/// the set is local (one NVLink group or one NUMA node).
pub fn pick_gpus(
    node: &Node,
    used: &Usage,
    model: &str,
    count: usize,
) -> Option<(Vec<GpuId>, bool)> {
    let free: Vec<&Gpu> = free_whole(node, Some(used), model).collect();
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

/// Whether binding what `req` asks on `node` leaves the `held` GPUs free (a MIG slice takes
/// no whole GPU).
#[inline]
pub(crate) fn leaves_held_gpus(node: &Node, used: &Usage, req: &GpuRequest, held: &Held) -> bool {
    let count = if req.mig_profile.is_some() {
        0
    } else {
        req.count as usize
    };
    node.whole_gpus().saturating_sub(used.gpus.len() + count) >= held.gpus as usize
}

/// The GPUs (or MIG slice) `req` would get on `node`, and whether they are local.
pub(crate) fn pick_for(
    node: &Node,
    used: &Usage,
    req: &GpuRequest,
) -> Option<(Vec<GpuBinding>, bool)> {
    match &req.mig_profile {
        Some(profile) => pick_slice(node, used, &req.model, profile)
            .map(|(s, _)| (vec![GpuBinding::Slice(s)], true)),
        None => pick_gpus(node, used, &req.model, req.count as usize)
            .map(|(gpus, local)| (gpus.into_iter().map(GpuBinding::Whole).collect(), local)),
    }
}

/// For work that cannot be preempted: the GPUs of `node` such work could still have once
/// `count` more are bound (free, or held by spot it may take back). Packing on this instead of
/// on free GPUs keeps whole hosts clear of on-demand work while spot fills the gaps between,
/// so that large requests find a host (by preempting spot if need be) and spot finds room.
/// Spot itself packs on free GPUs (0 here).
pub(crate) fn firm_free_after(
    capacity: &Capacity,
    used: &Usage,
    instance: &Instance,
    count: usize,
) -> usize {
    if instance.market == crate::instances::types::Market::Spot {
        return 0;
    }
    (capacity.whole_gpus as usize).saturating_sub(used.firm_gpus() + count)
}

/// The best key a host can have for `instance` (see [`place_gpu`]): once a host with it gives
/// a local set, no other host can do better. (Only spot scores where spot is easy to reclaim.)
fn perfect(instance: &Instance) -> (u32, bool, usize, usize) {
    (
        0,
        instance.market != crate::instances::types::Market::Spot,
        0,
        0,
    )
}

/// How many ties [`place_gpu`] looks at for a local set.
const TIES: usize = 32;

/// `bounded`: `usage` has no more free GPUs than the state `index` was built from (only this
/// plan's placements added), so the index's largest free count per model bounds every host.
pub(crate) fn place_gpu(
    index: &FleetIndex<'_>,
    in_region: usize,
    usage: &[Usage],
    instance: &Instance,
    req: &GpuRequest,
    spread: Option<&Spread>,
    bounded: bool,
) -> Result<Choice, String> {
    let count = req.count as usize;
    let empty = Vec::new();
    let key = (instance.region.as_str(), req.model.as_str());
    let with_model = index.by_region_model.get(&key).unwrap_or(&empty);
    let explain = |gpus_busy: usize, full: usize, reserved: usize, skipped: &Skipped| {
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
    };
    // More than any host had free when the plan began: every host of the model is either
    // left out or has too few free. The same answer as the scan below gives, without it (a
    // request that fits nowhere would otherwise cost a look at every host of its model).
    let plain = instance.pool.is_none() && instance.node_selector.is_empty() && spread.is_none();
    if bounded
        && plain
        && let Some(bound) = index.gpu_bounds.get(&key)
        && count > bound.max_free
    {
        let skipped = Skipped {
            not_ready: bound.not_ready,
            selector: bound.selector,
            spread: 0,
        };
        let busy = with_model.len() - bound.not_ready - bound.selector;
        return Err(explain(busy, 0, 0, &skipped));
    }
    let (mut gpus_busy, mut full, mut reserved) = (0, 0, 0);
    let mut skipped = Skipped::default();
    // Spread first (the rack holding the fewest of the group); spot where it is easy to
    // reclaim; then bin-packing: work that cannot be preempted goes where such work already
    // holds the most GPUs (spot it may take back counts as free: see [`firm_free_after`]);
    // then the host left with the fewest free GPUs of the model; among those, one where the
    // GPUs can be local; then the first by node id.
    let mut best: (u32, bool, usize, usize) = (u32::MAX, true, usize::MAX, usize::MAX);
    let perfect = perfect(instance);
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
            free_whole(node, Some(u), &req.model).count()
        };
        if free < count {
            gpus_busy += 1;
            continue;
        }
        let held = u.held.against(instance, false);
        if !has_room(
            &index.capacity[pos],
            u,
            instance,
            &held,
            &mut full,
            &mut reserved,
        ) {
            continue;
        }
        if !leaves_held_gpus(node, u, req, &held) {
            reserved += 1;
            continue;
        }
        let key = (
            rack_load(spread, node),
            !easy_to_reclaim(instance, u),
            firm_free_after(&index.capacity[pos], u, instance, count),
            free - count,
        );
        if key < best {
            best = key;
            tied.clear();
        }
        if key == best && tied.len() < TIES {
            tied.push(pos);
            // Nothing beats a perfect host whose GPUs can be local, and the ties before it
            // were not (each was looked at when it came): the scan would end choosing it.
            if best == perfect {
                if let Some((gpus, true)) = pick_gpus(node, u, &req.model, count) {
                    return Ok(Choice {
                        node: node.id.clone(),
                        gpus: gpus.into_iter().map(GpuBinding::Whole).collect(),
                    });
                }
                if tied.len() == TIES {
                    break;
                }
            }
        }
    }
    let mut fallback = None;
    for pos in tied {
        let node = index.hosts[pos];
        if let Some((gpus, local)) = pick_gpus(node, &usage[pos], &req.model, count) {
            let choice = Choice {
                node: node.id.clone(),
                gpus: gpus.into_iter().map(GpuBinding::Whole).collect(),
            };
            if local {
                return Ok(choice);
            }
            fallback.get_or_insert(choice);
        }
    }
    fallback.ok_or_else(|| explain(gpus_busy, full, reserved, &skipped))
}

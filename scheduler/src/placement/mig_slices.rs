//! MIG slices: the GPU and position a slice goes to.

use vmcloud_proto::{GpuBinding, MigSliceId};

use crate::instances::types::{GpuRequest, Instance};
use crate::nodes::mig;
use crate::nodes::types::Node;
use crate::placement::explain::Skipped;
use crate::placement::explain::held_note;
use crate::placement::filters::has_room;
use crate::placement::filters::host_filter_at;
use crate::placement::fleet_index::FleetIndex;
use crate::placement::plan::Choice;
use crate::placement::score::easy_to_reclaim;
use crate::placement::score::rack_load;
use crate::placement::spread::Spread;
use crate::state::index::Usage;

/// A MIG slice of `profile` on one of `node`'s GPUs of `model` in MIG mode: on the GPU that
/// keeps the fewest compute slices free afterwards (bin-packing keeps other GPUs whole for big
/// profiles), at the first allowed position. Returns the slice's name and the compute slices
/// left free on that GPU.
pub fn pick_slice(
    node: &Node,
    used: &Usage,
    model: &str,
    profile: &str,
) -> Option<(MigSliceId, u8)> {
    let mut best: Option<(u8, MigSliceId)> = None;
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
            let slice = MigSliceId {
                gpu: gpu.pci_address.clone(),
                profile: profile.to_owned(),
                start,
            };
            best = Some((left, slice));
        }
    }
    best.map(|(left, name)| (name, left))
}

/// Decides a MIG slice: hosts with a GPU of the model in MIG mode and room for the profile;
/// spread and spot scoring as for whole GPUs, then the GPU left with the fewest free compute
/// slices (partly used GPUs fill up first), then node id order.
pub(crate) fn place_mig(
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
    let (mut no_mig, mut no_room, mut full, mut reserved): (usize, usize, usize, usize) =
        (0, 0, 0, 0);
    let mut skipped = Skipped::default();
    // A request with no pool, labels or spread group looks only at the hosts with a GPU of
    // the model in MIG mode (a tenth of them in a typical fleet); what the others would have
    // counted is in the index.
    let plain = instance.pool.is_none() && instance.node_selector.is_empty() && spread.is_none();
    let key = (instance.region.as_str(), req.model.as_str());
    let hosts = if plain {
        let others = index.non_mig.get(&key).copied().unwrap_or_default();
        skipped.not_ready = others.not_ready;
        skipped.selector = others.selector;
        no_mig = others.ready;
        index.mig_hosts.get(&key).unwrap_or(&empty)
    } else {
        with_model
    };
    let mut best: Option<((u32, bool, u8, usize), MigSliceId)> = None;
    for &pos in hosts {
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
            // A slice that fills its GPU, where spread and spot scoring have nothing to add:
            // no later host can beat it.
            let perfect = key.0 == 0
                && key.1 == (instance.market != crate::instances::types::Market::Spot)
                && key.2 == 0;
            best = Some((key, slice));
            if perfect {
                break;
            }
        }
    }
    best.map(|((.., pos), slice)| Choice {
        node: index.hosts[pos].id.clone(),
        gpus: vec![GpuBinding::Slice(slice)],
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

//! Deciding one instance: dispatch to the GPU, MIG or CPU stage; the CPU stage.

use crate::instances::types::Instance;
use crate::placement::explain::Skipped;
use crate::placement::explain::held_note;
use crate::placement::filters::has_room;
use crate::placement::filters::host_filter_at;
use crate::placement::fleet_index::FleetIndex;
use crate::placement::gpus::place_gpu;
use crate::placement::mig_slices::place_mig;
use crate::placement::plan::Choice;
use crate::placement::score::easy_to_reclaim;
use crate::placement::score::rack_load;
use crate::placement::spread::Spread;
use crate::state::index::Usage;

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

pub(crate) fn place_cpu(
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
        let capacity = &index.capacity[pos];
        let free_mem = capacity.memory_mib.saturating_sub(u.memory_mib);
        let key = (
            spread.map_or(0, |_| rack_load(spread, node)),
            capacity.has_gpus,
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

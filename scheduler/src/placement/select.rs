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

/// Decides one instance; `spread` is where its spread group already is. `usage` is the
/// index's state with this plan's placements added (nothing taken out).
pub fn place_with(
    index: &FleetIndex<'_>,
    usage: &[Usage],
    instance: &Instance,
    spread: Option<&Spread>,
) -> Result<Choice, String> {
    decide(index, usage, instance, spread, true)
}

/// [`place_with`] against usage that may have more free than the index's state (spot a
/// planned preemption takes out).
pub(crate) fn place_beside_preemptions(
    index: &FleetIndex<'_>,
    usage: &[Usage],
    instance: &Instance,
    spread: Option<&Spread>,
) -> Result<Choice, String> {
    decide(index, usage, instance, spread, false)
}

fn decide(
    index: &FleetIndex<'_>,
    usage: &[Usage],
    instance: &Instance,
    spread: Option<&Spread>,
    bounded: bool,
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
        Some(req) => place_gpu(index, hosts.len(), usage, instance, req, spread, bounded),
        None => place_cpu(index, hosts, usage, instance, spread),
    }
}

/// Hosts that can take it a CPU-only decision without a spread group compares before it
/// chooses, instead of every host of the region: the cost of a decision then stays flat as
/// the fleet grows (issue 23), as Kubernetes scores a sample of feasible nodes
/// (`percentageOfNodesToScore`, at least 100). The sample starts at a place in the region's
/// host list fixed by the instance's id — plans stay a pure function of the state — and CPU
/// hosts are all looked at before any GPU host, so CPU work stays off GPU hosts as before.
pub const CPU_SAMPLE: usize = 256;

/// Where `instance`'s sample starts among `n` hosts.
fn sample_start(instance: &Instance, n: usize) -> usize {
    use std::hash::{Hash, Hasher};
    // SipHash with fixed keys: the same on every replica and every run.
    let mut h = std::hash::DefaultHasher::new();
    instance.id.hash(&mut h);
    (h.finish() % n.max(1) as u64) as usize
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
    // Without a spread group: a sample (see [`CPU_SAMPLE`]), CPU hosts first. With one, every
    // host: its racks are the first criterion.
    let sampled = spread.is_none() && hosts.len() > CPU_SAMPLE;
    let start = if sampled {
        sample_start(instance, hosts.len())
    } else {
        0
    };
    let order = hosts[start..].iter().chain(&hosts[..start]);
    let passes: &[Option<bool>] = if sampled {
        &[Some(false), Some(true)]
    } else {
        &[None]
    };
    let mut feasible = 0;
    'passes: for &gpu_hosts in passes {
        if best.is_some() {
            break;
        }
        for &pos in order.clone() {
            if gpu_hosts.is_some_and(|g| index.capacity[pos].has_gpus != g) {
                continue;
            }
            if place_cpu_at(
                index,
                pos,
                usage,
                instance,
                spread,
                (&mut full, &mut reserved, &mut skipped),
                &mut best,
            ) {
                feasible += 1;
                if sampled && feasible >= CPU_SAMPLE {
                    break 'passes;
                }
            }
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

type CpuKey = (u32, bool, bool, std::cmp::Reverse<u64>, usize);

/// Looks at the host at `pos` for `instance`: counts why it cannot take it, or keeps it in
/// `best` if it is better. True when it can take it.
fn place_cpu_at(
    index: &FleetIndex<'_>,
    pos: usize,
    usage: &[Usage],
    instance: &Instance,
    spread: Option<&Spread>,
    (full, reserved, skipped): (&mut usize, &mut usize, &mut Skipped),
    best: &mut Option<CpuKey>,
) -> bool {
    {
        let node = index.hosts[pos];
        if let Err(skip) = host_filter_at(index, pos, instance, spread) {
            skipped.count(skip);
            return false;
        }
        let u = &usage[pos];
        let held = u.held.against(instance, false);
        if !has_room(&index.capacity[pos], u, instance, &held, full, reserved) {
            return false;
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
            *best = Some(key);
        }
        true
    }
}

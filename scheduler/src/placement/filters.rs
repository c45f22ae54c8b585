//! Feasibility: which hosts may take an instance at all (state, pool, labels, spread),
//! and whether its vCPUs and memory fit.

use crate::instances::types::Instance;
use crate::nodes::types::{Node, NodeState};
use crate::placement::fleet_index::{Capacity, FleetIndex};
use crate::placement::spread::Spread;
use crate::reservations::types::Held;
use crate::state::index::Usage;

/// Whether `instance`'s vCPUs and memory fit in a host's `capacity` beside `used` and what is
/// `held`.
#[inline]
pub(crate) fn fits_cpu_mem(
    capacity: &Capacity,
    used: &Usage,
    instance: &Instance,
    held: &Held,
) -> bool {
    used.vcpus + held.vcpus + instance.vcpus <= capacity.vcpus
        && used.memory_mib + held.memory_mib + instance.memory_mib <= capacity.memory_mib
}

/// Whether `instance`'s vCPUs and memory fit on `node` beside `used` and `held`; if not,
/// counts the host as `full`, or as `reserved` when only the held capacity is in the way.
#[inline]
pub(crate) fn has_room(
    capacity: &Capacity,
    used: &Usage,
    instance: &Instance,
    held: &Held,
    full: &mut usize,
    reserved: &mut usize,
) -> bool {
    if fits_cpu_mem(capacity, used, instance, held) {
        return true;
    }
    if fits_cpu_mem(capacity, used, instance, &Held::default()) {
        *reserved += 1;
    } else {
        *full += 1;
    }
    false
}

/// Why a host is out for an instance before its capacity is looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Skip {
    /// Cordoned, draining, in maintenance or down.
    NotReady,
    /// Not in the pool asked for, or missing a label.
    Selector,
    /// Already holds one of the instance's spread group.
    Spread,
}

/// [`host_filter`] for the host at `pos`, without reading its record when the instance asks
/// for nothing special and the host is a ready general-fleet host.
#[inline]
pub(crate) fn host_filter_at(
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

#[inline]
pub(crate) fn host_filter(
    node: &Node,
    instance: &Instance,
    spread: Option<&Spread>,
) -> Result<(), Skip> {
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

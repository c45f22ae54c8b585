//! Scoring rules shared by the GPU, MIG and CPU stages.

use crate::instances::types::{Instance, Market};
use crate::nodes::types::Node;
use crate::placement::spread::Spread;
use crate::reservations::types::Held;
use crate::state::index::Usage;

/// Whether `instance` is spot and the host is where spot is easy to reclaim: it already runs
/// spot work (one preemption frees more) or lends capacity held for reservations (their owners
/// will want it back). Other work never prefers such hosts.
#[inline]
pub(crate) fn easy_to_reclaim(instance: &Instance, used: &Usage) -> bool {
    instance.market == Market::Spot && (used.spot > 0 || used.held != Held::default())
}

/// How many instances of the spread group sit in `node`'s rack (0 without a group).
#[inline]
pub(crate) fn rack_load(spread: Option<&Spread>, node: &Node) -> u32 {
    spread
        .and_then(|s| s.racks.get(&node.rack))
        .copied()
        .unwrap_or(0)
}

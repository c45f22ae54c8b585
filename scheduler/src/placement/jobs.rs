//! AI jobs and gangs: the queues served in order, every member of a job placed or none,
//! backfill, and preemption for a whole gang.

use std::collections::{HashMap, HashSet};

use vmcloud_proto::{InstanceId, JobId, NodeId, ReservationId};

use crate::instances::types::{Instance, Market};
use crate::placement::fleet_index::FleetIndex;
use crate::placement::plan::Choice;
use crate::placement::plan::Plan;
use crate::placement::preemption::SpotByHost;
use crate::placement::preemption::find_preemption;
use crate::placement::preemption::without;
use crate::placement::reserved::free_slots;
use crate::placement::reserved::place_reserved;
use crate::placement::select::place_beside_preemptions;
use crate::state::ClusterState;
use crate::state::index::Usage;

/// Serves the AI job queues in order (see [`crate::jobs::queue`]): each job's members all at once
/// or not at all; behind a job that cannot start, only jobs that finish before its estimated
/// start (backfill).
pub(crate) fn plan_jobs<'s>(
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
    for gang in crate::jobs::queue::queue(state, pending) {
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
                    blocked.insert(
                        key,
                        (&gang.spec.id, crate::jobs::queue::head_start(state, &gang)),
                    );
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
pub(crate) fn preempt_for_gang<'s>(
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
        let (_, set) = find_preemption(index, &usage, m, None, spot, &claimed, slots.as_ref())?;
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
pub(crate) struct JobCtx<'s, 'i> {
    pub(crate) state: &'s ClusterState,
    pub(crate) index: &'i FleetIndex<'s>,
    pub(crate) slots_taken: HashMap<(&'s ReservationId, usize), u32>,
}

impl<'s> JobCtx<'s, '_> {
    /// A reserved member's free slots; `None` for other members.
    pub(crate) fn slots(&self, m: &Instance) -> Option<HashMap<usize, u32>> {
        (m.market == Market::Reserved)
            .then(|| free_slots(self.state, self.index, m, &self.slots_taken))
    }

    /// Where one member would go now: a reserved one to a free slot of its reservation.
    pub(crate) fn decide(&self, usage: &[Usage], m: &Instance) -> Result<Choice, String> {
        match self.slots(m) {
            Some(slots) => place_reserved(self.index, usage, m, &slots),
            None => place_beside_preemptions(self.index, usage, m, None),
        }
    }

    /// Counts (`+1`) or gives back (`-1`) the reservation slot a placed member takes.
    pub(crate) fn count_slot(&mut self, m: &'s Instance, choice: &Choice, delta: i32) {
        if let (Some(rid), Some(pos)) = (&m.reservation, self.index.position(&choice.node)) {
            let n = self.slots_taken.entry((rid, pos)).or_default();
            *n = n.saturating_add_signed(delta);
        }
    }
}

/// Places every member of a job, or none (what was taken is given back).
pub(crate) fn place_gang<'s>(
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

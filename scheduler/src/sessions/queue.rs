//! Launch queues: where a session launch goes and when it is expected to start (pure
//! functions of the state, like placement).

use std::collections::HashMap;

use vmcloud_proto::InstanceId;

use crate::instances::types::Instance;
use crate::jobs::queue::{MAX_ESTIMATED, Standing, Timeline};
use crate::sessions::types::{LatencyTarget, SessionTier};
use crate::state::ClusterState;

/// How good a region is for a launch (smaller is better): start unknown, expected start,
/// round trip.
type RegionKey = (bool, Option<i64>, u32);

/// Where a launch with a latency target goes: among the regions within its target (those the
/// caller lets take work), the one where it is expected to start first (free GPUs now, else
/// the launch queue ahead of it walked like [`standings`] does), the nearest on a tie or
/// when no start can be told anywhere. `None` when no region is within the target.
pub fn choose_region(
    state: &ClusterState,
    target: &LatencyTarget,
    open: impl Fn(&str) -> bool,
    model: &str,
    count: u32,
    pool: Option<&str>,
    tier: SessionTier,
) -> Option<(String, u32, Option<i64>)> {
    let rank = launch_rank_of(Some(tier));
    let mut best: Option<(RegionKey, &str)> = None;
    for (region, rtt) in &target.rtt_ms {
        if *rtt > target.max_ms || !open(region) {
            continue;
        }
        let mut t = launch_timeline(state, region, model, pool);
        // The launches of this class that would go before it.
        let mut ahead: Vec<&Instance> = state
            .pending()
            .filter(|i| {
                i.session.is_some()
                    && &i.region == region
                    && i.pool.as_deref() == pool
                    && i.gpu.as_ref().is_some_and(|g| g.model == model)
                    && launch_rank(i) <= rank
            })
            .collect();
        ahead.sort_by_key(|i| launch_rank(i));
        let mut known = ahead.len() <= MAX_ESTIMATED;
        ahead.truncate(MAX_ESTIMATED);
        for i in ahead {
            if book_launch(&mut t, i).is_none() {
                known = false;
                break;
            }
        }
        let start = known.then(|| t.earliest(i64::from(count))).flatten();
        // Unknown starts sort after every known one; then the nearest region.
        let key = (start.is_none(), start, *rtt);
        if best.as_ref().is_none_or(|(b, _)| key < *b) {
            best = Some((key, region));
        }
    }
    best.map(|((_, start, rtt), region)| (region.to_owned(), rtt, start))
}

/// GPUs of `model` in `region`'s `pool` over time, as the launch queue gets them: free now,
/// what running sessions and jobs give back when they end, and the warm VMs booting for the
/// pool (each handed to the queue when booted, see [`crate::gaming::warm_queue`]).
fn launch_timeline(
    state: &ClusterState,
    region: &str,
    model: &str,
    pool: Option<&str>,
) -> Timeline {
    let mut t = Timeline::new_in_pool(state, region, model, pool);
    for (ready, gpus) in state.warm_refills(region, model, pool) {
        t.release(ready, gpus);
    }
    t
}

/// Books a waiting launch at its earliest start for its tier's length; that start, if any.
fn book_launch(t: &mut Timeline, i: &Instance) -> Option<i64> {
    let need = i64::from(i.gpu.as_ref().map_or(0, |g| g.count));
    let length = i64::from(i.session.as_ref().map_or(0, |s| s.max_length_s()));
    let start = t.earliest(need)?;
    t.book(start, need, length * 1000);
    Some(start)
}

/// Where a pending instance goes in placement's order: VIP launches first, then Priority+;
/// everything else (standard launches included) keeps the order it came in.
/// Warm VMs (see [`crate::gaming::warm`]) go after all of them.
pub fn launch_rank(i: &Instance) -> u8 {
    if i.is_warm() {
        return 3;
    }
    launch_rank_of(i.session.as_ref().map(|s| s.tier))
}

fn launch_rank_of(tier: Option<SessionTier>) -> u8 {
    match tier {
        Some(SessionTier::Vip) => 0,
        Some(SessionTier::PriorityPlus) => 1,
        _ => 2,
    }
}

/// Position and estimated start of every waiting launch, per region and GPU class.
pub fn standings(state: &ClusterState) -> HashMap<InstanceId, Standing> {
    // Warm VMs waiting for a host are no gamer's launch: they neither count nor wait ahead.
    let mut waiting: Vec<&Instance> = state
        .pending()
        .filter(|i| i.session.is_some() && !i.is_warm())
        .collect();
    // Pending is in creation order; a stable sort by tier keeps it within a tier.
    waiting.sort_by_key(|i| launch_rank(i));
    let class = |i: &Instance| {
        (
            i.region.clone(),
            i.gpu.as_ref().map(|g| g.model.clone()).unwrap_or_default(),
            i.pool.clone(),
        )
    };
    let mut per_queue: HashMap<_, u32> = HashMap::new();
    for i in &waiting {
        *per_queue.entry(class(i)).or_default() += 1;
    }
    let mut seen: HashMap<_, (u32, Option<Timeline>)> = HashMap::new();
    let mut out = HashMap::new();
    for i in waiting {
        let key = class(i);
        let of = per_queue[&key];
        let (position, timeline) = seen.entry(key.clone()).or_insert_with(|| {
            let (region, model, pool) = &key;
            let t =
                (!model.is_empty()).then(|| launch_timeline(state, region, model, pool.as_deref()));
            (0, t)
        });
        *position += 1;
        let eta_ms = match timeline {
            Some(t) if *position as usize <= MAX_ESTIMATED => book_launch(t, i),
            _ => None,
        };
        out.insert(
            i.id.clone(),
            Standing {
                position: *position,
                of,
                eta_ms,
            },
        );
    }
    out
}

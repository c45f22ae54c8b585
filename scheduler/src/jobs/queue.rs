//! AI job queues: the order waiting jobs are served in, backfill, and each job's position and
//! estimated start.
//!
//! **Order**: on-demand and reserved jobs before spot ones (spot only gets what nobody else
//! waits for), then priority class (high, normal, low), then fair share (the GPUs the project's
//! running jobs hold, divided by its weight: the project using least of its share first), then
//! submission. **Gangs**: a job's members start together or not at all. **Backfill**: when
//! the first job of a region and GPU model cannot start, it gets an estimated start; later
//! jobs of that model may still start now only if their maximum run time ends before it, so
//! they never delay it. **Preemption**: when the first job that cannot start is not spot,
//! placement may preempt spot work for it (see [`crate::placement`]); a preempted spot job
//! comes back to its queue, whole, once its members have stopped. **Estimates** simulate the queue on aggregate GPU counts against the
//! ends of running jobs (start + maximum run time); other work has no known end and is taken
//! as staying, so an estimate can be late, never knowingly early.
//!
//! Pure functions of the state, like placement: "now" is the state's `now_ms`, the time of the
//! last command.

use std::cmp::Reverse;
use std::collections::{BTreeMap, HashMap};

use vmcloud_proto::{JobId, ProjectId};

use crate::instances::types::{Instance, Market};
use crate::jobs::types::{JobPriority, JobSpec};
use crate::nodes::types::NodeState;
use crate::state::ClusterState;

/// Jobs simulated per region and GPU model for estimates; later ones get none.
pub const MAX_ESTIMATED: usize = 200;

/// One waiting job: its pending members and what it needs.
#[derive(Debug, Clone)]
pub struct Gang<'s> {
    pub spec: &'s JobSpec,
    pub members: Vec<&'s Instance>,
    pub project: &'s ProjectId,
    pub region: &'s str,
    /// GPU model ("" for CPU-only jobs) and GPUs of all members together.
    pub model: &'s str,
    pub gpus: u32,
    pub submitted_at_ms: i64,
}

impl Gang<'_> {
    pub fn runtime_ms(&self) -> i64 {
        i64::from(self.spec.max_runtime_s) * 1000
    }
}

/// Where a waiting job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Standing {
    /// 1 = next, among the waiting jobs of its region.
    pub position: u32,
    pub of: u32,
    /// When it is expected to start; `None` when it cannot be told (GPUs held by work with
    /// no known end, or too far down the queue).
    pub eta_ms: Option<i64>,
}

/// Running GPUs (and vCPUs, for CPU-only jobs) of each project's jobs.
fn running_share(state: &ClusterState) -> HashMap<&ProjectId, (u64, u64)> {
    let mut share: HashMap<&ProjectId, (u64, u64)> = HashMap::new();
    for i in state.instances.values() {
        if i.job.is_some() && i.node.is_some() {
            let s = share.entry(&i.project).or_default();
            s.0 += i.gpus.len() as u64;
            s.1 += u64::from(i.vcpus);
        }
    }
    share
}

/// The waiting jobs among `pending`, in the order they are served.
pub fn queue<'s>(
    state: &'s ClusterState,
    pending: impl IntoIterator<Item = &'s Instance>,
) -> Vec<Gang<'s>> {
    let mut gangs: BTreeMap<&JobId, Gang<'s>> = BTreeMap::new();
    for i in pending {
        let Some(spec) = &i.job else { continue };
        let g = gangs.entry(&spec.id).or_insert_with(|| Gang {
            spec,
            members: Vec::new(),
            project: &i.project,
            region: &i.region,
            model: i.gpu.as_ref().map_or("", |g| g.model.as_str()),
            gpus: 0,
            submitted_at_ms: i.created_at_ms,
        });
        g.gpus += i.gpu.as_ref().map_or(0, |g| g.count);
        g.submitted_at_ms = g.submitted_at_ms.min(i.created_at_ms);
        g.members.push(i);
    }
    // A job with members still stopping (reclaimed spot) waits until all are back.
    gangs.retain(|_, g| g.members.len() >= g.spec.gang_size as usize);
    if gangs.is_empty() {
        return Vec::new();
    }
    let share = running_share(state);
    let weighted = |project: &ProjectId| {
        let weight = u64::from(
            state
                .projects
                .get(project)
                .map_or(1, |a| a.share_weight.max(1)),
        );
        let (gpus, vcpus) = share.get(project).copied().unwrap_or_default();
        (gpus * 1_000_000 / weight, vcpus * 1_000_000 / weight)
    };
    let mut out: Vec<Gang<'s>> = gangs.into_values().collect();
    out.sort_by_cached_key(|g| {
        (
            // Spot jobs only get what nobody else waits for.
            g.members[0].market == Market::Spot,
            Reverse(g.spec.priority),
            weighted(g.project),
            g.submitted_at_ms,
            g.spec.id.clone(),
        )
    });
    out
}

/// GPUs of one model in one region over time: free now, plus what running (and simulated)
/// jobs give back when they end.
pub(crate) struct Timeline {
    now: i64,
    free_now: i64,
    /// (time, change in free GPUs), sorted by time.
    events: Vec<(i64, i64)>,
}

/// Whole GPUs of `model` free now in `region` (on ready hosts of `pool`, less what unused
/// reservation slots hold).
pub(crate) fn free_whole_gpus(
    state: &ClusterState,
    region: &str,
    model: &str,
    pool: Option<&str>,
) -> i64 {
    let no_labels = BTreeMap::new();
    state
        .nodes
        .values()
        .filter(|n| {
            n.region == region && n.state == NodeState::Ready && n.matches(pool, &no_labels)
        })
        .map(|node| {
            let Some(used) = state.index.usage.get(&node.id) else {
                return node.whole_gpus() as i64;
            };
            let free = node
                .gpus
                .iter()
                .filter(|g| g.model == model && !g.mig && !used.gpus.contains(&g.pci_address))
                .count() as i64;
            (free - i64::from(used.held.gpus)).max(0)
        })
        .sum()
}

impl Timeline {
    fn new(state: &ClusterState, region: &str, model: &str) -> Timeline {
        Self::new_in_pool(state, region, model, None)
    }

    /// The GPUs of `model` on the ready hosts of `region` in `pool` (`None`: the general
    /// fleet).
    pub(crate) fn new_in_pool(
        state: &ClusterState,
        region: &str,
        model: &str,
        pool: Option<&str>,
    ) -> Timeline {
        let free_now = free_whole_gpus(state, region, model, pool);
        // Only instances with an end are events: the state's index of them, not every
        // instance (this runs for each blocked queue head of each plan).
        let mut events: Vec<(i64, i64)> = state
            .index
            .terminating
            .iter()
            .filter_map(|(_, id)| state.instances.get(id))
            .filter(|i| {
                i.region == region
                    && i.node.is_some()
                    && i.gpu
                        .as_ref()
                        .is_some_and(|g| g.model == model && g.mig_profile.is_none())
            })
            .filter_map(|i| {
                // Jobs end at their maximum run time, sessions at their tier's length, spot
                // at the end of its notice.
                let ends = i.job.is_some() || i.session.is_some() || i.market == Market::Spot;
                Some((i.terminate_at_ms.filter(|_| ends)?, i.gpus.len() as i64))
            })
            .collect();
        events.sort_unstable();
        Timeline {
            now: state.now_ms,
            free_now,
            events,
        }
    }

    /// The earliest time from now at which `need` GPUs are free and stay free for good.
    pub(crate) fn earliest(&self, need: i64) -> Option<i64> {
        // Free GPUs just after each event, and the lowest level from each event on.
        let mut levels = Vec::with_capacity(self.events.len() + 1);
        let mut level = self.free_now;
        levels.push((self.now, level));
        for &(t, d) in &self.events {
            level += d;
            levels.push((t.max(self.now), level));
        }
        let mut min_after = i64::MAX;
        let mut start = None;
        for &(t, level) in levels.iter().rev() {
            min_after = min_after.min(level);
            if min_after >= need {
                start = Some(t);
            } else {
                break;
            }
        }
        start
    }

    /// `n` GPUs come free at `at` (a warm VM booted for the queue).
    pub(crate) fn release(&mut self, at: i64, n: i64) {
        let e = (at, n);
        let i = self.events.partition_point(|x| x <= &e);
        self.events.insert(i, e);
    }

    /// Books `need` GPUs from `start` for `runtime_ms`.
    pub(crate) fn book(&mut self, start: i64, need: i64, runtime_ms: i64) {
        for e in [(start, -need), (start.saturating_add(runtime_ms), need)] {
            let at = self.events.partition_point(|x| x <= &e);
            self.events.insert(at, e);
        }
    }
}

/// When `gang` (a GPU job) is expected to start if it were first in line.
pub fn head_start(state: &ClusterState, gang: &Gang<'_>) -> Option<i64> {
    if gang.gpus == 0 {
        return None;
    }
    Timeline::new(state, gang.region, gang.model).earliest(i64::from(gang.gpus))
}

/// Position and estimated start of every waiting job.
pub fn standings(state: &ClusterState) -> HashMap<JobId, Standing> {
    let gangs = queue(state, state.pending());
    let mut per_region: HashMap<&str, u32> = HashMap::new();
    for g in &gangs {
        *per_region.entry(g.region).or_default() += 1;
    }
    let mut seen: HashMap<&str, u32> = HashMap::new();
    let mut timelines: HashMap<(&str, &str), (Timeline, usize)> = HashMap::new();
    let mut out = HashMap::new();
    for g in &gangs {
        let position = seen.entry(g.region).or_default();
        *position += 1;
        let eta_ms = if g.gpus == 0 {
            None
        } else {
            let (timeline, simulated) = timelines
                .entry((g.region, g.model))
                .or_insert_with(|| (Timeline::new(state, g.region, g.model), 0));
            *simulated += 1;
            let need = i64::from(g.gpus);
            let start = (*simulated <= MAX_ESTIMATED)
                .then(|| timeline.earliest(need))
                .flatten();
            if let Some(s) = start {
                timeline.book(s, need, g.runtime_ms());
            }
            start
        };
        out.insert(
            g.spec.id.clone(),
            Standing {
                position: *position,
                of: per_region[g.region],
                eta_ms,
            },
        );
    }
    out
}

/// The priority class named in a request.
pub fn parse_priority(s: &str) -> Option<JobPriority> {
    [JobPriority::Low, JobPriority::Normal, JobPriority::High]
        .into_iter()
        .find(|p| p.as_str() == s)
}

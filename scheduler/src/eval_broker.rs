//! The eval broker: the leader's queue of evaluations, each "look at the waiting work of one
//! region again", handed to planners by priority, at least once.
//!
//! State changes (new work, capacity freed, plans partly refused by apply) make the placement
//! controller [`EvalBroker::enqueue`] an evaluation for the region concerned; one per region
//! is outstanding at a time (a change while it is being planned marks it to run again after).
//! [`EvalBroker::dequeue`] hands out the ready ones, highest priority first; the planner
//! [`EvalBroker::ack`]s one whose plan was committed, or [`EvalBroker::nack`]s it, and it is
//! delivered again, up to [`DELIVERY_LIMIT`] times; then it is parked as failed (visible in the
//! backlog) and tried again after [`FAILED_RETRY_MS`]. Regions are independent (no host is in
//! two), so the evaluations dequeued together are planned in parallel on one snapshot.
//!
//! It lives in the leader's memory, like Nomad's: a new leader rebuilds it from the replicated
//! state (every pending workload is work to evaluate), so nothing is lost with a leader.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

/// Deliveries of one evaluation before it is parked as failed.
pub const DELIVERY_LIMIT: u32 = 3;
/// How long a failed evaluation is parked before it is tried again.
pub const FAILED_RETRY_MS: i64 = 5_000;

/// Evaluation priorities: a higher one is planned first.
pub const PRIORITY_NORMAL: u8 = 50;
/// Waiting work includes a VIP or Priority+ game launch or a high-priority job.
pub const PRIORITY_HIGH: u8 = 80;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Evaluation {
    pub id: u64,
    pub region: String,
    pub priority: u8,
    /// Deliveries so far (1 on the first).
    pub attempts: u32,
    /// Why it was made ("new work", "capacity freed", "plan partly refused", …).
    pub reason: String,
}

#[derive(Debug, Clone)]
struct Entry {
    eval: Evaluation,
    /// Changed again while delivered: run once more after the ack.
    dirty: bool,
    state: EntryState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EntryState {
    Ready,
    Unacked,
    /// Parked until this time (ms).
    Failed(i64),
}

/// What the broker holds, for `/metrics` and `GET /v1/evaluations`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Backlog {
    pub ready: usize,
    pub unacked: usize,
    pub failed: usize,
    pub delivered_total: u64,
    pub acked_total: u64,
    pub nacked_total: u64,
    pub evaluations: Vec<EvaluationView>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct EvaluationView {
    #[serde(flatten)]
    pub eval: Evaluation,
    /// `ready`, `unacked` or `failed`.
    pub state: &'static str,
}

#[derive(Debug, Default)]
pub struct EvalBroker {
    by_region: BTreeMap<String, Entry>,
    next_id: u64,
    delivered: u64,
    acked: u64,
    nacked: u64,
}

impl EvalBroker {
    pub fn new() -> EvalBroker {
        EvalBroker::default()
    }

    /// Asks for `region` to be evaluated. Merges with an outstanding evaluation of the region
    /// (raising its priority); one being planned is marked to run again; a failed one stays
    /// parked until its retry time.
    pub fn enqueue(&mut self, region: &str, priority: u8, reason: &str) {
        if let Some(e) = self.by_region.get_mut(region) {
            e.eval.priority = e.eval.priority.max(priority);
            // A failed one stays parked until its retry time: what keeps failing must not
            // spin on every change.
            if e.state == EntryState::Unacked {
                e.dirty = true;
            }
            return;
        }
        self.next_id += 1;
        self.by_region.insert(
            region.to_owned(),
            Entry {
                eval: Evaluation {
                    id: self.next_id,
                    region: region.to_owned(),
                    priority,
                    attempts: 0,
                    reason: reason.to_owned(),
                },
                dirty: false,
                state: EntryState::Ready,
            },
        );
    }

    /// Hands out every ready evaluation (and failed ones whose wait is over at `now_ms`),
    /// highest priority first, then oldest.
    pub fn dequeue(&mut self, now_ms: i64) -> Vec<Evaluation> {
        let mut out = Vec::new();
        for e in self.by_region.values_mut() {
            let ready = match e.state {
                EntryState::Ready => true,
                EntryState::Failed(until) => until <= now_ms,
                EntryState::Unacked => false,
            };
            if ready {
                if matches!(e.state, EntryState::Failed(_)) {
                    e.eval.attempts = 0;
                }
                e.state = EntryState::Unacked;
                e.eval.attempts += 1;
                out.push(e.eval.clone());
            }
        }
        self.delivered += out.len() as u64;
        out.sort_by_key(|e| (std::cmp::Reverse(e.priority), e.id));
        out
    }

    /// The evaluation's plan was committed: done, unless it changed meanwhile.
    pub fn ack(&mut self, eval: &Evaluation) {
        let Some(e) = self.by_region.get_mut(&eval.region) else {
            return;
        };
        if e.eval.id != eval.id || e.state != EntryState::Unacked {
            return;
        }
        self.acked += 1;
        if e.dirty {
            e.dirty = false;
            e.state = EntryState::Ready;
            e.eval.attempts = 0;
        } else {
            self.by_region.remove(&eval.region);
        }
    }

    /// The evaluation could not be completed: delivered again, or parked as failed once it
    /// has been delivered [`DELIVERY_LIMIT`] times.
    pub fn nack(&mut self, eval: &Evaluation, now_ms: i64, why: &str) {
        let Some(e) = self.by_region.get_mut(&eval.region) else {
            return;
        };
        if e.eval.id != eval.id || e.state != EntryState::Unacked {
            return;
        }
        self.nacked += 1;
        e.eval.reason = why.to_owned();
        e.state = if e.eval.attempts >= DELIVERY_LIMIT {
            EntryState::Failed(now_ms + FAILED_RETRY_MS)
        } else {
            EntryState::Ready
        };
    }

    /// When the next failed evaluation may be tried again.
    pub fn next_retry(&self) -> Option<i64> {
        self.by_region
            .values()
            .filter_map(|e| match e.state {
                EntryState::Failed(until) => Some(until),
                _ => None,
            })
            .min()
    }

    /// Forgets everything (leadership lost: the next leader rebuilds from the state).
    pub fn clear(&mut self) {
        self.by_region.clear();
    }

    pub fn backlog(&self) -> Backlog {
        let mut b = Backlog {
            delivered_total: self.delivered,
            acked_total: self.acked,
            nacked_total: self.nacked,
            ..Backlog::default()
        };
        for e in self.by_region.values() {
            let state = match e.state {
                EntryState::Ready => {
                    b.ready += 1;
                    "ready"
                }
                EntryState::Unacked => {
                    b.unacked += 1;
                    "unacked"
                }
                EntryState::Failed(_) => {
                    b.failed += 1;
                    "failed"
                }
            };
            b.evaluations.push(EvaluationView {
                eval: e.eval.clone(),
                state,
            });
        }
        b
    }
}

/// A shared handle: the controller writes, the API reads the backlog.
pub type SharedBroker = std::sync::Arc<std::sync::Mutex<EvalBroker>>;

/// Per region, the priority of its waiting work: high when a VIP or Priority+ launch or a
/// high-priority job waits there.
pub fn region_priorities<'s>(
    pending: impl IntoIterator<Item = &'s crate::instances::types::Instance>,
) -> HashMap<&'s str, u8> {
    let mut out: HashMap<&str, u8> = HashMap::new();
    for i in pending {
        let high = crate::sessions::queue::launch_rank(i) < 2
            || i.job
                .as_ref()
                .is_some_and(|j| j.priority == crate::jobs::types::JobPriority::High);
        let p = if high { PRIORITY_HIGH } else { PRIORITY_NORMAL };
        let e = out.entry(i.region.as_str()).or_insert(p);
        *e = (*e).max(p);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn highest_priority_first_one_per_region_and_changes_while_planning_run_again() {
        let mut b = EvalBroker::new();
        b.enqueue("par", PRIORITY_NORMAL, "new work");
        b.enqueue("fra", PRIORITY_NORMAL, "new work");
        b.enqueue("fra", PRIORITY_HIGH, "a VIP launch");
        b.enqueue("par", PRIORITY_NORMAL, "more work");
        let got = b.dequeue(0);
        let order: Vec<(&str, u8)> = got
            .iter()
            .map(|e| (e.region.as_str(), e.priority))
            .collect();
        assert_eq!(order, [("fra", PRIORITY_HIGH), ("par", PRIORITY_NORMAL)]);
        assert!(
            b.dequeue(0).is_empty(),
            "nothing is delivered twice at once"
        );
        // par changes while being planned: after its ack it is ready again.
        b.enqueue("par", PRIORITY_NORMAL, "capacity freed");
        b.ack(&got[0]);
        b.ack(&got[1]);
        let again = b.dequeue(0);
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].region, "par");
        b.ack(&again[0]);
        assert_eq!(b.backlog().ready + b.backlog().unacked, 0);
    }

    #[test]
    fn nacked_evaluations_come_back_until_the_delivery_limit_then_wait_visibly() {
        let mut b = EvalBroker::new();
        b.enqueue("par", PRIORITY_NORMAL, "new work");
        for attempt in 1..=DELIVERY_LIMIT {
            let got = b.dequeue(1000);
            assert_eq!(got.len(), 1);
            assert_eq!(got[0].attempts, attempt);
            b.nack(&got[0], 1000, "not committed");
        }
        let backlog = b.backlog();
        assert_eq!((backlog.ready, backlog.failed), (0, 1));
        assert_eq!(backlog.evaluations[0].state, "failed");
        assert_eq!(backlog.evaluations[0].eval.reason, "not committed");
        b.enqueue("par", PRIORITY_HIGH, "more work");
        assert!(b.dequeue(1000).is_empty(), "parked, even when asked again");
        assert_eq!(b.next_retry(), Some(1000 + FAILED_RETRY_MS));
        let retried = b.dequeue(1000 + FAILED_RETRY_MS);
        assert_eq!(retried.len(), 1);
        assert_eq!(retried[0].attempts, 1);
        // A stale ack (an earlier delivery) changes nothing; the current one completes it.
        b.ack(&Evaluation {
            id: 999,
            ..retried[0].clone()
        });
        assert_eq!(b.backlog().unacked, 1);
        b.ack(&retried[0]);
        assert_eq!(
            b.backlog(),
            Backlog {
                delivered_total: 4,
                acked_total: 1,
                nacked_total: 3,
                ..Backlog::default()
            }
        );
    }
}

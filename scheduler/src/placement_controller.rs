//! The placement controller, on the leader. After every applied batch it turns what changed
//! into evaluations in the [`crate::eval_broker`] (a region with new waiting work, or every region
//! with waiting work once capacity has changed), dequeues the ready ones, plans them in
//! parallel on one snapshot (one pure [`plan_region`] per region, on its own thread), merges
//! the plans into one Raft proposal, and acks the evaluations whose plan was committed and
//! took whole; an evaluation whose proposal failed, or part of whose plan apply refused (the
//! state changed since the snapshot), is nacked and delivered again. It also proposes the
//! reclaim of spot whose notice ran out (and of jobs and sessions at their time limit) and the
//! expiry of reservations whose end passed. Idempotent: it reads everything it needs from the
//! state each round, so it can be restarted or run on a new leader at any time.

use std::time::Duration;

use vmcloud_proto::pb::{self, command::Body};

use crate::clock::now_ms;
use crate::eval_broker::{Evaluation, region_priorities};
use crate::instances::types::InstanceState;
use crate::instances::types::WAITING_FOR_PLACEMENT;
use crate::placement::plan::Plan;
use crate::placement::plan_region;
use crate::raft_handle::Cluster;
use crate::state::ClusterState;

/// Plans each evaluation's region on the same snapshot, in parallel when there are several,
/// and merges the plans (regions share no host, so they never conflict).
fn plan_evaluations(state: &ClusterState, evals: &[Evaluation], all: bool) -> Plan {
    let plans: Vec<Plan> = if evals.len() == 1 {
        vec![plan_region(state, all, Some(&evals[0].region))]
    } else {
        std::thread::scope(|s| {
            let planners: Vec<_> = evals
                .iter()
                .map(|e| s.spawn(move || plan_region(state, all, Some(&e.region))))
                .collect();
            planners
                .into_iter()
                .map(|p| p.join().expect("placement is pure and does not panic"))
                .collect()
        })
    };
    let mut merged = Plan::default();
    for p in plans {
        merged.placements.extend(p.placements);
        merged.unplaced.extend(p.unplaced);
        merged.preemptions.extend(p.preemptions);
    }
    merged
}

pub async fn run_placement(cluster: Cluster) {
    let broker = cluster.broker().clone();
    let mut applied = cluster.applied();
    let mut status = cluster.raft_status();
    let mut last: Option<Plan> = None;
    // Capacity epoch of the last full pass; `None` forces one (e.g. on a new leader).
    let mut planned_epoch: Option<u64> = None;
    loop {
        let is_leader = status.borrow_and_update().is_leader;
        if !is_leader {
            planned_epoch = None;
            // A new leader rebuilds its evaluations from the state.
            broker.lock().expect("broker lock").clear();
        }
        // When the next spot notice or reservation runs out (the leader wakes for it).
        let mut next_notice_end = None;
        if is_leader {
            let (next, due) = cluster.state().notices_ending(now_ms());
            let (next_end, ended) = cluster.state().reservations_ending(now_ms());
            next_notice_end = [next, next_end].into_iter().flatten().min();
            let timed = if !ended.is_empty() {
                let n = ended.len();
                let ids = ended.iter().map(ToString::to_string).collect();
                let body = Body::ExpireReservations(pb::ExpireReservations {
                    reservation_ids: ids,
                });
                Some((body, format!("{n} reservation(s) ended")))
            } else if !due.is_empty() {
                let n = due.len();
                let ids = due.iter().map(ToString::to_string).collect();
                let body = Body::ReclaimInstances(pb::ReclaimInstances { instance_ids: ids });
                Some((
                    body,
                    format!("{n} spot instance(s) reclaimed after their notice"),
                ))
            } else {
                None
            };
            if let Some((body, what)) = timed {
                match cluster.propose(body).await {
                    Ok(_) => tracing::info!("{what}"),
                    Err(e) => {
                        tracing::warn!(error = %e, "not committed, retrying: {what}");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
                continue;
            }
            // What changed becomes evaluations: every region with waiting work once capacity
            // has changed, else the regions with work placement has not looked at yet.
            let (evals, all) = {
                let state = cluster.state();
                let all = planned_epoch != Some(state.capacity_epoch);
                planned_epoch = Some(state.capacity_epoch);
                let looking = state
                    .pending()
                    .filter(|i| all || i.pending_reason.as_deref() == Some(WAITING_FOR_PLACEMENT));
                let reason = if all { "capacity changed" } else { "new work" };
                let mut b = broker.lock().expect("broker lock");
                for (region, priority) in region_priorities(looking) {
                    b.enqueue(region, priority, reason);
                }
                (b.dequeue(now_ms()), all)
            };
            if !evals.is_empty() {
                let plan = plan_evaluations(&cluster.state(), &evals, all);
                // The same plan twice in a row made no progress: wait for something to change
                // rather than spin.
                if plan.is_empty() || last.as_ref() == Some(&plan) {
                    let mut b = broker.lock().expect("broker lock");
                    for e in &evals {
                        b.ack(e);
                    }
                } else {
                    match cluster
                        .propose(Body::PlaceInstances(plan.to_command()))
                        .await
                    {
                        Ok(_) => {
                            if !plan.placements.is_empty() {
                                tracing::info!(
                                    placed = plan.placements.len(),
                                    waiting = plan.unplaced.len(),
                                    evaluations = evals.len(),
                                    "placement plan committed"
                                );
                            }
                            settle(&cluster, &evals, &plan);
                            last = Some(plan);
                            continue;
                        }
                        Err(e) => {
                            planned_epoch = None;
                            {
                                let mut b = broker.lock().expect("broker lock");
                                for ev in &evals {
                                    b.nack(ev, now_ms(), &format!("plan not committed: {e}"));
                                }
                            }
                            tracing::warn!(error = %e, "placement plan not committed; retrying");
                            tokio::time::sleep(Duration::from_millis(200)).await;
                            continue;
                        }
                    }
                }
            }
            // A parked (failed) evaluation wakes the loop when it may be tried again.
            let retry = broker.lock().expect("broker lock").next_retry();
            next_notice_end = [next_notice_end, retry].into_iter().flatten().min();
        }
        let notice_ends = async {
            match next_notice_end {
                Some(at) => {
                    let wait = u64::try_from(at.saturating_sub(now_ms())).unwrap_or(0);
                    tokio::time::sleep(Duration::from_millis(wait + 1)).await;
                }
                None => std::future::pending().await,
            }
        };
        // All are cancel-safe; whichever fires, the loop re-reads the state.
        tokio::select! {
            r = applied.changed() => if r.is_err() { return },
            r = status.changed() => if r.is_err() { return },
            () = notice_ends => {}
        }
        last = None;
    }
}

/// After a committed plan: acks the evaluations whose placements all took, nacks those where
/// apply refused some (the state changed after the snapshot), so they are planned again.
fn settle(cluster: &Cluster, evals: &[Evaluation], plan: &Plan) {
    let refused: std::collections::HashSet<String> = {
        let state = cluster.state();
        plan.placements
            .iter()
            .filter_map(|(id, _)| state.instances.get(id))
            .filter(|i| i.state == InstanceState::Pending)
            .map(|i| i.region.clone())
            .collect()
    };
    let mut b = cluster.broker().lock().expect("broker lock");
    for e in evals {
        if refused.contains(&e.region) {
            b.nack(
                e,
                now_ms(),
                "apply refused part of the plan (the state changed since the snapshot)",
            );
        } else {
            b.ack(e);
        }
    }
}

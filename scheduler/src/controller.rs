//! The placement controller: on the leader, after every applied batch, plans the pending
//! instances against the newest state and proposes the plan; when a spot instance's notice
//! runs out, proposes its reclaim; when a reservation's end passes, proposes its expiry. Idempotent: it reads everything it needs from the
//! state each round, so it can be restarted or run on a new leader at any time.

use std::time::Duration;

use vmcloud_proto::pb::{self, command::Body};

use crate::cluster::{Cluster, now_ms};
use crate::placement::{Plan, plan_pending};

pub async fn run_placement(cluster: Cluster) {
    let mut applied = cluster.applied();
    let mut status = cluster.raft_status();
    let mut last: Option<Plan> = None;
    // Capacity epoch of the last full pass; `None` forces one (e.g. on a new leader).
    let mut planned_epoch: Option<u64> = None;
    loop {
        let is_leader = status.borrow_and_update().is_leader;
        if !is_leader {
            planned_epoch = None;
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
            let plan = {
                let state = cluster.state();
                let all = planned_epoch != Some(state.capacity_epoch);
                planned_epoch = Some(state.capacity_epoch);
                plan_pending(&state, all)
            };
            // The same plan twice in a row made no progress: wait for something to change
            // rather than spin.
            if !plan.is_empty() && last.as_ref() != Some(&plan) {
                match cluster
                    .propose(Body::PlaceInstances(plan.to_command()))
                    .await
                {
                    Ok(_) => {
                        if !plan.placements.is_empty() {
                            tracing::info!(
                                placed = plan.placements.len(),
                                waiting = plan.unplaced.len(),
                                "placement plan committed"
                            );
                        }
                        last = Some(plan);
                        continue;
                    }
                    Err(e) => {
                        planned_epoch = None;
                        tracing::warn!(error = %e, "placement plan not committed; retrying");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        continue;
                    }
                }
            }
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

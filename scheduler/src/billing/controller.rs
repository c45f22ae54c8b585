//! The leader bills each month once it has ended: a `RunBilling` command (finalized) for each
//! month in order, proposed `run_after` past the month's end — time for
//! agents' last reports and operators' corrections to be committed. Proposed as the system;
//! a run proposed twice (two leaders in a row, a retry) is refused by `apply` the second time,
//! so nothing is invoiced twice and no number is skipped.

use std::time::Duration;

use vmcloud_billing::prices::BUILTIN_PRICES;
use vmcloud_billing::tax::BUILTIN_TABLE;
use vmcloud_proto::pb::{self, command::Body};

use crate::billing::types::{period_bounds, period_of};
use crate::raft_handle::Cluster;
use crate::state::ClusterState;

/// The month to bill at `now`, if any: the month after the last run (or, before any run, the
/// month of the oldest usage), once it ended `run_after` ago. Months are billed in order, one
/// run each, none skipped.
pub fn due_period(state: &ClusterState, now: i64, run_after: Duration) -> Option<String> {
    let next = match state.billing.runs.keys().next_back() {
        Some(last) => period_of(period_bounds(last)?.1),
        None => {
            let oldest = state
                .billing
                .usage
                .values()
                .flat_map(|u| u.iter().map(|i| i.from_ms))
                .chain(state.instances.values().filter_map(|i| i.meter_from_ms))
                .chain(state.public_ips.values().map(|h| h.since_ms))
                .chain(
                    state
                        .reservations
                        .values()
                        .map(|r| r.billed_to_ms.unwrap_or(r.start_ms)),
                )
                .min()?;
            period_of(oldest)
        }
    };
    let (_, end) = period_bounds(&next)?;
    (now - run_after.as_millis() as i64 >= end).then_some(next)
}

/// Runs on every replica; acts while it leads. `run_after` zero: never (runs are manual).
pub async fn run(cluster: Cluster, run_after: Duration) {
    if run_after.is_zero() {
        return;
    }
    let mut status = cluster.raft_status();
    loop {
        let leading = status.borrow_and_update().is_leader;
        if leading {
            let now = crate::clock::now_ms();
            if let Some(period) = due_period(&cluster.state(), now, run_after) {
                tracing::info!(%period, "billing the month");
                match run_month(&cluster, None, &period, true, 0).await {
                    Ok(Ok(_)) => {
                        tracing::info!(%period, "month billed");
                        // The next month may be due too (a leader that was away).
                        continue;
                    }
                    Ok(Err(e)) => {
                        tracing::warn!(%period, error = %e, "the month's run was refused")
                    }
                    Err(e) => {
                        tracing::warn!(%period, error = %e, "could not propose the month's run")
                    }
                }
            }
        }
        crate::raft_handle::lead_changes(&mut status, Duration::from_secs(10)).await;
    }
}

/// Organisations a batch of a run takes: one batch is one log entry, and `apply` is busy for
/// as long as it takes (`vmcloud bench billing-run` measures it).
pub const BATCH_ORGS: u32 = 250;

/// Proposes a month's run batch after batch until every organisation is billed (or a batch
/// is refused: that answer is returned). `actor`: who asked (`None`: the scheduler).
pub async fn run_month(
    cluster: &Cluster,
    actor: Option<pb::Actor>,
    period: &str,
    finalize: bool,
    due_days: u32,
) -> Result<crate::state::ApplyResult, vmcloud_consensus::ProposeError> {
    let complete_before = cluster
        .state()
        .billing
        .runs
        .get(period)
        .is_some_and(|r| r.complete);
    loop {
        let after_org = cluster
            .state()
            .billing
            .runs
            .get(period)
            .and_then(|r| r.cursor.as_ref().map(|o| o.to_string()))
            .unwrap_or_default();
        let command = Body::RunBilling(pb::RunBilling {
            period: period.to_owned(),
            prices_toml: BUILTIN_PRICES.to_owned(),
            vat_toml: BUILTIN_TABLE.to_owned(),
            finalize,
            due_days,
            after_org: after_org.clone(),
            max_orgs: BATCH_ORGS,
        });
        let result = match &actor {
            Some(a) => cluster.propose_as(a.clone(), command).await?,
            None => cluster.propose(command).await?,
        };
        if result.is_err() {
            // A batch proposed before (by a leader that died, or read from a state a step
            // behind) landed first: the run moved on; go on from where it stands now.
            let moved = cluster.state().billing.runs.get(period).is_some_and(|r| {
                !r.complete && r.cursor.as_ref().map(|o| o.to_string()) != Some(after_org.clone())
            });
            if moved {
                continue;
            }
            // …or finished it: the month is billed, as asked.
            let finished = cluster
                .state()
                .billing
                .runs
                .get(period)
                .is_some_and(|r| r.complete);
            if finished && !complete_before {
                return Ok(Ok(crate::state::Applied::Done));
            }
            return Ok(result);
        }
        if cluster
            .state()
            .billing
            .runs
            .get(period)
            .is_none_or(|r| r.complete)
        {
            return Ok(result);
        }
    }
}

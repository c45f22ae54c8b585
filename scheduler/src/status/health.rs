//! The fleet's part of the status page: what the replicated state says of each region's
//! hosts and GPUs, and of the cluster itself (a replica without a leader cannot change
//! anything). Pure: the caller gives the state, the liveness alarms and whether a leader is
//! known.

use crate::nodes::types::NodeState;
use crate::state::ClusterState;
use crate::status::types::Impact;

/// A share of something lost, as an impact: ≥ 50 % a major outage, ≥ 10 % a partial one,
/// anything a degradation.
fn by_share(lost: usize, of: usize) -> Impact {
    if of == 0 || lost == 0 {
        Impact::Operational
    } else if lost * 2 >= of {
        Impact::MajorOutage
    } else if lost * 10 >= of {
        Impact::PartialOutage
    } else {
        Impact::Degraded
    }
}

/// The fleet's status of `service` in `region`.
pub fn fleet_impact(
    state: &ClusterState,
    region: &str,
    service: &str,
    silent_regions: &[String],
    leader_known: bool,
) -> Impact {
    match service {
        // What every region shares: the control plane.
        "api" | "console" | "billing" => {
            if leader_known {
                Impact::Operational
            } else {
                Impact::MajorOutage
            }
        }
        "compute" | "gpu" | "gaming" => {
            let silent = silent_regions.iter().any(|r| r == region);
            let nodes: Vec<_> = state
                .nodes
                .values()
                .filter(|n| n.region == region)
                .collect();
            let impact = if service == "compute" {
                let down = nodes.iter().filter(|n| n.state == NodeState::Down).count();
                by_share(down, nodes.len())
            } else {
                let gpus: Vec<(bool, bool)> = nodes
                    .iter()
                    .flat_map(|n| {
                        n.gpus
                            .iter()
                            .map(move |g| (n.state == NodeState::Down, g.unhealthy.is_some()))
                    })
                    .collect();
                let lost = gpus.iter().filter(|(down, bad)| *down || *bad).count();
                by_share(lost, gpus.len())
            };
            if silent {
                impact.max(Impact::PartialOutage)
            } else {
                impact
            }
        }
        _ => Impact::Operational,
    }
}

//! `/v1/cluster`: the replica answering, as it sees the Raft group, and leadership transfer
//! for maintenance.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};
use vmcloud_consensus::ProposeError;

use crate::api::context::{ApiJson, ApiState, Operator};
use crate::api::problem::Problem;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ClusterView {
    /// Raft id of the replica that answered.
    pub replica: u64,
    pub term: u64,
    /// Raft id of the leader it knows (null: none).
    pub leader: Option<u64>,
    pub is_leader: bool,
    pub voters: Vec<u64>,
    pub learners: Vec<u64>,
    pub commit_index: u64,
    pub applied_index: u64,
    /// The eval broker's backlog (kept by the leader; empty on a follower).
    pub evaluations: crate::eval_broker::Backlog,
    /// Datacenters most of whose nodes went silent at once (kept by the leader): their nodes
    /// are not declared down until an operator marks them.
    pub partition_alarms: Vec<crate::nodes::liveness::PartitionAlarm>,
    /// Where each replica serves agents and the API, as they announced.
    pub replicas: std::collections::BTreeMap<u64, crate::nodes::types::ReplicaAddrs>,
    /// Agents registered on this replica's gateway (the leader serves them all; followers
    /// send them to it).
    pub connected_agents: usize,
}

fn view(s: &ApiState) -> ClusterView {
    let status = s.cluster.raft_status().borrow().clone();
    let applied = *s.cluster.applied().borrow();
    ClusterView {
        replica: status.id,
        term: status.term,
        leader: (status.leader_id != 0).then_some(status.leader_id),
        is_leader: status.is_leader,
        voters: status.voters,
        learners: status.learners,
        commit_index: status.commit,
        applied_index: applied,
        evaluations: s.cluster.broker().lock().expect("broker lock").backlog(),
        partition_alarms: s.liveness.lock().expect("liveness lock").alarms.clone(),
        replicas: s.cluster.state().replicas.clone().into_iter().collect(),
        connected_agents: s.links.metrics().connected_agents.get() as usize,
    }
}

fn membership_problem(e: ProposeError) -> Problem {
    match e {
        ProposeError::NotLeader { leader, .. } => Problem::new(
            StatusCode::CONFLICT,
            "not-leader",
            "Not the leader",
            match leader {
                Some(l) => format!("only the leader changes the group; send this to replica {l}"),
                None => "no leader is known right now; retry shortly".to_owned(),
            },
        ),
        ProposeError::Membership(why) => Problem::new(
            StatusCode::CONFLICT,
            "membership-change-refused",
            "Membership change refused",
            why,
        ),
        other => other.into(),
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JoinRequest {
    /// Raft id of the new replica.
    pub id: u64,
    /// Its raft link address (`HOST:PORT`, UDP).
    pub raft_address: String,
}

/// Adds a replica: first as a learner, then, once it has caught up, as a voter.
pub async fn join(
    State(s): State<ApiState>,
    _operator: Operator,
    ApiJson(req): ApiJson<JoinRequest>,
) -> Result<Json<ClusterView>, Problem> {
    if req.raft_address.parse::<std::net::SocketAddr>().is_err() {
        return Err(Problem::unprocessable(
            "invalid-address",
            "Invalid address",
            format!("raft_address `{}` is not HOST:PORT", req.raft_address),
        ));
    }
    let status = s.cluster.raft_status().borrow().clone();
    if status.voters.contains(&req.id) {
        return Err(Problem::new(
            StatusCode::CONFLICT,
            "conflict",
            "Conflict",
            format!("replica {} is already a voter", req.id),
        ));
    }
    let raft = s.cluster.raft();
    if !status.learners.contains(&req.id) {
        raft.add_learner(req.id, &req.raft_address)
            .await
            .map_err(membership_problem)?;
    }
    // Promote once it holds (nearly) everything: a voter that lags far behind would weaken
    // the quorum until it caught up.
    let target = s.cluster.raft_status().borrow().commit;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut watch = s.cluster.raft_status();
    loop {
        let caught_up = watch
            .borrow_and_update()
            .matched
            .get(&req.id)
            .is_some_and(|m| *m >= target);
        if caught_up {
            break;
        }
        if Instant::now() > deadline {
            return Err(Problem::new(
                StatusCode::GATEWAY_TIMEOUT,
                "not-caught-up",
                "Replica not caught up",
                format!(
                    "replica {} was added as a learner but has not caught up within 60 s; is it running and reachable at {}?",
                    req.id, req.raft_address
                ),
            ));
        }
        let _ = tokio::time::timeout(Duration::from_millis(100), watch.changed()).await;
    }
    raft.promote(req.id, &req.raft_address)
        .await
        .map_err(membership_problem)?;
    Ok(Json(view(&s)))
}

/// Removes a replica from the group.
pub async fn leave(
    State(s): State<ApiState>,
    _operator: Operator,
    Path(id): Path<u64>,
) -> Result<Json<ClusterView>, Problem> {
    let status = s.cluster.raft_status().borrow().clone();
    if status.is_leader && status.id == id {
        return Err(Problem::new(
            StatusCode::CONFLICT,
            "leader-cannot-leave",
            "The leader cannot leave",
            format!(
                "replica {id} leads: hand leadership to another replica first (`vmcloud cluster transfer-leader`)"
            ),
        ));
    }
    if !status.voters.contains(&id) && !status.learners.contains(&id) {
        return Err(Problem::not_found(format!(
            "replica {id} is not in the group"
        )));
    }
    s.cluster
        .raft()
        .remove(id)
        .await
        .map_err(membership_problem)?;
    Ok(Json(view(&s)))
}

pub async fn status(State(s): State<ApiState>, _operator: Operator) -> Json<ClusterView> {
    Json(view(&s))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TransferRequest {
    /// Raft id of the voter that should lead.
    pub to: u64,
}

pub async fn transfer_leader(
    State(s): State<ApiState>,
    _operator: Operator,
    ApiJson(req): ApiJson<TransferRequest>,
) -> Result<StatusCode, Problem> {
    match s.cluster.raft().transfer_leader(req.to).await {
        Ok(()) => Ok(StatusCode::ACCEPTED),
        Err(ProposeError::NotLeader { leader, .. }) => Err(Problem::new(
            StatusCode::CONFLICT,
            "not-leader",
            "Not the leader",
            match leader {
                Some(l) => {
                    format!("only the leader can hand over leadership; send this to replica {l}")
                }
                None => "no leader is known right now; retry shortly".to_owned(),
            },
        )),
        Err(ProposeError::Dropped(why)) => Err(Problem::unprocessable(
            "invalid-replica",
            "Invalid replica",
            why,
        )),
        Err(e) => Err(e.into()),
    }
}

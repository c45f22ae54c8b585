//! `/v1/cluster`: the replica answering, as it sees the Raft group, and leadership transfer
//! for maintenance.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use vmcloud_consensus::ProposeError;

use super::{ApiJson, ApiState, Caller, Problem};

#[derive(Debug, Serialize)]
pub struct ClusterView {
    /// Raft id of the replica that answered.
    pub replica: u64,
    pub term: u64,
    /// Raft id of the leader it knows (null: none).
    pub leader: Option<u64>,
    pub is_leader: bool,
    pub voters: Vec<u64>,
    pub commit_index: u64,
    pub applied_index: u64,
}

pub async fn status(State(s): State<ApiState>, _caller: Caller) -> Json<ClusterView> {
    let status = s.cluster.raft_status().borrow().clone();
    let applied = *s.cluster.applied().borrow();
    Json(ClusterView {
        replica: status.id,
        term: status.term,
        leader: (status.leader_id != 0).then_some(status.leader_id),
        is_leader: status.is_leader,
        voters: status.voters,
        commit_index: status.commit,
        applied_index: applied,
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransferRequest {
    /// Raft id of the voter that should lead.
    pub to: u64,
}

pub async fn transfer_leader(
    State(s): State<ApiState>,
    _caller: Caller,
    ApiJson(req): ApiJson<TransferRequest>,
) -> Result<StatusCode, Problem> {
    match s.cluster.raft().transfer_leader(req.to).await {
        Ok(()) => Ok(StatusCode::ACCEPTED),
        Err(ProposeError::NotLeader { leader }) => Err(Problem::new(
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

//! [`Cluster`]: the scheduler's handle on the replicated state — propose a command (stamped
//! with the proposer's clock) and read the state the log has built.

use prost::Message;
use tokio::sync::watch;
use vmcloud_consensus::{ProposeError, Raft, RaftStatus};
use vmcloud_proto::pb::{self, command::Body};

use crate::clock::now_ms;
use crate::state::replicated::SharedState;
use crate::state::{ApplyResult, ClusterState};

#[derive(Clone)]
pub struct Cluster {
    raft: Raft<ApplyResult>,
    state: SharedState,
    /// The leader's eval broker (empty on followers).
    broker: crate::eval_broker::SharedBroker,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster").finish_non_exhaustive()
    }
}

impl Cluster {
    pub fn new(raft: Raft<ApplyResult>, state: SharedState) -> Self {
        Cluster {
            raft,
            state,
            broker: Default::default(),
        }
    }

    /// The eval broker the placement controller runs on this replica.
    pub fn broker(&self) -> &crate::eval_broker::SharedBroker {
        &self.broker
    }

    /// Proposes a command and waits for it to be applied; returns what applying it gave.
    /// Proposes a change the scheduler itself makes (controllers, agent reports, bootstrap).
    pub async fn propose(&self, body: Body) -> Result<ApplyResult, ProposeError> {
        self.propose_as(
            crate::tenancy::commands::actor_of(&crate::tenancy::authz::Principal::System, ""),
            body,
        )
        .await
    }

    /// Proposes a change on behalf of `actor`: `apply` checks again that it may.
    pub async fn propose_as(
        &self,
        actor: pb::Actor,
        body: Body,
    ) -> Result<ApplyResult, ProposeError> {
        let command = pb::Command {
            at_unix_ms: now_ms(),
            actor: Some(actor),
            request: crate::request_context::current(),
            body: Some(body),
        };
        self.raft.propose(command.encode_to_vec()).await
    }

    /// Waits until this replica's state holds everything committed before the call,
    /// confirmed with a quorum (ReadIndex): a read of `state()` after it is linearizable.
    pub async fn read_barrier(&self) -> Result<(), ProposeError> {
        self.raft.read_barrier().await
    }

    /// This replica's state as applied so far: current on the leader, possibly behind on a
    /// follower. Call [`Cluster::read_barrier`] first for a linearizable read. An immutable
    /// copy: hold it as long as needed, `apply` goes on meanwhile.
    pub fn state(&self) -> std::sync::Arc<ClusterState> {
        self.state.read()
    }

    /// This replica's history store (ended workloads, audit events) and whether everything
    /// applied so far is written to it (waiting at most a second for that; `None` when the
    /// replica keeps no history).
    pub async fn history(
        &self,
    ) -> Option<(std::sync::Arc<crate::history::store::HistoryStore>, bool)> {
        let state = self.state.clone();
        let written = tokio::task::spawn_blocking(move || {
            state.history_written_within(std::time::Duration::from_secs(1))
        })
        .await
        .unwrap_or(false);
        self.state.history().cloned().map(|h| (h, written))
    }

    /// Changes after every applied batch of log entries.
    pub fn applied(&self) -> watch::Receiver<u64> {
        self.raft.applied()
    }

    pub fn raft_status(&self) -> watch::Receiver<RaftStatus> {
        self.raft.status()
    }

    pub fn raft(&self) -> &Raft<ApplyResult> {
        &self.raft
    }
}

/// Waits until this replica gains or loses the lead, or `at_most` passes — for loops that act
/// while leading. Not on every change of the status: it changes with every commit, and a loop
/// woken by each would redo its work hundreds of times a second under load.
pub async fn lead_changes(status: &mut watch::Receiver<RaftStatus>, at_most: std::time::Duration) {
    let was = status.borrow_and_update().is_leader;
    let _ = tokio::time::timeout(at_most, status.wait_for(|s| s.is_leader != was)).await;
}

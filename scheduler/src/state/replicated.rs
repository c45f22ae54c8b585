//! The cluster state as the consensus crate's state machine.

use std::sync::{Arc, RwLock};

use prost::Message;
use vmcloud_proto::pb;

use crate::state::{ApplyResult, ClusterState, Rejected};

#[derive(Debug, Clone, Default)]
pub struct SharedState(pub Arc<RwLock<ClusterState>>);

impl SharedState {
    pub fn read(&self) -> std::sync::RwLockReadGuard<'_, ClusterState> {
        self.0.read().expect("cluster state lock poisoned")
    }
}

impl vmcloud_consensus::StateMachine for SharedState {
    type Output = ApplyResult;

    /// The whole state as JSON (versioned by the `Command` types it was built from).
    fn snapshot(&self) -> Vec<u8> {
        serde_json::to_vec(&*self.read()).expect("the cluster state serializes")
    }

    fn restore(&mut self, data: &[u8]) -> Result<(), String> {
        let state: ClusterState = if data.is_empty() {
            ClusterState::default()
        } else {
            serde_json::from_slice(data).map_err(|e| format!("undecodable cluster state: {e}"))?
        };
        let mut state = state;
        state.reindex();
        *self.0.write().expect("cluster state lock poisoned") = state;
        Ok(())
    }

    fn apply(&mut self, index: u64, data: &[u8]) -> ApplyResult {
        let mut state = self.0.write().expect("cluster state lock poisoned");
        match pb::Command::decode(data) {
            Ok(command) => state.apply(index, command),
            Err(_) => {
                state.applied_index = index;
                Err(Rejected::Malformed)
            }
        }
    }
}

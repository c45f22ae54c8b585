//! The cluster state as the consensus crate's state machine, and how readers see it.
//!
//! The applier thread owns the working state and is its only writer. After each applied
//! batch it **publishes** an immutable copy (an `Arc`; the maps are persistent, so the copy
//! costs a few pointer increments, not a walk of the state); readers — the placement
//! controller, the agent gateway, API handlers and pages — take the latest published copy
//! and work on it as long as they like without ever holding up `apply` (STYLE.md 9b).
//! Snapshots are taken the same way: an immutable copy now, encoded on another thread.

use std::sync::{Arc, Mutex, RwLock};

use prost::Message;
use vmcloud_proto::pb;

use crate::state::{ApplyResult, ClusterState, Rejected, snapshot_format};

#[derive(Debug, Clone, Default)]
pub struct SharedState {
    /// The applier's working copy.
    working: Arc<Mutex<ClusterState>>,
    /// What readers see: the state after the last applied batch.
    published: Arc<RwLock<Arc<ClusterState>>>,
}

impl SharedState {
    /// A replicated state that starts from `state` (generated fleets, tests).
    pub fn new(state: ClusterState) -> SharedState {
        let s = SharedState::default();
        s.replace(state);
        s
    }

    /// The state after the last applied batch: an immutable copy that `apply` never waits
    /// for.
    pub fn read(&self) -> Arc<ClusterState> {
        self.published
            .read()
            .expect("published state lock poisoned")
            .clone()
    }

    /// Replaces the whole state (a restore) and publishes it.
    pub fn replace(&self, mut state: ClusterState) {
        state.reindex();
        let copy = Arc::new(state.clone());
        *self.working.lock().expect("cluster state lock poisoned") = state;
        *self
            .published
            .write()
            .expect("published state lock poisoned") = copy;
    }

    fn publish_now(&self) {
        let copy = Arc::new(
            self.working
                .lock()
                .expect("cluster state lock poisoned")
                .clone(),
        );
        *self
            .published
            .write()
            .expect("published state lock poisoned") = copy;
    }
}

impl vmcloud_consensus::StateMachine for SharedState {
    type Output = ApplyResult;

    /// The whole state in the snapshot format ([`snapshot_format`]).
    fn snapshot(&self) -> Vec<u8> {
        snapshot_format::encode(&self.working.lock().expect("cluster state lock poisoned"))
    }

    /// An immutable copy now (persistent maps: no walk of the state); encoded later, on the
    /// applier's snapshot thread.
    fn snapshot_later(&self) -> Box<dyn FnOnce() -> Vec<u8> + Send> {
        let copy = self
            .working
            .lock()
            .expect("cluster state lock poisoned")
            .clone();
        Box::new(move || snapshot_format::encode(&copy))
    }

    fn restore(&mut self, data: &[u8]) -> Result<(), String> {
        let state = if data.is_empty() {
            ClusterState::default()
        } else {
            snapshot_format::decode(data).map_err(|e| vmcloud_proto::ErrorChain(&e).to_string())?
        };
        self.replace(state);
        Ok(())
    }

    fn apply(&mut self, index: u64, data: &[u8]) -> ApplyResult {
        let mut state = self.working.lock().expect("cluster state lock poisoned");
        match pb::Command::decode(data) {
            Ok(command) => state.apply(index, command),
            Err(_) => {
                state.applied_index = index;
                Err(Rejected::Malformed)
            }
        }
    }

    fn publish(&mut self) {
        self.publish_now();
    }
}

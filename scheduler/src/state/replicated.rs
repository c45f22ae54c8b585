//! The cluster state as the consensus crate's state machine, and how readers see it.
//!
//! The applier thread owns the working state and is its only writer. After each applied
//! batch it **publishes**: the history records the batch produced go to the replica's
//! history store, then an immutable copy of the state (an `Arc`; the maps are persistent, so
//! the copy costs a few pointer increments, not a walk of the state) replaces the one readers
//! see. Readers — the placement controller, the agent gateway, API handlers and pages — take
//! the latest published copy and work on it as long as they like without ever holding up
//! `apply` (STYLE.md 9b). Snapshots are taken the same way: an immutable copy of the state and
//! a read transaction of the history now, encoded on another thread.

use std::sync::{Arc, Mutex, RwLock};

use prost::Message;
use vmcloud_proto::pb;

use crate::history::store::HistoryStore;
use crate::state::{ApplyResult, ClusterState, Rejected, snapshot_format};

#[derive(Debug, Clone, Default)]
pub struct SharedState {
    /// The applier's working copy.
    working: Arc<Mutex<ClusterState>>,
    /// What readers see: the state after the last applied batch.
    published: Arc<RwLock<Arc<ClusterState>>>,
    /// Where history goes; `None`: history is dropped (tests that need none).
    history: Option<Arc<HistoryStore>>,
}

impl SharedState {
    /// A replicated state that starts from `state` (generated fleets, tests).
    pub fn new(state: ClusterState) -> SharedState {
        let s = SharedState::default();
        s.replace(state);
        s
    }

    /// A replicated state that keeps its history in `store`.
    pub fn with_history(store: HistoryStore) -> SharedState {
        SharedState {
            history: Some(Arc::new(store)),
            ..SharedState::default()
        }
    }

    /// The replica's history store, if it keeps one.
    pub fn history(&self) -> Option<&Arc<HistoryStore>> {
        self.history.as_ref()
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
        let mut working = self.working.lock().expect("cluster state lock poisoned");
        if !working.history.0.is_empty() {
            match &self.history {
                Some(store) => match store.append(&working.history.0) {
                    Ok(()) => working.history.0.clear(),
                    // Kept and tried again with the next batch: nothing is lost.
                    Err(e) => tracing::warn!(
                        error = %vmcloud_proto::ErrorChain(&e),
                        records = working.history.0.len(),
                        "history records could not be written; kept in memory until they can"
                    ),
                },
                None => working.history.0.clear(),
            }
        }
        let copy = Arc::new(working.clone());
        drop(working);
        *self
            .published
            .write()
            .expect("published state lock poisoned") = copy;
    }
}

impl vmcloud_consensus::StateMachine for SharedState {
    type Output = ApplyResult;

    /// The whole state and history in the snapshot format ([`snapshot_format`]).
    fn snapshot(&self) -> Vec<u8> {
        self.snapshot_later()().unwrap_or_else(|e| panic!("cannot take a snapshot: {e}"))
    }

    /// An immutable copy of the state (persistent maps: no walk of the state) and a read
    /// transaction of the history now; encoded later, on the applier's snapshot thread.
    fn snapshot_later(&self) -> Box<dyn FnOnce() -> Result<Vec<u8>, String> + Send> {
        let copy = self
            .working
            .lock()
            .expect("cluster state lock poisoned")
            .clone();
        let history = self.history.as_ref().map(|h| h.frozen());
        Box::new(move || {
            let chain = |e: &dyn std::error::Error| vmcloud_proto::ErrorChain(e).to_string();
            let history = history.transpose().map_err(|e| chain(&e))?;
            snapshot_format::encode(&copy, history.as_ref()).map_err(|e| chain(&e))
        })
    }

    fn restore(&mut self, data: &[u8]) -> Result<(), String> {
        let chain = |e: &dyn std::error::Error| vmcloud_proto::ErrorChain(e).to_string();
        let (state, history) = if data.is_empty() {
            (ClusterState::default(), Vec::new())
        } else {
            let (state, records) = snapshot_format::decode(data).map_err(|e| chain(&e))?;
            let records = records
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| chain(&e))?;
            (state, records)
        };
        if let Some(store) = &self.history {
            store.replace_all(history).map_err(|e| chain(&e))?;
        }
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

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

use std::time::Duration;

use crate::history::store::{HistoryStore, HistoryWriter};
use crate::state::{ApplyResult, ClusterState, Rejected, snapshot_format};

#[derive(Debug, Clone, Default)]
pub struct SharedState {
    /// The applier's working copy.
    working: Arc<Mutex<ClusterState>>,
    /// What readers see: the state after the last applied batch.
    published: Arc<RwLock<Arc<ClusterState>>>,
    /// Where history goes (written on a thread of its own); `None`: history is dropped (tests
    /// that need none).
    history: Option<HistoryWriter>,
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
            history: Some(HistoryWriter::start(store)),
            ..SharedState::default()
        }
    }

    /// The replica's history store, if it keeps one.
    pub fn history(&self) -> Option<&Arc<HistoryStore>> {
        self.history.as_ref().map(HistoryWriter::store)
    }

    /// Waits until the history records of everything applied so far are on disk (tests,
    /// benchmarks; readers otherwise see them a moment after the state).
    pub fn history_written(&self) -> bool {
        self.history_written_within(Duration::from_secs(60))
    }

    /// [`SharedState::history_written`], waiting at most `limit`.
    pub fn history_written_within(&self, limit: Duration) -> bool {
        let index = self.read().applied_index;
        self.history
            .as_ref()
            .is_none_or(|h| h.wait_written(index, limit))
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
        crate::clock::follow_test_clock(state.billing.clock_offset_ms);
        let copy = Arc::new(state.clone());
        *self.working.lock().expect("cluster state lock poisoned") = state;
        *self
            .published
            .write()
            .expect("published state lock poisoned") = copy;
    }

    fn publish_now(&self) {
        let mut working = self.working.lock().expect("cluster state lock poisoned");
        if let Some(writer) = &self.history {
            // No I/O here: the writer thread commits them (one transaction for what is queued).
            writer.send(
                working.applied_index,
                std::mem::take(&mut working.history.0),
            );
        } else {
            working.history.0.clear();
        }
        let copy = Arc::new(working.clone());
        drop(working);
        crate::clock::follow_test_clock(copy.billing.clock_offset_ms);
        *self
            .published
            .write()
            .expect("published state lock poisoned") = copy;
    }
}

/// An error and its causes, as the consensus crate takes a state machine's reason.
fn chain(e: &dyn std::error::Error) -> String {
    vmcloud_proto::ErrorChain(e).to_string()
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
        let history = self.history.clone();
        Box::new(move || {
            // The history up to the snapshot's index, once the writer has written it (the
            // records after it are left out: the log replayed after the snapshot writes them).
            let history = match &history {
                Some(writer) => {
                    if !writer.wait_written(copy.applied_index, Duration::from_secs(60)) {
                        return Err(format!(
                            "the history writer has not written up to index {} within 60 s",
                            copy.applied_index
                        ));
                    }
                    Some(writer.store().frozen().map_err(|e| chain(&e))?)
                }
                None => None,
            };
            snapshot_format::encode(&copy, history.as_ref()).map_err(|e| chain(&e))
        })
    }

    fn restore(&mut self, data: &[u8]) -> Result<(), String> {
        let (state, history) = if data.is_empty() {
            (ClusterState::default(), Vec::new())
        } else {
            let (mut state, records) = snapshot_format::decode(data).map_err(|e| chain(&e))?;
            state.migrate_tenancy();
            let records = records
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| chain(&e))?;
            (state, records)
        };
        if let Some(writer) = &self.history {
            // What is queued belongs to the state being replaced: let it land first, then
            // replace the whole history.
            let applied = self
                .working
                .lock()
                .expect("cluster state lock poisoned")
                .applied_index;
            writer.wait_written(applied, Duration::from_secs(60));
            writer.store().replace_all(history).map_err(|e| chain(&e))?;
            writer.mark_written(state.applied_index);
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

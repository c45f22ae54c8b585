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

/// How long each part of a restore took.
#[derive(Debug, Clone, Copy, Default)]
pub struct RestoreTimes {
    /// Decoding the state from the snapshot's bytes.
    pub decode: Duration,
    /// Checking the snapshot's history section and handing it to the history writer (which
    /// writes it on its own thread while the state is served).
    pub history: Duration,
    /// Rebuilding the derived indexes and publishing.
    pub index: Duration,
}

impl SharedState {
    /// Replaces the state and history with a snapshot's ([`snapshot_format`]; empty: the
    /// initial state) and says how long each part took.
    pub fn restore_timed(&mut self, data: &[u8]) -> Result<RestoreTimes, String> {
        let mut times = RestoreTimes::default();
        let started = std::time::Instant::now();
        let (mut state, history) = if data.is_empty() {
            (
                ClusterState::default(),
                snapshot_format::History::Section(&[]),
            )
        } else {
            snapshot_format::decode(data).map_err(|e| chain(&e))?
        };
        state.migrate_tenancy();
        times.decode = started.elapsed();
        let started = std::time::Instant::now();
        if let Some(writer) = &self.history {
            match history {
                snapshot_format::History::InStore => {
                    // A snapshot this replica wrote: its store holds the history through it.
                    let durable = writer.store().durable_through().map_err(|e| chain(&e))?;
                    if durable < state.applied_index {
                        tracing::warn!(
                            snapshot = state.applied_index,
                            durable,
                            store = %writer.store().path().display(),
                            "the history store is not complete through the snapshot (was it replaced or lost?): history before the snapshot may be missing on this replica; other replicas keep theirs"
                        );
                    }
                    writer.mark_written(state.applied_index);
                }
                snapshot_format::History::Section(section) => {
                    // Checked here, so a damaged snapshot is refused before anything is
                    // replaced.
                    for record in snapshot_format::HistoryRecords::new(section) {
                        record.map_err(|e| chain(&e))?;
                    }
                    // Written by the writer thread after what is queued (the replaced
                    // state's records), while the state is served; history reads wait.
                    writer.replace(state.applied_index, section.to_vec());
                }
            }
        }
        times.history = started.elapsed();
        let started = std::time::Instant::now();
        self.replace(state);
        times.index = started.elapsed();
        Ok(times)
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
            // The history up to the snapshot's index stays in the store, made durable first
            // (the records after it are the log's, replayed after the snapshot).
            if let Some(writer) = &history {
                if !writer.wait_written(copy.applied_index, Duration::from_secs(60)) {
                    return Err(format!(
                        "the history writer has not written up to index {} within 60 s",
                        copy.applied_index
                    ));
                }
                writer
                    .store()
                    .make_durable(copy.applied_index)
                    .map_err(|e| chain(&e))?;
            }
            Ok(snapshot_format::encode(&copy))
        })
    }

    /// Peers get the history with the state: they have none of ours.
    fn outgoing_snapshot(&self) -> Option<vmcloud_consensus::OutgoingSnapshotFn> {
        let writer = self.history.clone()?;
        Some(Arc::new(move |index, state| {
            let frozen = writer.store().frozen().map_err(|e| chain(&e))?;
            snapshot_format::with_history(state, index, &frozen).map_err(|e| chain(&e))
        }))
    }

    fn restore(&mut self, data: &[u8]) -> Result<(), String> {
        let times = self.restore_timed(data)?;
        tracing::info!(
            decode_ms = times.decode.as_millis() as u64,
            history_ms = times.history.as_millis() as u64,
            index_ms = times.index.as_millis() as u64,
            "restored the state from a snapshot"
        );
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

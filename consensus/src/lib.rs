//! The replicated log the scheduler stands on, built on raft-rs (`RawNode`) and redb.
//!
//! Tasks (OS threads, because persisting blocks on fsync):
//! - the **raft runner** owns the `RawNode` and its [`LogStore`]; it takes proposals and peer
//!   messages from one channel, and handles each `Ready` in the documented order: send
//!   messages, hand committed entries to the applier, persist entries and hard state in one
//!   fsynced redb transaction (group commit: every proposal waiting in the channel goes into
//!   the same `Ready`), send persisted messages, advance;
//! - the **applier** applies committed entries to the [`StateMachine`] in log order, answers
//!   the proposer that is waiting for each entry, and publishes the applied index.
//!
//! The handle, [`Raft`], is what the rest of the scheduler uses: `propose` returns the state
//! machine's output for that entry once it is applied.
//!
//! The state machine lives in memory. Every `snapshot_every` applied entries the applier takes
//! a snapshot, the runner saves it ([`snapshot`]) and compacts the log; on start the newest
//! snapshot is restored and the log after it replayed; a follower too far behind gets the
//! leader's snapshot. Peers talk over [`transport`]: QUIC in production, an in-memory
//! fault-injecting network in tests.

pub mod local;
pub mod metrics;
mod node;
pub mod requests;
mod slog_bridge;
pub mod snapshot;
mod storage;
pub mod transport;

pub use node::{ProposeError, Raft, RaftConfig, RaftStatus, StartError};
pub use storage::{LogStore, SnapshotWriter, StorageError};
pub use transport::mem::{Faults, MemNetwork, MemTransport};
pub use transport::quic::{QuicCloser, QuicEndpoint, QuicTransport, QuicTransportError};
pub use transport::{NoPeers, Transport};

/// Makes the state machine's bytes of a snapshot sent to a peer from those written locally
/// (see [`StateMachine::outgoing_snapshot`]).
pub type OutgoingSnapshotFn =
    std::sync::Arc<dyn Fn(u64, &[u8]) -> Result<Vec<u8>, String> + Send + Sync>;

/// The deterministic state machine the log drives.
pub trait StateMachine: Send + 'static {
    /// What applying one command returns to its proposer.
    type Output: Send + 'static;

    /// Applies the command in one committed entry. Must depend only on the state and `data`
    /// (never on clocks or randomness), so every replica computes the same state.
    fn apply(&mut self, index: u64, data: &[u8]) -> Self::Output;

    /// The whole state, encoded; [`StateMachine::restore`] must rebuild the same state from it.
    fn snapshot(&self) -> Vec<u8>;

    /// A snapshot taken now and encoded later: returns at once with an immutable copy of the
    /// state (cheap for persistent maps) inside a function that encodes it like
    /// [`StateMachine::snapshot`]. The applier runs that function on a thread of its own, so
    /// applying goes on while a large state is written. The default encodes at once.
    /// An error (the state machine's reason) skips this snapshot; the log is kept.
    fn snapshot_later(&self) -> Box<dyn FnOnce() -> Result<Vec<u8>, String> + Send> {
        let data = self.snapshot();
        Box::new(move || Ok(data))
    }

    /// Called after each applied batch, before the batch's proposers are answered and before
    /// the applied index moves: a state machine that serves readers from a published copy
    /// publishes here, so a proposer that was answered reads its own write.
    fn publish(&mut self) {}

    /// How the snapshot a peer is sent is made from the one this replica wrote, for a state
    /// machine that keeps part of itself beside its snapshots (the scheduler keeps its
    /// history in a store of its own, made durable before each snapshot, and adds it only to
    /// what it sends). Called once at start; the function runs on the thread that reads a
    /// snapshot for a peer, with the snapshot's index and the state machine's bytes in it.
    /// `None` (the default): peers get the snapshot as written.
    fn outgoing_snapshot(&self) -> Option<OutgoingSnapshotFn> {
        None
    }

    /// Replaces the state with one from [`StateMachine::snapshot`]; empty `data` means the
    /// initial state (a new group starts from an empty snapshot). An error stops the replica.
    fn restore(&mut self, data: &[u8]) -> Result<(), String>;
}

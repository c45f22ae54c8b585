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
//! The state machine lives in memory and is rebuilt by re-applying the log on start;
//! snapshots, log compaction, peers over QUIC and membership changes come with the multi-replica
//! work (see docs/architecture.md).

pub mod local;
mod node;
pub mod snapshot;
mod slog_bridge;
mod storage;
pub mod transport;

pub use node::{ProposeError, Raft, RaftConfig, RaftStatus, StartError};
pub use storage::{LogStore, StorageError};
pub use transport::mem::{Faults, MemNetwork, MemTransport};
pub use transport::quic::{QuicCloser, QuicEndpoint, QuicTransport, QuicTransportError};
pub use transport::{NoPeers, Transport};

/// The deterministic state machine the log drives.
pub trait StateMachine: Send + 'static {
    /// What applying one command returns to its proposer.
    type Output: Send + 'static;

    /// Applies the command in one committed entry. Must depend only on the state and `data`
    /// (never on clocks or randomness), so every replica computes the same state.
    fn apply(&mut self, index: u64, data: &[u8]) -> Self::Output;
}

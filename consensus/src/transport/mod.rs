//! How the raft runner reaches its peers.

use raft::prelude::Message;

/// Sends Raft messages to peers. Implementations must not block the runner: queue and return.
pub trait Transport: Send + 'static {
    fn send(&mut self, messages: Vec<Message>);

    /// A replica joined the group at `address` (from the membership change).
    fn add_peer(&mut self, _id: u64, _address: &str) {}

    /// A replica left the group.
    fn remove_peer(&mut self, _id: u64) {}
}

/// The transport of a single-replica cluster: there is no peer, so any message is a bug.
#[derive(Debug, Default)]
pub struct NoPeers;

impl Transport for NoPeers {
    fn send(&mut self, messages: Vec<Message>) {
        for m in messages {
            tracing::warn!(to = m.to, kind = ?m.msg_type(), "raft message for a peer, but this cluster has no peers");
        }
    }
}

pub mod mem;
pub mod quic;

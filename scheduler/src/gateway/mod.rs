//! The agent gateway: the QUIC server (ALPN `vmcloud-agent/1`, mutual TLS) that agents
//! connect to.
//!
//! Tasks: one accept loop; one task per agent connection; one watcher that, after every
//! applied log batch, wakes the connections whose node's desired-config generation changed.
//! Each connection task reads the agent's frames and pushes the node's desired config when its
//! generation changes. The node's identity is the common name of its verified client
//! certificate — never anything the agent says — so an agent can only register, report for and
//! receive the config of its own node.
//!
//! Liveness is kept here, in memory ([`NodeLinks`]), not in the Raft log.

pub mod endpoint;
pub mod join;
pub mod links;
pub mod reports;
pub mod session;
pub mod wire;

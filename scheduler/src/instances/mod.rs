//! Instances: VMs of every kind (VPS, GPU, AI job members, game sessions) — their types, the
//! handlers that create, place, reclaim and delete them, and the HTTP API.

pub mod api;
pub mod apply;
pub mod place;
pub mod preemption;
pub mod types;

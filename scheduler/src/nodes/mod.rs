//! Nodes (hosts): registration, operator states, GPU health, labels, lost hosts, liveness,
//! each node's desired config, the MIG geometry of their GPUs, and the HTTP API.

pub mod api;
pub mod apply;
pub mod desired;
pub mod fleet_metrics;
pub mod liveness;
pub mod mig;
pub mod noc_api;
pub mod types;

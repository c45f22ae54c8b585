//! Projects: who owns workloads, their API keys, operators, fair-share weights and gaming
//! tiers.

pub mod api;
pub mod api_key;
pub mod apply;
pub mod types;

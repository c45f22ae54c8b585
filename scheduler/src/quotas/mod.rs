//! Quotas (DESIGN.md §8 "API contract"): what a project may hold in each region — instances,
//! vCPUs, memory, GPUs (all models and per model), reservations. Every workload counts (VMs,
//! job members, game sessions) from its create until its host has removed it.
//!
//! Limits are the default of the organisation's kind ([`types::defaults`]), overlaid with what
//! operators set for the project and region (`PUT /v1/projects/{id}/quotas`, or by granting a
//! quota request). `apply` checks them on every create (invariant 15: a create past a quota is
//! refused in `apply`, whatever replica proposed it and whatever raced it), and says what is
//! used, the limit, and how to ask for more (`POST /v1/quota-requests`).

pub mod api;
pub mod apply;
pub mod types;

#[cfg(test)]
mod tests;

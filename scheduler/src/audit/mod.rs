//! The audit trail (DESIGN.md §8 "API contract"): every command the log applies — a change, or
//! a change refused by `apply` — and every request the API refused before proposing (wrong
//! password, forbidden), as an [`types::AuditEvent`]: who (user, API key, node, the system,
//! or anonymous), from which address, in which request, did what to what, and the outcome.
//!
//! Events are **hash-chained**: each holds the hash of the one before, and its own hash covers
//! that and every field, so editing, removing or reordering any event breaks the chain from
//! there on ([`types::verify`], `vmcloud audit verify`). `apply` builds them (the chain's head
//! is in the replicated state, so every replica builds the same chain) and hands them to the
//! history store (DESIGN.md §4 "history"): they live on disk, indexed by organisation, actor
//! and resource, never in memory, and travel in snapshots. `GET /v1/audit-events` pages them.

pub mod api;
pub mod apply;
pub mod types;

#[cfg(test)]
mod tests;

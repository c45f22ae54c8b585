//! History: what `apply` produces that is no longer live — ended instances, audit events,
//! webhook deliveries, invoices as issued and the usage of billed periods (DESIGN.md §4).
//!
//! `apply` never does I/O: it appends [`types::HistoryRecord`]s, keyed by log index, to a
//! buffer beside the state; the consensus adapter (`state/replicated.rs`) drains that buffer
//! after each entry and writes a batch's records into the replica's [`store::HistoryStore`]
//! (redb) when it publishes the batch. Every replica applies the same log, so every replica
//! holds the same history. Snapshots carry the history with the state and a restore rewrites
//! it, so the store needs no fsync of its own: whatever a crash loses is rewritten from the
//! snapshot and the log replayed after it. The in-memory state keeps live objects only.

pub mod audit_index;
pub mod audit_tables;
pub mod section;
pub mod store;
pub mod types;

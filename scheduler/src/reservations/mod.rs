//! Reservations: capacity held for one project (invariant 4) — types, admission and expiry,
//! the choice of hosts, and the HTTP API.

pub mod api;
pub mod apply;
pub mod types;

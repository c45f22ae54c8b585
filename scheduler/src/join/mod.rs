//! Join tokens: how a new host gets its identity — types, apply handlers, the HTTP API.

pub mod api;
pub mod apply;
pub mod types;

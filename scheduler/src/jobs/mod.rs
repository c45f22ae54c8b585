//! AI batch jobs: gangs of instances started together, the queues that order them (priority,
//! fair share, backfill), and the HTTP API.

pub mod api;
pub mod apply;
pub mod queue;
pub mod types;

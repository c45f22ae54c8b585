//! Webhooks (DESIGN.md §8 "API contract"), following Standard Webhooks
//! (<https://www.standardwebhooks.com>): a project's endpoints (URL, event types, a signing
//! secret shown once and sealed at rest), every delivery signed
//! (`webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64 HMAC-SHA256 over
//! "id.timestamp.body">`), destinations checked against SSRF (only `https`, and never a
//! private, loopback or link-local address, outside `vmcloud dev`).
//!
//! Events come from the log: `apply` turns what happens (an instance's state changes, a quota
//! refusal) into an event for each endpoint of the project that wants it — an entry in the
//! history store, and a delivery in the replicated outbox, its id (`evt_<log index>_<n>`) the
//! `webhook-id` of every attempt. The leader delivers them ([`deliver`]) and proposes what each
//! got; failures are tried again on the Standard Webhooks schedule, every attempt is recorded
//! in the history store, and an endpoint failing for five days is disabled and its owners
//! mailed.

pub mod api;
pub mod apply;
pub mod deliver;
pub mod sign;
pub mod target;
pub mod types;

#[cfg(test)]
mod tests;

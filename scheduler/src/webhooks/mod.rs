//! Webhooks (DESIGN.md §8 "API contract"), following Standard Webhooks
//! (<https://www.standardwebhooks.com>): a project's endpoints (URL, event types, a signing
//! secret shown once and sealed at rest), every delivery signed
//! (`webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64 HMAC-SHA256 over
//! "id.timestamp.body">`), destinations checked against SSRF (only `https`, and never a
//! private, loopback or link-local address, outside `vmcloud dev`).
//!
//! What exists: endpoints ([`apply`], [`api`]), signing ([`sign`]), the destination rules
//! ([`target`]) and test events sent on demand. The event pipeline — events derived from the
//! log, delivered by the leader with retries, the delivery log in the history store — is the
//! next step (see the note).

pub mod api;
pub mod apply;
pub mod sign;
pub mod target;
pub mod types;

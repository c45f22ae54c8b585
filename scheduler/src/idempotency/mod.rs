//! Idempotency keys (DESIGN.md §8 "API contract"): a client that retries a `POST` with the
//! same `Idempotency-Key` gets the first result, never a second object — across replicas and
//! leader failovers, because what a key did is remembered by `apply` in the replicated state,
//! in the same step that does it.
//!
//! The API middleware ([`crate::api::request`]) fingerprints a keyed request (method, path,
//! body); every command the request proposes carries the key, the fingerprint and its place
//! among the request's commands (`Command.request`). `apply` keeps, per principal and key,
//! the fingerprint and what each command did. A command arriving again with that key:
//! - with another fingerprint is refused (`422 idempotency-key-reused`);
//! - otherwise gets the first result again: the instance or reservation it made (as it is
//!   now), or `Done`. What answered with a secret shown once (an API key, a login token, TOTP
//!   recovery codes) cannot be answered again: it is refused with what it did and where to
//!   look (`409 idempotency-key-replayed`).
//!
//! Two concurrent requests with one key are serialized by the log: the second waits for the
//! first's commit and gets its result. Refusals are not remembered (nothing was done; a retry
//! tries again). Keys are forgotten 24 hours after their first use, by `apply` itself from the
//! commands' time, so the state does not grow with them.

pub mod apply;
pub mod types;

//! Cloud gaming's product layer (DESIGN.md §8 "Gaming"): the title catalog and plans' fair
//! use ([`catalog`]), households — profiles, kids' rules, the parental PIN, entitlements —
//! and the playtime their sessions used ([`types`]), the checks a launch passes in `apply`
//! (invariant 15, [`apply`]) the API ([`api`]) and warm pools ([`warm`]). Sessions themselves (queues, tiers,
//! launches) are in [`crate::sessions`].

pub mod api;
pub mod apply;
pub mod catalog;
pub mod pools;
pub mod share;
pub mod share_api;
pub mod types;
pub mod warm;
pub mod warm_api;
pub mod warm_controller;
pub mod warm_metrics;
pub mod warm_queue;

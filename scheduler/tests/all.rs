//! Integration tests of the scheduler crate (one binary, STYLE.md §15).

mod billing_failover;
mod fleet;
mod gaming;
mod host_events;
mod jobs;
mod partner_licences;
mod partners;
mod placement_invariants;
mod reservations;
mod sessions;
mod share_play;
mod status;
mod warm_pools;

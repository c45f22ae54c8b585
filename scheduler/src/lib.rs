//! The VMCloud scheduler: the replicated state machine and everything that runs beside it.
//!
//! The crate is split by domain (DESIGN.md §3). From the ground up:
//!
//! - [`clock`]: time helpers; [`catalog`]: regions, flavors, images (config);
//! - [`state`]: the ground floor — [`state::ClusterState`], the `Command` dispatch in
//!   `apply` (its only writer), the derived indexes, and the adapter to the consensus crate;
//! - one folder per domain, each with its types, its `impl ClusterState` handlers, its
//!   queries and its HTTP handlers: [`projects`], [`instances`], [`nodes`], [`jobs`] (with
//!   the AI job queue), [`sessions`], [`reservations`], [`join`];
//! - [`history`]: what is no longer live (ended instances), on disk per replica;
//! - [`placement`]: the pure placement function, split by stage; [`eval_broker`] hands out
//!   evaluations and [`placement_controller`] runs placement on the leader and proposes plans;
//! - [`gateway`]: the QUIC server agents connect to (desired configs out, reports in);
//! - [`api`]: the HTTP router and what handlers share (problem+json, extractors);
//! - [`raft_handle`]: the handle on the Raft group (propose, read); [`server`]: a whole
//!   replica wired together; [`bootstrap`]: the dev project; [`fleet_generator`]: generated
//!   fleets for benchmarks and tests.
//!
//! Imports point down only: domain folders import `state`, never the other way; no file
//! imports one that imports it back (`../shared/tools/module-cycles scheduler/src`).

pub mod api;
pub mod audit;
pub mod billing;
pub mod bootstrap;
pub mod catalog;
pub mod clock;
pub mod eval_broker;
pub mod firewalls;
pub mod fleet_generator;
pub mod gaming;
pub mod gateway;
pub mod history;
pub mod idempotency;
pub mod instances;
pub mod jobs;
pub mod join;
pub mod mail;
pub mod networks;
pub mod nodes;
pub mod partners;
pub mod placement;
pub mod placement_controller;
pub mod public_ips;
pub mod quotas;
pub mod raft_handle;
pub mod request_context;
pub mod reservations;
pub mod secrets;
pub mod server;
pub mod sessions;
pub mod state;
pub mod status;
pub mod tenancy;
pub mod webhooks;

pub use server::{Replication, Scheduler, SchedulerConfig, StartError};

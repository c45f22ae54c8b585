//! The VMCloud scheduler.
//!
//! - [`state`]: the replicated cluster state and `apply`, its only writer;
//! - [`placement`]: the pure placement function ([`mig`]: GPU slices); [`broker`]: the eval
//!   broker; [`controller`]: the loop that runs it on the
//!   leader and proposes plans;
//! - [`gateway`]: the QUIC server agents connect to (desired configs out, status in);
//! - [`api`]: the HTTP API; [`auth`]: API keys; [`catalog`]: regions, flavors, images;
//! - [`server`]: a whole replica wired together; [`bootstrap`]: the dev account.

pub mod api;
pub mod auth;
pub mod bootstrap;
pub mod broker;
pub mod catalog;
pub mod cluster;
pub mod controller;
pub mod gateway;
pub mod join;
pub mod liveness;
pub mod mig;
pub mod placement;
pub mod queue;
pub mod reservation;
pub mod server;
pub mod session;
pub mod sim;
pub mod state;

pub use server::{Replication, Scheduler, SchedulerConfig, StartError};

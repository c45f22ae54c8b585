//! The public status page (DESIGN.md §8 "NOC and observability"): per region and service
//! (API, console, compute, GPU, gaming, billing) a status made of the fleet's health and of
//! the incidents and maintenance windows operators declare (`POST /v1/incidents`, updates,
//! resolution), with 90 days of history. [`types`] is what the state keeps, [`apply`] the
//! commands, [`health`] the fleet's part, [`api`] the routes (`GET /v1/status` needs no login).

pub mod api;
pub mod apply;
pub mod health;
pub mod types;

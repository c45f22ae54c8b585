//! Cloud-gaming sessions: tiers, launch queues (position and estimate, region choice by
//! latency) and the HTTP API. A session is an instance (see [`crate::instances`]).

pub mod api;
pub mod queue;
pub mod types;

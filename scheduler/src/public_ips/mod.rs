//! Public addressing (DESIGN.md §8 "Networks"): each region has operator-configured IPv4
//! pools (the catalog's `regions.<code>.public_ipv4`). An instance created with
//! `"public_ipv4": true` gets an address of its own from its region's pools, held until it is
//! gone; a **floating IP** is an address a project holds on its own, assigned to one of its
//! instances in the region (or to none) and kept when that instance goes. Every public address
//! may have a reverse DNS name. The desired config carries an instance's public addresses; its
//! host routes each (/32) to the instance's bridge and the metadata endpoint tells the guest.
//! A pool with nothing free refuses with what to do; `/metrics` shows what is free per region.

pub mod api;
pub mod apply;
pub mod metrics;
pub mod types;

#[cfg(test)]
mod tests;

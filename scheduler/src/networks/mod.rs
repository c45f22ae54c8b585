//! Private networks (DESIGN.md §8 "Networks"): per project, an IPv4 subnet (RFC 1918) and a
//! VXLAN VNI each, and IPAM — every instance's NIC gets an address of its network, held for the
//! instance's life and given back when it leaves the state.
//!
//! An instance created through the API without naming a network joins its project's
//! **default network** of its region, made by the same command on first use (`10.x.0.0/24`,
//! the first that overlaps none of the project's networks there). VNIs come from the catalog's
//! `[networks] vni_range`, carried by the command: each new network takes the one after the
//! last given, so a VNI is never given twice — not even after its network is gone and some
//! host may still have its bridge. Different projects may use the same subnets: their VNIs
//! keep them apart.
//!
//! The node's desired config carries each instance's NIC (VNI, MAC, address); the agent puts
//! it on the network's bridge and routes the address there, and its metadata endpoint knows
//! the guest by it.

pub mod api;
pub mod apply;
pub mod peers;
pub mod types;

#[cfg(test)]
mod tests;

//! Firewalls (DESIGN.md §8 "Networks"): per project, sets of allow rules (direction, protocol,
//! port range, source or destination CIDRs or another firewall's instances), attached to
//! instances. An instance with a firewall attached gets inbound traffic only as its rules
//! allow, and sends anywhere unless outbound rules exist; answers to allowed traffic pass
//! (stateful). The scheduler resolves peer firewalls to addresses; the host applies the rules
//! with nftables on the instance's port of its network's bridge, without touching the guest.

pub mod api;
pub mod apply;
pub mod types;

#[cfg(test)]
mod tests;

//! Integration tests of the consensus crate: real `Raft` replicas over redb logs on disk,
//! connected by the in-memory fault-injecting network (one test binary, STYLE.md §15).

mod cluster;
mod failover;
mod harness;
mod linearizable;
mod quic;
mod randomized;
mod single_voter;

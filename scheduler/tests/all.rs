//! Integration tests of the scheduler crate (one binary, STYLE.md §15).

mod placement_invariants;

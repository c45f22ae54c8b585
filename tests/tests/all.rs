//! Whole-fleet tests, one binary (see STYLE.md §15).

mod cluster;
mod crash;
mod dev;

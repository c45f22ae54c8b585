//! Whole-fleet tests, one binary (see STYLE.md §15).

mod crash;
mod dev;

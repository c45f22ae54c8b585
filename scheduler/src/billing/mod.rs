//! Billing on the replicated state (DESIGN.md §8 "Billing"): usage read from committed
//! lifecycle commands, monthly runs that turn it into invoices, credits, payments.
//!
//! - [`types`]: usage intervals, credits, invoices and the organisation's billing book.
//! - [`meters`]: where usage starts and stops — an instance is billable from the command that
//!   placed it to the one that deleted (or reclaimed, or lost) it; a public address from the
//!   command that took it to the one that gave it back. Times are the commands' times, so a
//!   failover, a lost link or a replica restart neither loses nor doubles a second
//!   (invariant 6): the meter lives in the replicated state, not in any replica's memory.
//! - [`run`]: the monthly run, a command: open meters are cut at the month's end, usage is
//!   rated with the price books the command carries (`vmcloud-billing`, pure), credits are
//!   drawn, and each organisation that used anything gets a draft; finalizing numbers the
//!   drafts without gaps (`VMC-2026-000001`, per seller and year) — a run proposed twice (a
//!   retry after a failover) is refused the second time, so nothing is invoiced twice.
//! - [`controller`]: the leader bills each month once it has ended (`--billing-run-after`).
//! - [`payments`] (cards, dunning, suspension, in `apply`), [`collect`] (the leader charges
//!   cards through [`stripe`], mails each dunning step, deletes after the grace).
//! - [`apply`]: payments, voids and credit notes, credits, the test clock.
//! - [`plans`]: monthly plans (taken, changed, cancelled; billed ahead by the run).
//! - [`pdf`] and [`journal`]: an invoice as PDF; a period's double entries as CSV.
//! - [`usage`]: month to date, rated for the API and the console (not a command).
//! - [`api`]: `/v1/usage`, `/v1/invoices`, `/v1/credits`, `/v1/billing/…`.

pub mod api;
pub mod apply;
pub mod collect;
pub mod controller;
pub mod coupons;
pub mod hour_packs;
pub mod journal;
pub mod meters;
pub mod payment_api;
pub mod payments;
pub mod pdf;
pub mod plans;
#[cfg(test)]
mod plans_tests;
pub mod prepaid;
#[cfg(test)]
mod prepaid_tests;
pub mod run;
pub mod sla;
pub mod staff_api;
pub mod stripe;
#[cfg(test)]
mod tests;
pub mod types;
pub mod usage;

//! VMCloud's money logic (DESIGN.md §8 "Billing"), pure: no I/O, no clock — every date and
//! amount comes from the caller, so the same inputs always give the same invoice.
//!
//! - [`money`]: an amount always travels with its currency (EUR, USD, GBP); adding two
//!   currencies is an error, never a silent conversion. One rounding rule: each line is rounded
//!   once, half-even to the cent ([`money::Money::round_line`]); totals are sums of rounded lines.
//! - [`prices`]: price books per currency (`config/prices.toml`): per flavor an hourly price,
//!   a monthly cap and a spot discount; reserved commitments' discounts; public IPv4 per month.
//! - [`plans`]: monthly plans, billed a month in advance and prorated by the second on change.
//! - [`rating`]: billable intervals → priced lines, per second, rounded once.
//! - [`invoice`]: charges, discounts and credits (in a documented order), VAT and prepaid
//!   balance → an invoice's lines and totals; invariant 10 (the lines add up) is property-tested.
//! - [`tax`]: the seller is VMCloud OÜ in Estonia. EU consumers pay their own country's VAT
//!   (the One-Stop Shop), EU businesses with a VAT id outside Estonia are reverse-charged (0 %,
//!   with the legal mention), Estonian businesses pay Estonian VAT, customers outside the EU pay
//!   none. Rates come from a dated table (`config/vat.toml`: every EU country's standard rate,
//!   with the date each took effect).

pub mod invoice;
pub mod money;
pub mod plans;
pub mod prices;
pub mod rating;
pub mod tax;

//! White-label partners (DESIGN.md §8 "Partners"): between the provider and organisations.
//! A partner has its staff (the members of its own organisation: owners and admins are
//! partner admins, the other roles partner support), its brand and domains (a request's
//! `Host` picks the brand), its customers (organisations whose `partner` is it, made by its
//! admins or signing up on its portal) and its POPs (catalog regions whose `partner` is it).
//! Its staff see its customers in full; VMCloud's staff see them only while a customer or the
//! partner has opened support access ("my customer's customer is not my customer").
//!
//! [`types`] is what the state keeps, [`apply`] the commands, [`api`] the routes, [`brand`]
//! which partner a request or a mail belongs to.

pub mod api;
pub mod apply;
pub mod brand;
pub mod invoices;
pub mod licences;
pub mod licences_api;
pub mod pops;
pub mod statement;
pub mod types;

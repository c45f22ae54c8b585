//! Tenancy and identity (DESIGN.md §8): the provider → organisation → project tree, users and
//! their login sessions, API keys, roles and the one authorization function.
//!
//! - [`types`]: what the replicated state holds (no secret in clear: hashes only).
//! - [`authz`]: roles, actions, principals, and `ClusterState::authorize`.
//! - [`commands`]: which action each log command is, checked again in `apply`.
//! - [`apply`]: the `impl ClusterState` handlers; [`migrate`]: state from before
//!   organisations; [`validate`]: names, emails, countries, VAT ids; [`trial`]: what a trial
//!   allows.
//! - [`api_key`], [`password`]: the secrets' formats and hashing; [`mfa`]: TOTP and
//!   recovery codes (their state and their math).
//! - HTTP handlers: [`api`] (projects, keys), [`identity_api`] (sign-up, log-in),
//!   [`mfa_api`] (two-step verification), [`org_api`] (organisations, members),
//!   [`reset_api`] (password reset), [`project_members_api`] (project roles), [`sso_api`] (OpenID Connect log-in; [`sso`] its state).

pub mod api;
pub mod api_key;
pub mod apply;
pub mod authz;
pub mod commands;
pub mod identity_api;
pub mod invitations;
pub mod invitations_api;
pub mod mfa;
pub mod mfa_api;
pub mod migrate;
pub mod org_api;
pub mod password;
pub mod project_members_api;
pub mod reset_api;
pub mod sso;
pub mod sso_api;
pub mod trial;
pub mod types;
pub mod validate;

//! The tenancy tree and identities as the replicated state holds them: organisations, their
//! projects, users, login sessions and API keys. Secrets are only ever hashes here
//! (DESIGN.md invariant 14).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use vmcloud_proto::{OrgId, ProjectId, UserId};

use crate::sessions::types::SessionTier;

/// The name every organisation's first project has.
pub const DEFAULT_PROJECT: &str = "default";

/// Every role, at every level of the tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    // Organisation level.
    Owner,
    Admin,
    Billing,
    Member,
    Viewer,
    // Project level (and API keys).
    ProjectAdmin,
    ProjectMember,
    ProjectViewer,
    // Provider level: members of the provider's organisation.
    Operator,
    Support,
    Finance,
}

pub const ALL_ROLES: [Role; 11] = [
    Role::Owner,
    Role::Admin,
    Role::Billing,
    Role::Member,
    Role::Viewer,
    Role::ProjectAdmin,
    Role::ProjectMember,
    Role::ProjectViewer,
    Role::Operator,
    Role::Support,
    Role::Finance,
];

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::Billing => "billing",
            Role::Member => "member",
            Role::Viewer => "viewer",
            Role::ProjectAdmin => "project-admin",
            Role::ProjectMember => "project-member",
            Role::ProjectViewer => "project-viewer",
            Role::Operator => "operator",
            Role::Support => "support",
            Role::Finance => "finance",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        ALL_ROLES.into_iter().find(|r| r.as_str() == s)
    }

    /// Held in an organisation (by its members).
    pub fn is_org_role(self) -> bool {
        matches!(
            self,
            Role::Owner | Role::Admin | Role::Billing | Role::Member | Role::Viewer
        )
    }

    /// Held in a project (by users, or by an API key).
    pub fn is_project_role(self) -> bool {
        matches!(
            self,
            Role::ProjectAdmin | Role::ProjectMember | Role::ProjectViewer
        )
    }

    /// Held by members of the provider's organisation only.
    pub fn is_provider_role(self) -> bool {
        matches!(self, Role::Operator | Role::Support | Role::Finance)
    }
}

/// A company, a person or a gaming household: owns projects, members and (later) invoices.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Organisation {
    pub id: OrgId,
    pub name: String,
    pub kind: OrgKind,
    /// ISO 3166-1 alpha-2 (upper case).
    pub billing_country: String,
    /// An EU VAT id (format-checked for its country), businesses only.
    pub vat_id: Option<String>,
    /// The postal address invoices print (lines), when given.
    #[serde(default)]
    pub billing_address: Vec<String>,
    pub created_at_ms: i64,
    /// Members by user, with their organisation-level role.
    pub members: BTreeMap<UserId, Role>,
    /// Every member must log in with a second factor.
    pub mfa_required: bool,
    /// Until a payment method exists: no GPU flavors, at most [`TRIAL_MAX_INSTANCES`].
    pub trial: bool,
    /// VMCloud itself: its members may hold the provider roles (operator, support, finance).
    pub provider: bool,
    /// Log-in through the organisation's OpenID provider, when set.
    #[serde(default)]
    pub sso: Option<SsoConfig>,
    /// Invitations of people without an account yet, by (lower-case) email.
    #[serde(default)]
    pub invitations: BTreeMap<String, Invitation>,
    /// API requests an hour each of its principals may make, when operators set one (else
    /// the replica's `--api-rate-limit`).
    #[serde(default)]
    pub api_per_hour: Option<u32>,
    /// The partner whose customer it is (its staff see it in full, VMCloud's only with
    /// support access); `None`: VMCloud's own customer.
    #[serde(default)]
    pub partner: Option<String>,
    /// Until when VMCloud's support staff may see it, when it is a partner's customer and its
    /// owners or the partner opened access.
    #[serde(default)]
    pub support_access_until_ms: Option<i64>,
}

/// An invitation into an organisation, until the invited person takes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Invitation {
    pub role: Role,
    /// SHA-256 of the mailed token.
    pub token_sha256: Vec<u8>,
    pub expires_at_ms: i64,
}

/// An organisation's OpenID Connect log-in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SsoConfig {
    pub issuer: String,
    pub client_id: String,
    /// Sealed (`secrets`), for `sso::seal_purpose(org)`.
    pub client_secret_sealed: String,
    /// Lower-case domains whose verified emails may log in.
    pub allowed_domains: Vec<String>,
    /// The role of a member made on their first log-in.
    pub default_role: Role,
}

/// Live instances a trial organisation may hold across its projects.
pub const TRIAL_MAX_INSTANCES: usize = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OrgKind {
    Company,
    Person,
    Household,
}

impl OrgKind {
    pub fn parse(s: &str) -> Option<OrgKind> {
        match s {
            "company" => Some(OrgKind::Company),
            "person" => Some(OrgKind::Person),
            "household" => Some(OrgKind::Household),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            OrgKind::Company => "company",
            OrgKind::Person => "person",
            OrgKind::Household => "household",
        }
    }
}

/// Groups workloads; every instance, reservation, job, session and API key belongs to one.
/// Fields after `gaming_tier` were added with organisations (snapshots are positional: new
/// fields go last, with a default).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Project {
    pub id: ProjectId,
    pub name: String,
    pub created_at_ms: i64,
    /// From logs that predate organisations: this project's keys operate the fleet (they
    /// become `operator` keys when restored; see `tenancy::migrate`).
    #[serde(default)]
    pub operator: bool,
    /// Weight of its fair share of the AI job queues (default 1).
    #[serde(default = "one")]
    pub share_weight: u32,
    /// The gamer's subscription tier: its session launches are served in that order.
    #[serde(default)]
    pub gaming_tier: SessionTier,
    /// Its organisation (empty only before migration).
    #[serde(default = "no_org")]
    pub org: OrgId,
    /// Project-level roles of users (beside what their organisation role gives them).
    #[serde(default)]
    pub members: BTreeMap<UserId, Role>,
}

fn one() -> u32 {
    1
}

fn no_org() -> OrgId {
    OrgId::parse("none").expect("a valid id")
}

impl Project {
    /// A new project of `org`.
    pub fn new(id: ProjectId, org: OrgId, name: String, at_ms: i64) -> Project {
        Project {
            id,
            name,
            created_at_ms: at_ms,
            operator: false,
            share_weight: 1,
            gaming_tier: SessionTier::Standard,
            org,
            members: BTreeMap::new(),
        }
    }
}

/// Largest fair-share weight an operator may give a project.
pub const MAX_SHARE_WEIGHT: u32 = 1000;

/// A key for programs: `vmc_<key id>_<secret>`; only the secret's SHA-256 is kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiKey {
    #[serde(alias = "account")]
    pub project: ProjectId,
    pub secret_sha256: Vec<u8>,
    #[serde(default)]
    pub name: String,
    /// What it may do in its project (a project role, or `operator` for the provider's keys).
    #[serde(default = "legacy_key_role")]
    pub role: Role,
    #[serde(default)]
    pub created_at_ms: i64,
    /// `None`: never.
    #[serde(default)]
    pub expires_at_ms: Option<i64>,
    #[serde(default)]
    pub revoked_at_ms: Option<i64>,
}

fn legacy_key_role() -> Role {
    Role::ProjectAdmin
}

impl ApiKey {
    /// Whether it authenticates at `now_ms`.
    pub fn usable(&self, now_ms: i64) -> bool {
        self.revoked_at_ms.is_none() && self.expires_at_ms.is_none_or(|e| now_ms < e)
    }
}

/// A person who logs in. The email is unique (lower-cased).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct User {
    pub id: UserId,
    pub email: String,
    /// argon2id, PHC string.
    pub password_hash: String,
    pub email_verified: bool,
    pub created_at_ms: i64,
    /// SHA-256 of the pending email verification token, and when it expires.
    pub verification: Option<(Vec<u8>, i64)>,
    /// The TOTP secret, sealed (`secrets`): two-step verification is on.
    #[serde(default)]
    pub totp_sealed: Option<String>,
    /// A TOTP secret being enrolled, sealed, until a code from it is confirmed.
    #[serde(default)]
    pub totp_pending: Option<String>,
    /// The last TOTP time step used: a code of that step or before is refused (no replay).
    #[serde(default)]
    pub totp_last_step: u64,
    /// SHA-256 of the unused recovery codes.
    #[serde(default)]
    pub recovery_sha256: Vec<Vec<u8>>,
    /// SHA-256 of the pending password reset token, and when it expires.
    #[serde(default)]
    pub reset: Option<(Vec<u8>, i64)>,
}

impl User {
    /// A new user with no second factor yet.
    pub fn new(id: UserId, email: String, password_hash: String, at_ms: i64) -> User {
        User {
            id,
            email,
            password_hash,
            email_verified: false,
            created_at_ms: at_ms,
            verification: None,
            totp_sealed: None,
            totp_pending: None,
            totp_last_step: 0,
            recovery_sha256: Vec::new(),
            reset: None,
        }
    }
}

/// A logged-in browser or CLI: a random token whose SHA-256 is kept; ends on logout,
/// password change or "log out everywhere".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoginSession {
    pub user: UserId,
    pub secret_sha256: Vec<u8>,
    pub created_at_ms: i64,
    pub expires_at_ms: i64,
    /// A second factor was checked when it started.
    pub mfa: bool,
}

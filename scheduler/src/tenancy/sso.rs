//! Single sign-on: an organisation's OpenID Connect provider. What the state holds (the
//! configuration, with its client secret sealed) and what `apply` does with a log-in the
//! handler verified: the user made on first log-in, a membership with the default role, a
//! session. The protocol itself (discovery, PKCE, the code exchange, ID token checks) is in
//! `sso_api`.

use vmcloud_proto::{OrgId, UserId, pb};

use crate::state::{Applied, ApplyResult, ClusterState, Rejected};
use crate::tenancy::types::{LoginSession, Role, SsoConfig, User};
use crate::tenancy::validate;

/// What a sealed client secret is bound to.
pub fn seal_purpose(org: &OrgId) -> String {
    format!("oidc:{org}")
}

/// The domain of an email, lower-case.
pub fn domain_of(email: &str) -> Option<String> {
    email
        .rsplit_once('@')
        .map(|(_, d)| d.to_ascii_lowercase())
        .filter(|d| !d.is_empty())
}

fn invalid(e: impl std::fmt::Display) -> Rejected {
    Rejected::Invalid(e.to_string())
}

impl ClusterState {
    pub(crate) fn set_organisation_sso(&mut self, c: pb::SetOrganisationSso) -> ApplyResult {
        let id = OrgId::parse(&c.org_id).map_err(invalid)?;
        let org = self
            .organisations
            .get_mut(&id)
            .ok_or_else(|| Rejected::NotFound(format!("organisation {id}")))?;
        if c.issuer.is_empty() {
            org.sso = None;
            return Ok(Applied::Done);
        }
        let role = Role::parse(&c.default_role)
            .filter(|r| r.is_org_role() && *r != Role::Owner)
            .ok_or_else(|| invalid(format!("`{}` is not a default role", c.default_role)))?;
        if !c.client_secret_sealed.starts_with("v1.") {
            return Err(invalid("an OIDC client secret is kept sealed only"));
        }
        if c.allowed_domains.is_empty() {
            return Err(invalid("SSO needs at least one allowed email domain"));
        }
        org.sso = Some(SsoConfig {
            issuer: c.issuer,
            client_id: c.client_id,
            client_secret_sealed: c.client_secret_sealed,
            allowed_domains: c
                .allowed_domains
                .iter()
                .map(|d| d.to_ascii_lowercase())
                .collect(),
            default_role: role,
        });
        Ok(Applied::Done)
    }

    pub(crate) fn sso_login(&mut self, c: pb::SsoLogin, at: i64) -> ApplyResult {
        let org_id = OrgId::parse(&c.org_id).map_err(invalid)?;
        let email = validate::email(&c.email).map_err(invalid)?;
        let org = self
            .organisations
            .get(&org_id)
            .ok_or_else(|| Rejected::NotFound(format!("organisation {org_id}")))?;
        let sso = org.sso.as_ref().ok_or_else(|| {
            Rejected::Conflict(format!("organisation {org_id} has no SSO log-in"))
        })?;
        let domain = domain_of(&email).unwrap_or_default();
        if !sso.allowed_domains.contains(&domain) {
            return Err(Rejected::Forbidden(format!(
                "{email} is not in a domain that organisation {org_id} allows for SSO"
            )));
        }
        let role = sso.default_role;
        if self.login_sessions.contains_key(&c.session_id) {
            return Err(Rejected::Exists(format!("login session {}", c.session_id)));
        }
        let user = match self.users_by_email.get(&email) {
            Some(u) => u.clone(),
            None => {
                let id = UserId::parse(&c.new_user_id).map_err(invalid)?;
                if self.users.contains_key(&id)
                    || !c.unusable_password_hash.starts_with("$argon2id$")
                {
                    return Err(invalid(
                        "a new SSO user needs a fresh id and an argon2id hash",
                    ));
                }
                self.users_by_email.insert(email.clone(), id.clone());
                self.users.insert(
                    id.clone(),
                    User {
                        email_verified: true,
                        ..User::new(id.clone(), email, c.unusable_password_hash, at)
                    },
                );
                id
            }
        };
        let org = self.organisations.get_mut(&org_id).expect("found above");
        org.members.entry(user.clone()).or_insert(role);
        self.insert_login_session(
            c.session_id,
            LoginSession {
                user,
                secret_sha256: c.secret_sha256,
                created_at_ms: at,
                expires_at_ms: c.expires_at_unix_ms,
                mfa: c.mfa,
            },
        );
        Ok(Applied::Done)
    }
}

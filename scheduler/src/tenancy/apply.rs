//! Applying tenancy and identity commands, and authenticating keys and login sessions.
//! Everything a handler checked is checked again here (ids free, references exist, values
//! valid): a command is applied whole or not at all.

use std::collections::BTreeMap;

use vmcloud_proto::pb;
use vmcloud_proto::{OrgId, ProjectId, UserId};

use crate::sessions::types::SessionTier;
use crate::state::{Applied, ApplyResult, ClusterState, Rejected};
use crate::tenancy::migrate::legacy_org_of;
use crate::tenancy::types::{
    ApiKey, DEFAULT_PROJECT, LoginSession, MAX_SHARE_WEIGHT, OrgKind, Organisation, Project, Role,
    User,
};
use crate::tenancy::validate;

fn invalid(e: impl std::fmt::Display) -> Rejected {
    Rejected::Invalid(e.to_string())
}

impl ClusterState {
    pub(crate) fn create_project(&mut self, c: pb::CreateProject, at: i64) -> ApplyResult {
        let id = ProjectId::parse(&c.project_id).map_err(invalid)?;
        if self.projects.contains_key(&id) {
            return Err(Rejected::Exists(format!("project {id}")));
        }
        let org = if c.org_id.is_empty() {
            // An entry from before organisations: the project gets one of its own.
            let mut org = legacy_org_of(&id, &c.name, at);
            org.provider = c.operator;
            let org_id = org.id.clone();
            self.organisations.entry(org_id.clone()).or_insert(org);
            org_id
        } else {
            let org = OrgId::parse(&c.org_id).map_err(invalid)?;
            if !self.organisations.contains_key(&org) {
                return Err(Rejected::NotFound(format!("organisation {org}")));
            }
            org
        };
        let name = if c.org_id.is_empty() {
            DEFAULT_PROJECT.to_owned()
        } else {
            validate::name("project name", &c.name).map_err(invalid)?
        };
        // By index: an organisation may have thousands, the cluster millions.
        if self
            .index
            .project_names
            .contains(&(org.clone(), name.clone()))
        {
            return Err(Rejected::Exists(format!(
                "a project named `{name}` in organisation {org}"
            )));
        }
        let mut project = Project::new(id.clone(), org, name, at);
        project.operator = c.operator;
        self.insert_project(project);
        Ok(Applied::Done)
    }

    /// Adds a project (and to its organisation's index).
    pub(crate) fn insert_project(&mut self, project: Project) {
        self.index
            .project_names
            .insert((project.org.clone(), project.name.clone()));
        self.index
            .org_projects
            .entry(project.org.clone())
            .or_default()
            .insert(project.id.clone());
        self.projects.insert(project.id.clone(), project);
    }

    pub(crate) fn delete_project(&mut self, c: pb::DeleteProject) -> ApplyResult {
        let id = ProjectId::parse(&c.project_id).map_err(invalid)?;
        if !self.projects.contains_key(&id) {
            return Err(Rejected::NotFound(format!("project {id}")));
        }
        let live = self.index.per_project.get(&id).map_or(0, |set| set.len());
        if live > 0 {
            return Err(Rejected::Conflict(format!(
                "project {id} still has {live} instance(s) (VMs, job members or game sessions); delete them first"
            )));
        }
        let active_reservations = self
            .reservations
            .values()
            .filter(|r| r.project == id && !r.expired)
            .count();
        if active_reservations > 0 {
            return Err(Rejected::Conflict(format!(
                "project {id} still holds {active_reservations} reservation(s) until they end"
            )));
        }
        if let Some(p) = self.projects.remove(&id) {
            self.index
                .project_names
                .remove(&(p.org.clone(), p.name.clone()));
            if let Some(set) = self.index.org_projects.get_mut(&p.org) {
                set.remove(&id);
                if set.is_empty() {
                    self.index.org_projects.remove(&p.org);
                }
            }
        }
        let keys: Vec<String> = self
            .api_keys
            .iter()
            .filter(|(_, k)| k.project == id)
            .map(|(key_id, _)| key_id.clone())
            .collect();
        for key_id in keys {
            self.api_keys.remove(&key_id);
        }
        // Its networks (empty: it has no instances), firewalls and public addresses go with
        // it; their VNIs are never given again.
        self.networks = self.networks.without_matching(|n| n.project == id);
        self.firewalls = self.firewalls.without_matching(|f| f.project == id);
        self.floating_ips = self.floating_ips.without_matching(|f| f.project == id);
        self.public_ips = self.public_ips.without_matching(|h| h.project == id);
        Ok(Applied::Done)
    }

    pub(crate) fn update_project(&mut self, c: pb::UpdateProject) -> ApplyResult {
        let id = ProjectId::parse(&c.project_id).map_err(invalid)?;
        let tier = c.gaming_tier.map(|_| SessionTier::from(c.gaming_tier()));
        if c.share_weight
            .is_some_and(|w| !(1..=MAX_SHARE_WEIGHT).contains(&w))
        {
            return Err(Rejected::Invalid(format!(
                "share_weight must be between 1 and {MAX_SHARE_WEIGHT}"
            )));
        }
        let project = self
            .projects
            .get_mut(&id)
            .ok_or_else(|| Rejected::NotFound(format!("project {id}")))?;
        if let Some(w) = c.share_weight {
            project.share_weight = w;
        }
        if let Some(t) = tier {
            project.gaming_tier = t;
        }
        Ok(Applied::Done)
    }

    pub(crate) fn add_api_key(&mut self, c: pb::AddApiKey, at: i64) -> ApplyResult {
        let project = ProjectId::parse(&c.project_id).map_err(invalid)?;
        let Some(p) = self.projects.get(&project) else {
            return Err(Rejected::NotFound(format!("project {project}")));
        };
        if self.api_keys.contains_key(&c.key_id) {
            return Err(Rejected::Exists(format!("API key {}", c.key_id)));
        }
        let provider = self.organisations.get(&p.org).is_some_and(|o| o.provider);
        let role = if c.role.is_empty() {
            if p.operator {
                Role::Operator
            } else {
                Role::ProjectAdmin
            }
        } else {
            let role = Role::parse(&c.role)
                .ok_or_else(|| Rejected::Invalid(format!("unknown role `{}`", c.role)))?;
            if !(role.is_project_role() || (role == Role::Operator && (provider || p.operator))) {
                return Err(Rejected::Invalid(format!(
                    "an API key's role is project-admin, project-member or project-viewer{}",
                    if provider { " (or operator)" } else { "" }
                )));
            }
            role
        };
        self.api_keys.insert(
            c.key_id,
            ApiKey {
                project,
                secret_sha256: c.secret_sha256,
                name: c.name,
                role,
                created_at_ms: at,
                expires_at_ms: (c.expires_at_unix_ms > 0).then_some(c.expires_at_unix_ms),
                revoked_at_ms: None,
            },
        );
        Ok(Applied::Done)
    }

    pub(crate) fn revoke_api_key(&mut self, c: pb::RevokeApiKey, at: i64) -> ApplyResult {
        let key = self
            .api_keys
            .get_mut(&c.key_id)
            .ok_or_else(|| Rejected::NotFound(format!("API key {}", c.key_id)))?;
        key.revoked_at_ms.get_or_insert(at);
        Ok(Applied::Done)
    }

    /// The project an API key belongs to, with the key, if `secret_sha256` matches its
    /// stored hash and the key is neither revoked nor expired.
    pub fn authenticate(&self, key_id: &str, secret_sha256: &[u8]) -> Option<&ProjectId> {
        self.api_keys
            .get(key_id)
            .filter(|k| k.secret_sha256 == secret_sha256 && k.usable(self.now_ms))
            .map(|k| &k.project)
    }

    fn new_organisation(
        &self,
        o: &pb::Organisation,
        owner: Option<&UserId>,
        provider: bool,
        at: i64,
    ) -> Result<Organisation, Rejected> {
        let id = OrgId::parse(&o.org_id).map_err(invalid)?;
        if self.organisations.contains_key(&id) {
            return Err(Rejected::Exists(format!("organisation {id}")));
        }
        let kind = OrgKind::parse(&o.kind)
            .ok_or_else(|| Rejected::Invalid(format!("unknown organisation kind `{}`", o.kind)))?;
        let details =
            validate::org_details(&o.name, kind, &o.billing_country, &o.vat_id).map_err(invalid)?;
        Ok(Organisation {
            id,
            name: details.name,
            kind,
            billing_country: details.country,
            vat_id: details.vat_id,
            billing_address: validate::address(&o.billing_address).map_err(invalid)?,
            created_at_ms: at,
            members: owner
                .map(|u| BTreeMap::from([(u.clone(), Role::Owner)]))
                .unwrap_or_default(),
            mfa_required: false,
            trial: !provider,
            provider,
            sso: None,
            invitations: BTreeMap::new(),
            api_per_hour: None,
            partner: None,
            support_access_until_ms: None,
        })
    }

    pub(crate) fn sign_up(&mut self, c: pb::SignUp, at: i64) -> ApplyResult {
        let user_id = UserId::parse(&c.user_id).map_err(invalid)?;
        let email = validate::email(&c.email).map_err(invalid)?;
        if self.users.contains_key(&user_id) {
            return Err(Rejected::Exists(format!("user {user_id}")));
        }
        if self.users_by_email.contains_key(&email) {
            return Err(Rejected::Exists(format!("an account for {email}")));
        }
        if !c.password_hash.starts_with("$argon2id$") {
            return Err(Rejected::Invalid(
                "passwords are stored as argon2id hashes".into(),
            ));
        }
        let org_spec = c.organisation.as_ref().ok_or(Rejected::Malformed)?;
        let mut org = self.new_organisation(org_spec, Some(&user_id), false, at)?;
        if !c.partner_id.is_empty() {
            if !self.partners.contains_key(&c.partner_id) {
                return Err(Rejected::NotFound(format!("partner {}", c.partner_id)));
            }
            org.partner = Some(c.partner_id.clone());
        }
        let project = ProjectId::parse(&c.project_id).map_err(invalid)?;
        if self.projects.contains_key(&project) {
            return Err(Rejected::Exists(format!("project {project}")));
        }
        let org_id = org.id.clone();
        self.organisations.insert(org_id.clone(), org);
        self.insert_project(Project::new(
            project,
            org_id,
            DEFAULT_PROJECT.to_owned(),
            at,
        ));
        self.users_by_email.insert(email.clone(), user_id.clone());
        self.users.insert(
            user_id.clone(),
            User {
                verification: Some((c.verification_sha256, c.verification_expires_at_unix_ms)),
                ..User::new(user_id, email, c.password_hash, at)
            },
        );
        Ok(Applied::Done)
    }

    pub(crate) fn create_organisation(
        &mut self,
        c: pb::CreateOrganisation,
        at: i64,
    ) -> ApplyResult {
        let spec = c.organisation.as_ref().ok_or(Rejected::Malformed)?;
        let org = if c.partner_id.is_empty() {
            let owner = UserId::parse(&c.owner_user_id).map_err(invalid)?;
            if !self.users.contains_key(&owner) {
                return Err(Rejected::NotFound(format!("user {owner}")));
            }
            self.new_organisation(spec, Some(&owner), c.provider, at)?
        } else {
            // A partner's customer: its owner is invited by mail; the partner pays.
            if !self.partners.contains_key(&c.partner_id) {
                return Err(Rejected::NotFound(format!("partner {}", c.partner_id)));
            }
            let mut org = self.new_organisation(spec, None, false, at)?;
            org.trial = false;
            org.partner = Some(c.partner_id.clone());
            org
        };
        let project = ProjectId::parse(&c.project_id).map_err(invalid)?;
        if self.projects.contains_key(&project) {
            return Err(Rejected::Exists(format!("project {project}")));
        }
        let org_id = org.id.clone();
        self.organisations.insert(org_id.clone(), org);
        self.insert_project(Project::new(
            project,
            org_id,
            DEFAULT_PROJECT.to_owned(),
            at,
        ));
        Ok(Applied::Done)
    }

    pub(crate) fn set_rate_limit(&mut self, c: pb::SetRateLimit) -> ApplyResult {
        let id = OrgId::parse(&c.org_id).map_err(invalid)?;
        let org = self
            .organisations
            .get_mut(&id)
            .ok_or_else(|| Rejected::NotFound(format!("organisation {id}")))?;
        org.api_per_hour = (c.per_hour > 0).then_some(c.per_hour);
        Ok(Applied::Done)
    }

    /// The API requests an hour `principal` may make: its organisation's limit when operators
    /// set one (a user in several: the highest), else `default`; `None` for the provider's
    /// staff and the scheduler itself (never limited).
    pub fn api_per_hour_of(
        &self,
        principal: &crate::tenancy::authz::Principal,
        default: u32,
    ) -> Option<u32> {
        use crate::tenancy::authz::Principal;
        match principal {
            Principal::ApiKey(k) => {
                let key = self.api_keys.get(k)?;
                if key.role == crate::tenancy::types::Role::Operator {
                    return None;
                }
                Some(
                    self.projects
                        .get(&key.project)
                        .and_then(|p| self.organisations.get(&p.org))
                        .and_then(|o| o.api_per_hour)
                        .unwrap_or(default),
                )
            }
            Principal::User { id, .. } => {
                if self.provider_role(id).is_some() {
                    return None;
                }
                Some(
                    self.organisations
                        .values()
                        .filter(|o| o.members.contains_key(id))
                        .filter_map(|o| o.api_per_hour)
                        .max()
                        .unwrap_or(default),
                )
            }
            Principal::System => None,
            Principal::Node(_) | Principal::Anonymous => Some(default),
        }
    }

    pub(crate) fn update_organisation(&mut self, c: pb::UpdateOrganisation) -> ApplyResult {
        let id = OrgId::parse(&c.org_id).map_err(invalid)?;
        let org = self
            .organisations
            .get(&id)
            .ok_or_else(|| Rejected::NotFound(format!("organisation {id}")))?;
        let details = validate::org_details(
            c.name.as_deref().unwrap_or(&org.name),
            org.kind,
            c.billing_country.as_deref().unwrap_or(&org.billing_country),
            c.vat_id
                .as_deref()
                .unwrap_or(org.vat_id.as_deref().unwrap_or_default()),
        )
        .map_err(invalid)?;
        let address = c
            .billing_address
            .as_deref()
            .map(validate::address)
            .transpose()
            .map_err(invalid)?;
        let org = self.organisations.get_mut(&id).expect("checked above");
        if let Some(a) = address {
            org.billing_address = a;
        }
        org.name = details.name;
        org.billing_country = details.country;
        org.vat_id = details.vat_id;
        if let Some(m) = c.mfa_required {
            org.mfa_required = m;
        }
        Ok(Applied::Done)
    }

    pub(crate) fn set_member(&mut self, c: pb::SetMember) -> ApplyResult {
        let org_id = OrgId::parse(&c.org_id).map_err(invalid)?;
        let user = UserId::parse(&c.user_id).map_err(invalid)?;
        if !self.users.contains_key(&user) {
            return Err(Rejected::NotFound(format!("user {user}")));
        }
        let role = if c.role.is_empty() {
            None
        } else {
            Some(
                Role::parse(&c.role)
                    .ok_or_else(|| Rejected::Invalid(format!("unknown role `{}`", c.role)))?,
            )
        };
        let org = self
            .organisations
            .get(&org_id)
            .ok_or_else(|| Rejected::NotFound(format!("organisation {org_id}")))?;
        if c.project_id.is_empty() {
            let provider = org.provider;
            if let Some(r) = role
                && !(r.is_org_role() || (provider && r.is_provider_role()))
            {
                return Err(Rejected::Invalid(format!(
                    "`{}` is not an organisation role: owner, admin, billing, member or viewer{}",
                    r.as_str(),
                    if provider {
                        " (or operator, support, finance)"
                    } else {
                        ""
                    }
                )));
            }
            let owners = org.members.values().filter(|r| **r == Role::Owner).count();
            let was_owner = org.members.get(&user) == Some(&Role::Owner);
            if was_owner && owners == 1 && role != Some(Role::Owner) {
                return Err(Rejected::Conflict(format!(
                    "{user} is the last owner of organisation {org_id}; make another member owner first"
                )));
            }
            let org = self.organisations.get_mut(&org_id).expect("checked above");
            match role {
                Some(r) => org.members.insert(user, r),
                None => org.members.remove(&user),
            };
        } else {
            let project_id = ProjectId::parse(&c.project_id).map_err(invalid)?;
            let project = self
                .projects
                .get_mut(&project_id)
                .filter(|p| p.org == org_id)
                .ok_or_else(|| Rejected::NotFound(format!("project {project_id}")))?;
            if let Some(r) = role
                && !r.is_project_role()
            {
                return Err(Rejected::Invalid(format!(
                    "`{}` is not a project role: project-admin, project-member or project-viewer",
                    r.as_str()
                )));
            }
            match role {
                Some(r) => project.members.insert(user, r),
                None => project.members.remove(&user),
            };
        }
        Ok(Applied::Done)
    }

    pub(crate) fn verify_email(&mut self, c: pb::VerifyEmail, at: i64) -> ApplyResult {
        let id = UserId::parse(&c.user_id).map_err(invalid)?;
        let user = self
            .users
            .get_mut(&id)
            .ok_or_else(|| Rejected::NotFound(format!("user {id}")))?;
        match &user.verification {
            Some((hash, expires)) if *hash == c.token_sha256 && at < *expires => {
                user.email_verified = true;
                user.verification = None;
                self.grant_trial_credit(&id, at);
                Ok(Applied::Done)
            }
            Some((hash, _)) if *hash == c.token_sha256 => Err(Rejected::Invalid(
                "this verification link has expired; ask for a new one".into(),
            )),
            _ => Err(Rejected::Invalid(
                "this verification link is not valid (already used, or replaced by a newer one)"
                    .into(),
            )),
        }
    }

    pub(crate) fn start_login_session(&mut self, c: pb::StartLoginSession, at: i64) -> ApplyResult {
        let user = UserId::parse(&c.user_id).map_err(invalid)?;
        if self.login_sessions.contains_key(&c.session_id) {
            return Err(Rejected::Exists(format!("login session {}", c.session_id)));
        }
        self.use_second_factor(&user, c.totp_step, &c.recovery_code_sha256)?;
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

    /// Starts a login session; the user's sessions that ended by time go then, so the map
    /// does not grow.
    pub(crate) fn insert_login_session(&mut self, id: String, session: LoginSession) {
        let (user, at) = (session.user.clone(), session.created_at_ms);
        self.remove_login_sessions(|s| s.user == user && s.expires_at_ms <= at);
        self.login_sessions.insert(id, session);
    }

    pub(crate) fn end_login_sessions(&mut self, c: pb::EndLoginSessions) -> ApplyResult {
        let user = UserId::parse(&c.user_id).map_err(invalid)?;
        if c.session_id.is_empty() {
            self.remove_login_sessions(|s| s.user == user);
        } else if self
            .login_sessions
            .get(&c.session_id)
            .is_some_and(|s| s.user == user)
        {
            self.login_sessions.remove(&c.session_id);
        }
        Ok(Applied::Done)
    }

    pub(crate) fn set_password(&mut self, c: pb::SetPassword) -> ApplyResult {
        let id = UserId::parse(&c.user_id).map_err(invalid)?;
        if !c.password_hash.starts_with("$argon2id$") {
            return Err(Rejected::Invalid(
                "passwords are stored as argon2id hashes".into(),
            ));
        }
        let user = self
            .users
            .get_mut(&id)
            .ok_or_else(|| Rejected::NotFound(format!("user {id}")))?;
        user.password_hash = c.password_hash;
        self.remove_login_sessions(|s| s.user == id);
        Ok(Applied::Done)
    }

    pub(crate) fn start_password_reset(&mut self, c: pb::StartPasswordReset) -> ApplyResult {
        let id = UserId::parse(&c.user_id).map_err(invalid)?;
        let user = self
            .users
            .get_mut(&id)
            .ok_or_else(|| Rejected::NotFound(format!("user {id}")))?;
        user.reset = Some((c.token_sha256, c.expires_at_unix_ms));
        Ok(Applied::Done)
    }

    pub(crate) fn reset_password(&mut self, c: pb::ResetPassword, at: i64) -> ApplyResult {
        let id = UserId::parse(&c.user_id).map_err(invalid)?;
        if !c.password_hash.starts_with("$argon2id$") {
            return Err(Rejected::Invalid(
                "passwords are stored as argon2id hashes".into(),
            ));
        }
        let bad = || {
            Rejected::Invalid(
                "this reset link is not valid (mistyped, already used, replaced by a newer one, or expired): ask for a new one".to_owned(),
            )
        };
        let user = self.users.get_mut(&id).ok_or_else(bad)?;
        match &user.reset {
            Some((hash, expires)) if *hash == c.token_sha256 && at < *expires => {}
            _ => return Err(bad()),
        }
        user.reset = None;
        user.password_hash = c.password_hash;
        user.email_verified = true;
        user.verification = None;
        self.remove_login_sessions(|s| s.user == id);
        Ok(Applied::Done)
    }

    fn remove_login_sessions(&mut self, matching: impl Fn(&LoginSession) -> bool) {
        let ended: Vec<String> = self
            .login_sessions
            .iter()
            .filter(|(_, s)| matching(s))
            .map(|(id, _)| id.clone())
            .collect();
        for id in ended {
            self.login_sessions.remove(&id);
        }
    }

    /// The login session `session_id`, if `secret_sha256` matches and it has not ended.
    pub fn authenticate_session(
        &self,
        session_id: &str,
        secret_sha256: &[u8],
        now_ms: i64,
    ) -> Option<&LoginSession> {
        self.login_sessions
            .get(session_id)
            .filter(|s| s.secret_sha256 == secret_sha256 && now_ms < s.expires_at_ms)
    }

    /// The projects a user can see, with the organisation each belongs to.
    pub fn projects_of_user(&self, user: &UserId) -> Vec<&Project> {
        self.projects
            .values()
            .filter(|p| {
                p.members.contains_key(user)
                    || self
                        .organisations
                        .get(&p.org)
                        .is_some_and(|o| o.members.contains_key(user))
            })
            .collect()
    }
}

/// `map` less the entries whose value `gone` picks.
trait WithoutMatching<V> {
    fn without_matching(&self, gone: impl Fn(&V) -> bool) -> Self;
}

impl<K: Ord + Clone, V: Clone> WithoutMatching<V> for imbl::OrdMap<K, V> {
    fn without_matching(&self, gone: impl Fn(&V) -> bool) -> Self {
        self.iter()
            .filter(|(_, v)| !gone(v))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

//! Who may do what: roles, actions, and the one [`ClusterState::authorize`] that decides.
//! Handlers call it before proposing; `apply` calls it again with the principal the command
//! carries (DESIGN.md invariant 13), so a stale check on a follower cannot let a change in.
//!
//! An object of an organisation the principal has nothing to do with is *hidden* (the API
//! answers 404, as if it did not exist — invariant 8); one the principal can see but its
//! role does not allow this action on is *forbidden* (403).

use vmcloud_proto::{NodeId, OrgId, ProjectId, UserId};

use crate::state::ClusterState;
#[cfg(test)]
use crate::tenancy::types::ALL_ROLES;
use crate::tenancy::types::{Organisation, Project, Role};

/// What a principal wants to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// See a project and its workloads, keys (never their secrets) and members.
    ReadProject,
    /// Create and delete workloads: instances, reservations, jobs, game sessions.
    Deploy,
    /// Create and revoke the project's API keys.
    ManageKeys,
    /// Rename or delete the project, give users project roles.
    ManageProject,
    /// See the organisation, its members and its projects.
    ReadOrg,
    /// Make a project in the organisation.
    CreateProject,
    /// Invite members, change their roles, remove them.
    ManageMembers,
    /// Change the organisation's settings (name, country, VAT id, MFA, SSO).
    ManageOrg,
    /// See invoices and usage.
    ReadBilling,
    /// Payment methods, billing details.
    ManageBilling,
    /// See hosts, the cluster, every project's totals.
    ReadFleet,
    /// Change hosts, join tokens, cluster membership, projects' fair share and tier.
    OperateFleet,
    /// See a partner: its brand, customers, POPs, licences and statements.
    ReadPartner,
    /// Change a partner's brand and domains, make its customers, grant them entitlements.
    ManagePartner,
}

pub const ALL_ACTIONS: [Action; 14] = [
    Action::ReadProject,
    Action::Deploy,
    Action::ManageKeys,
    Action::ManageProject,
    Action::ReadOrg,
    Action::CreateProject,
    Action::ManageMembers,
    Action::ManageOrg,
    Action::ReadBilling,
    Action::ManageBilling,
    Action::ReadFleet,
    Action::OperateFleet,
    Action::ReadPartner,
    Action::ManagePartner,
];

/// Whether `role`, held where it applies, allows `action`. The role × action matrix: a
/// table-driven test spells it out.
pub fn role_allows(role: Role, action: Action) -> bool {
    use Action::*;
    // Partner actions come from the role in a partner's staff organisation
    // ([`partner_staff_allows`]), or from a provider role.
    if matches!(action, ReadPartner | ManagePartner) && !role.is_provider_role() {
        return false;
    }
    match role {
        Role::Owner => !matches!(action, ReadFleet | OperateFleet),
        Role::Admin => !matches!(action, ReadFleet | OperateFleet | ManageBilling),
        Role::Billing => matches!(action, ReadOrg | ReadBilling | ManageBilling),
        Role::Member => matches!(action, ReadOrg | CreateProject | ReadProject | Deploy),
        Role::Viewer => matches!(action, ReadOrg | ReadProject),
        Role::ProjectAdmin => matches!(action, ReadProject | Deploy | ManageKeys | ManageProject),
        Role::ProjectMember => matches!(action, ReadProject | Deploy),
        Role::ProjectViewer => matches!(action, ReadProject),
        // Operators run the fleet and see every tenant, but do not deploy in their projects
        // or manage their members; they run billing (with finance).
        Role::Operator => matches!(
            action,
            ReadFleet
                | OperateFleet
                | ReadOrg
                | ReadProject
                | ReadBilling
                | ManageBilling
                | ReadPartner
                | ManagePartner
        ),
        Role::Support => matches!(action, ReadFleet | ReadOrg | ReadProject | ReadPartner),
        Role::Finance => matches!(action, ReadOrg | ReadBilling | ManageBilling),
    }
}

/// Whether a role in a partner's staff organisation allows `action` on the partner (owners
/// and admins are partner admins; the other roles partner support, read-only). Keys of the
/// staff organisation's projects: project admins act as partner admins.
pub fn partner_staff_allows(role: Role, action: Action) -> bool {
    let admin = matches!(role, Role::Owner | Role::Admin | Role::ProjectAdmin);
    match action {
        Action::ReadPartner => true,
        Action::ManagePartner => admin,
        _ => false,
    }
}

/// Whether a role in a partner's staff organisation allows `action` on one of the partner's
/// customers (an organisation or its projects): admins administer them (members, settings,
/// projects) and read their usage; support reads.
pub fn partner_customer_allows(role: Role, action: Action) -> bool {
    use Action::*;
    let admin = matches!(role, Role::Owner | Role::Admin | Role::ProjectAdmin);
    match action {
        ReadOrg | ReadProject | ReadBilling => true,
        // A partner's admins run their customers' accounts, billing (plans within the
        // partner's offer, payment methods) included.
        ManageOrg | ManageMembers | CreateProject | ManageProject | ManageBilling => admin,
        _ => false,
    }
}

impl ClusterState {
    /// Whether the principal is one of the partner's staff (a member of its staff
    /// organisation, or a key of one of its projects) — not VMCloud's.
    pub fn is_partner_staff(&self, principal: &Principal, partner: &str) -> bool {
        match principal {
            Principal::User { id, .. } => self.partner_staff_role(partner, id).is_some(),
            Principal::ApiKey(k) => self
                .api_keys
                .get(k)
                .and_then(|key| self.partner_of_key(key))
                .is_some_and(|(p, _)| p == partner),
            _ => false,
        }
    }

    /// A user's role in the staff organisation of the partner `partner`.
    fn partner_staff_role(&self, partner: &str, user: &UserId) -> Option<Role> {
        let p = self.partners.get(partner)?;
        self.organisations
            .get(&p.staff_org)?
            .members
            .get(user)
            .copied()
    }

    /// The partner a key's project belongs to (a project of its staff organisation), with
    /// the key's role.
    fn partner_of_key(&self, key: &crate::tenancy::types::ApiKey) -> Option<(&str, Role)> {
        let org = &self.projects.get(&key.project)?.org;
        self.partner_of_staff(org)
            .map(|p| (p.id.as_str(), key.role))
    }

    /// Whether a key of a partner's staff organisation may do `action` on `org`, one of the
    /// partner's customers.
    fn key_partner_allows(
        &self,
        key: &crate::tenancy::types::ApiKey,
        org: &Organisation,
        action: Action,
    ) -> bool {
        self.partner_of_key(key).is_some_and(|(partner, role)| {
            org.partner.as_deref() == Some(partner) && partner_customer_allows(role, action)
        })
    }

    /// Whether a user of a partner's staff may do `action` on `org`, one of the partner's
    /// customers.
    fn user_partner_allows(&self, user: &UserId, org: &Organisation, action: Action) -> bool {
        org.partner
            .as_deref()
            .and_then(|p| self.partner_staff_role(p, user))
            .is_some_and(|r| partner_customer_allows(r, action))
    }

    /// Whether VMCloud's staff may reach the organisation: always for its own customers; for
    /// a partner's, only while support access is open.
    fn provider_may_reach(&self, org: &Organisation) -> bool {
        org.partner.is_none() || org.support_access_until_ms.is_some_and(|t| t > self.now_ms)
    }

    /// Whether `project` is another project of the provider organisation an operator `key`
    /// belongs to.
    fn provider_sibling(&self, key: &crate::tenancy::types::ApiKey, project: &ProjectId) -> bool {
        key.role == Role::Operator
            && self
                .projects
                .get(&key.project)
                .zip(self.projects.get(project))
                .is_some_and(|(own, other)| {
                    own.org == other.org
                        && self.organisations.get(&own.org).is_some_and(|o| o.provider)
                })
    }
}

/// Who is asking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// The scheduler itself (controllers, reports from agents, dev bootstrap) and log entries
    /// from before principals were recorded.
    System,
    Node(NodeId),
    /// A logged-in user; `mfa` when their login session checked a second factor.
    User {
        id: UserId,
        mfa: bool,
    },
    /// An API key, by its public id.
    ApiKey(String),
    /// Nobody (sign-up, log-in, email verification).
    Anonymous,
}

impl std::fmt::Display for Principal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Principal::System => f.write_str("the scheduler"),
            Principal::Node(n) => write!(f, "node {n}"),
            Principal::User { id, .. } => write!(f, "user {id}"),
            Principal::ApiKey(k) => write!(f, "API key {k}"),
            Principal::Anonymous => f.write_str("anonymous"),
        }
    }
}

/// What the action is on.
#[derive(Debug, Clone, Copy)]
pub enum Resource<'a> {
    Fleet,
    Org(&'a OrgId),
    Project(&'a ProjectId),
    /// A white-label partner, by id.
    Partner(&'a str),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    /// The principal has nothing to do with it: answer as if it did not exist.
    #[error("{0} does not exist")]
    Hidden(String),
    /// Visible, but the principal's role does not allow this.
    #[error("{0}")]
    Forbidden(String),
    /// The principal is not (or no longer) valid: a revoked or expired key, an unknown user.
    #[error("{0}")]
    Unauthenticated(String),
}

impl ClusterState {
    /// Decides whether `principal` may do `action` on `resource`, from this state.
    pub fn authorize(
        &self,
        principal: &Principal,
        action: Action,
        resource: Resource<'_>,
    ) -> Result<(), Denied> {
        match principal {
            Principal::System => Ok(()),
            Principal::Node(node) => Err(Denied::Forbidden(format!(
                "node {node} may only report about itself"
            ))),
            Principal::Anonymous => Err(Denied::Unauthenticated(
                "log in or send an API key".to_owned(),
            )),
            Principal::ApiKey(key_id) => self.authorize_key(key_id, action, resource),
            Principal::User { id, mfa } => self.authorize_user(id, *mfa, action, resource),
        }
    }

    fn authorize_key(
        &self,
        key_id: &str,
        action: Action,
        resource: Resource<'_>,
    ) -> Result<(), Denied> {
        let key = self
            .api_keys
            .get(key_id)
            .filter(|k| k.usable(self.now_ms))
            .ok_or_else(|| {
                Denied::Unauthenticated(format!("API key {key_id} is revoked, expired or unknown"))
            })?;
        let allowed = role_allows(key.role, action);
        match resource {
            Resource::Fleet if allowed => Ok(()),
            Resource::Fleet => Err(forbidden(key.role, action, "the fleet")),
            Resource::Project(p) if *p == key.project || self.provider_sibling(key, p) => {
                // An operator key administers its own (provider) project — the dev fleet's
                // key deploys there, as before roles — and the provider's other projects
                // (internal tenants, benchmarks' gamers).
                let own_admin =
                    key.role == Role::Operator && role_allows(Role::ProjectAdmin, action);
                if allowed || own_admin {
                    Ok(())
                } else {
                    Err(forbidden(key.role, action, &format!("project {p}")))
                }
            }
            // An operator key sees every tenant (read-only), as operators do, but a partner's
            // customers only with support access; a partner's key administers its customers.
            Resource::Project(p) => {
                let org = self
                    .projects
                    .get(p)
                    .and_then(|project| self.organisations.get(&project.org));
                match org {
                    Some(org) if self.key_partner_allows(key, org, action) => Ok(()),
                    Some(org)
                        if key.role == Role::Operator
                            && allowed
                            && self.provider_may_reach(org) =>
                    {
                        Ok(())
                    }
                    _ => Err(Denied::Hidden(format!("project {p}"))),
                }
            }
            Resource::Partner(p) => match self.partners.get(p) {
                Some(_) if self.partner_of_key(key).is_some_and(|(kp, _)| kp == p) => {
                    if partner_staff_allows(key.role, action) {
                        Ok(())
                    } else {
                        Err(forbidden(key.role, action, &format!("partner {p}")))
                    }
                }
                Some(_) if key.role == Role::Operator && allowed => Ok(()),
                _ => Err(Denied::Hidden(format!("partner {p}"))),
            },
            Resource::Org(o) => {
                let own = self.projects.get(&key.project).is_some_and(|p| p.org == *o);
                match self.organisations.get(o) {
                    Some(org) if !own && self.key_partner_allows(key, org, action) => Ok(()),
                    Some(_) if own && action == Action::ReadOrg => Ok(()),
                    // The provider's own organisation: its operators make projects there.
                    Some(org)
                        if own
                            && org.provider
                            && key.role == Role::Operator
                            && action == Action::CreateProject =>
                    {
                        Ok(())
                    }
                    Some(org)
                        if key.role == Role::Operator
                            && allowed
                            && self.provider_may_reach(org) =>
                    {
                        Ok(())
                    }
                    Some(_) if own => {
                        Err(forbidden(key.role, action, &format!("organisation {o}")))
                    }
                    _ => Err(Denied::Hidden(format!("organisation {o}"))),
                }
            }
        }
    }

    fn authorize_user(
        &self,
        user: &UserId,
        mfa: bool,
        action: Action,
        resource: Resource<'_>,
    ) -> Result<(), Denied> {
        if !self.users.contains_key(user) {
            return Err(Denied::Unauthenticated(format!(
                "user {user} does not exist"
            )));
        }
        let provider_role = self.provider_role(user);
        let staff_allows = provider_role.is_some_and(|r| role_allows(r, action))
            && self
                .org_of(resource)
                .is_none_or(|o| self.provider_may_reach(o));
        // Provider roles reach every tenant: only with a second factor.
        if staff_allows && !mfa && !self.member_allows(user, action, resource) {
            return Err(Denied::Forbidden(MFA_FOR_STAFF.to_owned()));
        }
        if !mfa
            && let Some(org) = self.org_of(resource).filter(|o| o.mfa_required)
            && (org.members.contains_key(user)
                || self
                    .projects
                    .values()
                    .any(|p| p.org == org.id && p.members.contains_key(user)))
        {
            return Err(Denied::Forbidden(format!(
                "organisation {} requires two-step verification: turn on TOTP in your account settings, then log in again with a code",
                org.id
            )));
        }
        match resource {
            Resource::Fleet => match provider_role {
                _ if staff_allows => Ok(()),
                Some(r) => Err(forbidden(r, action, "the fleet")),
                None => Err(Denied::Forbidden(
                    "only VMCloud's operators may do this to the fleet".to_owned(),
                )),
            },
            Resource::Org(o) => {
                let Some(org) = self.organisations.get(o) else {
                    return Err(Denied::Hidden(format!("organisation {o}")));
                };
                let partner_role = org
                    .partner
                    .as_deref()
                    .and_then(|p| self.partner_staff_role(p, user));
                match org.members.get(user) {
                    Some(r) if role_allows(*r, action) => Ok(()),
                    _ if self.user_partner_allows(user, org, action) => Ok(()),
                    _ if staff_allows => Ok(()),
                    Some(r) => Err(forbidden(*r, action, &format!("organisation {o}"))),
                    None => match partner_role {
                        Some(r) => Err(forbidden(r, action, &format!("organisation {o}"))),
                        None => Err(Denied::Hidden(format!("organisation {o}"))),
                    },
                }
            }
            Resource::Partner(p) => {
                if !self.partners.contains_key(p) {
                    return Err(Denied::Hidden(format!("partner {p}")));
                }
                match self.partner_staff_role(p, user) {
                    Some(r) if partner_staff_allows(r, action) => Ok(()),
                    _ if staff_allows => Ok(()),
                    Some(r) => Err(forbidden(r, action, &format!("partner {p}"))),
                    None => Err(Denied::Hidden(format!("partner {p}"))),
                }
            }
            Resource::Project(p) => {
                let hidden = || Denied::Hidden(format!("project {p}"));
                let project = self.projects.get(p).ok_or_else(hidden)?;
                let org = self.organisations.get(&project.org).ok_or_else(hidden)?;
                let roles = user_project_roles(org, project, user);
                if roles.iter().any(|r| role_allows(*r, action))
                    || self.user_partner_allows(user, org, action)
                    || staff_allows
                {
                    return Ok(());
                }
                let partner_role = org
                    .partner
                    .as_deref()
                    .and_then(|p| self.partner_staff_role(p, user));
                match roles.first().copied().or(partner_role) {
                    Some(r) => Err(forbidden(r, action, &format!("project {p}"))),
                    None => Err(hidden()),
                }
            }
        }
    }

    /// Whether the user's own membership (not a provider role) allows `action`.
    fn member_allows(&self, user: &UserId, action: Action, resource: Resource<'_>) -> bool {
        match resource {
            Resource::Fleet => false,
            Resource::Partner(p) => self
                .partner_staff_role(p, user)
                .is_some_and(|r| partner_staff_allows(r, action)),
            Resource::Org(o) => self.organisations.get(o).is_some_and(|org| {
                org.members
                    .get(user)
                    .is_some_and(|r| role_allows(*r, action))
                    || self.user_partner_allows(user, org, action)
            }),
            Resource::Project(p) => self.projects.get(p).is_some_and(|project| {
                self.organisations.get(&project.org).is_some_and(|org| {
                    user_project_roles(org, project, user)
                        .iter()
                        .any(|r| role_allows(*r, action))
                        || self.user_partner_allows(user, org, action)
                })
            }),
        }
    }

    /// The organisation a resource belongs to.
    fn org_of(&self, resource: Resource<'_>) -> Option<&Organisation> {
        match resource {
            Resource::Fleet | Resource::Partner(_) => None,
            Resource::Org(o) => self.organisations.get(o),
            Resource::Project(p) => self
                .projects
                .get(p)
                .and_then(|p| self.organisations.get(&p.org)),
        }
    }

    /// The user's role in the provider's organisation, if it is a provider role (owners and
    /// admins of the provider count as operators).
    pub fn provider_role(&self, user: &UserId) -> Option<Role> {
        self.organisations
            .values()
            .filter(|o| o.provider)
            .find_map(|o| o.members.get(user))
            .and_then(|r| match r {
                Role::Owner | Role::Admin => Some(Role::Operator),
                r if r.is_provider_role() => Some(*r),
                _ => None,
            })
    }
}

/// The roles a user holds on `project`: its project role, and what its organisation role
/// gives on every project of the organisation.
fn user_project_roles(org: &Organisation, project: &Project, user: &UserId) -> Vec<Role> {
    let mut roles = Vec::with_capacity(2);
    if let Some(r) = project.members.get(user) {
        roles.push(*r);
    }
    if let Some(r) = org.members.get(user) {
        roles.push(*r);
    }
    roles
}

pub const MFA_FOR_STAFF: &str = "VMCloud's operators, support and finance staff must log in with two-step verification: turn on TOTP in your account settings, then log in again with a code";

fn forbidden(role: Role, action: Action, what: &str) -> Denied {
    Denied::Forbidden(format!(
        "the {} role does not allow {} on {what}; ask an owner or admin of its organisation for a role that does",
        role.as_str(),
        action_words(action)
    ))
}

fn action_words(action: Action) -> &'static str {
    match action {
        Action::ReadProject => "reading",
        Action::Deploy => "creating or deleting workloads",
        Action::ManageKeys => "managing API keys",
        Action::ManageProject => "changing the project",
        Action::ReadOrg => "reading",
        Action::CreateProject => "creating projects",
        Action::ManageMembers => "managing members",
        Action::ManageOrg => "changing the organisation's settings",
        Action::ReadBilling => "reading billing",
        Action::ManageBilling => "managing billing",
        Action::ReadFleet => "reading the fleet",
        Action::OperateFleet => "operating the fleet",
        Action::ReadPartner => "reading the partner",
        Action::ManagePartner => "managing the partner",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The role × action matrix, spelled out: `x` allowed, `.` not. Columns in the order of
    /// [`ALL_ACTIONS`]: ReadProject, Deploy, ManageKeys, ManageProject, ReadOrg,
    /// CreateProject, ManageMembers, ManageOrg, ReadBilling, ManageBilling, ReadFleet,
    /// OperateFleet, ReadPartner, ManagePartner.
    const MATRIX: [(Role, &str); 11] = [
        (Role::Owner, "xxxxxxxxxx...."),
        (Role::Admin, "xxxxxxxxx....."),
        (Role::Billing, "....x...xx...."),
        (Role::Member, "xx..xx........"),
        (Role::Viewer, "x...x........."),
        (Role::ProjectAdmin, "xxxx.........."),
        (Role::ProjectMember, "xx............"),
        (Role::ProjectViewer, "x............."),
        (Role::Operator, "x...x...xxxxxx"),
        (Role::Support, "x...x.....x.x."),
        (Role::Finance, "....x...xx...."),
    ];

    #[test]
    fn the_role_action_matrix() {
        for (role, row) in MATRIX {
            for (action, cell) in ALL_ACTIONS.iter().zip(row.chars()) {
                assert_eq!(
                    role_allows(role, *action),
                    cell == 'x',
                    "{} × {action:?}",
                    role.as_str()
                );
            }
        }
        assert_eq!(MATRIX.len(), ALL_ROLES.len());
    }

    #[test]
    fn role_names_round_trip() {
        for role in ALL_ROLES {
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
        assert_eq!(Role::parse("root"), None);
    }

    /// An operator key makes projects in its own (provider) organisation and administers
    /// them; a customer's organisation and projects stay out of its reach.
    #[test]
    fn an_operator_key_runs_the_providers_own_projects_only() {
        use vmcloud_proto::pb::{self, command::Body};
        let mut state = ClusterState::default();
        let mut apply = |n: u64, body: Body| {
            state
                .apply(
                    n,
                    pb::Command {
                        actor: None,
                        request: None,
                        at_unix_ms: 1_000,
                        body: Some(body),
                    },
                )
                .expect("applied");
        };
        let project = |id: &str, operator: bool, org: &str| {
            Body::CreateProject(pb::CreateProject {
                project_id: id.into(),
                name: id.into(),
                operator,
                org_id: org.into(),
            })
        };
        apply(1, project("acct-dev", true, ""));
        apply(2, project("prj-internal", false, "org-acct-dev"));
        apply(3, project("prj-customer", false, ""));
        apply(
            4,
            Body::AddApiKey(pb::AddApiKey {
                project_id: "acct-dev".into(),
                key_id: "key-op".into(),
                secret_sha256: vec![1; 32],
                name: "op".into(),
                role: "operator".into(),
                expires_at_unix_ms: 0,
            }),
        );
        let key = Principal::ApiKey("key-op".into());
        let org = |o: &str| OrgId::parse(o).unwrap();
        let prj = |p: &str| ProjectId::parse(p).unwrap();
        let ok = |r: Result<(), Denied>| r.is_ok();
        assert!(ok(state.authorize(
            &key,
            Action::CreateProject,
            Resource::Org(&org("org-acct-dev"))
        )));
        assert!(ok(state.authorize(
            &key,
            Action::ManageKeys,
            Resource::Project(&prj("prj-internal"))
        )));
        assert!(ok(state.authorize(
            &key,
            Action::Deploy,
            Resource::Project(&prj("prj-internal"))
        )));
        assert!(!ok(state.authorize(
            &key,
            Action::CreateProject,
            Resource::Org(&org("org-prj-customer"))
        )));
        assert!(!ok(state.authorize(
            &key,
            Action::Deploy,
            Resource::Project(&prj("prj-customer"))
        )));
        assert!(!ok(state.authorize(
            &key,
            Action::ManageKeys,
            Resource::Project(&prj("prj-customer"))
        )));
    }
}

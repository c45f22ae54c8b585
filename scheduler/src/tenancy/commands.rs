//! `apply`'s own authorization: each command says what it does to which part of the tree,
//! and the principal it carries must be allowed to, checked against the state the command
//! applies to (DESIGN.md invariant 13). The handler checked before proposing; this check
//! catches what changed in between (a key revoked, a member removed) and any path that
//! forgot.

use vmcloud_proto::pb::{self, actor::Who, command::Body};
use vmcloud_proto::{NodeId, OrgId, ProjectId, UserId};

use crate::state::{ClusterState, Rejected};
use crate::tenancy::authz::{Action, Denied, Principal, Resource};

impl From<Denied> for Rejected {
    fn from(d: Denied) -> Rejected {
        match d {
            Denied::Hidden(what) => Rejected::NotFound(what),
            Denied::Forbidden(msg) => Rejected::Forbidden(msg),
            Denied::Unauthenticated(msg) => Rejected::Unauthenticated(msg),
        }
    }
}

/// The principal a command carries. Entries from before principals were recorded carry
/// none: they replay as the system, which wrote them.
pub fn principal_of(actor: Option<&pb::Actor>) -> Result<Principal, Rejected> {
    let Some(actor) = actor else {
        return Ok(Principal::System);
    };
    let invalid = |e: vmcloud_proto::ids::IdError| Rejected::Invalid(e.to_string());
    Ok(match &actor.who {
        None => Principal::Anonymous,
        Some(Who::System(_)) => Principal::System,
        Some(Who::UserId(u)) => Principal::User {
            id: UserId::parse(u).map_err(invalid)?,
            mfa: actor.mfa,
        },
        Some(Who::ApiKeyId(k)) => Principal::ApiKey(k.clone()),
        Some(Who::NodeId(n)) => Principal::Node(NodeId::parse(n).map_err(invalid)?),
    })
}

/// The actor a principal proposes as.
pub fn actor_of(principal: &Principal, source: &str) -> pb::Actor {
    let who = match principal {
        Principal::System => Some(Who::System(true)),
        Principal::Node(n) => Some(Who::NodeId(n.to_string())),
        Principal::User { id, .. } => Some(Who::UserId(id.to_string())),
        Principal::ApiKey(k) => Some(Who::ApiKeyId(k.clone())),
        Principal::Anonymous => None,
    };
    pb::Actor {
        who,
        source: source.to_owned(),
        mfa: matches!(principal, Principal::User { mfa: true, .. }),
    }
}

pub(crate) enum Target {
    Fleet,
    Org(OrgId),
    Project(ProjectId),
    /// Only the user themself may (their sessions, their password).
    Myself(UserId),
    /// Anyone, the command itself carries the proof (a token's hash, a checked password).
    Anyone,
    /// The scheduler's own bookkeeping (placements, agent reports): the system only.
    SystemOnly,
    /// A white-label partner, by id.
    Partner(String),
}

impl ClusterState {
    /// What a command does (the action its principal needs) and to which part of the tree.
    pub(crate) fn command_target(&self, body: &Body) -> Result<(Action, Target), Rejected> {
        let project = |id: &str| {
            ProjectId::parse(id).map_err(|_| Rejected::NotFound(format!("project `{id}`")))
        };
        let org = |id: &str| {
            OrgId::parse(id).map_err(|_| Rejected::NotFound(format!("organisation `{id}`")))
        };
        Ok(match body {
            Body::CreateInstance(c) => (Action::Deploy, Target::Project(project(&c.project_id)?)),
            Body::DeleteInstance(c) => (Action::Deploy, Target::Project(project(&c.project_id)?)),
            Body::CreateReservation(c) => {
                (Action::Deploy, Target::Project(project(&c.project_id)?))
            }
            Body::CreateJob(c) => {
                let first = c.members.first().ok_or(Rejected::Malformed)?;
                if c.members.iter().any(|m| m.project_id != first.project_id) {
                    return Err(Rejected::Invalid(
                        "a job's members belong to one project".to_owned(),
                    ));
                }
                (Action::Deploy, Target::Project(project(&first.project_id)?))
            }
            Body::AddApiKey(c) => (Action::ManageKeys, Target::Project(project(&c.project_id)?)),
            Body::RevokeApiKey(c) => {
                let key = self
                    .api_keys
                    .get(&c.key_id)
                    .ok_or_else(|| Rejected::NotFound(format!("API key {}", c.key_id)))?;
                (Action::ManageKeys, Target::Project(key.project.clone()))
            }
            Body::DeleteProject(c) => (
                Action::ManageProject,
                Target::Project(project(&c.project_id)?),
            ),
            Body::CreateProject(c) if c.org_id.is_empty() => {
                (Action::OperateFleet, Target::SystemOnly)
            }
            Body::CreateProject(c) => (Action::CreateProject, Target::Org(org(&c.org_id)?)),
            Body::UpdateOrganisation(c) => (Action::ManageOrg, Target::Org(org(&c.org_id)?)),
            Body::SetOrganisationSso(c) => (Action::ManageOrg, Target::Org(org(&c.org_id)?)),
            Body::InviteMember(c) => (Action::ManageMembers, Target::Org(org(&c.org_id)?)),
            Body::SetMember(c) if c.project_id.is_empty() => {
                (Action::ManageMembers, Target::Org(org(&c.org_id)?))
            }
            Body::SetMember(c) => (
                Action::ManageProject,
                Target::Project(project(&c.project_id)?),
            ),
            Body::CreateOrganisation(c) if !c.partner_id.is_empty() => (
                Action::ManagePartner,
                Target::Partner(c.partner_id.clone()),
            ),
            Body::CreateOrganisation(c) if !c.provider => {
                let owner = UserId::parse(&c.owner_user_id)
                    .map_err(|e| Rejected::Invalid(e.to_string()))?;
                (Action::ManageOrg, Target::Myself(owner))
            }
            Body::EndLoginSessions(pb::EndLoginSessions { user_id, .. })
            | Body::SetPassword(pb::SetPassword { user_id, .. })
            | Body::EnrolTotp(pb::EnrolTotp { user_id, .. })
            | Body::ConfirmTotp(pb::ConfirmTotp { user_id, .. })
            | Body::DisableTotp(pb::DisableTotp { user_id })
            | Body::AcceptInvitation(pb::AcceptInvitation { user_id, .. }) => (
                Action::ManageOrg,
                Target::Myself(
                    UserId::parse(user_id).map_err(|e| Rejected::Invalid(e.to_string()))?,
                ),
            ),
            Body::SignUp(_)
            | Body::VerifyEmail(_)
            | Body::StartLoginSession(_)
            | Body::StartPasswordReset(_)
            | Body::ResetPassword(_)
            | Body::SsoLogin(_)
            // The token is the proof (the streaming server has no principal of its own).
            | Body::RedeemStreamToken(_)
            | Body::RecordRefusal(_) => (Action::ReadOrg, Target::Anyone),
            Body::IssueStreamToken(c) => (Action::Deploy, Target::Project(project(&c.project_id)?)),
            Body::InviteSharePlay(c) => (Action::Deploy, Target::Project(project(&c.project_id)?)),
            Body::JoinSharePlay(c) => (
                Action::Deploy,
                Target::Project(project(&c.guest_project_id)?),
            ),
            Body::EndSharePlay(c) => (Action::Deploy, Target::Project(project(&c.project_id)?)),
            Body::CreateWebhookEndpoint(pb::CreateWebhookEndpoint { project_id, .. })
            | Body::DeleteWebhookEndpoint(pb::DeleteWebhookEndpoint { project_id, .. })
            | Body::ResendWebhookEvent(pb::ResendWebhookEvent { project_id, .. })
            | Body::CreateNetwork(pb::CreateNetwork { project_id, .. })
            | Body::DeleteNetwork(pb::DeleteNetwork { project_id, .. })
            | Body::CreateFirewall(pb::CreateFirewall { project_id, .. })
            | Body::SetFirewallRules(pb::SetFirewallRules { project_id, .. })
            | Body::DeleteFirewall(pb::DeleteFirewall { project_id, .. })
            | Body::AttachFirewall(pb::AttachFirewall { project_id, .. })
            | Body::CreateFloatingIp(pb::CreateFloatingIp { project_id, .. })
            | Body::AssignFloatingIp(pb::AssignFloatingIp { project_id, .. })
            | Body::DeleteFloatingIp(pb::DeleteFloatingIp { project_id, .. })
            | Body::SetReverseDns(pb::SetReverseDns { project_id, .. }) => {
                (Action::ManageProject, Target::Project(project(project_id)?))
            }
            Body::RequestQuota(c) => (
                Action::ManageProject,
                Target::Project(project(&c.project_id)?),
            ),
            Body::GrantCredit(_) => (Action::ManageBilling, Target::Fleet),
            Body::RunBilling(_)
            | Body::FinalizeInvoices(_)
            | Body::RecordPayment(_)
            | Body::VoidInvoice(_) => (Action::ManageBilling, Target::Fleet),
            Body::AdvanceClock(_) => (Action::OperateFleet, Target::Fleet),
            Body::SetPaymentMethod(c) => (Action::ManageBilling, Target::Org(org(&c.org_id)?)),
            Body::SetSuspended(_) => (Action::ManageBilling, Target::Fleet),
            Body::SetBudgetAlerts(c) => (Action::ManageBilling, Target::Org(org(&c.org_id)?)),
            Body::RecordBudgetAlert(_) => (Action::ManageBilling, Target::SystemOnly),
            Body::CreateCoupon(_) => (Action::ManageBilling, Target::Fleet),
            Body::RedeemCoupon(c) => (Action::ManageBilling, Target::Org(org(&c.org_id)?)),
            Body::TopUpPrepaid(c) => (Action::ManageBilling, Target::Org(org(&c.org_id)?)),
            Body::SetPlan(c) => (Action::ManageBilling, Target::Org(org(&c.org_id)?)),
            Body::BuyHourPack(c) => (Action::ManageBilling, Target::Org(org(&c.org_id)?)),
            Body::CreateProfile(c) => (Action::ManageOrg, Target::Org(org(&c.org_id)?)),
            Body::UpdateProfile(c) => (Action::ManageOrg, Target::Org(org(&c.org_id)?)),
            Body::DeleteProfile(c) => (Action::ManageOrg, Target::Org(org(&c.org_id)?)),
            Body::SetParentalPin(c) => (Action::ManageOrg, Target::Org(org(&c.org_id)?)),
            Body::RecordPinAttempt(c) => (Action::ReadOrg, Target::Org(org(&c.org_id)?)),
            Body::AskParent(c) => (Action::ReadOrg, Target::Org(org(&c.org_id)?)),
            Body::DecideParentRequest(c) => (Action::ManageOrg, Target::Org(org(&c.org_id)?)),
            // A partner grants its own customers' entitlements; VMCloud's operators the rest.
            Body::GrantEntitlement(pb::GrantEntitlement { org_id, .. })
            | Body::RevokeEntitlement(pb::RevokeEntitlement { org_id, .. }) => {
                match OrgId::parse(org_id)
                    .ok()
                    .and_then(|o| self.organisations.get(&o))
                    .and_then(|o| o.partner.clone())
                {
                    Some(p) => (Action::ManagePartner, Target::Partner(p)),
                    None => (Action::OperateFleet, Target::Fleet),
                }
            }
            Body::CreatePartner(_) => (Action::OperateFleet, Target::Fleet),
            // Which regions are a partner's is VMCloud's to say.
            Body::UpdatePartner(c) if c.set_pops => (Action::OperateFleet, Target::Fleet),
            Body::UpdatePartner(c) => (
                Action::ManagePartner,
                Target::Partner(c.partner_id.clone()),
            ),
            Body::GrantSupportAccess(c) => (Action::ManageOrg, Target::Org(org(&c.org_id)?)),
            // Licence terms are VMCloud's to set; sites are the partner's.
            Body::SetPartnerLicence(_) => (Action::OperateFleet, Target::Fleet),
            Body::PutPartnerSite(c) => (
                Action::ManagePartner,
                Target::Partner(c.partner_id.clone()),
            ),
            Body::DeletePartnerSite(c) => (
                Action::ManagePartner,
                Target::Partner(c.partner_id.clone()),
            ),
            Body::RecordPaymentFailure(_) => (Action::ManageBilling, Target::SystemOnly),
            // A partner sets its customers' quotas (within its allowance); operators the rest.
            Body::SetQuota(c) => match ProjectId::parse(&c.project_id)
                .ok()
                .and_then(|p| self.partner_of_project(&p))
            {
                Some(p) => (Action::ManagePartner, Target::Partner(p.to_owned())),
                None => (Action::OperateFleet, Target::Fleet),
            },
            // A partner's admins make join tokens for its own hosts; operators any.
            Body::CreateJoinToken(c) if !c.partner_id.is_empty() => (
                Action::ManagePartner,
                Target::Partner(c.partner_id.clone()),
            ),
            Body::CreateJoinToken(_) => (Action::OperateFleet, Target::Fleet),
            // A partner's admins cordon and drain the hosts of its POPs; operators any host.
            Body::SetNodeState(c) => match NodeId::parse(&c.node_id)
                .ok()
                .and_then(|n| self.nodes.get(&n))
                .and_then(|n| self.partner_of_region(&n.region))
            {
                Some(p) => (Action::ManagePartner, Target::Partner(p.id.clone())),
                None => (Action::OperateFleet, Target::Fleet),
            },
            Body::UpdateProject(_)
            | Body::SetRateLimit(_)
            | Body::DecideQuotaRequest(_)
            | Body::DeclareIncident(_)
            | Body::UpdateIncident(_)
            | Body::SetNodeLabels(_) => (Action::OperateFleet, Target::Fleet),
            Body::CreateOrganisation(_)
            | Body::PlaceInstances(_)
            | Body::RegisterNode(_)
            | Body::ObserveInstances(_)
            | Body::LoseInstances(_)
            | Body::SetGpuHealth(_)
            | Body::ReclaimInstances(_)
            | Body::ExpireReservations(_)
            | Body::UseJoinToken(_)
            | Body::AnnounceReplica(_)
            | Body::FillWarmPool(_)
            | Body::ShrinkWarmPool(_)
            | Body::RecordWebhookDeliveries(_) => (Action::OperateFleet, Target::SystemOnly),
        })
    }

    pub(crate) fn check_command(
        &self,
        actor: Option<&pb::Actor>,
        body: &Body,
    ) -> Result<(), Rejected> {
        let principal = principal_of(actor)?;
        if principal == Principal::System {
            return Ok(());
        }
        let (action, target) = self.command_target(body)?;
        let resource = match &target {
            Target::Anyone => return Ok(()),
            Target::SystemOnly => {
                return Err(Rejected::Forbidden(
                    "only the scheduler itself makes this change".to_owned(),
                ));
            }
            Target::Myself(user) => {
                return match &principal {
                    Principal::User { id, .. } if id == user => Ok(()),
                    _ => Err(Rejected::Forbidden(
                        "only the user themself may do this".to_owned(),
                    )),
                };
            }
            Target::Fleet => Resource::Fleet,
            Target::Org(o) => Resource::Org(o),
            Target::Project(p) => Resource::Project(p),
            Target::Partner(p) => Resource::Partner(p),
        };
        self.authorize(&principal, action, resource)
            .map_err(Rejected::from)
    }
}

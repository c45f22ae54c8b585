//! `apply`'s side of the audit trail: what each command is about (taken before it applies, as
//! a deleted project's organisation is gone after), then the event, chained to the last.

use vmcloud_proto::pb::{self, actor::Who, command::Body};

use crate::audit::types::AuditEvent;
use crate::history::types::HistoryRecord;
use crate::state::{ApplyResult, ClusterState};
use crate::tenancy::commands::Target;

/// What an event says before the outcome is known.
#[derive(Debug)]
pub(crate) struct Pending {
    actor: String,
    source: String,
    request_id: String,
    action: &'static str,
    resource: String,
    org: Option<String>,
    project: Option<String>,
    member_of: Vec<String>,
    detail: String,
}

/// What a command changed, in words, for the commands whose kind and resource do not say it.
pub(crate) fn detail_of(body: &Body) -> String {
    match body {
        Body::SetNodeState(c) => {
            let state = pb::NodeState::try_from(c.state)
                .map(|s| {
                    s.as_str_name()
                        .trim_start_matches("NODE_STATE_")
                        .to_ascii_lowercase()
                })
                .unwrap_or_else(|_| c.state.to_string());
            let mut d = format!("→ {state}");
            if c.by_liveness {
                d.push_str(" (liveness)");
            }
            if !c.reason.is_empty() {
                d.push_str(": ");
                d.push_str(&c.reason);
            }
            if c.deadline_unix_ms > 0 {
                d.push_str(&format!(
                    " (empty by {})",
                    crate::clock::rfc3339(c.deadline_unix_ms)
                ));
            }
            d
        }
        Body::SetGpuHealth(c) if c.unhealthy.is_empty() => "every GPU healthy".to_owned(),
        Body::SetGpuHealth(c) => format!(
            "unhealthy: {}",
            c.unhealthy
                .iter()
                .map(|g| format!("{} ({})", g.pci_address, g.reason))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Body::LoseInstances(c) => format!("{} lost: {}", c.instance_ids.len(), c.reason),
        Body::SetNodeLabels(c) if !c.pools.is_empty() => format!("pools {}", c.pools.join(", ")),
        _ => String::new(),
    }
}

fn actor_name(actor: Option<&pb::Actor>) -> String {
    match actor.and_then(|a| a.who.as_ref()) {
        Some(Who::UserId(u)) => format!("user:{u}"),
        Some(Who::ApiKeyId(k)) => format!("key:{k}"),
        Some(Who::NodeId(n)) => format!("node:{n}"),
        Some(Who::System(_)) => "system".to_owned(),
        // Entries from before principals were recorded replay as the system.
        None if actor.is_none() => "system".to_owned(),
        None => "anonymous".to_owned(),
    }
}

/// `kind/id` of what a command acts on.
fn resource_of(body: &Body) -> String {
    let r = |kind: &str, id: &str| format!("{kind}/{id}");
    match body {
        Body::CreateProject(c) => r("project", &c.project_id),
        Body::UpdateProject(c) => r("project", &c.project_id),
        Body::DeleteProject(c) => r("project", &c.project_id),
        Body::AddApiKey(c) => r("api_key", &c.key_id),
        Body::RevokeApiKey(c) => r("api_key", &c.key_id),
        Body::CreateInstance(c) => r("instance", &c.instance_id),
        Body::DeleteInstance(c) => r("instance", &c.instance_id),
        Body::CreateJob(c) => r(
            "job",
            c.members
                .first()
                .and_then(|m| m.job.as_ref())
                .map_or("", |j| j.job_id.as_str()),
        ),
        Body::CreateReservation(c) => r("reservation", &c.reservation_id),
        Body::PlaceInstances(c) => format!("instances/{}", c.placements.len()),
        Body::ReclaimInstances(c) => format!("instances/{}", c.instance_ids.len()),
        Body::ExpireReservations(c) => format!("reservations/{}", c.reservation_ids.len()),
        Body::RegisterNode(c) => r("node", &c.node_id),
        Body::ObserveInstances(c) => r("node", &c.node_id),
        Body::SetNodeState(c) => r("node", &c.node_id),
        Body::SetNodeLabels(c) => r("node", &c.node_id),
        Body::LoseInstances(c) => r("node", &c.node_id),
        Body::SetGpuHealth(c) => r("node", &c.node_id),
        Body::CreateJoinToken(c) => r("join_token", &c.token_id),
        Body::UseJoinToken(c) => r("join_token", &c.token_id),
        Body::AnnounceReplica(c) => r("replica", &c.replica_id.to_string()),
        Body::SignUp(c) => r("user", &c.user_id),
        Body::CreateOrganisation(c) => r(
            "organisation",
            c.organisation.as_ref().map_or("", |o| o.org_id.as_str()),
        ),
        Body::UpdateOrganisation(c) => r("organisation", &c.org_id),
        Body::SetOrganisationSso(c) => r("organisation", &c.org_id),
        Body::SetMember(c) => r("user", &c.user_id),
        Body::InviteMember(c) => r("invitation", &c.email),
        Body::AcceptInvitation(c) => r("user", &c.user_id),
        Body::VerifyEmail(c) => r("user", &c.user_id),
        Body::StartLoginSession(c) => r("user", &c.user_id),
        Body::EndLoginSessions(c) => r("user", &c.user_id),
        Body::SetPassword(c) => r("user", &c.user_id),
        Body::EnrolTotp(c) => r("user", &c.user_id),
        Body::ConfirmTotp(c) => r("user", &c.user_id),
        Body::DisableTotp(c) => r("user", &c.user_id),
        Body::StartPasswordReset(c) => r("user", &c.user_id),
        Body::ResetPassword(c) => r("user", &c.user_id),
        Body::SsoLogin(c) => r("organisation", &c.org_id),
        Body::CreateWebhookEndpoint(c) => r("webhook_endpoint", &c.endpoint_id),
        Body::DeleteWebhookEndpoint(c) => r("webhook_endpoint", &c.endpoint_id),
        Body::ResendWebhookEvent(c) => r("webhook_endpoint", &c.endpoint_id),
        Body::CreateNetwork(c) => r("network", &c.network_id),
        Body::DeleteNetwork(c) => r("network", &c.network_id),
        Body::CreateFirewall(c) => r("firewall", &c.firewall_id),
        Body::SetFirewallRules(c) => r("firewall", &c.firewall_id),
        Body::DeleteFirewall(c) => r("firewall", &c.firewall_id),
        Body::AttachFirewall(c) => r("firewall", &c.firewall_id),
        Body::CreateFloatingIp(c) => r("floating_ip", &c.floating_ip_id),
        Body::AssignFloatingIp(c) => r("floating_ip", &c.floating_ip_id),
        Body::DeleteFloatingIp(c) => r("floating_ip", &c.floating_ip_id),
        Body::SetReverseDns(c) => r("public_ip", &c.address),
        Body::RecordWebhookDeliveries(c) => format!("webhook_deliveries/{}", c.results.len()),
        Body::SetRateLimit(c) => r("organisation", &c.org_id),
        Body::SetQuota(c) => format!("quota/{}/{}", c.project_id, c.region),
        Body::RequestQuota(c) => r("quota_request", &c.request_id),
        Body::DecideQuotaRequest(c) => r("quota_request", &c.request_id),
        Body::RecordRefusal(c) => format!("request/{} {}", c.method, c.path),
        Body::RunBilling(c) => r("billing_run", &c.period),
        Body::FinalizeInvoices(c) => r("billing_run", &c.period),
        Body::RecordPayment(c) => r("invoice", &c.invoice_id),
        Body::VoidInvoice(c) => r("invoice", &c.invoice_id),
        Body::GrantCredit(c) => r("credit", &c.credit_id),
        Body::AdvanceClock(c) => format!("clock/+{}ms", c.by_ms),
        Body::SetPaymentMethod(c) => r("organisation", &c.org_id),
        Body::SetSuspended(c) => r("organisation", &c.org_id),
        Body::SetBudgetAlerts(c) => r("organisation", &c.org_id),
        Body::RecordBudgetAlert(c) => r("organisation", &c.org_id),
        Body::CreateCoupon(c) => r("coupon", &c.code),
        Body::RedeemCoupon(c) => r("coupon", &c.code),
        Body::TopUpPrepaid(c) => r("organisation", &c.org_id),
        Body::SetPlan(c) => r("organisation", &c.org_id),
        Body::BuyHourPack(c) => r("hour_pack", &c.purchase_id),
        Body::DeclareIncident(c) => r("incident", &c.incident_id),
        Body::CreatePartner(c) => r("partner", &c.partner_id),
        Body::UpdatePartner(c) => r("partner", &c.partner_id),
        Body::GrantSupportAccess(c) => r("organisation", &c.org_id),
        Body::SetPartnerLicence(c) => r("partner", &c.partner_id),
        Body::PutPartnerSite(c) => r("partner_site", &format!("{}/{}", c.partner_id, c.site_id)),
        Body::DeletePartnerSite(c) => r("partner_site", &format!("{}/{}", c.partner_id, c.site_id)),
        Body::UpdateIncident(c) => r("incident", &c.incident_id),
        Body::CreateProfile(c) => r("profile", &c.profile_id),
        Body::UpdateProfile(c) => r("profile", &c.profile_id),
        Body::DeleteProfile(c) => r("profile", &c.profile_id),
        Body::SetParentalPin(c) => r("organisation", &c.org_id),
        Body::RecordPinAttempt(c) => r("profile", &c.profile_id),
        Body::GrantEntitlement(c) => r("entitlement", &c.entitlement_id),
        Body::RevokeEntitlement(c) => r("entitlement", &c.entitlement_id),
        Body::IssueStreamToken(c) => r("session", &c.instance_id),
        Body::RedeemStreamToken(c) => r("session", &c.instance_id),
        Body::InviteSharePlay(c) => r("session", &c.instance_id),
        Body::JoinSharePlay(c) => r("profile", &c.guest_profile_id),
        Body::EndSharePlay(c) => r("session", &c.instance_id),
        Body::FillWarmPool(c) => format!("warm_vms/{}", c.vms.len()),
        Body::ShrinkWarmPool(c) => format!("warm_vms/{}", c.instance_ids.len()),
        Body::AskParent(c) => r("request", &c.request_id),
        Body::DecideParentRequest(c) => r("request", &c.request_id),
        Body::RecordPaymentFailure(c) => r("invoice", &c.invoice_id),
    }
}

impl ClusterState {
    /// What the event of `body` will say, whatever its outcome.
    pub(crate) fn audit_pending(
        &self,
        actor: Option<&pb::Actor>,
        request: Option<&pb::Request>,
        body: &Body,
    ) -> Pending {
        let (mut org, mut project) = (None, None);
        match self.command_target(body) {
            Ok((_, Target::Project(p))) => {
                org = self.projects.get(&p).map(|p| p.org.to_string());
                project = Some(p.to_string());
            }
            Ok((_, Target::Org(o))) => org = Some(o.to_string()),
            // The partner's staff see what was done to the partner.
            Ok((_, Target::Partner(p))) => {
                org = self.partners.get(&p).map(|p| p.staff_org.to_string());
            }
            _ => {}
        }
        match body {
            Body::SignUp(c) => {
                org = c.organisation.as_ref().map(|o| o.org_id.clone());
                project = Some(c.project_id.clone());
            }
            // Operators set it; the partner's staff see it was set.
            Body::SetPartnerLicence(c) => {
                org = self
                    .partners
                    .get(&c.partner_id)
                    .map(|p| p.staff_org.to_string());
            }
            Body::CreateOrganisation(c) => {
                org = c.organisation.as_ref().map(|o| o.org_id.clone());
            }
            Body::SsoLogin(pb::SsoLogin { org_id, .. })
            | Body::AcceptInvitation(pb::AcceptInvitation { org_id, .. })
            | Body::GrantCredit(pb::GrantCredit { org_id, .. })
            | Body::SetSuspended(pb::SetSuspended { org_id, .. })
            | Body::RecordBudgetAlert(pb::RecordBudgetAlert { org_id, .. })
            | Body::RedeemCoupon(pb::RedeemCoupon { org_id, .. })
            | Body::TopUpPrepaid(pb::TopUpPrepaid { org_id, .. })
            | Body::GrantEntitlement(pb::GrantEntitlement { org_id, .. })
            | Body::RevokeEntitlement(pb::RevokeEntitlement { org_id, .. }) => {
                org = Some(org_id.clone());
            }
            Body::RecordPayment(pb::RecordPayment { invoice_id, .. })
            | Body::RecordPaymentFailure(pb::RecordPaymentFailure { invoice_id, .. })
            | Body::VoidInvoice(pb::VoidInvoice { invoice_id, .. }) => {
                org = self
                    .billing
                    .invoices
                    .get(invoice_id)
                    .map(|i| i.org.to_string());
            }
            _ => {}
        }
        let org = org.filter(|o| !o.is_empty());
        let actor_named = actor_name(actor);
        let resource = resource_of(body);
        let member_of = match org {
            Some(_) => Vec::new(),
            None => self.orgs_of_user_concerned(&actor_named, &resource),
        };
        Pending {
            actor: actor_named,
            source: actor.map(|a| a.source.clone()).unwrap_or_default(),
            request_id: request.map(|r| r.id.clone()).unwrap_or_default(),
            action: if matches!(body, Body::RecordRefusal(_)) {
                "refused_request"
            } else {
                crate::state::kinds::command_kind(body)
            },
            resource,
            org,
            project: project.filter(|p| !p.is_empty()),
            member_of,
            detail: detail_of(body),
        }
    }

    /// The organisations of the user an event without an organisation is about (the user it
    /// acts on, else the user acting), whose admins see the event too. Walks the
    /// organisations: only for user events outside any organisation (log-ins, passwords, two-step
    /// changes), which are few beside the rest.
    fn orgs_of_user_concerned(&self, actor: &str, resource: &str) -> Vec<String> {
        let user = resource
            .strip_prefix("user/")
            .or_else(|| actor.strip_prefix("user:"));
        let Some(user) = user.and_then(|u| vmcloud_proto::UserId::parse(u).ok()) else {
            return Vec::new();
        };
        self.organisations
            .values()
            .filter(|o| o.members.contains_key(&user))
            .map(|o| o.id.to_string())
            .collect()
    }

    /// Chains the event of the command at log `index` and hands it to history.
    pub(crate) fn audit_record(
        &mut self,
        index: u64,
        pending: Pending,
        refusal: Option<&pb::RecordRefusal>,
        result: &ApplyResult,
    ) {
        let outcome = match (refusal, result) {
            (Some(r), _) => format!("refused: {} {}", r.status, r.kind),
            (None, Ok(_)) => "ok".to_owned(),
            (None, Err(e)) => format!("refused: {e}"),
        };
        let seq = self.history.next_seq(index);
        let number = self.audit_head.events + 1;
        let mut event = AuditEvent {
            id: format!("ae-{index}-{seq}"),
            number,
            at_ms: self.now_ms,
            actor: pending.actor,
            source: pending.source,
            request_id: pending.request_id,
            action: pending.action.to_owned(),
            resource: pending.resource,
            org: pending.org,
            project: pending.project,
            member_of: pending.member_of,
            detail: pending.detail,
            outcome,
            prev_hash: std::mem::take(&mut self.audit_head.hash),
            hash: String::new(),
        };
        event.hash = event.compute_hash();
        self.audit_head.events = number;
        self.audit_head.hash = event.hash.clone();
        self.history
            .push(index, HistoryRecord::Audit(Box::new(event)));
    }
}

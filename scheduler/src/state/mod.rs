//! The ground floor: the replicated cluster state and the one function that changes it.
//!
//! [`ClusterState::apply`] is the only writer: it takes one committed [`pb::Command`] and is
//! deterministic (time comes from the command, never from this replica's clock), so every
//! replica that applies the same log holds the same state. This folder holds the state's
//! struct, the `Command` dispatch and the derived indexes; each domain folder (instances,
//! nodes, jobs, sessions, reservations, join, projects) adds its own `impl ClusterState` block
//! with its handlers and queries, and imports this one — never the other way.
//! [`replicated`] plugs the state into the consensus crate.

pub mod index;
pub mod kinds;
pub mod queries;
pub mod rejected;
pub mod replicated;
pub mod snapshot_format;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use imbl::OrdMap;

use serde::{Deserialize, Serialize};
use vmcloud_proto::pb::{self, command::Body};
use vmcloud_proto::{InstanceId, NodeId, OrgId, ProjectId, ReservationId, UserId};

pub use rejected::Rejected;

use crate::audit::types::AuditHead;
use crate::history::types::HistoryBuffer;
use crate::idempotency::types::IdempotencyKeys;
use crate::instances::types::Instance;
use crate::nodes::types::{Node, ReplicaAddrs};
use crate::quotas::types::{Limits, QuotaRequest};
use crate::reservations::types::Reservation;
use crate::state::index::StateIndex;
use crate::tenancy::types::{ApiKey, LoginSession, Organisation, Project, User};
use crate::webhooks::types::{Delivery, PendingEvents, WebhookEndpoint};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClusterState {
    #[serde(alias = "accounts")]
    pub projects: OrdMap<ProjectId, Project>,
    /// API keys by their public id.
    pub api_keys: OrdMap<String, ApiKey>,
    /// Values behind `Arc`s: a published copy shares them, and a change copies only the
    /// instance it changes (`Arc::make_mut`), not the 64 of a B-tree leaf.
    pub instances: OrdMap<InstanceId, Arc<Instance>>,
    pub nodes: OrdMap<NodeId, Arc<Node>>,
    /// What each Idempotency-Key did in the last 24 hours (see [`crate::idempotency`]).
    #[serde(default)]
    pub idempotency_keys: IdempotencyKeys,
    /// Limits operators set over the defaults, by project and region (see [`crate::quotas`]).
    #[serde(default)]
    pub quotas: OrdMap<ProjectId, std::collections::BTreeMap<String, Limits>>,
    /// Requests for higher limits, by id.
    #[serde(default)]
    pub quota_requests: OrdMap<String, QuotaRequest>,
    /// Projects' webhook endpoints, by id (see [`crate::webhooks`]).
    #[serde(default)]
    pub webhook_endpoints: OrdMap<String, WebhookEndpoint>,
    /// Projects' private networks, by id (see [`crate::networks`]).
    #[serde(default)]
    pub networks: OrdMap<String, crate::networks::types::Network>,
    /// Projects' firewalls, by id (see [`crate::firewalls`]).
    #[serde(default)]
    pub firewalls: OrdMap<String, crate::firewalls::types::Firewall>,
    /// Public IPv4 addresses held, by address (see [`crate::public_ips`]).
    #[serde(default)]
    pub public_ips: OrdMap<u32, crate::public_ips::types::Holder>,
    /// Floating IPs, by id.
    #[serde(default)]
    pub floating_ips: OrdMap<String, crate::public_ips::types::FloatingIp>,
    /// The last VNI given to a network (never given again).
    #[serde(default)]
    pub last_vni: u32,
    /// Webhook deliveries not done yet, by `<event id>/<endpoint id>`.
    #[serde(default)]
    pub webhook_outbox: OrdMap<String, Delivery>,
    /// The end of the audit trail's hash chain (the events are in history).
    #[serde(default)]
    pub audit_head: AuditHead,
    /// Capacity held for projects (see [`crate::reservation`]).
    #[serde(default)]
    pub reservations: OrdMap<ReservationId, Reservation>,
    /// Join tokens by id (secrets are kept hashed).
    #[serde(default)]
    pub join_tokens: OrdMap<String, crate::join::types::JoinToken>,
    /// Where each scheduler replica serves agents and the API (announced at start).
    #[serde(default)]
    pub replicas: OrdMap<u64, ReplicaAddrs>,
    /// Index of the last applied log entry.
    pub applied_index: u64,
    /// The proposer's clock when the last entry was proposed: "now" for pure functions of the
    /// state (queue estimates).
    #[serde(default)]
    pub now_ms: i64,
    /// Grows whenever capacity may have appeared (a node registered, an instance's capacity
    /// released), so the placement controller knows when waiting instances may now fit.
    #[serde(default)]
    pub capacity_epoch: u64,
    /// The tenancy tree's top (see [`crate::tenancy`]); projects are in `projects`.
    #[serde(default)]
    pub organisations: OrdMap<OrgId, Organisation>,
    #[serde(default)]
    pub users: OrdMap<UserId, User>,
    /// Lower-cased email → user.
    #[serde(default)]
    pub users_by_email: OrdMap<String, UserId>,
    /// Login sessions by their public id.
    #[serde(default)]
    pub login_sessions: OrdMap<String, LoginSession>,
    /// Usage not invoiced yet, credits, invoices (see [`crate::billing`]).
    #[serde(default)]
    pub billing: crate::billing::types::BillingBook,
    /// Households' profiles, entitlements and playtime (see [`crate::gaming`]).
    #[serde(default)]
    pub gaming: crate::gaming::types::GamingBook,
    /// Grows whenever any node's desired-config generation grows (not serialized: the agent
    /// gateway compares it between applied batches to skip looking at every node).
    #[serde(skip)]
    pub generation_epoch: Epoch,
    /// Derived from the maps above and never serialized: kept current by `apply`, rebuilt by
    /// [`ClusterState::reindex`] after a restore or after building a state by hand.
    #[serde(skip)]
    pub(crate) index: StateIndex,
    /// History records applied entries produced that the consensus adapter has not written to
    /// the history store yet (see [`crate::history`]).
    #[serde(skip)]
    pub history: HistoryBuffer,
    /// Webhook events a command produced where it could not emit them (see
    /// [`crate::webhooks::types::PendingEvents`]).
    #[serde(skip)]
    pub(crate) webhook_pending: PendingEvents,
    /// The public status page's incidents and maintenance windows (see [`crate::status`]).
    #[serde(default)]
    pub incidents: OrdMap<String, crate::status::types::Incident>,
    /// Instances placed by this replica's `apply` since it started (`/metrics`).
    #[serde(skip)]
    pub placements: Tally,
    /// White-label partners by id (see [`crate::partners`]).
    #[serde(default)]
    pub partners: OrdMap<String, crate::partners::types::Partner>,
}

/// A count kept beside the state for `/metrics`, not part of its value: states equal in
/// everything else are equal whatever their counts.
#[derive(Debug, Clone, Default)]
pub struct Tally(pub u64);

impl PartialEq for Tally {
    fn eq(&self, _: &Tally) -> bool {
        true
    }
}

/// A change counter kept beside the state, not part of its value: states equal in
/// everything else are equal whatever their counters. It remembers which node each of its
/// last [`Epoch::KEPT`] steps was for, so that the agent gateway wakes those nodes' links
/// without looking at every node.
#[derive(Debug, Clone, Default)]
pub struct Epoch(pub u64, imbl::Vector<(u64, vmcloud_proto::NodeId)>);

impl PartialEq for Epoch {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Epoch {
    /// Steps remembered.
    pub const KEPT: usize = 65_536;

    /// One step, for `node` (its desired-config generation grew).
    pub fn bump(&mut self, node: &vmcloud_proto::NodeId) {
        self.0 += 1;
        self.1.push_back((self.0, node.clone()));
        if self.1.len() > Self::KEPT {
            self.1.pop_front();
        }
    }

    /// The nodes of the steps after `epoch`; `None` when they are no longer all remembered
    /// (look at every node then).
    pub fn nodes_since(&self, epoch: u64) -> Option<Vec<&vmcloud_proto::NodeId>> {
        // A counter behind `epoch` is one restored from a snapshot: it remembers nothing.
        let steps = self.0.checked_sub(epoch)?;
        if steps > self.1.len() as u64 {
            return None;
        }
        let skip = self.1.len() - steps as usize;
        Some(self.1.iter().skip(skip).map(|(_, n)| n).collect())
    }
}

#[derive(Debug, Clone)]
pub enum Applied {
    Done,
    Instance(Box<Instance>),
    Reservation(Box<Reservation>),
}

pub type ApplyResult = Result<Applied, Rejected>;
impl ClusterState {
    /// Applies one committed command. Deterministic.
    pub fn apply(&mut self, index: u64, command: pb::Command) -> ApplyResult {
        self.applied_index = index;
        let at = command.at_unix_ms;
        self.now_ms = self.now_ms.max(at);
        let body = command.body.ok_or(Rejected::Malformed)?;
        self.forget_old_keys(self.now_ms);
        let audit = self.audit_pending(command.actor.as_ref(), command.request.as_ref(), &body);
        let refusal = match &body {
            Body::RecordRefusal(r) => Some(r.clone()),
            _ => None,
        };
        let result = self.apply_checked(command.actor.as_ref(), command.request, body, at);
        let events = std::mem::take(&mut self.webhook_pending.0);
        if result.is_ok() {
            for (project, kind, data) in events {
                self.emit_webhook(&project, kind, data);
            }
        }
        self.audit_record(index, audit, refusal.as_ref(), &result);
        result
    }

    fn apply_checked(
        &mut self,
        actor: Option<&pb::Actor>,
        request: Option<pb::Request>,
        body: Body,
        at: i64,
    ) -> ApplyResult {
        self.check_command(actor, &body)?;
        match request.filter(|r| !r.idempotency_key.is_empty()) {
            None => self.dispatch(body, at),
            Some(request) => {
                let slot = crate::idempotency::types::slot(actor, &request.idempotency_key);
                self.apply_keyed(slot, &request, body, at, |state, body| {
                    state.dispatch(body, at)
                })
            }
        }
    }

    /// Hands a command to its domain's handler.
    fn dispatch(&mut self, body: Body, at: i64) -> ApplyResult {
        match body {
            Body::CreateProject(c) => self.create_project(c, at),
            Body::AddApiKey(c) => self.add_api_key(c, at),
            Body::SignUp(c) => self.sign_up(c, at),
            Body::CreateOrganisation(c) => self.create_organisation(c, at),
            Body::UpdateOrganisation(c) => self.update_organisation(c),
            Body::SetMember(c) => self.set_member(c),
            Body::VerifyEmail(c) => self.verify_email(c, at),
            Body::StartLoginSession(c) => self.start_login_session(c, at),
            Body::EndLoginSessions(c) => self.end_login_sessions(c),
            Body::RevokeApiKey(c) => self.revoke_api_key(c, at),
            Body::DeleteProject(c) => self.delete_project(c),
            Body::SetPassword(c) => self.set_password(c),
            Body::EnrolTotp(c) => self.enrol_totp(c),
            Body::ConfirmTotp(c) => self.confirm_totp(c),
            Body::DisableTotp(c) => self.disable_totp(c),
            Body::StartPasswordReset(c) => self.start_password_reset(c),
            Body::ResetPassword(c) => self.reset_password(c, at),
            Body::SetOrganisationSso(c) => self.set_organisation_sso(c),
            Body::SsoLogin(c) => self.sso_login(c, at),
            Body::InviteMember(c) => self.invite_member(c),
            Body::AcceptInvitation(c) => self.accept_invitation(c, at),
            Body::CreateInstance(c) => self.create_instance(c, at),
            Body::PlaceInstances(c) => self.place_instances(c, at),
            Body::DeleteInstance(c) => self.delete_instance(c, at),
            Body::RegisterNode(c) => self.register_node(c, at),
            Body::ObserveInstances(c) => self.observe_instances(c, at),
            Body::SetNodeState(c) => self.set_node_state(c, at),
            Body::LoseInstances(c) => self.lose_instances(c, at),
            Body::SetGpuHealth(c) => self.set_gpu_health(c),
            Body::SetNodeLabels(c) => self.set_node_labels(c),
            Body::ReclaimInstances(c) => self.reclaim_instances(c, at),
            Body::CreateReservation(c) => self.create_reservation(c, at),
            Body::ExpireReservations(c) => self.expire_reservations(c, at),
            Body::CreateJob(c) => self.create_job(c, at),
            Body::UpdateProject(c) => self.update_project(c),
            Body::CreateJoinToken(c) => self.create_join_token(c, at),
            Body::UseJoinToken(c) => self.use_join_token(c, at),
            Body::AnnounceReplica(c) => self.announce_replica(c),
            // Recorded by the audit trail; changes nothing else.
            Body::RecordRefusal(_) => Ok(Applied::Done),
            Body::SetQuota(c) => self.set_quota(c),
            Body::SetRateLimit(c) => self.set_rate_limit(c),
            Body::CreateWebhookEndpoint(c) => self.create_webhook_endpoint(c, at),
            Body::DeleteWebhookEndpoint(c) => self.delete_webhook_endpoint(c),
            Body::RecordWebhookDeliveries(c) => self.record_webhook_deliveries(c),
            Body::ResendWebhookEvent(c) => self.resend_webhook_event(c, at),
            Body::CreateNetwork(c) => self.create_network(c, at),
            Body::DeleteNetwork(c) => self.delete_network(c),
            Body::CreateFirewall(c) => self.create_firewall(c, at),
            Body::SetFirewallRules(c) => self.set_firewall_rules(c),
            Body::DeleteFirewall(c) => self.delete_firewall(c),
            Body::AttachFirewall(c) => self.attach_firewall(c),
            Body::CreateFloatingIp(c) => self.create_floating_ip(c, at),
            Body::AssignFloatingIp(c) => self.assign_floating_ip(c),
            Body::DeleteFloatingIp(c) => self.delete_floating_ip(c),
            Body::SetReverseDns(c) => self.set_reverse_dns(c),
            Body::RequestQuota(c) => self.request_quota(c, at),
            Body::DecideQuotaRequest(c) => self.decide_quota_request(c, at),
            Body::RunBilling(c) => self.run_billing(c, at),
            Body::FinalizeInvoices(c) => self.finalize_invoices(c, at),
            Body::RecordPayment(c) => self.record_payment(c, at),
            Body::VoidInvoice(c) => self.void_invoice(c, at),
            Body::GrantCredit(c) => self.grant_credit(c, at),
            Body::AdvanceClock(c) => self.advance_clock(c, at),
            Body::SetPaymentMethod(c) => self.set_payment_method(c, at),
            Body::RecordPaymentFailure(c) => self.record_payment_failure(c, at),
            Body::SetSuspended(c) => self.set_suspended(c, at),
            Body::SetBudgetAlerts(c) => self.set_budget_alerts(c),
            Body::RecordBudgetAlert(c) => self.record_budget_alert(c),
            Body::CreateCoupon(c) => self.create_coupon(c, at),
            Body::RedeemCoupon(c) => self.redeem_coupon(c, at),
            Body::TopUpPrepaid(c) => self.top_up_prepaid(c, at),
            Body::SetPlan(c) => self.set_plan(c, at),
            Body::BuyHourPack(c) => self.buy_hour_pack(c, at),
            Body::DeclareIncident(c) => self.declare_incident(c, at),
            Body::CreatePartner(c) => self.create_partner(c, at),
            Body::UpdatePartner(c) => self.update_partner(c),
            Body::GrantSupportAccess(c) => self.grant_support_access(c, at),
            Body::SetPartnerLicence(c) => self.set_partner_licence(c),
            Body::PutPartnerSite(c) => self.put_partner_site(c, at),
            Body::DeletePartnerSite(c) => self.delete_partner_site(c),
            Body::UpdateIncident(c) => self.update_incident(c, at),
            Body::CreateProfile(c) => self.create_profile(c, at),
            Body::UpdateProfile(c) => self.update_profile(c, at),
            Body::DeleteProfile(c) => self.delete_profile(c),
            Body::SetParentalPin(c) => self.set_parental_pin(c),
            Body::RecordPinAttempt(c) => self.record_pin_attempt(c, at),
            Body::GrantEntitlement(c) => self.grant_entitlement(c, at),
            Body::RevokeEntitlement(c) => self.revoke_entitlement(c),
            Body::IssueStreamToken(c) => self.issue_stream_token(c, at),
            Body::RedeemStreamToken(c) => self.redeem_stream_token(c, at),
            Body::InviteSharePlay(c) => self.invite_share_play(c, at),
            Body::JoinSharePlay(c) => self.join_share_play(c, at),
            Body::EndSharePlay(c) => self.end_share_play(c, at),
            Body::FillWarmPool(c) => self.fill_warm_pool(c, at),
            Body::ShrinkWarmPool(c) => self.shrink_warm_pool(c, at),
            Body::AskParent(c) => self.ask_parent(c, at),
            Body::DecideParentRequest(c) => self.decide_parent_request(c, at),
        }
    }
}

//! The name of each kind of command (`create_instance`, …): the audit trail's action and
//! the idempotency records' check that a retry proposes what the first attempt did.

use vmcloud_proto::pb::command::Body;

/// The command's kind, as its field in the log's `Command.body` is named.
pub fn command_kind(body: &Body) -> &'static str {
    match body {
        Body::CreateProject(_) => "create_project",
        Body::AddApiKey(_) => "add_api_key",
        Body::CreateInstance(_) => "create_instance",
        Body::PlaceInstances(_) => "place_instances",
        Body::DeleteInstance(_) => "delete_instance",
        Body::RegisterNode(_) => "register_node",
        Body::ObserveInstances(_) => "observe_instances",
        Body::SetNodeState(_) => "set_node_state",
        Body::SetNodeLabels(_) => "set_node_labels",
        Body::ReclaimInstances(_) => "reclaim_instances",
        Body::CreateReservation(_) => "create_reservation",
        Body::ExpireReservations(_) => "expire_reservations",
        Body::CreateJob(_) => "create_job",
        Body::UpdateProject(_) => "update_project",
        Body::CreateJoinToken(_) => "create_join_token",
        Body::UseJoinToken(_) => "use_join_token",
        Body::AnnounceReplica(_) => "announce_replica",
        Body::LoseInstances(_) => "lose_instances",
        Body::SetGpuHealth(_) => "set_gpu_health",
        Body::SignUp(_) => "sign_up",
        Body::CreateOrganisation(_) => "create_organisation",
        Body::UpdateOrganisation(_) => "update_organisation",
        Body::SetMember(_) => "set_member",
        Body::VerifyEmail(_) => "verify_email",
        Body::StartLoginSession(_) => "start_login_session",
        Body::EndLoginSessions(_) => "end_login_sessions",
        Body::RevokeApiKey(_) => "revoke_api_key",
        Body::DeleteProject(_) => "delete_project",
        Body::SetPassword(_) => "set_password",
        Body::EnrolTotp(_) => "enrol_totp",
        Body::ConfirmTotp(_) => "confirm_totp",
        Body::DisableTotp(_) => "disable_totp",
        Body::StartPasswordReset(_) => "start_password_reset",
        Body::ResetPassword(_) => "reset_password",
        Body::SetOrganisationSso(_) => "set_organisation_sso",
        Body::SsoLogin(_) => "sso_login",
        Body::InviteMember(_) => "invite_member",
        Body::AcceptInvitation(_) => "accept_invitation",
        Body::RecordRefusal(_) => "record_refusal",
        Body::SetQuota(_) => "set_quota",
        Body::RequestQuota(_) => "request_quota",
        Body::DecideQuotaRequest(_) => "decide_quota_request",
        Body::SetRateLimit(_) => "set_rate_limit",
    }
}

//! Invitations of people who have no account yet: an owner or admin invites an email with a
//! role; the mailed link works once, for a week, for whoever signs up (or is signed up) with
//! that email and is logged in.

use vmcloud_proto::{OrgId, UserId, pb};

use crate::state::{Applied, ApplyResult, ClusterState, Rejected};
use crate::tenancy::types::{Invitation, Role};
use crate::tenancy::validate;

fn invalid(e: impl std::fmt::Display) -> Rejected {
    Rejected::Invalid(e.to_string())
}

impl ClusterState {
    pub(crate) fn invite_member(&mut self, c: pb::InviteMember) -> ApplyResult {
        let id = OrgId::parse(&c.org_id).map_err(invalid)?;
        let email = validate::email(&c.email).map_err(invalid)?;
        let role = Role::parse(&c.role)
            .filter(|r| r.is_org_role())
            .ok_or_else(|| invalid(format!("`{}` is not an organisation role", c.role)))?;
        let org = self
            .organisations
            .get_mut(&id)
            .ok_or_else(|| Rejected::NotFound(format!("organisation {id}")))?;
        org.invitations.insert(
            email,
            Invitation {
                role,
                token_sha256: c.token_sha256,
                expires_at_ms: c.expires_at_unix_ms,
            },
        );
        Ok(Applied::Done)
    }

    pub(crate) fn accept_invitation(&mut self, c: pb::AcceptInvitation, at: i64) -> ApplyResult {
        let id = OrgId::parse(&c.org_id).map_err(invalid)?;
        let user = UserId::parse(&c.user_id).map_err(invalid)?;
        let bad = || {
            Rejected::Invalid(
                "this invitation is not valid for you: it was used, replaced or has expired, or it was sent to another email address".to_owned(),
            )
        };
        let email = self
            .users
            .get(&user)
            .map(|u| u.email.clone())
            .ok_or_else(bad)?;
        let org = self.organisations.get_mut(&id).ok_or_else(bad)?;
        match org.invitations.get(&email) {
            Some(i) if i.token_sha256 == c.token_sha256 && at < i.expires_at_ms => {}
            _ => return Err(bad()),
        }
        let invitation = org.invitations.remove(&email).expect("checked above");
        // Someone already in keeps the higher of the two roles (an owner is not demoted).
        let role = match org.members.get(&user) {
            Some(r) if *r <= invitation.role => *r,
            _ => invitation.role,
        };
        org.members.insert(user, role);
        Ok(Applied::Done)
    }
}

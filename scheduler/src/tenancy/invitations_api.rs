//! Inviting someone without an account (the organisation's member form falls back to this),
//! and taking an invitation.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};
use vmcloud_proto::OrgId;
use vmcloud_proto::pb::{self, command::Body};

use crate::api::context::{ApiJson, ApiState, Who, rfc3339};
use crate::api::problem::Problem;
use crate::tenancy::api_key::{mail_token, mail_token_sha256};
use crate::tenancy::authz::Principal;
use crate::tenancy::types::Role;

/// How long an invitation works.
const INVITATION_TTL_MS: i64 = 7 * 24 * 3_600_000;

/// Invites `email` (no account yet) into `org` with `role`, and mails the link.
pub async fn invite(
    s: &ApiState,
    who: &Who,
    org: &OrgId,
    email: &str,
    role: Role,
) -> Result<(StatusCode, Json<Value>), Problem> {
    let (token, token_sha256) = mail_token();
    let expires = crate::clock::now_ms() + INVITATION_TTL_MS;
    s.cluster
        .propose_as(
            who.actor(),
            Body::InviteMember(pb::InviteMember {
                org_id: org.to_string(),
                email: email.to_owned(),
                role: role.as_str().to_owned(),
                token_sha256,
                expires_at_unix_ms: expires,
            }),
        )
        .await??;
    let org_name = s
        .cluster
        .state()
        .organisations
        .get(org)
        .map(|o| o.name.clone())
        .unwrap_or_default();
    // A partner's customer is invited in the partner's name, to the partner's portal.
    let (brand, base) = crate::partners::brand::mail_brand(s, Some(org));
    let link = format!("{base}/invite?org={org}&token={token}");
    let body = format!(
        "You are invited to join the organisation \"{org_name}\" on {brand} as {}.\n\nSign up (or log in) with this address, {email}, then open this link within a week:\n\n  {link}\n\nSign up at {base}/signup\n\nIf you do not know this organisation, ignore this mail.\n",
        role.as_str(),
    );
    s.mailer
        .send(email, &format!("Join {org_name} on {brand}"), &body)
        .await
        .map_err(|e| Problem::internal(format!("{}", vmcloud_proto::ErrorChain(&e))))?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({
            "invited": email,
            "role": role.as_str(),
            "expires_at": rfc3339(expires),
            "next": "they sign up with this address and open the link in the invitation mail",
        })),
    ))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AcceptRequest {
    pub org: String,
    pub token: String,
}

/// The logged-in user takes the invitation mailed to their address.
pub async fn accept(
    State(s): State<ApiState>,
    who: Who,
    ApiJson(req): ApiJson<AcceptRequest>,
) -> Result<Json<Value>, Problem> {
    let Principal::User { id: user, .. } = &who.principal else {
        return Err(Problem::new(
            StatusCode::BAD_REQUEST,
            "not-a-user",
            "Not a user",
            "invitations are taken by a logged-in user, not an API key",
        ));
    };
    let bad =
        |detail: String| Problem::unprocessable("invalid-invitation", "Invalid invitation", detail);
    let org =
        OrgId::parse(&req.org).map_err(|_| bad("this invitation link is not valid".to_owned()))?;
    match s
        .cluster
        .propose_as(
            who.actor(),
            Body::AcceptInvitation(pb::AcceptInvitation {
                org_id: org.to_string(),
                user_id: user.to_string(),
                token_sha256: mail_token_sha256(&req.token),
            }),
        )
        .await?
    {
        Ok(_) => Ok(Json(
            json!({"organisation": org.to_string(), "joined": true}),
        )),
        Err(crate::state::Rejected::Invalid(msg)) => Err(bad(msg)),
        Err(e) => Err(e.into()),
    }
}

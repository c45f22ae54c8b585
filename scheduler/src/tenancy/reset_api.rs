//! Password reset: ask for a link by email (the answer is the same whether or not an account
//! exists, so it tells nobody which addresses are registered), then set a new password with
//! the link's token (single use, one hour; every session of the user ends).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};
use vmcloud_proto::UserId;
use vmcloud_proto::pb::{self, command::Body};

use crate::api::context::{ApiJson, ApiState, Source};
use crate::api::limits;
use crate::api::problem::Problem;
use crate::tenancy::api_key::{mail_token, mail_token_sha256};
use crate::tenancy::authz::Principal;
use crate::tenancy::commands::actor_of;
use crate::tenancy::{password, validate};

/// How long a reset link works.
const RESET_TTL_MS: i64 = 3_600_000;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetRequest {
    pub email: String,
}

/// Mails a reset link to the account's address, if there is such an account.
pub async fn request(
    State(s): State<ApiState>,
    Source(source): Source,
    ApiJson(req): ApiJson<ResetRequest>,
) -> Result<(StatusCode, Json<Value>), Problem> {
    s.limiter.check(
        &format!("reset:{source}"),
        limits::SIGNUP_PER_ADDRESS,
        "password reset requests from this address",
    )?;
    let email = validate::email(&req.email)
        .map_err(|e| Problem::unprocessable("invalid-email", "Invalid email", e.0))?;
    s.limiter.check(
        &format!("reset-account:{email}"),
        limits::RESET_PER_ACCOUNT,
        "password reset requests for this account",
    )?;
    let user = {
        let state = s.cluster.state();
        state.users_by_email.get(&email).cloned()
    };
    if let Some(user) = user {
        let (token, token_sha256) = mail_token();
        s.cluster
            .propose_as(
                actor_of(&Principal::Anonymous, &source),
                Body::StartPasswordReset(pb::StartPasswordReset {
                    user_id: user.to_string(),
                    token_sha256,
                    expires_at_unix_ms: crate::clock::now_ms() + RESET_TTL_MS,
                }),
            )
            .await??;
        let link = format!("{}/reset?user={user}&token={token}", s.public_url);
        let body = format!(
            "Someone (we hope you) asked to reset the password of your VMCloud account.\n\nChoose a new password within an hour by opening this link:\n\n  {link}\n\nIf it was not you, ignore this mail: your password stays as it is.\n"
        );
        s.mailer
            .send(&email, "Reset your VMCloud password", &body)
            .await
            .map_err(|e| Problem::internal(format!("{}", vmcloud_proto::ErrorChain(&e))))?;
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({
            "next": "if an account exists for that address, a reset link is on its way (it works for an hour)",
        })),
    ))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfirmRequest {
    pub user: String,
    pub token: String,
    pub new_password: String,
}

/// Sets a new password from a reset link.
pub async fn confirm(
    State(s): State<ApiState>,
    Source(source): Source,
    ApiJson(req): ApiJson<ConfirmRequest>,
) -> Result<Json<Value>, Problem> {
    let bad = |detail: String| Problem::unprocessable("invalid-link", "Invalid reset link", detail);
    let user_id = UserId::parse(&req.user)
        .map_err(|_| bad("this reset link is not valid: ask for a new one".to_owned()))?;
    let email = {
        let state = s.cluster.state();
        state.users.get(&user_id).map(|u| u.email.clone())
    }
    .ok_or_else(|| bad("this reset link is not valid: ask for a new one".to_owned()))?;
    let new = req.new_password;
    let hash = tokio::task::spawn_blocking(move || {
        password::check_strength(&new, &[&email]).map(|()| password::hash(&new))
    })
    .await
    .map_err(|e| Problem::internal(format!("password hashing failed: {e}")))?
    .map_err(|e| Problem::unprocessable("weak-password", "Weak password", e.0))?;
    let command = pb::ResetPassword {
        user_id: user_id.to_string(),
        token_sha256: mail_token_sha256(&req.token),
        password_hash: hash,
    };
    match s
        .cluster
        .propose_as(
            actor_of(&Principal::Anonymous, &source),
            Body::ResetPassword(command),
        )
        .await?
    {
        Ok(_) => Ok(Json(json!({
            "user_id": user_id.to_string(),
            "next": "log in with the new password; every earlier session has ended",
        }))),
        Err(crate::state::Rejected::Invalid(msg)) => Err(bad(msg)),
        Err(e) => Err(e.into()),
    }
}

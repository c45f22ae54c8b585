//! Two-step verification for the logged-in user: enrol TOTP (a QR code to scan), confirm it
//! with a first code (recovery codes come back, once), turn it off; and the second-factor
//! check the log-in uses.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use vmcloud_proto::UserId;
use vmcloud_proto::pb::{self, command::Body};

use crate::api::context::{ApiJson, ApiState, Who};
use crate::api::problem::Problem;
use crate::secrets::SecretsKey;
use crate::tenancy::authz::Principal;
use crate::tenancy::mfa;
use crate::tenancy::types::User;

fn secrets(s: &ApiState) -> Result<&SecretsKey, Problem> {
    s.secrets.as_deref().ok_or_else(|| {
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no-secrets-key",
            "No secrets key",
            "this replica was started without --secrets-key, so it cannot keep TOTP secrets; ask the operators to configure it (docs/operations.md)",
        )
    })
}

fn me(who: &Who, s: &ApiState) -> Result<User, Problem> {
    match &who.principal {
        Principal::User { id, .. } => s
            .cluster
            .state()
            .users
            .get(id)
            .cloned()
            .ok_or_else(|| Problem::unauthorized("log in again")),
        _ => Err(Problem::new(
            StatusCode::BAD_REQUEST,
            "not-a-user",
            "Not a user",
            "two-step verification belongs to users; an API key has none",
        )),
    }
}

fn now_s() -> u64 {
    (crate::clock::now_ms() / 1000).max(0) as u64
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EnrolmentView {
    /// Scan this in an authenticator app…
    pub otpauth_url: String,
    pub qr_svg: String,
    /// …or type this in.
    pub secret: String,
    pub next: &'static str,
}

/// Starts TOTP enrolment: a new secret (kept sealed), shown once as a QR code.
pub async fn enrol(State(s): State<ApiState>, who: Who) -> Result<Json<EnrolmentView>, Problem> {
    let user = me(&who, &s)?;
    let key = secrets(&s)?;
    let secret = mfa::new_secret();
    let sealed = key.seal(&secret, &mfa::seal_purpose(&user.id));
    s.cluster
        .propose_as(
            who.actor(),
            Body::EnrolTotp(pb::EnrolTotp {
                user_id: user.id.to_string(),
                sealed_secret: sealed,
            }),
        )
        .await??;
    let url = mfa::otpauth_url(&secret, &user.email);
    Ok(Json(EnrolmentView {
        qr_svg: mfa::qr_svg(&url),
        otpauth_url: url,
        secret: mfa::secret_base32(&secret),
        next: "scan the QR code, then confirm with the app's code: POST /v1/me/totp/confirm {\"code\": \"123456\"}",
    }))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CodeRequest {
    pub code: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RecoveryView {
    /// Each works once instead of a code; shown only now.
    pub recovery_codes: Vec<String>,
    pub next: &'static str,
}

/// Confirms enrolment with a code from the new secret: two-step verification is on.
pub async fn confirm(
    State(s): State<ApiState>,
    who: Who,
    ApiJson(req): ApiJson<CodeRequest>,
) -> Result<Json<RecoveryView>, Problem> {
    let user = me(&who, &s)?;
    let key = secrets(&s)?;
    let sealed = user.totp_pending.clone().ok_or_else(|| {
        Problem::new(
            StatusCode::CONFLICT,
            "no-enrolment",
            "No enrolment in progress",
            "start with POST /v1/me/totp, scan the QR code, then confirm a code",
        )
    })?;
    let secret = key
        .open(&sealed, &mfa::seal_purpose(&user.id))
        .map_err(|e| Problem::internal(e.to_string()))?;
    let step = mfa::matching_step(&secret, &req.code, now_s()).ok_or_else(wrong_code)?;
    let (codes, hashes) = mfa::recovery_codes();
    s.cluster
        .propose_as(
            who.actor(),
            Body::ConfirmTotp(pb::ConfirmTotp {
                user_id: user.id.to_string(),
                sealed_secret: sealed,
                step,
                recovery_sha256: hashes,
            }),
        )
        .await??;
    Ok(Json(RecoveryView {
        recovery_codes: codes,
        next: "keep these recovery codes somewhere safe; log in again with a code to use two-step verification",
    }))
}

/// Turns TOTP off. Only from a login session that itself checked a second factor.
pub async fn disable(State(s): State<ApiState>, who: Who) -> Result<StatusCode, Problem> {
    let user = me(&who, &s)?;
    if !matches!(who.principal, Principal::User { mfa: true, .. }) {
        return Err(Problem::new(
            StatusCode::FORBIDDEN,
            "mfa-required",
            "Second factor required",
            "log in with a TOTP or recovery code first, then turn two-step verification off",
        ));
    }
    s.cluster
        .propose_as(
            who.actor(),
            Body::DisableTotp(pb::DisableTotp {
                user_id: user.id.to_string(),
            }),
        )
        .await??;
    Ok(StatusCode::NO_CONTENT)
}

fn wrong_code() -> Problem {
    Problem::unauthorized(
        "the code is wrong or expired: type the current 6-digit code of the authenticator app (check its clock), or a recovery code",
    )
}

/// What a log-in spends as its second factor.
#[derive(Debug, Default)]
pub struct SecondFactor {
    pub totp_step: u64,
    pub recovery_sha256: Vec<u8>,
}

impl SecondFactor {
    pub fn used(&self) -> bool {
        self.totp_step > 0 || !self.recovery_sha256.is_empty()
    }
}

/// Checks the second factor of a user who has TOTP on (after their password was right):
/// a current code, or an unused recovery code. `apply` then spends it.
pub fn check_second_factor(
    s: &ApiState,
    user: &User,
    code: Option<&str>,
    recovery_code: Option<&str>,
) -> Result<SecondFactor, Problem> {
    let Some(sealed) = &user.totp_sealed else {
        return Ok(SecondFactor::default());
    };
    if let Some(code) = code.filter(|c| !c.trim().is_empty()) {
        let secret = secrets(s)?
            .open(sealed, &mfa::seal_purpose(&user.id))
            .map_err(|e| Problem::internal(e.to_string()))?;
        let step = mfa::matching_step(&secret, code, now_s()).ok_or_else(wrong_code)?;
        if step <= user.totp_last_step {
            return Err(Problem::unauthorized(
                "this code was used already: wait for the next one",
            ));
        }
        return Ok(SecondFactor {
            totp_step: step,
            recovery_sha256: Vec::new(),
        });
    }
    if let Some(code) = recovery_code.filter(|c| !c.trim().is_empty()) {
        let hash = mfa::recovery_sha256(code);
        if !user.recovery_sha256.contains(&hash) {
            return Err(wrong_code());
        }
        return Ok(SecondFactor {
            totp_step: 0,
            recovery_sha256: hash,
        });
    }
    Err(Problem::new(
        StatusCode::UNAUTHORIZED,
        "totp-required",
        "Code required",
        "this account has two-step verification: give the 6-digit code of the authenticator app (API: totp_code, CLI: --totp), or a recovery code (recovery_code, --recovery-code)",
    ))
}

/// Whether a user has TOTP on.
pub fn has_totp(s: &ApiState, user: &UserId) -> bool {
    s.cluster
        .state()
        .users
        .get(user)
        .is_some_and(|u| u.totp_sealed.is_some())
}

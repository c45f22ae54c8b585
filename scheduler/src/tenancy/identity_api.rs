//! Sign-up, email verification, log-in and log-out, the caller's own account, password change.
//!
//! Password hashing and checking run on the blocking pool (argon2id is slow on purpose); an
//! unknown email is checked against a decoy hash, so it answers like a wrong password, in
//! the same time.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use vmcloud_proto::pb::{self, command::Body};
use vmcloud_proto::{OrgId, ProjectId, UserId};

use crate::api::context::{ApiJson, ApiQuery, ApiState, SESSION_COOKIE, Source, Who, rfc3339};
use crate::api::limits;
use crate::api::problem::Problem;
use crate::tenancy::api_key::{LoginToken, mail_token, mail_token_sha256};
use crate::tenancy::authz::Principal;
use crate::tenancy::commands::actor_of;
use crate::tenancy::mfa_api::check_second_factor;
use crate::tenancy::password;
use crate::tenancy::types::OrgKind;
use crate::tenancy::validate;

/// How long a verification link works.
const VERIFY_TTL_MS: i64 = 24 * 3_600_000;
/// How long a login session lasts.
const SESSION_TTL_MS: i64 = 7 * 24 * 3_600_000;

fn invalid(kind: &'static str, title: &'static str) -> impl Fn(validate::Invalid) -> Problem {
    move |e| Problem::unprocessable(kind, title, e.0)
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrganisationRequest {
    pub name: String,
    /// `company`, `person` (default) or `household`.
    #[serde(default)]
    pub kind: Option<String>,
    /// ISO 3166-1 alpha-2.
    pub billing_country: String,
    /// EU VAT id, companies only.
    #[serde(default)]
    pub vat_id: Option<String>,
    /// Postal address printed on invoices (lines separated by newlines).
    #[serde(default)]
    pub billing_address: Option<String>,
}

impl OrganisationRequest {
    /// Checks it and turns it into the log's form, with a new id.
    pub fn validated(&self) -> Result<pb::Organisation, Problem> {
        let kind_name = self.kind.as_deref().unwrap_or("person");
        let kind = OrgKind::parse(kind_name).ok_or_else(|| {
            Problem::unprocessable(
                "invalid-organisation",
                "Invalid organisation",
                format!("kind `{kind_name}` is not one of company, person, household"),
            )
        })?;
        let details = validate::org_details(
            &self.name,
            kind,
            &self.billing_country,
            self.vat_id.as_deref().unwrap_or_default(),
        )
        .map_err(invalid("invalid-organisation", "Invalid organisation"))?;
        validate::address(self.billing_address.as_deref().unwrap_or_default())
            .map_err(invalid("invalid-organisation", "Invalid organisation"))?;
        Ok(pb::Organisation {
            org_id: OrgId::generate().to_string(),
            name: details.name,
            kind: kind.as_str().to_owned(),
            billing_country: details.country,
            vat_id: details.vat_id.unwrap_or_default(),
            billing_address: self.billing_address.clone().unwrap_or_default(),
        })
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignUpRequest {
    pub email: String,
    pub password: String,
    pub organisation: OrganisationRequest,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SignUpView {
    pub user_id: String,
    pub organisation_id: String,
    pub project_id: String,
    pub email_verified: bool,
    pub next: &'static str,
}

/// A new customer: an unverified user, a trial organisation and its `default` project; a
/// verification link goes by mail.
pub async fn sign_up(
    State(s): State<ApiState>,
    Source(source): Source,
    headers: axum::http::HeaderMap,
    ApiJson(req): ApiJson<SignUpRequest>,
) -> Result<Response, Problem> {
    // On a partner's domain the new organisation is the partner's customer.
    let partner = crate::partners::brand::host_partner(&s.cluster.state(), &headers);
    s.limiter.check(
        &format!("signup:{source}"),
        limits::SIGNUP_PER_ADDRESS,
        "sign-ups from this address",
    )?;
    let email = validate::email(&req.email).map_err(invalid("invalid-email", "Invalid email"))?;
    let organisation = req.organisation.validated()?;
    let local = email.split('@').next().unwrap_or_default().to_owned();
    let (pw, mail) = (req.password.clone(), email.clone());
    let hash = tokio::task::spawn_blocking(move || {
        password::check_strength(&pw, &[&mail, &local]).map(|()| password::hash(&pw))
    })
    .await
    .map_err(|e| Problem::internal(format!("password hashing failed: {e}")))?
    .map_err(|e| Problem::unprocessable("weak-password", "Weak password", e.0))?;
    if s.cluster.state().users_by_email.contains_key(&email) {
        return Err(Problem::new(
            StatusCode::CONFLICT,
            "email-taken",
            "Email already registered",
            format!("an account for {email} exists: log in, or reset its password"),
        ));
    }
    let user = UserId::generate();
    let project = ProjectId::generate();
    let (token, token_sha256) = mail_token();
    let org_id = organisation.org_id.clone();
    let command = pb::SignUp {
        user_id: user.to_string(),
        email: email.clone(),
        password_hash: hash,
        organisation: Some(organisation),
        project_id: project.to_string(),
        verification_sha256: token_sha256,
        verification_expires_at_unix_ms: crate::clock::now_ms() + VERIFY_TTL_MS,
        partner_id: partner.as_ref().map(|p| p.id.clone()).unwrap_or_default(),
    };
    s.cluster
        .propose_as(
            actor_of(&Principal::Anonymous, &source),
            Body::SignUp(command),
        )
        .await??;
    let (brand, base) = match &partner {
        Some(p) => (
            p.display_name().to_owned(),
            crate::partners::brand::partner_url(&s.public_url, p),
        ),
        None => ("VMCloud".to_owned(), s.public_url.clone()),
    };
    let link = format!("{base}/verify?user={user}&token={token}");
    let body = format!(
        "Welcome to {brand}.\n\nConfirm your email address within 24 hours by opening this link:\n\n  {link}\n\nor run:  vmcloud verify-email {user} {token}\n\nIf you did not sign up, ignore this mail.\n"
    );
    s.mailer
        .send(
            &email,
            &format!("Confirm your email address for {brand}"),
            &body,
        )
        .await
        .map_err(|e| Problem::internal(format!("{}", vmcloud_proto::ErrorChain(&e))))?;
    Ok(crate::api::context::created(
        format!("/v1/users/{user}"),
        SignUpView {
            user_id: user.to_string(),
            organisation_id: org_id,
            project_id: project.to_string(),
            email_verified: false,
            next: "open the link in the verification mail, then log in",
        },
    ))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct VerifyQuery {
    pub user: String,
    pub token: String,
}

/// Confirms an email address from the mailed link (single use, 24 hours).
pub async fn verify_email(
    State(s): State<ApiState>,
    Source(source): Source,
    ApiQuery(q): ApiQuery<VerifyQuery>,
) -> Result<Json<serde_json::Value>, Problem> {
    let bad = || {
        Problem::unprocessable(
            "invalid-link",
            "Invalid verification link",
            "this verification link is not valid (mistyped, already used, or expired); log in to ask for a new one",
        )
    };
    let user = UserId::parse(&q.user).map_err(|_| bad())?;
    let command = pb::VerifyEmail {
        user_id: user.to_string(),
        token_sha256: mail_token_sha256(&q.token),
    };
    match s
        .cluster
        .propose_as(
            actor_of(&Principal::Anonymous, &source),
            Body::VerifyEmail(command),
        )
        .await?
    {
        Ok(_) => Ok(Json(serde_json::json!({
            "user_id": user.to_string(),
            "email_verified": true,
            "next": "log in: vmcloud login, or POST /v1/login",
        }))),
        Err(crate::state::Rejected::Invalid(msg)) => Err(Problem::unprocessable(
            "invalid-link",
            "Invalid verification link",
            msg,
        )),
        Err(_) => Err(bad()),
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub email: String,
    pub password: String,
    /// The authenticator app's current code, for an account with two-step verification.
    #[serde(default)]
    pub totp_code: Option<String>,
    /// Or one of its recovery codes (each works once).
    #[serde(default)]
    pub recovery_code: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LoginView {
    pub user_id: String,
    /// `vms_…`: send as `Authorization: Bearer <token>`; browsers get it as a cookie.
    pub token: String,
    pub expires_at: String,
}

/// Logs in with email and password: a login session (a bearer token, and an `HttpOnly;
/// Secure; SameSite=Lax` cookie for browsers).
pub async fn login(
    State(s): State<ApiState>,
    Source(source): Source,
    ApiJson(req): ApiJson<LoginRequest>,
) -> Result<Response, Problem> {
    let wrong =
        || Problem::unauthorized("wrong email or password (reset the password if you forgot it)");
    s.limiter.check(
        &format!("login:{source}"),
        limits::LOGIN_PER_ADDRESS,
        "log-in attempts from this address",
    )?;
    let email = validate::email(&req.email).map_err(|_| wrong())?;
    s.limiter.check(
        &format!("login-account:{email}"),
        limits::LOGIN_PER_ACCOUNT,
        "log-in attempts for this account",
    )?;
    let state = s.cluster.state();
    let user = state
        .users_by_email
        .get(&email)
        .and_then(|id| state.users.get(id))
        .cloned();
    drop(state);
    let stored = user.as_ref().map(|u| u.password_hash.clone());
    let pw = req.password;
    let ok = tokio::task::spawn_blocking(move || password::verify(&pw, stored.as_deref()))
        .await
        .map_err(|e| Problem::internal(format!("password check failed: {e}")))?;
    let user = match user {
        Some(u) if ok => u,
        _ => return Err(wrong()),
    };
    if !user.email_verified {
        return Err(Problem::new(
            StatusCode::FORBIDDEN,
            "email-not-verified",
            "Email not verified",
            format!(
                "confirm {} first: open the link in the verification mail",
                user.email
            ),
        ));
    }
    let factor = check_second_factor(
        &s,
        &user,
        req.totp_code.as_deref(),
        req.recovery_code.as_deref(),
    )?;
    let token = LoginToken::generate();
    let expires = crate::clock::now_ms() + SESSION_TTL_MS;
    let principal = Principal::User {
        id: user.id.clone(),
        mfa: factor.used(),
    };
    let command = pb::StartLoginSession {
        session_id: token.session_id.clone(),
        user_id: user.id.to_string(),
        secret_sha256: token.secret_sha256(),
        expires_at_unix_ms: expires,
        mfa: factor.used(),
        totp_step: factor.totp_step,
        recovery_code_sha256: factor.recovery_sha256,
    };
    s.cluster
        .propose_as(
            actor_of(&principal, &source),
            Body::StartLoginSession(command),
        )
        .await??;
    let cookie = format!(
        "{SESSION_COOKIE}={token}; HttpOnly; Secure; SameSite=Lax; Path=/; Max-Age={}",
        SESSION_TTL_MS / 1000
    );
    let mut headers = HeaderMap::new();
    headers.insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&cookie).expect("a cookie of hex and ASCII"),
    );
    Ok((
        headers,
        Json(LoginView {
            user_id: user.id.to_string(),
            token: token.to_string(),
            expires_at: rfc3339(expires),
        }),
    )
        .into_response())
}

fn user_of(who: &Who) -> Result<UserId, Problem> {
    match &who.principal {
        Principal::User { id, .. } => Ok(id.clone()),
        _ => Err(Problem::new(
            StatusCode::BAD_REQUEST,
            "not-a-user",
            "Not a user",
            "this is for logged-in users; an API key has no login session",
        )),
    }
}

fn cleared_cookie() -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::SET_COOKIE,
        HeaderValue::from_static(
            "vmcloud_session=; HttpOnly; Secure; SameSite=Lax; Path=/; Max-Age=0",
        ),
    );
    headers
}

/// Ends this login session.
pub async fn logout(State(s): State<ApiState>, who: Who) -> Result<Response, Problem> {
    let user = user_of(&who)?;
    let session = who.session.clone().unwrap_or_default();
    let command = pb::EndLoginSessions {
        user_id: user.to_string(),
        session_id: session,
    };
    s.cluster
        .propose_as(who.actor(), Body::EndLoginSessions(command))
        .await??;
    Ok((cleared_cookie(), StatusCode::NO_CONTENT).into_response())
}

/// Ends every login session of the caller (every browser and CLI).
pub async fn logout_everywhere(State(s): State<ApiState>, who: Who) -> Result<Response, Problem> {
    let user = user_of(&who)?;
    let command = pb::EndLoginSessions {
        user_id: user.to_string(),
        session_id: String::new(),
    };
    s.cluster
        .propose_as(who.actor(), Body::EndLoginSessions(command))
        .await??;
    Ok((cleared_cookie(), StatusCode::NO_CONTENT).into_response())
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordRequest {
    pub current_password: String,
    pub new_password: String,
}

/// Changes the caller's password; every login session ends (log in again).
pub async fn change_password(
    State(s): State<ApiState>,
    who: Who,
    ApiJson(req): ApiJson<PasswordRequest>,
) -> Result<Response, Problem> {
    let user_id = user_of(&who)?;
    let user = s
        .cluster
        .state()
        .users
        .get(&user_id)
        .cloned()
        .ok_or_else(|| Problem::unauthorized("log in again"))?;
    let (current, new, email) = (req.current_password, req.new_password, user.email.clone());
    let stored = user.password_hash.clone();
    let hash = tokio::task::spawn_blocking(move || {
        if !password::verify(&current, Some(&stored)) {
            return Err(Problem::new(
                StatusCode::FORBIDDEN,
                "wrong-password",
                "Wrong password",
                "the current password is not right",
            ));
        }
        password::check_strength(&new, &[&email])
            .map_err(|e| Problem::unprocessable("weak-password", "Weak password", e.0))?;
        Ok(password::hash(&new))
    })
    .await
    .map_err(|e| Problem::internal(format!("password hashing failed: {e}")))??;
    s.cluster
        .propose_as(
            who.actor(),
            Body::SetPassword(pb::SetPassword {
                user_id: user_id.to_string(),
                password_hash: hash,
            }),
        )
        .await??;
    Ok((cleared_cookie(), StatusCode::NO_CONTENT).into_response())
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MeView {
    pub principal: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email_verified: Option<bool>,
    /// Organisations the user belongs to, with their role there.
    pub organisations: Vec<Membership>,
    /// Projects the principal works in (an API key: its own), with its role when one is set
    /// on the project.
    pub projects: Vec<Membership>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider_role: Option<String>,
    /// Two-step verification is on for the user.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub totp_enabled: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recovery_codes_left: Option<usize>,
    /// This login session checked a second factor.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_mfa: Option<bool>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Membership {
    pub id: String,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
}

/// Who the caller is, and where they belong.
pub async fn me(State(s): State<ApiState>, who: Who) -> Result<Json<MeView>, Problem> {
    let state = s.cluster.state();
    let mut view = MeView {
        principal: who.principal.to_string(),
        user_id: None,
        email: None,
        email_verified: None,
        organisations: Vec::new(),
        projects: Vec::new(),
        provider_role: None,
        totp_enabled: None,
        recovery_codes_left: None,
        session_mfa: None,
    };
    match &who.principal {
        Principal::User { id, mfa } => {
            let user = state
                .users
                .get(id)
                .ok_or_else(|| Problem::unauthorized("log in again"))?;
            view.user_id = Some(id.to_string());
            view.email = Some(user.email.clone());
            view.email_verified = Some(user.email_verified);
            view.totp_enabled = Some(user.totp_sealed.is_some());
            view.recovery_codes_left = Some(user.recovery_sha256.len());
            view.session_mfa = Some(*mfa);
            view.provider_role = state.provider_role(id).map(|r| r.as_str().to_owned());
            view.organisations = state
                .organisations
                .values()
                .filter_map(|o| {
                    o.members.get(id).map(|r| Membership {
                        id: o.id.to_string(),
                        name: o.name.clone(),
                        role: Some(r.as_str().to_owned()),
                    })
                })
                .collect();
            view.projects = state
                .projects_of_user(id)
                .into_iter()
                .map(|p| Membership {
                    id: p.id.to_string(),
                    name: p.name.clone(),
                    role: p.members.get(id).map(|r| r.as_str().to_owned()),
                })
                .collect();
        }
        Principal::ApiKey(key_id) => {
            if let Some(key) = state.api_keys.get(key_id)
                && let Some(p) = state.projects.get(&key.project)
            {
                view.projects.push(Membership {
                    id: p.id.to_string(),
                    name: p.name.clone(),
                    role: Some(key.role.as_str().to_owned()),
                });
            }
        }
        _ => {}
    }
    Ok(Json(view))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = LoginSessionView)]
pub struct SessionView {
    pub id: String,
    pub created_at: String,
    pub expires_at: String,
    /// Started with a second factor.
    pub mfa: bool,
    /// The session this request came with.
    pub current: bool,
}

/// The caller's login sessions (browsers and CLIs), newest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LoginSessionList {
    pub sessions: Vec<SessionView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// The user's live login sessions, oldest first, a page at a time.
pub async fn sessions(
    State(s): State<ApiState>,
    who: Who,
    ApiQuery(q): ApiQuery<crate::api::pagination::ListQuery>,
) -> Result<Json<LoginSessionList>, Problem> {
    let user = user_of(&who)?;
    let now = crate::clock::now_ms();
    let state = s.cluster.state();
    let live = state
        .login_sessions
        .iter()
        .filter(|(_, l)| l.user == user && l.expires_at_ms > now)
        .map(|(id, l)| ((l.created_at_ms, id.clone()), (id, l)))
        .collect();
    let (page, next_cursor) = q.page(live)?;
    Ok(Json(LoginSessionList {
        sessions: page
            .into_iter()
            .map(|(id, l)| SessionView {
                id: id.clone(),
                created_at: rfc3339(l.created_at_ms),
                expires_at: rfc3339(l.expires_at_ms),
                mfa: l.mfa,
                current: who.session.as_deref() == Some(id.as_str()),
            })
            .collect(),
        next_cursor,
    }))
}

/// Ends one of the caller's login sessions (another browser, a lost laptop's CLI).
pub async fn end_session(
    State(s): State<ApiState>,
    who: Who,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Result<StatusCode, Problem> {
    // An API key has no sessions: none of them is its to end.
    let user =
        user_of(&who).map_err(|_| Problem::not_found(format!("session {id} does not exist")))?;
    let mine = s
        .cluster
        .state()
        .login_sessions
        .get(&id)
        .is_some_and(|l| l.user == user);
    if !mine {
        return Err(Problem::not_found(format!("session {id} does not exist")));
    }
    s.cluster
        .propose_as(
            who.actor(),
            Body::EndLoginSessions(pb::EndLoginSessions {
                user_id: user.to_string(),
                session_id: id,
            }),
        )
        .await??;
    Ok(StatusCode::NO_CONTENT)
}

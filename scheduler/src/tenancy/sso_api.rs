//! OpenID Connect log-in per organisation (the `openidconnect` crate): an owner or admin
//! sets the provider (`PUT /v1/organisations/{id}/sso`: issuer, client id, client secret —
//! sealed —, allowed email domains, the role of new members); people start at
//! `GET /v1/sso/start?email=…` (or `?org=…`), go to the provider, and come back to
//! `{public_url}/sso/callback`, which the pages pass to `GET /v1/sso/callback`.
//!
//! The round trip's state (CSRF `state`, `nonce`, PKCE verifier, organisation, expiry) travels
//! in a `vmcloud_sso` cookie sealed with the replicas' secrets key, so any replica can finish a
//! log-in another started. The callback checks the state, exchanges the code (with the PKCE
//! verifier and the client secret), verifies the ID token (signature against the provider's
//! keys, issuer, audience, nonce, expiry), then requires a verified email in an allowed domain.
//! Each refusal is a problem+json that says which check failed.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreIdToken, CoreIdTokenClaims, CoreIdTokenVerifier,
    CoreProviderMetadata,
};
use openidconnect::{
    AuthorizationCode, ClaimsVerificationError, ClientId, ClientSecret, CsrfToken,
    EndpointMaybeSet, EndpointNotSet, EndpointSet, IssuerUrl, Nonce, OAuth2TokenResponse as _,
    PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope, TokenResponse as _,
};
use serde::{Deserialize, Serialize};
use vmcloud_proto::pb::{self, command::Body};
use vmcloud_proto::{OrgId, UserId};

use crate::api::context::{ApiJson, ApiQuery, ApiState, SESSION_COOKIE, Source, Who, rfc3339};
use crate::api::problem::Problem;
use crate::secrets::SecretsKey;
use crate::tenancy::api_key::LoginToken;
use crate::tenancy::authz::{Action, Principal, Resource};
use crate::tenancy::commands::actor_of;
use crate::tenancy::sso::{domain_of, seal_purpose};
use crate::tenancy::types::{Organisation, Role};
use crate::tenancy::{password, validate};

/// The cookie the round trip's state travels in.
pub const SSO_COOKIE: &str = "vmcloud_sso";
/// How long a started log-in may take at the provider.
const SSO_TTL_MS: i64 = 10 * 60_000;
/// How long an SSO login session lasts (as a password one).
const SESSION_TTL_MS: i64 = 7 * 24 * 3_600_000;

type Oidc = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

fn secrets(s: &ApiState) -> Result<&SecretsKey, Problem> {
    s.secrets.as_deref().ok_or_else(|| {
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no-secrets-key",
            "No secrets key",
            "this replica was started without --secrets-key, so it cannot keep OIDC client secrets; ask the operators to configure it",
        )
    })
}

fn provider_problem(detail: String) -> Problem {
    Problem::new(
        StatusCode::BAD_GATEWAY,
        "sso-provider-error",
        "OpenID provider error",
        detail,
    )
}

/// An HTTP client for the provider: no redirects (the OIDC specs' advice), a short timeout.
fn http() -> Result<reqwest::Client, Problem> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .map_err(|e| Problem::internal(format!("cannot build the HTTP client: {e}")))
}

fn redirect_uri(s: &ApiState) -> Result<RedirectUrl, Problem> {
    RedirectUrl::new(format!("{}/sso/callback", s.public_url))
        .map_err(|e| Problem::internal(format!("the public URL makes no redirect URI: {e}")))
}

/// Discovers the provider and builds its client.
async fn client(
    http: &reqwest::Client,
    issuer: &str,
    client_id: &str,
    secret: String,
    redirect: RedirectUrl,
) -> Result<Oidc, Problem> {
    let issuer_url = IssuerUrl::new(issuer.to_owned()).map_err(|e| {
        Problem::unprocessable(
            "invalid-sso",
            "Invalid SSO settings",
            format!("issuer `{issuer}` is not a URL: {e}"),
        )
    })?;
    let metadata = CoreProviderMetadata::discover_async(issuer_url, http)
        .await
        .map_err(|e| {
            provider_problem(format!(
                "cannot read the OpenID configuration of {issuer} ({}/.well-known/openid-configuration): {}",
                issuer.trim_end_matches('/'),
                vmcloud_proto::ErrorChain(&e)
            ))
        })?;
    Ok(CoreClient::from_provider_metadata(
        metadata,
        ClientId::new(client_id.to_owned()),
        Some(ClientSecret::new(secret)),
    )
    .set_redirect_uri(redirect))
}

async fn org_client(s: &ApiState, org: &Organisation) -> Result<Oidc, Problem> {
    let sso = org.sso.as_ref().ok_or_else(|| not_configured(&org.id))?;
    let secret = secrets(s)?
        .open(&sso.client_secret_sealed, &seal_purpose(&org.id))
        .map_err(|e| Problem::internal(e.to_string()))?;
    let secret = String::from_utf8(secret)
        .map_err(|_| Problem::internal("the sealed client secret is not text"))?;
    client(
        &http()?,
        &sso.issuer,
        &sso.client_id,
        secret,
        redirect_uri(s)?,
    )
    .await
}

fn not_configured(org: &OrgId) -> Problem {
    Problem::new(
        StatusCode::NOT_FOUND,
        "sso-not-configured",
        "No SSO log-in",
        format!("organisation {org} has no SSO log-in; log in with a password"),
    )
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SsoRequest {
    /// The provider's issuer URL (its discovery document is at
    /// `<issuer>/.well-known/openid-configuration`).
    pub issuer: String,
    pub client_id: String,
    pub client_secret: String,
    /// Email domains whose (verified) addresses may log in.
    pub allowed_domains: Vec<String>,
    /// The role of someone who logs in for the first time (default `member`).
    #[serde(default)]
    pub default_role: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SsoView {
    pub issuer: String,
    pub client_id: String,
    pub allowed_domains: Vec<String>,
    pub default_role: &'static str,
    /// Where the provider must send people back (register it there).
    pub redirect_uri: String,
}

/// Sets the organisation's OpenID provider, after checking it answers discovery.
pub async fn put_config(
    State(s): State<ApiState>,
    who: Who,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<SsoRequest>,
) -> Result<Json<SsoView>, Problem> {
    let org = OrgId::parse(&id)
        .map_err(|_| Problem::not_found(format!("organisation `{id}` does not exist")))?;
    who.may(&s, Action::ManageOrg, Resource::Org(&org))?;
    let invalid =
        |detail: String| Problem::unprocessable("invalid-sso", "Invalid SSO settings", detail);
    let role_name = req.default_role.as_deref().unwrap_or("member");
    let role = Role::parse(role_name)
        .filter(|r| r.is_org_role() && *r != Role::Owner)
        .ok_or_else(|| {
            invalid(format!(
                "default_role `{role_name}` is not one of admin, billing, member, viewer"
            ))
        })?;
    let domains: Vec<String> = req
        .allowed_domains
        .iter()
        .map(|d| d.trim().trim_start_matches('@').to_ascii_lowercase())
        .collect();
    if domains.is_empty()
        || domains
            .iter()
            .any(|d| validate::email(&format!("x@{d}")).is_err())
    {
        return Err(invalid(format!(
            "allowed_domains must list email domains (example.com): {:?}",
            req.allowed_domains
        )));
    }
    if req.client_id.trim().is_empty() || req.client_secret.is_empty() {
        return Err(invalid(
            "client_id and client_secret are required".to_owned(),
        ));
    }
    // The provider must answer now: a typo shows here, not at the first log-in.
    client(
        &http()?,
        &req.issuer,
        &req.client_id,
        req.client_secret.clone(),
        redirect_uri(&s)?,
    )
    .await?;
    let sealed = secrets(&s)?.seal(req.client_secret.as_bytes(), &seal_purpose(&org));
    s.cluster
        .propose_as(
            who.actor(),
            Body::SetOrganisationSso(pb::SetOrganisationSso {
                org_id: org.to_string(),
                issuer: req.issuer.clone(),
                client_id: req.client_id.clone(),
                client_secret_sealed: sealed,
                allowed_domains: domains.clone(),
                default_role: role.as_str().to_owned(),
            }),
        )
        .await??;
    Ok(Json(SsoView {
        issuer: req.issuer,
        client_id: req.client_id,
        allowed_domains: domains,
        default_role: role.as_str(),
        redirect_uri: redirect_uri(&s)?.to_string(),
    }))
}

/// Turns the organisation's SSO log-in off.
pub async fn delete_config(
    State(s): State<ApiState>,
    who: Who,
    Path(id): Path<String>,
) -> Result<StatusCode, Problem> {
    let org = OrgId::parse(&id)
        .map_err(|_| Problem::not_found(format!("organisation `{id}` does not exist")))?;
    who.may(&s, Action::ManageOrg, Resource::Org(&org))?;
    s.cluster
        .propose_as(
            who.actor(),
            Body::SetOrganisationSso(pb::SetOrganisationSso {
                org_id: org.to_string(),
                ..Default::default()
            }),
        )
        .await??;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct StartQuery {
    /// The organisation whose provider to use…
    #[serde(default)]
    pub org: Option<String>,
    /// …or the email of the person logging in (its domain finds the organisation).
    #[serde(default)]
    pub email: Option<String>,
}

/// What travels, sealed, in the cookie between start and callback.
#[derive(Debug, Serialize, Deserialize)]
struct RoundTrip {
    org: String,
    state: String,
    nonce: String,
    pkce_verifier: String,
    expires_at_ms: i64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct StartView {
    /// Send the browser here.
    pub authorization_url: String,
    pub organisation: String,
}

fn cookie_header(value: &str, max_age_s: i64) -> HeaderValue {
    HeaderValue::from_str(&format!(
        "{SSO_COOKIE}={value}; HttpOnly; Secure; SameSite=Lax; Path=/; Max-Age={max_age_s}"
    ))
    .expect("a sealed value is cookie-safe")
}

/// Starts an SSO log-in: the provider's authorization URL (with state, nonce and a PKCE
/// challenge), and the sealed round trip as a cookie.
pub async fn start(
    State(s): State<ApiState>,
    ApiQuery(q): ApiQuery<StartQuery>,
) -> Result<Response, Problem> {
    let org = {
        let state = s.cluster.state();
        match (&q.org, &q.email) {
            (Some(id), _) => {
                let id = OrgId::parse(id).map_err(|_| {
                    Problem::not_found(format!("organisation `{id}` does not exist"))
                })?;
                let org = state.organisations.get(&id).ok_or_else(|| {
                    Problem::not_found(format!("organisation {id} does not exist"))
                })?;
                if org.sso.is_none() {
                    return Err(not_configured(&id));
                }
                org.clone()
            }
            (None, Some(email)) => {
                let domain = domain_of(email).unwrap_or_default();
                state
                    .organisations
                    .values()
                    .find(|o| {
                        o.sso
                            .as_ref()
                            .is_some_and(|c| c.allowed_domains.contains(&domain))
                    })
                    .cloned()
                    .ok_or_else(|| {
                        Problem::new(
                            StatusCode::NOT_FOUND,
                            "sso-not-configured",
                            "No SSO log-in",
                            format!(
                                "no organisation has SSO for `{domain}`; log in with a password"
                            ),
                        )
                    })?
            }
            (None, None) => {
                return Err(Problem::unprocessable(
                    "invalid-query",
                    "Invalid query string",
                    "say whose SSO to use: ?email=you@company.example or ?org=<organisation id>",
                ));
            }
        }
    };
    let client = org_client(&s, &org).await?;
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, state, nonce) = client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .add_scope(Scope::new("email".to_owned()))
        .set_pkce_challenge(challenge)
        .url();
    let trip = RoundTrip {
        org: org.id.to_string(),
        state: state.secret().clone(),
        nonce: nonce.secret().clone(),
        pkce_verifier: verifier.secret().clone(),
        expires_at_ms: crate::clock::now_ms() + SSO_TTL_MS,
    };
    let sealed = secrets(&s)?.seal(
        &serde_json::to_vec(&trip).expect("plain data"),
        "sso-round-trip",
    );
    let mut headers = HeaderMap::new();
    headers.insert(
        header::SET_COOKIE,
        cookie_header(&sealed, SSO_TTL_MS / 1000),
    );
    Ok((
        headers,
        Json(StartView {
            authorization_url: url.to_string(),
            organisation: org.id.to_string(),
        }),
    )
        .into_response())
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct CallbackQuery {
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub state: Option<String>,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub error_description: Option<String>,
    #[serde(default)]
    pub iss: Option<String>,
}

/// The ID token's claims once its signature (against the provider's keys), issuer, audience,
/// nonce and expiry check out; otherwise a problem that names the failed check.
fn verified_claims<'t>(
    token: &'t CoreIdToken,
    verifier: &CoreIdTokenVerifier<'_>,
    nonce: &str,
) -> Result<&'t CoreIdTokenClaims, Problem> {
    token
        .claims(verifier, &Nonce::new(nonce.to_owned()))
        .map_err(|e| {
            let which = match &e {
                ClaimsVerificationError::InvalidAudience(_) => "its audience is not this client",
                ClaimsVerificationError::InvalidIssuer(_) => "its issuer is not the configured one",
                ClaimsVerificationError::InvalidNonce(_) => {
                    "its nonce is not the one this log-in sent (a replayed token?)"
                }
                ClaimsVerificationError::SignatureVerification(_) => {
                    "its signature does not verify against the provider's keys"
                }
                ClaimsVerificationError::Expired(_) => "it has expired",
                _ => "it failed verification",
            };
            refused(
                "sso-invalid-token",
                "Invalid ID token",
                format!("the ID token was refused: {which} ({e})"),
            )
        })
}

/// Whether the provider says a second factor was used (RFC 8176 method references).
fn second_factor_at_provider(claims: &CoreIdTokenClaims) -> bool {
    claims.auth_method_refs().is_some_and(|methods| {
        methods
            .iter()
            .any(|m| matches!(m.as_str(), "mfa" | "otp" | "hwk" | "swk" | "sc"))
    })
}

fn refused(kind: &'static str, title: &'static str, detail: String) -> Problem {
    let status = match kind {
        "sso-state-mismatch" | "sso-expired" => StatusCode::BAD_REQUEST,
        "sso-email-not-allowed" => StatusCode::FORBIDDEN,
        _ => StatusCode::UNAUTHORIZED,
    };
    Problem::new(status, kind, title, detail)
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SsoLoginView {
    pub user_id: String,
    pub organisation: String,
    pub token: String,
    pub expires_at: String,
}

/// Finishes an SSO log-in: checks everything the provider sent, then starts a session.
pub async fn callback(
    State(s): State<ApiState>,
    Source(source): Source,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<CallbackQuery>,
) -> Result<Response, Problem> {
    if let Some(error) = &q.error {
        return Err(refused(
            "sso-provider-refused",
            "The provider refused",
            format!(
                "the OpenID provider answered `{error}`{}; try again, or log in with a password",
                q.error_description
                    .as_deref()
                    .map(|d| format!(" ({d})"))
                    .unwrap_or_default()
            ),
        ));
    }
    let expired = || {
        refused(
            "sso-expired",
            "SSO log-in expired",
            "this SSO log-in was not started from this browser, or took more than 10 minutes: start again".to_owned(),
        )
    };
    let sealed = crate::api::context::cookie(&headers, SSO_COOKIE).ok_or_else(expired)?;
    let trip: RoundTrip = secrets(&s)?
        .open(&sealed, "sso-round-trip")
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(expired)?;
    if trip.expires_at_ms < crate::clock::now_ms() {
        return Err(expired());
    }
    if q.state.as_deref() != Some(trip.state.as_str()) {
        return Err(refused(
            "sso-state-mismatch",
            "SSO state mismatch",
            "the provider's answer does not belong to the log-in this browser started (wrong `state`): start again".to_owned(),
        ));
    }
    let code = q.code.clone().ok_or_else(|| {
        refused(
            "sso-invalid-response",
            "Invalid provider response",
            "the provider sent no authorization code".to_owned(),
        )
    })?;
    let org_id = OrgId::parse(&trip.org).map_err(|_| expired())?;
    let org = s
        .cluster
        .state()
        .organisations
        .get(&org_id)
        .cloned()
        .ok_or_else(|| not_configured(&org_id))?;
    let client = org_client(&s, &org).await?;
    let http = http()?;
    let token = client
        .exchange_code(AuthorizationCode::new(code))
        .map_err(|e| provider_problem(format!("the provider has no token endpoint: {e}")))?
        .set_pkce_verifier(PkceCodeVerifier::new(trip.pkce_verifier.clone()))
        .request_async(&http)
        .await
        .map_err(|e| {
            refused(
                "sso-code-refused",
                "Code refused",
                format!(
                    "the provider refused the authorization code (used already, expired, or not for this client): {}",
                    vmcloud_proto::ErrorChain(&e)
                ),
            )
        })?;
    let id_token = token.id_token().ok_or_else(|| {
        refused(
            "sso-invalid-token",
            "Invalid ID token",
            "the provider sent no ID token".to_owned(),
        )
    })?;
    let claims = verified_claims(id_token, &client.id_token_verifier(), &trip.nonce)?;
    // The email and whether the provider verified it: in the ID token, or (as providers that
    // keep the ID token small do) from the userinfo endpoint for the same subject.
    let mut email = claims.email().map(|e| e.as_str().to_owned());
    let mut verified = claims.email_verified() == Some(true);
    if email.is_none() {
        let info: openidconnect::UserInfoClaims<
            openidconnect::EmptyAdditionalClaims,
            openidconnect::core::CoreGenderClaim,
        > = client
            .user_info(token.access_token().clone(), Some(claims.subject().clone()))
            .map_err(|e| provider_problem(format!("the provider has no userinfo endpoint: {e}")))?
            .request_async(&http)
            .await
            .map_err(|e| {
                provider_problem(format!(
                    "the provider's userinfo answer was refused: {}",
                    vmcloud_proto::ErrorChain(&e)
                ))
            })?;
        email = info.email().map(|e| e.as_str().to_owned());
        verified = info.email_verified() == Some(true);
    }
    let email = email.and_then(|e| validate::email(&e).ok());
    let sso = org.sso.as_ref().ok_or_else(|| not_configured(&org.id))?;
    let email = match email {
        Some(e) if verified => e,
        Some(e) => {
            return Err(refused(
                "sso-email-not-allowed",
                "Email not allowed",
                format!("the provider has not verified {e}; verify it there first"),
            ));
        }
        None => {
            return Err(refused(
                "sso-email-not-allowed",
                "Email not allowed",
                "the provider sent no email (allow the `email` scope for this client)".to_owned(),
            ));
        }
    };
    let domain = domain_of(&email).unwrap_or_default();
    if !sso.allowed_domains.contains(&domain) {
        return Err(refused(
            "sso-email-not-allowed",
            "Email not allowed",
            format!(
                "{email} is not in a domain that the organisation \"{}\" allows for SSO ({}); log in with a password, or ask its admins",
                org.name,
                sso.allowed_domains.join(", ")
            ),
        ));
    }
    let mfa = second_factor_at_provider(claims);
    let existing = s.cluster.state().users_by_email.get(&email).cloned();
    let unusable = match existing {
        Some(_) => String::new(),
        None => {
            tokio::task::spawn_blocking(|| password::hash(&crate::tenancy::api_key::mail_token().0))
                .await
                .map_err(|e| Problem::internal(format!("hashing failed: {e}")))?
        }
    };
    let new_user = UserId::generate();
    let login = LoginToken::generate();
    let expires = crate::clock::now_ms() + SESSION_TTL_MS;
    s.cluster
        .propose_as(
            actor_of(&Principal::Anonymous, &source),
            Body::SsoLogin(pb::SsoLogin {
                org_id: org.id.to_string(),
                new_user_id: new_user.to_string(),
                email: email.clone(),
                unusable_password_hash: unusable,
                session_id: login.session_id.clone(),
                secret_sha256: login.secret_sha256(),
                expires_at_unix_ms: expires,
                mfa,
            }),
        )
        .await??;
    let user = existing.unwrap_or(new_user);
    let mut headers = HeaderMap::new();
    headers.append(
        header::SET_COOKIE,
        HeaderValue::from_str(&format!(
            "{SESSION_COOKIE}={login}; HttpOnly; Secure; SameSite=Lax; Path=/; Max-Age={}",
            SESSION_TTL_MS / 1000
        ))
        .expect("a cookie of hex and ASCII"),
    );
    headers.append(header::SET_COOKIE, cookie_header("", 0));
    Ok((
        headers,
        Json(SsoLoginView {
            user_id: user.to_string(),
            organisation: org.id.to_string(),
            token: login.to_string(),
            expires_at: rfc3339(expires),
        }),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use openidconnect::core::{
        CoreEdDsaPrivateSigningKey, CoreJsonWebKeySet, CoreJwsSigningAlgorithm,
    };
    use openidconnect::{
        Audience, EmptyAdditionalClaims, EndUserEmail, IdTokenClaims, PrivateSigningKey as _,
        StandardClaims, SubjectIdentifier,
    };

    const ISSUER: &str = "https://id.analytical.example";

    fn key(kid: &str) -> CoreEdDsaPrivateSigningKey {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        CoreEdDsaPrivateSigningKey::from_ed25519_pem(
            &pair.serialize_pem(),
            Some(openidconnect::JsonWebKeyId::new(kid.to_owned())),
        )
        .unwrap()
    }

    fn token(signer: &CoreEdDsaPrivateSigningKey, audience: &str, nonce: &str) -> CoreIdToken {
        let now = chrono::Utc::now();
        let claims = IdTokenClaims::new(
            IssuerUrl::new(ISSUER.to_owned()).unwrap(),
            vec![Audience::new(audience.to_owned())],
            now + chrono::Duration::minutes(5),
            now,
            StandardClaims::new(SubjectIdentifier::new("ada".to_owned()))
                .set_email(Some(EndUserEmail::new("ada@analytical.example".to_owned()))),
            EmptyAdditionalClaims {},
        )
        .set_nonce(Some(Nonce::new(nonce.to_owned())));
        CoreIdToken::new(claims, signer, CoreJwsSigningAlgorithm::EdDsa, None, None).unwrap()
    }

    fn detail(r: Result<&CoreIdTokenClaims, Problem>) -> String {
        let p = r.unwrap_err();
        assert_eq!(p.kind, "sso-invalid-token");
        p.detail
    }

    #[test]
    fn id_tokens_with_a_wrong_signature_audience_nonce_or_issuer_are_refused_by_name() {
        let provider = key("provider");
        let keys = CoreJsonWebKeySet::new(vec![provider.as_verification_key()]);
        let verifier = |issuer: &str| {
            CoreIdTokenVerifier::new_confidential_client(
                ClientId::new("vmcloud-console".to_owned()),
                ClientSecret::new("secret".to_owned()),
                IssuerUrl::new(issuer.to_owned()).unwrap(),
                keys.clone(),
            )
            .set_allowed_algs(vec![CoreJwsSigningAlgorithm::EdDsa])
        };
        let good = token(&provider, "vmcloud-console", "n-1");
        let claims = verified_claims(&good, &verifier(ISSUER), "n-1").unwrap();
        assert_eq!(claims.subject().as_str(), "ada");
        assert!(!second_factor_at_provider(claims));
        let with_otp = claims.clone().set_auth_method_refs(Some(vec![
            openidconnect::AuthenticationMethodReference::new("pwd".to_owned()),
            openidconnect::AuthenticationMethodReference::new("otp".to_owned()),
        ]));
        assert!(second_factor_at_provider(&with_otp));

        let d = detail(verified_claims(&good, &verifier(ISSUER), "n-2"));
        assert!(d.contains("nonce"), "{d}");
        let other_client = token(&provider, "someone-else", "n-1");
        let d = detail(verified_claims(&other_client, &verifier(ISSUER), "n-1"));
        assert!(d.contains("audience"), "{d}");
        let d = detail(verified_claims(
            &good,
            &verifier("https://evil.example"),
            "n-1",
        ));
        assert!(d.contains("issuer"), "{d}");
        // Signed by a key the provider does not publish (same key id).
        let forged = token(&key("provider"), "vmcloud-console", "n-1");
        let d = detail(verified_claims(&forged, &verifier(ISSUER), "n-1"));
        assert!(d.contains("signature"), "{d}");
    }
}

//! Refused requests go to the audit trail. Every answer in 4xx (a wrong password or code, a
//! used link, a role that does not allow it, another tenant's object, a rate limit) is logged
//! at `warn` under the `audit` target with the client's address, the method, the path (never
//! the query string: links carry tokens there), the status and the problem's kind.
//!
//! Refusals that matter for security also go to the replicated, hash-chained audit trail
//! ([`crate::audit`]) as a `RecordRefusal` command: every `403`, and every `401` to a request
//! that tried to authenticate (it carried a key, a token or a session cookie, or it was a
//! log-in, a password change, a second factor, an SSO callback, an invitation). At most
//! [`limits::AUDITED_REFUSALS_PER_ADDRESS`] per address: beyond, they are only logged.

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use vmcloud_proto::pb;

use crate::api::context::{ApiState, SESSION_COOKIE, Source, Who, cookie};
use crate::api::limits;
use crate::api::problem::ProblemKind;
use crate::tenancy::authz::Principal;
use crate::tenancy::commands::actor_of;

/// Paths whose `401` is a failed attempt to prove who one is.
const AUTHENTICATING: [&str; 7] = [
    "/v1/login",
    "/v1/password",
    "/v1/password-reset/confirm",
    "/v1/me/totp",
    "/v1/me/totp/confirm",
    "/v1/sso/callback",
    "/v1/invitations/accept",
];

pub async fn refusals(
    State(s): State<ApiState>,
    Source(source): Source,
    request: Request,
    next: Next,
) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let credentials = request.headers().contains_key(header::AUTHORIZATION)
        || cookie(request.headers(), SESSION_COOKIE).is_some();
    // Who asked, found again for a 403 only (authenticating costs a hash).
    let headers = credentials.then(|| request.headers().clone());
    let response = next.run(request).await;
    let status = response.status();
    if !status.is_client_error() {
        return response;
    }
    let kind = response
        .extensions()
        .get::<ProblemKind>()
        .map(|k| k.0)
        .unwrap_or("-");
    tracing::warn!(
        target: "audit",
        source,
        %method,
        path,
        status = status.as_u16(),
        kind,
        "refused"
    );
    let worth_recording = status == StatusCode::FORBIDDEN
        || status == StatusCode::UNAUTHORIZED
            && (credentials || (method == Method::POST && AUTHENTICATING.contains(&path.as_str())));
    if worth_recording
        && s.limiter
            .take(
                &format!("audited-refusals:{source}"),
                limits::AUDITED_REFUSALS_PER_ADDRESS,
            )
            .is_ok()
    {
        let who = match (headers, status) {
            (Some(headers), StatusCode::FORBIDDEN) => {
                let (mut parts, ()) = Request::new(()).into_parts();
                parts.headers = headers;
                Who::of(&parts, &s).ok()
            }
            _ => None,
        };
        let principal = who.map_or(Principal::Anonymous, |w| w.principal);
        let actor = actor_of(&principal, &source);
        let refusal = pb::RecordRefusal {
            method: method.to_string(),
            path,
            status: status.as_u16() as u32,
            kind: kind.to_owned(),
        };
        if let Err(e) = s
            .cluster
            .propose_as(actor, pb::command::Body::RecordRefusal(refusal))
            .await
        {
            tracing::warn!(error = %e, "a refusal could not be written to the audit trail");
        }
    }
    response
}

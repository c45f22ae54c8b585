//! Refused requests go to the audit trail: every answer in 4xx (a wrong password or code, a
//! used link, a role that does not allow it, another tenant's object, a rate limit) is logged
//! at `warn` under the `audit` target with the client's address, the method, the path (never
//! the query string: links carry tokens there), the status and the problem's kind. The
//! replicated, hash-chained audit log of changes comes with the API contract (DESIGN.md §8).

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;

use crate::api::context::Source;
use crate::api::problem::ProblemKind;

pub async fn refusals(Source(source): Source, request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let response = next.run(request).await;
    let status = response.status();
    if status.is_client_error() {
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
    }
    response
}

//! RFC 9457 problem details: every API error is `application/problem+json` with a stable
//! `type` (`urn:vmcloud:problem:<kind>`), a short `title` and a `detail` that says what was
//! wrong and what to do.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use vmcloud_consensus::ProposeError;

use crate::state::Rejected;

/// The kind of an error answer, kept in the response's extensions for the audit trail.
#[derive(Debug, Clone, Copy)]
pub struct ProblemKind(pub &'static str);

#[derive(Debug, Clone)]
pub struct Problem {
    pub status: StatusCode,
    pub kind: &'static str,
    pub title: &'static str,
    pub detail: String,
    /// Seconds to wait before trying again (`Retry-After`), for `429` and `503`.
    pub retry_after_s: Option<u64>,
}

#[derive(Serialize)]
struct Body<'a> {
    #[serde(rename = "type")]
    kind: String,
    title: &'a str,
    status: u16,
    detail: &'a str,
}

impl Problem {
    pub fn new(
        status: StatusCode,
        kind: &'static str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        Problem {
            status,
            kind,
            title,
            detail: detail.into(),
            retry_after_s: None,
        }
    }

    pub fn unprocessable(
        kind: &'static str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        Problem::new(StatusCode::UNPROCESSABLE_ENTITY, kind, title, detail)
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Problem::new(StatusCode::NOT_FOUND, "not-found", "Not found", detail)
    }

    pub fn internal(detail: impl Into<String>) -> Self {
        Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal error",
            detail,
        )
    }

    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Problem::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Unauthorized",
            detail,
        )
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = Body {
            kind: format!("urn:vmcloud:problem:{}", self.kind),
            title: self.title,
            status: self.status.as_u16(),
            detail: &self.detail,
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        response.extensions_mut().insert(ProblemKind(self.kind));
        if let Some(s) = self.retry_after_s {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl From<JsonRejection> for Problem {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::MissingJsonContentType(_) => Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "Unsupported media type",
                "send the body as JSON with `Content-Type: application/json`",
            ),
            JsonRejection::JsonSyntaxError(e) => Problem::new(
                StatusCode::BAD_REQUEST,
                "malformed-json",
                "Malformed JSON",
                format!("the request body is not valid JSON: {}", e.body_text()),
            ),
            JsonRejection::JsonDataError(e) => Problem::new(
                StatusCode::BAD_REQUEST,
                "invalid-body",
                "Invalid request body",
                format!(
                    "the request body does not match what this endpoint takes: {}",
                    e.body_text()
                ),
            ),
            other => Problem::new(
                StatusCode::BAD_REQUEST,
                "invalid-body",
                "Invalid request body",
                other.body_text(),
            ),
        }
    }
}

impl From<QueryRejection> for Problem {
    fn from(rejection: QueryRejection) -> Self {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "invalid-query",
            "Invalid query string",
            rejection.body_text(),
        )
    }
}

impl From<ProposeError> for Problem {
    /// `503` with `Retry-After: 1`: a leader is being elected (or the log is behind); a retry
    /// with the same Idempotency-Key is applied once at most.
    fn from(e: ProposeError) -> Self {
        Problem {
            retry_after_s: Some(1),
            ..Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "Scheduler unavailable",
                format!("the change could not be committed: {e}; retry shortly"),
            )
        }
    }
}

impl From<Rejected> for Problem {
    fn from(r: Rejected) -> Self {
        match r {
            Rejected::NotFound(what) => Problem::not_found(format!("{what} does not exist")),
            Rejected::Exists(what) => Problem::new(
                StatusCode::CONFLICT,
                "conflict",
                "Conflict",
                format!("{what} already exists"),
            ),
            Rejected::Invalid(msg) => Problem::unprocessable("invalid", "Invalid request", msg),
            Rejected::Conflict(msg) => {
                Problem::new(StatusCode::CONFLICT, "conflict", "Conflict", msg)
            }
            Rejected::Forbidden(msg) => {
                Problem::new(StatusCode::FORBIDDEN, "forbidden", "Forbidden", msg)
            }
            Rejected::Unauthenticated(msg) => Problem::unauthorized(msg),
            Rejected::TrialLimit(msg) => Problem::new(
                StatusCode::PAYMENT_REQUIRED,
                "trial-limit",
                "Trial limit",
                msg,
            ),
            Rejected::Suspended(msg) => Problem::new(
                StatusCode::PAYMENT_REQUIRED,
                "suspended",
                "Organisation suspended",
                msg,
            ),
            Rejected::Exhausted(msg) => Problem::new(
                StatusCode::CONFLICT,
                "public-ips-exhausted",
                "No public address free",
                msg,
            ),
            Rejected::QuotaExceeded(msg) => Problem::new(
                StatusCode::FORBIDDEN,
                "quota-exceeded",
                "Quota exceeded",
                msg,
            ),
            Rejected::IdempotencyKeyReused(msg) => {
                Problem::unprocessable("idempotency-key-reused", "Idempotency-Key reused", msg)
            }
            Rejected::Replayed { detail, location } => {
                let detail = if location.is_empty() {
                    detail
                } else {
                    format!("{detail} (see {location})")
                };
                Problem::new(
                    StatusCode::CONFLICT,
                    "idempotency-key-replayed",
                    "Already done",
                    detail,
                )
            }
            Rejected::LaunchRefused { reason, detail } => {
                use crate::state::rejected::LaunchRefusal as R;
                let forbidden = StatusCode::FORBIDDEN;
                match reason {
                    R::NoEntitlement => {
                        Problem::new(forbidden, "no-entitlement", "Not in your library", detail)
                    }
                    R::AgeRating => Problem::new(
                        forbidden,
                        "age-rating",
                        "Above this profile's age rating",
                        detail,
                    ),
                    R::NoHoursLeft => Problem::new(
                        forbidden,
                        "no-hours-left",
                        "No hours left this month",
                        detail,
                    ),
                    R::DailyLimit => {
                        Problem::new(forbidden, "daily-limit", "Today's playtime is used", detail)
                    }
                    R::OutsideAllowedHours => Problem::new(
                        forbidden,
                        "outside-allowed-hours",
                        "Not at this hour",
                        detail,
                    ),
                    R::SiteFull => Problem::new(
                        StatusCode::CONFLICT,
                        "site-seats-used",
                        "All of this site's seats are in use",
                        detail,
                    ),
                }
            }
            Rejected::Malformed => Problem::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "Internal error",
                "the command could not be decoded by the state machine",
            ),
        }
    }
}

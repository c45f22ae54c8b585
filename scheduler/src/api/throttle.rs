//! The per-principal rate limit over every API route (see [`crate::api::limits`] for the
//! buckets and the policy).

use std::time::Instant;

use axum::http::StatusCode;

use crate::api::context::ApiState;
use crate::api::limits::Rate;
use crate::api::problem::Problem;

/// Marks a request the pages make in-process (not counted: see the module's documentation).
#[derive(Debug, Clone, Copy)]
pub struct InProcess;

/// The layer over every API route: counts the request against its principal (or address) and
/// says where the caller stands.
pub async fn per_principal(
    axum::extract::State(s): axum::extract::State<ApiState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use crate::tenancy::authz::Principal;
    use axum::response::IntoResponse;
    if request.extensions().get::<InProcess>().is_some() || s.api_per_hour == 0 {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let (key, per_hour, policy) = match crate::api::context::Who::of(&parts, &s) {
        Ok(who) => {
            let state = s.cluster.state();
            // Staff and the scheduler itself are never limited.
            let Some(per_hour) = state.api_per_hour_of(&who.principal, s.api_per_hour) else {
                return next
                    .run(axum::extract::Request::from_parts(parts, body))
                    .await;
            };
            let policy = if per_hour == s.api_per_hour {
                "default"
            } else {
                "organisation"
            };
            let key = match &who.principal {
                Principal::User { id, .. } => format!("user:{id}"),
                other => format!("{other}"),
            };
            (key, per_hour, policy)
        }
        // Unauthenticated (or a wrong token): the address pays.
        Err(_) => (
            format!(
                "addr:{}",
                parts
                    .extensions
                    .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                    .map(|c| c.0.ip().to_string())
                    .unwrap_or_default()
            ),
            s.api_per_hour,
            "default",
        ),
    };
    let rate = Rate {
        burst: per_hour,
        every_s: 3600.0 / per_hour as f64,
    };
    // A bucket per limit: when operators change an organisation's, its callers start a full
    // bucket of the new size.
    let taken = s
        .limiter
        .take_counted(&format!("{key}@{per_hour}"), rate, Instant::now());
    let mut response = match taken {
        Ok(_) => next.run(axum::extract::Request::from_parts(parts, body)).await,
        Err(wait) => Problem {
            retry_after_s: Some(wait),
            ..Problem::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate-limited",
                "Too many requests",
                format!(
                    "over the limit of {per_hour} requests an hour for this caller (one more every {:.0} s); try again in {wait} s, or ask for a higher limit",
                    rate.every_s.max(1.0)
                ),
            )
        }
        .into_response(),
    };
    let remaining = taken.unwrap_or(0);
    // Seconds until the bucket is full again.
    let full_in = ((per_hour - remaining.min(per_hour)) as f64 * rate.every_s).ceil() as u64;
    let h = response.headers_mut();
    if let Ok(v) = axum::http::HeaderValue::from_str(&format!("\"{policy}\";q={per_hour};w=3600")) {
        h.insert("ratelimit-policy", v);
    }
    if let Ok(v) =
        axum::http::HeaderValue::from_str(&format!("\"{policy}\";r={remaining};t={full_in}"))
    {
        h.insert("ratelimit", v);
    }
    response
}

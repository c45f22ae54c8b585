//! Every API request gets an id (`X-Request-Id`: the client's when it sent a sane one, else a
//! new one), answered in the response and carried by every command the request proposes (the
//! audit trail). A `POST` with an `Idempotency-Key` is fingerprinted (method, path and body)
//! so that `apply` can tell a retry of the same request from a different request reusing the
//! key (see [`crate::idempotency`]).

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use crate::api::problem::Problem;
use crate::idempotency::types::MAX_KEY_LEN;
use crate::request_context::{RequestScope, scope};

pub const REQUEST_ID: &str = "x-request-id";
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";
/// The largest body a keyed request may have (the API's bodies are a few KiB).
const MAX_BODY: usize = 1 << 20;

fn sane(v: &str, max: usize) -> bool {
    !v.is_empty() && v.len() <= max && v.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
}

pub async fn middleware(request: Request, next: Next) -> Response {
    let id = request
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| sane(v, 128))
        .map(str::to_owned)
        .unwrap_or_else(|| format!("req_{:032x}", rand::random::<u128>()));
    let mut response = match keyed(request).await {
        Ok((request, key, fingerprint)) => {
            scope(
                RequestScope::new(id.clone(), key, fingerprint),
                next.run(request),
            )
            .await
        }
        Err(problem) => problem.into_response(),
    };
    if let Ok(v) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID, v);
    }
    response
}

/// The request's Idempotency-Key (a `POST`'s only) and its fingerprint.
async fn keyed(request: Request) -> Result<(Request, String, Vec<u8>), Problem> {
    let Some(key) = request.headers().get(IDEMPOTENCY_KEY) else {
        return Ok((request, String::new(), Vec::new()));
    };
    if request.method() != Method::POST {
        return Ok((request, String::new(), Vec::new()));
    }
    let key = key
        .to_str()
        .ok()
        .filter(|k| sane(k, MAX_KEY_LEN))
        .map(str::to_owned)
        .ok_or_else(|| {
            Problem::new(
                StatusCode::BAD_REQUEST,
                "invalid-idempotency-key",
                "Invalid Idempotency-Key",
                format!(
                    "the Idempotency-Key header must be 1 to {MAX_KEY_LEN} visible ASCII characters (a UUID is a good choice)"
                ),
            )
        })?;
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, MAX_BODY).await.map_err(|_| {
        Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body-too-large",
            "Body too large",
            format!("a request body may be at most {MAX_BODY} bytes"),
        )
    })?;
    let mut hash = Sha256::new();
    hash.update(parts.method.as_str());
    hash.update(b"\n");
    hash.update(
        parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or_default(),
    );
    hash.update(b"\n");
    hash.update(&bytes);
    let fingerprint = hash.finalize().to_vec();
    Ok((
        Request::from_parts(parts, Body::from(bytes)),
        key,
        fingerprint,
    ))
}

//! The pages are a client of the public API, in-process: each page calls `/v1/...` through
//! the API's router (no socket, no second code path), with the browser's session cookie, so
//! every check — who the caller is, what their role allows, what another organisation may
//! not see — is the API's (docs/decisions/0009-pages-call-the-api.md).

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, HeaderValue, Method, Request, StatusCode, header};
use serde_json::Value;
use tower::ServiceExt as _;

/// What the API said no with: its status and problem+json.
#[derive(Debug, Clone)]
pub struct ApiProblem {
    pub status: StatusCode,
    /// The problem's kind (`urn:vmcloud:problem:<kind>` without the prefix).
    pub kind: String,
    pub detail: String,
}

impl ApiProblem {
    pub fn is(&self, kind: &str) -> bool {
        self.kind == kind
    }
}

/// The API, called as the browser's user.
#[derive(Clone)]
pub struct Api {
    router: Router,
    cookie: Option<HeaderValue>,
    /// The page's `Host`: the API picks a partner's brand from it (sign-ups on a partner's
    /// portal become its customers; mails carry its name and links).
    host: Option<HeaderValue>,
    source: Option<ConnectInfo<std::net::SocketAddr>>,
}

/// An answer: the JSON body and the headers (a log-in's `Set-Cookie`).
pub struct Answer {
    pub body: Value,
    pub headers: HeaderMap,
}

impl Api {
    pub fn new(router: Router, request: &axum::http::request::Parts) -> Api {
        Api {
            router,
            cookie: request.headers.get(header::COOKIE).cloned(),
            host: request.headers.get(header::HOST).cloned(),
            source: request
                .extensions
                .get::<ConnectInfo<std::net::SocketAddr>>()
                .cloned(),
        }
    }

    pub async fn get(&self, path: &str) -> Result<Value, ApiProblem> {
        self.call(Method::GET, path, None).await.map(|a| a.body)
    }

    pub async fn post(&self, path: &str, body: Value) -> Result<Value, ApiProblem> {
        self.call(Method::POST, path, Some(body))
            .await
            .map(|a| a.body)
    }

    /// A document that is not JSON (a PDF), with its headers.
    pub async fn raw(
        &self,
        method: Method,
        path: &str,
    ) -> Result<(axum::http::HeaderMap, Vec<u8>), ApiProblem> {
        let mut request = Request::builder().method(method).uri(path);
        if let Some(cookie) = &self.cookie {
            request = request.header(header::COOKIE, cookie.clone());
        }
        if let Some(host) = &self.host {
            request = request.header(header::HOST, host.clone());
        }
        let mut request = request
            .body(Body::empty())
            .map_err(|e| internal(e.to_string()))?;
        if let Some(source) = self.source {
            request.extensions_mut().insert(source);
        }
        request
            .extensions_mut()
            .insert(vmcloud_scheduler::api::throttle::InProcess);
        let response = self
            .router
            .clone()
            .oneshot(request)
            .await
            .map_err(|e| internal(e.to_string()))?;
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), 16 << 20)
            .await
            .map_err(|e| internal(e.to_string()))?;
        if status.is_success() {
            return Ok((headers, bytes.to_vec()));
        }
        let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Err(ApiProblem {
            status,
            kind: body["type"]
                .as_str()
                .unwrap_or_default()
                .trim_start_matches("urn:vmcloud:problem:")
                .to_owned(),
            detail: body["detail"]
                .as_str()
                .unwrap_or("the API gave no reason")
                .to_owned(),
        })
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Answer, ApiProblem> {
        let mut request = Request::builder().method(method).uri(path);
        if let Some(cookie) = &self.cookie {
            request = request.header(header::COOKIE, cookie.clone());
        }
        if let Some(host) = &self.host {
            request = request.header(header::HOST, host.clone());
        }
        let body = match body {
            Some(b) => {
                request = request.header(header::CONTENT_TYPE, "application/json");
                Body::from(b.to_string())
            }
            None => Body::empty(),
        };
        let mut request = request.body(body).map_err(|e| internal(e.to_string()))?;
        if let Some(source) = self.source {
            request.extensions_mut().insert(source);
        }
        request
            .extensions_mut()
            .insert(vmcloud_scheduler::api::throttle::InProcess);
        let response = self
            .router
            .clone()
            .oneshot(request)
            .await
            .map_err(|e| internal(e.to_string()))?;
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), 16 << 20)
            .await
            .map_err(|e| internal(e.to_string()))?;
        let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(Answer { body, headers });
        }
        Err(ApiProblem {
            status,
            kind: body["type"]
                .as_str()
                .unwrap_or_default()
                .trim_start_matches("urn:vmcloud:problem:")
                .to_owned(),
            detail: body["detail"]
                .as_str()
                .unwrap_or("the API gave no reason")
                .to_owned(),
        })
    }
}

fn internal(detail: String) -> ApiProblem {
    ApiProblem {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        kind: "internal".to_owned(),
        detail,
    }
}

/// A string field of an API answer ("" when absent).
pub fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or_default()
}

/// The array under `key` (empty when there is none).
pub fn items(v: &Value, key: &str) -> Vec<Value> {
    v[key].as_array().cloned().unwrap_or_default()
}

/// A cookie's value from the request.
pub use vmcloud_scheduler::api::context::cookie;

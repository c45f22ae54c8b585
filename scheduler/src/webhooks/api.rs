//! `POST|GET /v1/webhook-endpoints`, `GET|DELETE /v1/webhook-endpoints/{id}`,
//! `POST /v1/webhook-endpoints/{id}/test`, `GET /v1/webhook-endpoints/{id}/deliveries`,
//! `POST /v1/webhook-endpoints/{id}/deliveries/{event}/resend`.

use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;
use vmcloud_proto::ProjectId;
use vmcloud_proto::pb::{self, command::Body};

use crate::api::context::{
    ApiJson, ApiQuery, ApiState, Caller, ReadOptions, created, owned, rfc3339,
};
use crate::api::pagination::ListQuery;
use crate::api::problem::Problem;
use crate::history::types::{HistoryKey, HistoryRecord};
use crate::tenancy::authz::{Action, Resource};
use crate::webhooks::sign;
use crate::webhooks::target::check;
use crate::webhooks::types::{EVENT_TYPES, WebhookEndpoint, seal_purpose};

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateEndpointRequest {
    /// Where events are POSTed (`https://…`).
    pub url: String,
    /// The event types to send (default: all).
    #[serde(default)]
    pub event_types: Vec<String>,
    #[serde(default)]
    pub description: String,
    /// On a partner's staff project: its customers' events come to it too (default: no).
    #[serde(default)]
    pub partner_customers: bool,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EndpointView {
    pub id: String,
    pub project: String,
    pub url: String,
    pub event_types: Vec<String>,
    pub description: String,
    pub created_at: String,
    /// Since when every delivery has failed (absent: the last one succeeded).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failing_since: Option<String>,
    /// When it was disabled after failing for 5 days: no events go to it any more.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disabled_at: Option<String>,
    /// The signing secret (`whsec_…`): in the answer to the create only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// A partner's endpoint that gets its customers' events too.
    pub partner_customers: bool,
}

impl EndpointView {
    fn new(e: &WebhookEndpoint) -> EndpointView {
        EndpointView {
            id: e.id.clone(),
            project: e.project.to_string(),
            url: e.url.clone(),
            event_types: e.event_types.clone(),
            description: e.description.clone(),
            created_at: rfc3339(e.created_at_ms),
            failing_since: e.failing_since_ms.map(rfc3339),
            disabled_at: e.disabled_at_ms.map(rfc3339),
            secret: None,
            partner_customers: e.partner_customers,
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EndpointList {
    pub endpoints: Vec<EndpointView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

fn invalid_url(detail: String) -> Problem {
    Problem::unprocessable("invalid-webhook-url", "Invalid webhook URL", detail)
}

/// A project makes an endpoint; the answer shows its signing secret, once.
pub async fn create(
    State(s): State<ApiState>,
    Caller(project, who): Caller,
    ApiJson(req): ApiJson<CreateEndpointRequest>,
) -> Result<Response, Problem> {
    who.may(&s, Action::ManageProject, Resource::Project(&project))?;
    if let Some(t) = req
        .event_types
        .iter()
        .find(|t| !EVENT_TYPES.contains(&t.as_str()))
    {
        return Err(Problem::unprocessable(
            "unknown-event-type",
            "Unknown event type",
            format!(
                "`{t}` is not an event type; choose from: {}",
                EVENT_TYPES.join(", ")
            ),
        ));
    }
    if req.url.len() > 2048 || req.description.chars().count() > 200 {
        return Err(invalid_url(
            "a URL is at most 2048 characters, a description 200".into(),
        ));
    }
    check(&req.url, s.webhooks_allow_private)
        .await
        .map_err(invalid_url)?;
    let secrets = s.secrets.as_deref().ok_or_else(|| {
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no-secrets-key",
            "No secrets key",
            "this replica was started without --secrets-key, so it cannot keep webhook secrets; ask the operators to configure it (docs/operations.md)",
        )
    })?;
    let id = format!("we_{:016x}", rand::random::<u64>());
    let secret = sign::new_secret();
    s.cluster
        .propose_as(
            who.actor(),
            Body::CreateWebhookEndpoint(pb::CreateWebhookEndpoint {
                endpoint_id: id.clone(),
                project_id: project.to_string(),
                url: req.url,
                event_types: req.event_types,
                sealed_secret: secrets.seal(secret.as_bytes(), &seal_purpose(&id)),
                description: req.description,
                partner_customers: req.partner_customers,
            }),
        )
        .await??;
    let state = s.cluster.state();
    let e = state
        .webhook_endpoints
        .get(&id)
        .ok_or_else(|| Problem::internal("the endpoint was applied but is not in the state"))?;
    let mut view = EndpointView::new(e);
    view.secret = Some(secret);
    Ok(created(format!("/v1/webhook-endpoints/{id}"), view))
}

/// The project's endpoints, oldest first (never their secrets).
pub async fn list(
    State(s): State<ApiState>,
    Caller(project, _who): Caller,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<EndpointList>, Problem> {
    q.read().prepare(&s.cluster).await?;
    let state = s.cluster.state();
    let mine = state
        .webhook_endpoints
        .values()
        .filter(|e| e.project == project)
        .map(|e| ((e.created_at_ms, e.id.clone()), EndpointView::new(e)))
        .collect();
    let (endpoints, next_cursor) = q.page(mine)?;
    Ok(Json(EndpointList {
        endpoints,
        next_cursor,
    }))
}

fn endpoint_of(s: &ApiState, project: &ProjectId, id: &str) -> Result<WebhookEndpoint, Problem> {
    let state = s.cluster.state();
    owned(
        &state.webhook_endpoints,
        id,
        project,
        |e| &e.project,
        "webhook endpoint",
    )
}

pub async fn get(
    State(s): State<ApiState>,
    Caller(project, _who): Caller,
    Path(id): Path<String>,
    ApiQuery(read): ApiQuery<ReadOptions>,
) -> Result<Json<EndpointView>, Problem> {
    read.prepare(&s.cluster).await?;
    Ok(Json(EndpointView::new(&endpoint_of(&s, &project, &id)?)))
}

pub async fn delete(
    State(s): State<ApiState>,
    Caller(project, who): Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, Problem> {
    endpoint_of(&s, &project, &id)?;
    who.may(&s, Action::ManageProject, Resource::Project(&project))?;
    s.cluster
        .propose_as(
            who.actor(),
            Body::DeleteWebhookEndpoint(pb::DeleteWebhookEndpoint {
                endpoint_id: id,
                project_id: project.to_string(),
            }),
        )
        .await??;
    Ok(StatusCode::NO_CONTENT)
}

/// What a test delivery got.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TestDelivery {
    pub webhook_id: String,
    pub delivered: bool,
    /// The endpoint's HTTP status, when it answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    pub duration_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Sends a signed `webhook.test` event to the endpoint now, from this replica.
pub async fn test(
    State(s): State<ApiState>,
    Caller(project, who): Caller,
    Path(id): Path<String>,
) -> Result<Json<TestDelivery>, Problem> {
    let e = endpoint_of(&s, &project, &id)?;
    who.may(&s, Action::ManageProject, Resource::Project(&project))?;
    let secrets = s.secrets.as_deref().ok_or_else(|| {
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no-secrets-key",
            "No secrets key",
            "this replica was started without --secrets-key, so it cannot sign webhooks",
        )
    })?;
    let secret = secrets
        .open(&e.sealed_secret, &seal_purpose(&e.id))
        .map_err(|err| {
            Problem::internal(format!("the endpoint's secret cannot be opened: {err}"))
        })?;
    let key = sign::key_of(&String::from_utf8_lossy(&secret))
        .ok_or_else(|| Problem::internal("the endpoint's secret is not a whsec_ secret"))?;
    let webhook_id = format!("msg_test_{:016x}", rand::random::<u64>());
    let now_ms = crate::clock::now_ms();
    let body = serde_json::to_vec(&json!({
        "type": "webhook.test",
        "timestamp": rfc3339(now_ms),
        "data": {"endpoint": e.id, "project": e.project.to_string()},
    }))
    .expect("a test event encodes");
    let outcome = deliver(&s, &e.url, &key, &webhook_id, now_ms / 1000, body).await;
    Ok(Json(TestDelivery {
        webhook_id,
        ..outcome
    }))
}

/// A destination checked (SSRF rules) and a client that connects only to the addresses the
/// check resolved, never following redirects. Made once per endpoint and round of
/// deliveries, so that its connections are reused.
#[derive(Debug, Clone)]
pub struct Destination {
    url: reqwest::Url,
    client: reqwest::Client,
}

/// Checks `url` and makes its client.
pub async fn destination(url: &str, allow_private: bool) -> Result<Destination, String> {
    let target = check(url, allow_private).await?;
    let client = reqwest::Client::builder()
        .resolve_to_addrs(&target.host, &target.addrs)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(15))
        .build()
        .map_err(|e| e.to_string())?;
    Ok(Destination {
        url: target.url,
        client,
    })
}

/// Signs and POSTs one delivery to a checked destination.
pub async fn send(
    to: &Destination,
    key: &[u8],
    webhook_id: &str,
    timestamp_s: i64,
    body: Vec<u8>,
) -> TestDelivery {
    let started = Instant::now();
    let signature = sign::signature(key, webhook_id, timestamp_s, &body);
    let answer = to
        .client
        .post(to.url.clone())
        .header("content-type", "application/json")
        .header("webhook-id", webhook_id)
        .header("webhook-timestamp", timestamp_s.to_string())
        .header("webhook-signature", signature)
        .body(body)
        .send()
        .await;
    let (delivered, status, error) = match answer {
        Ok(r) if r.status().is_success() => (true, Some(r.status().as_u16()), None),
        Ok(r) => (
            false,
            Some(r.status().as_u16()),
            Some(format!("the endpoint answered {}", r.status())),
        ),
        Err(e) => (
            false,
            None,
            Some(format!("{}", vmcloud_proto::ErrorChain(&e))),
        ),
    };
    TestDelivery {
        webhook_id: webhook_id.to_owned(),
        delivered,
        status,
        duration_ms: started.elapsed().as_millis() as u64,
        error,
    }
}

/// Checks the destination, then signs and POSTs one delivery.
pub async fn deliver(
    s: &ApiState,
    url: &str,
    key: &[u8],
    webhook_id: &str,
    timestamp_s: i64,
    body: Vec<u8>,
) -> TestDelivery {
    match destination(url, s.webhooks_allow_private).await {
        Ok(to) => send(&to, key, webhook_id, timestamp_s, body).await,
        Err(error) => TestDelivery {
            webhook_id: webhook_id.to_owned(),
            delivered: false,
            status: None,
            duration_ms: 0,
            error: Some(error),
        },
    }
}

/// One attempt to deliver an event to an endpoint.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DeliveryView {
    /// The event's id: the delivery's `webhook-id`.
    pub event_id: String,
    pub attempt: u32,
    pub delivered: bool,
    /// The endpoint's HTTP status (absent: it did not answer).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub error: String,
    pub at: String,
    pub duration_ms: u32,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DeliveryList {
    pub deliveries: Vec<DeliveryView>,
    /// Deliveries queued and not done yet (the next attempt's time, per event).
    pub pending: Vec<PendingView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PendingView {
    pub event_id: String,
    pub attempts: u32,
    pub next_attempt_at: String,
}

/// An endpoint's delivery attempts, newest first (from the history store), and what is queued.
pub async fn deliveries(
    State(s): State<ApiState>,
    Caller(project, _who): Caller,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<DeliveryList>, Problem> {
    let limit = q.limit()?;
    let before = q
        .after()?
        .map(|(index, seq)| crate::history::types::HistoryKey {
            index: index as u64,
            seq: seq.parse().unwrap_or(0),
        });
    q.read().prepare(&s.cluster).await?;
    endpoint_of(&s, &project, &id)?;
    let pending = s
        .cluster
        .state()
        .webhook_outbox
        .values()
        .filter(|d| d.endpoint_id == id)
        .map(|d| PendingView {
            event_id: d.event_id.clone(),
            attempts: d.attempts,
            next_attempt_at: rfc3339(d.next_at_ms),
        })
        .collect();
    let dimension = format!("deliveries:{id}");
    let (records, last) = s
        .read_history(move |store| store.dimension_page(&dimension, before, limit))
        .await?;
    let deliveries = records
        .into_iter()
        .filter_map(|r| match r {
            crate::history::types::HistoryRecord::WebhookDelivery {
                event_id,
                attempt,
                ok,
                status,
                error,
                at_ms,
                duration_ms,
                ..
            } => Some(DeliveryView {
                event_id,
                attempt,
                delivered: ok,
                status: (status > 0).then_some(status),
                error,
                at: rfc3339(at_ms),
                duration_ms,
            }),
            _ => None,
        })
        .collect();
    Ok(Json(DeliveryList {
        deliveries,
        pending,
        next_cursor: last
            .map(|k| crate::api::pagination::encode(&(k.index as i64, k.seq.to_string()))),
    }))
}

/// A resend queued.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ResendView {
    pub event_id: String,
    pub endpoint: String,
    /// The event's type.
    #[serde(rename = "type")]
    pub kind: String,
    /// Deliveries are made by the leader from its outbox: the attempt shows in the endpoint's
    /// deliveries within seconds.
    pub queued_at: String,
}

/// Queues a past event (from the history store) for one endpoint again, under its own
/// `webhook-id`: for a receiver that was down or answered an error.
pub async fn resend(
    State(s): State<ApiState>,
    Caller(project, who): Caller,
    Path((id, event)): Path<(String, String)>,
) -> Result<Response, Problem> {
    let e = endpoint_of(&s, &project, &id)?;
    who.may(&s, Action::ManageProject, Resource::Project(&project))?;
    let not_found = || {
        Problem::not_found(format!(
            "webhook event {event} does not exist for project {project}; the endpoint's deliveries list the events sent to it"
        ))
    };
    let key = event_key(&event).ok_or_else(not_found)?;
    let page = s
        .read_history(move |store| store.page(Some(key), 1))
        .await?;
    let (kind, payload) = match page.records.into_iter().next() {
        Some((
            k,
            HistoryRecord::WebhookEvent {
                id,
                project: owner,
                kind,
                payload,
                ..
            },
        )) if k == key && id == event && owner == project => (kind, payload),
        _ => return Err(not_found()),
    };
    if !e.event_types.is_empty() && !e.event_types.contains(&kind) {
        return Err(Problem::unprocessable(
            "unknown-event-type",
            "Event type not subscribed",
            format!(
                "endpoint {id} does not take `{kind}` events (it takes: {}); resend to an endpoint that does",
                e.event_types.join(", ")
            ),
        ));
    }
    s.cluster
        .propose_as(
            who.actor(),
            Body::ResendWebhookEvent(pb::ResendWebhookEvent {
                endpoint_id: id.clone(),
                project_id: project.to_string(),
                event_id: event.clone(),
                payload,
            }),
        )
        .await??;
    let view = ResendView {
        event_id: event,
        endpoint: id.clone(),
        kind,
        queued_at: rfc3339(crate::clock::now_ms()),
    };
    Ok((
        StatusCode::ACCEPTED,
        [(
            axum::http::header::LOCATION,
            format!("/v1/webhook-endpoints/{id}/deliveries"),
        )],
        Json(view),
    )
        .into_response())
}

/// The history key an event id (`evt_<log index>_<n>`) names: where its record sits.
fn event_key(event: &str) -> Option<HistoryKey> {
    let (index, seq) = event.strip_prefix("evt_")?.split_once('_')?;
    Some(HistoryKey {
        index: index.parse().ok()?,
        seq: seq.parse().ok()?,
    })
}

//! A webhook endpoint as the replicated state keeps it.

use serde::{Deserialize, Serialize};
use vmcloud_proto::ProjectId;

/// The event types an endpoint may subscribe to.
pub const EVENT_TYPES: &[&str] = &[
    "instance.state_changed",
    "instance.spot_notice",
    "job.ended",
    "session.ended",
    "quota.refused",
    "billing.payment_failed",
    "billing.suspended",
    "billing.unsuspended",
    "billing.budget_exceeded",
    "webhook.test",
];

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookEndpoint {
    pub id: String,
    pub project: ProjectId,
    pub url: String,
    /// Empty: every type.
    pub event_types: Vec<String>,
    /// The signing secret (`whsec_…`), sealed with the secrets key.
    pub sealed_secret: String,
    pub description: String,
    pub created_at_ms: i64,
    /// Since when every delivery has failed (cleared by a success).
    #[serde(default)]
    pub failing_since_ms: Option<i64>,
    /// Turned off after failing for [`DISABLE_AFTER_MS`]: no more events go to it.
    #[serde(default)]
    pub disabled_at_ms: Option<i64>,
    /// A partner's endpoint: its customers' events come to it too.
    #[serde(default)]
    pub partner_customers: bool,
}

/// When a failed delivery is tried again, after the attempt that failed (Standard Webhooks'
/// schedule): the first attempt at once, then 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h.
pub const RETRY_AFTER_MS: [i64; 7] = [
    5_000, 300_000, 1_800_000, 7_200_000, 18_000_000, 36_000_000, 36_000_000,
];

/// An endpoint whose deliveries have all failed for this long is disabled.
pub const DISABLE_AFTER_MS: i64 = 5 * 24 * 3600 * 1000;

/// One event on its way to one endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// The event's id (`evt_<log index>_<n>`): the `webhook-id` of every attempt.
    pub event_id: String,
    pub endpoint_id: String,
    pub project: ProjectId,
    /// The event as sent (JSON).
    pub payload: String,
    /// Attempts made so far.
    pub attempts: u32,
    pub next_at_ms: i64,
    pub created_at_ms: i64,
}

impl Delivery {
    pub fn key(&self) -> String {
        format!("{}/{}", self.event_id, self.endpoint_id)
    }
}

/// Events handlers that hold part of the state borrowed cannot emit at once (a spot notice
/// given inside a loop over instances): `apply` emits them after the command, and drops them
/// when it was refused. Not part of the state's value, never serialized.
#[derive(Debug, Clone, Default)]
pub struct PendingEvents(pub Vec<(ProjectId, &'static str, serde_json::Value)>);

impl PartialEq for PendingEvents {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

/// What a secret is sealed for: its use and its endpoint.
pub fn seal_purpose(endpoint: &str) -> String {
    format!("webhook-secret:{endpoint}")
}

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
}

/// What a secret is sealed for: its use and its endpoint.
pub fn seal_purpose(endpoint: &str) -> String {
    format!("webhook-secret:{endpoint}")
}

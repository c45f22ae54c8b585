//! The leader delivers webhooks: every queued delivery that is due is signed and POSTed (many
//! at once), and what each got is proposed back (`RecordWebhookDeliveries`): a delivered one
//! leaves the outbox, a failed one is tried again on the Standard Webhooks schedule, an
//! endpoint failing for five days is disabled and its organisation's owners are mailed.
//!
//! At least once: a delivery made just before the leader dies, whose result was not
//! committed, is made again by the next leader — with the same `webhook-id` (the event's,
//! from the log index), so receivers de-duplicate.

use std::collections::HashMap;
use std::time::Duration;

use futures::StreamExt as _;
use vmcloud_proto::pb::{self, command::Body};

use crate::api::context::ApiState;
use crate::clock::now_ms;
use crate::tenancy::types::Role;
use crate::webhooks::api::{Destination, destination, send};
use crate::webhooks::sign;
use crate::webhooks::types::{Delivery, seal_purpose};

/// Deliveries made at once.
const CONCURRENCY: usize = 128;
/// Deliveries taken per round.
const BATCH: usize = 1024;

pub async fn run(s: ApiState) {
    let cluster = s.cluster.clone();
    let mut applied = cluster.applied();
    let mut status = cluster.raft_status();
    // Endpoint → signing key (opened once).
    let mut keys: HashMap<String, Vec<u8>> = HashMap::new();
    loop {
        let leading = status.borrow_and_update().is_leader;
        let now = now_ms();
        let (due, next_due) = if leading {
            let state = cluster.state();
            let due: Vec<Delivery> = state
                .webhook_outbox
                .values()
                .filter(|d| d.next_at_ms <= now)
                .take(BATCH)
                .cloned()
                .collect();
            let next = state.webhook_outbox.values().map(|d| d.next_at_ms).min();
            (due, next)
        } else {
            (Vec::new(), None)
        };
        if due.is_empty() {
            let wait = next_due.map_or(Duration::from_secs(1), |at| {
                Duration::from_millis((at - now).clamp(10, 1000) as u64)
            });
            tokio::select! {
                _ = applied.changed() => {}
                () = crate::raft_handle::lead_changes(&mut status, wait) => {}
            }
            continue;
        }
        let disabled_before: Vec<String> = disabled(&s);
        // Each endpoint's destination checked once this round; its client's connections
        // serve all its deliveries.
        let mut destinations: HashMap<String, Result<Destination, String>> = HashMap::new();
        for d in &due {
            if destinations.contains_key(&d.endpoint_id) {
                continue;
            }
            let url = cluster
                .state()
                .webhook_endpoints
                .get(&d.endpoint_id)
                .map(|e| e.url.clone());
            let to = match url {
                Some(url) => destination(&url, s.webhooks_allow_private).await,
                None => Err("the endpoint is gone".to_owned()),
            };
            destinations.insert(d.endpoint_id.clone(), to);
        }
        let results: Vec<pb::WebhookDeliveryResult> = futures::stream::iter(due)
            .map(|d| {
                let key = key_for(&s, &mut keys, &d.endpoint_id);
                let to = destinations[&d.endpoint_id].clone();
                async move { attempt(d, to, key).await }
            })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        let n = results.len();
        for r in &results {
            s.api_metrics
                .webhook_deliveries
                .get_or_create(&crate::api::metrics::OutcomeLabels {
                    outcome: if r.ok { "delivered" } else { "failed" }.to_owned(),
                })
                .inc();
        }
        match cluster
            .propose(Body::RecordWebhookDeliveries(pb::RecordWebhookDeliveries {
                results,
            }))
            .await
        {
            Ok(_) => tracing::debug!(deliveries = n, "webhook deliveries recorded"),
            Err(e) => {
                // Still queued: made again (same ids) by whoever leads next.
                tracing::warn!(error = %e, deliveries = n, "webhook deliveries not recorded; they will be made again");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        for endpoint in disabled(&s)
            .into_iter()
            .filter(|e| !disabled_before.contains(e))
        {
            tell_owners(&s, &endpoint).await;
        }
    }
}

fn disabled(s: &ApiState) -> Vec<String> {
    s.cluster
        .state()
        .webhook_endpoints
        .values()
        .filter(|e| e.disabled_at_ms.is_some())
        .map(|e| e.id.clone())
        .collect()
}

fn key_for(s: &ApiState, keys: &mut HashMap<String, Vec<u8>>, endpoint: &str) -> Option<Vec<u8>> {
    if let Some(k) = keys.get(endpoint) {
        return Some(k.clone());
    }
    let state = s.cluster.state();
    let e = state.webhook_endpoints.get(endpoint)?;
    let secret = s
        .secrets
        .as_deref()?
        .open(&e.sealed_secret, &seal_purpose(endpoint))
        .ok()?;
    let key = sign::key_of(&String::from_utf8_lossy(&secret))?;
    keys.insert(endpoint.to_owned(), key.clone());
    Some(key)
}

async fn attempt(
    d: Delivery,
    to: Result<Destination, String>,
    key: Option<Vec<u8>>,
) -> pb::WebhookDeliveryResult {
    let delivery = d.key();
    let at = now_ms();
    let (to, key) = match (to, key) {
        (Ok(to), Some(key)) => (to, key),
        (Err(error), _) => {
            return pb::WebhookDeliveryResult {
                delivery,
                ok: false,
                status: 0,
                error,
                at_unix_ms: at,
                duration_ms: 0,
            };
        }
        (_, None) => {
            return pb::WebhookDeliveryResult {
                delivery,
                ok: false,
                status: 0,
                error: "the endpoint's secret cannot be opened on this replica".into(),
                at_unix_ms: at,
                duration_ms: 0,
            };
        }
    };
    let got = send(&to, &key, &d.event_id, at / 1000, d.payload.into_bytes()).await;
    pb::WebhookDeliveryResult {
        delivery,
        ok: got.delivered,
        status: got.status.map_or(0, u32::from),
        error: got.error.unwrap_or_default(),
        at_unix_ms: at,
        duration_ms: got.duration_ms.min(u64::from(u32::MAX)) as u32,
    }
}

/// Mails the owners of the disabled endpoint's organisation.
async fn tell_owners(s: &ApiState, endpoint: &str) {
    let (url, project, owners) = {
        let state = s.cluster.state();
        let Some(e) = state.webhook_endpoints.get(endpoint) else {
            return;
        };
        let owners: Vec<String> = state
            .projects
            .get(&e.project)
            .and_then(|p| state.organisations.get(&p.org))
            .map(|o| {
                o.members
                    .iter()
                    .filter(|(_, r)| **r == Role::Owner)
                    .filter_map(|(u, _)| state.users.get(u).map(|u| u.email.clone()))
                    .collect()
            })
            .unwrap_or_default();
        (e.url.clone(), e.project.to_string(), owners)
    };
    tracing::warn!(
        endpoint,
        url,
        "webhook endpoint disabled after failing for 5 days"
    );
    for to in owners {
        let body = format!(
            "Every delivery to your webhook endpoint {endpoint} ({url}) of project {project} has failed for 5 days, so it is now disabled: no more events are sent to it.\n\nFix the receiver, then make a new endpoint (vmcloud webhook create, or POST /v1/webhook-endpoints) and delete this one.\n"
        );
        if let Err(e) = s
            .mailer
            .send(&to, "Your VMCloud webhook endpoint was disabled", &body)
            .await
        {
            tracing::warn!(error = %e, to, "the disabled-endpoint mail was not sent");
        }
    }
}

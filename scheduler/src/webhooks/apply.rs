//! `apply`'s side of webhook endpoints.

use serde_json::json;
use vmcloud_proto::{ProjectId, pb};

use crate::history::types::HistoryRecord;

use crate::state::{Applied, ApplyResult, ClusterState, Rejected};
use crate::webhooks::types::{
    DISABLE_AFTER_MS, Delivery, EVENT_TYPES, RETRY_AFTER_MS, WebhookEndpoint,
};

/// Endpoints a project may have.
pub const MAX_PER_PROJECT: usize = 16;

impl ClusterState {
    pub(crate) fn create_webhook_endpoint(
        &mut self,
        c: pb::CreateWebhookEndpoint,
        at: i64,
    ) -> ApplyResult {
        let project =
            ProjectId::parse(&c.project_id).map_err(|e| Rejected::Invalid(e.to_string()))?;
        if !self.projects.contains_key(&project) {
            return Err(Rejected::NotFound(format!("project {project}")));
        }
        if self.webhook_endpoints.contains_key(&c.endpoint_id) {
            return Err(Rejected::Exists(format!(
                "webhook endpoint {}",
                c.endpoint_id
            )));
        }
        if let Some(t) = c
            .event_types
            .iter()
            .find(|t| !EVENT_TYPES.contains(&t.as_str()))
        {
            return Err(Rejected::Invalid(format!("unknown event type `{t}`")));
        }
        if c.partner_customers
            && self
                .partner_of_staff(&self.projects[&project].org)
                .is_none()
        {
            return Err(Rejected::Invalid(format!(
                "project {project} is not a partner's: only a partner's staff projects receive their customers' events"
            )));
        }
        let held = self
            .webhook_endpoints
            .values()
            .filter(|e| e.project == project)
            .count();
        if held >= MAX_PER_PROJECT {
            return Err(Rejected::Conflict(format!(
                "project {project} has {held} webhook endpoints, the most it may have; delete one first"
            )));
        }
        self.webhook_endpoints.insert(
            c.endpoint_id.clone(),
            WebhookEndpoint {
                id: c.endpoint_id,
                project,
                url: c.url,
                event_types: c.event_types,
                sealed_secret: c.sealed_secret,
                description: c.description,
                created_at_ms: at,
                failing_since_ms: None,
                disabled_at_ms: None,
                partner_customers: c.partner_customers,
            },
        );
        Ok(Applied::Done)
    }

    pub(crate) fn delete_webhook_endpoint(&mut self, c: pb::DeleteWebhookEndpoint) -> ApplyResult {
        match self.webhook_endpoints.get(&c.endpoint_id) {
            Some(e) if e.project.as_str() == c.project_id => {
                self.webhook_endpoints.remove(&c.endpoint_id);
                self.drop_deliveries_to(&c.endpoint_id);
                Ok(Applied::Done)
            }
            _ => Err(Rejected::NotFound(format!(
                "webhook endpoint {}",
                c.endpoint_id
            ))),
        }
    }

    /// Queues a past event again for one endpoint of its project, at once, under its own id.
    /// A delivery of that event to that endpoint still queued is replaced (its attempts start
    /// over).
    pub(crate) fn resend_webhook_event(
        &mut self,
        c: pb::ResendWebhookEvent,
        at: i64,
    ) -> ApplyResult {
        let endpoint = match self.webhook_endpoints.get(&c.endpoint_id) {
            Some(e) if e.project.as_str() == c.project_id => e,
            _ => {
                return Err(Rejected::NotFound(format!(
                    "webhook endpoint {}",
                    c.endpoint_id
                )));
            }
        };
        if endpoint.disabled_at_ms.is_some() {
            return Err(Rejected::Conflict(format!(
                "webhook endpoint {} is disabled (it failed for 5 days): make a new endpoint for the fixed receiver and resend to that one",
                c.endpoint_id
            )));
        }
        if !c.event_id.starts_with("evt_") || c.payload.is_empty() {
            return Err(Rejected::Invalid(format!(
                "`{}` is not a webhook event with a payload",
                c.event_id
            )));
        }
        let d = Delivery {
            event_id: c.event_id,
            endpoint_id: c.endpoint_id,
            project: endpoint.project.clone(),
            payload: c.payload,
            attempts: 0,
            next_at_ms: at,
            created_at_ms: at,
        };
        self.webhook_outbox.insert(d.key(), d);
        Ok(Applied::Done)
    }

    /// Forgets every delivery queued for `endpoint`.
    fn drop_deliveries_to(&mut self, endpoint: &str) {
        let keys: Vec<String> = self
            .webhook_outbox
            .iter()
            .filter(|(_, d)| d.endpoint_id == endpoint)
            .map(|(k, _)| k.clone())
            .collect();
        for k in keys {
            self.webhook_outbox.remove(&k);
        }
    }

    /// An event for `project`'s endpoints that want `kind`: recorded in history, and a
    /// delivery queued for each (its id, from the log index, is every attempt's
    /// `webhook-id`). Nothing when no endpoint wants it.
    pub(crate) fn emit_webhook(
        &mut self,
        project: &ProjectId,
        kind: &str,
        data: serde_json::Value,
    ) {
        // The project's own endpoints, and its organisation's partner's that asked for its
        // customers' events.
        let partner_staff = self
            .projects
            .get(project)
            .and_then(|p| self.organisations.get(&p.org))
            .and_then(|o| o.partner.as_ref())
            .and_then(|p| self.partners.get(p))
            .map(|p| p.staff_org.clone());
        let endpoints: Vec<(String, ProjectId)> = self
            .webhook_endpoints
            .values()
            .filter(|e| e.disabled_at_ms.is_none())
            .filter(|e| {
                e.project == *project
                    || (e.partner_customers
                        && partner_staff.as_ref().is_some_and(|staff| {
                            self.projects
                                .get(&e.project)
                                .is_some_and(|p| &p.org == staff)
                        }))
            })
            .filter(|e| e.event_types.is_empty() || e.event_types.iter().any(|t| t == kind))
            .map(|e| (e.id.clone(), e.project.clone()))
            .collect();
        if endpoints.is_empty() {
            return;
        }
        let index = self.applied_index;
        let id = format!("evt_{index}_{}", self.history.next_seq(index));
        let payload = json!({
            "id": id,
            "type": kind,
            "timestamp": crate::clock::rfc3339(self.now_ms),
            "data": data,
        })
        .to_string();
        self.history.push(
            index,
            HistoryRecord::WebhookEvent {
                id: id.clone(),
                project: project.clone(),
                kind: kind.to_owned(),
                payload: payload.clone(),
                at_ms: self.now_ms,
            },
        );
        for (endpoint_id, endpoint_project) in endpoints {
            let d = Delivery {
                event_id: id.clone(),
                endpoint_id,
                project: endpoint_project,
                payload: payload.clone(),
                attempts: 0,
                next_at_ms: self.now_ms,
                created_at_ms: self.now_ms,
            };
            self.webhook_outbox.insert(d.key(), d);
        }
    }

    /// What the leader's deliveries got (see [`crate::webhooks`]).
    pub(crate) fn record_webhook_deliveries(
        &mut self,
        c: pb::RecordWebhookDeliveries,
    ) -> ApplyResult {
        for r in c.results {
            let Some(mut d) = self.webhook_outbox.remove(&r.delivery) else {
                continue;
            };
            d.attempts += 1;
            self.history.push(
                self.applied_index,
                HistoryRecord::WebhookDelivery {
                    event_id: d.event_id.clone(),
                    endpoint_id: d.endpoint_id.clone(),
                    attempt: d.attempts,
                    ok: r.ok,
                    status: r.status as u16,
                    error: r.error.clone(),
                    at_ms: r.at_unix_ms,
                    duration_ms: r.duration_ms,
                },
            );
            let Some(endpoint) = self.webhook_endpoints.get_mut(&d.endpoint_id) else {
                continue;
            };
            if r.ok {
                endpoint.failing_since_ms = None;
                continue;
            }
            let since = *endpoint.failing_since_ms.get_or_insert(r.at_unix_ms);
            if r.at_unix_ms - since >= DISABLE_AFTER_MS {
                endpoint.disabled_at_ms = Some(r.at_unix_ms);
                let gone = endpoint.id.clone();
                self.drop_deliveries_to(&gone);
                continue;
            }
            if let Some(wait) = RETRY_AFTER_MS.get(d.attempts as usize - 1) {
                d.next_at_ms = r.at_unix_ms + wait;
                self.webhook_outbox.insert(d.key(), d);
            }
        }
        Ok(Applied::Done)
    }
}

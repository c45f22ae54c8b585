//! `apply`'s side of webhook endpoints.

use vmcloud_proto::{ProjectId, pb};

use crate::state::{Applied, ApplyResult, ClusterState, Rejected};
use crate::webhooks::types::{EVENT_TYPES, WebhookEndpoint};

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
            },
        );
        Ok(Applied::Done)
    }

    pub(crate) fn delete_webhook_endpoint(&mut self, c: pb::DeleteWebhookEndpoint) -> ApplyResult {
        match self.webhook_endpoints.get(&c.endpoint_id) {
            Some(e) if e.project.as_str() == c.project_id => {
                self.webhook_endpoints.remove(&c.endpoint_id);
                Ok(Applied::Done)
            }
            _ => Err(Rejected::NotFound(format!(
                "webhook endpoint {}",
                c.endpoint_id
            ))),
        }
    }
}

//! Applying project commands, and authenticating API keys.

use vmcloud_proto::ProjectId;
use vmcloud_proto::pb;

use crate::sessions::types::SessionTier;
use crate::state::{Applied, ApplyResult, ClusterState, Rejected};
use crate::tenancy::types::{ApiKey, MAX_SHARE_WEIGHT, Project};

impl ClusterState {
    pub(crate) fn create_project(&mut self, c: pb::CreateProject, at: i64) -> ApplyResult {
        let id = ProjectId::parse(&c.project_id).map_err(|e| Rejected::Invalid(e.to_string()))?;
        if self.projects.contains_key(&id) {
            return Err(Rejected::Exists(format!("project {id}")));
        }
        self.projects.insert(
            id.clone(),
            Project {
                id,
                name: c.name,
                created_at_ms: at,
                operator: c.operator,
                share_weight: 1,
                gaming_tier: SessionTier::Standard,
            },
        );
        Ok(Applied::Done)
    }

    pub(crate) fn update_project(&mut self, c: pb::UpdateProject) -> ApplyResult {
        let id = ProjectId::parse(&c.project_id).map_err(|e| Rejected::Invalid(e.to_string()))?;
        let tier = c.gaming_tier.map(|_| SessionTier::from(c.gaming_tier()));
        if c.share_weight
            .is_some_and(|w| !(1..=MAX_SHARE_WEIGHT).contains(&w))
        {
            return Err(Rejected::Invalid(format!(
                "share_weight must be between 1 and {MAX_SHARE_WEIGHT}"
            )));
        }
        let project = self
            .projects
            .get_mut(&id)
            .ok_or_else(|| Rejected::NotFound(format!("project {id}")))?;
        if let Some(w) = c.share_weight {
            project.share_weight = w;
        }
        if let Some(t) = tier {
            project.gaming_tier = t;
        }
        Ok(Applied::Done)
    }

    pub(crate) fn add_api_key(&mut self, c: pb::AddApiKey) -> ApplyResult {
        let project =
            ProjectId::parse(&c.project_id).map_err(|e| Rejected::Invalid(e.to_string()))?;
        if !self.projects.contains_key(&project) {
            return Err(Rejected::NotFound(format!("project {project}")));
        }
        if self.api_keys.contains_key(&c.key_id) {
            return Err(Rejected::Exists(format!("API key {}", c.key_id)));
        }
        self.api_keys.insert(
            c.key_id,
            ApiKey {
                project,
                secret_sha256: c.secret_sha256,
            },
        );
        Ok(Applied::Done)
    }

    /// The project an API key belongs to, if `secret` matches its stored hash.
    pub fn authenticate(&self, key_id: &str, secret_sha256: &[u8]) -> Option<&ProjectId> {
        self.api_keys
            .get(key_id)
            .filter(|k| k.secret_sha256 == secret_sha256)
            .map(|k| &k.project)
    }
}

//! Projects and their API keys, as the replicated state holds them.

use serde::{Deserialize, Serialize};
use vmcloud_proto::ProjectId;

use crate::sessions::types::SessionTier;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Project {
    pub id: ProjectId,
    pub name: String,
    pub created_at_ms: i64,
    /// Operators run the fleet (host states, labels, pools, cluster membership).
    #[serde(default)]
    pub operator: bool,
    /// Weight of its fair share of the AI job queues (default 1).
    #[serde(default = "one")]
    pub share_weight: u32,
    /// The gamer's subscription tier: its session launches are served in that order.
    #[serde(default)]
    pub gaming_tier: SessionTier,
}

fn one() -> u32 {
    1
}

/// Largest fair-share weight an operator may give a project.
pub const MAX_SHARE_WEIGHT: u32 = 1000;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiKey {
    #[serde(alias = "account")]
    pub project: ProjectId,
    pub secret_sha256: Vec<u8>,
}

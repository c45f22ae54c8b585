//! Accounts and their API keys, as the replicated state holds them.

use serde::{Deserialize, Serialize};
use vmcloud_proto::AccountId;

use crate::sessions::types::SessionTier;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Account {
    pub id: AccountId,
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

/// Largest fair-share weight an operator may give an account.
pub const MAX_SHARE_WEIGHT: u32 = 1000;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiKey {
    pub account: AccountId,
    pub secret_sha256: Vec<u8>,
}

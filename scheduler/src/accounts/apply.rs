//! Applying account commands, and authenticating API keys.

use vmcloud_proto::AccountId;
use vmcloud_proto::pb;

use crate::accounts::types::{Account, ApiKey, MAX_SHARE_WEIGHT};
use crate::sessions::types::SessionTier;
use crate::state::{Applied, ApplyResult, ClusterState, Rejected};

impl ClusterState {
    pub(crate) fn create_account(&mut self, c: pb::CreateAccount, at: i64) -> ApplyResult {
        let id = AccountId::parse(&c.account_id).map_err(|e| Rejected::Invalid(e.to_string()))?;
        if self.accounts.contains_key(&id) {
            return Err(Rejected::Exists(format!("account {id}")));
        }
        self.accounts.insert(
            id.clone(),
            Account {
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

    pub(crate) fn update_account(&mut self, c: pb::UpdateAccount) -> ApplyResult {
        let id = AccountId::parse(&c.account_id).map_err(|e| Rejected::Invalid(e.to_string()))?;
        let tier = c.gaming_tier.map(|_| SessionTier::from(c.gaming_tier()));
        if c.share_weight
            .is_some_and(|w| !(1..=MAX_SHARE_WEIGHT).contains(&w))
        {
            return Err(Rejected::Invalid(format!(
                "share_weight must be between 1 and {MAX_SHARE_WEIGHT}"
            )));
        }
        let account = self
            .accounts
            .get_mut(&id)
            .ok_or_else(|| Rejected::NotFound(format!("account {id}")))?;
        if let Some(w) = c.share_weight {
            account.share_weight = w;
        }
        if let Some(t) = tier {
            account.gaming_tier = t;
        }
        Ok(Applied::Done)
    }

    pub(crate) fn add_api_key(&mut self, c: pb::AddApiKey) -> ApplyResult {
        let account =
            AccountId::parse(&c.account_id).map_err(|e| Rejected::Invalid(e.to_string()))?;
        if !self.accounts.contains_key(&account) {
            return Err(Rejected::NotFound(format!("account {account}")));
        }
        if self.api_keys.contains_key(&c.key_id) {
            return Err(Rejected::Exists(format!("API key {}", c.key_id)));
        }
        self.api_keys.insert(
            c.key_id,
            ApiKey {
                account,
                secret_sha256: c.secret_sha256,
            },
        );
        Ok(Applied::Done)
    }

    /// The account an API key belongs to, if `secret` matches its stored hash.
    pub fn authenticate(&self, key_id: &str, secret_sha256: &[u8]) -> Option<&AccountId> {
        self.api_keys
            .get(key_id)
            .filter(|k| k.secret_sha256 == secret_sha256)
            .map(|k| &k.account)
    }
}

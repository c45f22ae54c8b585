//! Join tokens: how a new host gets its identity.
//!
//! An operator makes a token for one node name with a time to live (`vmcloud token create
//! --node-name X --ttl 15m`). The token is `vmcjoin_<id>_<secret>`: the id (64 bits) names it,
//! the secret (128 bits of entropy) proves it; the replicated state keeps only the secret's
//! SHA-256. A host presents it once, before it expires, for that node name only; the scheduler
//! then signs the host's certificate request (the agent's side is issue 6's next step).

use sha2::{Digest, Sha256};
use vmcloud_proto::NodeId;

/// Shortest and longest time to live of a token.
pub const MIN_TTL_S: u64 = 60;
pub const MAX_TTL_S: u64 = 7 * 24 * 3600;
pub const DEFAULT_TTL_S: u64 = 15 * 60;

const PREFIX: &str = "vmcjoin_";

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct JoinToken {
    pub id: String,
    pub node: NodeId,
    /// Hex SHA-256 of the secret.
    pub secret_sha256: String,
    pub created_at_ms: i64,
    pub expires_at_ms: i64,
    pub created_by: String,
    /// When a host used it; a used token is never accepted again.
    pub used_at_ms: Option<i64>,
    /// A partner's token: its host is the partner's, in one of its POPs.
    #[serde(default)]
    pub partner: Option<String>,
}

/// A token as handed to the operator, once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenSecret {
    pub id: String,
    pub secret: String,
}

impl TokenSecret {
    pub fn generate() -> TokenSecret {
        TokenSecret {
            id: hex::encode(rand::random::<[u8; 8]>()),
            secret: hex::encode(rand::random::<[u8; 16]>()),
        }
    }

    pub fn parse(token: &str) -> Option<TokenSecret> {
        let (id, secret) = token.trim().strip_prefix(PREFIX)?.split_once('_')?;
        let hex_of = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
        (hex_of(id, 16) && hex_of(secret, 32)).then(|| TokenSecret {
            id: id.to_owned(),
            secret: secret.to_ascii_lowercase(),
        })
    }

    pub fn secret_sha256(&self) -> Vec<u8> {
        Sha256::digest(self.secret.as_bytes()).to_vec()
    }
}

impl std::fmt::Display for TokenSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{PREFIX}{}_{}", self.id, self.secret)
    }
}

impl JoinToken {
    /// Whether `secret` is this token's (constant-time comparison of the hashes).
    pub fn matches(&self, secret: &TokenSecret) -> bool {
        let given = hex::encode(secret.secret_sha256());
        given.len() == self.secret_sha256.len()
            && given
                .bytes()
                .zip(self.secret_sha256.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }

    /// Why the token cannot be used now for `node`, if it cannot.
    pub fn refusal(&self, node: &NodeId, now_ms: i64) -> Option<String> {
        if self.used_at_ms.is_some() {
            Some(format!(
                "join token {} was already used; make a new one",
                self.id
            ))
        } else if now_ms >= self.expires_at_ms {
            Some(format!(
                "join token {} has expired; make a new one",
                self.id
            ))
        } else if &self.node != node {
            Some(format!(
                "join token {} is for node {}, not {node}",
                self.id, self.node
            ))
        } else {
            None
        }
    }
}

//! Join tokens: how a new host gets its identity.
//!
//! An operator makes a token for one node name with a time to live (`vmcloud token create
//! --node-name X --ttl 15m`). The token is `vmcjoin_<id>_<secret>`: the id (64 bits) names it,
//! the secret (128 bits of entropy) proves it; the replicated state keeps only the secret's
//! SHA-256. A host presents it once, before it expires, for that node name only; the scheduler
//! then signs the host's certificate request (the agent's side is issue 6's next step).

use sha2::{Digest, Sha256};
use vmcloud_proto::{NodeId, pb};

use crate::state::{Applied, ApplyResult, ClusterState, Rejected};

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

impl ClusterState {
    pub(crate) fn create_join_token(&mut self, c: pb::CreateJoinToken, at: i64) -> ApplyResult {
        let node = NodeId::parse(&c.node_id).map_err(|e| Rejected::Invalid(e.to_string()))?;
        if c.secret_sha256.len() != 32 || c.token_id.len() != 16 {
            return Err(Rejected::Malformed);
        }
        if self.join_tokens.contains_key(&c.token_id) {
            return Err(Rejected::Exists(format!("join token {}", c.token_id)));
        }
        // Tokens dead for a day are forgotten, so the map stays small.
        self.join_tokens
            .retain(|_, t| t.expires_at_ms + 24 * 3600 * 1000 > at);
        self.join_tokens.insert(
            c.token_id.clone(),
            JoinToken {
                id: c.token_id,
                node,
                secret_sha256: hex::encode(&c.secret_sha256),
                created_at_ms: at,
                expires_at_ms: c.expires_at_unix_ms,
                created_by: c.created_by,
                used_at_ms: None,
            },
        );
        Ok(Applied::Done)
    }

    pub(crate) fn use_join_token(&mut self, c: pb::UseJoinToken, at: i64) -> ApplyResult {
        let node = NodeId::parse(&c.node_id).map_err(|e| Rejected::Invalid(e.to_string()))?;
        let token = self
            .join_tokens
            .get_mut(&c.token_id)
            .ok_or_else(|| Rejected::NotFound(format!("join token {}", c.token_id)))?;
        if let Some(why) = token.refusal(&node, at) {
            return Err(Rejected::Conflict(why));
        }
        token.used_at_ms = Some(at);
        Ok(Applied::Done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply(s: &mut ClusterState, at: i64, body: pb::command::Body) -> ApplyResult {
        let index = s.applied_index + 1;
        s.apply(
            index,
            pb::Command {
                at_unix_ms: at,
                body: Some(body),
            },
        )
    }

    #[test]
    fn a_token_is_used_once_before_it_expires_for_its_node_only() {
        let mut s = ClusterState::default();
        let secret = TokenSecret::generate();
        let text = secret.to_string();
        assert!(text.starts_with("vmcjoin_") && text.len() == 8 + 16 + 1 + 32);
        assert_eq!(TokenSecret::parse(&text), Some(secret.clone()));
        assert_eq!(TokenSecret::parse("vmcjoin_zz_00"), None);
        let create = pb::CreateJoinToken {
            token_id: secret.id.clone(),
            node_id: "par-r1-h07".into(),
            secret_sha256: secret.secret_sha256(),
            expires_at_unix_ms: 1_000 + 900_000,
            created_by: "acct-ops".into(),
        };
        apply(
            &mut s,
            1_000,
            pb::command::Body::CreateJoinToken(create.clone()),
        )
        .unwrap();
        assert_eq!(
            apply(&mut s, 1_001, pb::command::Body::CreateJoinToken(create)).unwrap_err(),
            Rejected::Exists(format!("join token {}", secret.id))
        );
        let t = &s.join_tokens[&secret.id];
        assert!(t.matches(&secret));
        assert!(!t.matches(&TokenSecret::generate()));
        // Only the hash is kept.
        assert!(!serde_json::to_string(&s).unwrap().contains(&secret.secret));

        let use_for = |node: &str| {
            pb::command::Body::UseJoinToken(pb::UseJoinToken {
                token_id: secret.id.clone(),
                node_id: node.into(),
            })
        };
        let err = apply(&mut s, 2_000, use_for("par-r1-h08")).unwrap_err();
        assert!(err.to_string().contains("is for node par-r1-h07"), "{err}");
        apply(&mut s, 2_000, use_for("par-r1-h07")).unwrap();
        let err = apply(&mut s, 2_001, use_for("par-r1-h07")).unwrap_err();
        assert!(err.to_string().contains("already used"), "{err}");

        // Another token, presented after it expired.
        let late = TokenSecret::generate();
        apply(
            &mut s,
            3_000,
            pb::command::Body::CreateJoinToken(pb::CreateJoinToken {
                token_id: late.id.clone(),
                node_id: "par-r1-h09".into(),
                secret_sha256: late.secret_sha256(),
                expires_at_unix_ms: 4_000,
                created_by: "acct-ops".into(),
            }),
        )
        .unwrap();
        let err = apply(
            &mut s,
            4_000,
            pb::command::Body::UseJoinToken(pb::UseJoinToken {
                token_id: late.id.clone(),
                node_id: "par-r1-h09".into(),
            }),
        )
        .unwrap_err();
        assert!(err.to_string().contains("has expired"), "{err}");
    }
}

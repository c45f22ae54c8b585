//! Applying join tokens: made by operators, used once by the host they name.

use vmcloud_proto::{NodeId, pb};

use crate::join::types::JoinToken;
use crate::state::{Applied, ApplyResult, ClusterState, Rejected};

impl ClusterState {
    pub(crate) fn create_join_token(&mut self, c: pb::CreateJoinToken, at: i64) -> ApplyResult {
        let node = NodeId::parse(&c.node_id).map_err(|e| Rejected::Invalid(e.to_string()))?;
        if c.secret_sha256.len() != 32 || c.token_id.len() != 16 {
            return Err(Rejected::Malformed);
        }
        if self.join_tokens.contains_key(&c.token_id) {
            return Err(Rejected::Exists(format!("join token {}", c.token_id)));
        }
        let partner = (!c.partner_id.is_empty()).then(|| c.partner_id.clone());
        if let Some(p) = &partner {
            if !self.partners.contains_key(p) {
                return Err(Rejected::NotFound(format!("partner {p}")));
            }
            // A partner names new hosts, or its own: never one of VMCloud's or another's.
            if let Some(n) = self.nodes.get(&node)
                && n.partner.as_ref() != Some(p)
            {
                return Err(Rejected::Conflict(format!(
                    "host {node} exists and is not one of {p}'s: give your new host another name"
                )));
            }
        }
        // Tokens dead for a day are forgotten, so the map stays small.
        let dead: Vec<String> = self
            .join_tokens
            .iter()
            .filter(|(_, t)| t.expires_at_ms + 24 * 3600 * 1000 <= at)
            .map(|(id, _)| id.clone())
            .collect();
        for id in dead {
            self.join_tokens.remove(&id);
        }
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
                partner,
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
    use crate::join::types::TokenSecret;

    fn apply(s: &mut ClusterState, at: i64, body: pb::command::Body) -> ApplyResult {
        let index = s.applied_index + 1;
        s.apply(
            index,
            pb::Command {
                actor: None,
                request: None,
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
            partner_id: String::new(),
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
                partner_id: String::new(),
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

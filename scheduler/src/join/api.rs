//! `/v1/join-tokens` (operators): single-use tokens a new host joins with. The token's secret
//! is in the answer to the create, once; the state and every later read keep only its hash.

use axum::Json;
use axum::extract::State;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use vmcloud_proto::NodeId;
use vmcloud_proto::pb::{self, command::Body};

use crate::api::context::{ApiJson, ApiQuery, ApiState, Operator, Who, created, rfc3339};
use crate::api::problem::Problem;
use crate::clock::now_ms;
use crate::join::types::{DEFAULT_TTL_S, JoinToken, MAX_TTL_S, MIN_TTL_S, TokenSecret};
use crate::tenancy::authz::{Action, Resource};

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTokenRequest {
    /// The node the host joins as (a DNS label).
    pub node_name: String,
    /// Seconds the token stays valid (60 to 604800; default 900).
    #[serde(default)]
    pub ttl_s: Option<u64>,
    /// A partner's token (its admins make it): the host is the partner's and may only be in
    /// its POPs.
    #[serde(default)]
    pub partner: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TokenView {
    pub id: String,
    pub node_name: String,
    pub created_at: String,
    pub expires_at: String,
    pub created_by: String,
    /// `valid`, `used` or `expired`.
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub used_at: Option<String>,
    /// Only in the answer to the create: the token itself.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

impl TokenView {
    fn new(t: &JoinToken, now_ms: i64) -> TokenView {
        TokenView {
            id: t.id.clone(),
            node_name: t.node.to_string(),
            created_at: rfc3339(t.created_at_ms),
            expires_at: rfc3339(t.expires_at_ms),
            created_by: t.created_by.clone(),
            status: if t.used_at_ms.is_some() {
                "used"
            } else if now_ms >= t.expires_at_ms {
                "expired"
            } else {
                "valid"
            },
            used_at: t.used_at_ms.map(rfc3339),
            token: None,
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TokenList {
    pub tokens: Vec<TokenView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// `POST /v1/join-tokens`: operators make a token for any host; a partner's admins for their
/// own (`partner`).
pub async fn create(
    State(s): State<ApiState>,
    operator: Who,
    ApiJson(req): ApiJson<CreateTokenRequest>,
) -> Result<Response, Problem> {
    match &req.partner {
        Some(p) => operator.may(&s, Action::ManagePartner, Resource::Partner(p))?,
        None => Operator::check(&s, &operator)?,
    }
    let node = NodeId::parse(&req.node_name).map_err(|e| {
        Problem::unprocessable("invalid-node-name", "Invalid node name", e.to_string())
    })?;
    let ttl = req.ttl_s.unwrap_or(DEFAULT_TTL_S);
    if !(MIN_TTL_S..=MAX_TTL_S).contains(&ttl) {
        return Err(Problem::unprocessable(
            "invalid-ttl",
            "Invalid time to live",
            format!("ttl_s {ttl} must be between {MIN_TTL_S} (1 minute) and {MAX_TTL_S} (7 days)"),
        ));
    }
    let secret = TokenSecret::generate();
    let command = pb::CreateJoinToken {
        token_id: secret.id.clone(),
        node_id: node.to_string(),
        secret_sha256: secret.secret_sha256(),
        expires_at_unix_ms: now_ms() + (ttl * 1000) as i64,
        created_by: operator.principal.to_string(),
        partner_id: req.partner.clone().unwrap_or_default(),
    };
    s.cluster
        .propose_as(operator.actor(), Body::CreateJoinToken(command))
        .await??;
    let state = s.cluster.state();
    let token = state
        .join_tokens
        .get(&secret.id)
        .ok_or_else(|| Problem::not_found(format!("join token {}", secret.id)))?;
    let mut view = TokenView::new(token, now_ms());
    view.token = Some(secret.to_string());
    Ok(created(format!("/v1/join-tokens/{}", secret.id), view))
}

pub async fn list(
    State(s): State<ApiState>,
    _operator: Operator,
    ApiQuery(q): ApiQuery<crate::api::pagination::ListQuery>,
) -> Result<Json<TokenList>, Problem> {
    q.read().prepare(&s.cluster).await?;
    let state = s.cluster.state();
    let now = now_ms();
    let tokens = state
        .join_tokens
        .values()
        .map(|t| ((t.created_at_ms, t.id.clone()), TokenView::new(t, now)))
        .collect();
    let (tokens, next_cursor) = q.page(tokens)?;
    Ok(Json(TokenList {
        tokens,
        next_cursor,
    }))
}

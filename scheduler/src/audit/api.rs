//! `GET /v1/audit-events`: operators see every event; an organisation's owners and admins see
//! their organisation's (`?org=`, or the only organisation they administer).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use vmcloud_proto::OrgId;

use crate::api::context::{ApiQuery, ApiState, ReadOptions, Who};
use crate::api::pagination::{DEFAULT_LIMIT, MAX_LIMIT, encode};
use crate::api::problem::Problem;
use crate::api::validate::rfc3339_ms;
use crate::audit::types::AuditEvent;
use crate::history::audit_index::AuditFilter;
use crate::history::types::HistoryKey;
use crate::tenancy::authz::{Action, Principal, Resource};

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    #[serde(default)]
    pub stale: bool,
    /// The organisation whose events to list (required for non-operators who administer
    /// several).
    #[serde(default)]
    pub org: Option<String>,
    /// `user:<id>`, `key:<id>`, `node:<id>`, `system` or `anonymous`.
    #[serde(default)]
    pub actor: Option<String>,
    /// `kind/id`, e.g. `instance/i-…`.
    #[serde(default)]
    pub resource: Option<String>,
    /// RFC 3339, inclusive.
    #[serde(default)]
    pub since: Option<String>,
    /// RFC 3339, exclusive.
    #[serde(default)]
    pub until: Option<String>,
    /// `desc` (newest first, the default) or `asc` (the chain's order).
    #[serde(default)]
    pub order: Option<String>,
    #[serde(default)]
    pub limit: Option<usize>,
    #[serde(default)]
    pub cursor: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditList {
    pub events: Vec<AuditEvent>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

fn bad_query(detail: String) -> Problem {
    Problem::new(
        StatusCode::BAD_REQUEST,
        "invalid-query",
        "Invalid query string",
        detail,
    )
}

/// The organisation a non-operator's listing is limited to.
fn org_of_caller(s: &ApiState, who: &Who, named: Option<&str>) -> Result<Option<String>, Problem> {
    let state = s.cluster.state();
    if state
        .authorize(&who.principal, Action::ReadFleet, Resource::Fleet)
        .is_ok()
    {
        return Ok(named.map(str::to_owned));
    }
    if let Some(o) = named {
        let id = OrgId::parse(o)
            .map_err(|_| Problem::not_found(format!("organisation `{o}` does not exist")))?;
        who.may(s, Action::ManageOrg, Resource::Org(&id))?;
        return Ok(Some(id.to_string()));
    }
    let Principal::User { id: user, .. } = &who.principal else {
        return Err(Problem::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "Forbidden",
            "audit events are for operators and organisation owners and admins; an API key of a project cannot list them",
        ));
    };
    let administered: Vec<&OrgId> = state
        .organisations
        .values()
        .filter(|o| o.members.contains_key(user))
        .filter(|o| {
            state
                .authorize(&who.principal, Action::ManageOrg, Resource::Org(&o.id))
                .is_ok()
        })
        .map(|o| &o.id)
        .collect();
    match administered.as_slice() {
        [only] => Ok(Some(only.to_string())),
        [] => Err(Problem::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "Forbidden",
            "only an organisation's owners and admins see its audit events",
        )),
        several => Err(bad_query(format!(
            "you administer {} organisations: name one with ?org= ({})",
            several.len(),
            several
                .iter()
                .map(|o| o.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

pub async fn list(
    State(s): State<ApiState>,
    who: Who,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> Result<Json<AuditList>, Problem> {
    let limit = match q.limit {
        None => DEFAULT_LIMIT,
        Some(n) if (1..=MAX_LIMIT).contains(&n) => n,
        Some(n) => {
            return Err(bad_query(format!(
                "limit {n} is out of range: ask for 1 to {MAX_LIMIT} events a page"
            )));
        }
    };
    let newest_first = match q.order.as_deref() {
        None | Some("desc") => true,
        Some("asc") => false,
        Some(o) => {
            return Err(bad_query(format!(
                "order `{o}` is not one of: desc (newest first), asc (oldest first)"
            )));
        }
    };
    let after = q
        .cursor
        .as_deref()
        .map(|c| {
            crate::api::pagination::decode(c).map(|(index, seq)| HistoryKey {
                index: index as u64,
                seq: seq.parse().unwrap_or(0),
            })
        })
        .transpose()?;
    let filter = AuditFilter {
        org: None,
        actor: q.actor.clone(),
        resource: q.resource.clone(),
        since_ms: q
            .since
            .as_deref()
            .map(|t| rfc3339_ms("since", t))
            .transpose()?,
        until_ms: q
            .until
            .as_deref()
            .map(|t| rfc3339_ms("until", t))
            .transpose()?,
    };
    ReadOptions {
        stale: q.stale,
        project: None,
    }
    .prepare(&s.cluster)
    .await?;
    let filter = AuditFilter {
        org: org_of_caller(&s, &who, q.org.as_deref())?,
        ..filter
    };
    let page = s
        .read_history(move |store| store.audit_page(&filter, after, limit, newest_first))
        .await?;
    Ok(Json(AuditList {
        next_cursor: page
            .last
            .map(|k| encode(&(k.index as i64, k.seq.to_string()))),
        events: page.events,
    }))
}

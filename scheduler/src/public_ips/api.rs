//! `POST|GET /v1/floating-ips`, `GET|DELETE /v1/floating-ips/{id}`,
//! `POST /v1/floating-ips/{id}/assign|unassign`, `PUT /v1/reverse-dns/{address}`.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use vmcloud_proto::pb::{self, command::Body};

use crate::api::context::{
    ApiJson, ApiQuery, ApiState, Caller, ReadOptions, created, owned, rfc3339,
};
use crate::api::pagination::ListQuery;
use crate::api::problem::Problem;
use crate::public_ips::types::FloatingIp;
use crate::state::ClusterState;
use crate::tenancy::authz::{Action, Resource};

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateFloatingIpRequest {
    /// The region whose pools it comes from; it goes to instances of that region.
    pub region: String,
    #[serde(default)]
    pub description: String,
    /// An instance to assign it to at once.
    #[serde(default)]
    pub instance: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AssignRequest {
    /// An instance of the project in the floating IP's region (`i-…`).
    pub instance: String,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReverseDnsRequest {
    /// A host name (`mail.example.org`); empty: none.
    pub name: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct FloatingIpView {
    pub id: String,
    pub address: String,
    pub region: String,
    /// The instance it is assigned to (absent: none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reverse_dns: Option<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub description: String,
    pub created_at: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct FloatingIpList {
    pub floating_ips: Vec<FloatingIpView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// A public address and its reverse DNS name.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ReverseDnsView {
    pub address: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reverse_dns: Option<String>,
}

fn view(state: &ClusterState, f: &FloatingIp) -> FloatingIpView {
    FloatingIpView {
        id: f.id.clone(),
        address: f.address.to_string(),
        region: f.region.clone(),
        instance: f.instance.as_ref().map(ToString::to_string),
        reverse_dns: state
            .public_ips
            .get(&u32::from(f.address))
            .and_then(|h| h.reverse_dns.clone()),
        description: f.description.clone(),
        created_at: rfc3339(f.created_at_ms),
    }
}

fn floating_of(
    s: &ApiState,
    project: &vmcloud_proto::ProjectId,
    id: &str,
) -> Result<FloatingIp, Problem> {
    let state = s.cluster.state();
    owned(
        &state.floating_ips,
        id,
        project,
        |f| &f.project,
        "floating IP",
    )
}

fn current(s: &ApiState, id: &str) -> Result<FloatingIpView, Problem> {
    let state = s.cluster.state();
    let f = state
        .floating_ips
        .get(id)
        .ok_or_else(|| Problem::internal("the floating IP was applied but is not in the state"))?;
    Ok(view(&state, f))
}

pub async fn create(
    State(s): State<ApiState>,
    Caller(project, who): Caller,
    ApiJson(req): ApiJson<CreateFloatingIpRequest>,
) -> Result<Response, Problem> {
    who.may(&s, Action::Deploy, Resource::Project(&project))?;
    let Some(region) = s.catalog.regions.get(&req.region) else {
        return Err(Problem::unprocessable(
            "unknown-region",
            "Unknown region",
            format!(
                "`region` {:?} is not a region; choose from: {}",
                req.region,
                s.catalog
                    .regions
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    };
    let id = format!("fip-{:016x}", rand::random::<u64>());
    s.cluster
        .propose_as(
            who.actor(),
            Body::CreateFloatingIp(pb::CreateFloatingIp {
                floating_ip_id: id.clone(),
                project_id: project.to_string(),
                region: req.region.clone(),
                public_pool: region.public_ipv4.clone(),
                description: req.description,
            }),
        )
        .await??;
    if let Some(instance) = req.instance {
        s.cluster
            .propose_as(
                who.actor(),
                Body::AssignFloatingIp(pb::AssignFloatingIp {
                    floating_ip_id: id.clone(),
                    project_id: project.to_string(),
                    instance_id: instance,
                }),
            )
            .await??;
    }
    Ok(created(format!("/v1/floating-ips/{id}"), current(&s, &id)?))
}

/// The project's floating IPs, oldest first (`?region=`).
pub async fn list(
    State(s): State<ApiState>,
    Caller(project, _who): Caller,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<FloatingIpList>, Problem> {
    q.read().prepare(&s.cluster).await?;
    let state = s.cluster.state();
    let mine = state
        .floating_ips
        .values()
        .filter(|f| f.project == project)
        .filter(|f| q.region.as_deref().is_none_or(|r| f.region == r))
        .map(|f| ((f.created_at_ms, f.id.clone()), view(&state, f)))
        .collect();
    let (floating_ips, next_cursor) = q.page(mine)?;
    Ok(Json(FloatingIpList {
        floating_ips,
        next_cursor,
    }))
}

pub async fn get(
    State(s): State<ApiState>,
    Caller(project, _who): Caller,
    Path(id): Path<String>,
    ApiQuery(read): ApiQuery<ReadOptions>,
) -> Result<Json<FloatingIpView>, Problem> {
    read.prepare(&s.cluster).await?;
    floating_of(&s, &project, &id)?;
    Ok(Json(current(&s, &id)?))
}

async fn assign_to(
    s: &ApiState,
    Caller(project, who): Caller,
    id: String,
    instance: String,
) -> Result<Json<FloatingIpView>, Problem> {
    floating_of(s, &project, &id)?;
    who.may(s, Action::Deploy, Resource::Project(&project))?;
    s.cluster
        .propose_as(
            who.actor(),
            Body::AssignFloatingIp(pb::AssignFloatingIp {
                floating_ip_id: id.clone(),
                project_id: project.to_string(),
                instance_id: instance,
            }),
        )
        .await??;
    Ok(Json(current(s, &id)?))
}

/// Assigns (or moves) the floating IP to an instance; its hosts reroute it at once.
pub async fn assign(
    State(s): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<AssignRequest>,
) -> Result<Json<FloatingIpView>, Problem> {
    assign_to(&s, caller, id, req.instance).await
}

pub async fn unassign(
    State(s): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<FloatingIpView>, Problem> {
    assign_to(&s, caller, id, String::new()).await
}

pub async fn delete(
    State(s): State<ApiState>,
    Caller(project, who): Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, Problem> {
    floating_of(&s, &project, &id)?;
    who.may(&s, Action::Deploy, Resource::Project(&project))?;
    s.cluster
        .propose_as(
            who.actor(),
            Body::DeleteFloatingIp(pb::DeleteFloatingIp {
                floating_ip_id: id,
                project_id: project.to_string(),
            }),
        )
        .await??;
    Ok(StatusCode::NO_CONTENT)
}

/// Sets the reverse DNS name of a public address the project holds (an instance's own or a
/// floating IP).
pub async fn set_reverse_dns(
    State(s): State<ApiState>,
    Caller(project, who): Caller,
    Path(address): Path<String>,
    ApiJson(req): ApiJson<ReverseDnsRequest>,
) -> Result<Json<ReverseDnsView>, Problem> {
    let held = address
        .parse::<std::net::Ipv4Addr>()
        .ok()
        .and_then(|ip| {
            s.cluster
                .state()
                .public_ips
                .get(&u32::from(ip))
                .map(|h| h.project == project)
        })
        .unwrap_or(false);
    if !held {
        return Err(Problem::not_found(format!(
            "public address {address} of this project does not exist"
        )));
    }
    who.may(&s, Action::Deploy, Resource::Project(&project))?;
    s.cluster
        .propose_as(
            who.actor(),
            Body::SetReverseDns(pb::SetReverseDns {
                address: address.clone(),
                project_id: project.to_string(),
                name: req.name,
            }),
        )
        .await??;
    let reverse_dns = address
        .parse::<std::net::Ipv4Addr>()
        .ok()
        .and_then(|ip| s.cluster.state().public_ips.get(&u32::from(ip)).cloned())
        .and_then(|h| h.reverse_dns);
    Ok(Json(ReverseDnsView {
        address,
        reverse_dns,
    }))
}

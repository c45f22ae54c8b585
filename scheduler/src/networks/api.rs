//! `POST|GET /v1/networks`, `GET|DELETE /v1/networks/{id}`: a project's private networks.

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
use crate::networks::types::{Network, Subnet};
use crate::tenancy::authz::{Action, Resource};

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateNetworkRequest {
    /// 1 to 63 characters, unique in the project.
    pub name: String,
    /// A private IPv4 range (RFC 1918), /16 to /28 (default: the first free `10.x.0.0/24`).
    #[serde(default)]
    pub subnet: Option<String>,
    /// The region its instances run in (absent: every region).
    #[serde(default)]
    pub region: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct NetworkView {
    pub id: String,
    pub project: String,
    pub name: String,
    pub subnet: String,
    /// Absent: every region.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// The VXLAN identifier that keeps it apart from every other network.
    pub vni: u32,
    pub gateway: String,
    /// The project's default network of its region (instances that name none join it).
    pub default: bool,
    /// Addresses held by instances, and how many it has for them.
    pub addresses_used: u32,
    pub addresses_total: u32,
    pub created_at: String,
}

impl NetworkView {
    pub fn new(n: &Network) -> NetworkView {
        NetworkView {
            id: n.id.clone(),
            project: n.project.to_string(),
            name: n.name.clone(),
            subnet: n.subnet.to_string(),
            region: n.region.clone(),
            vni: n.vni,
            gateway: n.subnet.gateway().to_string(),
            default: n.default,
            addresses_used: n.addresses.len() as u32,
            addresses_total: n.subnet.assignable().len() as u32,
            created_at: rfc3339(n.created_at_ms),
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct NetworkList {
    pub networks: Vec<NetworkView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

fn invalid(detail: String) -> Problem {
    Problem::unprocessable("invalid-network", "Invalid network", detail)
}

/// The first `10.x.0.0/24` none of the project's networks sharing `region` overlaps.
fn free_subnet(networks: &[&Network], region: Option<&str>) -> Result<Subnet, Problem> {
    (0..=255u8)
        .map(|x| Subnet {
            base: std::net::Ipv4Addr::new(10, x, 0, 0),
            prefix: 24,
        })
        .find(|s| {
            !networks
                .iter()
                .any(|n| n.shares_a_region(region) && n.subnet.overlaps(s))
        })
        .ok_or_else(|| invalid("no 10.x.0.0/24 is free in this project: give a `subnet`".into()))
}

pub async fn create(
    State(s): State<ApiState>,
    Caller(project, who): Caller,
    ApiJson(req): ApiJson<CreateNetworkRequest>,
) -> Result<Response, Problem> {
    who.may(&s, Action::ManageProject, Resource::Project(&project))?;
    if let Some(region) = &req.region
        && !s.catalog.regions.contains_key(region)
    {
        return Err(invalid(format!(
            "`region` {region:?} is not a region; choose from: {}",
            s.catalog
                .regions
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let subnet = match &req.subnet {
        Some(text) => Subnet::parse_private(text).map_err(|e| invalid(format!("`subnet`: {e}")))?,
        None => {
            let state = s.cluster.state();
            let mine: Vec<&Network> = state
                .networks
                .values()
                .filter(|n| n.project == project)
                .collect();
            free_subnet(&mine, req.region.as_deref())?
        }
    };
    let id = format!("net-{:016x}", rand::random::<u64>());
    s.cluster
        .propose_as(
            who.actor(),
            Body::CreateNetwork(pb::CreateNetwork {
                network_id: id.clone(),
                project_id: project.to_string(),
                name: req.name,
                subnet: subnet.to_string(),
                region: req.region.unwrap_or_default(),
                vnis: Some(s.catalog.networks.vnis()),
            }),
        )
        .await??;
    let state = s.cluster.state();
    let n = state
        .networks
        .get(&id)
        .ok_or_else(|| Problem::internal("the network was applied but is not in the state"))?;
    Ok(created(format!("/v1/networks/{id}"), NetworkView::new(n)))
}

/// The project's networks, oldest first (`?region=`: those instances of that region may
/// join).
pub async fn list(
    State(s): State<ApiState>,
    Caller(project, _who): Caller,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<NetworkList>, Problem> {
    q.read().prepare(&s.cluster).await?;
    let state = s.cluster.state();
    let mine = state
        .networks
        .values()
        .filter(|n| n.project == project)
        .filter(|n| q.region.as_deref().is_none_or(|r| n.serves(r)))
        .map(|n| ((n.created_at_ms, n.id.clone()), NetworkView::new(n)))
        .collect();
    let (networks, next_cursor) = q.page(mine)?;
    Ok(Json(NetworkList {
        networks,
        next_cursor,
    }))
}

fn network_of(
    s: &ApiState,
    project: &vmcloud_proto::ProjectId,
    id: &str,
) -> Result<Network, Problem> {
    let state = s.cluster.state();
    owned(&state.networks, id, project, |n| &n.project, "network")
}

pub async fn get(
    State(s): State<ApiState>,
    Caller(project, _who): Caller,
    Path(id): Path<String>,
    ApiQuery(read): ApiQuery<ReadOptions>,
) -> Result<Json<NetworkView>, Problem> {
    read.prepare(&s.cluster).await?;
    Ok(Json(NetworkView::new(&network_of(&s, &project, &id)?)))
}

pub async fn delete(
    State(s): State<ApiState>,
    Caller(project, who): Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, Problem> {
    network_of(&s, &project, &id)?;
    who.may(&s, Action::ManageProject, Resource::Project(&project))?;
    s.cluster
        .propose_as(
            who.actor(),
            Body::DeleteNetwork(pb::DeleteNetwork {
                network_id: id,
                project_id: project.to_string(),
            }),
        )
        .await??;
    Ok(StatusCode::NO_CONTENT)
}

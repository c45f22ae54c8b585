//! `/v1/instances`: create, list, get and delete VPS and GPU instances.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use vmcloud_proto::InstanceId;
use vmcloud_proto::pb::{self, command::Body};

use crate::api::context::{ApiJson, ApiQuery, ApiState, Caller, ReadOptions, created, rfc3339};
use crate::api::pagination::{self, ListQuery};
use crate::api::problem::Problem;
use crate::api::validate::{
    check_flavor, check_guest_data, check_image, check_label, check_market_fields, check_region,
    parse_market,
};
use crate::catalog::Catalog;
use crate::instances::types::{Instance, Market};
use crate::state::Applied;
use crate::tenancy::authz::{Action, Resource};

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateInstanceRequest {
    pub flavor: String,
    pub image: String,
    pub region: String,
    #[serde(default)]
    pub name: Option<String>,
    /// `on-demand` (the default), `spot` or `reserved`.
    #[serde(default)]
    pub market: Option<String>,
    /// Market reserved: the reservation to draw on (default: the project's active
    /// reservation for this flavor and region with a free slot).
    #[serde(default)]
    pub reservation: Option<String>,
    /// A dedicated pool (e.g. `anti-cheat`, `partner:acme`); absent: the general fleet.
    #[serde(default)]
    pub pool: Option<String>,
    /// Labels the host must carry.
    #[serde(default)]
    pub node_selector: BTreeMap<String, String>,
    /// Instances of the project in one spread group never share a host and spread across
    /// racks.
    #[serde(default)]
    pub spread_group: Option<String>,
    /// Spot only: seconds of notice before the instance is reclaimed (default: the flavor's,
    /// 120 unless the catalog says otherwise).
    #[serde(default)]
    pub preemption_notice_s: Option<u32>,
    /// Cloud-init user-data for the guest (at most 16 KiB), served by its host's metadata
    /// endpoint.
    #[serde(default)]
    pub user_data: Option<String>,
    /// OpenSSH public keys for the guest (at most 10).
    #[serde(default)]
    pub ssh_keys: Vec<String>,
    /// The private network its NIC joins (`net-…`, of the project and region); absent: the
    /// project's default network of the region, made on first use.
    #[serde(default)]
    pub network: Option<String>,
    /// The private address it asks for (absent: the first free one of the network).
    #[serde(default)]
    pub private_ipv4: Option<String>,
    /// A public IPv4 address of its own from the region's pools, held until it is gone.
    #[serde(default)]
    pub public_ipv4: bool,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct InstanceView {
    pub id: String,
    pub name: String,
    pub flavor: String,
    pub image: String,
    pub region: String,
    pub state: String,
    pub node: Option<String>,
    pub vcpus: u32,
    pub memory_mib: u64,
    pub disk_gib: u64,
    pub gpu: Option<GpuView>,
    pub pending_reason: Option<String>,
    pub status_message: Option<String>,
    pub created_at: String,
    pub placed_at: Option<String>,
    pub running_at: Option<String>,
    pub market: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spread_group: Option<String>,
    /// Spot: seconds of notice it gets before it is reclaimed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preemption_notice_s: Option<u32>,
    /// Spot under notice: when it is stopped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub terminate_at: Option<String>,
    /// Pending: the host whose spot capacity is being reclaimed for it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nominated_node: Option<String>,
    /// Market reserved: the reservation it draws on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reservation: Option<String>,
    /// What the owner was told (host events, preemption), oldest first.
    pub notices: Vec<NoticeView>,
    /// The private network its NIC is on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    /// Its address on that network, held for its life.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub private_ipv4: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// The firewalls attached to it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub firewalls: Vec<String>,
    /// Its own public IPv4 address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_ipv4: Option<String>,
    /// The floating IPs assigned to it (`fip-…`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub floating_ips: Vec<String>,
    /// Its IPv6 address, in its host's /64 (once placed on a host that has one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ipv6: Option<String>,
    /// Ended instances (`?state=ended`): when it ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<String>,
    /// Ended instances: why it ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_reason: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct NoticeView {
    pub at: String,
    pub message: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct GpuView {
    pub model: String,
    pub count: u32,
}

impl InstanceView {
    fn new(i: &Instance) -> Self {
        InstanceView {
            id: i.id.to_string(),
            name: i.name.clone(),
            flavor: i.flavor.clone(),
            image: i.image.clone(),
            region: i.region.clone(),
            state: i.state.as_str().to_owned(),
            node: i.node.as_ref().map(|n| n.to_string()),
            vcpus: i.vcpus,
            memory_mib: i.memory_mib,
            disk_gib: i.disk_gib,
            gpu: i.gpu.as_ref().map(|g| GpuView {
                model: g.model.clone(),
                count: g.count,
            }),
            pending_reason: i.pending_reason.clone(),
            status_message: i.status_message.clone(),
            created_at: rfc3339(i.created_at_ms),
            placed_at: i.placed_at_ms.map(rfc3339),
            running_at: i.running_at_ms.map(rfc3339),
            market: i.market.as_str().to_owned(),
            pool: i.pool.clone(),
            node_selector: i.node_selector.clone(),
            spread_group: i.spread_group.clone(),
            preemption_notice_s: (i.market == Market::Spot).then_some(i.preemption_notice_s),
            terminate_at: i.terminate_at_ms.map(rfc3339),
            nominated_node: i.nominated_node.as_ref().map(|n| n.to_string()),
            reservation: i.reservation.as_ref().map(|r| r.to_string()),
            notices: i
                .notices
                .iter()
                .map(|n| NoticeView {
                    at: rfc3339(n.at_ms),
                    message: n.message.clone(),
                })
                .collect(),
            network: i.nic.as_ref().map(|n| n.network.clone()),
            private_ipv4: i.nic.as_ref().map(|n| n.ipv4.to_string()),
            mac: i.nic.as_ref().map(|n| n.mac.clone()),
            firewalls: i.firewalls.clone(),
            public_ipv4: i.public_ipv4.map(|a| a.to_string()),
            floating_ips: i.floating_ips.clone(),
            ipv6: i.ipv6.map(|a| a.to_string()),
            ended_at: None,
            end_reason: None,
        }
    }

    /// An instance as history keeps it: its last record, in state `ended`.
    fn ended(i: &Instance, ended_at_ms: i64, reason: String) -> Self {
        InstanceView {
            state: ENDED.to_owned(),
            ended_at: Some(rfc3339(ended_at_ms)),
            end_reason: Some(reason),
            ..InstanceView::new(i)
        }
    }
}

/// The state `?state=` names to list a project's ended instances (from history).
const ENDED: &str = "ended";

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct InstanceList {
    pub instances: Vec<InstanceView>,
    /// Pass as `?cursor=` for the next page; absent on the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// Checks a create request against the catalog; the error names the field and the choices.
/// Gives back the market it asks for.
fn validate(catalog: &Catalog, req: &CreateInstanceRequest) -> Result<pb::Market, Problem> {
    check_region(catalog, &req.region)?;
    check_flavor(catalog, &req.flavor)?;
    check_image(catalog, &req.image)?;
    let market = parse_market(req.market.as_deref())?;
    check_market_fields(
        market,
        req.reservation.is_some(),
        req.preemption_notice_s,
        "instances",
    )?;
    if market == pb::Market::Reserved
        && (req.pool.is_some() || !req.node_selector.is_empty() || req.spread_group.is_some())
    {
        return Err(Problem::unprocessable(
            "invalid-reserved",
            "Reserved instances run on their reservation's hosts",
            "a reserved instance runs on the hosts its reservation holds; drop pool, node_selector and spread_group",
        ));
    }
    check_guest_data(req.user_data.as_deref(), &req.ssh_keys)?;
    if let Some(pool) = &req.pool {
        check_label("pool", pool)?;
    }
    if let Some(group) = &req.spread_group {
        check_label("spread_group", group)?;
    }
    for (k, v) in &req.node_selector {
        check_label("node_selector key", k)?;
        check_label("node_selector value", v)?;
    }
    if let Some(name) = &req.name {
        let ok = !name.is_empty()
            && name.len() <= 63
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !name.starts_with('-')
            && !name.ends_with('-');
        if !ok {
            return Err(Problem::unprocessable(
                "invalid-name",
                "Invalid name",
                format!(
                    "name `{name}` must be 1 to 63 lowercase letters, digits or `-`, not starting or ending with `-`"
                ),
            ));
        }
    }
    Ok(market)
}

pub async fn create(
    State(s): State<ApiState>,
    Caller(project, who): Caller,
    ApiJson(req): ApiJson<CreateInstanceRequest>,
) -> Result<Response, Problem> {
    who.may(&s, Action::Deploy, Resource::Project(&project))?;
    let market = validate(&s.catalog, &req)?;
    crate::partners::pops::check_pop(&s.catalog, &s.cluster.state(), &req.region, &project)?;
    let flavor = &s.catalog.flavors[&req.flavor];
    let reservation = crate::reservations::api::for_market(
        &s,
        market,
        &project,
        &req.flavor,
        &req.region,
        req.reservation.as_deref(),
        1,
    )?;
    let id = InstanceId::generate();
    let name = req
        .name
        .clone()
        .unwrap_or_else(|| format!("{}-{}", req.flavor, &id.as_str()[2..8]));
    let command = pb::CreateInstance {
        market: market as i32,
        pool: req.pool.clone().unwrap_or_default(),
        node_selector: req.node_selector.clone().into_iter().collect(),
        spread_group: req.spread_group.clone().unwrap_or_default(),
        preemption_notice_s: req.preemption_notice_s.unwrap_or(flavor.spot_notice_s),
        reservation_id: reservation,
        user_data: req.user_data.clone().unwrap_or_default(),
        ssh_keys: req.ssh_keys.clone(),
        network_id: req.network.clone().unwrap_or_default(),
        private_ipv4: req.private_ipv4.clone().unwrap_or_default(),
        vnis: Some(s.catalog.networks.vnis()),
        public_ipv4: req.public_ipv4,
        public_pool: if req.public_ipv4 {
            s.catalog.regions[&req.region].public_ipv4.clone()
        } else {
            Vec::new()
        },
        ..flavor
            .spec(name, &req.flavor, &req.image, &req.region)
            .create_command(&id, &project)
    };
    match s
        .cluster
        .propose_as(who.actor(), Body::CreateInstance(command))
        .await??
    {
        Applied::Instance(instance) => Ok(created(
            format!("/v1/instances/{}", instance.id),
            InstanceView::new(&instance),
        )),
        _ => Err(Problem::from(crate::state::Rejected::Malformed)),
    }
}

/// The project's instances in creation order, a page at a time, optionally by state or region.
pub async fn list(
    State(s): State<ApiState>,
    Caller(project, _who): Caller,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<InstanceList>, Problem> {
    let limit = q.limit()?;
    if q.state.as_deref() == Some(ENDED) {
        return ended_page(&s, &project, &q, limit).await.map(Json);
    }
    let after = q
        .after()?
        .map(|(at, id)| {
            InstanceId::parse(&id).map(|id| (at, id)).map_err(|_| {
                Problem::new(
                    axum::http::StatusCode::BAD_REQUEST,
                    "invalid-cursor",
                    "Invalid cursor",
                    "this cursor does not belong to an instance list",
                )
            })
        })
        .transpose()?;
    q.read().prepare(&s.cluster).await?;
    let state = s.cluster.state();
    let (page, next) = state.instances_page(&project, after.as_ref(), limit, |i| {
        q.state.as_deref().is_none_or(|st| i.state.as_str() == st)
            && q.region.as_deref().is_none_or(|r| i.region == r)
    });
    Ok(Json(InstanceList {
        instances: page.into_iter().map(InstanceView::new).collect(),
        next_cursor: next.map(|(at, id)| pagination::encode(&(at, id.to_string()))),
    }))
}

fn parse_id(id: &str) -> Result<InstanceId, Problem> {
    InstanceId::parse(id).map_err(|e| Problem::not_found(format!("no instance `{id}`: {e}")))
}

/// A page of the project's ended instances, newest first, read from the replica's history
/// store through its `ended:<project>` index.
async fn ended_page(
    s: &ApiState,
    project: &vmcloud_proto::ProjectId,
    q: &ListQuery,
    limit: usize,
) -> Result<InstanceList, Problem> {
    use crate::history::types::{HistoryKey, HistoryRecord};
    let before = q
        .after()?
        .map(|(index, seq)| {
            seq.parse().map(|seq| HistoryKey {
                index: index as u64,
                seq,
            })
        })
        .transpose()
        .map_err(|_| {
            Problem::new(
                StatusCode::BAD_REQUEST,
                "invalid-cursor",
                "Invalid cursor",
                "this cursor does not belong to a list of ended instances",
            )
        })?;
    let dimension = format!("ended:{project}");
    let (records, last) = s
        .read_history(move |store| store.dimension_page(&dimension, before, limit))
        .await?;
    let region = q.region.as_deref();
    let instances = records
        .into_iter()
        .filter_map(|r| match r {
            HistoryRecord::InstanceEnded {
                instance,
                ended_at_ms,
                reason,
            } if region.is_none_or(|r| instance.region == r) => {
                Some(InstanceView::ended(&instance, ended_at_ms, reason))
            }
            _ => None,
        })
        .collect();
    Ok(InstanceList {
        instances,
        next_cursor: last.map(|k| pagination::encode(&(k.index as i64, k.seq.to_string()))),
    })
}

pub async fn get(
    State(s): State<ApiState>,
    Caller(project, _who): Caller,
    Path(id): Path<String>,
    ApiQuery(read): ApiQuery<ReadOptions>,
) -> Result<Json<InstanceView>, Problem> {
    let id = parse_id(&id)?;
    read.prepare(&s.cluster).await?;
    let state = s.cluster.state();
    state
        .instances
        .get(&id)
        .filter(|i| i.project == project)
        .map(|i| Json(InstanceView::new(i)))
        .ok_or_else(|| Problem::not_found(format!("instance {id} does not exist")))
}

pub async fn delete(
    State(s): State<ApiState>,
    Caller(project, who): Caller,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    who.may(&s, Action::Deploy, Resource::Project(&project))?;
    let id = parse_id(&id)?;
    let command = pb::DeleteInstance {
        instance_id: id.to_string(),
        project_id: project.to_string(),
    };
    match s
        .cluster
        .propose_as(who.actor(), Body::DeleteInstance(command))
        .await??
    {
        Applied::Instance(instance) => {
            let mut view = InstanceView::new(&instance);
            if !s.cluster.state().instances.contains_key(&id) {
                view.state = "deleted".to_owned();
            }
            Ok((StatusCode::ACCEPTED, Json(view)).into_response())
        }
        _ => Err(Problem::from(crate::state::Rejected::Malformed)),
    }
}

//! `/v1/instances`: create, list, get and delete VPS and GPU instances.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use vmcloud_proto::InstanceId;
use vmcloud_proto::pb::{self, command::Body};

use super::{ApiJson, ApiQuery, ApiState, Caller, Problem, ReadOptions, created, rfc3339};
use crate::catalog::{Catalog, RegionStatus};
use crate::state::{Applied, Instance};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateInstanceRequest {
    pub flavor: String,
    pub image: String,
    pub region: String,
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Debug, Serialize)]
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
}

#[derive(Debug, Serialize)]
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
        }
    }
}

#[derive(Debug, Serialize)]
pub struct InstanceList {
    pub instances: Vec<InstanceView>,
}

/// Checks a create request against the catalog; the error names the field and the choices.
fn validate(catalog: &Catalog, req: &CreateInstanceRequest) -> Result<(), Problem> {
    let choices = |names: Vec<&str>| names.join(", ");
    match catalog.regions.get(&req.region) {
        None => {
            return Err(Problem::unprocessable(
                "unknown-region",
                "Unknown region",
                format!(
                    "region `{}` does not exist; choose one of: {}",
                    req.region,
                    choices(catalog.active_regions())
                ),
            ));
        }
        Some(r) if r.status != RegionStatus::Active => {
            let status = match r.status {
                RegionStatus::Maintenance => "in maintenance",
                RegionStatus::Planned => "not open yet",
                RegionStatus::Active => unreachable!(),
            };
            return Err(Problem::unprocessable(
                "region-unavailable",
                "Region unavailable",
                format!(
                    "region `{}` ({}) is {status} and takes no new instances; choose one of: {}",
                    req.region,
                    r.name,
                    choices(catalog.active_regions())
                ),
            ));
        }
        Some(_) => {}
    }
    if !catalog.flavors.contains_key(&req.flavor) {
        return Err(Problem::unprocessable(
            "unknown-flavor",
            "Unknown flavor",
            format!(
                "flavor `{}` does not exist; choose one of: {}",
                req.flavor,
                choices(catalog.flavors.keys().map(String::as_str).collect())
            ),
        ));
    }
    if !catalog.images.contains_key(&req.image) {
        return Err(Problem::unprocessable(
            "unknown-image",
            "Unknown image",
            format!(
                "image `{}` does not exist; choose one of: {}",
                req.image,
                choices(catalog.images.keys().map(String::as_str).collect())
            ),
        ));
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
    Ok(())
}

pub async fn create(
    State(s): State<ApiState>,
    Caller(account): Caller,
    headers: HeaderMap,
    ApiJson(req): ApiJson<CreateInstanceRequest>,
) -> Result<Response, Problem> {
    validate(&s.catalog, &req)?;
    let flavor = &s.catalog.flavors[&req.flavor];
    let idempotency_key = match headers.get("idempotency-key") {
        None => String::new(),
        Some(v) => v
            .to_str()
            .ok()
            .filter(|k| !k.is_empty() && k.len() <= 255)
            .ok_or_else(|| {
                Problem::new(
                    StatusCode::BAD_REQUEST,
                    "invalid-idempotency-key",
                    "Invalid Idempotency-Key",
                    "the Idempotency-Key header must be 1 to 255 visible ASCII characters",
                )
            })?
            .to_owned(),
    };
    let id = InstanceId::generate();
    let name = req
        .name
        .clone()
        .unwrap_or_else(|| format!("{}-{}", req.flavor, &id.as_str()[2..8]));
    let command = pb::CreateInstance {
        instance_id: id.to_string(),
        account_id: account.to_string(),
        name,
        flavor: req.flavor.clone(),
        image: req.image.clone(),
        region: req.region.clone(),
        vcpus: flavor.vcpus,
        memory_mib: flavor.memory_mib,
        disk_gib: flavor.disk_gib,
        gpu_model: flavor
            .gpu
            .as_ref()
            .map(|g| g.model.clone())
            .unwrap_or_default(),
        gpu_count: flavor.gpu.as_ref().map_or(0, |g| g.count),
        idempotency_key,
    };
    match s.cluster.propose(Body::CreateInstance(command)).await?? {
        Applied::Instance(instance) => Ok(created(
            format!("/v1/instances/{}", instance.id),
            InstanceView::new(&instance),
        )),
        Applied::Done => Err(Problem::from(crate::state::Rejected::Malformed)),
    }
}

pub async fn list(
    State(s): State<ApiState>,
    Caller(account): Caller,
    ApiQuery(read): ApiQuery<ReadOptions>,
) -> Result<Json<InstanceList>, Problem> {
    read.prepare(&s.cluster).await?;
    let state = s.cluster.state();
    let mut mine: Vec<&Instance> = state
        .instances
        .values()
        .filter(|i| i.account == account)
        .collect();
    mine.sort_by(|a, b| (a.created_at_ms, &a.id).cmp(&(b.created_at_ms, &b.id)));
    Ok(Json(InstanceList {
        instances: mine.into_iter().map(InstanceView::new).collect(),
    }))
}

fn parse_id(id: &str) -> Result<InstanceId, Problem> {
    InstanceId::parse(id).map_err(|e| Problem::not_found(format!("no instance `{id}`: {e}")))
}

pub async fn get(
    State(s): State<ApiState>,
    Caller(account): Caller,
    Path(id): Path<String>,
    ApiQuery(read): ApiQuery<ReadOptions>,
) -> Result<Json<InstanceView>, Problem> {
    let id = parse_id(&id)?;
    read.prepare(&s.cluster).await?;
    let state = s.cluster.state();
    state
        .instances
        .get(&id)
        .filter(|i| i.account == account)
        .map(|i| Json(InstanceView::new(i)))
        .ok_or_else(|| Problem::not_found(format!("instance {id} does not exist")))
}

pub async fn delete(
    State(s): State<ApiState>,
    Caller(account): Caller,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let id = parse_id(&id)?;
    let command = pb::DeleteInstance {
        instance_id: id.to_string(),
        account_id: account.to_string(),
    };
    match s.cluster.propose(Body::DeleteInstance(command)).await?? {
        Applied::Instance(instance) => {
            let mut view = InstanceView::new(&instance);
            if !s.cluster.state().instances.contains_key(&id) {
                view.state = "deleted".to_owned();
            }
            Ok((StatusCode::ACCEPTED, Json(view)).into_response())
        }
        Applied::Done => Err(Problem::from(crate::state::Rejected::Malformed)),
    }
}

//! `/v1/jobs`: AI batch jobs. A job is one or more member VMs of one flavor (a gang starts
//! all together), queued by priority class and fair share, stopped at its maximum run time.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use vmcloud_proto::pb::{self, command::Body};
use vmcloud_proto::{InstanceId, JobId, ProjectId};

use crate::api::context::{
    ApiJson, ApiQuery, ApiState, Caller, QueuePlace, ReadOptions, created, rfc3339,
};
use crate::api::pagination::{self, ListQuery};
use crate::api::problem::Problem;
use crate::api::validate::{check_flavor, check_image, check_region, check_whole_gpus};
use crate::instances::types::{Instance, InstanceState};
use crate::jobs::queue::{Standing, parse_priority, standings};
use crate::jobs::types::JobPriority;
use crate::state::ClusterState;
use crate::tenancy::authz::{Action, Resource};

/// Most members of one job.
pub const MAX_MEMBERS: u32 = 64;
/// Longest maximum run time: 7 days.
pub const MAX_RUNTIME_S: u32 = 7 * 86_400;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitJobRequest {
    pub region: String,
    pub flavor: String,
    pub image: String,
    /// Seconds each member may run (60 to 604800); it is stopped then.
    pub max_runtime_s: u32,
    /// Members started together (default 1).
    #[serde(default)]
    pub members: Option<u32>,
    /// `low`, `normal` (default) or `high`.
    #[serde(default)]
    pub priority: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    /// `on-demand` (default), `spot` (cheaper; preempted with notice when the GPUs are needed,
    /// then queued again) or `reserved` (on a reservation of the project's, one slot per
    /// member).
    #[serde(default)]
    pub market: Option<String>,
    /// Market reserved: the reservation to draw on (default: the project's oldest active one
    /// of this flavor and region with a slot free for every member).
    #[serde(default)]
    pub reservation: Option<String>,
    /// Market spot: notice before a preemption stops it (30 to 3600 s; default the flavor's).
    #[serde(default)]
    pub preemption_notice_s: Option<u32>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct JobView {
    pub id: String,
    pub name: String,
    pub region: String,
    pub flavor: String,
    pub priority: String,
    /// `on-demand`, `spot` or `reserved`.
    pub market: String,
    pub max_runtime_s: u32,
    /// `queued`, `running` or `stopping`.
    pub state: String,
    pub instances: Vec<String>,
    /// Queued: its place in the queue.
    #[serde(flatten)]
    pub queue: QueuePlace,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pending_reason: Option<String>,
    /// Running: when it is stopped at the latest.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ends_by: Option<String>,
    pub submitted_at: String,
}

impl JobView {
    fn new(members: &[&Instance], standing: Option<&Standing>) -> JobView {
        let first = members[0];
        let spec = first.job.as_ref().expect("job members have a spec");
        let state = if members.iter().any(|i| i.state == InstanceState::Deleting) {
            "stopping"
        } else if members.iter().all(|i| i.state == InstanceState::Pending) {
            "queued"
        } else {
            "running"
        };
        let queued = state == "queued";
        JobView {
            id: spec.id.to_string(),
            name: first.name.clone(),
            region: first.region.clone(),
            flavor: first.flavor.clone(),
            priority: spec.priority.as_str().to_owned(),
            market: first.market.as_str().to_owned(),
            max_runtime_s: spec.max_runtime_s,
            state: state.to_owned(),
            instances: members.iter().map(|i| i.id.to_string()).collect(),
            queue: QueuePlace::new(standing, queued),
            pending_reason: first.pending_reason.clone().filter(|_| queued),
            ends_by: members
                .iter()
                .filter_map(|i| i.terminate_at_ms)
                .max()
                .map(rfc3339),
            submitted_at: rfc3339(first.created_at_ms),
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct JobList {
    pub jobs: Vec<JobView>,
    /// Pass as `?cursor=` for the next page; absent on the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

fn validate(
    s: &ApiState,
    req: &SubmitJobRequest,
) -> Result<(JobPriority, u32, pb::Market), Problem> {
    check_region(&s.catalog, &req.region)?;
    let market = crate::api::validate::parse_market(req.market.as_deref())?;
    crate::api::validate::check_market_fields(
        market,
        req.reservation.is_some(),
        req.preemption_notice_s,
        "jobs",
    )?;
    check_flavor(&s.catalog, &req.flavor)?;
    check_whole_gpus(&s.catalog, &req.flavor, "AI jobs")?;
    check_image(&s.catalog, &req.image)?;
    if !(60..=MAX_RUNTIME_S).contains(&req.max_runtime_s) {
        return Err(Problem::unprocessable(
            "invalid-runtime",
            "Invalid maximum run time",
            format!(
                "max_runtime_s {} must be between 60 and {MAX_RUNTIME_S} (7 days)",
                req.max_runtime_s
            ),
        ));
    }
    let members = req.members.unwrap_or(1);
    if !(1..=MAX_MEMBERS).contains(&members) {
        return Err(Problem::unprocessable(
            "invalid-members",
            "Invalid member count",
            format!("members {members} must be between 1 and {MAX_MEMBERS}"),
        ));
    }
    let priority = match req.priority.as_deref() {
        None => JobPriority::Normal,
        Some(p) => parse_priority(p).ok_or_else(|| {
            Problem::unprocessable(
                "unknown-priority",
                "Unknown priority class",
                format!("priority `{p}` does not exist; choose one of: low, normal, high"),
            )
        })?,
    };
    if let Some(name) = &req.name {
        crate::api::validate::check_label("name", name)?;
    }
    Ok((priority, members, market))
}

pub async fn submit(
    State(s): State<ApiState>,
    Caller(project, who): Caller,
    ApiJson(req): ApiJson<SubmitJobRequest>,
) -> Result<Response, Problem> {
    who.may(&s, Action::Deploy, Resource::Project(&project))?;
    let (priority, members, market) = validate(&s, &req)?;
    crate::partners::pops::check_pop(&s.catalog, &s.cluster.state(), &req.region, &project)?;
    let flavor = &s.catalog.flavors[&req.flavor];
    let reservation = crate::reservations::api::for_market(
        &s,
        market,
        &project,
        &req.flavor,
        &req.region,
        req.reservation.as_deref(),
        members as usize,
    )?;
    let job = JobId::generate();
    let name = req
        .name
        .clone()
        .unwrap_or_else(|| format!("job-{}", &job.as_str()[4..10]));
    let priority = match priority {
        JobPriority::Low => pb::JobPriority::Low,
        JobPriority::Normal => pb::JobPriority::Normal,
        JobPriority::High => pb::JobPriority::High,
    };
    let command = pb::CreateJob {
        members: (0..members)
            .map(|n| {
                let member = if members == 1 {
                    name.clone()
                } else {
                    format!("{name}-{n}")
                };
                pb::CreateInstance {
                    market: market as i32,
                    reservation_id: reservation.clone(),
                    preemption_notice_s: req.preemption_notice_s.unwrap_or(flavor.spot_notice_s),
                    job: Some(pb::JobSpec {
                        job_id: job.to_string(),
                        priority: priority as i32,
                        max_runtime_s: req.max_runtime_s,
                        gang_size: members,
                        member: n,
                    }),
                    vnis: Some(s.catalog.networks.vnis()),
                    ..flavor
                        .spec(member, &req.flavor, &req.image, &req.region)
                        .create_command(&InstanceId::generate(), &project)
                }
            })
            .collect(),
    };
    let first = match s
        .cluster
        .propose_as(who.actor(), Body::CreateJob(command))
        .await??
    {
        crate::state::Applied::Instance(i) => i,
        _ => return Err(Problem::from(crate::state::Rejected::Malformed)),
    };
    let job = first.job.as_ref().map(|j| j.id.clone()).unwrap_or(job);
    let state = s.cluster.state();
    let view = view_of(&state, &project, &job)
        .ok_or_else(|| Problem::from(crate::state::Rejected::Malformed))?;
    Ok(created(format!("/v1/jobs/{job}"), view))
}

/// The job's members, in member order.
fn members<'s>(state: &'s ClusterState, project: &ProjectId, job: &JobId) -> Vec<&'s Instance> {
    let mut m: Vec<&Instance> = state
        .instances
        .values()
        .filter(|i| &i.project == project && i.job.as_ref().is_some_and(|j| &j.id == job))
        .map(|i| &**i)
        .collect();
    m.sort_by_key(|i| i.job.as_ref().map(|j| j.member));
    m
}

fn view_of(state: &ClusterState, project: &ProjectId, job: &JobId) -> Option<JobView> {
    let m = members(state, project, job);
    (!m.is_empty()).then(|| JobView::new(&m, standings(state).get(job)))
}

/// The project's jobs in submission order, a page at a time, optionally by region.
pub async fn list(
    State(s): State<ApiState>,
    Caller(project, _who): Caller,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<JobList>, Problem> {
    let limit = q.limit()?;
    let after = q.after()?;
    q.read().prepare(&s.cluster).await?;
    let state = s.cluster.state();
    let standing = standings(&state);
    let mut jobs: std::collections::BTreeMap<(i64, &JobId), Vec<&Instance>> = Default::default();
    for i in state.instances.values().filter(|i| i.project == project) {
        if let Some(j) = &i.job
            && q.region.as_deref().is_none_or(|r| i.region == r)
        {
            jobs.entry((i.created_at_ms, &j.id)).or_default().push(i);
        }
    }
    let keyed: Vec<_> = jobs
        .into_iter()
        .map(|((at, id), members)| ((at, id.to_string()), (id, members)))
        .collect();
    let (page, next_cursor) = pagination::page_of(keyed, after.as_ref(), limit);
    Ok(Json(JobList {
        jobs: page
            .into_iter()
            .map(|(id, mut m)| {
                m.sort_by_key(|i| i.job.as_ref().map(|j| j.member));
                JobView::new(&m, standing.get(id))
            })
            .collect(),
        next_cursor,
    }))
}

fn parse_job(id: &str) -> Result<JobId, Problem> {
    JobId::parse(id).map_err(|e| Problem::not_found(format!("no job `{id}`: {e}")))
}

pub async fn get(
    State(s): State<ApiState>,
    Caller(project, _who): Caller,
    Path(id): Path<String>,
    ApiQuery(read): ApiQuery<ReadOptions>,
) -> Result<Json<JobView>, Problem> {
    let job = parse_job(&id)?;
    read.prepare(&s.cluster).await?;
    let state = s.cluster.state();
    view_of(&state, &project, &job)
        .map(Json)
        .ok_or_else(|| Problem::not_found(format!("job {job} does not exist")))
}

/// Cancels a job: every member is deleted (a running member's VM is destroyed).
pub async fn cancel(
    State(s): State<ApiState>,
    Caller(project, who): Caller,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    who.may(&s, Action::Deploy, Resource::Project(&project))?;
    let job = parse_job(&id)?;
    let ids: Vec<InstanceId> = members(&s.cluster.state(), &project, &job)
        .iter()
        .map(|i| i.id.clone())
        .collect();
    if ids.is_empty() {
        return Err(Problem::not_found(format!("job {job} does not exist")));
    }
    for id in &ids {
        let command = pb::DeleteInstance {
            instance_id: id.to_string(),
            project_id: project.to_string(),
        };
        s.cluster
            .propose_as(who.actor(), Body::DeleteInstance(command))
            .await??;
    }
    let state = s.cluster.state();
    let body = match view_of(&state, &project, &job) {
        Some(view) => serde_json::to_value(view).unwrap_or_default(),
        None => serde_json::json!({ "id": job.to_string(), "state": "cancelled" }),
    };
    Ok((StatusCode::ACCEPTED, Json(body)).into_response())
}

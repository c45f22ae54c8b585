//! `/v1/sessions`: cloud-gaming sessions. A launch is a GPU VM of a game flavor running the
//! streaming image; one per project at a time; it waits in its region's launch queue (VIP,
//! then Priority+, then standard) when no GPU is free, and ends at its tier's maximum length.
//! A session's id is its instance's.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use vmcloud_proto::InstanceId;
use vmcloud_proto::pb::{self, command::Body};

use crate::api::context::{
    ApiJson, ApiQuery, ApiState, Caller, QueuePlace, ReadOptions, created, rfc3339,
};
use crate::api::pagination::{self, ListQuery};
use crate::api::problem::Problem;
use crate::api::validate::{
    check_flavor, check_image, check_label, check_region, check_whole_gpus,
};
use crate::gaming::pools::WarmClass;
use crate::instances::types::{Instance, InstanceState};
use crate::jobs::queue::Standing;
use crate::sessions::queue::{choose_region, standings};
use crate::sessions::types::{LatencyTarget, SessionTier};
use crate::state::{Applied, ClusterState};
use crate::tenancy::authz::{Action, Resource};

pub use crate::sessions::types::SESSION_IMAGE;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LaunchRequest {
    /// The game (a catalog slug, e.g. `cyberpunk-2077`).
    pub title: String,
    /// A GPU flavor (e.g. `game-rtx4090`).
    pub flavor: String,
    /// Where to play; or give `latency` and the scheduler picks the region.
    #[serde(default)]
    pub region: Option<String>,
    /// Instead of `region`: the round trips the client measured and the most it accepts.
    #[serde(default)]
    pub latency: Option<LatencyRequest>,
    /// A dedicated pool (e.g. `anti-cheat`); absent: the general fleet.
    #[serde(default)]
    pub pool: Option<String>,
    /// `on-demand` (default), `spot` (cheaper; may be ended with notice when the GPU is
    /// needed) or `reserved` (on a reservation of the project's).
    #[serde(default)]
    pub market: Option<String>,
    /// Market reserved: the reservation to draw on (default: the project's oldest active one
    /// of this flavor and region with a free slot).
    #[serde(default)]
    pub reservation: Option<String>,
}

/// A latency target: `{"max_ms": 30, "rtt_ms": {"par": 12, "fra": 19, "ams": 24}}`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LatencyRequest {
    /// The most round trip the gamer accepts, in ms (1 to 500).
    pub max_ms: u32,
    /// Measured round trips to regions' beacons, in ms.
    pub rtt_ms: std::collections::BTreeMap<String, u32>,
}

/// Longest latency target a launch may give.
pub const MAX_LATENCY_MS: u32 = 500;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SessionView {
    pub id: String,
    pub title: String,
    /// The project's tier when it launched: `standard`, `priority-plus` or `vip`.
    pub tier: String,
    pub region: String,
    /// Launched with a latency target: the round trip to `region` the client measured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rtt_ms: Option<u32>,
    pub flavor: String,
    /// `on-demand`, `spot` or `reserved`.
    pub market: String,
    /// `queued`, `starting`, `running`, `ending`, `failed` or `impaired`.
    pub state: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Queued: its place in the queue.
    #[serde(flatten)]
    pub queue: QueuePlace,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pending_reason: Option<String>,
    /// Placed: when it ends at the latest (its tier's length).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ends_by: Option<String>,
    pub launched_at: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notices: Vec<String>,
    /// A launch a warm VM served: where the client connects, at once (see
    /// `POST /v1/sessions/{id}/connection` for new details later).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connection: Option<ConnectionView>,
    /// Share-Play: the open invite and the friend playing along, when there are.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub share_play: Option<SharePlayView>,
}

/// A session's Share-Play as its host sees it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SharePlayView {
    /// An invite nobody used yet: until when its code holds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub invite_expires_at: Option<String>,
    /// The friend playing along: their profile's name, when they joined, until when.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub guest: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub guest_joined_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub guest_until: Option<String>,
}

impl SharePlayView {
    fn new(share: &crate::sessions::types::SharePlay, at: i64) -> Option<SharePlayView> {
        let invite = share.invite.as_ref().filter(|(_, end)| *end > at);
        let guest = share.guest.as_ref().filter(|g| g.until_ms > at);
        (invite.is_some() || guest.is_some()).then(|| SharePlayView {
            invite_expires_at: invite.map(|(_, end)| rfc3339(*end)),
            guest: guest.map(|g| g.name.clone()),
            guest_joined_at: guest.map(|g| rfc3339(g.joined_at_ms)),
            guest_until: guest.map(|g| rfc3339(g.until_ms)),
        })
    }
}

impl SessionView {
    fn new(i: &Instance, standing: Option<&Standing>) -> SessionView {
        let spec = i.session.as_ref().expect("sessions have a spec");
        let state = match i.state {
            InstanceState::Pending => "queued",
            InstanceState::Scheduled => "starting",
            InstanceState::Deleting => "ending",
            other => other.as_str(),
        };
        let queued = i.state == InstanceState::Pending;
        SessionView {
            id: i.id.to_string(),
            title: spec.title.clone(),
            tier: spec.tier.as_str().to_owned(),
            region: i.region.clone(),
            rtt_ms: spec.rtt_ms,
            flavor: i.flavor.clone(),
            market: i.market.as_str().to_owned(),
            state: state.to_owned(),
            node: i.node.as_ref().map(ToString::to_string),
            queue: QueuePlace::new(standing, queued),
            pending_reason: i.pending_reason.clone().filter(|_| queued),
            ends_by: i.terminate_at_ms.map(rfc3339),
            launched_at: rfc3339(i.created_at_ms),
            notices: i.notices.iter().map(|n| n.message.clone()).collect(),
            connection: None,
            share_play: SharePlayView::new(&spec.share, crate::clock::now_ms()),
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SessionList {
    pub sessions: Vec<SessionView>,
    /// Pass as `?cursor=` for the next page; absent on the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// Checks a launch against the catalog; gives back its market.
fn validate(s: &ApiState, req: &LaunchRequest) -> Result<pb::Market, Problem> {
    match (&req.region, &req.latency) {
        (Some(region), None) => check_region(&s.catalog, region)?,
        (None, Some(latency)) => {
            if !(1..=MAX_LATENCY_MS).contains(&latency.max_ms) {
                return Err(Problem::unprocessable(
                    "invalid-latency",
                    "Invalid latency target",
                    format!(
                        "latency.max_ms {} must be between 1 and {MAX_LATENCY_MS}",
                        latency.max_ms
                    ),
                ));
            }
            if latency.rtt_ms.is_empty() {
                return Err(Problem::unprocessable(
                    "invalid-latency",
                    "Invalid latency target",
                    "latency.rtt_ms is empty; give the round trip measured to each region's beacon, e.g. {\"par\": 12, \"fra\": 19}",
                ));
            }
            if let Some(unknown) = latency
                .rtt_ms
                .keys()
                .find(|r| !s.catalog.regions.contains_key(*r))
            {
                return Err(Problem::unprocessable(
                    "unknown-region",
                    "Unknown region",
                    format!(
                        "latency.rtt_ms names region `{unknown}`, which does not exist; regions: {}",
                        s.catalog.active_regions().join(", ")
                    ),
                ));
            }
        }
        _ => {
            return Err(Problem::unprocessable(
                "invalid-region",
                "Region or latency target",
                "give either region (where to play) or latency (measured round trips and the most you accept), one of them",
            ));
        }
    }
    let market = crate::api::validate::parse_market(req.market.as_deref())?;
    if market == pb::Market::Reserved && (req.latency.is_some() || req.pool.is_some()) {
        return Err(Problem::unprocessable(
            "invalid-reserved",
            "Reserved sessions run on their reservation's hosts",
            "a reserved session runs in its reservation's region and hosts; give region, and drop latency and pool",
        ));
    }
    crate::api::validate::check_market_fields(market, req.reservation.is_some(), None, "sessions")?;
    check_flavor(&s.catalog, &req.flavor)?;
    check_whole_gpus(&s.catalog, &req.flavor, "game sessions")?;
    if s.catalog.flavors[&req.flavor].gpu.is_none() {
        let gpu_flavors: Vec<&str> = s
            .catalog
            .flavors
            .iter()
            .filter(|(_, f)| f.gpu.as_ref().is_some_and(|g| g.mig.is_none()))
            .map(|(n, _)| n.as_str())
            .collect();
        return Err(Problem::unprocessable(
            "not-a-gpu-flavor",
            "A session needs a GPU",
            format!(
                "flavor `{}` has no GPU; choose one of: {}",
                req.flavor,
                gpu_flavors.join(", ")
            ),
        ));
    }
    check_image(&s.catalog, SESSION_IMAGE)?;
    check_label("title", &req.title)?;
    if let Some(pool) = &req.pool {
        check_label("pool", pool)?;
    }
    Ok(market)
}

/// The region a launch goes to, and the round trip to it when it gave a latency target.
fn launch_region(
    s: &ApiState,
    project: &vmcloud_proto::ProjectId,
    req: &LaunchRequest,
    tier: SessionTier,
) -> Result<(String, Option<u32>), Problem> {
    let Some(latency) = &req.latency else {
        let region = req.region.clone().expect("validated: region or latency");
        crate::partners::pops::check_pop(&s.catalog, &s.cluster.state(), &region, project)?;
        return Ok((region, None));
    };
    let gpu = s.catalog.flavors[&req.flavor]
        .gpu
        .as_ref()
        .expect("validated: a GPU flavor");
    let target = LatencyTarget {
        max_ms: latency.max_ms,
        rtt_ms: latency
            .rtt_ms
            .iter()
            .map(|(r, ms)| (r.clone(), *ms))
            .collect(),
    };
    let state = s.cluster.state();
    // Regions that take new work, and a partner's POP only for its own customers.
    let open = |r: &str| {
        check_region(&s.catalog, r).is_ok()
            && crate::partners::pops::pop_open_to(&s.catalog, &state, r, project)
    };
    match choose_region(
        &state,
        &target,
        open,
        &gpu.model,
        gpu.count,
        req.pool.as_deref(),
        tier,
    ) {
        Some((region, rtt, _)) => Ok((region, Some(rtt))),
        None => {
            let measured: Vec<String> = latency
                .rtt_ms
                .iter()
                .map(|(r, ms)| {
                    if open(r) {
                        format!("{r} {ms} ms")
                    } else {
                        format!("{r} {ms} ms (takes no new work)")
                    }
                })
                .collect();
            Err(Problem::unprocessable(
                "no-region-within-latency",
                "No region within the latency target",
                format!(
                    "no open region is within {} ms: {}; raise latency.max_ms or play from nearer a region",
                    latency.max_ms,
                    measured.join(", ")
                ),
            ))
        }
    }
}

pub async fn launch(
    State(s): State<ApiState>,
    Caller(project, who): Caller,
    ApiJson(req): ApiJson<LaunchRequest>,
) -> Result<Response, Problem> {
    who.may(&s, Action::Deploy, Resource::Project(&project))?;
    let tier = s
        .cluster
        .state()
        .projects
        .get(&project)
        .map(|a| a.gaming_tier)
        .unwrap_or_default();
    let command = launch_command(&s, &project, &req, tier, pb::GameSession::default())?;
    propose_launch(&s, &who, command).await
}

/// The create command of a launch at `tier` (validated against the catalog, its region
/// chosen); `household` carries a household profile's fields of the session.
pub(crate) fn launch_command(
    s: &ApiState,
    project: &vmcloud_proto::ProjectId,
    req: &LaunchRequest,
    tier: SessionTier,
    household: pb::GameSession,
) -> Result<pb::CreateInstance, Problem> {
    let market = validate(s, req)?;
    let flavor = &s.catalog.flavors[&req.flavor];
    let (region, rtt_ms) = launch_region(s, project, req, tier)?;
    let reservation = crate::reservations::api::for_market(
        s,
        market,
        project,
        &req.flavor,
        &region,
        req.reservation.as_deref(),
        1,
    )?;
    let id = InstanceId::generate();
    let command = pb::CreateInstance {
        pool: req.pool.clone().unwrap_or_default(),
        market: market as i32,
        preemption_notice_s: flavor.spot_notice_s,
        reservation_id: reservation,
        session: Some(pb::GameSession {
            tier: pb::SessionTier::from(tier) as i32,
            title: req.title.clone(),
            rtt_ms: rtt_ms.unwrap_or(0),
            ..household
        }),
        vnis: Some(s.catalog.networks.vnis()),
        ..flavor
            .spec(
                format!("{}-{}", req.title, &id.as_str()[2..8]),
                &req.flavor,
                SESSION_IMAGE,
                &region,
            )
            .create_command(&id, project)
    };
    Ok(command)
}

/// Launches that lose the race for a warm VM try another this many times, then wait cold.
const WARM_TRIES: usize = 3;

/// A booted, idle warm VM of the launch's class that no other launch on this replica is
/// taking, if its pool has one: one of the first few, at random, so that launches through
/// other replicas rarely reach for the same. Held until the guard drops.
fn pick_warm(s: &ApiState, class: &WarmClass) -> Option<WarmClaim> {
    let state = s.cluster.state();
    let mut claims = s.warm_claims.lock().unwrap_or_else(|e| e.into_inner());
    let ready: Vec<&InstanceId> = state
        .ready_warm(class)
        .filter(|id| !claims.contains(*id))
        .take(8)
        .collect();
    let id = (*ready.get(rand::random_range(0..ready.len().max(1)))?).clone();
    claims.insert(id.clone());
    Some(WarmClaim {
        id,
        claims: s.warm_claims.clone(),
    })
}

/// A warm VM a launch on this replica is taking.
struct WarmClaim {
    id: InstanceId,
    claims: std::sync::Arc<std::sync::Mutex<std::collections::HashSet<InstanceId>>>,
}

impl Drop for WarmClaim {
    fn drop(&mut self) {
        self.claims
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.id);
    }
}

/// Proposes a launch; `201` with the session: running with its connection details when a warm
/// VM of its class was free, else queued with its place (or starting).
pub(crate) async fn propose_launch(
    s: &ApiState,
    who: &crate::api::context::Who,
    command: pb::CreateInstance,
) -> Result<Response, Problem> {
    let class = WarmClass {
        region: command.region.clone(),
        flavor: command.flavor.clone(),
        image: command.image.clone(),
        pool: (!command.pool.is_empty()).then(|| command.pool.clone()),
    };
    let warm_ok = command.market() == pb::Market::OnDemand && command.reservation_id.is_empty();
    for _ in 0..WARM_TRIES {
        let Some(claim) = warm_ok.then(|| pick_warm(s, &class)).flatten() else {
            break;
        };
        let vm = claim.id.clone();
        let (token, sha256) = crate::tenancy::api_key::mail_token();
        let expires = crate::clock::now_ms() + crate::sessions::types::STREAM_TOKEN_MS;
        let mut warm = command.clone();
        warm.instance_id = vm.to_string();
        warm.vnis = None;
        if let Some(session) = warm.session.as_mut() {
            warm.name = format!("{}-{}", session.title, &vm.as_str()[2..8]);
            session.claim_warm = true;
            session.stream_token_sha256 = sha256;
            session.stream_token_expires_at_unix_ms = expires;
        }
        match s
            .cluster
            .propose_as(who.actor(), Body::CreateInstance(warm))
            .await?
        {
            Ok(Applied::Instance(instance)) => {
                let mut view = SessionView::new(&instance, None);
                view.connection = Some(ConnectionView {
                    session: instance.id.to_string(),
                    host: s.cluster.state().hostname_of(&instance),
                    port: crate::sessions::types::STREAM_PORT,
                    token,
                    expires_at: rfc3339(expires),
                });
                return Ok(created(format!("/v1/sessions/{}", instance.id), view));
            }
            Ok(_) => return Err(Problem::from(crate::state::Rejected::Malformed)),
            // Another launch took it first: another warm VM, or a cold launch.
            Err(_) if !s.cluster.state().warm_ready(&vm, &class) => continue,
            Err(refused) => return Err(Problem::from(refused)),
        }
    }
    let instance = match s
        .cluster
        .propose_as(who.actor(), Body::CreateInstance(command))
        .await??
    {
        Applied::Instance(i) => i,
        _ => return Err(Problem::from(crate::state::Rejected::Malformed)),
    };
    let state = s.cluster.state();
    // A warm VM that booted meanwhile may have taken it already.
    let now = state.session_now(&instance.id).unwrap_or(&instance);
    let view = SessionView::new(now, standings(&state).get(&now.id));
    Ok(created(format!("/v1/sessions/{}", now.id), view))
}

/// The project's session `id` names (a queued launch a warm VM took answers as that VM).
pub(crate) fn own_session<'s>(
    state: &'s ClusterState,
    project: &vmcloud_proto::ProjectId,
    id: &str,
) -> Result<&'s Instance, Problem> {
    InstanceId::parse(id)
        .ok()
        .and_then(|id| state.session_now(&id))
        .filter(|i| &i.project == project && i.session.is_some())
        .ok_or_else(|| Problem::not_found(format!("session {id} does not exist")))
}

/// The project's game sessions in launch order, a page at a time, optionally by state or
/// region.
pub async fn list(
    State(s): State<ApiState>,
    Caller(project, _who): Caller,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<SessionList>, Problem> {
    let limit = q.limit()?;
    let after = q
        .after()?
        .map(|(at, id)| {
            vmcloud_proto::InstanceId::parse(&id)
                .map(|id| (at, id))
                .map_err(|_| {
                    Problem::new(
                        axum::http::StatusCode::BAD_REQUEST,
                        "invalid-cursor",
                        "Invalid cursor",
                        "this cursor does not belong to a session list",
                    )
                })
        })
        .transpose()?;
    q.read().prepare(&s.cluster).await?;
    let state = s.cluster.state();
    let standing = standings(&state);
    let (page, next) = state.instances_page(&project, after.as_ref(), limit, |i| {
        i.session.is_some()
            && q.state.as_deref().is_none_or(|st| i.state.as_str() == st)
            && q.region.as_deref().is_none_or(|r| i.region == r)
    });
    Ok(Json(SessionList {
        sessions: page
            .into_iter()
            .map(|i| SessionView::new(i, standing.get(&i.id)))
            .collect(),
        next_cursor: next.map(|(at, id)| pagination::encode(&(at, id.to_string()))),
    }))
}

pub async fn get(
    State(s): State<ApiState>,
    Caller(project, _who): Caller,
    Path(id): Path<String>,
    ApiQuery(read): ApiQuery<ReadOptions>,
) -> Result<Json<SessionView>, Problem> {
    read.prepare(&s.cluster).await?;
    let state = s.cluster.state();
    let i = own_session(&state, &project, &id)?;
    Ok(Json(SessionView::new(i, standings(&state).get(&i.id))))
}

/// Ends a session (leaves the queue, or stops the VM).
pub async fn end(
    State(s): State<ApiState>,
    Caller(project, who): Caller,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    who.may(&s, Action::Deploy, Resource::Project(&project))?;
    let id = own_session(&s.cluster.state(), &project, &id)?.id.clone();
    let command = pb::DeleteInstance {
        instance_id: id.to_string(),
        project_id: project.to_string(),
    };
    s.cluster
        .propose_as(who.actor(), Body::DeleteInstance(command))
        .await??;
    let state = s.cluster.state();
    let body = match state.instances.get(&id) {
        Some(i) => serde_json::to_value(SessionView::new(i, None)).unwrap_or_default(),
        None => serde_json::json!({ "id": id.to_string(), "state": "ended" }),
    };
    Ok((StatusCode::ACCEPTED, Json(body)).into_response())
}

/// Where and how the gamer's client connects to a running session.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ConnectionView {
    pub session: String,
    /// The session's host.
    pub host: String,
    /// The streaming server's port there.
    pub port: u16,
    /// Taken once by the streaming server, before `expires_at`.
    pub token: String,
    pub expires_at: String,
}

/// `POST /v1/sessions/{id}/connection`: connection details for a running session — its host,
/// the streaming port and a one-time token valid 60 s (only its SHA-256 is kept).
pub async fn connection(
    State(s): State<ApiState>,
    Caller(project, who): Caller,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<ConnectionView>), Problem> {
    who.may(&s, Action::Deploy, Resource::Project(&project))?;
    let id = own_session(&s.cluster.state(), &project, &id)?.id.clone();
    let token = crate::tenancy::api_key::mail_token();
    let expires = crate::clock::now_ms() + crate::sessions::types::STREAM_TOKEN_MS;
    s.cluster
        .propose_as(
            who.actor(),
            Body::IssueStreamToken(pb::IssueStreamToken {
                project_id: project.to_string(),
                instance_id: id.to_string(),
                token_sha256: token.1,
                expires_at_unix_ms: expires,
                guest_profile_id: String::new(),
            }),
        )
        .await??;
    let state = s.cluster.state();
    let host = state
        .instances
        .get(&id)
        .map(|i| state.hostname_of(i))
        .unwrap_or_default();
    Ok((
        StatusCode::CREATED,
        Json(ConnectionView {
            session: id.to_string(),
            host,
            port: crate::sessions::types::STREAM_PORT,
            token: token.0,
            expires_at: rfc3339(expires),
        }),
    ))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RedeemRequest {
    pub session: String,
    pub token: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RedeemView {
    pub session: String,
    pub accepted: bool,
}

/// `POST /v1/stream/redeem`: the streaming server takes a connection token — once, within its
/// 60 s; `404` for an unknown one, `409` for one used or late. The token is the proof.
pub async fn redeem(
    State(s): State<ApiState>,
    crate::api::context::ApiJson(req): crate::api::context::ApiJson<RedeemRequest>,
) -> Result<Json<RedeemView>, Problem> {
    s.cluster
        .propose(Body::RedeemStreamToken(pb::RedeemStreamToken {
            instance_id: req.session.clone(),
            token_sha256: crate::tenancy::api_key::mail_token_sha256(&req.token),
        }))
        .await??;
    Ok(Json(RedeemView {
        session: req.session,
        accepted: true,
    }))
}

//! `/v1/titles` and `/v1/households/{org}/…`: the catalog of games, a household's profiles,
//! parental PIN and unlocks, its library (what each profile may play, and why not), its
//! hours this month, entitlements (operators), and launching a title as a profile.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use vmcloud_proto::pb::{self, command::Body};
use vmcloud_proto::{OrgId, UserId};

use crate::api::context::{ApiJson, ApiQuery, ApiState, ReadOptions, Who, rfc3339};
use crate::api::problem::Problem;
use crate::billing::types::date_of;
use crate::gaming::apply::hours_left;
use crate::gaming::catalog::{FairUse, Title};
use crate::gaming::types::{EntitlementKind, Household, Profile};
use crate::sessions::api::{LatencyRequest, LaunchRequest, launch_command, propose_launch};
use crate::state::ClusterState;
use crate::tenancy::authz::{Action, Principal, Resource};
use crate::tenancy::types::OrgKind;

/// A title as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TitleView {
    pub id: String,
    pub name: String,
    pub pegi: u8,
    pub gpu_class: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub anti_cheat_pool: Option<String>,
    pub publisher: String,
    pub free_to_play: bool,
}

impl TitleView {
    fn new(id: &str, t: &Title) -> TitleView {
        TitleView {
            id: id.to_owned(),
            name: t.name.clone(),
            pegi: t.pegi,
            gpu_class: t.gpu_class.clone(),
            anti_cheat_pool: t.anti_cheat_pool.clone(),
            publisher: t.publisher.clone(),
            free_to_play: t.free_to_play,
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TitleList {
    pub titles: Vec<TitleView>,
}

/// `GET /v1/titles`: the game catalog.
pub async fn titles(State(s): State<ApiState>, _who: Who) -> Json<TitleList> {
    Json(TitleList {
        titles: s
            .catalog
            .titles
            .iter()
            .map(|(id, t)| TitleView::new(id, t))
            .collect(),
    })
}

/// A profile as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ProfileView {
    pub id: String,
    pub name: String,
    pub kid: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub birth_year: Option<i32>,
    /// The highest PEGI rating it plays without a parent's unlock.
    pub pegi_limit: u8,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub daily_limit_min: Option<u32>,
    /// `[from, to)` hours of the household's day.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allowed_hours: Option<[u8; 2]>,
    /// Minutes played today (the household's day).
    pub played_today_min: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

/// What the household may play this month.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct HoursView {
    /// The plan's hours, hour packs bought this month and what last month carried over, in
    /// minutes.
    pub allowed_min: i64,
    pub played_min: i64,
    pub left_min: i64,
    pub carried_over_min: i64,
    /// Of `allowed_min`, what hour packs bought this month add.
    pub packs_min: i64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EntitlementView {
    pub id: String,
    pub title: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    pub kind: String,
    pub granted_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ends_at: Option<String>,
}

/// A household: its plan's fair use and hours, profiles, PIN, entitlements.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct HouseholdView {
    pub organisation: String,
    pub name: String,
    /// The project its sessions run in (`/v1/sessions?project=`).
    pub project: String,
    /// The gaming plan (billing's plan id), or `free`.
    pub plan: String,
    /// Its name in the price book (`Gaming Priority+`); absent for `free`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan_name: Option<String>,
    pub fair_use: FairUse,
    pub hours: HoursView,
    pub pin_set: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pin_locked_until: Option<String>,
    pub utc_offset_min: i32,
    pub profiles: Vec<ProfileView>,
    pub entitlements: Vec<EntitlementView>,
    /// Kids' "ask a parent" requests, newest first.
    pub requests: Vec<RequestView>,
}

/// A kid's request for a title.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RequestView {
    pub id: String,
    pub profile: String,
    pub profile_name: String,
    pub title: String,
    pub at: String,
    /// `pending`, `approved` or `declined`.
    pub state: String,
}

/// The household `org` as `who` may see it (404 for anyone else, 409 for an organisation
/// that is not a household).
pub(crate) fn household_of(
    s: &ApiState,
    who: &Who,
    org: &str,
    action: Action,
) -> Result<OrgId, Problem> {
    let id = OrgId::parse(org)
        .map_err(|_| Problem::not_found(format!("household `{org}` does not exist")))?;
    who.may(s, action, Resource::Org(&id))?;
    let state = s.cluster.state();
    let o = state
        .organisations
        .get(&id)
        .ok_or_else(|| Problem::not_found(format!("household `{org}` does not exist")))?;
    if o.kind != OrgKind::Household {
        return Err(Problem::new(
            StatusCode::CONFLICT,
            "not-a-household",
            "Not a household",
            format!(
                "organisation {id} is a {}: profiles, libraries and launches are for gaming households",
                o.kind.as_str()
            ),
        ));
    }
    Ok(id)
}

/// The gaming plan of `org` now and its fair use.
pub(crate) fn plan_of<'c>(
    s: &'c ApiState,
    state: &ClusterState,
    org: &OrgId,
) -> (String, &'c FairUse) {
    let plan = state
        .billing
        .accounts
        .get(org)
        .and_then(|a| crate::billing::plans::held_at(&a.plan_spans, crate::clock::now_ms()))
        .map(|p| p.plan.clone())
        .filter(|p| s.catalog.gaming.plans.contains_key(p));
    let fair = s.catalog.gaming.fair_use(plan.as_deref());
    (plan.unwrap_or_else(|| "free".into()), fair)
}

fn profile_view(
    state: &ClusterState,
    org: &OrgId,
    h: &Household,
    p: &Profile,
    now: i64,
) -> ProfileView {
    let local = now + i64::from(h.utc_offset_min) * 60_000;
    let day_start = local - local.rem_euclid(86_400_000) - (local - now);
    ProfileView {
        id: p.id.clone(),
        name: p.name.clone(),
        kid: p.kid,
        birth_year: p.birth_year,
        pegi_limit: p.pegi_limit(date_of(local).year()),
        daily_limit_min: p.daily_limit_min,
        allowed_hours: p.allowed_hours.map(|(f, t)| [f, t]),
        played_today_min: state.played_ms(org, Some(&p.id), day_start, day_start + 86_400_000, now)
            / 60_000,
        user: p.user.as_ref().map(ToString::to_string),
    }
}

fn view(s: &ApiState, org: &OrgId) -> HouseholdView {
    let state = s.cluster.state();
    let now = crate::clock::now_ms();
    let empty = Household::default();
    let h = state.gaming.households.get(org).unwrap_or(&empty);
    let (plan, fair) = plan_of(s, &state, org);
    let (allowed, played, carried) = hours_left(&state, org, fair.hours, fair.rollover, now);
    HouseholdView {
        organisation: org.to_string(),
        name: state
            .organisations
            .get(org)
            .map(|o| o.name.clone())
            .unwrap_or_default(),
        project: state
            .projects_of_org(org)
            .into_iter()
            .next()
            .map(|p| p.to_string())
            .unwrap_or_default(),
        plan_name: state.organisations.get(org).and_then(|o| {
            crate::billing::api::price_books()
                .book(crate::billing::types::currency_of(o))?
                .plans
                .get(&plan)
                .map(|p| p.name.clone())
        }),
        plan,
        fair_use: fair.clone(),
        hours: HoursView {
            allowed_min: allowed / 60_000,
            played_min: played / 60_000,
            left_min: (allowed - played).max(0) / 60_000,
            carried_over_min: carried / 60_000,
            packs_min: {
                let (from, to) =
                    crate::billing::types::period_bounds(&crate::billing::types::period_of(now))
                        .unwrap_or((now, now));
                state.pack_ms(org, from, to) / 60_000
            },
        },
        pin_set: h.pin_hash.is_some(),
        pin_locked_until: h.pin_locked_until_ms.filter(|u| *u > now).map(rfc3339),
        utc_offset_min: h.utc_offset_min,
        profiles: h
            .profiles
            .values()
            .map(|p| profile_view(&state, org, h, p, now))
            .collect(),
        entitlements: h
            .entitlements
            .iter()
            .map(|e| EntitlementView {
                id: e.id.clone(),
                title: e.title.clone(),
                profile: e.profile.clone(),
                kind: e.kind.as_str().to_owned(),
                granted_at: rfc3339(e.granted_at_ms),
                ends_at: e.ends_at_ms.map(rfc3339),
            })
            .collect(),
        requests: h
            .requests
            .iter()
            .rev()
            .map(|r| RequestView {
                id: r.id.clone(),
                profile: r.profile.clone(),
                profile_name: h
                    .profiles
                    .get(&r.profile)
                    .map(|p| p.name.clone())
                    .unwrap_or_default(),
                title: r.title.clone(),
                at: rfc3339(r.at_ms),
                state: match r.decided {
                    None => "pending",
                    Some((true, _)) => "approved",
                    Some((false, _)) => "declined",
                }
                .to_owned(),
            })
            .collect(),
    }
}

/// `GET /v1/households/{org}`.
pub async fn get(
    State(s): State<ApiState>,
    who: Who,
    Path(org): Path<String>,
    ApiQuery(read): ApiQuery<ReadOptions>,
) -> Result<Json<HouseholdView>, Problem> {
    read.prepare(&s.cluster).await?;
    let org = household_of(&s, &who, &org, Action::ReadOrg)?;
    Ok(Json(view(&s, &org)))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProfileRequest {
    pub name: String,
    #[serde(default)]
    pub kid: bool,
    #[serde(default)]
    pub birth_year: Option<i32>,
    /// Minutes a day (kids).
    #[serde(default)]
    pub daily_limit_min: Option<u32>,
    /// `[from, to)` hours of the household's day (kids), e.g. `[14, 19]`.
    #[serde(default)]
    pub allowed_hours: Option<[u32; 2]>,
    /// A member of the household who logs in and plays as this profile.
    #[serde(default)]
    pub user: Option<String>,
}

/// `POST /v1/households/{org}/profiles` (the owner).
pub async fn create_profile(
    State(s): State<ApiState>,
    who: Who,
    Path(org): Path<String>,
    ApiJson(req): ApiJson<ProfileRequest>,
) -> Result<(StatusCode, Json<ProfileView>), Problem> {
    let org = household_of(&s, &who, &org, Action::ManageOrg)?;
    let id = format!("pf-{:016x}", rand::random::<u64>());
    let [from, to] = req.allowed_hours.unwrap_or([0, 0]);
    s.cluster
        .propose_as(
            who.actor(),
            Body::CreateProfile(pb::CreateProfile {
                org_id: org.to_string(),
                profile_id: id.clone(),
                name: req.name,
                kid: req.kid,
                birth_year: req.birth_year.unwrap_or(0),
                daily_limit_min: req.daily_limit_min.unwrap_or(0),
                allowed_from_h: from,
                allowed_to_h: to,
                user_id: req.user.unwrap_or_default(),
            }),
        )
        .await??;
    one_profile(&s, &org, &id).map(|p| (StatusCode::CREATED, Json(p)))
}

fn one_profile(s: &ApiState, org: &OrgId, id: &str) -> Result<ProfileView, Problem> {
    let state = s.cluster.state();
    let h = state
        .gaming
        .households
        .get(org)
        .ok_or_else(|| Problem::not_found(format!("profile `{id}` does not exist")))?;
    let p = h
        .profiles
        .get(id)
        .ok_or_else(|| Problem::not_found(format!("profile `{id}` does not exist")))?;
    Ok(profile_view(&state, org, h, p, crate::clock::now_ms()))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProfileUpdate {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub kid: Option<bool>,
    #[serde(default)]
    pub birth_year: Option<i32>,
    #[serde(default)]
    pub daily_limit_min: Option<u32>,
    #[serde(default)]
    pub allowed_hours: Option<[u32; 2]>,
}

/// `PATCH /v1/households/{org}/profiles/{id}` (the owner): what is given changes.
pub async fn update_profile(
    State(s): State<ApiState>,
    who: Who,
    Path((org, id)): Path<(String, String)>,
    ApiJson(req): ApiJson<ProfileUpdate>,
) -> Result<Json<ProfileView>, Problem> {
    let org = household_of(&s, &who, &org, Action::ManageOrg)?;
    let current = {
        let state = s.cluster.state();
        state
            .gaming
            .households
            .get(&org)
            .and_then(|h| h.profiles.get(&id))
            .cloned()
            .ok_or_else(|| Problem::not_found(format!("profile `{id}` does not exist")))?
    };
    let kid = req.kid.unwrap_or(current.kid);
    let hours = req
        .allowed_hours
        .or(current
            .allowed_hours
            .map(|(f, t)| [u32::from(f), u32::from(t)]))
        .filter(|_| kid)
        .unwrap_or([0, 0]);
    s.cluster
        .propose_as(
            who.actor(),
            Body::UpdateProfile(pb::UpdateProfile {
                org_id: org.to_string(),
                profile_id: id.clone(),
                name: req.name.unwrap_or(current.name),
                kid,
                birth_year: if kid {
                    req.birth_year.or(current.birth_year).unwrap_or(0)
                } else {
                    0
                },
                daily_limit_min: if kid {
                    req.daily_limit_min.or(current.daily_limit_min).unwrap_or(0)
                } else {
                    0
                },
                allowed_from_h: hours[0],
                allowed_to_h: hours[1],
            }),
        )
        .await??;
    Ok(Json(one_profile(&s, &org, &id)?))
}

/// `DELETE /v1/households/{org}/profiles/{id}` (the owner).
pub async fn delete_profile(
    State(s): State<ApiState>,
    who: Who,
    Path((org, id)): Path<(String, String)>,
) -> Result<StatusCode, Problem> {
    let org = household_of(&s, &who, &org, Action::ManageOrg)?;
    s.cluster
        .propose_as(
            who.actor(),
            Body::DeleteProfile(pb::DeleteProfile {
                org_id: org.to_string(),
                profile_id: id,
            }),
        )
        .await??;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PinRequest {
    /// 4 to 8 digits.
    pub pin: String,
    /// The household's time zone: minutes east of UTC (default 60, Paris in winter).
    #[serde(default)]
    pub utc_offset_min: Option<i32>,
}

fn check_pin(pin: &str) -> Result<(), Problem> {
    if !(4..=8).contains(&pin.len()) || !pin.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Problem::unprocessable(
            "invalid-pin",
            "Invalid PIN",
            "a parental PIN is 4 to 8 digits",
        ));
    }
    Ok(())
}

/// `PUT /v1/households/{org}/pin` (the owner): sets the parental PIN (kept hashed).
pub async fn set_pin(
    State(s): State<ApiState>,
    who: Who,
    Path(org): Path<String>,
    ApiJson(req): ApiJson<PinRequest>,
) -> Result<Json<HouseholdView>, Problem> {
    let org = household_of(&s, &who, &org, Action::ManageOrg)?;
    check_pin(&req.pin)?;
    let pin = req.pin.clone();
    let hash = tokio::task::spawn_blocking(move || crate::tenancy::password::hash(&pin))
        .await
        .map_err(|e| Problem::internal(format!("hashing the PIN stopped: {e}")))?;
    s.cluster
        .propose_as(
            who.actor(),
            Body::SetParentalPin(pb::SetParentalPin {
                org_id: org.to_string(),
                pin_hash: hash,
                utc_offset_min: req.utc_offset_min.unwrap_or(60),
            }),
        )
        .await??;
    Ok(Json(view(&s, &org)))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UnlockRequest {
    pub profile: String,
    pub title: String,
    pub pin: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UnlockView {
    pub profile: String,
    pub title: String,
    /// The unlock holds for the profile's next session, or until then.
    pub until: String,
}

/// `POST /v1/households/{org}/unlock` (any member, with the parent's PIN): unlocks a title
/// above a kid's age rating for their next session (or 30 minutes). Five wrong PINs in a
/// row lock the PIN for 15 minutes.
pub async fn unlock(
    State(s): State<ApiState>,
    who: Who,
    Path(org): Path<String>,
    ApiJson(req): ApiJson<UnlockRequest>,
) -> Result<Json<UnlockView>, Problem> {
    let org = household_of(&s, &who, &org, Action::ReadOrg)?;
    if !s.catalog.titles.contains_key(&req.title) {
        return Err(Problem::not_found(format!(
            "title `{}` does not exist",
            req.title
        )));
    }
    let (hash, locked) = {
        let state = s.cluster.state();
        let h = state.gaming.households.get(&org);
        (
            h.and_then(|h| h.pin_hash.clone()),
            h.and_then(|h| h.pin_locked_until_ms)
                .filter(|u| *u > crate::clock::now_ms()),
        )
    };
    let Some(hash) = hash else {
        return Err(Problem::new(
            StatusCode::CONFLICT,
            "no-pin",
            "No parental PIN",
            "this household has no parental PIN yet: the owner sets one (PUT /v1/households/{org}/pin, or the portal's household page)",
        ));
    };
    if let Some(until) = locked {
        return Err(pin_locked(until));
    }
    let pin = req.pin.clone();
    let ok =
        tokio::task::spawn_blocking(move || crate::tenancy::password::verify(&pin, Some(&hash)))
            .await
            .map_err(|e| Problem::internal(format!("checking the PIN stopped: {e}")))?;
    s.cluster
        .propose_as(
            who.actor(),
            Body::RecordPinAttempt(pb::RecordPinAttempt {
                org_id: org.to_string(),
                profile_id: req.profile.clone(),
                title: req.title.clone(),
                ok,
            }),
        )
        .await??;
    let state = s.cluster.state();
    let h = state.gaming.households.get(&org);
    if !ok {
        if let Some(until) = h
            .and_then(|h| h.pin_locked_until_ms)
            .filter(|u| *u > crate::clock::now_ms())
        {
            return Err(pin_locked(until));
        }
        let left = crate::gaming::types::PIN_TRIES - h.map_or(0, |h| h.pin_failures);
        return Err(Problem::new(
            StatusCode::FORBIDDEN,
            "wrong-pin",
            "Wrong PIN",
            format!(
                "that is not the parental PIN: {left} tries left before it locks for 15 minutes"
            ),
        ));
    }
    let until = h
        .and_then(|h| {
            h.unlocks
                .iter()
                .find(|u| u.profile == req.profile && u.title == req.title)
        })
        .map(|u| rfc3339(u.until_ms))
        .unwrap_or_default();
    Ok(Json(UnlockView {
        profile: req.profile,
        title: req.title,
        until,
    }))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AskRequest {
    pub profile: String,
    pub title: String,
}

/// `POST /v1/households/{org}/requests` (any member): a kid asks a parent for a title.
pub async fn ask(
    State(s): State<ApiState>,
    who: Who,
    Path(org): Path<String>,
    ApiJson(req): ApiJson<AskRequest>,
) -> Result<(StatusCode, Json<HouseholdView>), Problem> {
    let org = household_of(&s, &who, &org, Action::ReadOrg)?;
    if !s.catalog.titles.contains_key(&req.title) {
        return Err(Problem::not_found(format!(
            "title `{}` does not exist",
            req.title
        )));
    }
    s.cluster
        .propose_as(
            who.actor(),
            Body::AskParent(pb::AskParent {
                org_id: org.to_string(),
                request_id: format!("req-{:016x}", rand::random::<u64>()),
                profile_id: req.profile,
                title: req.title,
            }),
        )
        .await??;
    Ok((StatusCode::CREATED, Json(view(&s, &org))))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DecideRequest {
    pub approve: bool,
}

/// `POST /v1/households/{org}/requests/{id}` (the owner): approve (the title is unlocked for
/// the kid's next session) or decline.
pub async fn decide(
    State(s): State<ApiState>,
    who: Who,
    Path((org, id)): Path<(String, String)>,
    ApiJson(req): ApiJson<DecideRequest>,
) -> Result<Json<HouseholdView>, Problem> {
    let org = household_of(&s, &who, &org, Action::ManageOrg)?;
    s.cluster
        .propose_as(
            who.actor(),
            Body::DecideParentRequest(pb::DecideParentRequest {
                org_id: org.to_string(),
                request_id: id,
                approve: req.approve,
            }),
        )
        .await??;
    Ok(Json(view(&s, &org)))
}

fn pin_locked(until: i64) -> Problem {
    Problem::new(
        StatusCode::TOO_MANY_REQUESTS,
        "pin-locked",
        "PIN locked",
        format!(
            "five wrong PINs in a row locked it until {}: try again then",
            rfc3339(until)
        ),
    )
}

/// A title in a profile's library.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LibraryEntry {
    #[serde(flatten)]
    pub title: TitleView,
    /// Whether the profile may launch it now (hours and a kid's time aside).
    pub playable: bool,
    /// Why not, and what can be done.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub why_not: Option<String>,
    /// Unlocked by a parent's PIN for the next session.
    pub unlocked: bool,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Library {
    pub profile: String,
    pub titles: Vec<LibraryEntry>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct LibraryQuery {
    pub profile: String,
}

/// `GET /v1/households/{org}/library?profile=`: every title, and whether the profile may
/// play it (the library, its age rating) — and why not.
pub async fn library(
    State(s): State<ApiState>,
    who: Who,
    Path(org): Path<String>,
    ApiQuery(q): ApiQuery<LibraryQuery>,
) -> Result<Json<Library>, Problem> {
    let org = household_of(&s, &who, &org, Action::ReadOrg)?;
    let state = s.cluster.state();
    let now = crate::clock::now_ms();
    let h = state
        .gaming
        .households
        .get(&org)
        .filter(|h| h.profiles.contains_key(&q.profile))
        .ok_or_else(|| Problem::not_found(format!("profile `{}` does not exist", q.profile)))?;
    let p = &h.profiles[&q.profile];
    let local = now + i64::from(h.utc_offset_min) * 60_000;
    let limit = p.pegi_limit(date_of(local).year());
    let titles = s
        .catalog
        .titles
        .iter()
        .map(|(id, t)| {
            let owned = t.free_to_play || h.entitlements.iter().any(|e| e.covers(id, &p.id, now));
            let unlocked = h
                .unlocks
                .iter()
                .any(|u| u.profile == p.id && &u.title == id && now < u.until_ms);
            let why_not = if !owned {
                Some("not in the library: buy it, or ask the household's owner".to_owned())
            } else if t.pegi > limit && !unlocked {
                Some(format!(
                    "rated PEGI {}, above {}'s PEGI {limit}: a parent can unlock it with the PIN",
                    t.pegi, p.name
                ))
            } else {
                None
            };
            LibraryEntry {
                title: TitleView::new(id, t),
                playable: why_not.is_none(),
                why_not,
                unlocked,
            }
        })
        .collect();
    Ok(Json(Library {
        profile: p.id.clone(),
        titles,
    }))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EntitlementRequest {
    pub title: String,
    /// One profile; absent: the whole household.
    #[serde(default)]
    pub profile: Option<String>,
    /// `purchase`, `subscription`, `partner-licence` or `trial`.
    pub kind: String,
    /// RFC 3339; a trial must end.
    #[serde(default)]
    pub ends_at: Option<String>,
}

/// `POST /v1/households/{org}/entitlements` (operators): grants a title.
pub async fn grant(
    State(s): State<ApiState>,
    who: Who,
    Path(org): Path<String>,
    ApiJson(req): ApiJson<EntitlementRequest>,
) -> Result<(StatusCode, Json<HouseholdView>), Problem> {
    who.may(&s, Action::OperateFleet, Resource::Fleet)?;
    let org = household_of(&s, &who, &org, Action::ReadOrg)?;
    if !s.catalog.titles.contains_key(&req.title) {
        return Err(Problem::unprocessable(
            "unknown-title",
            "Unknown title",
            format!(
                "title `{}` is not in the catalog; titles: {}",
                req.title,
                s.catalog
                    .titles
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    if EntitlementKind::parse(&req.kind).is_none() {
        return Err(Problem::unprocessable(
            "invalid-entitlement",
            "Invalid entitlement",
            format!(
                "kind `{}` is not one of: purchase, subscription, partner-licence, trial",
                req.kind
            ),
        ));
    }
    let ends = match &req.ends_at {
        None => 0,
        Some(t) => crate::api::validate::rfc3339_ms("ends_at", t)?,
    };
    s.cluster
        .propose_as(
            who.actor(),
            Body::GrantEntitlement(pb::GrantEntitlement {
                org_id: org.to_string(),
                entitlement_id: format!("ent-{:016x}", rand::random::<u64>()),
                title: req.title,
                profile_id: req.profile.unwrap_or_default(),
                kind: req.kind,
                ends_at_unix_ms: ends,
            }),
        )
        .await??;
    Ok((StatusCode::CREATED, Json(view(&s, &org))))
}

/// `DELETE /v1/households/{org}/entitlements/{id}` (operators).
pub async fn revoke(
    State(s): State<ApiState>,
    who: Who,
    Path((org, id)): Path<(String, String)>,
) -> Result<StatusCode, Problem> {
    who.may(&s, Action::OperateFleet, Resource::Fleet)?;
    let org = household_of(&s, &who, &org, Action::ReadOrg)?;
    s.cluster
        .propose_as(
            who.actor(),
            Body::RevokeEntitlement(pb::RevokeEntitlement {
                org_id: org.to_string(),
                entitlement_id: id,
            }),
        )
        .await??;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HouseholdLaunch {
    pub profile: String,
    pub title: String,
    /// Where to play; or give `latency` and the scheduler picks the region.
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default)]
    pub latency: Option<LatencyRequest>,
    /// The terminal's device code (a partner site's kiosk or console): it takes one of the
    /// site's seats.
    #[serde(default)]
    pub device: Option<String>,
}

/// The household's project, when `who` may play as `profile` of `org`: the owner as any
/// profile, a member as their own (404 for a profile not there, 403 for another member's).
pub(crate) fn play_as(
    s: &ApiState,
    who: &Who,
    org: &OrgId,
    profile: &str,
) -> Result<vmcloud_proto::ProjectId, Problem> {
    let state = s.cluster.state();
    let h = state
        .gaming
        .households
        .get(org)
        .filter(|h| h.profiles.contains_key(profile))
        .ok_or_else(|| Problem::not_found(format!("profile `{profile}` does not exist")))?;
    let owner = who.may(s, Action::ManageOrg, Resource::Org(org)).is_ok();
    let mine = matches!(&who.principal, Principal::User { id, .. }
        if h.profiles[profile].user.as_ref() == Some::<&UserId>(id));
    if !owner && !mine {
        return Err(Problem::new(
            StatusCode::FORBIDDEN,
            "not-your-profile",
            "Not your profile",
            "members play as their own profile; the household's owner plays as any",
        ));
    }
    state
        .projects_of_org(org)
        .into_iter()
        .next()
        .ok_or_else(|| Problem::internal("the household has no project"))
}

/// `POST /v1/households/{org}/launch`: launches a title as a profile — the owner for any
/// profile, a member as their own. Refused in `apply` (403 with the reason) without the
/// title in the library, above a kid's age rating, outside a kid's hours, past a kid's
/// minutes for today or the household's hours this month.
pub async fn launch(
    State(s): State<ApiState>,
    who: Who,
    Path(org): Path<String>,
    ApiJson(req): ApiJson<HouseholdLaunch>,
) -> Result<Response, Problem> {
    let org = household_of(&s, &who, &org, Action::ReadOrg)?;
    let title = s.catalog.titles.get(&req.title).ok_or_else(|| {
        Problem::unprocessable(
            "unknown-title",
            "Unknown title",
            format!("title `{}` is not in the catalog", req.title),
        )
    })?;
    let project = play_as(&s, &who, &org, &req.profile)?;
    let (tier, fair) = {
        let state = s.cluster.state();
        let (_, fair) = plan_of(&s, &state, &org);
        (fair.tier, fair.clone())
    };
    let request = LaunchRequest {
        title: req.title.clone(),
        flavor: title.gpu_class.clone(),
        region: req.region,
        latency: req.latency,
        pool: title.anti_cheat_pool.clone(),
        market: None,
        reservation: None,
    };
    let command = launch_command(
        &s,
        &project,
        &request,
        tier,
        pb::GameSession {
            profile_id: req.profile,
            title_pegi: u32::from(title.pegi),
            title_free: title.free_to_play,
            monthly_hours: fair.hours,
            rollover_hours: fair.rollover,
            session_max_s: fair.session_max_h * 3600,
            source: who.source.clone(),
            device_code: req.device.clone().unwrap_or_default(),
            ..Default::default()
        },
    )?;
    propose_launch(&s, &who, command).await
}

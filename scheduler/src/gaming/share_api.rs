//! Share-Play's API: the host invites (`POST /v1/sessions/{id}/share-play`: a code and a link,
//! shown once) and ends it (`DELETE` there); a household profile joins with the code
//! (`POST /v1/households/{org}/share-play`: connection details at once), sees where it plays
//! along, gets new connection details, and leaves.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use vmcloud_proto::pb::{self, command::Body};
use vmcloud_proto::{InstanceId, ProjectId};

use crate::api::context::{ApiJson, ApiState, Caller, Who, created, rfc3339};
use crate::api::problem::Problem;
use crate::gaming::api::{household_of, play_as};
use crate::instances::types::Instance;
use crate::sessions::api::{ConnectionView, own_session};
use crate::sessions::types::{SHARE_INVITE_MS, STREAM_PORT, STREAM_TOKEN_MS, ShareGuest};
use crate::tenancy::authz::{Action, Resource};

/// The letters and digits of a code: no 0/O, 1/I to misread.
const CODE_ALPHABET: &[u8; 32] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";

/// A new code: eight characters (40 bits), shown as `XXXX-XXXX`.
fn new_code() -> String {
    let c: String = (0..8)
        .map(|_| CODE_ALPHABET[rand::random_range(0..CODE_ALPHABET.len())] as char)
        .collect();
    format!("{}-{}", &c[..4], &c[4..])
}

/// A code as the gamer typed it (any case, with or without the dash or spaces), checked; its
/// SHA-256 is what the log knows.
fn code_sha256(code: &str) -> Result<Vec<u8>, Problem> {
    let clean: String = code
        .chars()
        .filter(|c| !matches!(c, '-' | ' '))
        .map(|c| c.to_ascii_uppercase())
        .collect();
    if clean.len() != 8 || !clean.bytes().all(|b| CODE_ALPHABET.contains(&b)) {
        return Err(Problem::unprocessable(
            "invalid-share-code",
            "Invalid Share-Play code",
            format!(
                "`{code}` is not a Share-Play code: a code is 8 letters and digits like K7QM-3XDP, as the host's invite shows it"
            ),
        ));
    }
    Ok(crate::tenancy::api_key::mail_token_sha256(&clean))
}

/// An invite, shown once to the host.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct InviteView {
    pub session: String,
    /// For the friend to type in the portal or `vmcloud household join`.
    pub code: String,
    /// The same, as a link to the portal.
    pub link: String,
    /// One friend may join with it, before this.
    pub expires_at: String,
}

/// `POST /v1/sessions/{id}/share-play`: invites a friend to the running session — a code for
/// one guest, valid 10 minutes (a new invite replaces an unused one).
pub async fn invite(
    State(s): State<ApiState>,
    Caller(project, who): Caller,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    who.may(&s, Action::Deploy, Resource::Project(&project))?;
    let id = own_session(&s.cluster.state(), &project, &id)?
        .id
        .to_string();
    let code = new_code();
    let expires = crate::clock::now_ms() + SHARE_INVITE_MS;
    s.cluster
        .propose_as(
            who.actor(),
            Body::InviteSharePlay(pb::InviteSharePlay {
                project_id: project.to_string(),
                instance_id: id.clone(),
                code_sha256: code_sha256(&code)?,
                expires_at_unix_ms: expires,
            }),
        )
        .await??;
    Ok(created(
        format!("/v1/sessions/{id}"),
        InviteView {
            session: id,
            link: format!("{}/play/join/{code}", s.public_url),
            code,
            expires_at: rfc3339(expires),
        },
    ))
}

/// `DELETE /v1/sessions/{id}/share-play`: the host ends the friend's play (and any open
/// invite); the session goes on.
pub async fn end(
    State(s): State<ApiState>,
    Caller(project, who): Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, Problem> {
    who.may(&s, Action::Deploy, Resource::Project(&project))?;
    let id = own_session(&s.cluster.state(), &project, &id)?
        .id
        .to_string();
    s.cluster
        .propose_as(
            who.actor(),
            Body::EndSharePlay(pb::EndSharePlay {
                project_id: project.to_string(),
                instance_id: id,
                guest_profile_id: String::new(),
            }),
        )
        .await??;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JoinRequest {
    /// The host's code (`XXXX-XXXX`).
    pub code: String,
    /// The profile joining: the owner's choice, a member's own.
    pub profile: String,
}

/// A profile playing along in a friend's session.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct GuestView {
    pub session: String,
    pub profile: String,
    pub title: String,
    /// Who invited: the host's profile name.
    pub host: String,
    pub joined_at: String,
    /// The guest's play ends then at the latest (60 minutes, or the session's end, or a
    /// kid's minutes).
    pub until: String,
    /// Joining: where the guest's client connects.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connection: Option<ConnectionView>,
}

fn guest_view(s: &ApiState, i: &Instance, g: &ShareGuest) -> GuestView {
    let state = s.cluster.state();
    let spec = i.session.as_ref().expect("a session");
    let host = spec
        .profile
        .as_ref()
        .and_then(|p| {
            let org = &state.projects.get(&i.project)?.org;
            Some(
                state
                    .gaming
                    .households
                    .get(org)?
                    .profiles
                    .get(p)?
                    .name
                    .clone(),
            )
        })
        .unwrap_or_else(|| "a friend".into());
    GuestView {
        session: i.id.to_string(),
        profile: g.profile.clone(),
        title: spec.title.clone(),
        host,
        joined_at: rfc3339(g.joined_at_ms),
        until: rfc3339(g.until_ms),
        connection: None,
    }
}

/// New connection details for a guest: a token the command records (only its SHA-256).
fn guest_token(s: &ApiState, session: &str) -> (ConnectionView, Vec<u8>, i64) {
    let (token, sha256) = crate::tenancy::api_key::mail_token();
    let expires = crate::clock::now_ms() + STREAM_TOKEN_MS;
    let state = s.cluster.state();
    let host = InstanceId::parse(session)
        .ok()
        .and_then(|id| state.instances.get(&id).map(|i| state.hostname_of(i)))
        .unwrap_or_default();
    let view = ConnectionView {
        session: session.to_owned(),
        host,
        port: STREAM_PORT,
        token,
        expires_at: rfc3339(expires),
    };
    (view, sha256, expires)
}

/// `POST /v1/households/{org}/share-play`: `profile` joins the session a friend's code
/// invites to — connection details at once, for up to 60 minutes. Refused for a code unknown,
/// used or expired, a profile playing elsewhere, or a kid above their rating, outside their
/// hours or past their minutes.
pub async fn join(
    State(s): State<ApiState>,
    who: Who,
    Path(org): Path<String>,
    ApiJson(req): ApiJson<JoinRequest>,
) -> Result<Response, Problem> {
    let org = household_of(&s, &who, &org, Action::ReadOrg)?;
    let project = play_as(&s, &who, &org, &req.profile)?;
    let sha256 = code_sha256(&req.code)?;
    let (session, title_pegi) = {
        let state = s.cluster.state();
        let invite = state
            .gaming
            .invites
            .get(&hex::encode(&sha256))
            .ok_or_else(|| {
                Problem::not_found(format!(
                    "no Share-Play invite has the code {}: check it with your friend, or ask them for a new invite",
                    req.code
                ))
            })?;
        let pegi = state
            .instances
            .get(&invite.instance)
            .and_then(|i| i.session.as_ref())
            .and_then(|spec| s.catalog.titles.get(&spec.title))
            .map_or(18, |t| u32::from(t.pegi));
        (invite.instance.to_string(), pegi)
    };
    let (mut connection, token_sha256, expires) = guest_token(&s, &session);
    s.cluster
        .propose_as(
            who.actor(),
            Body::JoinSharePlay(pb::JoinSharePlay {
                code_sha256: sha256,
                guest_project_id: project.to_string(),
                guest_profile_id: req.profile.clone(),
                title_pegi,
                token_sha256,
                token_expires_at_unix_ms: expires,
            }),
        )
        .await??;
    let state = s.cluster.state();
    let (i, g) = state
        .guest_in(&project, &req.profile, crate::clock::now_ms())
        .ok_or_else(|| Problem::internal("the guest was admitted but is not in the session"))?;
    let mut view = guest_view(&s, i, g);
    connection.session = view.session.clone();
    view.connection = Some(connection);
    Ok(created(format!("/v1/households/{org}/share-play"), view))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct GuestList {
    /// The household's profiles playing along in friends' sessions now.
    pub playing: Vec<GuestView>,
}

/// `GET /v1/households/{org}/share-play`: where the household's profiles play along now.
pub async fn list(
    State(s): State<ApiState>,
    who: Who,
    Path(org): Path<String>,
) -> Result<Json<GuestList>, Problem> {
    let org = household_of(&s, &who, &org, Action::ReadOrg)?;
    let state = s.cluster.state();
    let at = crate::clock::now_ms();
    let profiles: Vec<String> = state
        .gaming
        .households
        .get(&org)
        .map(|h| h.profiles.keys().cloned().collect())
        .unwrap_or_default();
    let playing = state
        .projects_of_org(&org)
        .into_iter()
        .flat_map(|p| {
            profiles
                .iter()
                .filter_map(|pf| state.guest_in(&p, pf, at))
                .map(|(i, g)| guest_view(&s, i, g))
                .collect::<Vec<_>>()
        })
        .collect();
    Ok(Json(GuestList { playing }))
}

/// The session `profile` of `org` plays along in now (404 when none).
fn guest_session(
    s: &ApiState,
    who: &Who,
    org: &str,
    profile: &str,
) -> Result<(ProjectId, String), Problem> {
    let org = household_of(s, who, org, Action::ReadOrg)?;
    let project = play_as(s, who, &org, profile)?;
    let state = s.cluster.state();
    let (i, _) = state
        .guest_in(&project, profile, crate::clock::now_ms())
        .ok_or_else(|| {
            Problem::not_found(format!(
                "profile `{profile}` is not playing along in a friend's session"
            ))
        })?;
    Ok((project, i.id.to_string()))
}

/// `POST /v1/households/{org}/share-play/{profile}/connection`: new connection details for
/// the guest (a one-time token valid 60 s).
pub async fn connection(
    State(s): State<ApiState>,
    who: Who,
    Path((org, profile)): Path<(String, String)>,
) -> Result<(StatusCode, Json<ConnectionView>), Problem> {
    let (project, session) = guest_session(&s, &who, &org, &profile)?;
    let (view, sha256, expires) = guest_token(&s, &session);
    s.cluster
        .propose_as(
            who.actor(),
            Body::IssueStreamToken(pb::IssueStreamToken {
                project_id: project.to_string(),
                instance_id: session,
                token_sha256: sha256,
                expires_at_unix_ms: expires,
                guest_profile_id: profile,
            }),
        )
        .await??;
    Ok((StatusCode::CREATED, Json(view)))
}

/// `DELETE /v1/households/{org}/share-play/{profile}`: the guest leaves the friend's session.
pub async fn leave(
    State(s): State<ApiState>,
    who: Who,
    Path((org, profile)): Path<(String, String)>,
) -> Result<Response, Problem> {
    let (project, session) = guest_session(&s, &who, &org, &profile)?;
    s.cluster
        .propose_as(
            who.actor(),
            Body::EndSharePlay(pb::EndSharePlay {
                project_id: project.to_string(),
                instance_id: session,
                guest_profile_id: profile,
            }),
        )
        .await??;
    Ok(StatusCode::NO_CONTENT.into_response())
}

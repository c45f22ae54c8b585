//! The gamers' portal (`/play`): a household's profiles and hours this month, each profile's
//! library (what it may play, and why not), launching a title, a parent's PIN unlocking a
//! title for a kid, and the session launched (its place in the queue, then where it runs).
//! Everything goes through the API as the logged-in user; refusals are shown where they
//! happen, in words.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::Path;
use axum::http::Method;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use futures::Stream;
use maud::{Markup, html};
use serde_json::Value;

use crate::auth_pages::urlencode;
use crate::client::{ApiProblem, items, s};
use crate::i18n::{Lang, Msg};
use crate::layout::Ctx;

fn minutes(m: &Value) -> String {
    let m = m.as_i64().unwrap_or(0);
    match (m / 60, m % 60) {
        (0, m) => format!("{m} min"),
        (h, 0) => format!("{h} h"),
        (h, m) => format!("{h} h {m:02}"),
    }
}

/// The household `org` as the API shows it to the user, or the page saying why not.
pub(crate) async fn household_of(ctx: &Ctx, org: &str) -> Result<Value, Response> {
    ctx.api
        .get(&format!("/v1/households/{}", urlencode(org)))
        .await
        .map_err(|p| ctx.problem(&p))
}

/// What an action on a title answers when the API refuses it: the library with the reason
/// (a refusal is the gamer's to read where it happened), or the error page.
async fn refused_on_library(ctx: &Ctx, org: &str, profile: &str, p: &ApiProblem) -> Response {
    if p.status.is_client_error() && p.status.as_u16() != 401 {
        library_page(ctx, org, profile, Some(p)).await
    } else {
        ctx.problem(p)
    }
}

/// `GET /play`: the household the user belongs to (the first one), or how to get one.
pub async fn home(ctx: Ctx) -> Response {
    let me = match ctx.api.get("/v1/me").await {
        Ok(me) => me,
        Err(p) => return ctx.problem(&p),
    };
    for o in items(&me, "organisations") {
        let id = s(&o, "id");
        if ctx
            .api
            .get(&format!("/v1/households/{}", urlencode(id)))
            .await
            .is_ok()
        {
            return Redirect::to(&format!("/play/{id}")).into_response();
        }
    }
    ctx.page(
        Msg::Play,
        html! {
            h1 { (ctx.t(Msg::Play)) }
            p #no-household { (ctx.t(Msg::NoHousehold)) }
            p { a href="/signup" { (ctx.t(Msg::SignUp)) } " · " a href="/console" { (ctx.t(Msg::Console)) } }
        },
    )
}

/// `GET /play/{org}`: who plays, and the household's hours this month.
pub async fn household(ctx: Ctx, Path(org): Path<String>) -> Response {
    let h = match household_of(&ctx, &org).await {
        Ok(h) => h,
        Err(page) => return page,
    };
    let titles = ctx.api.get("/v1/titles").await.unwrap_or(Value::Null);
    // The household's gaming plan and those on offer (the owner's to change; others see none).
    let plan = ctx
        .api
        .get(&format!("/v1/billing/plan?org={}", urlencode(&org)))
        .await
        .unwrap_or(Value::Null);
    // Where its profiles play along in friends' sessions (Share-Play).
    let along = ctx
        .api
        .get(&format!("/v1/households/{}/share-play", urlencode(&org)))
        .await
        .unwrap_or(Value::Null);
    let title_name = |id: &str| {
        items(&titles, "titles")
            .into_iter()
            .find(|t| s(t, "id") == id)
            .map(|t| s(&t, "name").to_owned())
            .unwrap_or_else(|| id.to_owned())
    };
    ctx.page_titled(
        s(&h, "name"),
        html! {
            h1 { (s(&h, "name")) }
            (hours(&ctx, &h))
            h2 { (ctx.t(Msg::WhoPlays)) }
            section.profiles #profiles {
                @for p in items(&h, "profiles") {
                    a.card.profile href={ "/play/" (org) "/" (s(&p, "id")) } data-profile=(s(&p, "id")) {
                        div.big { (s(&p, "name")) }
                        div.muted {
                            @if p["kid"] == true { (ctx.t(Msg::Kid)) " · " }
                            "PEGI " (p["pegi_limit"])
                            @if let Some(limit) = p["daily_limit_min"].as_i64() {
                                " · " (minutes(&p["played_today_min"])) " / " (minutes(&Value::from(limit))) " " (ctx.t(Msg::Today))
                            }
                        }
                    }
                }
            }
            @if items(&h, "profiles").is_empty() { p.muted { (ctx.t(Msg::NoProfiles)) } }
            h2 { (ctx.t(Msg::SharePlay)) }
            section #playing-along {
                @for g in items(&along, "playing") {
                    div.card.along data-session=(s(&g, "session")) {
                        p { (ctx.t(Msg::PlayingWith)) " " strong { (s(&g, "host")) } " · " (title_name(s(&g, "title"))) " · " (ctx.t(Msg::Until)) " " (hhmm(s(&g, "until"))) " UTC" }
                        form.inline method="post" action={ "/play/" (org) "/share-play/" (s(&g, "profile")) "/connect" } {
                            (ctx.csrf_field())
                            button type="submit" .guest-connect { (ctx.t(Msg::Connect)) }
                        }
                        " "
                        form.inline method="post" action={ "/play/" (org) "/share-play/" (s(&g, "profile")) "/leave" } {
                            (ctx.csrf_field())
                            button.danger type="submit" .guest-leave { (ctx.t(Msg::Leave)) }
                        }
                    }
                }
                p { a href="/play/join" id="join-friend" { (ctx.t(Msg::JoinFriend)) } }
            }
            @let pending: Vec<Value> = items(&h, "requests").into_iter().filter(|r| s(r, "state") == "pending").collect();
            @if !pending.is_empty() {
                h2 { (ctx.t(Msg::Requests)) }
                section #requests {
                    @for r in &pending {
                        div.card.request data-request=(s(r, "id")) {
                            p { strong { (s(r, "profile_name")) } " " (ctx.t(Msg::AsksFor)) " " strong { (title_name(s(r, "title"))) } }
                            form.inline method="post" action={ "/play/" (org) "/requests/" (s(r, "id")) } {
                                (ctx.csrf_field())
                                button type="submit" name="approve" value="1" .approve { (ctx.t(Msg::Approve)) }
                                " "
                                button.danger type="submit" name="approve" value="0" .decline { (ctx.t(Msg::Decline)) }
                            }
                        }
                    }
                }
            }
            h2 { (ctx.t(Msg::AddProfile)) }
            form.card.row method="post" action={ "/play/" (org) "/profiles" } {
                (ctx.csrf_field())
                label { (ctx.t(Msg::Name)) input type="text" name="name" id="profile-name" required maxlength="40"; }
                label { (ctx.t(Msg::BirthYearKid)) input type="number" name="birth_year" id="profile-birth-year" min="1900" max="2100"; }
                label { (ctx.t(Msg::MinutesADay)) input type="number" name="daily_limit_min" id="profile-minutes" min="1" max="1440"; }
                button type="submit" id="add-profile" { (ctx.t(Msg::AddProfile)) }
            }
            p.muted { (ctx.t(Msg::ProfilesText)) }
            (plans(&ctx, &org, &plan))
            h2 { (ctx.t(Msg::ParentalPin)) }
            form.card.row method="post" action={ "/play/" (org) "/pin" } {
                (ctx.csrf_field())
                label { "PIN" input type="password" name="pin" id="new-pin" required inputmode="numeric" pattern="[0-9]{4,8}" autocomplete="off"; }
                button type="submit" id="set-pin" { (ctx.t(Msg::SetPin)) }
            }
            p.muted { @if h["pin_set"] == true { (ctx.t(Msg::PinIsSet)) } @else { (ctx.t(Msg::PinNotSet)) } }
        },
    )
}

/// The household's gaming plan and the gaming plans on offer, each with its price and a button
/// that takes it (billed a month in advance, prorated: the billing page's plans).
fn plans(ctx: &Ctx, org: &str, plan: &Value) -> Markup {
    let current = plan["current"]["plan"].as_str().unwrap_or("");
    let offers: Vec<Value> = items(plan, "available")
        .into_iter()
        .filter(|p| s(p, "plan").starts_with("game-"))
        .collect();
    if offers.is_empty() {
        return html! {};
    }
    html! {
        h2 { (ctx.t(Msg::GamingPlan)) }
        section #plans {
            @if current.is_empty() { p.muted #current-plan { (ctx.t(Msg::NoGamingPlan)) } }
            @for p in &offers {
                div.card.plan data-plan=(s(p, "plan")) {
                    div.big { (s(p, "name")) }
                    p { (s(p, "monthly")) " " (s(plan, "currency")) " " span.muted { (ctx.t(Msg::PerMonth)) } }
                    @if s(p, "plan") == current {
                        p #current-plan { strong { (ctx.t(Msg::CurrentPlan)) } }
                    } @else {
                        form method="post" action={ "/play/" (org) "/plan" } {
                            (ctx.csrf_field())
                            input type="hidden" name="plan" value=(s(p, "plan"));
                            button type="submit" .take-plan { (ctx.t(Msg::TakePlan)) }
                        }
                    }
                }
            }
        }
        @let packs = items(plan, "hour_packs");
        @if !packs.is_empty() {
            h2 { (ctx.t(Msg::HourPacks)) }
            p.muted { (ctx.t(Msg::HourPacksText)) }
            section #hour-packs {
                @for p in &packs {
                    div.card.pack data-pack=(s(p, "pack")) {
                        div.big { (p["hours"]) " h" }
                        p { (s(p, "price")) " " (s(plan, "currency")) }
                        form method="post" action={ "/play/" (org) "/hour-pack" } {
                            (ctx.csrf_field())
                            input type="hidden" name="pack" value=(s(p, "pack"));
                            button type="submit" .buy-pack { (ctx.t(Msg::BuyPack)) }
                        }
                    }
                }
            }
        }
    }
}

#[derive(Debug, serde::Deserialize)]
pub struct PackForm {
    pack: String,
}

/// `POST /play/{org}/hour-pack`: the owner buys a pack of hours (through billing: on this
/// month's hours at once, on the next invoice).
pub async fn buy_pack(
    ctx: Ctx,
    Path(org): Path<String>,
    axum::Form(f): axum::Form<PackForm>,
) -> Response {
    match ctx
        .api
        .post(
            "/v1/billing/hour-packs",
            serde_json::json!({"org": org, "pack": f.pack}),
        )
        .await
    {
        Ok(_) => crate::layout::done(&format!("/play/{org}"), Msg::NoticePackBought),
        Err(p) => ctx.problem(&p),
    }
}

#[derive(Debug, serde::Deserialize)]
pub struct PlanForm {
    plan: String,
}

/// `POST /play/{org}/plan`: the owner takes a gaming plan (through billing: its next invoice).
pub async fn take_plan(
    ctx: Ctx,
    Path(org): Path<String>,
    axum::Form(f): axum::Form<PlanForm>,
) -> Response {
    match ctx
        .api
        .call(
            Method::PUT,
            "/v1/billing/plan",
            Some(serde_json::json!({"org": org, "plan": f.plan})),
        )
        .await
    {
        Ok(_) => crate::layout::done(&format!("/play/{org}"), Msg::NoticeSaved),
        Err(p) => ctx.problem(&p),
    }
}

/// The household's gaming plan as the gamer reads it: its name in the price book, or the free
/// plan in their language.
fn plan_name(ctx: &Ctx, h: &Value) -> String {
    h["plan_name"]
        .as_str()
        .map_or_else(|| ctx.t(Msg::FreePlan).to_owned(), str::to_owned)
}

/// The household's hours this month, as a banner.
fn hours(ctx: &Ctx, h: &Value) -> Markup {
    html! {
        section #month {
            div.card {
                div.muted { (ctx.t(Msg::HoursLeft)) " (" (plan_name(ctx, h)) ")" }
                div.big #hours-left { (minutes(&h["hours"]["left_min"])) }
            }
            div.card {
                div.muted { (ctx.t(Msg::PlayedThisMonth)) }
                div.big #hours-played { (minutes(&h["hours"]["played_min"])) " / " (minutes(&h["hours"]["allowed_min"])) }
                @if h["hours"]["packs_min"].as_i64().unwrap_or(0) > 0 {
                    div.muted #hours-packs { (ctx.t(Msg::FromPacks)) " " (minutes(&h["hours"]["packs_min"])) }
                }
            }
        }
    }
}

/// `GET /play/{org}/{profile}`: the profile's library.
pub async fn library(ctx: Ctx, Path((org, profile)): Path<(String, String)>) -> Response {
    library_page(&ctx, &org, &profile, None).await
}

async fn library_page(
    ctx: &Ctx,
    org: &str,
    profile: &str,
    refused: Option<&ApiProblem>,
) -> Response {
    let (h, lib) = match (
        ctx.api
            .get(&format!("/v1/households/{}", urlencode(org)))
            .await,
        ctx.api
            .get(&format!(
                "/v1/households/{}/library?profile={}",
                urlencode(org),
                urlencode(profile)
            ))
            .await,
    ) {
        (Ok(h), Ok(l)) => (h, l),
        (Err(p), _) | (_, Err(p)) => return ctx.problem(&p),
    };
    let me = items(&h, "profiles")
        .into_iter()
        .find(|p| s(p, "id") == profile)
        .unwrap_or(Value::Null);
    let mut response = ctx.page_titled(
        s(&me, "name"),
        html! {
            h1 #player { (s(&me, "name")) }
            p { a href={ "/play/" (org) } { (ctx.t(Msg::Back)) } }
            @if let Some(p) = refused { p.problem #refused role="alert" { (p.detail) } }
            (hours(ctx, &h))
            h2 { (ctx.t(Msg::Library)) }
            section.titles #library {
                @for t in items(&lib, "titles") {
                    div.card.title data-title=(s(&t, "id")) {
                        div.big { (s(&t, "name")) }
                        div.muted { "PEGI " (t["pegi"]) " · " (s(&t, "publisher")) }
                        @if t["playable"] == true {
                            form method="post" action={ "/play/" (org) "/" (profile) "/launch" } {
                                (ctx.csrf_field())
                                input type="hidden" name="title" value=(s(&t, "id"));
                                button type="submit" .play { (ctx.t(Msg::PlayNow)) }
                            }
                            @if t["unlocked"] == true { p.muted { (ctx.t(Msg::UnlockedOnce)) } }
                        } @else {
                            p.why-not { (s(&t, "why_not")) }
                            @if s(&t, "why_not").contains("PIN") {
                                form.unlock method="post" action={ "/play/" (org) "/" (profile) "/unlock" } {
                                    (ctx.csrf_field())
                                    input type="hidden" name="title" value=(s(&t, "id"));
                                    label { (ctx.t(Msg::ParentalPin))
                                        input type="password" name="pin" required inputmode="numeric" pattern="[0-9]{4,8}" autocomplete="off"; }
                                    button type="submit" .unlock { (ctx.t(Msg::Unlock)) }
                                }
                                form method="post" action={ "/play/" (org) "/" (profile) "/ask" } {
                                    (ctx.csrf_field())
                                    input type="hidden" name="title" value=(s(&t, "id"));
                                    button.link type="submit" .ask { (ctx.t(Msg::AskAParent)) }
                                }
                            }
                        }
                    }
                }
            }
        },
    );
    if let Some(p) = refused {
        *response.status_mut() = p.status;
    }
    response
}

#[derive(Debug, serde::Deserialize)]
pub struct TitleForm {
    title: String,
    #[serde(default)]
    pin: String,
}

/// `POST /play/{org}/{profile}/launch`: launches the title; a refusal is shown on the
/// library, in words.
pub async fn launch(
    ctx: Ctx,
    Path((org, profile)): Path<(String, String)>,
    axum::Form(f): axum::Form<TitleForm>,
) -> Response {
    let body = serde_json::json!({"profile": profile, "title": f.title, "region": "par"});
    match ctx
        .api
        .post(&format!("/v1/households/{}/launch", urlencode(&org)), body)
        .await
    {
        // A warm VM took it: where to connect, at once.
        Ok(session) if session["connection"].is_object() => {
            connection_page(&ctx, &org, s(&session, "id"), &session["connection"])
        }
        Ok(session) => Redirect::to(&format!(
            "/play/{org}/sessions/{}",
            urlencode(s(&session, "id"))
        ))
        .into_response(),
        Err(p) => refused_on_library(&ctx, &org, &profile, &p).await,
    }
}

/// `POST /play/{org}/{profile}/unlock`: a parent's PIN unlocks the title for the next session.
pub async fn unlock(
    ctx: Ctx,
    Path((org, profile)): Path<(String, String)>,
    axum::Form(f): axum::Form<TitleForm>,
) -> Response {
    let body = serde_json::json!({"profile": profile, "title": f.title, "pin": f.pin});
    match ctx
        .api
        .post(&format!("/v1/households/{}/unlock", urlencode(&org)), body)
        .await
    {
        Ok(_) => crate::layout::done(&format!("/play/{org}/{profile}"), Msg::NoticeUnlocked),
        Err(p) => refused_on_library(&ctx, &org, &profile, &p).await,
    }
}

/// `POST /play/{org}/{profile}/ask`: the kid asks a parent for the title.
pub async fn ask(
    ctx: Ctx,
    Path((org, profile)): Path<(String, String)>,
    axum::Form(f): axum::Form<TitleForm>,
) -> Response {
    let body = serde_json::json!({"profile": profile, "title": f.title});
    match ctx
        .api
        .post(
            &format!("/v1/households/{}/requests", urlencode(&org)),
            body,
        )
        .await
    {
        Ok(_) => crate::layout::done(&format!("/play/{org}/{profile}"), Msg::NoticeAsked),
        Err(p) => refused_on_library(&ctx, &org, &profile, &p).await,
    }
}

#[derive(Debug, serde::Deserialize)]
pub struct DecideForm {
    approve: String,
}

/// `POST /play/{org}/requests/{id}` (the owner): approve or decline a kid's request.
pub async fn decide(
    ctx: Ctx,
    Path((org, id)): Path<(String, String)>,
    axum::Form(f): axum::Form<DecideForm>,
) -> Response {
    let body = serde_json::json!({"approve": f.approve == "1"});
    match ctx
        .api
        .post(
            &format!(
                "/v1/households/{}/requests/{}",
                urlencode(&org),
                urlencode(&id)
            ),
            body,
        )
        .await
    {
        Ok(_) => crate::layout::done(&format!("/play/{org}"), Msg::NoticeSaved),
        Err(p) => ctx.problem(&p),
    }
}

/// `GET /play/{org}/sessions/{id}`: the session launched — its place in the queue and when it
/// should start, then where it runs; kept live by server-sent events.
pub async fn session(ctx: Ctx, Path((org, id)): Path<(String, String)>) -> Response {
    let h = match household_of(&ctx, &org).await {
        Ok(h) => h,
        Err(page) => return page,
    };
    let session = match ctx
        .api
        .get(&format!(
            "/v1/sessions/{}?project={}",
            urlencode(&id),
            urlencode(s(&h, "project"))
        ))
        .await
    {
        Ok(v) => v,
        Err(p) => return ctx.problem(&p),
    };
    let titles = ctx.api.get("/v1/titles").await.unwrap_or(Value::Null);
    let name = items(&titles, "titles")
        .into_iter()
        .find(|t| s(t, "id") == s(&session, "title"))
        .map(|t| s(&t, "name").to_owned())
        .unwrap_or_else(|| s(&session, "title").to_owned());
    let card = session_card(ctx.lang, &ctx.csrf_field(), &org, &id, &session);
    ctx.page_titled(
        &name,
        html! {
            h1 { (name) }
            p { a href={ "/play/" (org) } { (ctx.t(Msg::Back)) } }
            // Live: the server sends the card again whenever the session changes (its place
            // in the queue counting down, then running with the connect button).
            div.card #session data-state=(s(&session, "state"))
                data-events={ "/play/" (org) "/sessions/" (id) "/events" } {
                (card)
            }
            form method="post" action={ "/play/" (org) "/sessions/" (id) "/end" } {
                (ctx.csrf_field())
                button.danger type="submit" id="end-session" { (ctx.t(Msg::EndSession)) }
            }
            script src="/assets/live.js" {}
        },
    )
}

/// The session's card: its state, its place in the queue and expected start while it waits,
/// when it ends, and the connect button once it runs.
fn session_card(lang: Lang, csrf: &Markup, org: &str, id: &str, session: &Value) -> Markup {
    let state = match s(session, "state") {
        "queued" => lang.t(Msg::StateQueued),
        "starting" => lang.t(Msg::StateStarting),
        "running" => lang.t(Msg::StateRunning),
        "ending" => lang.t(Msg::StateEnding),
        other => other,
    };
    html! {
        div.big #session-state data-state=(s(session, "state")) { (state) }
        @if let Some(pos) = session["position"].as_u64() {
            p #queue-position { (lang.t(Msg::QueuePosition)) " " (pos) " / " (session["queue_length"].as_u64().unwrap_or(pos)) }
        }
        @if let Some(eta) = session["estimated_start"].as_str() {
            p #eta { (lang.t(Msg::ExpectedStart)) " " (eta.get(11..16).unwrap_or(eta)) " UTC" }
        } @else if session["position"].is_u64() {
            p.muted #eta { (lang.t(Msg::NoEta)) }
        }
        @if let Some(ends) = session["ends_by"].as_str() {
            p #ends-by { (lang.t(Msg::EndsBy)) " " (ends.get(11..16).unwrap_or(ends)) " UTC" }
        }
        p.muted { (s(session, "region")) " · " (s(session, "flavor")) }
        @if s(session, "state") == "running" {
            form method="post" action={ "/play/" (org) "/sessions/" (id) "/connect" } {
                (csrf)
                button type="submit" id="connect" { (lang.t(Msg::Connect)) }
            }
            // Share-Play: a friend playing along (the host may end it), or an invite to make.
            @let share = &session["share_play"];
            div #share-play {
                @if let Some(guest) = share["guest"].as_str() {
                    p #share-guest { strong { (guest) } " " (lang.t(Msg::PlaysAlong)) " " (hhmm(s(share, "guest_until"))) " UTC" }
                    form method="post" action={ "/play/" (org) "/sessions/" (id) "/share/end" } {
                        (csrf)
                        button.danger type="submit" id="end-share" { (lang.t(Msg::EndSharePlay)) }
                    }
                } @else {
                    @if let Some(until) = share["invite_expires_at"].as_str() {
                        p.muted #share-invite-open { (lang.t(Msg::InviteOpen)) " " (hhmm(until)) " UTC" }
                    }
                    form method="post" action={ "/play/" (org) "/sessions/" (id) "/share" } {
                        (csrf)
                        button type="submit" id="invite-friend" { (lang.t(Msg::SharePlay)) " · " (lang.t(Msg::InviteFriend)) }
                    }
                }
            }
        }
    }
}

/// `HH:MM` of an RFC 3339 time.
pub(crate) fn hhmm(t: &str) -> &str {
    t.get(11..16).unwrap_or(t)
}

/// `GET /play/{org}/sessions/{id}/events`: server-sent events — the session's card whenever
/// it changes (checked twice a second), until the session is gone.
pub async fn session_events(
    ctx: Ctx,
    Path((org, id)): Path<(String, String)>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let project = household_of(&ctx, &org)
        .await
        .map(|h| s(&h, "project").to_owned())
        .unwrap_or_default();
    let path = format!(
        "/v1/sessions/{}?project={}",
        urlencode(&id),
        urlencode(&project)
    );
    let (api, lang, csrf) = (ctx.api.clone(), ctx.lang, ctx.csrf_field());
    let stream = futures::stream::unfold(
        (None::<String>, false),
        move |(last, ended): (Option<String>, bool)| {
            let (api, path, csrf, org, id) = (
                api.clone(),
                path.clone(),
                csrf.clone(),
                org.clone(),
                id.clone(),
            );
            async move {
                if ended {
                    return None;
                }
                loop {
                    match api.get(&path).await {
                        Ok(session) => {
                            let html = session_card(lang, &csrf, &org, &id, &session).into_string();
                            if last.as_deref() != Some(html.as_str()) {
                                let event = Event::default().event("html").data(html.clone());
                                return Some((Ok(event), (Some(html), false)));
                            }
                        }
                        // The session ended (or the login did): tell the page, then stop.
                        Err(_) => {
                            let event = Event::default().event("end").data("");
                            return Some((Ok(event), (last, true)));
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        },
    );
    Sse::new(stream).keep_alive(KeepAlive::default())
}

/// `POST /play/{org}/sessions/{id}/connect`: connection details for the client (a one-time
/// token valid 60 s).
pub async fn connect(ctx: Ctx, Path((org, id)): Path<(String, String)>) -> Response {
    let h = match household_of(&ctx, &org).await {
        Ok(h) => h,
        Err(page) => return page,
    };
    let details = match ctx
        .api
        .post(
            &format!(
                "/v1/sessions/{}/connection?project={}",
                urlencode(&id),
                urlencode(s(&h, "project"))
            ),
            Value::Null,
        )
        .await
    {
        Ok(d) => d,
        Err(p) => return ctx.problem(&p),
    };
    connection_page(&ctx, &org, &id, &details)
}

/// Where the client connects: the session's host and port, and its one-time token.
fn connection_page(ctx: &Ctx, org: &str, id: &str, details: &Value) -> Response {
    ctx.page(
        Msg::Connect,
        html! {
            h1 { (ctx.t(Msg::Connect)) }
            (connection_card(ctx.lang, details))
            p { a href={ "/play/" (org) "/sessions/" (id) } { (ctx.t(Msg::Back)) } }
        },
    )
}

/// Connection details: the host and port, the one-time token and until when it holds.
pub(crate) fn connection_card(lang: Lang, details: &Value) -> Markup {
    html! {
        div.card #connection {
            p { (lang.t(Msg::StreamHost)) " " code #stream-host { (s(details, "host")) ":" (details["port"]) } }
            p { (lang.t(Msg::StreamToken)) " " code #stream-token { (s(details, "token")) } }
            p.muted { (lang.t(Msg::StreamTokenText)) " " (s(details, "expires_at").get(11..19).unwrap_or("")) " UTC" }
        }
    }
}

/// `POST /play/{org}/sessions/{id}/end`.
pub async fn end(ctx: Ctx, Path((org, id)): Path<(String, String)>) -> Response {
    let h = match household_of(&ctx, &org).await {
        Ok(h) => h,
        Err(page) => return page,
    };
    match ctx
        .api
        .call(
            Method::DELETE,
            &format!(
                "/v1/sessions/{}?project={}",
                urlencode(&id),
                urlencode(s(&h, "project"))
            ),
            None,
        )
        .await
    {
        Ok(_) => crate::layout::done(&format!("/play/{org}"), Msg::NoticeSessionEnded),
        Err(p) => ctx.problem(&p),
    }
}

#[derive(Debug, serde::Deserialize)]
pub struct ProfileForm {
    name: String,
    #[serde(default)]
    birth_year: String,
    #[serde(default)]
    daily_limit_min: String,
}

/// `POST /play/{org}/profiles` (the owner): a profile; with a birth year, a kid's.
pub async fn add_profile(
    ctx: Ctx,
    Path(org): Path<String>,
    axum::Form(f): axum::Form<ProfileForm>,
) -> Response {
    let birth_year: Option<i32> = f.birth_year.trim().parse().ok();
    let minutes: Option<u32> = f.daily_limit_min.trim().parse().ok();
    let body = serde_json::json!({"name": f.name, "kid": birth_year.is_some(),
        "birth_year": birth_year, "daily_limit_min": minutes.filter(|_| birth_year.is_some())});
    match ctx
        .api
        .post(
            &format!("/v1/households/{}/profiles", urlencode(&org)),
            body,
        )
        .await
    {
        Ok(_) => crate::layout::done(&format!("/play/{org}"), Msg::NoticeSaved),
        Err(p) => ctx.problem(&p),
    }
}

#[derive(Debug, serde::Deserialize)]
pub struct PinForm {
    pin: String,
}

/// `POST /play/{org}/pin` (the owner).
pub async fn set_pin(
    ctx: Ctx,
    Path(org): Path<String>,
    axum::Form(f): axum::Form<PinForm>,
) -> Response {
    match ctx
        .api
        .call(
            Method::PUT,
            &format!("/v1/households/{}/pin", urlencode(&org)),
            Some(serde_json::json!({"pin": f.pin})),
        )
        .await
    {
        Ok(_) => crate::layout::done(&format!("/play/{org}"), Msg::NoticeSaved),
        Err(p) => ctx.problem(&p),
    }
}

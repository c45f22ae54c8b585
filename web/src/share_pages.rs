//! Share-Play in the gamers' portal: the host invites a friend from the session page (a code
//! and a link, shown once) and ends it there; the friend opens the link (logging in first if
//! needed) or types the code, picks who plays, and gets connection details at once; the
//! household page lists where its profiles play along, to connect again or leave.

use axum::extract::Path;
use axum::http::Method;
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use serde_json::Value;

use crate::auth_pages::urlencode;
use crate::client::{ApiProblem, items, s};
use crate::i18n::Msg;
use crate::layout::Ctx;
use crate::play_pages::{connection_card, hhmm, household_of};

/// `POST /play/{org}/sessions/{id}/share`: invites a friend — the code and the link to send.
pub async fn invite(ctx: Ctx, Path((org, id)): Path<(String, String)>) -> Response {
    let h = match household_of(&ctx, &org).await {
        Ok(h) => h,
        Err(page) => return page,
    };
    let invite = match ctx
        .api
        .post(
            &format!(
                "/v1/sessions/{}/share-play?project={}",
                urlencode(&id),
                urlencode(s(&h, "project"))
            ),
            Value::Null,
        )
        .await
    {
        Ok(v) => v,
        Err(p) => return ctx.problem(&p),
    };
    ctx.page(
        Msg::SharePlay,
        html! {
            h1 { (ctx.t(Msg::SharePlay)) }
            div.card #invite {
                p { (ctx.t(Msg::SharePlayText)) " " (hhmm(s(&invite, "expires_at"))) " UTC." }
                div.big #share-code { (s(&invite, "code")) }
                p { (ctx.t(Msg::ShareLink)) " " a #share-link href=(s(&invite, "link")) { (s(&invite, "link")) } }
            }
            p { a href={ "/play/" (org) "/sessions/" (id) } { (ctx.t(Msg::Back)) } }
        },
    )
}

/// `POST /play/{org}/sessions/{id}/share/end`: the host ends the friend's play.
pub async fn end(ctx: Ctx, Path((org, id)): Path<(String, String)>) -> Response {
    let h = match household_of(&ctx, &org).await {
        Ok(h) => h,
        Err(page) => return page,
    };
    let path = format!(
        "/v1/sessions/{}/share-play?project={}",
        urlencode(&id),
        urlencode(s(&h, "project"))
    );
    match ctx.api.call(Method::DELETE, &path, None).await {
        Ok(_) => crate::layout::done(&format!("/play/{org}/sessions/{id}"), Msg::NoticeShareEnded),
        Err(p) => ctx.problem(&p),
    }
}

/// `GET /play/join`: the form to join a friend with their code.
pub async fn join_page(ctx: Ctx) -> Response {
    join_form(&ctx, "", None).await
}

/// `GET /play/join/{code}`: a friend's link — the form with the code filled in (log-in first).
pub async fn join_link(ctx: Ctx, Path(code): Path<String>) -> Response {
    join_form(&ctx, &code, None).await
}

/// The join form: the code, and who plays (the profiles of the user's households).
async fn join_form(ctx: &Ctx, code: &str, problem: Option<&ApiProblem>) -> Response {
    let next = if code.is_empty() {
        "/play/join".to_owned()
    } else {
        format!("/play/join/{}", urlencode(code))
    };
    if !ctx.logged_in {
        return Redirect::to(&format!("/login?next={}", urlencode(&next))).into_response();
    }
    let me = match ctx.api.get("/v1/me").await {
        Ok(me) => me,
        Err(p) => return ctx.problem(&p),
    };
    let mut choices: Vec<(String, String)> = Vec::new();
    for o in items(&me, "organisations") {
        let id = s(&o, "id");
        if let Ok(h) = ctx
            .api
            .get(&format!("/v1/households/{}", urlencode(id)))
            .await
        {
            for p in items(&h, "profiles") {
                choices.push((
                    format!("{id}/{}", s(&p, "id")),
                    format!("{} · {}", s(&h, "name"), s(&p, "name")),
                ));
            }
        }
    }
    let mut page = ctx.page(
        Msg::JoinFriend,
        html! {
            h1 { (ctx.t(Msg::JoinFriend)) }
            @if let Some(p) = problem { p.problem role="alert" { (p.detail) } }
            @if choices.is_empty() {
                p #no-household { (ctx.t(Msg::NoHousehold)) }
            } @else {
                p { (ctx.t(Msg::JoinText)) }
                form.card method="post" action="/play/join" {
                    (ctx.csrf_field())
                    label { (ctx.t(Msg::ShareCode)) input type="text" name="code" id="join-code" required value=(code) autocomplete="off" autocapitalize="characters" maxlength="12"; }
                    label { (ctx.t(Msg::PlayAs))
                        select name="target" id="join-as" {
                            @for (value, label) in &choices { option value=(value) { (label) } }
                        }
                    }
                    button type="submit" id="join" { (ctx.t(Msg::Join)) }
                }
            }
        },
    );
    if let Some(p) = problem {
        *page.status_mut() = p.status;
    }
    page
}

#[derive(Debug, serde::Deserialize)]
pub struct JoinForm {
    code: String,
    /// `{org}/{profile}`.
    target: String,
}

/// `POST /play/join`: joins — the friend's session and where to connect, or the form again
/// with why not.
pub async fn join(ctx: Ctx, axum::Form(f): axum::Form<JoinForm>) -> Response {
    let (org, profile) = f.target.split_once('/').unwrap_or((&f.target, ""));
    let answer = ctx
        .api
        .post(
            &format!("/v1/households/{}/share-play", urlencode(org)),
            serde_json::json!({"code": f.code, "profile": profile}),
        )
        .await;
    let g = match answer {
        Ok(g) => g,
        Err(p) if p.status.is_client_error() && p.status.as_u16() != 401 => {
            return join_form(&ctx, &f.code, Some(&p)).await;
        }
        Err(p) => return ctx.problem(&p),
    };
    ctx.page_titled(
        s(&g, "title"),
        html! {
            h1 { (s(&g, "title")) }
            p #guest-with { (ctx.t(Msg::PlayingWith)) " " strong { (s(&g, "host")) } " · " (ctx.t(Msg::Until)) " " (hhmm(s(&g, "until"))) " UTC" }
            (connection_card(ctx.lang, &g["connection"]))
            form method="post" action={ "/play/" (org) "/share-play/" (profile) "/leave" } {
                (ctx.csrf_field())
                button.danger type="submit" id="leave" { (ctx.t(Msg::Leave)) }
            }
            p { a href={ "/play/" (org) } { (ctx.t(Msg::Back)) } }
        },
    )
}

/// `POST /play/{org}/share-play/{profile}/connect`: new connection details for the guest.
pub async fn connect(ctx: Ctx, Path((org, profile)): Path<(String, String)>) -> Response {
    let path = format!(
        "/v1/households/{}/share-play/{}/connection",
        urlencode(&org),
        urlencode(&profile)
    );
    match ctx.api.post(&path, Value::Null).await {
        Ok(details) => ctx.page(
            Msg::Connect,
            html! {
                h1 { (ctx.t(Msg::Connect)) }
                (connection_card(ctx.lang, &details))
                p { a href={ "/play/" (org) } { (ctx.t(Msg::Back)) } }
            },
        ),
        Err(p) => ctx.problem(&p),
    }
}

/// `POST /play/{org}/share-play/{profile}/leave`: the guest leaves the friend's session.
pub async fn leave(ctx: Ctx, Path((org, profile)): Path<(String, String)>) -> Response {
    let path = format!(
        "/v1/households/{}/share-play/{}",
        urlencode(&org),
        urlencode(&profile)
    );
    match ctx.api.call(Method::DELETE, &path, None).await {
        Ok(_) => crate::layout::done(&format!("/play/{org}"), Msg::NoticeLeft),
        Err(p) => ctx.problem(&p),
    }
}

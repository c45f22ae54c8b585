//! The user's account (password, two-step verification, sessions) and their organisations
//! (members, invitations, the MFA requirement).

use axum::Form;
use axum::extract::{Path, State};
use axum::http::{Method, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use maud::html;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth_pages::urlencode;
use crate::client::s;
use crate::i18n::Msg;
use crate::layout::{Ctx, done};

pub async fn account(ctx: Ctx) -> Response {
    let me = match ctx.api.get("/v1/me").await {
        Ok(me) => me,
        Err(p) => return ctx.problem(&p),
    };
    account_page(&ctx, &me, None).await
}

async fn account_page(ctx: &Ctx, me: &Value, problem: Option<&str>) -> Response {
    let sessions = ctx
        .api
        .get("/v1/me/sessions?limit=1000")
        .await
        .unwrap_or(Value::Null);
    let totp = me["totp_enabled"].as_bool().unwrap_or(false);
    ctx.page(
        Msg::Account,
        html! {
            h1 { (ctx.t(Msg::Account)) }
            p.muted #account-email { (s(me, "email")) }
            @if let Some(p) = problem { p.problem role="alert" { (p) } }
            section.card {
                h2 { (ctx.t(Msg::TwoStep)) }
                @if totp {
                    p #totp-status data-on="true" { (ctx.t(Msg::TwoStepOn)) }
                    form method="post" action="/console/account/totp/disable" {
                        (ctx.csrf_field())
                        button.danger type="submit" id="totp-off" { (ctx.t(Msg::TurnOff)) }
                    }
                } @else {
                    p #totp-status data-on="false" { (ctx.t(Msg::TwoStepOff)) }
                    form method="post" action="/console/account/totp" {
                        (ctx.csrf_field())
                        button type="submit" id="totp-on" { (ctx.t(Msg::TurnOn)) }
                    }
                }
            }
            section.card {
                h2 { (ctx.t(Msg::ChangePassword)) }
                form method="post" action="/console/account/password" {
                    (ctx.csrf_field())
                    label { (ctx.t(Msg::CurrentPassword)) input type="password" name="current_password" required autocomplete="current-password"; }
                    label { (ctx.t(Msg::NewPassword)) input type="password" name="new_password" required autocomplete="new-password"; }
                    small { (ctx.t(Msg::PasswordHint)) }
                    button type="submit" { (ctx.t(Msg::ChangePassword)) }
                }
            }
            section.card {
                h2 { (ctx.t(Msg::Sessions)) }
                table #sessions {
                    thead { tr { th { (ctx.t(Msg::Created)) } th { (ctx.t(Msg::Expires)) } th {} th {} } }
                    tbody {
                        @for l in sessions["sessions"].as_array().into_iter().flatten() {
                            tr {
                                td.mono { (s(l, "created_at")) }
                                td.mono { (s(l, "expires_at")) }
                                td {
                                    @if l["current"].as_bool().unwrap_or(false) { strong { (ctx.t(Msg::ThisSession)) } " " }
                                    @if l["mfa"].as_bool().unwrap_or(false) { span.muted { (ctx.t(Msg::WithCode)) } }
                                }
                                td {
                                    @if !l["current"].as_bool().unwrap_or(false) {
                                        form.inline method="post" action={ "/console/account/sessions/" (s(l, "id")) "/end" } {
                                            (ctx.csrf_field())
                                            button.link.danger type="submit" { (ctx.t(Msg::End)) }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
                p { (ctx.t(Msg::LogOutEverywhereText)) }
                form method="post" action="/console/account/logout-everywhere" {
                    (ctx.csrf_field())
                    button.danger type="submit" id="logout-everywhere" { (ctx.t(Msg::LogOutEverywhere)) }
                }
            }
        },
    )
}

/// The account page again with the API's reason — unless the session itself ended (a wrong
/// code is a 401 too, so the session is asked first).
async fn refused(ctx: &Ctx, p: &crate::client::ApiProblem) -> Response {
    match ctx.api.get("/v1/me").await {
        Ok(me) => account_page(ctx, &me, Some(&p.detail)).await,
        Err(_) => ctx.problem(p),
    }
}

/// Starts enrolment and shows the QR code with a form for the first code.
pub async fn totp_enrol(ctx: Ctx) -> Response {
    let enrol = match ctx.api.post("/v1/me/totp", json!(null)).await {
        Ok(e) => e,
        Err(p) => return ctx.problem(&p),
    };
    let qr = base64::engine::general_purpose::STANDARD.encode(s(&enrol, "qr_svg"));
    ctx.page(
        Msg::TwoStep,
        html! {
            h1 { (ctx.t(Msg::TwoStep)) }
            p { (ctx.t(Msg::ScanQr)) }
            img #qr src={ "data:image/svg+xml;base64," (qr) } alt="QR code" width="200" height="200";
            p { (ctx.t(Msg::Secret)) ": " code #totp-secret { (s(&enrol, "secret")) } }
            form.card.row method="post" action="/console/account/totp/confirm" {
                (ctx.csrf_field())
                label { (ctx.t(Msg::Code)) input type="text" name="code" id="totp-code" required inputmode="numeric" autocomplete="one-time-code" pattern="[0-9]{6}"; }
                button type="submit" id="totp-confirm" { (ctx.t(Msg::Confirm)) }
            }
        },
    )
}

#[derive(Debug, Deserialize)]
pub struct CodeForm {
    code: String,
}

pub async fn totp_confirm(ctx: Ctx, Form(f): Form<CodeForm>) -> Response {
    match ctx
        .api
        .post("/v1/me/totp/confirm", json!({"code": f.code}))
        .await
    {
        Ok(v) => ctx.page(
            Msg::RecoveryCodes,
            html! {
                h1 { (ctx.t(Msg::RecoveryCodes)) }
                p { (ctx.t(Msg::RecoveryCodesText)) }
                ul.mono #recovery-codes {
                    @for c in v["recovery_codes"].as_array().into_iter().flatten() {
                        li { (c.as_str().unwrap_or_default()) }
                    }
                }
                p { a href="/console/account" { (ctx.t(Msg::Back)) } }
            },
        ),
        Err(p) => refused(&ctx, &p).await,
    }
}

pub async fn totp_disable(ctx: Ctx) -> Response {
    match ctx.api.call(Method::DELETE, "/v1/me/totp", None).await {
        Ok(_) => done("/console/account", Msg::NoticeTotpOff),
        Err(p) => refused(&ctx, &p).await,
    }
}

#[derive(Debug, Deserialize)]
pub struct PasswordForm {
    current_password: String,
    new_password: String,
}

pub async fn password(ctx: Ctx, Form(f): Form<PasswordForm>) -> Response {
    let body = json!({"current_password": f.current_password, "new_password": f.new_password});
    match ctx.api.call(Method::POST, "/v1/password", Some(body)).await {
        Ok(answer) => ended(answer.headers, Msg::NoticePasswordChanged),
        Err(p) => refused(&ctx, &p).await,
    }
}

pub async fn end_session(ctx: Ctx, Path(id): Path<String>) -> Response {
    let path = format!("/v1/me/sessions/{}", urlencode(&id));
    match ctx.api.call(Method::DELETE, &path, None).await {
        Ok(_) => done("/console/account", Msg::NoticeSessionEnded),
        Err(p) => refused(&ctx, &p).await,
    }
}

pub async fn logout_everywhere(ctx: Ctx) -> Response {
    match ctx
        .api
        .call(Method::POST, "/v1/logout-everywhere", None)
        .await
    {
        Ok(answer) => ended(answer.headers, Msg::NoticeLoggedOut),
        Err(p) => ctx.problem(&p),
    }
}

/// To the log-in page, with the API's cleared session cookie.
fn ended(headers: axum::http::HeaderMap, notice: Msg) -> Response {
    let mut response = done("/login", notice);
    for c in headers.get_all(header::SET_COOKIE) {
        response.headers_mut().append(header::SET_COOKIE, c.clone());
    }
    response
}

/// An organisation: its members (with a form to invite one) and its settings.
pub async fn organisation(
    State(web): State<crate::Web>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> Response {
    let org = match ctx
        .api
        .get(&format!("/v1/organisations/{}", urlencode(&id)))
        .await
    {
        Ok(o) => o,
        Err(p) => return ctx.problem(&p),
    };
    let domains = org["sso"]["allowed_domains"]
        .as_array()
        .map(|d| {
            d.iter()
                .filter_map(|x| x.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default();
    let redirect_uri = format!("{}/sso/callback", web.state.public_url);
    ctx.page_titled(
        s(&org, "name"),
        html! {
            h1 { (s(&org, "name")) }
            p {
                a href={ "/console/orgs/" (s(&org, "id")) "/billing" } id="billing-link" { (ctx.t(Msg::Billing)) }
                " · "
                a href={ "/console/orgs/" (s(&org, "id")) "/audit" } id="audit-link" { (ctx.t(Msg::AuditTrail)) }
            }
            @if org["trial"].as_bool().unwrap_or(false) { p.muted { (ctx.t(Msg::Trial)) } }
            h2 { (ctx.t(Msg::Members)) }
            table #members {
                thead { tr { th { (ctx.t(Msg::Email)) } th { (ctx.t(Msg::Role)) } } }
                tbody {
                    @for m in org["members"].as_array().into_iter().flatten() {
                        tr { td { (s(m, "email")) } td { (s(m, "role")) } }
                    }
                }
            }
            h2 { (ctx.t(Msg::Invite)) }
            p.muted { (ctx.t(Msg::InviteText)) }
            form.card.row method="post" action={ "/console/orgs/" (id) "/members" } {
                (ctx.csrf_field())
                label { (ctx.t(Msg::Email)) input type="email" name="email" id="invite-email" required; }
                label { (ctx.t(Msg::Role))
                    select name="role" id="invite-role" {
                        @for r in ["member", "viewer", "admin", "billing", "owner"] { option value=(r) { (r) } }
                    }
                }
                button type="submit" id="invite" { (ctx.t(Msg::Invite)) }
            }
            h2 { (ctx.t(Msg::SsoSettings)) }
            form.card method="post" action={ "/console/orgs/" (id) "/sso" } {
                (ctx.csrf_field())
                p.muted { (ctx.t(Msg::SsoSettingsText)) " " code #redirect-uri { (redirect_uri) } }
                label { (ctx.t(Msg::Issuer)) input type="url" name="issuer" id="sso-issuer" required value=(s(&org["sso"], "issuer")); }
                label { (ctx.t(Msg::ClientId)) input type="text" name="client_id" id="sso-client-id" required value=(s(&org["sso"], "client_id")); }
                label { (ctx.t(Msg::ClientSecret)) input type="password" name="client_secret" id="sso-client-secret" required autocomplete="off"; }
                label { (ctx.t(Msg::AllowedDomains)) input type="text" name="allowed_domains" id="sso-domains" required value=(domains); }
                label { (ctx.t(Msg::DefaultRole))
                    select name="default_role" {
                        @for r in ["member", "viewer", "admin", "billing"] {
                            option value=(r) selected[s(&org["sso"], "default_role") == r] { (r) }
                        }
                    }
                }
                button type="submit" id="sso-save" { (ctx.t(Msg::Save)) }
            }
            @if org["sso"].is_object() {
                form method="post" action={ "/console/orgs/" (id) "/sso/off" } {
                    (ctx.csrf_field())
                    button.danger type="submit" { (ctx.t(Msg::SsoOff)) }
                }
            }
            h2 { (ctx.t(Msg::Settings)) }
            form.card method="post" action={ "/console/orgs/" (id) "/settings" } {
                (ctx.csrf_field())
                label.check {
                    input type="checkbox" name="mfa_required" value="on" checked[org["mfa_required"].as_bool().unwrap_or(false)];
                    (ctx.t(Msg::RequireMfa))
                }
                button type="submit" { (ctx.t(Msg::Save)) }
            }
        },
    )
}

#[derive(Debug, Deserialize)]
pub struct InviteForm {
    email: String,
    role: String,
}

pub async fn invite(ctx: Ctx, Path(id): Path<String>, Form(f): Form<InviteForm>) -> Response {
    match ctx
        .api
        .post(
            &format!("/v1/organisations/{}/members", urlencode(&id)),
            json!({"email": f.email, "role": f.role}),
        )
        .await
    {
        Ok(v) if v.get("invited").is_some() => {
            done(&format!("/console/orgs/{id}"), Msg::NoticeInvited)
        }
        Ok(_) => done(&format!("/console/orgs/{id}"), Msg::NoticeMemberAdded),
        Err(p) => ctx.problem(&p),
    }
}

#[derive(Debug, Deserialize)]
pub struct InviteLink {
    #[serde(default)]
    org: String,
    #[serde(default)]
    token: String,
}

/// The mailed invitation link: taken at once for a logged-in user.
pub async fn accept_invitation(
    ctx: Ctx,
    axum::extract::Query(q): axum::extract::Query<InviteLink>,
) -> Response {
    if !ctx.logged_in {
        return ctx.page(
            Msg::Invitation,
            html! {
                h1 { (ctx.t(Msg::Invitation)) }
                p #invitation-log-in { (ctx.t(Msg::InvitationLogIn)) }
                p { a href="/login" { (ctx.t(Msg::LogIn)) } " · " a href="/signup" { (ctx.t(Msg::SignUp)) } }
            },
        );
    }
    match ctx
        .api
        .post(
            "/v1/invitations/accept",
            json!({"org": q.org, "token": q.token}),
        )
        .await
    {
        Ok(_) => done(
            &format!("/console/orgs/{}", urlencode(&q.org)),
            Msg::NoticeJoined,
        ),
        Err(p) => ctx.problem(&p),
    }
}

#[derive(Debug, Deserialize)]
pub struct SettingsForm {
    #[serde(default)]
    mfa_required: Option<String>,
}

pub async fn settings(ctx: Ctx, Path(id): Path<String>, Form(f): Form<SettingsForm>) -> Response {
    let body = json!({"mfa_required": f.mfa_required.is_some()});
    match ctx
        .api
        .call(
            Method::PATCH,
            &format!("/v1/organisations/{}", urlencode(&id)),
            Some(body),
        )
        .await
    {
        Ok(_) => done(&format!("/console/orgs/{id}"), Msg::NoticeSaved),
        Err(p) => ctx.problem(&p),
    }
    .into_response()
}

#[derive(Debug, Deserialize)]
pub struct SsoForm {
    issuer: String,
    client_id: String,
    client_secret: String,
    allowed_domains: String,
    default_role: String,
}

pub async fn sso(ctx: Ctx, Path(id): Path<String>, Form(f): Form<SsoForm>) -> Response {
    let domains: Vec<&str> = f
        .allowed_domains
        .split([',', ' '])
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .collect();
    let body = json!({"issuer": f.issuer.trim(), "client_id": f.client_id.trim(),
        "client_secret": f.client_secret, "allowed_domains": domains,
        "default_role": f.default_role});
    let path = format!("/v1/organisations/{}/sso", urlencode(&id));
    match ctx.api.call(Method::PUT, &path, Some(body)).await {
        Ok(_) => done(&format!("/console/orgs/{id}"), Msg::NoticeSaved),
        Err(p) => ctx.problem(&p),
    }
}

pub async fn sso_off(ctx: Ctx, Path(id): Path<String>) -> Response {
    let path = format!("/v1/organisations/{}/sso", urlencode(&id));
    match ctx.api.call(Method::DELETE, &path, None).await {
        Ok(_) => done(&format!("/console/orgs/{id}"), Msg::NoticeSaved),
        Err(p) => ctx.problem(&p),
    }
}

//! Sign-up, the verification link, log-in (password, then the TOTP code when the account has
//! one) and log-out.

use axum::Form;
use axum::extract::Query;
use axum::http::{Method, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::json;

use crate::client::ApiProblem;
use crate::i18n::Msg;
use crate::layout::Ctx;

/// `/`: the console for a logged-in browser, the log-in page otherwise.
pub async fn home(ctx: Ctx) -> Response {
    Redirect::to(if ctx.logged_in { "/console" } else { "/login" }).into_response()
}

#[derive(Debug, Default, Deserialize)]
pub struct SignUpForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    org_name: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    country: String,
    #[serde(default)]
    vat_id: String,
}

fn signup_form(ctx: &Ctx, f: &SignUpForm, problem: Option<&ApiProblem>) -> Response {
    ctx.page(
        Msg::SignUp,
        html! {
            h1 { (ctx.t(Msg::SignUp)) }
            @if let Some(p) = problem { p.problem role="alert" { (p.detail) } }
            form.card method="post" action="/signup" {
                (ctx.csrf_field())
                label { (ctx.t(Msg::Email)) input type="email" name="email" id="email" required autocomplete="email" value=(f.email); }
                label { (ctx.t(Msg::Password)) input type="password" name="password" id="password" required autocomplete="new-password"; }
                small { (ctx.t(Msg::PasswordHint)) }
                label { (ctx.t(Msg::OrgName)) input type="text" name="org_name" id="org_name" required value=(f.org_name); }
                label { (ctx.t(Msg::OrgKind))
                    select name="kind" id="kind" {
                        option value="person" selected[f.kind != "company"] { (ctx.t(Msg::KindPerson)) }
                        option value="company" selected[f.kind == "company"] { (ctx.t(Msg::KindCompany)) }
                    }
                }
                label { (ctx.t(Msg::Country)) input type="text" name="country" id="country" required maxlength="2" value=(f.country); }
                label { (ctx.t(Msg::VatId)) input type="text" name="vat_id" id="vat_id" value=(f.vat_id); }
                button type="submit" id="signup" { (ctx.t(Msg::CreateAccount)) }
            }
            p { (ctx.t(Msg::HaveAccount)) " " a href="/login" { (ctx.t(Msg::LogIn)) } }
        },
    )
}

pub async fn signup_page(ctx: Ctx) -> Response {
    signup_form(&ctx, &SignUpForm::default(), None)
}

pub async fn signup(ctx: Ctx, Form(f): Form<SignUpForm>) -> Response {
    let vat = Some(f.vat_id.trim()).filter(|v| !v.is_empty());
    let body = json!({
        "email": f.email,
        "password": f.password,
        "organisation": {
            "name": f.org_name,
            "kind": if f.kind == "company" { "company" } else { "person" },
            "billing_country": f.country,
            "vat_id": vat,
        },
    });
    match ctx.api.post("/v1/signup", body).await {
        Ok(_) => ctx.page(
            Msg::CheckMail,
            html! {
                h1 { (ctx.t(Msg::CheckMail)) }
                p #check-mail { (ctx.t(Msg::CheckMailText)) }
            },
        ),
        Err(p) => {
            let mut r = signup_form(&ctx, &f, Some(&p));
            *r.status_mut() = p.status;
            r
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct VerifyQuery {
    #[serde(default)]
    user: String,
    #[serde(default)]
    token: String,
}

/// The mailed link.
pub async fn verify(ctx: Ctx, Query(q): Query<VerifyQuery>) -> Response {
    let path = format!(
        "/v1/verify-email?user={}&token={}",
        urlencode(&q.user),
        urlencode(&q.token)
    );
    match ctx.api.call(Method::GET, &path, None).await {
        Ok(_) => crate::layout::done("/login", Msg::Verified),
        Err(p) => ctx.page(
            Msg::VerifyFailed,
            html! {
                h1 { (ctx.t(Msg::VerifyFailed)) }
                p.problem role="alert" { (p.detail) }
            },
        ),
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    code: String,
    /// A page of ours to go to once logged in (a Share-Play link, say).
    #[serde(default)]
    next: String,
}

/// Where to go after logging in: `next` when it is a path of ours (never another site).
fn after_login(next: &str) -> &str {
    let ours = next.starts_with('/')
        && !next.starts_with("//")
        && !next.contains('\\')
        && !next.contains("://");
    if ours { next } else { "/console" }
}

fn login_form(ctx: &Ctx, f: &LoginForm, problem: Option<&ApiProblem>, ask_code: bool) -> Response {
    let code_field: Markup = html! {
        label { (ctx.t(Msg::TotpCode))
            input type="text" name="code" id="code" inputmode="numeric" autocomplete="one-time-code" autofocus[ask_code];
        }
    };
    ctx.page(
        Msg::LogIn,
        html! {
            h1 { (ctx.t(Msg::LogIn)) }
            @if ask_code { p.notice #totp-needed role="status" { (ctx.t(Msg::TotpNeeded)) } }
            @else if let Some(p) = problem { p.problem role="alert" { (p.detail) } }
            form.card method="post" action="/login" {
                (ctx.csrf_field())
                label { (ctx.t(Msg::Email)) input type="email" name="email" id="email" required autocomplete="username" value=(f.email); }
                label { (ctx.t(Msg::Password)) input type="password" name="password" id="password" required autocomplete="current-password"; }
                (code_field)
                @if !f.next.is_empty() { input type="hidden" name="next" value=(f.next); }
                button type="submit" id="login" { (ctx.t(Msg::LogIn)) }
            }
            p { a href="/forgot" id="forgot" { (ctx.t(Msg::ForgotPassword)) } }
            h2 { (ctx.t(Msg::LogInWithSso)) }
            form.card.row method="get" action="/sso/start" {
                label { (ctx.t(Msg::SsoText)) input type="email" name="email" id="sso-email" required autocomplete="email"; }
                button type="submit" id="sso" { (ctx.t(Msg::LogInWithSso)) }
            }
            p { (ctx.t(Msg::NoAccount)) " " a href="/signup" { (ctx.t(Msg::SignUp)) } }
        },
    )
}

/// The log-in page with why an attempt (a password one, or SSO) was refused.
pub fn login_refused(ctx: &Ctx, p: &ApiProblem) -> Response {
    let mut r = login_form(ctx, &LoginForm::default(), Some(p), false);
    *r.status_mut() = p.status;
    r
}

#[derive(Debug, Default, Deserialize)]
pub struct LoginQuery {
    #[serde(default)]
    next: String,
}

/// `GET /login[?next=/path]`.
pub async fn login_page(ctx: Ctx, Query(q): Query<LoginQuery>) -> Response {
    let form = LoginForm {
        next: q.next,
        ..LoginForm::default()
    };
    login_form(&ctx, &form, None, false)
}

pub async fn login(ctx: Ctx, Form(f): Form<LoginForm>) -> Response {
    let code = f.code.trim();
    // Six digits are a TOTP code; anything else typed there is taken as a recovery code.
    let (totp, recovery) = if code.is_empty() {
        (None, None)
    } else if code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit()) {
        (Some(code), None)
    } else {
        (None, Some(code))
    };
    let body = json!({
        "email": f.email,
        "password": f.password,
        "totp_code": totp,
        "recovery_code": recovery,
    });
    match ctx.api.call(Method::POST, "/v1/login", Some(body)).await {
        Ok(answer) => {
            let mut response = Redirect::to(after_login(&f.next)).into_response();
            for cookie in answer.headers.get_all(header::SET_COOKIE) {
                response
                    .headers_mut()
                    .append(header::SET_COOKIE, cookie.clone());
            }
            response
        }
        Err(p) => {
            let ask_code = p.is("totp-required");
            let mut r = login_form(&ctx, &f, Some(&p), ask_code);
            *r.status_mut() = p.status;
            r
        }
    }
}

pub async fn logout(ctx: Ctx) -> Response {
    let answer = ctx.api.call(Method::POST, "/v1/logout", None).await;
    let mut response = crate::layout::done("/login", Msg::NoticeLoggedOut);
    // Whether or not the session was still valid, the browser forgets it.
    let cleared = match answer {
        Ok(a) => a.headers.get(header::SET_COOKIE).cloned(),
        Err(_) => None,
    };
    response.headers_mut().append(
        header::SET_COOKIE,
        cleared.unwrap_or(axum::http::HeaderValue::from_static(
            "vmcloud_session=; HttpOnly; Secure; SameSite=Lax; Path=/; Max-Age=0",
        )),
    );
    response
}

/// Percent-encodes a query value.
pub fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[derive(Debug, Default, Deserialize)]
pub struct ForgotForm {
    #[serde(default)]
    email: String,
}

fn forgot_form(ctx: &Ctx, problem: Option<&ApiProblem>) -> Response {
    ctx.page(
        Msg::ForgotPassword,
        html! {
            h1 { (ctx.t(Msg::ForgotPassword)) }
            @if let Some(p) = problem { p.problem role="alert" { (p.detail) } }
            p { (ctx.t(Msg::ForgotText)) }
            form.card method="post" action="/forgot" {
                (ctx.csrf_field())
                label { (ctx.t(Msg::Email)) input type="email" name="email" id="email" required autocomplete="email"; }
                button type="submit" id="send-link" { (ctx.t(Msg::SendLink)) }
            }
        },
    )
}

pub async fn forgot_page(ctx: Ctx) -> Response {
    forgot_form(&ctx, None)
}

pub async fn forgot(ctx: Ctx, Form(f): Form<ForgotForm>) -> Response {
    match ctx
        .api
        .post("/v1/password-reset", json!({"email": f.email}))
        .await
    {
        Ok(_) => ctx.page(
            Msg::CheckMail,
            html! {
                h1 { (ctx.t(Msg::CheckMail)) }
                p #reset-sent { (ctx.t(Msg::ResetSent)) }
            },
        ),
        Err(p) => {
            let mut r = forgot_form(&ctx, Some(&p));
            *r.status_mut() = p.status;
            r
        }
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct ResetForm {
    #[serde(default)]
    user: String,
    #[serde(default)]
    token: String,
    #[serde(default)]
    new_password: String,
}

fn reset_form(ctx: &Ctx, f: &ResetForm, problem: Option<&ApiProblem>) -> Response {
    ctx.page(
        Msg::ChooseNewPassword,
        html! {
            h1 { (ctx.t(Msg::ChooseNewPassword)) }
            @if let Some(p) = problem { p.problem role="alert" { (p.detail) } }
            form.card method="post" action="/reset" {
                (ctx.csrf_field())
                input type="hidden" name="user" value=(f.user);
                input type="hidden" name="token" value=(f.token);
                label { (ctx.t(Msg::NewPassword)) input type="password" name="new_password" id="new-password" required autocomplete="new-password"; }
                small { (ctx.t(Msg::PasswordHint)) }
                button type="submit" id="reset" { (ctx.t(Msg::ChangePassword)) }
            }
        },
    )
}

/// The mailed reset link: a form for the new password.
pub async fn reset_page(ctx: Ctx, Query(f): Query<ResetForm>) -> Response {
    reset_form(&ctx, &f, None)
}

pub async fn reset(ctx: Ctx, Form(f): Form<ResetForm>) -> Response {
    let body = json!({"user": f.user, "token": f.token, "new_password": f.new_password});
    match ctx.api.post("/v1/password-reset/confirm", body).await {
        Ok(_) => crate::layout::done("/login", Msg::NoticePasswordReset),
        Err(p) => {
            let mut r = reset_form(&ctx, &f, Some(&p));
            *r.status_mut() = p.status;
            r
        }
    }
}

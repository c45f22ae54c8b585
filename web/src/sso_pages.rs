//! "Log in with SSO": the start (the email's domain picks the organisation's provider) and
//! the way back from the provider. Both pass through the API (`/v1/sso/...`), which holds the
//! protocol; these pages forward its cookies and turn its answers into pages.

use axum::extract::RawQuery;
use axum::http::{Method, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;

use crate::client::{Answer, s};
use crate::i18n::Msg;
use crate::layout::Ctx;

fn with_cookies(mut response: Response, answer: &Answer) -> Response {
    for c in answer.headers.get_all(header::SET_COOKIE) {
        response.headers_mut().append(header::SET_COOKIE, c.clone());
    }
    response
}

/// Asks the API for the provider's address, then sends the browser there. A page that moves
/// on by itself (a form may only lead to this site under the CSP's `form-action 'self'`, so
/// no redirect straight to the provider).
pub async fn start(ctx: Ctx, RawQuery(query): RawQuery) -> Response {
    let path = format!("/v1/sso/start?{}", query.unwrap_or_default());
    match ctx.api.call(Method::GET, &path, None).await {
        Ok(answer) => {
            let url = s(&answer.body, "authorization_url").to_owned();
            let page = ctx.page(
                Msg::LogInWithSso,
                html! {
                    meta http-equiv="refresh" content={ "0; url=" (url) };
                    h1 { (ctx.t(Msg::LogInWithSso)) }
                    p { a #continue-sso href=(url) { (ctx.t(Msg::ContinueToProvider)) } }
                },
            );
            with_cookies(page, &answer)
        }
        Err(p) => crate::auth_pages::login_refused(&ctx, &p),
    }
}

/// Where the provider sends people back.
pub async fn callback(ctx: Ctx, RawQuery(query): RawQuery) -> Response {
    let path = format!("/v1/sso/callback?{}", query.unwrap_or_default());
    match ctx.api.call(Method::GET, &path, None).await {
        Ok(answer) => with_cookies(Redirect::to("/console").into_response(), &answer),
        Err(p) => crate::auth_pages::login_refused(&ctx, &p),
    }
}

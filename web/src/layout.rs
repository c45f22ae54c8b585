//! What every page shares: the request's context ([`Ctx`]: language, CSRF token, the API as
//! the browser's user, a notice to show), the page shell, and the layer that sets the
//! security headers, checks CSRF tokens on every form and keeps the language cookie.

use axum::body::Body;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{DOCTYPE, Markup, html};
use rand::RngCore as _;

use vmcloud_scheduler::partners::brand::{BrandView, host_partner};

use crate::Web;
use crate::client::{Api, ApiProblem, cookie};
use crate::i18n::{LANG_COOKIE, Lang, Msg};

/// The cookie holding the CSRF token forms must echo (double submit).
pub const CSRF_COOKIE: &str = "vmcloud_csrf";

/// The policy every page is served with: nothing inline, nothing from elsewhere.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

#[derive(Debug, Clone)]
struct CsrfToken(String);

fn query_param<'a>(query: Option<&'a str>, name: &str) -> Option<&'a str> {
    query?
        .split('&')
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
}

/// The pages' layer: CSRF (a token per browser in a `SameSite=Strict` cookie, echoed by
/// every form; a POST without it is refused before any handler runs), the language cookie,
/// and the security headers (CSP, no framing, no sniffing, no referrer off the site).
pub async fn layer(request: Request, next: Next) -> Response {
    let (mut parts, body) = request.into_parts();
    let existing = cookie(&parts.headers, CSRF_COOKIE).filter(|t| t.len() == 64);
    let token = existing.clone().unwrap_or_else(|| {
        let mut b = [0u8; 32];
        rand::rng().fill_bytes(&mut b);
        hex::encode(b)
    });
    let chosen = query_param(parts.uri.query(), "lang").and_then(Lang::parse);
    let lang = chosen.unwrap_or_else(|| Lang::of(&parts.headers));
    let body = if parts.method == Method::POST {
        let bytes = match axum::body::to_bytes(body, 1 << 20).await {
            Ok(b) => b,
            Err(_) => return StatusCode::PAYLOAD_TOO_LARGE.into_response(),
        };
        let sent = std::str::from_utf8(&bytes)
            .ok()
            .and_then(|form| query_param(Some(form), "csrf"));
        let valid = existing.as_deref().is_some_and(|t| {
            sent.is_some_and(|s| {
                s.len() == t.len() && s.bytes().zip(t.bytes()).fold(0, |a, (x, y)| a | (x ^ y)) == 0
            })
        });
        if !valid {
            let page = shell_bare(
                lang,
                Msg::Error,
                html! {
                    h1 { (lang.t(Msg::Error)) }
                    p.problem { (lang.t(Msg::BadForm)) }
                },
            );
            return with_headers(
                (StatusCode::FORBIDDEN, page).into_response(),
                &token,
                existing.is_none(),
                chosen,
            );
        }
        Body::from(bytes)
    } else {
        body
    };
    parts.extensions.insert(CsrfToken(token.clone()));
    parts.extensions.insert(lang);
    let response = next.run(Request::from_parts(parts, body)).await;
    with_headers(response, &token, existing.is_none(), chosen)
}

fn with_headers(
    mut response: Response,
    token: &str,
    new_token: bool,
    lang: Option<Lang>,
) -> Response {
    let h = response.headers_mut();
    // A page that needs more (the billing page's card form: Stripe.js) sets its own, built
    // on [`CSP`].
    if !h.contains_key(header::CONTENT_SECURITY_POLICY) {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        );
    }
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    if new_token
        && let Ok(v) = HeaderValue::from_str(&format!(
            "{CSRF_COOKIE}={token}; HttpOnly; Secure; SameSite=Strict; Path=/"
        ))
    {
        h.append(header::SET_COOKIE, v);
    }
    if let Some(lang) = lang
        && let Ok(v) = HeaderValue::from_str(&format!(
            "{LANG_COOKIE}={}; Secure; SameSite=Lax; Path=/; Max-Age=31536000",
            lang.code()
        ))
    {
        h.append(header::SET_COOKIE, v);
    }
    response
}

/// What a page handler knows about its request.
pub struct Ctx {
    pub lang: Lang,
    pub csrf: String,
    /// The API, as the browser's user.
    pub api: Api,
    /// A notice from the action that led here (`?notice=`).
    pub notice: Option<Msg>,
    /// Whether a session cookie came with the request.
    pub logged_in: bool,
    /// The brand of the host the request came to: a partner's on its domains, VMCloud's
    /// elsewhere. Pages never show another.
    pub brand: BrandView,
}

impl FromRequestParts<Web> for Ctx {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, web: &Web) -> Result<Ctx, Self::Rejection> {
        Ok(Ctx {
            lang: parts.extensions.get::<Lang>().copied().unwrap_or(Lang::En),
            csrf: parts
                .extensions
                .get::<CsrfToken>()
                .map(|t| t.0.clone())
                .unwrap_or_default(),
            api: Api::new(web.api.clone(), parts),
            notice: query_param(parts.uri.query(), "notice").and_then(Msg::from_name),
            logged_in: cookie(
                &parts.headers,
                vmcloud_scheduler::api::context::SESSION_COOKIE,
            )
            .is_some_and(|c| !c.is_empty()),
            brand: BrandView::of(host_partner(&web.state.cluster.state(), &parts.headers).as_ref()),
        })
    }
}

impl Ctx {
    pub fn t(&self, msg: Msg) -> &'static str {
        self.lang.t(msg)
    }

    /// The hidden field every form carries.
    pub fn csrf_field(&self) -> Markup {
        html! { input type="hidden" name="csrf" value=(self.csrf); }
    }

    /// A whole page: header with navigation, the notice, `body`.
    pub fn page(&self, title: Msg, body: Markup) -> Response {
        self.page_titled(self.t(title), body)
    }

    pub fn page_titled(&self, title: &str, body: Markup) -> Response {
        let other = match self.lang {
            Lang::En => "fr",
            Lang::Fr => "en",
        };
        let page = html! {
                   (DOCTYPE)
                   html lang=(self.lang.code()) {
                       head {
                           meta charset="utf-8";
                           meta name="viewport" content="width=device-width, initial-scale=1";
                           title { (title) " · " (self.brand.name) }
                           link rel="stylesheet" href="/assets/style.css";
                           link rel="stylesheet" href="/assets/brand.css";
                       }
                       body data-brand=(self.brand.partner.as_deref().unwrap_or("vmcloud")) {
                           header.top {
                               a.brand href="/" id="brand" {
                                   @if !self.brand.logo.is_empty() { img.logo src=(self.brand.logo) alt=""; }
                                   (self.brand.name)
                               }
                               nav {
                                   @if self.logged_in {
        a href="/console" { (self.t(Msg::Console)) }
                                       a href="/play" { (self.t(Msg::Play)) }
                                       a href="/console/account" { (self.t(Msg::Account)) }
                                       form.inline method="post" action="/logout" {
                                           (self.csrf_field())
                                           button.link type="submit" id="logout" { (self.t(Msg::LogOut)) }
                                       }
                                   } @else {
                                       a href="/login" { (self.t(Msg::LogIn)) }
                                       a href="/signup" { (self.t(Msg::SignUp)) }
                                   }
                                   a href="/status" id="status-link" { (self.t(Msg::StatusLink)) }
                                   a href={ "?lang=" (other) } id="lang" { (self.t(Msg::Language)) }
                               }
                           }
                           main {
                               @if let Some(n) = self.notice {
                                   p.notice role="status" { (self.t(n)) }
                               }
                               (body)
                           }
                           footer.legal #legal {
                               (self.brand.legal)
                               @if !self.brand.support_email.is_empty() {
                                   " · " a href={ "mailto:" (self.brand.support_email) } { (self.brand.support_email) }
                               }
                               @if !self.brand.support_url.is_empty() {
                                   " · " a href=(self.brand.support_url) { (self.t(Msg::Support)) }
                               }
                           }
                       }
                   }
               };
        page.into_response()
    }

    /// The page for an API refusal: log-in for a session that ended, 404 for what is not
    /// there (or not the caller's), the API's reason otherwise.
    pub fn problem(&self, p: &ApiProblem) -> Response {
        if p.status == StatusCode::UNAUTHORIZED {
            return Redirect::to("/login").into_response();
        }
        let title = if p.status == StatusCode::NOT_FOUND {
            Msg::NotFound
        } else {
            Msg::Error
        };
        let mut response = self.page(
            title,
            html! {
                h1 { (self.t(title)) }
                p.problem { (p.detail) }
                p { a href="/console" { (self.t(Msg::Back)) } }
            },
        );
        *response.status_mut() = p.status;
        response
    }
}

/// A page without the context (the CSRF refusal, before any handler).
fn shell_bare(lang: Lang, title: Msg, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang=(lang.code()) {
            head {
                meta charset="utf-8";
                title { (lang.t(title)) " · VMCloud" }
                link rel="stylesheet" href="/assets/style.css";
            }
            body { main { (body) } }
        }
    }
}

/// A redirect after a successful form, with a notice for the next page.
pub fn done(to: &str, notice: Msg) -> Response {
    let sep = if to.contains('?') { '&' } else { '?' };
    Redirect::to(&format!("{to}{sep}notice={}", notice.name())).into_response()
}

/// The static files: one style sheet, two scripts (the live instance list, Stripe's card
/// form).
pub async fn asset(
    State(web): State<Web>,
    headers: axum::http::HeaderMap,
    axum::extract::Path(name): axum::extract::Path<String>,
) -> Response {
    if name == "brand.css" {
        // The colours of the host's brand, as variables the style sheet uses.
        let brand = BrandView::of(host_partner(&web.state.cluster.state(), &headers).as_ref());
        let css = format!(
            ":root {{ --brand: {}; --accent: {}; }}\n",
            brand.primary_colour, brand.accent_colour
        );
        return (
            [
                (header::CONTENT_TYPE, "text/css; charset=utf-8"),
                (header::CACHE_CONTROL, "public, max-age=300"),
                (header::VARY, "Host"),
            ],
            css,
        )
            .into_response();
    }
    let (body, kind) = match name.as_str() {
        "style.css" => (
            include_str!("../assets/style.css"),
            "text/css; charset=utf-8",
        ),
        "live.js" => (
            include_str!("../assets/live.js"),
            "text/javascript; charset=utf-8",
        ),
        "card.js" => (
            include_str!("../assets/card.js"),
            "text/javascript; charset=utf-8",
        ),
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        body,
    )
        .into_response()
}

//! VMCloud's web pages (DESIGN.md §8 "Web"), served by the scheduler beside the API from the
//! same binary: server-rendered HTML (maud's compiled templates), English and French, a strict
//! Content-Security-Policy (no inline script or style), CSRF tokens on every form, live parts
//! by server-sent events, no build step.
//!
//! Pages are a client of the API in-process ([`client`]): what a user may see and do is the
//! API's decision, never the page's.
//!
//! - [`layout`]: the request context, the page shell, the security/CSRF/language layer.
//! - [`auth_pages`]: sign-up, the verification link, log-in (with a TOTP code), log-out,
//!   password reset.
//! - [`sso_pages`]: log-in through the organisation's OpenID provider.
//! - [`console_pages`]: projects, instances (live), API keys.
//! - [`account_pages`]: password, two-step verification, sessions; organisations.

pub mod account_pages;
pub mod auth_pages;
pub mod billing_pages;
pub mod client;
pub mod console_pages;
pub mod contract_pages;
pub mod i18n;
pub mod layout;
pub mod network_pages;
pub mod noc_pages;
pub mod partner_pages;
pub mod play_pages;
pub mod share_pages;
pub mod sso_pages;
pub mod status_pages;
pub mod webhook_pages;

use axum::Router;
use axum::routing::{get, post};
use vmcloud_scheduler::api::ApiState;

/// What the pages reach: the API's router (called in-process) and its state (the catalog).
#[derive(Clone)]
pub struct Web {
    pub api: Router,
    pub state: ApiState,
}

/// The pages, for `SchedulerConfig::pages`.
pub fn pages(state: ApiState) -> Router {
    use account_pages as account;
    use auth_pages as auth;
    use console_pages as console;
    use contract_pages as contract;
    let web = Web {
        api: vmcloud_scheduler::api::router(state.clone()),
        state,
    };
    Router::new()
        .route("/", get(auth::home))
        .route("/signup", get(auth::signup_page).post(auth::signup))
        .route("/verify", get(auth::verify))
        .route("/login", get(auth::login_page).post(auth::login))
        .route("/logout", post(auth::logout))
        .route("/forgot", get(auth::forgot_page).post(auth::forgot))
        .route("/sso/start", get(sso_pages::start))
        .route("/sso/callback", get(sso_pages::callback))
        .route("/reset", get(auth::reset_page).post(auth::reset))
        .route("/console", get(console::home))
        .route("/noc", get(noc_pages::fleet))
        .route("/noc/events", get(noc_pages::events))
        .route("/noc/hosts/{id}", get(noc_pages::host))
        .route("/noc/hosts/{id}/events", get(noc_pages::host_events))
        .route("/noc/hosts/{id}/confirm", get(noc_pages::confirm))
        .route("/noc/hosts/{id}/action", post(noc_pages::act))
        .route("/partner", get(partner_pages::home))
        .route("/partner/customers", post(partner_pages::create_customer))
        .route("/partner/hosts/{id}", post(partner_pages::host_state))
        .route("/status", get(status_pages::page))
        .route("/status/feed.json", get(status_pages::json_feed))
        .route("/status/feed.atom", get(status_pages::atom_feed))
        .route("/play", get(play_pages::home))
        .route(
            "/play/join",
            get(share_pages::join_page).post(share_pages::join),
        )
        .route("/play/join/{code}", get(share_pages::join_link))
        .route("/play/{org}", get(play_pages::household))
        .route("/play/{org}/sessions/{id}/share", post(share_pages::invite))
        .route(
            "/play/{org}/sessions/{id}/share/end",
            post(share_pages::end),
        )
        .route(
            "/play/{org}/share-play/{profile}/connect",
            post(share_pages::connect),
        )
        .route(
            "/play/{org}/share-play/{profile}/leave",
            post(share_pages::leave),
        )
        .route("/play/{org}/profiles", post(play_pages::add_profile))
        .route("/play/{org}/pin", post(play_pages::set_pin))
        .route("/play/{org}/plan", post(play_pages::take_plan))
        .route("/play/{org}/hour-pack", post(play_pages::buy_pack))
        .route("/play/{org}/sessions/{id}", get(play_pages::session))
        .route("/play/{org}/sessions/{id}/end", post(play_pages::end))
        .route(
            "/play/{org}/sessions/{id}/events",
            get(play_pages::session_events),
        )
        .route(
            "/play/{org}/sessions/{id}/connect",
            post(play_pages::connect),
        )
        .route("/play/{org}/{profile}", get(play_pages::library))
        .route("/play/{org}/{profile}/launch", post(play_pages::launch))
        .route("/play/{org}/{profile}/unlock", post(play_pages::unlock))
        .route("/play/{org}/{profile}/ask", post(play_pages::ask))
        .route("/play/{org}/requests/{id}", post(play_pages::decide))
        .route("/console/projects", post(console::create_project))
        .route("/console/projects/{project}", get(console::project))
        .route(
            "/console/projects/{project}/delete",
            get(console::confirm_delete_project).post(console::delete_project),
        )
        .route(
            "/console/projects/{project}/instances",
            post(console::create_instance),
        )
        .route(
            "/console/projects/{project}/instances/events",
            get(console::instance_events),
        )
        .route(
            "/console/projects/{project}/instances/{id}",
            get(console::instance),
        )
        .route(
            "/console/projects/{project}/instances/{id}/delete",
            get(console::confirm_delete).post(console::delete_instance),
        )
        .route(
            "/console/projects/{project}/keys",
            get(console::keys).post(console::create_key),
        )
        .route(
            "/console/projects/{project}/keys/{key}/revoke",
            post(console::revoke_key),
        )
        .route(
            "/console/projects/{project}/quotas",
            get(contract::quotas).post(contract::ask),
        )
        .route("/console/orgs/{id}/audit", get(contract::audit))
        .route("/console/orgs/{id}/billing", get(billing_pages::billing))
        .route("/console/orgs/{id}/card", post(billing_pages::save_card))
        .route("/console/orgs/{id}/top-up", post(billing_pages::top_up))
        .route("/console/orgs/{id}/plan", post(billing_pages::set_plan))
        .route(
            "/console/orgs/{id}/budget",
            post(billing_pages::save_budget),
        )
        .route(
            "/console/orgs/{id}/invoices/{invoice}/pdf",
            get(billing_pages::invoice_pdf),
        )
        .route(
            "/console/projects/{project}/networks",
            get(network_pages::networks).post(network_pages::create_network),
        )
        .route(
            "/console/projects/{project}/networks/{id}/delete",
            post(network_pages::delete_network),
        )
        .route(
            "/console/projects/{project}/networks/floating",
            post(network_pages::take_floating),
        )
        .route(
            "/console/projects/{project}/networks/floating/{id}/assign",
            post(network_pages::assign_floating),
        )
        .route(
            "/console/projects/{project}/networks/floating/{id}/unassign",
            post(network_pages::unassign_floating),
        )
        .route(
            "/console/projects/{project}/networks/floating/{id}/delete",
            post(network_pages::delete_floating),
        )
        .route(
            "/console/projects/{project}/networks/floating/{id}/rdns",
            post(network_pages::reverse_dns),
        )
        .route(
            "/console/projects/{project}/firewalls",
            get(network_pages::firewalls).post(network_pages::create_firewall),
        )
        .route(
            "/console/projects/{project}/firewalls/{id}",
            get(network_pages::firewall),
        )
        .route(
            "/console/projects/{project}/firewalls/{id}/rules",
            post(network_pages::set_rules),
        )
        .route(
            "/console/projects/{project}/firewalls/{id}/attach",
            post(network_pages::attach),
        )
        .route(
            "/console/projects/{project}/firewalls/{id}/detach/{instance}",
            post(network_pages::detach),
        )
        .route(
            "/console/projects/{project}/firewalls/{id}/delete",
            post(network_pages::delete_firewall),
        )
        .route(
            "/console/projects/{project}/webhooks",
            get(webhook_pages::list).post(webhook_pages::create),
        )
        .route(
            "/console/projects/{project}/webhooks/{id}",
            get(webhook_pages::endpoint),
        )
        .route(
            "/console/projects/{project}/webhooks/{id}/delete",
            post(webhook_pages::delete),
        )
        .route(
            "/console/projects/{project}/webhooks/{id}/test",
            get(webhook_pages::back_to_endpoint).post(webhook_pages::test),
        )
        .route(
            "/console/projects/{project}/webhooks/{id}/resend/{event}",
            post(webhook_pages::resend),
        )
        .route("/console/account", get(account::account))
        .route("/console/account/totp", post(account::totp_enrol))
        .route("/console/account/totp/confirm", post(account::totp_confirm))
        .route("/console/account/totp/disable", post(account::totp_disable))
        .route("/console/account/password", post(account::password))
        .route(
            "/console/account/sessions/{id}/end",
            post(account::end_session),
        )
        .route(
            "/console/account/logout-everywhere",
            post(account::logout_everywhere),
        )
        .route("/invite", get(account::accept_invitation))
        .route("/console/orgs/{id}", get(account::organisation))
        .route("/console/orgs/{id}/members", post(account::invite))
        .route("/console/orgs/{id}/settings", post(account::settings))
        .route("/console/orgs/{id}/sso", post(account::sso))
        .route("/console/orgs/{id}/sso/off", post(account::sso_off))
        .route("/assets/{name}", get(layout::asset))
        .layer(axum::middleware::from_fn(layout::layer))
        .with_state(web)
}

//! The HTTP API (`/v1/...`), served by axum.
//!
//! Handlers decode the request, call one function on the cluster, and encode the answer;
//! every error is a [`Problem`]. The handlers live in their domain folders
//! (`instances/api.rs`, …) and share [`context`]: the state they reach, the extractors. [`router`] builds the whole API from an [`ApiState`], so tests
//! can drive it without a socket.

pub mod audit;
pub(crate) mod cluster;
pub mod context;
pub mod limits;
pub mod metrics;
pub mod openapi;
pub mod pagination;
pub mod problem;
pub mod request;
pub mod throttle;
pub mod validate;

use axum::http::{StatusCode, header};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use vmcloud_proto::BuildInfo;

pub use context::ApiState;
pub use problem::Problem;

use crate::catalog::Catalog;
use crate::instances::api as instances;
use crate::jobs::api as jobs;
use crate::join::api as join_tokens;
use crate::nodes::api as nodes;
use crate::quotas::api as quotas;
use crate::reservations::api as reservations;
use crate::sessions::api as sessions;
use crate::tenancy::api as projects;
use crate::tenancy::identity_api as identity;
use crate::tenancy::invitations_api as invitations;
use crate::tenancy::mfa_api as mfa;
use crate::tenancy::org_api as orgs;
use crate::tenancy::project_members_api as project_members;
use crate::tenancy::reset_api as reset;
use crate::tenancy::sso_api as sso;
use crate::webhooks::api as webhooks;

pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics))
        .route("/v1/version", get(version))
        .route("/v1/openapi.json", get(openapi::serve))
        .route("/v1/catalog", get(catalog))
        .route(
            "/v1/instances",
            get(instances::list).post(instances::create),
        )
        .route(
            "/v1/instances/{id}",
            get(instances::get).delete(instances::delete),
        )
        .route(
            "/v1/reservations",
            get(reservations::list).post(reservations::create),
        )
        .route("/v1/reservations/{id}", get(reservations::get))
        .route("/v1/jobs", get(jobs::list).post(jobs::submit))
        .route("/v1/jobs/{id}", get(jobs::get).delete(jobs::cancel))
        .route("/v1/sessions", get(sessions::list).post(sessions::launch))
        .route(
            "/v1/sessions/{id}",
            get(sessions::get).delete(sessions::end),
        )
        .route("/v1/signup", post(identity::sign_up))
        .route("/v1/verify-email", get(identity::verify_email))
        .route("/v1/login", post(identity::login))
        .route("/v1/logout", post(identity::logout))
        .route("/v1/logout-everywhere", post(identity::logout_everywhere))
        .route("/v1/password", post(identity::change_password))
        .route("/v1/password-reset", post(reset::request))
        .route("/v1/password-reset/confirm", post(reset::confirm))
        .route("/v1/me", get(identity::me))
        .route("/v1/me/totp", post(mfa::enrol).delete(mfa::disable))
        .route("/v1/me/totp/confirm", post(mfa::confirm))
        .route("/v1/me/sessions", get(identity::sessions))
        .route(
            "/v1/me/sessions/{id}",
            axum::routing::delete(identity::end_session),
        )
        .route("/v1/organisations", get(orgs::list).post(orgs::create))
        .route("/v1/organisations/{id}", get(orgs::get).patch(orgs::update))
        .route("/v1/organisations/{id}/members", post(orgs::set_member))
        .route(
            "/v1/organisations/{id}/sso",
            axum::routing::put(sso::put_config).delete(sso::delete_config),
        )
        .route(
            "/v1/organisations/{id}/rate-limit",
            axum::routing::put(orgs::set_rate_limit),
        )
        .route("/v1/invitations/accept", post(invitations::accept))
        .route("/v1/sso/start", get(sso::start))
        .route("/v1/sso/callback", get(sso::callback))
        .route(
            "/v1/organisations/{id}/members/{user}",
            axum::routing::delete(orgs::remove_member),
        )
        .route("/v1/projects", get(projects::list).post(projects::create))
        .route(
            "/v1/projects/{id}",
            get(projects::get)
                .patch(projects::update)
                .delete(projects::delete),
        )
        .route(
            "/v1/projects/{id}/members",
            get(project_members::list).post(project_members::set),
        )
        .route(
            "/v1/projects/{id}/members/{user}",
            axum::routing::delete(project_members::remove),
        )
        .route(
            "/v1/projects/{id}/keys",
            get(projects::list_keys).post(projects::create_key),
        )
        .route(
            "/v1/projects/{id}/keys/{key}",
            axum::routing::delete(projects::revoke_key),
        )
        .route(
            "/v1/join-tokens",
            get(join_tokens::list).post(join_tokens::create),
        )
        .route("/v1/audit-events", get(crate::audit::api::list))
        .route(
            "/v1/webhook-endpoints",
            get(webhooks::list).post(webhooks::create),
        )
        .route(
            "/v1/webhook-endpoints/{id}",
            get(webhooks::get).delete(webhooks::delete),
        )
        .route("/v1/webhook-endpoints/{id}/test", post(webhooks::test))
        .route(
            "/v1/webhook-endpoints/{id}/deliveries",
            get(webhooks::deliveries),
        )
        .route(
            "/v1/webhook-endpoints/{id}/deliveries/{event}/resend",
            post(webhooks::resend),
        )
        .route(
            "/v1/networks",
            get(crate::networks::api::list).post(crate::networks::api::create),
        )
        .route(
            "/v1/networks/{id}",
            get(crate::networks::api::get).delete(crate::networks::api::delete),
        )
        .route(
            "/v1/firewalls",
            get(crate::firewalls::api::list).post(crate::firewalls::api::create),
        )
        .route(
            "/v1/firewalls/{id}",
            get(crate::firewalls::api::get).delete(crate::firewalls::api::delete),
        )
        .route(
            "/v1/firewalls/{id}/rules",
            axum::routing::put(crate::firewalls::api::set_rules),
        )
        .route(
            "/v1/firewalls/{id}/attach",
            post(crate::firewalls::api::attach),
        )
        .route(
            "/v1/firewalls/{id}/detach",
            post(crate::firewalls::api::detach),
        )
        .route(
            "/v1/floating-ips",
            get(crate::public_ips::api::list).post(crate::public_ips::api::create),
        )
        .route(
            "/v1/floating-ips/{id}",
            get(crate::public_ips::api::get).delete(crate::public_ips::api::delete),
        )
        .route(
            "/v1/floating-ips/{id}/assign",
            post(crate::public_ips::api::assign),
        )
        .route(
            "/v1/floating-ips/{id}/unassign",
            post(crate::public_ips::api::unassign),
        )
        .route(
            "/v1/reverse-dns/{address}",
            axum::routing::put(crate::public_ips::api::set_reverse_dns),
        )
        .route("/v1/usage", get(crate::billing::api::usage))
        .route("/v1/billing/forecast", get(crate::billing::api::forecast))
        .route("/v1/invoices", get(crate::billing::api::list_invoices))
        .route("/v1/invoices/{id}", get(crate::billing::api::get_invoice))
        .route(
            "/v1/invoices/{id}/pdf",
            get(crate::billing::api::invoice_pdf),
        )
        .route(
            "/v1/billing/journal",
            get(crate::billing::staff_api::journal),
        )
        .route(
            "/v1/invoices/{id}/payments",
            post(crate::billing::staff_api::record_payment),
        )
        .route(
            "/v1/invoices/{id}/void",
            post(crate::billing::staff_api::void),
        )
        .route("/v1/credits", get(crate::billing::api::credits))
        .route(
            "/v1/billing/payment-method",
            get(crate::billing::payment_api::get).post(crate::billing::payment_api::set),
        )
        .route(
            "/v1/billing/coupons",
            get(crate::billing::staff_api::list_coupons)
                .post(crate::billing::staff_api::create_coupon),
        )
        .route(
            "/v1/billing/top-ups",
            get(crate::billing::prepaid::get).post(crate::billing::prepaid::top_up),
        )
        .route("/v1/titles", get(crate::gaming::api::titles))
        .route("/v1/status", get(crate::status::api::status))
        .route("/v1/noc/fleet", get(crate::nodes::noc_api::fleet))
        .route(
            "/v1/nodes/{id}/workloads",
            get(crate::nodes::noc_api::workloads),
        )
        .route("/v1/brand", get(crate::partners::api::brand))
        .route(
            "/v1/partners",
            get(crate::partners::api::list).post(crate::partners::api::create),
        )
        .route(
            "/v1/partners/{id}",
            get(crate::partners::api::get).patch(crate::partners::api::update),
        )
        .route(
            "/v1/partners/{id}/customers",
            get(crate::partners::api::customers).post(crate::partners::api::create_customer),
        )
        .route("/v1/partners/{id}/pop", get(crate::partners::api::pop))
        .route(
            "/v1/partners/{id}/licence",
            get(crate::partners::licences_api::get_licence)
                .put(crate::partners::licences_api::set_licence),
        )
        .route(
            "/v1/partners/{id}/sites",
            get(crate::partners::licences_api::sites),
        )
        .route(
            "/v1/partners/{id}/sites/{site}",
            put(crate::partners::licences_api::put_site)
                .delete(crate::partners::licences_api::delete_site),
        )
        .route(
            "/v1/partners/{id}/statements/{period}",
            get(crate::partners::licences_api::get_statement),
        )
        .route(
            "/v1/organisations/{id}/support-access",
            post(crate::partners::api::support_access),
        )
        .route("/v1/incidents", post(crate::status::api::declare))
        .route("/v1/incidents/{id}", get(crate::status::api::get))
        .route(
            "/v1/incidents/{id}/updates",
            post(crate::status::api::update),
        )
        .route(
            "/v1/billing/hour-packs",
            post(crate::billing::hour_packs::buy),
        )
        .route("/v1/warm-pools", get(crate::gaming::warm_api::list))
        .route(
            "/v1/sessions/{id}/connection",
            post(crate::sessions::api::connection),
        )
        .route("/v1/stream/redeem", post(crate::sessions::api::redeem))
        .route(
            "/v1/sessions/{id}/share-play",
            post(crate::gaming::share_api::invite).delete(crate::gaming::share_api::end),
        )
        .route(
            "/v1/households/{id}/share-play",
            get(crate::gaming::share_api::list).post(crate::gaming::share_api::join),
        )
        .route(
            "/v1/households/{id}/share-play/{profile}",
            axum::routing::delete(crate::gaming::share_api::leave),
        )
        .route(
            "/v1/households/{id}/share-play/{profile}/connection",
            post(crate::gaming::share_api::connection),
        )
        .route("/v1/households/{id}", get(crate::gaming::api::get))
        .route(
            "/v1/households/{id}/profiles",
            post(crate::gaming::api::create_profile),
        )
        .route(
            "/v1/households/{id}/profiles/{profile}",
            axum::routing::patch(crate::gaming::api::update_profile)
                .delete(crate::gaming::api::delete_profile),
        )
        .route(
            "/v1/households/{id}/pin",
            axum::routing::put(crate::gaming::api::set_pin),
        )
        .route(
            "/v1/households/{id}/unlock",
            post(crate::gaming::api::unlock),
        )
        .route(
            "/v1/households/{id}/library",
            get(crate::gaming::api::library),
        )
        .route(
            "/v1/households/{id}/requests",
            post(crate::gaming::api::ask),
        )
        .route(
            "/v1/households/{id}/requests/{request}",
            post(crate::gaming::api::decide),
        )
        .route(
            "/v1/households/{id}/entitlements",
            post(crate::gaming::api::grant),
        )
        .route(
            "/v1/households/{id}/entitlements/{entitlement}",
            axum::routing::delete(crate::gaming::api::revoke),
        )
        .route(
            "/v1/households/{id}/launch",
            post(crate::gaming::api::launch),
        )
        .route(
            "/v1/billing/receivables",
            get(crate::billing::staff_api::receivables),
        )
        .route(
            "/v1/billing/setup-intents",
            post(crate::billing::payment_api::setup_intent),
        )
        .route(
            "/v1/billing/plan",
            get(crate::billing::plans::get)
                .put(crate::billing::plans::put)
                .delete(crate::billing::plans::cancel),
        )
        .route(
            "/v1/billing/redeem",
            post(crate::billing::payment_api::redeem),
        )
        .route(
            "/v1/billing/budget-alerts",
            get(crate::billing::payment_api::get_budget)
                .put(crate::billing::payment_api::set_budget),
        )
        .route(
            "/v1/stripe/webhook",
            post(crate::billing::payment_api::webhook),
        )
        .route(
            "/v1/organisations/{id}/credits",
            post(crate::billing::staff_api::grant_credit),
        )
        .route("/v1/billing/runs", post(crate::billing::staff_api::run))
        .route(
            "/v1/billing/runs/{id}",
            get(crate::billing::staff_api::get_run),
        )
        .route(
            "/v1/billing/runs/{id}/finalize",
            post(crate::billing::staff_api::finalize),
        )
        .route(
            "/v1/billing/preview",
            get(crate::billing::staff_api::preview),
        )
        .route(
            "/v1/test-clock",
            post(crate::billing::staff_api::advance_clock),
        )
        .route("/v1/quotas", get(quotas::get))
        .route(
            "/v1/quota-requests",
            get(quotas::list).post(quotas::request),
        )
        .route("/v1/quota-requests/{id}/approve", post(quotas::approve))
        .route("/v1/quota-requests/{id}/decline", post(quotas::decline))
        .route("/v1/projects/{id}/quotas", axum::routing::put(quotas::set))
        .route("/v1/nodes", get(nodes::list))
        .route("/v1/nodes/{id}", get(nodes::get).patch(nodes::patch))
        .route("/v1/cluster", get(cluster::status))
        .route("/v1/cluster/members", axum::routing::post(cluster::join))
        .route(
            "/v1/cluster/members/{id}",
            axum::routing::delete(cluster::leave),
        )
        .route(
            "/v1/cluster/transfer-leader",
            axum::routing::post(cluster::transfer_leader),
        )
        .fallback(|| async { Problem::not_found("no such endpoint; see docs/api.md for the API") })
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            throttle::per_principal,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            audit::refusals,
        ))
        .layer(axum::middleware::from_fn(request::middleware))
        .layer(axum::middleware::from_fn_with_state(
            state.api_metrics.clone(),
            metrics::track,
        ))
        .with_state(state)
}

/// Prometheus metrics: OpenMetrics text to a scraper that asks for it (Prometheus does), the
/// Prometheus text format (0.0.4) otherwise (`curl`, `promtool check metrics`).
async fn metrics(
    axum::extract::State(s): axum::extract::State<ApiState>,
    headers: axum::http::HeaderMap,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let mut text = String::new();
    if prometheus_client::encoding::text::encode(&mut text, &s.metrics).is_err() {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    let openmetrics = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/openmetrics-text"));
    if openmetrics {
        (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response()
    } else {
        (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            metrics::prometheus_text(&text),
        )
            .into_response()
    }
}

async fn version(axum::extract::State(s): axum::extract::State<ApiState>) -> Json<BuildInfo> {
    Json(s.build)
}

async fn catalog(axum::extract::State(s): axum::extract::State<ApiState>) -> Json<Catalog> {
    Json((*s.catalog).clone())
}

//! The OpenAPI 3.1 document of this API (`GET /v1/openapi.json`, `vmcloud api spec`).
//!
//! Generated from the code: every request and response body's schema is derived from the Rust
//! type the handler decodes or encodes (`utoipa::ToSchema`), every query string's parameters
//! from its query type (`utoipa::IntoParams`), and the operations from [`OPERATIONS`], one
//! entry per route of [`crate::api::router`] — a test fails when a route exists that the
//! document lacks, or the reverse, and when a problem type the code answers is missing from
//! [`PROBLEM_KINDS`].

use axum::Json;
use serde_json::{Value, json};
use utoipa::openapi::path::{HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::tag::TagBuilder;
use utoipa::openapi::{
    ContentBuilder, InfoBuilder, OpenApi as Document, Ref, Required, ResponseBuilder,
};
use utoipa::{IntoParams, OpenApi};

use crate::api::context::ReadOptions;
use crate::api::pagination::ListQuery;

/// Who may call an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// Anyone (the proof, if any, is in the request).
    Public,
    /// An API key or a login token (`Authorization: Bearer`, or the session cookie).
    Bearer,
    /// An operator's key or login.
    Operator,
}

/// The query string an operation reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Query {
    None,
    Read,
    List,
    Audit,
    Quota,
    Verify,
    SsoStart,
    SsoCallback,
    Usage,
    Invoices,
    Preview,
    Journal,
    Receivables,
    Library,
    Statement,
}

/// One operation: a method on a path.
#[derive(Debug, Clone, Copy)]
pub struct Op {
    /// `METHOD /path`.
    pub route: &'static str,
    pub tag: &'static str,
    pub summary: &'static str,
    pub auth: Auth,
    pub query: Query,
    /// The JSON request body's schema.
    pub body: Option<&'static str>,
    /// The success status and its JSON body's schema (`None`: no body, or not JSON).
    pub ok: (u16, Option<&'static str>),
}

const fn op(
    route: &'static str,
    tag: &'static str,
    summary: &'static str,
    auth: Auth,
    query: Query,
    body: Option<&'static str>,
    ok: (u16, Option<&'static str>),
) -> Op {
    Op {
        route,
        tag,
        summary,
        auth,
        query,
        body,
        ok,
    }
}

impl Op {
    pub fn method(&self) -> &'static str {
        self.route.split_once(' ').map_or("GET", |(m, _)| m)
    }

    pub fn path(&self) -> &'static str {
        self.route.split_once(' ').map_or(self.route, |(_, p)| p)
    }
}

use Auth::{Bearer, Operator as Ops, Public};
use Query as Q;

/// Every operation of the API.
#[rustfmt::skip]
pub const OPERATIONS: &[Op] = &[
    op("GET /healthz", "service", "Liveness probe: `ok`", Public, Q::None, None, (200, None)),
    op("GET /metrics", "service", "Prometheus metrics (OpenMetrics text)", Public, Q::None, None, (200, None)),
    op("GET /v1/version", "service", "The build serving the request", Public, Q::None, None, (200, None)),
    op("GET /v1/openapi.json", "service", "This document", Public, Q::None, None, (200, None)),
    op("GET /v1/catalog", "service", "Regions, flavors and images", Public, Q::None, None, (200, Some("Catalog"))),
    op("GET /v1/instances", "instances", "List the project's instances (paged)", Bearer, Q::List, None, (200, Some("InstanceList"))),
    op("POST /v1/instances", "instances", "Create an instance", Bearer, Q::None, Some("CreateInstanceRequest"), (201, Some("InstanceView"))),
    op("GET /v1/instances/{id}", "instances", "Get an instance", Bearer, Q::Read, None, (200, Some("InstanceView"))),
    op("DELETE /v1/instances/{id}", "instances", "Delete an instance (its host stops and removes it)", Bearer, Q::None, None, (202, Some("InstanceView"))),
    op("GET /v1/reservations", "reservations", "List the project's reservations (paged)", Bearer, Q::List, None, (200, Some("ReservationList"))),
    op("POST /v1/reservations", "reservations", "Reserve capacity", Bearer, Q::None, Some("CreateReservationRequest"), (201, Some("ReservationView"))),
    op("GET /v1/reservations/{id}", "reservations", "Get a reservation", Bearer, Q::Read, None, (200, Some("ReservationView"))),
    op("GET /v1/jobs", "jobs", "List the project's AI batch jobs (paged)", Bearer, Q::List, None, (200, Some("JobList"))),
    op("POST /v1/jobs", "jobs", "Submit a job", Bearer, Q::None, Some("SubmitJobRequest"), (201, Some("JobView"))),
    op("GET /v1/jobs/{id}", "jobs", "Get a job", Bearer, Q::Read, None, (200, Some("JobView"))),
    op("DELETE /v1/jobs/{id}", "jobs", "Cancel a job", Bearer, Q::None, None, (202, Some("JobView"))),
    op("GET /v1/sessions", "sessions", "List the project's game sessions (paged)", Bearer, Q::List, None, (200, Some("SessionList"))),
    op("POST /v1/sessions", "sessions", "Launch a game session", Bearer, Q::None, Some("LaunchRequest"), (201, Some("SessionView"))),
    op("GET /v1/sessions/{id}", "sessions", "Get a game session", Bearer, Q::Read, None, (200, Some("SessionView"))),
    op("DELETE /v1/sessions/{id}", "sessions", "End a game session", Bearer, Q::None, None, (202, Some("SessionView"))),
    op("POST /v1/sessions/{id}/connection", "sessions", "Connection details of a running session: its host, the streaming port and a one-time token valid 60 s", Bearer, Q::None, None, (201, Some("ConnectionView"))),
    op("POST /v1/sessions/{id}/share-play", "sessions", "Share-Play: invite a friend to the running session — a code and a link for one guest, valid 10 minutes (a new invite replaces an unused one)", Bearer, Q::None, None, (201, Some("InviteView"))),
    op("DELETE /v1/sessions/{id}/share-play", "sessions", "Share-Play: the host ends the friend's play (and any open invite); the session goes on", Bearer, Q::None, None, (204, None)),
    op("POST /v1/stream/redeem", "sessions", "The streaming server takes a connection token: once, within its 60 s (404 unknown, 409 used or late)", Public, Q::None, Some("RedeemRequest"), (200, Some("RedeemView"))),
    op("POST /v1/signup", "identity", "Sign up: a user, a trial organisation, a project", Public, Q::None, Some("SignUpRequest"), (201, Some("SignUpView"))),
    op("GET /v1/verify-email", "identity", "Confirm an email address (the mailed link)", Public, Q::Verify, None, (200, None)),
    op("POST /v1/login", "identity", "Log in: a login token and a session cookie", Public, Q::None, Some("LoginRequest"), (200, Some("LoginView"))),
    op("POST /v1/logout", "identity", "End this login session", Bearer, Q::None, None, (204, None)),
    op("POST /v1/logout-everywhere", "identity", "End every login session of the user", Bearer, Q::None, None, (204, None)),
    op("POST /v1/password", "identity", "Change the password (ends other sessions)", Bearer, Q::None, Some("PasswordRequest"), (204, None)),
    op("POST /v1/password-reset", "identity", "Mail a password reset link", Public, Q::None, Some("ResetRequest"), (202, None)),
    op("POST /v1/password-reset/confirm", "identity", "Set a new password from a reset link", Public, Q::None, Some("ConfirmRequest"), (200, None)),
    op("GET /v1/me", "identity", "Who the caller is", Bearer, Q::None, None, (200, Some("MeView"))),
    op("POST /v1/me/totp", "identity", "Start enrolling an authenticator app (TOTP)", Bearer, Q::None, None, (200, Some("EnrolmentView"))),
    op("DELETE /v1/me/totp", "identity", "Turn two-step verification off", Bearer, Q::None, None, (204, None)),
    op("POST /v1/me/totp/confirm", "identity", "Confirm TOTP with a first code: recovery codes", Bearer, Q::None, Some("CodeRequest"), (200, Some("RecoveryView"))),
    op("GET /v1/me/sessions", "identity", "The user's login sessions (paged)", Bearer, Q::List, None, (200, Some("LoginSessionList"))),
    op("DELETE /v1/me/sessions/{id}", "identity", "End one of the user's login sessions", Bearer, Q::None, None, (204, None)),
    op("GET /v1/organisations", "organisations", "The organisations the caller may see (paged)", Bearer, Q::List, None, (200, Some("OrganisationList"))),
    op("POST /v1/organisations", "organisations", "Create an organisation (the caller owns it)", Bearer, Q::None, Some("OrganisationRequest"), (201, Some("OrganisationView"))),
    op("GET /v1/organisations/{id}", "organisations", "Get an organisation with its members", Bearer, Q::Read, None, (200, Some("OrganisationView"))),
    op("PATCH /v1/organisations/{id}", "organisations", "Change an organisation's settings", Bearer, Q::None, Some("UpdateOrganisationRequest"), (200, Some("OrganisationView"))),
    op("POST /v1/organisations/{id}/members", "organisations", "Add a member, change a role, or invite by email", Bearer, Q::None, Some("MemberRequest"), (200, Some("MemberView"))),
    op("DELETE /v1/organisations/{id}/members/{user}", "organisations", "Remove a member", Bearer, Q::None, None, (204, None)),
    op("PUT /v1/organisations/{id}/sso", "organisations", "Set up single sign-on (OpenID Connect)", Bearer, Q::None, Some("SsoRequest"), (200, Some("SsoView"))),
    op("DELETE /v1/organisations/{id}/sso", "organisations", "Turn single sign-on off", Bearer, Q::None, None, (204, None)),
    op("PUT /v1/organisations/{id}/rate-limit", "organisations", "Operators: an organisation's API requests an hour", Ops, Q::None, Some("RateLimitRequest"), (200, Some("OrganisationView"))),
    op("POST /v1/invitations/accept", "organisations", "Accept an invitation (logged in with the invited address)", Bearer, Q::None, Some("AcceptRequest"), (200, None)),
    op("GET /v1/sso/start", "identity", "Start a single sign-on log-in (redirects to the provider)", Public, Q::SsoStart, None, (303, None)),
    op("GET /v1/sso/callback", "identity", "The provider's redirect back (authorization code)", Public, Q::SsoCallback, None, (303, None)),
    op("GET /v1/projects", "projects", "The projects the caller may see (paged)", Bearer, Q::List, None, (200, Some("ProjectList"))),
    op("POST /v1/projects", "projects", "Create a project in an organisation", Bearer, Q::None, Some("CreateProjectRequest"), (201, Some("ProjectView"))),
    op("GET /v1/projects/{id}", "projects", "Get a project", Bearer, Q::Read, None, (200, Some("ProjectView"))),
    op("PATCH /v1/projects/{id}", "projects", "Operators: a project's fair share and gaming tier", Ops, Q::None, Some("UpdateProjectRequest"), (200, Some("ProjectView"))),
    op("DELETE /v1/projects/{id}", "projects", "Delete an empty project (its keys go with it)", Bearer, Q::None, None, (204, None)),
    op("GET /v1/projects/{id}/members", "projects", "The project's members (paged)", Bearer, Q::List, None, (200, Some("ProjectMemberList"))),
    op("POST /v1/projects/{id}/members", "projects", "Give a user a role in the project", Bearer, Q::None, Some("ProjectMemberRequest"), (200, Some("ProjectMemberList"))),
    op("DELETE /v1/projects/{id}/members/{user}", "projects", "Take a user's project role away", Bearer, Q::None, None, (204, None)),
    op("GET /v1/projects/{id}/keys", "projects", "The project's API keys, never their secrets (paged)", Bearer, Q::List, None, (200, Some("KeyList"))),
    op("POST /v1/projects/{id}/keys", "projects", "Make an API key (its token is shown once)", Bearer, Q::None, Some("CreateKeyRequest"), (201, Some("KeyView"))),
    op("DELETE /v1/projects/{id}/keys/{key}", "projects", "Revoke an API key", Bearer, Q::None, None, (204, None)),
    op("PUT /v1/projects/{id}/quotas", "quotas", "Operators: set a project's limits in a region", Ops, Q::None, Some("SetQuotaBody"), (200, Some("QuotaView"))),
    op("GET /v1/quotas", "quotas", "The project's limits and usage per region", Bearer, Q::Quota, None, (200, Some("QuotaView"))),
    op("GET /v1/usage", "billing", "Usage and its cost in a month (default: this one, to now): by resource, with totals by project, flavor and region and the cost of each hour", Bearer, Q::Usage, None, (200, Some("UsageReport"))),
    op("GET /v1/billing/forecast", "billing", "This month so far and where it is heading, with the credit left", Bearer, Q::Usage, None, (200, Some("Forecast"))),
    op("GET /v1/invoices", "billing", "The organisation's invoices and credit notes, newest last (paged)", Bearer, Q::Invoices, None, (200, Some("InvoiceList"))),
    op("GET /v1/invoices/{id}", "billing", "An invoice or credit note with its lines and totals", Bearer, Q::Read, None, (200, Some("InvoiceView"))),
    op("GET /v1/invoices/{id}/pdf", "billing", "The invoice as PDF (application/pdf)", Bearer, Q::Read, None, (200, None)),
    op("GET /v1/billing/journal", "billing", "Billing staff: the double entries of the documents issued in a month, as CSV (text/csv)", Bearer, Q::Journal, None, (200, None)),
    op("POST /v1/invoices/{id}/payments", "billing", "Billing staff: record a payment received (a bank transfer)", Bearer, Q::None, Some("PaymentRequest"), (200, Some("InvoiceView"))),
    op("POST /v1/invoices/{id}/void", "billing", "Billing staff: void an open invoice, or issue a credit note for a paid one", Bearer, Q::None, Some("VoidRequest"), (200, Some("InvoiceView"))),
    op("GET /v1/billing/payment-method", "billing", "The organisation's saved card (what may be shown of it) and whether it is suspended", Bearer, Q::Usage, None, (200, Some("PaymentMethodView"))),
    op("POST /v1/billing/payment-method", "billing", "Save a card (a pm_… from Stripe's form, or a test card in test mode): lifts the trial's limits and charges what is open", Bearer, Q::None, Some("PaymentMethodRequest"), (200, Some("PaymentMethodView"))),
    op("GET /v1/warm-pools", "gaming", "Warm pools (operators): each pool's bounds, target, ready and booting VMs, boot time, and the last hour's launches served warm", Bearer, Q::Read, None, (200, Some("WarmPoolList"))),
    op("GET /v1/titles", "gaming", "The game catalog: each title's PEGI rating, GPU class, anti-cheat pool and publisher", Bearer, Q::None, None, (200, Some("TitleList"))),
    op("GET /v1/households/{id}", "gaming", "A household: its plan's fair use and hours this month, profiles, parental PIN, entitlements", Bearer, Q::Read, None, (200, Some("HouseholdView"))),
    op("POST /v1/households/{id}/profiles", "gaming", "The owner: add a profile (a kid with a birth year, daily minutes and allowed hours); six at most", Bearer, Q::None, Some("ProfileRequest"), (201, Some("ProfileView"))),
    op("PATCH /v1/households/{id}/profiles/{profile}", "gaming", "The owner: change a profile's name or a kid's rules", Bearer, Q::None, Some("ProfileUpdate"), (200, Some("ProfileView"))),
    op("DELETE /v1/households/{id}/profiles/{profile}", "gaming", "The owner: remove a profile (not while it plays)", Bearer, Q::None, None, (204, None)),
    op("PUT /v1/households/{id}/pin", "gaming", "The owner: set the parental PIN (4 to 8 digits, kept hashed) and the household's time zone", Bearer, Q::None, Some("PinRequest"), (200, Some("HouseholdView"))),
    op("POST /v1/households/{id}/unlock", "gaming", "With the parent's PIN: unlock a title above a kid's age rating for their next session (five wrong PINs lock it for 15 minutes)", Bearer, Q::None, Some("UnlockRequest"), (200, Some("UnlockView"))),
    op("POST /v1/households/{id}/requests", "gaming", "A kid asks a parent for a title above their rating (shown to the owner)", Bearer, Q::None, Some("AskRequest"), (201, Some("HouseholdView"))),
    op("POST /v1/households/{id}/requests/{request}", "gaming", "The owner approves (unlocked for the kid's next session) or declines a request", Bearer, Q::None, Some("DecideRequest"), (200, Some("HouseholdView"))),
    op("GET /v1/households/{id}/library", "gaming", "Every title and whether the profile may play it, and why not", Bearer, Q::Library, None, (200, Some("Library"))),
    op("POST /v1/households/{id}/entitlements", "gaming", "Operators: grant a title to the household or one profile (purchase, subscription, partner licence, trial with an end)", Bearer, Q::None, Some("EntitlementRequest"), (201, Some("HouseholdView"))),
    op("DELETE /v1/households/{id}/entitlements/{entitlement}", "gaming", "Operators: revoke an entitlement", Bearer, Q::None, None, (204, None)),
    op("POST /v1/households/{id}/launch", "gaming", "Launch a title as a profile: refused (403 with the reason and what to do) without it in the library, above a kid's age rating, outside a kid's hours, past their minutes today or the household's hours this month", Bearer, Q::None, Some("HouseholdLaunch"), (201, Some("SessionView"))),
    op("GET /v1/households/{id}/share-play", "gaming", "Share-Play: the household's profiles playing along in friends' sessions now", Bearer, Q::None, None, (200, Some("GuestList"))),
    op("POST /v1/households/{id}/share-play", "gaming", "Share-Play: a profile joins a friend's session with the code (same GPU, connection details at once, up to 60 minutes); refused for a code unknown, used or expired, a profile playing elsewhere, or a kid above their rating, outside their hours or past their minutes", Bearer, Q::None, Some("JoinRequest"), (201, Some("GuestView"))),
    op("DELETE /v1/households/{id}/share-play/{profile}", "gaming", "Share-Play: the guest leaves the friend's session", Bearer, Q::None, None, (204, None)),
    op("POST /v1/households/{id}/share-play/{profile}/connection", "gaming", "Share-Play: new connection details for the guest (a one-time token valid 60 s)", Bearer, Q::None, None, (201, Some("ConnectionView"))),
    op("POST /v1/billing/hour-packs", "billing", "A gaming household buys a pack of hours: added to this month's hours at once (what is left rolls over like the plan's, within its rollover), billed once on the next invoice", Bearer, Q::None, Some("PackRequest"), (201, Some("PackBought"))),
    op("GET /v1/noc/fleet", "nodes", "Operators (a person with two-step verification): the fleet per datacenter — hosts by state, GPUs by model and state with their tension, CPU and memory allocated and held, work waiting, silent datacenters — Raft's health, and the first 200 hosts matching `?region=`, `?state=` (or `suspect`), `?q=`", Bearer, Q::None, None, (200, Some("FleetView"))),
    op("GET /v1/nodes/{id}/workloads", "nodes", "Operators: what runs on a host and who it belongs to (organisations, customers, households, sessions, spot) — what a drain would touch", Bearer, Q::None, None, (200, Some("HostWorkloads"))),
    op("GET /v1/brand", "partners", "The brand of the host the request came to: a partner's (its name, logo, colours, support contacts, legal mentions) on its domains, VMCloud's elsewhere (public)", Public, Q::None, None, (200, Some("BrandView"))),
    op("GET /v1/partners", "partners", "White-label partners: every one for VMCloud's staff, the caller's own for a partner's staff", Bearer, Q::None, None, (200, Some("PartnerList"))),
    op("POST /v1/partners", "partners", "Operators: a partner, the organisation of its staff and its first admin (who has an account), its brand and domains", Bearer, Q::None, Some("CreatePartnerRequest"), (201, Some("PartnerView"))),
    op("GET /v1/partners/{id}", "partners", "A partner: brand, domains, POPs, customers counted", Bearer, Q::None, None, (200, Some("PartnerView"))),
    op("PATCH /v1/partners/{id}", "partners", "The partner's admins (or operators): replace its brand or its domains (a domain of another partner is refused)", Bearer, Q::None, Some("UpdatePartnerRequest"), (200, Some("PartnerView"))),
    op("GET /v1/partners/{id}/customers", "partners", "The partner's customers: counted for everyone who may see the partner, listed in full for its staff; VMCloud's staff see only those that opened support access", Bearer, Q::None, None, (200, Some("CustomerList"))),
    op("POST /v1/partners/{id}/customers", "partners", "The partner's admins: a customer organisation (company, person or household) with its default project; its owner is invited by a mail with the partner's name and portal", Bearer, Q::None, Some("CreateCustomerRequest"), (201, Some("CustomerRow"))),
    op("GET /v1/partners/{id}/pop", "partners", "The health of the partner's POPs: hosts by state, GPUs by model and state, work waiting, a silent site, its hosts and the game sessions on them — none of VMCloud's datacenters or another partner's", Bearer, Q::None, None, (200, Some("PopView"))),
    op("GET /v1/partners/{id}/licence", "partners", "The partner's licence terms: base fee and fee per monthly active user it pays, share of its customers' invoiced net it keeps", Bearer, Q::None, None, (200, Some("LicenceView"))),
    op("PUT /v1/partners/{id}/licence", "partners", "Operators: set a partner's licence terms", Bearer, Q::None, Some("LicenceView"), (200, Some("LicenceView"))),
    op("GET /v1/partners/{id}/sites", "partners", "The partner's licensed sites (schools, libraries): address ranges, seats and seats in use now", Bearer, Q::None, None, (200, Some("SiteList"))),
    op("PUT /v1/partners/{id}/sites/{site}", "partners", "The partner's admins: make or replace a site — its address ranges (overlapping no other site's) and seats; a launch by one of its customers from those ranges takes a seat, refused when all are used", Bearer, Q::None, Some("SiteRequest"), (200, Some("SiteView"))),
    op("DELETE /v1/partners/{id}/sites/{site}", "partners", "The partner's admins: remove a site (its running sessions go on)", Bearer, Q::None, None, (204, None)),
    op("GET /v1/partners/{id}/statements/{period}", "partners", "The partner's month: its customers' invoiced net and monthly active users, licence fees, the share each side keeps and the balance; `?format=csv` for a spreadsheet", Bearer, Q::Statement, None, (200, Some("Statement"))),
    op("POST /v1/organisations/{id}/support-access", "partners", "A partner's customer (its owners and admins, or the partner's admins) lets VMCloud's support see it for 1 to 720 hours (0 closes it), audited", Bearer, Q::None, Some("SupportAccessRequest"), (200, None)),
    op("GET /v1/status", "status", "The public status page: every region's services (the worse of the fleet's health and the incidents under way), incidents open, maintenance to come, the last 90 days", Public, Q::None, None, (200, Some("StatusView"))),
    op("POST /v1/incidents", "status", "Operators: declare an incident or a maintenance window on the status page", Bearer, Q::None, Some("IncidentRequest"), (201, Some("IncidentView"))),
    op("GET /v1/incidents/{id}", "status", "An incident of the status page, with its updates (public)", Public, Q::None, None, (200, Some("IncidentView"))),
    op("POST /v1/incidents/{id}/updates", "status", "Operators: an incident's next update (`resolved` or `completed` closes it)", Bearer, Q::None, Some("IncidentUpdateRequest"), (200, Some("IncidentView"))),
    op("GET /v1/billing/receivables", "billing", "Billing staff: what customers owe, aged (not due, 1-30, 31-60, 61-90, over 90 days late) per currency, and per organisation most overdue first", Bearer, Q::Receivables, None, (200, Some("Receivables"))),
    op("GET /v1/billing/coupons", "billing", "Billing staff: every coupon and how often it was redeemed", Bearer, Q::Read, None, (200, Some("CouponList"))),
    op("POST /v1/billing/coupons", "billing", "Billing staff: a coupon (percent or amount off; once, repeating or forever; a redemption limit; an expiry)", Bearer, Q::None, Some("CouponRequest"), (201, Some("CouponView"))),
    op("POST /v1/billing/setup-intents", "billing", "A SetupIntent for Stripe's card form: confirm it in the browser with Stripe.js, then save the card with POST /v1/billing/payment-method {setup_intent}", Bearer, Q::None, Some("SetupIntentRequest"), (201, Some("SetupIntentView"))),
    op("GET /v1/billing/plan", "billing", "The organisation's monthly plan and the plans on offer, priced in its currency", Bearer, Q::Usage, None, (200, Some("PlanView"))),
    op("PUT /v1/billing/plan", "billing", "Take or change the monthly plan: billed a month in advance; a change is prorated by the second on the next invoice", Bearer, Q::None, Some("PlanRequest"), (200, Some("PlanView"))),
    op("DELETE /v1/billing/plan", "billing", "Cancel the monthly plan: it runs to the end of this month (paid in advance), nothing after", Bearer, Q::Usage, None, (200, Some("PlanView"))),
    op("GET /v1/billing/top-ups", "billing", "The organisation's prepaid balance and its top-ups, newest first", Bearer, Q::Usage, None, (200, Some("PrepaidView"))),
    op("POST /v1/billing/top-ups", "billing", "Add to the prepaid balance: the saved card is charged now; billing staff record bank transfers (method bank-transfer, the bank's reference)", Bearer, Q::None, Some("TopUpRequest"), (201, Some("PrepaidView"))),
    op("POST /v1/billing/redeem", "billing", "Redeem a coupon for the organisation: its discount applies to the next invoices", Bearer, Q::None, Some("RedeemRequest"), (200, Some("RedeemedView"))),
    op("GET /v1/billing/budget-alerts", "billing", "The organisation's budget alerts and those crossed this month", Bearer, Q::Usage, None, (200, Some("BudgetView"))),
    op("PUT /v1/billing/budget-alerts", "billing", "Set the budget alerts: amounts of the month's cost that are mailed and sent as a webhook when crossed", Bearer, Q::None, Some("BudgetRequest"), (200, Some("BudgetView"))),
    op("POST /v1/stripe/webhook", "billing", "Stripe's events, verified by Stripe-Signature (300 s tolerance)", Public, Q::None, None, (200, Some("WebhookAnswer"))),
    op("GET /v1/credits", "billing", "The organisation's credits and what is left of each", Bearer, Q::Usage, None, (200, Some("CreditList"))),
    op("POST /v1/organisations/{id}/credits", "billing", "Billing staff: grant an organisation credit", Bearer, Q::None, Some("CreditRequest"), (201, Some("CreditView"))),
    op("POST /v1/billing/runs", "billing", "Billing staff: bill a month that has ended (drafts, finalized unless `draft`)", Bearer, Q::None, Some("RunRequest"), (201, Some("RunView"))),
    op("GET /v1/billing/runs/{id}", "billing", "Billing staff: a month's run and its invoices", Bearer, Q::Read, None, (200, Some("RunView"))),
    op("POST /v1/billing/runs/{id}/finalize", "billing", "Billing staff: number a run's drafts", Bearer, Q::None, Some("FinalizeRequest"), (200, Some("RunView"))),
    op("GET /v1/billing/preview", "billing", "Billing staff: the invoices a run of the month would make now, without making them", Bearer, Q::Preview, None, (200, Some("Preview"))),
    op("POST /v1/test-clock", "billing", "Operators: move a test cluster's clock forward (`--test-clock` only)", Ops, Q::None, Some("ClockRequest"), (200, Some("ClockView"))),
    op("GET /v1/quota-requests", "quotas", "Quota requests: the project's, or every project's for operators (paged)", Bearer, Q::List, None, (200, Some("QuotaRequestList"))),
    op("POST /v1/quota-requests", "quotas", "Ask for higher limits in a region", Bearer, Q::None, Some("QuotaRequestBody"), (201, Some("QuotaRequestView"))),
    op("POST /v1/quota-requests/{id}/approve", "quotas", "Operators: grant a quota request", Ops, Q::None, Some("DecisionBody"), (200, Some("QuotaRequestView"))),
    op("POST /v1/quota-requests/{id}/decline", "quotas", "Operators: decline a quota request", Ops, Q::None, Some("DecisionBody"), (200, Some("QuotaRequestView"))),
    op("GET /v1/audit-events", "audit", "The audit trail (hash-chained; paged)", Bearer, Q::Audit, None, (200, Some("AuditList"))),
    op("GET /v1/networks", "networks", "The project's private networks (paged; ?region=)", Bearer, Q::List, None, (200, Some("NetworkList"))),
    op("POST /v1/networks", "networks", "Make a private network (RFC 1918 subnet, /16 to /28; a VNI of its own)", Bearer, Q::None, Some("CreateNetworkRequest"), (201, Some("NetworkView"))),
    op("GET /v1/networks/{id}", "networks", "Get a private network", Bearer, Q::Read, None, (200, Some("NetworkView"))),
    op("DELETE /v1/networks/{id}", "networks", "Delete a private network (refused while instances are on it)", Bearer, Q::None, None, (204, None)),
    op("GET /v1/firewalls", "networks", "The project's firewalls (paged)", Bearer, Q::List, None, (200, Some("FirewallList"))),
    op("POST /v1/firewalls", "networks", "Make a firewall (allow rules; attached, inbound is denied but for them)", Bearer, Q::None, Some("CreateFirewallRequest"), (201, Some("FirewallView"))),
    op("GET /v1/firewalls/{id}", "networks", "Get a firewall", Bearer, Q::Read, None, (200, Some("FirewallView"))),
    op("DELETE /v1/firewalls/{id}", "networks", "Delete a firewall (refused while attached or named as a peer)", Bearer, Q::None, None, (204, None)),
    op("PUT /v1/firewalls/{id}/rules", "networks", "Replace a firewall's rules (applied at once by the hosts)", Bearer, Q::None, Some("FirewallRules"), (200, Some("FirewallView"))),
    op("POST /v1/firewalls/{id}/attach", "networks", "Attach a firewall to an instance", Bearer, Q::None, Some("AttachRequest"), (200, Some("FirewallView"))),
    op("POST /v1/firewalls/{id}/detach", "networks", "Detach a firewall from an instance", Bearer, Q::None, Some("AttachRequest"), (200, Some("FirewallView"))),
    op("GET /v1/floating-ips", "networks", "The project's floating IPs (paged; ?region=)", Bearer, Q::List, None, (200, Some("FloatingIpList"))),
    op("POST /v1/floating-ips", "networks", "Take a floating IP from a region's pools (optionally assigned at once)", Bearer, Q::None, Some("CreateFloatingIpRequest"), (201, Some("FloatingIpView"))),
    op("GET /v1/floating-ips/{id}", "networks", "Get a floating IP", Bearer, Q::Read, None, (200, Some("FloatingIpView"))),
    op("DELETE /v1/floating-ips/{id}", "networks", "Give a floating IP back", Bearer, Q::None, None, (204, None)),
    op("POST /v1/floating-ips/{id}/assign", "networks", "Assign (or move) a floating IP to an instance of its region", Bearer, Q::None, Some("AssignRequest"), (200, Some("FloatingIpView"))),
    op("POST /v1/floating-ips/{id}/unassign", "networks", "Unassign a floating IP (the project keeps it)", Bearer, Q::None, None, (200, Some("FloatingIpView"))),
    op("PUT /v1/reverse-dns/{address}", "networks", "Set the reverse DNS name of a public address the project holds", Bearer, Q::None, Some("ReverseDnsRequest"), (200, Some("ReverseDnsView"))),
    op("GET /v1/webhook-endpoints", "webhooks", "The project's webhook endpoints (paged)", Bearer, Q::List, None, (200, Some("EndpointList"))),
    op("POST /v1/webhook-endpoints", "webhooks", "Make a webhook endpoint (its signing secret is shown once)", Bearer, Q::None, Some("CreateEndpointRequest"), (201, Some("EndpointView"))),
    op("GET /v1/webhook-endpoints/{id}", "webhooks", "Get a webhook endpoint", Bearer, Q::Read, None, (200, Some("EndpointView"))),
    op("DELETE /v1/webhook-endpoints/{id}", "webhooks", "Delete a webhook endpoint", Bearer, Q::None, None, (204, None)),
    op("GET /v1/webhook-endpoints/{id}/deliveries", "webhooks", "An endpoint's delivery attempts, newest first, and what is queued (paged)", Bearer, Q::List, None, (200, Some("DeliveryList"))),
    op("POST /v1/webhook-endpoints/{id}/deliveries/{event}/resend", "webhooks", "Send a past event to the endpoint again, under its own webhook-id", Bearer, Q::None, None, (202, Some("ResendView"))),
    op("POST /v1/webhook-endpoints/{id}/test", "webhooks", "Send a signed webhook.test event now", Bearer, Q::None, None, (200, Some("TestDelivery"))),
    op("GET /v1/join-tokens", "fleet", "Operators: join tokens for new hosts (paged)", Ops, Q::List, None, (200, Some("TokenList"))),
    op("POST /v1/join-tokens", "fleet", "Operators: make a join token (shown once)", Ops, Q::None, Some("CreateTokenRequest"), (201, Some("TokenView"))),
    op("GET /v1/nodes", "fleet", "Operators: the hosts (paged; ?state=, ?region=, ?label=key=value)", Ops, Q::List, None, (200, Some("NodeList"))),
    op("GET /v1/nodes/{id}", "fleet", "Operators: a host", Ops, Q::Read, None, (200, Some("NodeView"))),
    op("PATCH /v1/nodes/{id}", "fleet", "Operators: cordon, drain, maintenance, uncordon; labels. A partner's admins: the state of its POPs' hosts", Ops, Q::None, Some("NodePatch"), (200, Some("NodeView"))),
    op("GET /v1/cluster", "fleet", "Operators: the scheduler replicas and Raft", Ops, Q::None, None, (200, Some("ClusterView"))),
    op("POST /v1/cluster/members", "fleet", "Operators: add a scheduler replica", Ops, Q::None, Some("JoinRequest"), (200, Some("ClusterView"))),
    op("DELETE /v1/cluster/members/{id}", "fleet", "Operators: remove a scheduler replica", Ops, Q::None, None, (200, Some("ClusterView"))),
    op("POST /v1/cluster/transfer-leader", "fleet", "Operators: hand leadership to another replica", Ops, Q::None, Some("TransferRequest"), (204, None)),
];

/// Every problem type the API answers (`urn:vmcloud:problem:<kind>`), with its status.
#[rustfmt::skip]
pub const PROBLEM_KINDS: &[(&str, u16)] = &[
    ("body-too-large", 413), ("conflict", 409), ("deadline-for-drain", 422),
    ("email-not-verified", 403), ("email-taken", 409), ("forbidden", 403),
    ("idempotency-key-replayed", 409), ("idempotency-key-reused", 422),
    ("insufficient-capacity", 409), ("internal", 500), ("invalid", 422), ("invalid-address", 422),
    ("invalid-body", 400), ("invalid-count", 422), ("invalid-cursor", 400), ("invalid-email", 422),
    ("invalid-expiry", 422), ("invalid-idempotency-key", 400), ("invalid-invitation", 422),
    ("invalid-label", 422), ("invalid-latency", 422), ("invalid-link", 422),
    ("invalid-firewall-rule", 422), ("public-ips-exhausted", 409), ("invalid-members", 422), ("invalid-name", 422), ("invalid-network", 422), ("invalid-node-name", 422),
    ("invalid-notice", 422), ("invalid-period", 422), ("invalid-credit", 422), ("billing-staff-only", 403), ("no-test-clock", 409), ("org-required", 400), ("card-declined", 402), ("payment-processor-error", 502), ("no-payment-processor", 409), ("no-payment-method", 409), ("invalid-top-up", 422), ("invalid-plan", 422), ("invalid-pack", 422), ("invalid-incident", 422), ("invalid-partner", 422), ("invalid-support-access", 422), ("no-card-form", 409), ("not-a-household", 409), ("invalid-pin", 422), ("no-pin", 409), ("wrong-pin", 403), ("pin-locked", 429), ("unknown-title", 422), ("invalid-entitlement", 422), ("not-your-profile", 403), ("invalid-share-code", 422), ("no-entitlement", 403), ("age-rating", 403), ("no-hours-left", 403), ("daily-limit", 403), ("outside-allowed-hours", 403), ("site-seats-used", 409), ("invalid-site", 422), ("invalid-licence", 422), ("pop-reserved", 403), ("invalid-payment-method", 422), ("invalid-signature", 400), ("invalid-coupon", 422), ("suspended", 402), ("invalid-organisation", 422), ("invalid-query", 400), ("invalid-rate-limit", 422),
    ("invalid-quota", 422), ("invalid-reason", 422), ("invalid-region", 422),
    ("invalid-replica", 422), ("invalid-reservation", 422), ("invalid-reserved", 422),
    ("invalid-role", 422), ("invalid-runtime", 422), ("invalid-share-weight", 422),
    ("invalid-ssh-key", 422), ("invalid-sso", 422), ("invalid-term", 422), ("invalid-time", 422),
    ("invalid-ttl", 422), ("invalid-user-data", 422), ("invalid-webhook-url", 422), ("leader-cannot-leave", 409),
    ("malformed-json", 400), ("membership-change-refused", 409), ("mfa-required", 403),
    ("mig-not-offered", 422), ("no-enrolment", 409), ("no-region-within-latency", 422),
    ("no-reservation", 409), ("no-secrets-key", 503), ("not-a-gpu-flavor", 422),
    ("not-a-user", 400), ("not-caught-up", 504), ("not-found", 404), ("not-leader", 409),
    ("operator-only", 403), ("project-required", 400), ("quota-exceeded", 403),
    ("rate-limited", 429), ("read-not-confirmed", 503), ("region-unavailable", 422),
    ("sso-code-refused", 401), ("sso-email-not-allowed", 403), ("sso-expired", 400),
    ("sso-invalid-response", 401), ("sso-invalid-token", 401), ("sso-not-configured", 404),
    ("sso-provider-error", 502), ("sso-provider-refused", 401), ("sso-state-mismatch", 400),
    ("state-required", 422), ("totp-required", 401), ("trial-limit", 402), ("unauthorized", 401),
    ("unavailable", 503), ("unknown-event-type", 422), ("unknown-flavor", 422), ("unknown-gpu-model", 422),
    ("unknown-image", 422), ("unknown-market", 422), ("unknown-node-state", 422),
    ("unknown-priority", 422), ("unknown-region", 422), ("unknown-reservation", 422),
    ("unknown-tier", 422), ("unsupported-media-type", 415), ("users-only", 403),
    ("weak-password", 422), ("wrong-password", 403),
];

/// The schemas of every body, derived from the types.
#[derive(OpenApi)]
#[openapi(components(schemas(
    crate::catalog::Catalog,
    crate::instances::api::CreateInstanceRequest,
    crate::instances::api::InstanceView,
    crate::instances::api::InstanceList,
    crate::reservations::api::CreateReservationRequest,
    crate::reservations::api::ReservationView,
    crate::reservations::api::ReservationList,
    crate::jobs::api::SubmitJobRequest,
    crate::jobs::api::JobView,
    crate::jobs::api::JobList,
    crate::sessions::api::LaunchRequest,
    crate::sessions::api::SessionView,
    crate::sessions::api::SessionList,
    crate::tenancy::identity_api::SignUpRequest,
    crate::tenancy::identity_api::SignUpView,
    crate::tenancy::identity_api::LoginRequest,
    crate::tenancy::identity_api::LoginView,
    crate::tenancy::identity_api::PasswordRequest,
    crate::tenancy::identity_api::MeView,
    crate::tenancy::identity_api::SessionView,
    crate::tenancy::reset_api::ResetRequest,
    crate::tenancy::reset_api::ConfirmRequest,
    crate::tenancy::mfa_api::EnrolmentView,
    crate::tenancy::mfa_api::CodeRequest,
    crate::tenancy::mfa_api::RecoveryView,
    crate::tenancy::identity_api::OrganisationRequest,
    crate::tenancy::org_api::OrganisationView,
    crate::tenancy::org_api::UpdateOrganisationRequest,
    crate::tenancy::org_api::MemberRequest,
    crate::tenancy::org_api::MemberView,
    crate::tenancy::org_api::RateLimitRequest,
    crate::tenancy::sso_api::SsoRequest,
    crate::tenancy::sso_api::SsoView,
    crate::tenancy::invitations_api::AcceptRequest,
    crate::tenancy::api::CreateProjectRequest,
    crate::tenancy::api::ProjectView,
    crate::tenancy::api::UpdateProjectRequest,
    crate::tenancy::api::CreateKeyRequest,
    crate::tenancy::api::KeyView,
    crate::tenancy::api::KeyList,
    crate::tenancy::api::ProjectList,
    crate::tenancy::org_api::OrganisationList,
    crate::tenancy::identity_api::LoginSessionList,
    crate::tenancy::project_members_api::ProjectMemberList,
    crate::tenancy::project_members_api::ProjectMemberRequest,
    crate::tenancy::project_members_api::ProjectMemberView,
    crate::quotas::api::SetQuotaBody,
    crate::quotas::api::QuotaView,
    crate::quotas::api::QuotaRequestBody,
    crate::quotas::api::QuotaRequestView,
    crate::quotas::api::QuotaRequestList,
    crate::quotas::api::DecisionBody,
    crate::audit::api::AuditList,
    crate::webhooks::api::CreateEndpointRequest,
    crate::webhooks::api::EndpointView,
    crate::webhooks::api::EndpointList,
    crate::webhooks::api::TestDelivery,
    crate::webhooks::api::DeliveryList,
    crate::webhooks::api::ResendView,
    crate::networks::api::CreateNetworkRequest,
    crate::networks::api::NetworkView,
    crate::networks::api::NetworkList,
    crate::public_ips::api::CreateFloatingIpRequest,
    crate::public_ips::api::AssignRequest,
    crate::public_ips::api::ReverseDnsRequest,
    crate::public_ips::api::FloatingIpView,
    crate::public_ips::api::FloatingIpList,
    crate::public_ips::api::ReverseDnsView,
    crate::firewalls::api::RuleBody,
    crate::firewalls::api::CreateFirewallRequest,
    crate::firewalls::api::FirewallRules,
    crate::firewalls::api::AttachRequest,
    crate::firewalls::api::FirewallView,
    crate::firewalls::api::FirewallList,
    crate::join::api::CreateTokenRequest,
    crate::join::api::TokenView,
    crate::join::api::TokenList,
    crate::nodes::api::NodeView,
    crate::nodes::api::NodeList,
    crate::nodes::api::NodePatch,
    crate::api::cluster::ClusterView,
    crate::api::cluster::JoinRequest,
    crate::api::cluster::TransferRequest,
    crate::billing::usage::UsageReport,
    crate::billing::usage::UsageRow,
    crate::billing::usage::HourCost,
    crate::billing::api::Forecast,
    crate::billing::api::InvoiceView,
    crate::billing::api::InvoiceSummary,
    crate::billing::api::InvoiceList,
    crate::billing::api::CreditView,
    crate::billing::api::CreditList,
    crate::billing::staff_api::RunRequest,
    crate::billing::staff_api::RunView,
    crate::billing::staff_api::Preview,
    crate::billing::staff_api::FinalizeRequest,
    crate::billing::staff_api::PaymentRequest,
    crate::billing::staff_api::VoidRequest,
    crate::billing::staff_api::CreditRequest,
    crate::billing::staff_api::ClockRequest,
    crate::billing::staff_api::ClockView,
    crate::billing::types::Party,
    crate::billing::payment_api::PaymentMethodView,
    crate::billing::payment_api::CardView,
    crate::billing::payment_api::TestCard,
    crate::billing::payment_api::PaymentMethodRequest,
    crate::billing::payment_api::WebhookAnswer,
    crate::billing::payment_api::BudgetView,
    crate::billing::payment_api::RedeemRequest,
    crate::billing::payment_api::SetupIntentView,
    crate::billing::payment_api::SetupIntentRequest,
    crate::sessions::api::ConnectionView,
    crate::sessions::api::SharePlayView,
    crate::gaming::share_api::InviteView,
    crate::gaming::share_api::JoinRequest,
    crate::gaming::share_api::GuestView,
    crate::gaming::share_api::GuestList,
    crate::sessions::api::RedeemRequest,
    crate::sessions::api::RedeemView,
    crate::gaming::api::RequestView,
    crate::gaming::api::AskRequest,
    crate::gaming::api::DecideRequest,
    crate::gaming::api::TitleView,
    crate::gaming::api::TitleList,
    crate::gaming::warm_api::WarmPoolView,
    crate::gaming::warm_api::WarmPoolList,
    crate::gaming::api::HouseholdView,
    crate::gaming::api::HoursView,
    crate::gaming::api::ProfileView,
    crate::gaming::api::ProfileRequest,
    crate::gaming::api::ProfileUpdate,
    crate::gaming::api::EntitlementView,
    crate::gaming::api::EntitlementRequest,
    crate::gaming::api::PinRequest,
    crate::gaming::api::UnlockRequest,
    crate::gaming::api::UnlockView,
    crate::gaming::api::LibraryEntry,
    crate::gaming::api::Library,
    crate::gaming::api::HouseholdLaunch,
    crate::gaming::catalog::FairUse,
    crate::billing::staff_api::Receivables,
    crate::billing::staff_api::Aging,
    crate::billing::staff_api::OrgReceivable,
    crate::billing::plans::PlanView,
    crate::billing::plans::PlanOffer,
    crate::billing::plans::PackOffer,
    crate::billing::hour_packs::PackRequest,
    crate::status::api::StatusView,
    crate::partners::brand::BrandView,
    crate::partners::api::PartnerView,
    crate::partners::api::PartnerList,
    crate::partners::api::BrandRequest,
    crate::partners::api::CreatePartnerRequest,
    crate::partners::api::UpdatePartnerRequest,
    crate::partners::api::CustomerRow,
    crate::partners::api::CustomerList,
    crate::partners::api::CreateCustomerRequest,
    crate::partners::api::PopView,
    crate::partners::api::SupportAccessRequest,
    crate::partners::licences_api::LicenceView,
    crate::partners::licences_api::AllowanceView,
    crate::partners::licences_api::SiteView,
    crate::partners::licences_api::SiteList,
    crate::partners::licences_api::SiteRequest,
    crate::partners::statement::Statement,
    crate::partners::statement::StatementCustomer,
    crate::nodes::noc_api::FleetView,
    crate::nodes::api::GpuTelemetryView,
    crate::nodes::noc_api::RegionSummary,
    crate::nodes::noc_api::RaftSummary,
    crate::nodes::noc_api::HostRow,
    crate::nodes::noc_api::HostWorkloads,
    crate::nodes::noc_api::WorkloadRow,
    crate::status::api::RegionStatusView,
    crate::status::api::ServiceStatus,
    crate::status::api::IncidentView,
    crate::status::api::UpdateView,
    crate::status::api::IncidentRequest,
    crate::status::api::IncidentUpdateRequest,
    crate::billing::hour_packs::PackBought,
    crate::billing::plans::PlanRequest,
    crate::billing::prepaid::PrepaidView,
    crate::billing::prepaid::TopUpView,
    crate::billing::prepaid::TopUpRequest,
    crate::billing::payment_api::RedeemedView,
    crate::billing::staff_api::CouponRequest,
    crate::billing::staff_api::CouponView,
    crate::billing::staff_api::CouponList,
    crate::billing::payment_api::BudgetRequest,
    crate::billing::types::Payment,
    crate::billing::types::InvoiceStatus,
    crate::billing::types::DocumentKind,
)))]
struct Schemas;

/// Examples of request bodies, by schema.
fn example(schema: &str) -> Option<Value> {
    Some(match schema {
        "CreateInstanceRequest" => json!({"name": "web-1", "flavor": "vps-s", "image": "debian-12",
            "region": "par", "ssh_keys": ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI… ann@laptop"]}),
        "CreateReservationRequest" => json!({"flavor": "vps-l", "region": "par", "count": 2,
            "term_months": 12}),
        "SubmitJobRequest" => json!({"flavor": "gpu-h100-1", "image": "debian-12", "region": "par",
            "members": 2, "max_runtime_s": 3600}),
        "LaunchRequest" => json!({"title": "chess", "flavor": "game-rtx4090", "region": "par"}),
        "SignUpRequest" => {
            json!({"email": "ann@example.org", "password": "violet-tram-orbit-canal",
            "organisation": {"name": "Acme", "kind": "company", "billing_country": "FR",
            "vat_id": "FR40303265045"}})
        }
        "LoginRequest" => json!({"email": "ann@example.org", "password": "violet-tram-orbit-canal",
            "totp_code": "123456"}),
        "CreateKeyRequest" => {
            json!({"name": "ci", "role": "project-member", "expires_in_days": 90})
        }
        "QuotaRequestBody" => json!({"region": "par", "vcpus": 64, "reason": "CI runners"}),
        "SetQuotaBody" => json!({"region": "par", "vcpus": 400, "gpus_by_model": {"H100": 16}}),
        "CreateEndpointRequest" => json!({"url": "https://hooks.example.org/vmcloud",
            "event_types": ["instance.state_changed", "job.ended"], "description": "ops bot"}),
        "NodePatch" => json!({"state": "draining", "reason": "disk swap", "deadline_s": 7200}),
        "CreateNetworkRequest" => {
            json!({"name": "backend", "subnet": "10.20.0.0/24", "region": "par"})
        }
        "CreateFirewallRequest" => json!({"name": "web", "rules": [
            {"direction": "inbound", "protocol": "tcp", "ports": "22", "sources": ["203.0.113.0/24"]},
            {"direction": "inbound", "protocol": "tcp", "ports": "443"},
            {"direction": "inbound", "protocol": "any", "peer_firewall": "fw-0123456789abcdef"}]}),
        "AttachRequest" | "AssignRequest" => json!({"instance": "i-01a22d03e7524c90169e"}),
        "CreateFloatingIpRequest" => json!({"region": "par", "description": "mail"}),
        "ReverseDnsRequest" => json!({"name": "mail.example.org"}),
        _ => return None,
    })
}

fn params(query: Query) -> Vec<utoipa::openapi::path::Parameter> {
    let q = || Some(ParameterIn::Query);
    match query {
        Query::None => Vec::new(),
        Query::Read => ReadOptions::into_params(q),
        Query::List => ListQuery::into_params(q),
        Query::Audit => crate::audit::api::AuditQuery::into_params(q),
        Query::Quota => crate::quotas::api::QuotaQuery::into_params(q),
        Query::Verify => crate::tenancy::identity_api::VerifyQuery::into_params(q),
        Query::SsoStart => crate::tenancy::sso_api::StartQuery::into_params(q),
        Query::SsoCallback => crate::tenancy::sso_api::CallbackQuery::into_params(q),
        Query::Usage => crate::billing::api::UsageQuery::into_params(q),
        Query::Invoices => crate::billing::api::InvoiceQuery::into_params(q),
        Query::Preview => crate::billing::staff_api::PreviewQuery::into_params(q),
        Query::Journal => crate::billing::staff_api::JournalQuery::into_params(q),
        Query::Receivables => crate::billing::staff_api::ReceivablesQuery::into_params(q),
        Query::Library => crate::gaming::api::LibraryQuery::into_params(q),
        Query::Statement => crate::partners::licences_api::StatementQuery::into_params(q),
    }
}

fn method(m: &str) -> HttpMethod {
    match m {
        "GET" => HttpMethod::Get,
        "POST" => HttpMethod::Post,
        "PUT" => HttpMethod::Put,
        "PATCH" => HttpMethod::Patch,
        _ => HttpMethod::Delete,
    }
}

fn problem_response(description: &str) -> utoipa::openapi::Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/problem+json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Problem")))
                .build(),
        )
        .build()
}

fn problem_schema() -> utoipa::openapi::schema::Object {
    let kinds: Vec<String> = PROBLEM_KINDS
        .iter()
        .map(|(k, _)| format!("urn:vmcloud:problem:{k}"))
        .collect();
    let table: String = PROBLEM_KINDS
        .iter()
        .map(|(k, s)| format!("\n- `{k}`: {s}"))
        .collect();
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .description(Some(format!(
            "RFC 9457 problem details. `type` says what went wrong (by status:{table})"
        )))
        .property(
            "type",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(kinds)),
        )
        .property("title", ObjectBuilder::new().schema_type(Type::String))
        .property("status", ObjectBuilder::new().schema_type(Type::Integer))
        .property(
            "detail",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .description(Some("What was wrong and what to do")),
        )
        .required("type")
        .required("title")
        .required("status")
        .required("detail")
        .examples([json!({"type": "urn:vmcloud:problem:unknown-flavor", "title": "Unknown flavor",
            "status": 422, "detail": "flavor `vps-xxl` does not exist; choose one of: vps-l, vps-m, vps-s"})])
        .build()
}

/// The whole document.
pub fn document(version: &str) -> Document {
    let mut doc = Schemas::openapi();
    doc.info = InfoBuilder::new()
        .title("VMCloud API")
        .version(version)
        .description(Some(
            "VPS and GPU instances, reservations, AI batch jobs, game sessions, organisations, projects, keys, quotas and the audit trail. Errors are `application/problem+json`. See docs/api.md.",
        ))
        .build();
    let components = doc.components.get_or_insert_with(Default::default);
    components
        .schemas
        .insert("Problem".into(), problem_schema().into());
    components.security_schemes.insert(
        "bearer".into(),
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some(
                    "An API key (`vmc_…`) or a login token (`vms_…`); browsers send the `vmcloud_session` cookie instead",
                ))
                .build(),
        ),
    );
    let mut tags: Vec<&str> = Vec::new();
    for o in OPERATIONS {
        if !tags.contains(&o.tag) {
            tags.push(o.tag);
        }
    }
    doc.tags = Some(
        tags.iter()
            .map(|t| TagBuilder::new().name(*t).build())
            .collect(),
    );
    for o in OPERATIONS {
        let mut b = OperationBuilder::new()
            .tag(o.tag)
            .summary(Some(o.summary))
            .operation_id(Some(format!(
                "{}{}",
                o.method().to_lowercase(),
                o.path().replace(['/', '{', '}', '-', '.'], "_")
            )));
        for segment in o.path().split('/') {
            if let Some(name) = segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                b = b.parameter(
                    ParameterBuilder::new()
                        .name(name)
                        .parameter_in(ParameterIn::Path)
                        .required(Required::True)
                        .schema(Some(ObjectBuilder::new().schema_type(Type::String))),
                );
            }
        }
        for p in params(o.query) {
            b = b.parameter(p);
        }
        if o.method() == "POST" {
            b = b.parameter(
                ParameterBuilder::new()
                    .name("Idempotency-Key")
                    .parameter_in(ParameterIn::Header)
                    .required(Required::False)
                    .description(Some("Retry safely: the same key within 24 h gets the first result (1 to 255 visible ASCII characters)"))
                    .schema(Some(ObjectBuilder::new().schema_type(Type::String).max_length(Some(255)))),
            );
        }
        if let Some(body) = o.body {
            b = b.request_body(Some(
                RequestBodyBuilder::new()
                    .required(Some(if body == "DecisionBody" {
                        Required::False
                    } else {
                        Required::True
                    }))
                    .content(
                        "application/json",
                        ContentBuilder::new()
                            .schema(Some(Ref::from_schema_name(body)))
                            .example(example(body))
                            .build(),
                    )
                    .build(),
            ));
        }
        let (status, schema) = o.ok;
        let mut ok = ResponseBuilder::new().description(match status {
            201 => "Created (`Location` names it)",
            202 => "Accepted: it happens next",
            204 => "Done",
            303 => "Redirect",
            _ => "OK",
        });
        if let Some(schema) = schema {
            ok = ok.content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name(schema)))
                    .build(),
            );
        }
        b = b.response(status.to_string(), ok.build());
        let mut errors: Vec<(u16, &str)> = Vec::new();
        if o.body.is_some() || o.query != Query::None {
            errors.push((400, "The body or query string is malformed"));
        }
        if o.auth != Auth::Public {
            errors.push((401, "Not logged in, or the key or token is invalid"));
            errors.push((
                403,
                "The role does not allow it (or it needs a second factor)",
            ));
        }
        if o.path().contains('{') || o.auth == Auth::Bearer {
            errors.push((404, "No such object, or not yours"));
        }
        if o.method() != "GET" {
            errors.push((409, "It conflicts with the current state"));
        }
        if o.body.is_some() {
            errors.push((
                422,
                "A value is not acceptable; `detail` says which and why",
            ));
        }
        errors.push((429, "Over the rate limit: wait `Retry-After` seconds"));
        errors.push((
            503,
            "Not available now (no leader, cannot confirm the read): retry",
        ));
        for (status, why) in errors {
            b = b.response(status.to_string(), problem_response(why));
        }
        if o.auth != Auth::Public {
            b = b.security(SecurityRequirement::new("bearer", Vec::<String>::new()));
        }
        doc.paths
            .add_path_operation(o.path(), vec![method(o.method())], b.build());
    }
    doc
}

/// `GET /v1/openapi.json`.
pub async fn serve(
    axum::extract::State(s): axum::extract::State<crate::api::ApiState>,
) -> Json<Document> {
    Json(document(&s.build.version))
}

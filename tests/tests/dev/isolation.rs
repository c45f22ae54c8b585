//! Invariant 8: another organisation's objects do not exist for you. Organisation A makes one
//! of everything it can (project, key, instance, job, reservation, member); then organisation
//! B — with its user's login token and with its project's API key — and the admin of a
//! partner (Fibra, whose staff reach only Fibra's customers) try **every route of the API**
//! with A's ids and the demo partner EdgeNet's: each object route answers 404 to every verb, each list shows none of
//! A's ids, each fleet route is refused. The routes come from the router's source
//! (`scheduler/src/api/mod.rs`), so a new route the walk does not know fails this test.

use serde_json::{Value, json};

use super::Fixture;
use super::customers::{Api, customer};

/// Every (method, path template) the API router declares.
/// What the walk does with a route.
enum Walk {
    /// A's object by id: 404 to B.
    Hidden,
    /// A list: B gets its own (without any of A's ids); with `?project=<A's>`, 404.
    List,
    /// The fleet's (operators only): B is refused and shown nothing.
    Fleet,
    /// About the caller itself or no one (sign-up, log-in, version): nothing of A's to find.
    NotTenantData(&'static str),
}

fn walk_of(method: &str, path: &str) -> Walk {
    use Walk::*;
    match (method, path) {
        ("GET", "/healthz" | "/metrics" | "/v1/version" | "/v1/catalog" | "/v1/openapi.json") => {
            NotTenantData("public")
        }
        (
            _,
            "/v1/signup"
            | "/v1/verify-email"
            | "/v1/login"
            | "/v1/password-reset"
            | "/v1/password-reset/confirm",
        ) => NotTenantData("no caller yet: the proof is in the request"),
        (_, "/v1/invitations/accept") => {
            NotTenantData("the mailed token is the proof; a wrong one is refused alike for any org")
        }
        (_, "/v1/sso/start" | "/v1/sso/callback") => {
            NotTenantData("SSO log-in: the proof comes from the provider")
        }
        (
            _,
            "/v1/logout"
            | "/v1/logout-everywhere"
            | "/v1/password"
            | "/v1/me"
            | "/v1/me/totp"
            | "/v1/me/sessions"
            | "/v1/me/totp/confirm",
        ) => NotTenantData("the caller's own account"),
        (
            "GET",
            "/v1/instances"
            | "/v1/jobs"
            | "/v1/sessions"
            | "/v1/reservations"
            | "/v1/projects"
            | "/v1/organisations"
            | "/v1/quotas"
            | "/v1/quota-requests"
            | "/v1/networks"
            | "/v1/firewalls"
            | "/v1/floating-ips"
            | "/v1/webhook-endpoints",
        ) => List,
        (
            "POST",
            "/v1/instances"
            | "/v1/jobs"
            | "/v1/sessions"
            | "/v1/reservations"
            | "/v1/quota-requests"
            | "/v1/networks"
            | "/v1/firewalls"
            | "/v1/floating-ips"
            | "/v1/webhook-endpoints",
        ) => Hidden, // with ?project=<A's project>
        // Operators only: refused before anything is looked up.
        (_, p)
            if p.starts_with("/v1/quota-requests/")
                || p.ends_with("/quotas")
                || p.ends_with("/rate-limit") =>
        {
            Fleet
        }
        // Billing staff only: refused before anything is looked up.
        (_, "/v1/test-clock") => Fleet,
        (_, "/v1/billing/coupons") => Fleet,
        (_, "/v1/billing/receivables") => Fleet,
        (_, "/v1/warm-pools") => Fleet,
        (_, "/v1/noc/fleet") => Fleet,
        // Entitlements are granted by operators: refused before the household is looked up.
        (_, p) if p.contains("/entitlements") => Fleet,
        ("GET", "/v1/titles") => NotTenantData("the public catalog of games"),
        ("GET", "/v1/brand") => NotTenantData("the public brand of the host asked"),
        ("GET", "/v1/partners") => NotTenantData("the caller's own partners: none for a customer"),
        // Operators make partners: refused before anything is looked up.
        ("POST", "/v1/partners") => Fleet,
        // Operators set a partner's licence terms: refused before anything is looked up.
        ("PUT", "/v1/partners/{id}/licence") => Fleet,
        ("GET", "/v1/status") | ("GET", "/v1/incidents/{id}") => {
            NotTenantData("the public status page")
        }
        // Operators declare and update incidents: refused before anything is looked up.
        ("POST", p) if p.starts_with("/v1/incidents") => Fleet,
        ("POST", "/v1/stream/redeem") => {
            NotTenantData("the one-time token is the proof; an unknown one is refused alike")
        }
        ("POST", "/v1/stripe/webhook") => {
            NotTenantData("Stripe's events, proven by their signature")
        }
        (_, p)
            if p.starts_with("/v1/billing/runs")
                || p == "/v1/billing/preview"
                || p == "/v1/billing/journal" =>
        {
            Fleet
        }
        ("POST", p) if p.starts_with("/v1/invoices/") || p.ends_with("/credits") => Fleet,
        ("POST", "/v1/projects") => Hidden, // in A's organisation
        ("POST", "/v1/organisations") => NotTenantData("makes a new organisation of the caller's"),
        (_, p) if p.starts_with("/v1/nodes") || p.starts_with("/v1/cluster") => Fleet,
        // Fair share and gaming tier are the operators': refused before any project is looked
        // up, so the answer is the same whether A's project exists or not.
        ("PATCH", "/v1/projects/{id}") => Fleet,
        (_, "/v1/join-tokens") => Fleet,
        _ => Hidden,
    }
}

struct OrgA {
    /// The id of Ann's login session (the middle of her `vms_` token).
    session: String,
    user: String,
    org: String,
    project: String,
    key_id: String,
    instance: String,
    job: String,
    reservation: String,
}

impl OrgA {
    /// `template` with A's ids in its parameters (and `?project=` for creates and lists).
    fn path(&self, method: &str, template: &str) -> String {
        let id = |what: &str| -> &str {
            match what {
                "sessions" if template.starts_with("/v1/me/") => &self.session,
                "instances" | "sessions" => &self.instance,
                "jobs" => &self.job,
                "reservations" => &self.reservation,
                "projects" => &self.project,
                "organisations" | "households" => &self.org,
                // The dev fleet's demo partner: a customer of VMCloud finds nothing of it.
                "partners" => "edgenet",
                _ => "unknown",
            }
        };
        let segments: Vec<&str> = template.split('/').collect();
        let mut out = Vec::new();
        for (i, s) in segments.iter().enumerate() {
            out.push(match *s {
                "{id}" => id(segments[i - 1]).to_owned(),
                "{key}" => self.key_id.clone(),
                "{profile}" => "pf-0000000000000001".to_owned(),
                "{entitlement}" => "ent-0000000000000001".to_owned(),
                "{request}" => "req-0000000000000001".to_owned(),
                "{user}" => self.user.clone(),
                "{event}" => "evt_1_0".to_owned(),
                "{address}" => "203.0.113.1".to_owned(),
                "{site}" => "lycee-thiers".to_owned(),
                "{period}" => "2026-11".to_owned(),
                s => s.to_owned(),
            });
        }
        let path = out.join("/");
        let scoped = [
            "/v1/instances",
            "/v1/jobs",
            "/v1/sessions",
            "/v1/reservations",
            "/v1/quotas",
            "/v1/quota-requests",
            "/v1/networks",
            "/v1/firewalls",
            "/v1/floating-ips",
            "/v1/webhook-endpoints",
        ];
        let org_scoped = [
            "/v1/audit-events",
            "/v1/usage",
            "/v1/billing/forecast",
            "/v1/invoices",
            "/v1/credits",
            "/v1/billing/payment-method",
            "/v1/billing/budget-alerts",
            "/v1/billing/top-ups",
            "/v1/billing/plan",
        ];
        if template.ends_with("/library") {
            format!("{path}?profile=pf-0000000000000001")
        } else if org_scoped.contains(&template) {
            format!("{path}?org={}", self.org)
        } else if scoped.contains(&template) || (method == "GET" && template.contains("{id}")) {
            format!("{path}?project={}", self.project)
        } else {
            path
        }
    }

    fn ids(&self) -> [&str; 8] {
        [
            &self.session,
            &self.user,
            &self.org,
            &self.project,
            &self.key_id,
            &self.instance,
            &self.job,
            &self.reservation,
        ]
    }
}

/// A body good enough that a refusal is about who asks, not about the body.
fn body_for(method: &str, template: &str, a: &OrgA) -> Option<Value> {
    let vm = json!({"flavor": "vps-s", "image": "debian-12", "region": "par"});
    match (method, template) {
        ("POST", "/v1/instances") => Some(vm),
        ("POST", "/v1/jobs") => Some(json!({"flavor": "vps-s", "image": "debian-12",
            "region": "par", "max_runtime_s": 600})),
        ("POST", "/v1/sessions") => Some(json!({"title": "chess", "flavor": "game-rtx4090",
            "region": "par"})),
        ("POST", "/v1/reservations") => Some(json!({"flavor": "vps-s", "region": "par",
            "count": 1, "term_months": 12})),
        ("POST", "/v1/projects") => Some(json!({"organisation": a.org, "name": "intruder"})),
        ("POST", "/v1/webhook-endpoints") => Some(json!({"url": "http://127.0.0.1:9/hook"})),
        ("POST", "/v1/networks") => Some(json!({"name": "intruder"})),
        ("POST", "/v1/firewalls") => Some(json!({"name": "intruder"})),
        ("POST", "/v1/floating-ips") => Some(json!({"region": "par"})),
        ("POST", "/v1/billing/redeem") => Some(json!({"org": a.org, "code": "WELCOME"})),
        ("POST", "/v1/billing/top-ups") => Some(json!({"org": a.org, "amount": "10.00"})),
        ("POST", "/v1/billing/setup-intents") => Some(json!({"org": a.org})),
        ("POST", "/v1/households/{id}/profiles") => Some(json!({"name": "Intruder"})),
        ("PATCH", "/v1/households/{id}/profiles/{profile}") => Some(json!({"name": "Intruder"})),
        ("POST", "/v1/households/{id}/entitlements") => {
            Some(json!({"title": "chess-arena", "kind": "purchase"}))
        }
        ("POST", "/v1/households/{id}/requests") => {
            Some(json!({"profile": "pf-0000000000000001", "title": "chess-arena"}))
        }
        ("POST", "/v1/households/{id}/requests/{request}") => Some(json!({"approve": true})),
        ("PUT", "/v1/households/{id}/pin") => Some(json!({"pin": "1234"})),
        ("POST", "/v1/households/{id}/unlock") => {
            Some(json!({"profile": "pf-0000000000000001", "title": "chess-arena", "pin": "1234"}))
        }
        ("POST", "/v1/households/{id}/launch") => {
            Some(json!({"profile": "pf-0000000000000001", "title": "chess-arena", "region": "par"}))
        }
        ("POST", "/v1/households/{id}/share-play") => {
            Some(json!({"profile": "pf-0000000000000001", "code": "ABCD-EFGH"}))
        }
        ("POST", "/v1/join-tokens") => Some(json!({"node_name": "intruder-1"})),
        ("POST", "/v1/partners") => Some(json!({"id": "intruder", "name": "Intruder",
            "billing_country": "FR", "admin_email": "bob@example.org"})),
        ("POST", "/v1/partners/{id}/customers") => Some(json!({"name": "Intruder",
            "billing_country": "FR", "owner_email": "bob@example.org"})),
        ("POST", "/v1/organisations/{id}/support-access") => Some(json!({"hours": 1})),
        ("PATCH", "/v1/partners/{id}") => Some(json!({"domains": ["intruder.localhost"]})),
        ("PUT", "/v1/partners/{id}/licence") => Some(json!({"currency": "EUR",
            "base_monthly": "0", "per_active_user": "0", "partner_share_percent": "100"})),
        ("PUT", "/v1/partners/{id}/sites/{site}") => Some(json!({"name": "Intruder",
            "ranges": ["192.0.2.0/24"], "seats": 1000})),
        ("POST", "/v1/billing/hour-packs") => Some(json!({"org": a.org, "pack": "pack-10h"})),
        ("PUT", "/v1/billing/plan") => Some(json!({"org": a.org, "plan": "support-developer"})),
        ("PUT", "/v1/billing/budget-alerts") => Some(json!({"org": a.org, "thresholds": ["1"]})),
        ("POST", "/v1/billing/payment-method") => Some(json!({"org": a.org,
            "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2030, "cvc": "123"}})),
        ("POST", t) if t.ends_with("/assign") => Some(json!({"instance": a.instance})),
        ("PUT", t) if t.starts_with("/v1/reverse-dns") => Some(json!({"name": "x.example.org"})),
        ("POST", t) if t.ends_with("/attach") || t.ends_with("/detach") => {
            Some(json!({"instance": a.instance}))
        }
        ("PUT", t) if t.ends_with("/rules") => Some(json!({"rules": []})),
        ("POST", "/v1/quota-requests") => {
            Some(json!({"region": "par", "vcpus": 64, "reason": "more"}))
        }
        ("PUT", t) if t.ends_with("/quotas") => Some(json!({"region": "par", "vcpus": 64})),
        ("PUT", t) if t.ends_with("/rate-limit") => Some(json!({"per_hour": 100000})),
        ("POST", t) if t.ends_with("/keys") => Some(json!({"name": "x", "role": "project-admin"})),
        ("POST", t) if t.ends_with("/members") => {
            Some(json!({"email": "bob@example.org", "role": "admin"}))
        }
        ("PATCH", t) if t.starts_with("/v1/organisations") => Some(json!({"name": "Taken"})),
        ("PUT", t) if t.ends_with("/sso") => Some(json!({"issuer": "http://127.0.0.1:1",
            "client_id": "x", "client_secret": "y", "allowed_domains": ["example.org"]})),
        ("PATCH", t) if t.starts_with("/v1/projects") => Some(json!({"share_weight": 5})),
        ("PATCH", t) if t.starts_with("/v1/nodes") => Some(json!({"state": "cordoned"})),
        ("POST", _) => Some(json!({})),
        _ => None,
    }
}

#[tokio::test]
async fn another_organisation_finds_nothing_of_yours_on_any_route() {
    let fx = Fixture::start();
    let api = Api {
        base: &fx.fleet.api,
    };

    // Organisation A: one of everything.
    let (ann, org, project) = customer(&fx, &api, "ann@example.org", "Org A").await;
    let (_, me) = api.call("GET", "/v1/me", Some(&ann), None).await;
    let user = me["user_id"].as_str().unwrap().to_owned();
    let (status, key) = api
        .call(
            "POST",
            &format!("/v1/projects/{project}/keys"),
            Some(&ann),
            Some(json!({"name": "ci", "role": "project-admin"})),
        )
        .await;
    assert_eq!(status, 201, "{key}");
    let scoped = |p: &str| format!("{p}?project={project}");
    let a_body = |t: &str| {
        body_for(
            "POST",
            t,
            &OrgA {
                session: String::new(),
                user: String::new(),
                org: org.clone(),
                project: project.clone(),
                key_id: String::new(),
                instance: String::new(),
                job: String::new(),
                reservation: String::new(),
            },
        )
    };
    let (status, instance) = api
        .call(
            "POST",
            &scoped("/v1/instances"),
            Some(&ann),
            a_body("/v1/instances"),
        )
        .await;
    assert_eq!(status, 201, "{instance}");
    let (status, job) = api
        .call("POST", &scoped("/v1/jobs"), Some(&ann), a_body("/v1/jobs"))
        .await;
    assert!(status == 201 || status == 202, "{job}");
    let (status, reservation) = api
        .call(
            "POST",
            &scoped("/v1/reservations"),
            Some(&ann),
            a_body("/v1/reservations"),
        )
        .await;
    assert_eq!(status, 201, "{reservation}");
    let a = OrgA {
        session: ann.split('_').nth(1).unwrap().to_owned(),
        user,
        org,
        project,
        key_id: key["id"].as_str().unwrap().to_owned(),
        instance: instance["id"].as_str().unwrap().to_owned(),
        job: job["id"].as_str().unwrap().to_owned(),
        reservation: reservation["id"].as_str().unwrap().to_owned(),
    };

    // Organisation B: a user and a project-admin key.
    let (bob, _, bob_project) = customer(&fx, &api, "bob@example.org", "Org B").await;
    let (_, bob_key) = api
        .call(
            "POST",
            &format!("/v1/projects/{bob_project}/keys"),
            Some(&bob),
            Some(json!({"name": "ci", "role": "project-admin"})),
        )
        .await;
    let bob_key = bob_key["token"].as_str().unwrap().to_owned();

    // A partner's admin (Fibra, made by an operator): nothing of VMCloud's direct customers,
    // nothing of another partner (the demo partner EdgeNet's routes).
    let (lea, _, _) = customer(&fx, &api, "lea@fibra.example", "Léa").await;
    let (status, fibra) = api
        .call(
            "POST",
            "/v1/partners",
            Some(&fx.fleet.token),
            Some(
                json!({"id": "fibra", "name": "Fibra SA", "billing_country": "FR",
                "admin_email": "lea@fibra.example", "domains": ["fibra.localhost"]}),
            ),
        )
        .await;
    assert_eq!(status, 201, "{fibra}");
    let (_, projects) = api.call("GET", "/v1/projects", Some(&lea), None).await;
    let staff_project = projects["projects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["organisation"] == fibra["staff_organisation"])
        .and_then(|p| p["id"].as_str())
        .unwrap_or_else(|| panic!("no staff project in {projects}"))
        .to_owned();
    let (status, fibra_key) = api
        .call(
            "POST",
            &format!("/v1/projects/{staff_project}/keys"),
            Some(&lea),
            Some(json!({"name": "partner-ci", "role": "project-admin"})),
        )
        .await;
    assert_eq!(status, 201, "{fibra_key}");
    let fibra_key = fibra_key["token"].as_str().unwrap().to_owned();
    let (status, own) = api
        .call("GET", "/v1/partners/fibra", Some(&fibra_key), None)
        .await;
    assert_eq!(status, 200, "the key acts for its partner: {own}");

    let routes = vmcloud_tests::declared_routes();
    assert!(
        routes.len() > 30,
        "only {} routes read: {routes:?}",
        routes.len()
    );
    let mut walked = 0;
    for (method, template) in &routes {
        let walk = walk_of(method, template);
        if let Walk::NotTenantData(why) = walk {
            eprintln!("not walked: {method} {template} ({why})");
            continue;
        }
        for (who, token) in [
            ("B's user", &bob),
            ("B's key", &bob_key),
            ("a partner's key", &fibra_key),
        ] {
            let path = a.path(method, template);
            let body = body_for(method, template, &a);
            let (status, answer) = api.call(method, &path, Some(token), body).await;
            let text = answer.to_string();
            match walk {
                Walk::Hidden => assert_eq!(
                    status, 404,
                    "{who} {method} {path} answered {status}, not 404: {answer}"
                ),
                Walk::List => {
                    // With A's project named: 404; without: B's own, nothing of A's.
                    assert!(
                        status == 404
                            || template == "/v1/projects"
                            || template == "/v1/organisations",
                        "{who} {method} {path} answered {status}: {answer}"
                    );
                    let (status, own) = api.call(method, template, Some(token), None).await;
                    assert_eq!(status, 200, "{who} {method} {template}: {own}");
                    for id in a.ids() {
                        assert!(
                            !own.to_string().contains(id),
                            "{who} {method} {template} shows A's {id}: {own}"
                        );
                    }
                }
                Walk::Fleet => assert!(
                    status == 403 || status == 404,
                    "{who} {method} {path} answered {status}: {answer}"
                ),
                Walk::NotTenantData(_) => unreachable!(),
            }
            for id in a.ids() {
                assert!(
                    status >= 400 || matches!(walk, Walk::List) || !text.contains(id),
                    "{who} {method} {path} shows A's {id}: {answer}"
                );
            }
            walked += 1;
        }
    }
    eprintln!("walked {walked} requests over {} routes", routes.len());

    // Nothing of A's changed.
    let (status, still) = api
        .call(
            "GET",
            &format!("/v1/instances/{}", a.instance),
            Some(&ann),
            None,
        )
        .await;
    assert_eq!(status, 200, "{still}");
    let (_, org_now) = api
        .call(
            "GET",
            &format!("/v1/organisations/{}", a.org),
            Some(&ann),
            None,
        )
        .await;
    assert_eq!(org_now["name"], "Org A");
    assert_eq!(org_now["members"].as_array().unwrap().len(), 1, "{org_now}");
    let (_, keys) = api
        .call(
            "GET",
            &format!("/v1/projects/{}/keys", a.project),
            Some(&ann),
            None,
        )
        .await;
    assert!(
        keys["keys"]
            .as_array()
            .unwrap()
            .iter()
            .all(|k| k["revoked_at"].is_null()),
        "{keys}"
    );
}

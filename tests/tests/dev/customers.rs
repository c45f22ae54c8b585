//! Customers as they arrive: sign up, verify the mailed link, log in, make keys with roles,
//! run an instance — and another organisation sees none of it (DESIGN.md invariants 8, 13,
//! 14). Over HTTP against a running `vmcloud dev`; mail is read from the folder it writes.

use serde_json::{Value, json};

use super::{Fixture, http};

pub(super) struct Api<'a> {
    pub(super) base: &'a str,
}

impl Api<'_> {
    pub(super) async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let url = format!("{}{path}", self.base);
        let mut req = http().request(method.parse().unwrap(), &url);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }
}

fn signup_body(email: &str, password: &str, org: &str) -> Value {
    json!({
        "email": email,
        "password": password,
        "organisation": {"name": org, "kind": "company", "billing_country": "FR", "vat_id": "FR40303265045"},
    })
}

/// The API form of the verification link mailed to `email`, from `vmcloud dev`'s mail folder.
pub(super) fn mailed_link(fx: &Fixture, email: &str) -> String {
    let dir = fx.fleet.data_dir.join("mail");
    let mut found = None;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        // Its verification mail (an invitation may have come first).
        if text.contains(&format!("To: {email}")) && text.contains("/verify?") {
            found = Some(text);
        }
    }
    let text = found.unwrap_or_else(|| panic!("no mail to {email} in {}", dir.display()));
    // The mail links to the page (`…/verify?user=…&token=…`); the API takes the same query.
    text.lines()
        .find_map(|l| {
            l.trim()
                .split_once("/verify?")
                .map(|(_, q)| format!("/v1/verify-email?{q}"))
        })
        .unwrap_or_else(|| panic!("no link in the mail:\n{text}"))
}

/// The password [`customer`] signs up with.
pub(super) const PASSWORD: &str = "violet-tram-orbit-canal";

/// Signs up, verifies and logs in; returns (login token, org id, project id).
pub(super) async fn customer(
    fx: &Fixture,
    api: &Api<'_>,
    email: &str,
    org: &str,
) -> (String, String, String) {
    signed_up(fx, api, email, signup_body(email, PASSWORD, org)).await
}

/// [`customer`] for a gaming household (France); returns (login token, org id, project id).
pub(super) async fn household(
    fx: &Fixture,
    api: &Api<'_>,
    email: &str,
    name: &str,
) -> (String, String, String) {
    let body = json!({
        "email": email,
        "password": PASSWORD,
        "organisation": {"name": name, "kind": "household", "billing_country": "FR"},
    });
    signed_up(fx, api, email, body).await
}

/// Signs up with `body`, verifies the email and logs in.
async fn signed_up(
    fx: &Fixture,
    api: &Api<'_>,
    email: &str,
    body: Value,
) -> (String, String, String) {
    let password = PASSWORD;
    let (status, made) = api.call("POST", "/v1/signup", None, Some(body)).await;
    assert_eq!(status, 201, "{made}");
    let login = json!({"email": email, "password": password});
    let (status, body) = api
        .call("POST", "/v1/login", None, Some(login.clone()))
        .await;
    assert_eq!(status, 403, "an unverified email logs in: {body}");
    assert_eq!(body["type"], "urn:vmcloud:problem:email-not-verified");
    let link = mailed_link(fx, email);
    let (status, body) = api.call("GET", &link, None, None).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = api.call("GET", &link, None, None).await;
    assert_eq!(status, 422, "a verification link worked twice: {body}");
    let (status, body) = api.call("POST", "/v1/login", None, Some(login)).await;
    assert_eq!(status, 200, "{body}");
    (
        body["token"].as_str().unwrap().to_owned(),
        made["organisation_id"].as_str().unwrap().to_owned(),
        made["project_id"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test]
async fn customers_sign_up_verify_log_in_and_see_only_their_own() {
    let fx = Fixture::start();
    let api = Api {
        base: &fx.fleet.api,
    };

    // Bad input: each refused with what was wrong, nothing created.
    let (status, body) = api
        .call(
            "POST",
            "/v1/signup",
            None,
            Some(signup_body("ann@example.com", "password123", "Acme")),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("too easy to guess"),
        "{body}"
    );
    let mut bad_vat = signup_body("ann@example.com", "violet-tram-orbit-canal", "Acme");
    bad_vat["organisation"]["vat_id"] = json!("FR123");
    let (status, body) = api.call("POST", "/v1/signup", None, Some(bad_vat)).await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["detail"].as_str().unwrap().contains("format of FR"),
        "{body}"
    );
    let (status, body) = api
        .call(
            "POST",
            "/v1/signup",
            None,
            Some(signup_body(
                "not-an-email",
                "violet-tram-orbit-canal",
                "Acme",
            )),
        )
        .await;
    assert_eq!(status, 422, "{body}");

    let (ann, ann_org, ann_project) = customer(&fx, &api, "ann@example.com", "Acme").await;
    let (status, body) = api
        .call(
            "POST",
            "/v1/signup",
            None,
            Some(signup_body(
                "Ann@Example.com",
                "violet-tram-orbit-canal",
                "Acme 2",
            )),
        )
        .await;
    assert_eq!(status, 409, "the same email signed up twice: {body}");

    // Wrong password and unknown email: the same answer.
    let (s1, wrong) = api
        .call(
            "POST",
            "/v1/login",
            None,
            Some(json!({"email": "ann@example.com", "password": "nope-nope-nope"})),
        )
        .await;
    let (s2, unknown) = api
        .call(
            "POST",
            "/v1/login",
            None,
            Some(json!({"email": "zed@example.com", "password": "nope-nope-nope"})),
        )
        .await;
    assert_eq!((s1, s2), (401, 401));
    assert_eq!(wrong["detail"], unknown["detail"]);

    let (status, me) = api.call("GET", "/v1/me", Some(&ann), None).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["email"], "ann@example.com");
    assert_eq!(me["organisations"][0]["role"], "owner");

    // Keys with roles: a member key deploys, a viewer key only reads.
    let key = |role: &str| json!({"name": format!("ci-{role}"), "role": role});
    let (status, member) = api
        .call(
            "POST",
            &format!("/v1/projects/{ann_project}/keys"),
            Some(&ann),
            Some(key("project-member")),
        )
        .await;
    assert_eq!(status, 201, "{member}");
    let member = member["token"].as_str().unwrap().to_owned();
    let (status, viewer) = api
        .call(
            "POST",
            &format!("/v1/projects/{ann_project}/keys"),
            Some(&ann),
            Some(key("project-viewer")),
        )
        .await;
    assert_eq!(status, 201, "{viewer}");
    let viewer = viewer["token"].as_str().unwrap().to_owned();
    let (_, keys) = api
        .call(
            "GET",
            &format!("/v1/projects/{ann_project}/keys"),
            Some(&ann),
            None,
        )
        .await;
    assert_eq!(keys["keys"].as_array().unwrap().len(), 2, "{keys}");
    assert!(
        !keys.to_string().contains(&member[4..]),
        "a listed key shows its secret"
    );

    let vm = json!({"flavor": "vps-s", "image": "debian-12", "region": "par"});
    let (status, body) = api
        .call("POST", "/v1/instances", Some(&viewer), Some(vm.clone()))
        .await;
    assert_eq!(status, 403, "a viewer key deployed: {body}");
    let (status, made) = api
        .call("POST", "/v1/instances", Some(&member), Some(vm.clone()))
        .await;
    assert_eq!(status, 201, "{made}");
    let instance = made["id"].as_str().unwrap().to_owned();
    let (status, _) = api
        .call(
            "GET",
            &format!("/v1/instances/{instance}"),
            Some(&viewer),
            None,
        )
        .await;
    assert_eq!(status, 200);
    let (status, listed) = api.call("GET", "/v1/instances", Some(&ann), None).await;
    assert_eq!(status, 200, "{listed}");
    assert!(listed.to_string().contains(&instance));

    // Another organisation: everything of Ann's is 404, to every verb.
    let (bob, bob_org, bob_project) = customer(&fx, &api, "bob@example.net", "Bobco").await;
    let (status, listed) = api.call("GET", "/v1/instances", Some(&bob), None).await;
    assert_eq!(status, 200, "{listed}");
    assert!(
        !listed.to_string().contains(&instance),
        "Bob sees Ann's instance"
    );
    let ann_paths = [
        ("GET", format!("/v1/instances/{instance}")),
        ("DELETE", format!("/v1/instances/{instance}")),
        (
            "GET",
            format!("/v1/instances/{instance}?project={ann_project}"),
        ),
        ("GET", format!("/v1/instances?project={ann_project}")),
        ("GET", format!("/v1/projects/{ann_project}")),
        ("DELETE", format!("/v1/projects/{ann_project}")),
        ("GET", format!("/v1/projects/{ann_project}/keys")),
        ("POST", format!("/v1/projects/{ann_project}/keys")),
        ("GET", format!("/v1/organisations/{ann_org}")),
        ("PATCH", format!("/v1/organisations/{ann_org}")),
        ("POST", format!("/v1/organisations/{ann_org}/members")),
    ];
    for (method, path) in &ann_paths {
        let body = match *method {
            "POST" if path.ends_with("/keys") => Some(key("project-admin")),
            "POST" => Some(json!({"email": "bob@example.net", "role": "admin"})),
            "PATCH" => Some(json!({"name": "Taken"})),
            _ => None,
        };
        let (status, answer) = api.call(method, path, Some(&bob), body).await;
        assert_eq!(status, 404, "Bob {method} {path}: {answer}");
    }
    // Ann's member key reaches nothing of Bob's either.
    for path in [
        format!("/v1/projects/{bob_project}"),
        format!("/v1/organisations/{bob_org}"),
        format!("/v1/instances?project={bob_project}"),
    ] {
        let (status, answer) = api.call("GET", &path, Some(&member), None).await;
        assert_eq!(status, 404, "Ann's key GET {path}: {answer}");
    }
    let (_, projects) = api.call("GET", "/v1/projects", Some(&bob), None).await;
    assert_eq!(
        projects["projects"].as_array().unwrap().len(),
        1,
        "{projects}"
    );
    assert_eq!(projects["projects"][0]["id"], bob_project);

    // The operator (the dev key) sees every tenant.
    let (_, all) = api
        .call("GET", "/v1/projects", Some(&fx.fleet.token), None)
        .await;
    for p in [&ann_project, &bob_project] {
        assert!(all.to_string().contains(p.as_str()), "{all}");
    }

    // A revoked key is refused at once; a logged-out session too.
    let member_id = member.split('_').nth(1).unwrap();
    let (status, _) = api
        .call(
            "DELETE",
            &format!("/v1/projects/{ann_project}/keys/{member_id}"),
            Some(&ann),
            None,
        )
        .await;
    assert_eq!(status, 204);
    let (status, _) = api.call("GET", "/v1/instances", Some(&member), None).await;
    assert_eq!(status, 401);
    let (status, _) = api.call("POST", "/v1/logout", Some(&bob), None).await;
    assert_eq!(status, 204);
    let (status, _) = api.call("GET", "/v1/me", Some(&bob), None).await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn a_trial_has_no_gpus_and_at_most_two_instances() {
    let fx = Fixture::start();
    let api = Api {
        base: &fx.fleet.api,
    };
    let (token, _, project) = customer(&fx, &api, "trial@example.com", "Trial SAS").await;
    let create = |flavor: &str| json!({"flavor": flavor, "image": "debian-12", "region": "par"});
    let path = format!("/v1/instances?project={project}");
    let (status, body) = api
        .call("POST", &path, Some(&token), Some(create("gpu-h100-1")))
        .await;
    assert_eq!(status, 402, "{body}");
    assert_eq!(body["type"], "urn:vmcloud:problem:trial-limit");
    assert!(
        body["detail"].as_str().unwrap().contains("no GPU flavors"),
        "{body}"
    );
    for _ in 0..2 {
        let (status, body) = api
            .call("POST", &path, Some(&token), Some(create("vps-s")))
            .await;
        assert!(status == 201 || status == 202, "{body}");
    }
    let (status, body) = api
        .call("POST", &path, Some(&token), Some(create("vps-s")))
        .await;
    assert_eq!(status, 402, "a trial got a third instance: {body}");
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("allows 2 instances"),
        "{body}"
    );
    // A user lists with ?project= beside ?stale= (the console does).
    let (status, body) = api
        .call("GET", &format!("{path}&stale=true"), Some(&token), None)
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["instances"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn log_in_attempts_are_rate_limited_per_account() {
    let fx = Fixture::start();
    let api = Api {
        base: &fx.fleet.api,
    };
    customer(&fx, &api, "guess@example.com", "Guess Ltd").await;
    // `customer` logged in twice; the account's bucket holds 10.
    let wrong = json!({"email": "guess@example.com", "password": "not-the-password-at-all"});
    for n in 0..8 {
        let (status, body) = api
            .call("POST", "/v1/login", None, Some(wrong.clone()))
            .await;
        assert_eq!(status, 401, "attempt {n}: {body}");
    }
    let url = format!("{}/v1/login", fx.fleet.api);
    let resp = super::http().post(&url).json(&wrong).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 429);
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=30).contains(&retry), "Retry-After: {retry}");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["type"], "urn:vmcloud:problem:rate-limited");
    assert!(
        body["detail"].as_str().unwrap().contains("this account"),
        "{body}"
    );
    // Even the right password waits: the bucket counts attempts, not failures.
    let right = json!({"email": "guess@example.com", "password": PASSWORD});
    let (status, _) = api.call("POST", "/v1/login", None, Some(right)).await;
    assert_eq!(status, 429);
    // Each refusal is in the audit trail, with the address and the problem's kind (the log
    // is read as the process writes it: wait for the last line to arrive).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !fx.fleet.logs().contains("status=429") && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let logs = fx.fleet.logs();
    let refused: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("audit") && l.contains("/v1/login"))
        .collect();
    assert!(
        refused.iter().filter(|l| l.contains("status=401")).count() >= 8,
        "{logs}"
    );
    assert!(
        refused.iter().any(|l| l.contains("status=429")
            && l.contains("kind=\"rate-limited\"")
            && l.contains("127.0.0.1")),
        "{logs}"
    );
}

#[tokio::test]
async fn a_project_role_reaches_that_project_only() {
    let fx = Fixture::start();
    let api = Api {
        base: &fx.fleet.api,
    };
    let (ann, ann_org, first) = customer(&fx, &api, "ann@example.io", "Ann Inc").await;
    let (status, second) = api
        .call(
            "POST",
            "/v1/projects",
            Some(&ann),
            Some(json!({"organisation": ann_org, "name": "second"})),
        )
        .await;
    assert_eq!(status, 201, "{second}");
    let second = second["id"].as_str().unwrap().to_owned();
    // A contractor from another organisation, a viewer of the first project only.
    let (carl, _, _) = customer(&fx, &api, "carl@example.io", "Carl Consulting").await;
    let members = format!("/v1/projects/{first}/members");
    let (status, body) = api
        .call(
            "POST",
            &members,
            Some(&ann),
            Some(json!({"email": "carl@example.io", "role": "member"})),
        )
        .await;
    assert_eq!(
        status, 422,
        "an organisation role was taken for a project: {body}"
    );
    let (status, body) = api
        .call(
            "POST",
            &members,
            Some(&ann),
            Some(json!({"email": "carl@example.io", "role": "project-viewer"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["members"][0]["email"], "carl@example.io");
    let (status, _) = api
        .call("GET", &format!("/v1/projects/{first}"), Some(&carl), None)
        .await;
    assert_eq!(status, 200);
    let (status, _) = api
        .call(
            "GET",
            &format!("/v1/instances?project={first}"),
            Some(&carl),
            None,
        )
        .await;
    assert_eq!(status, 200);
    let vm = json!({"flavor": "vps-s", "image": "debian-12", "region": "par"});
    let (status, body) = api
        .call(
            "POST",
            &format!("/v1/instances?project={first}"),
            Some(&carl),
            Some(vm),
        )
        .await;
    assert_eq!(status, 403, "a project viewer deployed: {body}");
    for path in [
        format!("/v1/projects/{second}"),
        format!("/v1/organisations/{ann_org}"),
    ] {
        let (status, body) = api.call("GET", &path, Some(&carl), None).await;
        assert_eq!(status, 404, "{path}: {body}");
    }
    // A key of a project that is deleted stops working at once.
    let (status, key) = api
        .call(
            "POST",
            &format!("/v1/projects/{second}/keys"),
            Some(&ann),
            Some(json!({"name": "tmp", "role": "project-viewer"})),
        )
        .await;
    assert_eq!(status, 201, "{key}");
    let key = key["token"].as_str().unwrap().to_owned();
    let (status, _) = api.call("GET", "/v1/instances", Some(&key), None).await;
    assert_eq!(status, 200);
    let (status, body) = api
        .call(
            "DELETE",
            &format!("/v1/projects/{second}"),
            Some(&ann),
            None,
        )
        .await;
    assert_eq!(status, 204, "{body}");
    let (status, body) = api.call("GET", "/v1/instances", Some(&key), None).await;
    assert_eq!(status, 401, "a key of a deleted project works: {body}");

    let carl_id = body_user(&api, &carl).await;
    let (status, _) = api
        .call("DELETE", &format!("{members}/{carl_id}"), Some(&ann), None)
        .await;
    assert_eq!(status, 204);
    let (status, _) = api
        .call("GET", &format!("/v1/projects/{first}"), Some(&carl), None)
        .await;
    assert_eq!(status, 404);
}

async fn body_user(api: &Api<'_>, token: &str) -> String {
    let (_, me) = api.call("GET", "/v1/me", Some(token), None).await;
    me["user_id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn someone_without_an_account_is_invited_by_mail_and_joins() {
    let fx = Fixture::start();
    let api = Api {
        base: &fx.fleet.api,
    };
    let (ann, org, _) = customer(&fx, &api, "ann@example.eu", "Ann SARL").await;
    let (status, body) = api
        .call(
            "POST",
            &format!("/v1/organisations/{org}/members"),
            Some(&ann),
            Some(json!({"email": "dana@example.eu", "role": "admin"})),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["invited"], "dana@example.eu");
    // The mail carries the link to the invitation page.
    let dir = fx.fleet.data_dir.join("mail");
    let mail = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .find(|m| m.contains("To: dana@example.eu") && m.contains("Join Ann SARL"))
        .expect("an invitation mail");
    let link = mail
        .lines()
        .map(str::trim)
        .find(|l| l.contains("/invite?"))
        .unwrap();
    let query = link.split_once('?').unwrap().1;
    let get = |k: &str| {
        query
            .split('&')
            .find_map(|kv| kv.strip_prefix(&format!("{k}=")))
            .unwrap()
            .to_owned()
    };
    let accept = json!({"org": get("org"), "token": get("token")});
    // Someone else (another address) cannot take it.
    let (eve, _, _) = customer(&fx, &api, "eve@example.eu", "Eve").await;
    let (status, body) = api
        .call(
            "POST",
            "/v1/invitations/accept",
            Some(&eve),
            Some(accept.clone()),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    // Dana signs up with the invited address and takes it, once.
    let (dana, _, _) = customer(&fx, &api, "dana@example.eu", "Dana").await;
    let (status, body) = api
        .call(
            "POST",
            "/v1/invitations/accept",
            Some(&dana),
            Some(accept.clone()),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = api
        .call("POST", "/v1/invitations/accept", Some(&dana), Some(accept))
        .await;
    assert_eq!(status, 422, "an invitation worked twice: {body}");
    let (_, org_now) = api
        .call(
            "GET",
            &format!("/v1/organisations/{org}"),
            Some(&dana),
            None,
        )
        .await;
    let dana_there = org_now["members"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["email"] == "dana@example.eu" && m["role"] == "admin");
    assert!(dana_there, "{org_now}");
}

#[tokio::test]
async fn vmcloud_dev_has_a_demo_customer_to_log_in_as() {
    let fx = Fixture::start();
    let api = Api {
        base: &fx.fleet.api,
    };
    let password = std::fs::read_to_string(fx.fleet.data_dir.join("demo-password")).unwrap();
    let (status, login) = api
        .call(
            "POST",
            "/v1/login",
            None,
            Some(json!({"email": "demo@vmcloud.example", "password": password.trim()})),
        )
        .await;
    assert_eq!(status, 200, "{login}");
    let (_, me) = api
        .call("GET", "/v1/me", login["token"].as_str(), None)
        .await;
    assert_eq!(me["organisations"][0]["name"], "Demo", "{me}");
    assert_eq!(me["projects"].as_array().unwrap().len(), 1, "{me}");
}

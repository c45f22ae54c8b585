//! Single sign-on against a real OpenID provider: panva's `oidc-provider` (npm, in
//! `tests/oidc/`, on the machine's Node.js), configured by this test, and headless Chromium.
//! An owner sets the provider for their organisation; a colleague logs in with SSO and becomes
//! a member just in time; someone whose email is in another domain, a forged `state` and a
//! callback without the browser's round-trip cookie are each refused with what was wrong.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::Locator;
use serde_json::json;

use super::Fixture;
use super::browser::{Shots, browser, click, fill, find_program, start_driver, text, wait_for};
use super::customers::{Api, customer};

const TEST: &str = "dev::sso::colleagues_log_in_through_the_organisations_openid_provider";

struct Provider {
    child: Child,
    issuer: String,
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn oidc_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("oidc")
}

fn start_provider(node: &Path, redirect_uri: &str, secret: &str) -> Provider {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let issuer = format!("http://127.0.0.1:{port}");
    let accounts = json!({
        "ada": {"email": "ada@analytical.example", "email_verified": true},
        "eve": {"email": "eve@elsewhere.example", "email_verified": true},
    });
    let child = Command::new(node)
        .arg(oidc_dir().join("provider.mjs"))
        .current_dir(oidc_dir())
        .env("PORT", port.to_string())
        .env("ISSUER", &issuer)
        .env("CLIENT_ID", "vmcloud-console")
        .env("CLIENT_SECRET", secret)
        .env("REDIRECT_URI", redirect_uri)
        .env("ACCOUNTS", accounts.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("node starts");
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "oidc-provider did not listen in 30 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Provider { child, issuer }
}

/// Logs in at the provider's development form as `login`, and grants consent when asked.
async fn provider_login(c: &fantoccini::Client, shots: &mut Shots, login: &str) {
    // The start page moves on by itself; its link is there if it does not.
    if c.find(Locator::Css("#continue-sso")).await.is_ok()
        && c.find(Locator::Css("input[name=login]")).await.is_err()
    {
        let _ = c
            .find(Locator::Css("#continue-sso"))
            .await
            .unwrap()
            .click()
            .await;
    }
    wait_for(c, "input[name=login]", Duration::from_secs(15)).await;
    fill(c, "input[name=login]", login).await;
    fill(c, "input[name=password]", "any").await;
    shots.take(c, &format!("provider-log-in-{login}")).await;
    click(c, "button[type=submit]").await;
    // Consent (the first time for this client).
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let url = c.current_url().await.unwrap();
        if !url.as_str().contains("/interaction/") {
            break;
        }
        if let Ok(button) = c.find(Locator::Css("button[type=submit]")).await {
            shots.take(c, "provider-consent").await;
            let _ = button.click().await;
        }
        assert!(Instant::now() < deadline, "stuck at the provider: {url}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn colleagues_log_in_through_the_organisations_openid_provider() {
    let node = find_program(&["node", "nodejs"]);
    let installed = oidc_dir().join("node_modules/oidc-provider").is_dir();
    let (Some(node), true, Some(chromium), Some(chromedriver)) = (
        node,
        installed,
        find_program(&["chromium", "chromium-browser", "google-chrome"]),
        find_program(&["chromedriver"]),
    ) else {
        vmcloud_proto::testing::skip(
            TEST,
            "needs node with tests/oidc/node_modules (scripts/test runs npm ci there) and chromium with chromedriver",
        );
        return;
    };
    let fx = Fixture::start();
    let base = fx.fleet.api.clone();
    let api = Api { base: &base };
    let secret = "a-client-secret-of-some-length-0123456789";
    let provider = start_provider(&node, &format!("{base}/sso/callback"), secret);

    // The owner sets the provider up; mistakes are refused with what to fix.
    let (owner, org, _) = customer(&fx, &api, "owner@analytical.example", "Analytical").await;
    let path = format!("/v1/organisations/{org}/sso");
    let config = |issuer: &str, domains: serde_json::Value| {
        json!({"issuer": issuer, "client_id": "vmcloud-console", "client_secret": secret,
               "allowed_domains": domains})
    };
    let (status, body) = api
        .call(
            "PUT",
            &path,
            Some(&owner),
            Some(config("http://127.0.0.1:1", json!(["analytical.example"]))),
        )
        .await;
    assert_eq!(status, 502, "{body}");
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains(".well-known/openid-configuration"),
        "{body}"
    );
    let (status, body) = api
        .call(
            "PUT",
            &path,
            Some(&owner),
            Some(config(&provider.issuer, json!(["not a domain"]))),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    // Set up from the organisation's page, as an owner would.
    let driver = start_driver(&chromedriver).await;
    let c = browser(&driver, &chromium).await;
    let mut shots = Shots::new("sso");
    c.goto(&format!("{base}/login")).await.unwrap();
    fill(&c, "#email", "owner@analytical.example").await;
    fill(&c, "#password", super::customers::PASSWORD).await;
    click(&c, "#login").await;
    wait_for(&c, "#projects", Duration::from_secs(10)).await;
    c.goto(&format!("{base}/console/orgs/{org}")).await.unwrap();
    assert_eq!(
        text(&c, "#redirect-uri").await,
        format!("{base}/sso/callback")
    );
    fill(&c, "#sso-issuer", &provider.issuer).await;
    fill(&c, "#sso-client-id", "vmcloud-console").await;
    fill(&c, "#sso-client-secret", secret).await;
    fill(&c, "#sso-domains", "Analytical.example").await;
    shots.take(&c, "sso-settings").await;
    click(&c, "#sso-save").await;
    wait_for(&c, "p.notice", Duration::from_secs(15)).await;
    shots.take(&c, "sso-saved").await;
    let (_, body) = api
        .call(
            "GET",
            &format!("/v1/organisations/{org}"),
            Some(&owner),
            None,
        )
        .await;
    assert_eq!(body["sso"]["issuer"], provider.issuer.as_str(), "{body}");
    assert_eq!(
        body["sso"]["allowed_domains"],
        json!(["analytical.example"])
    );
    assert_eq!(body["sso"]["default_role"], "member");
    assert!(
        !body.to_string().contains(secret),
        "the API shows the client secret"
    );
    // The client secret is sealed in the replica's files.
    for entry in walk(&fx.fleet.data_dir.join("scheduler")) {
        let bytes = std::fs::read(&entry).unwrap();
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "the OIDC client secret is in clear in {}",
            entry.display()
        );
    }

    // A colleague logs in with SSO: a member on arrival.
    c.delete_all_cookies().await.unwrap();
    c.goto(&format!("{base}/login")).await.unwrap();
    fill(&c, "#sso-email", "ada@analytical.example").await;
    shots.take(&c, "log-in-with-sso").await;
    click(&c, "#sso").await;
    provider_login(&c, &mut shots, "ada").await;
    wait_for(&c, "#projects", Duration::from_secs(15)).await;
    shots.take(&c, "console-after-sso").await;
    assert!(text(&c, "main").await.contains("ada@analytical.example"));
    let (_, org_now) = api
        .call(
            "GET",
            &format!("/v1/organisations/{org}"),
            Some(&owner),
            None,
        )
        .await;
    let ada = org_now["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["email"] == "ada@analytical.example")
        .unwrap_or_else(|| panic!("ada is not a member: {org_now}"));
    assert_eq!(ada["role"], "member");

    // Someone of another domain, through the same provider: refused, nothing made.
    c.delete_all_cookies().await.unwrap();
    c.goto(&format!("{base}/login")).await.unwrap();
    fill(&c, "#sso-email", "ada@analytical.example").await;
    click(&c, "#sso").await;
    provider_login(&c, &mut shots, "eve").await;
    wait_for(&c, "p.problem", Duration::from_secs(15)).await;
    let refusal = text(&c, "p.problem").await;
    assert!(
        refusal.contains("eve@elsewhere.example is not in a domain"),
        "{refusal}"
    );
    shots.take(&c, "other-domain-refused").await;
    let (_, org_now) = api
        .call(
            "GET",
            &format!("/v1/organisations/{org}"),
            Some(&owner),
            None,
        )
        .await;
    assert!(!org_now.to_string().contains("eve@"), "{org_now}");
    c.close().await.unwrap();

    // A forged state, and a callback from a browser that did not start the log-in.
    let http = super::http();
    let started = http
        .get(format!("{base}/v1/sso/start?email=ada@analytical.example"))
        .send()
        .await
        .unwrap();
    assert_eq!(started.status().as_u16(), 200);
    let cookie = started.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let forged = http
        .get(format!("{base}/v1/sso/callback?code=abc&state=forged"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status().as_u16(), 400);
    let body: serde_json::Value = forged.json().await.unwrap();
    assert_eq!(
        body["type"], "urn:vmcloud:problem:sso-state-mismatch",
        "{body}"
    );
    let cold = http
        .get(format!("{base}/v1/sso/callback?code=abc&state=forged"))
        .send()
        .await
        .unwrap();
    let body: serde_json::Value = cold.json().await.unwrap();
    assert_eq!(body["type"], "urn:vmcloud:problem:sso-expired", "{body}");
    let unknown = http
        .get(format!("{base}/v1/sso/start?email=someone@nowhere.example"))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status().as_u16(), 404);
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

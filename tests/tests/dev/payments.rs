//! Card payments and dunning against `localstripe` (PyPI; a stateful fake of Stripe's API that
//! sends signed webhooks), on the test clock: a card saved through a SetupIntent lifts the
//! trial; a declined card is refused at once; the month's invoice is charged off-session and
//! paid; a card that cannot be charged goes through the retries after 1, 3 and 7 days (each
//! mailed), then the organisation is suspended — its instances stopped, no new ones — until a
//! bank transfer pays, which lifts it at once. A forged Stripe webhook is refused.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use super::customers::{Api, PASSWORD, customer};
use super::{Fixture, cli_json, eventually};

const TEST: &str = "dev::payments::cards_pay_and_unpaid_invoices_suspend_until_paid";

pub(super) struct LocalStripe {
    child: Child,
    pub(super) url: String,
}

impl Drop for LocalStripe {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A localstripe and a `vmcloud dev` that takes cards through it; `None` (the test is recorded
/// as skipped, with why) without a Python that has localstripe.
pub(super) async fn fleet_with_localstripe(test: &str) -> Option<(LocalStripe, Fixture)> {
    let Some(python) = vmcloud_tests::python_with("localstripe") else {
        vmcloud_proto::testing::skip(
            test,
            "no Python with localstripe (scripts/test makes .venv with it; or set VMCLOUD_PYTHON)",
        );
        return None;
    };
    let ls = start_localstripe(&python).await;
    let fx = Fixture::start_with(&[
        "--stripe-api",
        &ls.url,
        "--stripe-secret-key",
        "sk_test_vmcloud",
        "--stripe-webhook-secret",
        "whsec_vmcloud_test",
    ]);
    Some((ls, fx))
}

pub(super) async fn start_localstripe(python: &std::path::Path) -> LocalStripe {
    let port = free_port();
    let child = Command::new(python)
        .args([
            "-m",
            "localstripe",
            "--port",
            &port.to_string(),
            "--from-scratch",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("localstripe starts");
    let url = format!("http://127.0.0.1:{port}");
    let ls = LocalStripe { child, url };
    let client = super::http();
    eventually(Duration::from_secs(30), "localstripe to answer", || async {
        client
            .get(format!("{}/v1/customers", ls.url))
            .bearer_auth("sk_test_vmcloud")
            .send()
            .await
            .ok()
            .filter(|r| r.status().is_success())
    })
    .await;
    ls
}

async fn login(api: &Api<'_>, email: &str) -> String {
    let (status, body) = api
        .call(
            "POST",
            "/v1/login",
            None,
            Some(json!({"email": email, "password": PASSWORD})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body["token"].as_str().unwrap().to_owned()
}

fn mails_to(fx: &Fixture, email: &str) -> String {
    let dir = fx.fleet.data_dir.join("mail");
    let mut all = String::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        if text.contains(&format!("To: {email}")) {
            all.push_str(&text);
        }
    }
    all
}

async fn invoices(api: &Api<'_>, token: &str) -> Vec<Value> {
    let (status, list) = api.call("GET", "/v1/invoices", Some(token), None).await;
    assert_eq!(status, 200, "{list}");
    list["invoices"].as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn cards_pay_and_unpaid_invoices_suspend_until_paid() {
    let Some((ls, fx)) = fleet_with_localstripe(TEST).await else {
        return;
    };
    let api = Api {
        base: &fx.fleet.api,
    };
    // localstripe sends its events, signed, to our webhook.
    let hook = super::http()
        .post(format!("{}/_config/webhooks/vmcloud", ls.url))
        .json(
            &json!({"url": format!("{}/v1/stripe/webhook", fx.fleet.api),
                      "secret": "whsec_vmcloud_test"}),
        )
        .send()
        .await
        .unwrap();
    assert!(hook.status().is_success(), "{:?}", hook.text().await);

    super::to_mid_month(&fx);
    let (ann, ann_org, ann_project) = customer(&fx, &api, "ann@example.org", "Acme SAS").await;
    let (bob, bob_org, bob_project) = customer(&fx, &api, "bob@example.org", "Beta SARL").await;

    // A declined card is refused at once, with the reason.
    let (status, body) = api
        .call(
            "POST",
            "/v1/billing/payment-method",
            Some(&ann),
            Some(json!({"card": {"number": "4000000000000002", "exp_month": 12, "exp_year": 2034, "cvc": "123"}})),
        )
        .await;
    assert_eq!(status, 402, "{body}");
    assert_eq!(body["type"], "urn:vmcloud:problem:card-declined", "{body}");
    // Ann's card pays; Bob's is saved but every charge of it fails (Stripe's 4000…0341).
    let (status, body) = api
        .call(
            "POST",
            "/v1/billing/payment-method",
            Some(&ann),
            Some(json!({"card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2034, "cvc": "123"}})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["card"]["last4"], "4242", "{body}");
    let (_, org) = api
        .call(
            "GET",
            &format!("/v1/organisations/{ann_org}"),
            Some(&ann),
            None,
        )
        .await;
    assert_eq!(org["trial"], false, "a saved card lifts the trial: {org}");
    let (status, body) = api
        .call(
            "POST",
            "/v1/billing/payment-method",
            Some(&bob),
            Some(json!({"card": {"number": "4000000000000341", "exp_month": 12, "exp_year": 2034, "cvc": "123"}})),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    for (token, project) in [(&ann, &ann_project), (&bob, &bob_project)] {
        for name in ["web-1", "web-2"] {
            let (status, made) = api
                .call(
                    "POST",
                    &format!("/v1/instances?project={project}"),
                    Some(token),
                    Some(json!({"name": name, "flavor": "vps-m", "image": "debian-12", "region": "par"})),
                )
                .await;
            assert_eq!(status, 201, "{made}");
        }
    }
    let (_, usage) = api.call("GET", "/v1/usage", Some(&ann), None).await;
    let first = usage["from"].as_str().unwrap()[..7].to_owned();
    let next = |p: &str| {
        let (y, m) = p.split_once('-').unwrap();
        let (y, m): (i32, u32) = (y.parse().unwrap(), m.parse().unwrap());
        if m == 12 {
            format!("{}-01", y + 1)
        } else {
            format!("{y}-{:02}", m + 1)
        }
    };
    // Three months on: the third is past the trial credit (2 × 9.20 € due each).
    cli_json(&fx, &["billing", "clock", "93d"]);
    let mut period = first.clone();
    for _ in 0..3 {
        cli_json(&fx, &["billing", "run", &period]);
        period = next(&period);
    }
    let ann = login(&api, "ann@example.org").await;
    let bob = login(&api, "bob@example.org").await;

    // Ann's card is charged and the invoice paid.
    let paid: Value = eventually(
        Duration::from_secs(30),
        "Ann's invoice paid by card",
        || async {
            invoices(&api, &ann)
                .await
                .into_iter()
                .find(|i| i["period"] == next(&next(&first)).as_str() && i["status"] == "paid")
        },
    )
    .await;
    let (_, doc) = api
        .call(
            "GET",
            &format!("/v1/invoices/{}", paid["id"].as_str().unwrap()),
            Some(&ann),
            None,
        )
        .await;
    assert_eq!(doc["payments"][0]["method"], "card", "{doc}");
    assert!(
        doc["payments"][0]["reference"]
            .as_str()
            .unwrap()
            .starts_with("pi_"),
        "{doc}"
    );
    assert_eq!(doc["payments"][0]["amount"], "18.40", "{doc}");

    // Bob's charge fails: retries after 1, 3 and 7 days, each mailed; then the suspension.
    let third = eventually(
        Duration::from_secs(30),
        "Bob's first failed charge",
        || async {
            invoices(&api, &bob)
                .await
                .into_iter()
                .find(|i| i["status"] == "open")
        },
    )
    .await;
    let third_id = third["id"].as_str().unwrap().to_owned();
    let failures = |n: usize| {
        let fx = &fx;
        async move {
            eventually(
                Duration::from_secs(30),
                &format!("failed attempt {n}"),
                || async {
                    let mails = mails_to(fx, "bob@example.org");
                    (mails.matches("Payment failed for invoice").count() >= n.min(3)
                        && (n <= 3 || mails.contains("Account suspended")))
                    .then_some(())
                },
            )
            .await
        }
    };
    failures(1).await;
    for (days, n) in [("1d", 2), ("2d", 3), ("4d", 4)] {
        cli_json(&fx, &["billing", "clock", days]);
        failures(n).await;
    }
    let bob = login(&api, "bob@example.org").await;
    let (_, pm) = api
        .call("GET", "/v1/billing/payment-method", Some(&bob), None)
        .await;
    assert!(
        pm["suspended"]
            .as_str()
            .unwrap_or_default()
            .contains("unpaid after 4 attempts"),
        "{pm}"
    );
    // Suspended: nothing new; its instances stay (stopped, not deleted).
    let (status, body) = api
        .call(
            "POST",
            &format!("/v1/instances?project={bob_project}"),
            Some(&bob),
            Some(
                json!({"name": "web-3", "flavor": "vps-s", "image": "debian-12", "region": "par"}),
            ),
        )
        .await;
    assert_eq!(status, 402, "{body}");
    assert_eq!(body["type"], "urn:vmcloud:problem:suspended", "{body}");
    let (_, list) = api
        .call(
            "GET",
            &format!("/v1/instances?project={bob_project}"),
            Some(&bob),
            None,
        )
        .await;
    assert_eq!(list["instances"].as_array().unwrap().len(), 2, "{list}");

    // A bank transfer pays the invoice: the suspension is lifted at once.
    let (_, doc) = api
        .call("GET", &format!("/v1/invoices/{third_id}"), Some(&bob), None)
        .await;
    let due = doc["totals"]["amount_due"].as_str().unwrap().to_owned();
    cli_json(
        &fx,
        &[
            "billing",
            "pay",
            &third_id,
            "--reference",
            "SEPA-BOB-1",
            "--amount",
            &due,
        ],
    );
    let (_, pm) = api
        .call("GET", "/v1/billing/payment-method", Some(&bob), None)
        .await;
    assert!(pm.get("suspended").is_none(), "{pm}");
    let (status, body) = api
        .call(
            "POST",
            &format!("/v1/instances?project={bob_project}"),
            Some(&bob),
            Some(
                json!({"name": "web-3", "flavor": "vps-s", "image": "debian-12", "region": "par"}),
            ),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let _ = bob_org;

    // A webhook without Stripe's signature changes nothing.
    let forged = super::http()
        .post(format!("{}/v1/stripe/webhook", fx.fleet.api))
        .header("stripe-signature", "t=1,v1=00")
        .body(r#"{"type":"payment_intent.succeeded","data":{"object":{"id":"pi_x","metadata":{"invoice":"x"}}}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 400);
}

//! Monthly plans through a running `vmcloud dev`: a customer sees the plans priced in its
//! currency, takes one (an unknown one is refused with the list), the CLI shows it, the next
//! month's invoice carries the prorated first month and the next month in advance, and a
//! cancellation ends the plan at the end of the month. Another organisation sees none of it.

use serde_json::json;

use super::customers::{Api, PASSWORD, customer};
use super::{Fixture, cli_json};

#[tokio::test]
async fn a_plan_is_taken_billed_ahead_and_cancelled_at_the_months_end() {
    let fx = Fixture::start();
    let api = Api {
        base: &fx.fleet.api,
    };
    let (ann, org, _) = customer(&fx, &api, "ann@example.org", "Acme SAS").await;
    let (bob, _, _) = customer(&fx, &api, "bob@example.org", "Other SARL").await;

    let (status, view) = api.call("GET", "/v1/billing/plan", Some(&ann), None).await;
    assert_eq!(status, 200, "{view}");
    assert!(view["current"].is_null(), "{view}");
    assert_eq!(view["currency"], "EUR");
    let offered: Vec<&str> = view["available"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["plan"].as_str().unwrap())
        .collect();
    assert!(offered.contains(&"game-standard"), "{view}");

    let (status, body) = api
        .call(
            "PUT",
            "/v1/billing/plan",
            Some(&ann),
            Some(json!({"plan": "gold"})),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    let detail = body["detail"].as_str().unwrap();
    assert!(
        detail.contains("no plan `gold`") && detail.contains("support-business"),
        "{body}"
    );

    let (status, view) = api
        .call(
            "PUT",
            "/v1/billing/plan",
            Some(&ann),
            Some(json!({"plan": "support-developer"})),
        )
        .await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["current"]["plan"], "support-developer", "{view}");
    assert_eq!(view["current"]["monthly"], "29.00", "{view}");
    let (status, body) = api
        .call(
            "PUT",
            "/v1/billing/plan",
            Some(&ann),
            Some(json!({"plan": "support-developer"})),
        )
        .await;
    assert_eq!(status, 409, "{body}");
    // Another organisation's plan answers 404.
    let (status, _) = api
        .call(
            "GET",
            &format!("/v1/billing/plan?org={org}"),
            Some(&bob),
            None,
        )
        .await;
    assert_eq!(status, 404);
    let shown = cli_json(&fx, &["billing", "plan", "--org", &org]);
    assert_eq!(shown["current"]["name"], "Developer support", "{shown}");

    // The month ends; its invoice carries the plan's prorated first month and the next
    // month in advance.
    let period = shown["since"].as_str().unwrap()[..7].to_owned();
    cli_json(&fx, &["billing", "clock", "32d"]);
    let run = cli_json(&fx, &["billing", "run", &period]);
    let invoice = run["invoices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["organisation"] == org.as_str())
        .unwrap_or_else(|| panic!("no invoice for {org}: {run}"))
        .clone();
    let id = invoice["id"].as_str().unwrap();
    let full = cli_json(&fx, &["billing", "invoice", id]);
    let lines = full["lines"].as_array().unwrap();
    let fees: Vec<&str> = lines
        .iter()
        .filter(|l| l["kind"] == "fee")
        .map(|l| l["description"].as_str().unwrap())
        .collect();
    assert_eq!(fees.len(), 2, "{full}");
    assert!(fees[0].contains("prorated"), "{fees:?}");
    assert!(fees[1].contains("in advance"), "{fees:?}");

    // Cancelled (logged in again: a login lasts a week of the clock): it runs to the end of
    // this month.
    let (status, login) = api
        .call(
            "POST",
            "/v1/login",
            None,
            Some(json!({"email": "ann@example.org", "password": PASSWORD})),
        )
        .await;
    assert_eq!(status, 200, "{login}");
    let ann = login["token"].as_str().unwrap().to_owned();
    let (status, view) = api
        .call("DELETE", "/v1/billing/plan", Some(&ann), None)
        .await;
    assert_eq!(status, 200, "{view}");
    let ends = view["ends_at"].as_str().expect("an end").to_owned();
    assert!(ends.ends_with("-01T00:00:00Z"), "{view}");
}

/// A household out of hours buys a pack: its hours add to this month's at once, the next
/// invoice bills it once at the book's price; an unknown pack is refused with the list, a
/// company cannot buy one, another organisation cannot buy one for you.
#[tokio::test]
async fn an_hour_pack_adds_hours_at_once_and_is_billed_once() {
    let fx = Fixture::start();
    let api = Api {
        base: &fx.fleet.api,
    };
    let (ann, home, _) = super::customers::household(&fx, &api, "ann@example.org", "Martins").await;
    let (bob, company, _) = customer(&fx, &api, "bob@example.org", "Bob SARL").await;
    let (_, view) = api
        .call("GET", &format!("/v1/households/{home}"), Some(&ann), None)
        .await;
    assert_eq!(view["hours"]["allowed_min"], 600, "{view}");

    let buy = |token: &str, org: &str, pack: &str| {
        let (token, body) = (token.to_owned(), json!({"org": org, "pack": pack}));
        let api = Api { base: api.base };
        async move {
            api.call("POST", "/v1/billing/hour-packs", Some(&token), Some(body))
                .await
        }
    };
    let (status, body) = buy(&ann, &home, "pack-1000h").await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("pack-10h, pack-20h"),
        "{body}"
    );
    let (status, body) = buy(&bob, &company, "pack-10h").await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("for gaming households"),
        "{body}"
    );
    let (status, _) = buy(&bob, &home, "pack-10h").await;
    assert_eq!(status, 404, "another organisation's household is not there");

    // Bought from the command line, with the household's login.
    let cli_home = tempfile::tempdir().unwrap();
    let out = vmcloud_tests::command(cli_home.path())
        .args([
            "billing",
            "hour-pack",
            "pack-10h",
            "--org",
            &home,
            "-o",
            "json",
        ])
        .args(["--api", api.base, "--token", &ann])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bought: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(bought["price"], "4.99", "{bought}");
    assert_eq!(bought["left_min"], 1200, "{bought}");
    let (_, view) = api
        .call("GET", &format!("/v1/households/{home}"), Some(&ann), None)
        .await;
    assert_eq!(view["hours"]["allowed_min"], 1200, "{view}");
    assert_eq!(view["hours"]["packs_min"], 600, "{view}");

    // The month's invoice bills it, once.
    let period = bought["bought_at"].as_str().unwrap()[..7].to_owned();
    cli_json(&fx, &["billing", "clock", "32d"]);
    let run = cli_json(&fx, &["billing", "run", &period]);
    let invoice = run["invoices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["organisation"] == home.as_str())
        .unwrap_or_else(|| panic!("no invoice for {home}: {run}"))
        .clone();
    let full = cli_json(
        &fx,
        &["billing", "invoice", invoice["id"].as_str().unwrap()],
    );
    let packs: Vec<&serde_json::Value> = full["lines"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["description"].as_str().unwrap().contains("pack-10h"))
        .collect();
    assert_eq!(packs.len(), 1, "{full}");
    assert_eq!(packs[0]["amount"], "4.99", "{full}");
    assert_eq!(packs[0]["quantity"], "10 h", "{full}");
}

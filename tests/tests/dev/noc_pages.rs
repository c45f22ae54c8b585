//! The NOC's fleet page through `vmcloud dev` with simulated game hosts: the demo operator it
//! prints (a person of VMCloud's organisation), once they turned on two-step verification, sees every datacenter and the hosts,
//! finds one, opens its page — what runs there and who it belongs to — and drains it after a
//! confirmation that says what will happen to whom; the fleet page then shows it draining.
//! Without two-step verification, or as a customer, the views are refused.

use std::time::Duration;

use serde_json::json;
use totp_rs::TOTP;

use super::browser::{Shots, browser, click, fill, find_program, start_driver, text, wait_for};
use super::customers::{Api, customer};
use super::{Fixture, eventually};

const TEST: &str = "dev::noc_pages::an_operator_drains_a_host_from_the_fleet_page";

fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test]
async fn an_operator_drains_a_host_from_the_fleet_page() {
    let fx = Fixture::start_with(&[
        "--game-hosts",
        "2",
        "--game-host-shape",
        "gpu-2xrtx4090",
        "--gpus",
        "gpu-2xrtx4090",
    ]);
    let base = fx.fleet.api.clone();
    let api = Api { base: &base };
    let operator = fx.fleet.token.clone();

    // A customer sees none of it.
    let (ann, _, _) = customer(&fx, &api, "ann@example.org", "Acme").await;
    let (status, denied) = api.call("GET", "/v1/noc/fleet", Some(&ann), None).await;
    assert_eq!(status, 403, "a customer: {denied}");
    // The demo operator `vmcloud dev` prints.
    let password = std::fs::read_to_string(fx.fleet.data_dir.join("demo-password")).unwrap();
    let password = password.trim().to_owned();
    let login = json!({"email": "noc@vmcloud.example", "password": password});
    let (status, body) = api.call("POST", "/v1/login", None, Some(login)).await;
    assert_eq!(status, 200, "{body}");
    let noc = body["token"].as_str().unwrap().to_owned();
    // Not without two-step verification.
    let (status, body) = api.call("GET", "/v1/noc/fleet", Some(&noc), None).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["type"], "urn:vmcloud:problem:mfa-required", "{body}");
    let (_, enrol) = api.call("POST", "/v1/me/totp", Some(&noc), None).await;
    let app = TOTP::from_url_unchecked(enrol["otpauth_url"].as_str().unwrap()).unwrap();
    let (status, body) = api
        .call(
            "POST",
            "/v1/me/totp/confirm",
            Some(&noc),
            Some(json!({"code": app.generate(now_s())})),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    // The API: both game hosts, and who has work on them (the warm pool's VMs).
    eventually(
        Duration::from_secs(60),
        "the game hosts registered",
        || async {
            let (_, v) = api
                .call("GET", "/v1/noc/fleet?q=game", Some(&operator), None)
                .await;
            (v["matching"] == 2).then_some(())
        },
    )
    .await;
    let (_, fleet) = api
        .call("GET", "/v1/noc/fleet?q=game-par-1", Some(&operator), None)
        .await;
    let host = fleet["hosts"][0]["id"].as_str().unwrap().to_owned();
    assert!(fleet["regions"][0]["gpus"].is_object(), "{fleet}");

    let (Some(chromium), Some(chromedriver)) = (
        find_program(&["chromium", "chromium-browser", "google-chrome"]),
        find_program(&["chromedriver"]),
    ) else {
        vmcloud_proto::testing::skip(
            TEST,
            "no chromium and chromedriver on PATH (scripts/test installs Debian's chromium and chromium-driver as root)",
        );
        return;
    };
    let driver = start_driver(&chromedriver).await;
    let c = browser(&driver, &chromium).await;
    let mut shots = Shots::new("noc");
    c.goto(&format!("{base}/login")).await.unwrap();
    fill(&c, "#email", "noc@vmcloud.example").await;
    fill(&c, "#password", &password).await;
    // A code of a later step than the one confirmed (a code is taken once).
    fill(&c, "#code", &app.generate(now_s() + 30)).await;
    click(&c, "#login").await;
    wait_for(&c, "#projects", Duration::from_secs(10)).await;
    c.goto(&format!("{base}/noc")).await.unwrap();
    // Read once the live summary has come (it replaces the first one: reading before would
    // find stale elements).
    wait_for(
        &c,
        "#summary[data-updated] [data-region='par']",
        Duration::from_secs(10),
    )
    .await;
    assert!(text(&c, "#raft").await.contains("Raft"));
    shots.take(&c, "fleet").await;
    // Search, then the host's page.
    fill(&c, "#q", "game-par-1").await;
    click(&c, "#search").await;
    wait_for(
        &c,
        &format!("tr[data-node='{host}'] a"),
        Duration::from_secs(10),
    )
    .await;
    assert!(text(&c, "#matching").await.contains("1 / 1"));
    click(&c, &format!("tr[data-node='{host}'] a")).await;
    wait_for(&c, "#affected", Duration::from_secs(10)).await;
    shots.take(&c, "host").await;
    click(&c, "#act-draining").await;
    wait_for(&c, "#consequences", Duration::from_secs(10)).await;
    let says = text(&c, "#consequences").await;
    assert!(
        says.contains("spot workloads get their notice now"),
        "{says}"
    );
    fill(&c, "#reason", "fan replacement").await;
    shots.take(&c, "confirm-drain").await;
    click(&c, "#confirm").await;
    wait_for(
        &c,
        "#host-state[data-state='draining']",
        Duration::from_secs(10),
    )
    .await;
    assert!(text(&c, "#state-reason").await.contains("fan replacement"));
    assert!(text(&c, "#drain-deadline").await.contains("Deadline"));
    // The host's events say who drained it and why.
    let events = text(&c, "#events tr[data-action='set_node_state']").await;
    assert!(
        events.contains("→ draining: fan replacement") && events.contains("user:"),
        "{events}"
    );
    shots.take(&c, "draining").await;
    // Its effect: the fleet shows it draining; its warm VMs were told to leave.
    c.goto(&format!("{base}/noc?state=draining")).await.unwrap();
    wait_for(
        &c,
        &format!("tr[data-node='{host}'][data-state='draining']"),
        Duration::from_secs(10),
    )
    .await;
    shots.take(&c, "fleet-draining").await;
    let (_, node) = api
        .call("GET", &format!("/v1/nodes/{host}"), Some(&operator), None)
        .await;
    assert_eq!(node["state"], "draining", "{node}");

    // The local host's GPUs as its agent's NVML (simulated here) reads them, on its page.
    let local = fx.fleet.node.clone();
    eventually(
        Duration::from_secs(30),
        "GPU telemetry in a heartbeat",
        || async {
            let (_, n) = api
                .call("GET", &format!("/v1/nodes/{local}"), Some(&operator), None)
                .await;
            n["telemetry"]["gpus"][0]["temperature_c"]
                .as_u64()
                .map(|_| ())
        },
    )
    .await;
    c.goto(&format!("{base}/noc/hosts/{local}")).await.unwrap();
    wait_for(
        &c,
        "#gpus tr[data-gpu] td.temperature",
        Duration::from_secs(10),
    )
    .await;
    let temperature = text(&c, "#gpus tr[data-gpu] td.temperature").await;
    assert!(temperature.parse::<u32>().is_ok(), "{temperature}");
    // Its GPU and workload tables are live: the server sent their rows over its stream.
    wait_for(
        &c,
        "#gpus[data-updated] tr[data-gpu]",
        Duration::from_secs(10),
    )
    .await;
    wait_for(&c, "#workloads[data-updated]", Duration::from_secs(10)).await;
    shots.take(&c, "host-gpus").await;
}

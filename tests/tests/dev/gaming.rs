//! A gaming household through a running `vmcloud dev`: the catalog of titles, profiles (a
//! kid with a birth year), the parental PIN, entitlements granted by operators, and a kid's
//! launch refused for the library, then for the age rating, unlocked by the PIN (a wrong PIN
//! says how many tries are left) and launched — once. A company is not a household, and
//! another organisation finds nothing of the household's.

use serde_json::json;

use super::customers::{Api, customer, household};
use super::{Fixture, cli_json};

#[tokio::test]
async fn a_kid_is_refused_a_pegi_18_title_until_a_parent_unlocks_it() {
    let fx = Fixture::start();
    let api = Api {
        base: &fx.fleet.api,
    };
    let operator = fx.fleet.token.clone();
    let (ann, home, _) = household(&fx, &api, "ann@example.org", "The Martins").await;
    let (bob, bobs_company, _) = customer(&fx, &api, "bob@example.org", "Bob SARL").await;

    let (status, titles) = api.call("GET", "/v1/titles", Some(&ann), None).await;
    assert_eq!(status, 200, "{titles}");
    let noir = titles["titles"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == "night-city-noir")
        .unwrap_or_else(|| panic!("{titles}"));
    assert_eq!(noir["pegi"], 18);

    let (status, view) = api
        .call("GET", &format!("/v1/households/{home}"), Some(&ann), None)
        .await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["plan"], "free", "{view}");
    assert_eq!(view["hours"]["allowed_min"], 600, "{view}");
    // A company is not a household; the household is nobody else's.
    let (status, body) = api
        .call(
            "GET",
            &format!("/v1/households/{bobs_company}"),
            Some(&bob),
            None,
        )
        .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["type"], "urn:vmcloud:problem:not-a-household");
    let (status, _) = api
        .call("GET", &format!("/v1/households/{home}"), Some(&bob), None)
        .await;
    assert_eq!(status, 404);

    let (status, leo) = api
        .call(
            "POST",
            &format!("/v1/households/{home}/profiles"),
            Some(&ann),
            Some(json!({"name": "Leo", "kid": true, "birth_year": 2016, "daily_limit_min": 90})),
        )
        .await;
    assert_eq!(status, 201, "{leo}");
    assert_eq!(leo["pegi_limit"], 7, "{leo}");
    let leo = leo["id"].as_str().unwrap().to_owned();
    let (status, body) = api
        .call(
            "POST",
            &format!("/v1/households/{home}/profiles"),
            Some(&ann),
            Some(json!({"name": "Zoe", "kid": true, "allowed_hours": [19, 14]})),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("not a span of the day"),
        "{body}"
    );

    let pin = |pin: &str| json!({"pin": pin});
    let (status, body) = api
        .call(
            "PUT",
            &format!("/v1/households/{home}/pin"),
            Some(&ann),
            Some(pin("12ab")),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    let (status, body) = api
        .call(
            "PUT",
            &format!("/v1/households/{home}/pin"),
            Some(&ann),
            Some(pin("4321")),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["pin_set"], true);

    let launch = json!({"profile": leo, "title": "night-city-noir", "region": "par"});
    let launch_path = format!("/v1/households/{home}/launch");
    let (status, body) = api
        .call("POST", &launch_path, Some(&ann), Some(launch.clone()))
        .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["type"], "urn:vmcloud:problem:no-entitlement", "{body}");

    // Entitlements are the operators' (and partners'): the owner cannot grant one.
    let grant = json!({"title": "night-city-noir", "kind": "purchase"});
    let grants = format!("/v1/households/{home}/entitlements");
    let (status, _) = api
        .call("POST", &grants, Some(&ann), Some(grant.clone()))
        .await;
    assert_eq!(status, 403);
    let (status, body) = api
        .call(
            "POST",
            &grants,
            Some(&operator),
            Some(json!({"title": "no-such-game", "kind": "purchase"})),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    let (status, body) = api
        .call("POST", &grants, Some(&operator), Some(grant))
        .await;
    assert_eq!(status, 201, "{body}");

    let (status, body) = api
        .call("POST", &launch_path, Some(&ann), Some(launch.clone()))
        .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["type"], "urn:vmcloud:problem:age-rating", "{body}");
    assert!(body["detail"].as_str().unwrap().contains("PIN"), "{body}");

    let unlock = format!("/v1/households/{home}/unlock");
    let (status, body) = api
        .call(
            "POST",
            &unlock,
            Some(&ann),
            Some(json!({"profile": leo, "title": "night-city-noir", "pin": "0000"})),
        )
        .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["type"], "urn:vmcloud:problem:wrong-pin");
    assert!(
        body["detail"].as_str().unwrap().contains("4 tries left"),
        "{body}"
    );
    let (status, body) = api
        .call(
            "POST",
            &unlock,
            Some(&ann),
            Some(json!({"profile": leo, "title": "night-city-noir", "pin": "4321"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, library) = api
        .call(
            "GET",
            &format!("/v1/households/{home}/library?profile={leo}"),
            Some(&ann),
            None,
        )
        .await;
    assert_eq!(status, 200, "{library}");
    let entry = |id: &str| {
        library["titles"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["id"] == id)
            .unwrap()
            .clone()
    };
    assert_eq!(entry("night-city-noir")["unlocked"], true, "{library}");
    assert_eq!(entry("chess-arena")["playable"], true, "{library}");
    assert!(
        entry("kart-rally")["why_not"]
            .as_str()
            .unwrap()
            .contains("not in the library"),
        "{library}"
    );

    let (status, session) = api
        .call("POST", &launch_path, Some(&ann), Some(launch.clone()))
        .await;
    assert_eq!(status, 201, "{session}");
    assert_eq!(session["title"], "night-city-noir");
    // One session per profile.
    let (status, body) = api
        .call("POST", &launch_path, Some(&ann), Some(launch))
        .await;
    assert_eq!(status, 409, "{body}");
    // The household's view shows Leo and his limits.
    let (_, view) = api
        .call("GET", &format!("/v1/households/{home}"), Some(&ann), None)
        .await;
    assert_eq!(view["profiles"][0]["daily_limit_min"], 90, "{view}");
    assert_eq!(
        view["entitlements"][0]["title"], "night-city-noir",
        "{view}"
    );

    // The same through the CLI (an operator's profile): the catalog, the household, a grant.
    let titles = cli_json(&fx, &["titles"]);
    assert!(titles["titles"].as_array().unwrap().len() >= 5, "{titles}");
    cli_json(
        &fx,
        &[
            "household",
            "grant",
            &home,
            "--title",
            "kart-rally",
            "--player",
            &leo,
        ],
    );
    let shown = cli_json(&fx, &["household", "show", &home]);
    assert_eq!(
        shown["entitlements"].as_array().unwrap().len(),
        2,
        "{shown}"
    );
    let library = cli_json(&fx, &["household", "library", &home, "--player", &leo]);
    let kart = library["titles"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == "kart-rally")
        .unwrap()
        .clone();
    assert_eq!(kart["playable"], true, "{library}");
}

/// The demo gamer of `vmcloud dev`: (password, login token, household id).
pub(super) async fn demo_gamer(fx: &Fixture, api: &Api<'_>) -> (String, String, String) {
    let password = std::fs::read_to_string(fx.fleet.data_dir.join("demo-password")).unwrap();
    let password = password.trim().to_owned();
    let (status, login) = api
        .call(
            "POST",
            "/v1/login",
            None,
            Some(json!({"email": "gamer@vmcloud.example", "password": password})),
        )
        .await;
    assert_eq!(status, 200, "{login}");
    let token = login["token"].as_str().unwrap().to_owned();
    let (_, me) = api.call("GET", "/v1/me", Some(&token), None).await;
    let home = me["organisations"][0]["id"].as_str().unwrap().to_owned();
    (password, token, home)
}

/// `vmcloud dev` has a demo household: its owner logs in, sees two profiles (a kid among
/// them), a library, and the kid refused a PEGI 18 title until the printed PIN unlocks it.
#[tokio::test]
async fn vmcloud_dev_has_a_demo_household() {
    let fx = Fixture::start();
    let api = Api {
        base: &fx.fleet.api,
    };
    let (_, token, home) = demo_gamer(&fx, &api).await;
    let (status, view) = api
        .call("GET", &format!("/v1/households/{home}"), Some(&token), None)
        .await;
    assert_eq!(status, 200, "{view}");
    let names: Vec<&str> = view["profiles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Alex", "Sam"], "{view}");
    assert_eq!(view["pin_set"], true, "{view}");
    let launch = json!({"profile": "pf-demo-sam", "title": "night-city-noir", "region": "par"});
    let (status, body) = api
        .call(
            "POST",
            &format!("/v1/households/{home}/launch"),
            Some(&token),
            Some(launch),
        )
        .await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = api
        .call(
            "POST",
            &format!("/v1/households/{home}/unlock"),
            Some(&token),
            Some(json!({"profile": "pf-demo-sam", "title": "night-city-noir", "pin": "1234"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
}

/// The gamers' portal in Chromium: the demo household's owner picks the kid's profile, sees a
/// PEGI 18 title refused in the library, types a wrong PIN (told the tries left), then the
/// right one, and launches it: the session page shows its place in the queue (the dev fleet
/// has no game GPU free), then the session is ended from the page. In French too.
#[tokio::test]
async fn the_portal_unlocks_a_title_for_a_kid_and_launches_it() {
    use super::browser::{Shots, browser, click, fill, find_program, start_driver, text, wait_for};
    use std::time::Duration;
    const TEST: &str = "dev::gaming::the_portal_unlocks_a_title_for_a_kid_and_launches_it";
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
    let fx = Fixture::start();
    let base = fx.fleet.api.clone();
    let api = Api { base: &base };
    let (password, token, home) = demo_gamer(&fx, &api).await;
    // Sam may play at any hour for this test (the demo's 8:00–21:00 would depend on the clock).
    let (status, body) = api
        .call(
            "PATCH",
            &format!("/v1/households/{home}/profiles/pf-demo-sam"),
            Some(&token),
            Some(json!({"allowed_hours": [0, 0]})),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    let driver = start_driver(&chromedriver).await;
    let c = browser(&driver, &chromium).await;
    let mut shots = Shots::new("play");
    c.goto(&format!("{base}/login")).await.unwrap();
    fill(&c, "#email", "gamer@vmcloud.example").await;
    fill(&c, "#password", &password).await;
    click(&c, "#login").await;
    wait_for(&c, "#projects", Duration::from_secs(10)).await;
    c.goto(&format!("{base}/play")).await.unwrap();
    wait_for(&c, "#profiles", Duration::from_secs(10)).await;
    let profiles = text(&c, "#profiles").await;
    assert!(
        profiles.contains("Alex") && profiles.contains("Sam"),
        "{profiles}"
    );
    assert!(text(&c, "#hours-left").await.contains('h'));
    shots.take(&c, "household").await;

    click(&c, "a[data-profile='pf-demo-sam']").await;
    wait_for(&c, "#library", Duration::from_secs(10)).await;
    let noir = "div.title[data-title='night-city-noir']";
    assert!(
        text(&c, &format!("{noir} .why-not"))
            .await
            .contains("PEGI 18"),
        "{}",
        text(&c, noir).await
    );
    assert!(
        c.find(fantoccini::Locator::Css(&format!("{noir} button.play")))
            .await
            .is_err(),
        "a PEGI 18 title is playable by a kid of nine"
    );
    shots.take(&c, "kid-library").await;
    fill(&c, &format!("{noir} input[name=pin]"), "0000").await;
    click(&c, &format!("{noir} button.unlock")).await;
    wait_for(&c, "#refused", Duration::from_secs(10)).await;
    assert!(text(&c, "#refused").await.contains("4 tries left"));
    shots.take(&c, "wrong-pin").await;
    fill(&c, &format!("{noir} input[name=pin]"), "1234").await;
    click(&c, &format!("{noir} button.unlock")).await;
    wait_for(&c, "p.notice", Duration::from_secs(10)).await;
    click(&c, &format!("{noir} button.play")).await;
    // Read once the live card has come (it replaces the first one).
    wait_for(&c, "#session[data-updated]", Duration::from_secs(10)).await;
    assert_eq!(text(&c, "#session-state").await, "Waiting for a GPU");
    assert_eq!(
        c.find(fantoccini::Locator::Css("#session"))
            .await
            .unwrap()
            .attr("data-state")
            .await
            .unwrap()
            .as_deref(),
        Some("queued")
    );
    assert!(text(&c, "#queue-position").await.contains("1 /"));
    shots.take(&c, "queued").await;
    click(&c, "#end-session").await;
    wait_for(&c, "p.notice", Duration::from_secs(10)).await;

    // Sam asks a parent for Starfield Tactics (PEGI 12); the owner approves it on the
    // household's page; it is playable once.
    c.goto(&format!("{base}/play/{home}/pf-demo-sam"))
        .await
        .unwrap();
    let starfield = "div.title[data-title='starfield-tactics']";
    wait_for(
        &c,
        &format!("{starfield} button.ask"),
        Duration::from_secs(10),
    )
    .await;
    click(&c, &format!("{starfield} button.ask")).await;
    wait_for(&c, "p.notice", Duration::from_secs(10)).await;
    c.goto(&format!("{base}/play/{home}")).await.unwrap();
    wait_for(&c, "#requests", Duration::from_secs(10)).await;
    assert!(
        text(&c, "#requests")
            .await
            .contains("Sam asks for Starfield Tactics")
    );
    shots.take(&c, "request").await;
    click(&c, "#requests button.approve").await;
    wait_for(&c, "p.notice", Duration::from_secs(10)).await;
    assert!(c.find(fantoccini::Locator::Css("#requests")).await.is_err());
    c.goto(&format!("{base}/play/{home}/pf-demo-sam"))
        .await
        .unwrap();
    wait_for(
        &c,
        &format!("{starfield} button.play"),
        Duration::from_secs(10),
    )
    .await;
    // The owner takes Priority+ on the household's page: billed through billing, and the
    // household's fair use (hours, session length, queue tier) follows.
    c.goto(&format!("{base}/play/{home}")).await.unwrap();
    let priority = "div.plan[data-plan='game-priority-plus']";
    wait_for(
        &c,
        &format!("{priority} button.take-plan"),
        Duration::from_secs(10),
    )
    .await;
    assert!(text(&c, "#month").await.contains("free plan"));
    shots.take(&c, "plans").await;
    click(&c, &format!("{priority} button.take-plan")).await;
    wait_for(
        &c,
        &format!("{priority} #current-plan"),
        Duration::from_secs(10),
    )
    .await;
    assert!(text(&c, "#month").await.contains("Gaming Priority+"));
    let (_, view) = api
        .call("GET", &format!("/v1/households/{home}"), Some(&token), None)
        .await;
    assert_eq!(view["plan"], "game-priority-plus", "{view}");
    assert_eq!(view["fair_use"]["tier"], "priority-plus", "{view}");
    shots.take(&c, "priority-plus").await;
    // ... and buys ten more hours: on this month's at once.
    let allowed = view["hours"]["allowed_min"].as_i64().unwrap();
    let pack = "div.pack[data-pack='pack-10h'] button.buy-pack";
    click(&c, pack).await;
    wait_for(&c, "#hours-packs", Duration::from_secs(10)).await;
    assert!(text(&c, "#hours-packs").await.contains("10 h"));
    let (_, view) = api
        .call("GET", &format!("/v1/households/{home}"), Some(&token), None)
        .await;
    assert_eq!(view["hours"]["allowed_min"], allowed + 600, "{view}");
    shots.take(&c, "hour-pack").await;
    c.goto(&format!("{base}/play/{home}?lang=fr"))
        .await
        .unwrap();
    wait_for(&c, "#profiles", Duration::from_secs(10)).await;
    assert!(c.source().await.unwrap().contains("Qui joue ?"));
    assert!(text(&c, "#month").await.contains("Gaming Priority+"));
    shots.take(&c, "household-fr").await;
}

/// On a dev fleet with simulated gaming GPUs: the demo kid launches a free title, it runs, and
/// the portal's connection details (host, port, a one-time token) are taken once by the
/// streaming server — a second use, or another session's token, is refused.
#[tokio::test]
async fn connection_details_are_taken_once() {
    use std::time::Duration;
    let fx = Fixture::start_with(&["--gpus", "gpu-2xrtx4090"]);
    let api = Api {
        base: &fx.fleet.api,
    };
    let (password, token, home) = demo_gamer(&fx, &api).await;
    let (_, view) = api
        .call("GET", &format!("/v1/households/{home}"), Some(&token), None)
        .await;
    let project = view["project"].as_str().unwrap().to_owned();
    let (status, session) = api
        .call(
            "POST",
            &format!("/v1/households/{home}/launch"),
            Some(&token),
            Some(json!({"profile": "pf-demo-alex", "title": "chess-arena", "region": "par"})),
        )
        .await;
    assert_eq!(status, 201, "{session}");
    let id = session["id"].as_str().unwrap().to_owned();
    let connect = format!("/v1/sessions/{id}/connection?project={project}");
    // Not before it runs.
    let (status, body) = api.call("POST", &connect, Some(&token), None).await;
    assert!(
        status == 409 || status == 201,
        "connection details of a session not running: {status} {body}"
    );
    super::eventually(Duration::from_secs(30), "the session running", || async {
        let (_, s) = api
            .call(
                "GET",
                &format!("/v1/sessions/{id}?project={project}"),
                Some(&token),
                None,
            )
            .await;
        (s["state"] == "running").then_some(())
    })
    .await;
    let (status, details) = api.call("POST", &connect, Some(&token), None).await;
    assert_eq!(status, 201, "{details}");
    assert_eq!(details["port"], 47998, "{details}");
    assert!(!details["host"].as_str().unwrap().is_empty(), "{details}");
    let redeem = json!({"session": id, "token": details["token"]});
    let (status, body) = api
        .call("POST", "/v1/stream/redeem", None, Some(redeem.clone()))
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = api
        .call("POST", "/v1/stream/redeem", None, Some(redeem))
        .await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["detail"].as_str().unwrap().contains("was used"),
        "{body}"
    );
    let (status, _) = api
        .call(
            "POST",
            "/v1/stream/redeem",
            None,
            Some(json!({"session": id, "token": "0".repeat(64)})),
        )
        .await;
    assert_eq!(status, 404);

    // The portal's session page gives the same: the host and a fresh one-time token.
    use super::browser::{Shots, browser, click, fill, find_program, start_driver, text, wait_for};
    let (Some(chromium), Some(chromedriver)) = (
        find_program(&["chromium", "chromium-browser", "google-chrome"]),
        find_program(&["chromedriver"]),
    ) else {
        vmcloud_proto::testing::skip(
            "dev::gaming::connection_details_are_taken_once (its pages)",
            "no chromium and chromedriver on PATH (scripts/test installs Debian's chromium and chromium-driver as root)",
        );
        return;
    };
    let driver = start_driver(&chromedriver).await;
    let c = browser(&driver, &chromium).await;
    let mut shots = Shots::new("play-connect");
    let base = fx.fleet.api.clone();
    c.goto(&format!("{base}/login")).await.unwrap();
    fill(&c, "#email", "gamer@vmcloud.example").await;
    fill(&c, "#password", &password).await;
    click(&c, "#login").await;
    wait_for(&c, "#projects", Duration::from_secs(10)).await;
    c.goto(&format!("{base}/play/{home}/sessions/{id}"))
        .await
        .unwrap();
    wait_for(&c, "#connect", Duration::from_secs(10)).await;
    shots.take(&c, "running").await;
    click(&c, "#connect").await;
    wait_for(&c, "#connection", Duration::from_secs(10)).await;
    assert!(text(&c, "#stream-host").await.ends_with(":47998"));
    assert_eq!(text(&c, "#stream-token").await.len(), 64);
    shots.take(&c, "connection").await;
}

/// `vmcloud dev` with one simulated game host of one GPU: its warm pool keeps one VM booted
/// (its minimum of two would need a second GPU). In Chromium, the demo owner launches a title and gets the
/// connection details at once (a warm VM took it; its token is taken by the streaming
/// server); the kid's launch then finds the pool empty and waits in the queue, its page kept
/// live by server-sent events; when the owner ends their session the kid's starts on the
/// freed GPU and the page says so without reloading. `vmcloud warm-pools` counts what it
/// served.
#[tokio::test]
async fn a_warm_vm_serves_a_launch_at_once_and_the_queue_counts_down_live() {
    use super::browser::{Shots, browser, click, find_program, start_driver, text, wait_for};
    use std::time::Duration;
    const TEST: &str =
        "dev::gaming::a_warm_vm_serves_a_launch_at_once_and_the_queue_counts_down_live";
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
    let fx = Fixture::start_with(&["--game-hosts", "1", "--game-host-shape", "gpu-1xrtx4090"]);
    let base = fx.fleet.api.clone();
    let api = Api { base: &base };
    let (password, token, home) = demo_gamer(&fx, &api).await;
    let (status, body) = api
        .call(
            "PATCH",
            &format!("/v1/households/{home}/profiles/pf-demo-sam"),
            Some(&token),
            Some(json!({"allowed_hours": [0, 0]})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    super::eventually(Duration::from_secs(60), "a warm VM booted", || async {
        let pools = cli_json(&fx, &["warm-pools"]);
        (pools["pools"][0]["ready"] == 1).then_some(())
    })
    .await;
    // The NOC sees it too.
    let metrics = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let labels = r#"{region="par",flavor="game-rtx4090",image="game-streaming",pool=""}"#;
    for (name, value) in [
        ("vmcloud_warm_pool_ready_vms", 1),
        ("vmcloud_warm_pool_target_vms", 2),
    ] {
        assert!(
            metrics.contains(&format!("{name}{labels} {value}")),
            "{name} {value} not in /metrics:\n{metrics}"
        );
    }

    let driver = start_driver(&chromedriver).await;
    let c = browser(&driver, &chromium).await;
    let mut shots = Shots::new("play-warm");
    c.goto(&format!("{base}/login")).await.unwrap();
    super::browser::fill(&c, "#email", "gamer@vmcloud.example").await;
    super::browser::fill(&c, "#password", &password).await;
    click(&c, "#login").await;
    wait_for(&c, "#projects", Duration::from_secs(10)).await;
    let chess = "div.title[data-title='chess-arena']";
    c.goto(&format!("{base}/play/{home}/pf-demo-alex"))
        .await
        .unwrap();
    wait_for(&c, &format!("{chess} button.play"), Duration::from_secs(10)).await;
    click(&c, &format!("{chess} button.play")).await;
    // At once: no queue, no boot — where to connect.
    wait_for(&c, "#connection", Duration::from_secs(5)).await;
    assert_eq!(text(&c, "#stream-host").await, "game-par-1:47998");
    let token_alex = text(&c, "#stream-token").await;
    assert_eq!(token_alex.len(), 64);
    shots.take(&c, "warm-connection").await;
    let (_, sessions) = api
        .call("GET", &format!("/v1/households/{home}"), Some(&token), None)
        .await;
    let project = sessions["project"].as_str().unwrap().to_owned();
    let (_, list) = api
        .call(
            "GET",
            &format!("/v1/sessions?project={project}"),
            Some(&token),
            None,
        )
        .await;
    let alex = list["sessions"][0].clone();
    assert_eq!(alex["state"], "running", "{list}");
    let alex_id = alex["id"].as_str().unwrap().to_owned();
    let (status, body) = api
        .call(
            "POST",
            "/v1/stream/redeem",
            None,
            Some(json!({"session": alex_id, "token": token_alex})),
        )
        .await;
    assert_eq!(status, 200, "the warm launch's token is taken: {body}");

    // Sam's launch: the pool is empty (no GPU for another warm VM) — the queue, live.
    c.goto(&format!("{base}/play/{home}/pf-demo-sam"))
        .await
        .unwrap();
    wait_for(&c, &format!("{chess} button.play"), Duration::from_secs(10)).await;
    click(&c, &format!("{chess} button.play")).await;
    // Read once the live card has come (it replaces the first one).
    wait_for(
        &c,
        "#session[data-state='queued'][data-updated]",
        Duration::from_secs(10),
    )
    .await;
    assert!(text(&c, "#queue-position").await.contains("1 / 1"));
    shots.take(&c, "queued").await;
    let (status, body) = api
        .call(
            "DELETE",
            &format!("/v1/sessions/{alex_id}?project={project}"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, 202, "{body}");
    wait_for(
        &c,
        "#session[data-state='running'][data-updated] #connect",
        Duration::from_secs(60),
    )
    .await;
    shots.take(&c, "started-live").await;

    let pools = cli_json(&fx, &["warm-pools"]);
    let pool = &pools["pools"][0];
    assert_eq!(
        (
            pool["launches_last_hour"].as_u64(),
            pool["served_warm_last_hour"].as_u64()
        ),
        (Some(2), Some(1)),
        "{pools}"
    );
    assert!(pool["boot_ms"].as_i64().unwrap() >= 3000, "{pools}");
}

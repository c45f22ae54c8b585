//! Share-Play through `vmcloud dev`: the demo gamer's running session invites a friend from
//! another household — in Chromium the host makes the invite, the friend opens the link
//! (logging in on the way), joins and gets connection details of their own, the host sees
//! them in the live session card and ends it. The API refuses a code used twice, unknown or
//! mistyped, and a guest already playing along; the CLI joins and leaves.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use super::browser::{Shots, browser, click, fill, find_program, start_driver, text, wait_for};
use super::customers::{Api, PASSWORD, household};
use super::{Fixture, eventually};

const TEST: &str = "dev::share_play::a_friend_joins_a_running_session_and_the_host_ends_it";

/// `vmcloud ARGS -o json` from a fresh config home with `token`, which must succeed.
fn cli(home: &Path, api: &str, token: &str, args: &[&str]) -> Value {
    let out = vmcloud_tests::command(home)
        .args(args)
        .args(["--api", api, "--token", token, "-o", "json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "vmcloud {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test]
async fn a_friend_joins_a_running_session_and_the_host_ends_it() {
    let fx = Fixture::start_with(&["--game-hosts", "1", "--game-host-shape", "gpu-2xrtx4090"]);
    let base = fx.fleet.api.clone();
    let api = Api { base: &base };
    let (password, host, home) = super::gaming::demo_gamer(&fx, &api).await;
    let (_, view) = api
        .call("GET", &format!("/v1/households/{home}"), Some(&host), None)
        .await;
    let project = view["project"].as_str().unwrap().to_owned();
    // The friends: another household, with a profile.
    let (zoe, duvals, _) = household(&fx, &api, "zoe@example.org", "The Duvals").await;
    let (status, made) = api
        .call(
            "POST",
            &format!("/v1/households/{duvals}/profiles"),
            Some(&zoe),
            Some(json!({"name": "Zoe"})),
        )
        .await;
    assert_eq!(status, 201, "{made}");
    let zoe_profile = made["id"].as_str().unwrap().to_owned();

    // Alex plays (a warm VM, or a cold boot: either way, running).
    let (status, session) = api
        .call(
            "POST",
            &format!("/v1/households/{home}/launch"),
            Some(&host),
            Some(json!({"profile": "pf-demo-alex", "title": "chess-arena", "region": "par"})),
        )
        .await;
    assert_eq!(status, 201, "{session}");
    let id = session["id"].as_str().unwrap().to_owned();
    let get = format!("/v1/sessions/{id}?project={project}");
    eventually(
        Duration::from_secs(60),
        "Alex's session running",
        || async {
            let (_, s) = api.call("GET", &get, Some(&host), None).await;
            (s["state"] == "running").then_some(())
        },
    )
    .await;
    let share = format!("/v1/sessions/{id}/share-play?project={project}");
    let join = format!("/v1/households/{duvals}/share-play");

    // Bad input first: a mistyped code, an unknown one; a stranger cannot invite.
    let (status, body) = api
        .call(
            "POST",
            &join,
            Some(&zoe),
            Some(json!({"code": "hello", "profile": zoe_profile})),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["type"], "urn:vmcloud:problem:invalid-share-code");
    let (status, body) = api
        .call(
            "POST",
            &join,
            Some(&zoe),
            Some(json!({"code": "ABCD-EFGH", "profile": zoe_profile})),
        )
        .await;
    assert_eq!(status, 404, "{body}");
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("ask them for a new invite"),
        "{body}"
    );
    let (status, _) = api
        .call(
            "POST",
            &format!("/v1/sessions/{id}/share-play"),
            Some(&zoe),
            None,
        )
        .await;
    assert_eq!(status, 404, "another household's session is not there");

    // The API: invite, join (connection details of the guest's own), a second use refused.
    let (status, invite) = api.call("POST", &share, Some(&host), None).await;
    assert_eq!(status, 201, "{invite}");
    let code = invite["code"].as_str().unwrap().to_owned();
    assert!(
        invite["link"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/play/join/{code}")),
        "{invite}"
    );
    let (status, guest) = api
        .call(
            "POST",
            &join,
            Some(&zoe),
            Some(json!({"code": code.to_lowercase().replace('-', ""), "profile": zoe_profile})),
        )
        .await;
    assert_eq!(status, 201, "{guest}");
    assert_eq!(guest["host"], "Alex", "{guest}");
    assert_eq!(guest["session"], id.as_str(), "{guest}");
    let token = guest["connection"]["token"].as_str().unwrap();
    let (status, body) = api
        .call(
            "POST",
            "/v1/stream/redeem",
            None,
            Some(json!({"session": id, "token": token})),
        )
        .await;
    assert_eq!(status, 200, "the guest's token is taken: {body}");
    let (_, seen) = api.call("GET", &get, Some(&host), None).await;
    assert_eq!(seen["share_play"]["guest"], "Zoe", "{seen}");
    let (status, body) = api
        .call(
            "POST",
            &join,
            Some(&zoe),
            Some(json!({"code": code, "profile": zoe_profile})),
        )
        .await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["detail"].as_str().unwrap().contains("was used at"),
        "{body}"
    );

    // The CLI: the guest leaves; the host invites again; the guest joins by the code.
    let cli_home = tempfile::tempdir().unwrap();
    let cli_home = cli_home.path();
    let out = vmcloud_tests::command(cli_home)
        .args(["household", "leave", &duvals, "--player", &zoe_profile])
        .args(["--api", &base, "--token", &zoe])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (_, seen) = api.call("GET", &get, Some(&host), None).await;
    assert!(seen["share_play"].is_null(), "{seen}");
    let (status, invite) = api.call("POST", &share, Some(&host), None).await;
    assert_eq!(status, 201, "{invite}");
    let joined = cli(
        cli_home,
        &base,
        &zoe,
        &[
            "household",
            "join",
            &duvals,
            invite["code"].as_str().unwrap(),
            "--player",
            &zoe_profile,
        ],
    );
    assert_eq!(joined["connection"]["port"], 47998, "{joined}");
    let (status, along) = api.call("GET", &join, Some(&zoe), None).await;
    assert_eq!(status, 200, "{along}");
    assert_eq!(along["playing"][0]["session"], id.as_str(), "{along}");
    // The host ends it.
    let (status, body) = api.call("DELETE", &share, Some(&host), None).await;
    assert_eq!(status, 204, "{body}");
    let (_, along) = api.call("GET", &join, Some(&zoe), None).await;
    assert_eq!(along["playing"], json!([]), "{along}");

    // The portal, in Chromium.
    let (Some(chromium), Some(chromedriver)) = (
        find_program(&["chromium", "chromium-browser", "google-chrome"]),
        find_program(&["chromedriver"]),
    ) else {
        vmcloud_proto::testing::skip(
            &format!("{TEST} (its pages)"),
            "no chromium and chromedriver on PATH (scripts/test installs Debian's chromium and chromium-driver as root)",
        );
        return;
    };
    let driver = start_driver(&chromedriver).await;
    let alex = browser(&driver, &chromium).await;
    let mut shots = Shots::new("share-play");
    alex.goto(&format!("{base}/login")).await.unwrap();
    fill(&alex, "#email", "gamer@vmcloud.example").await;
    fill(&alex, "#password", &password).await;
    click(&alex, "#login").await;
    wait_for(&alex, "#projects", Duration::from_secs(10)).await;
    alex.goto(&format!("{base}/play/{home}/sessions/{id}"))
        .await
        .unwrap();
    wait_for(&alex, "#invite-friend", Duration::from_secs(10)).await;
    click(&alex, "#invite-friend").await;
    wait_for(&alex, "#share-code", Duration::from_secs(10)).await;
    let code = text(&alex, "#share-code").await;
    let link = text(&alex, "#share-link").await;
    assert_eq!(code.len(), 9, "{code}");
    shots.take(&alex, "invite").await;

    // Zoe opens the link: log-in first, then the join form with the code filled in.
    let friend = browser(&driver, &chromium).await;
    friend.goto(&link).await.unwrap();
    wait_for(&friend, "#email", Duration::from_secs(10)).await;
    fill(&friend, "#email", "zoe@example.org").await;
    fill(&friend, "#password", PASSWORD).await;
    click(&friend, "#login").await;
    wait_for(&friend, "#join", Duration::from_secs(10)).await;
    shots.take(&friend, "join-form").await;
    click(&friend, "#join").await;
    wait_for(&friend, "#connection", Duration::from_secs(10)).await;
    assert!(text(&friend, "#guest-with").await.contains("Alex"));
    assert!(text(&friend, "#stream-host").await.ends_with(":47998"));
    shots.take(&friend, "joined").await;

    // Alex's card shows Zoe without a reload; Alex ends it.
    alex.goto(&format!("{base}/play/{home}/sessions/{id}"))
        .await
        .unwrap();
    wait_for(&alex, "#share-guest", Duration::from_secs(10)).await;
    assert!(text(&alex, "#share-guest").await.contains("Zoe"));
    shots.take(&alex, "guest-playing").await;
    click(&alex, "#end-share").await;
    wait_for(&alex, "#invite-friend", Duration::from_secs(10)).await;
    // The same link again: refused, saying why, on the form.
    friend.goto(&link).await.unwrap();
    wait_for(&friend, "#join", Duration::from_secs(10)).await;
    click(&friend, "#join").await;
    wait_for(&friend, "p.problem", Duration::from_secs(10)).await;
    assert!(text(&friend, "p.problem").await.contains("was used at"));
    shots.take(&friend, "used-twice").await;
}

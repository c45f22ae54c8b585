//! Game sessions and accounts through the CLI on `vmcloud dev` (whose host has no GPU, so a
//! launch waits in the launch queue and says why, where it stands).

use std::time::Duration;

use super::{Fixture, cli_fails, cli_json, eventually};

#[tokio::test]
async fn a_launch_waits_in_the_queue_one_per_account_and_tiers_are_set_by_operators() {
    let fx = Fixture::start();
    let launch = [
        "session",
        "launch",
        "--title",
        "chess",
        "--flavor",
        "game-rtx4090",
        "--region",
        "par",
    ];
    let s = cli_json(&fx, &launch);
    let id = s["id"].as_str().unwrap().to_owned();
    assert_eq!(s["state"], "queued", "{s}");
    assert_eq!(s["tier"], "standard");
    assert_eq!(
        (s["position"].as_u64(), s["queue_length"].as_u64()),
        (Some(1), Some(1))
    );
    eventually(Duration::from_secs(10), "the reason it waits", || async {
        let s = cli_json(&fx, &["session", "get", &id]);
        s["pending_reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("no host in par with 1×RTX4090 free"))
            .then_some(())
    })
    .await;

    // One session per account.
    let err = cli_fails(&fx, &launch);
    assert!(
        err.contains(&format!("already has session {id}")) && err.contains("(409)"),
        "{err}"
    );
    // Bad input says what to do.
    let err = cli_fails(
        &fx,
        &[
            "session", "launch", "--title", "chess", "--flavor", "vps-s", "--region", "par",
        ],
    );
    assert!(err.contains("has no GPU; choose one of:"), "{err}");
    let err = cli_fails(
        &fx,
        &[
            "session",
            "launch",
            "--title",
            "chess",
            "--flavor",
            "gpu-h100-1g.10gb",
            "--region",
            "par",
        ],
    );
    assert!(err.contains("game sessions take whole GPUs"), "{err}");

    // The operator makes the account VIP; its next launch carries the tier.
    let err = cli_fails(
        &fx,
        &["account", "set", "acct-dev", "--gaming-tier", "gold"],
    );
    assert!(
        err.contains("choose one of: standard, priority-plus, vip"),
        "{err}"
    );
    let a = cli_json(
        &fx,
        &[
            "account",
            "set",
            "acct-dev",
            "--gaming-tier",
            "vip",
            "--share-weight",
            "3",
        ],
    );
    assert_eq!(
        (a["gaming_tier"].as_str(), a["share_weight"].as_u64()),
        (Some("vip"), Some(3))
    );
    let ended = cli_json(&fx, &["session", "end", &id]);
    assert!(
        ["ended", "ending"].contains(&ended["state"].as_str().unwrap()),
        "{ended}"
    );
    let s = cli_json(&fx, &launch);
    assert_eq!(s["tier"], "vip", "{s}");
    assert_eq!(
        cli_json(&fx, &["session", "list"])["sessions"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // The launches went through the eval broker: delivered, planned and acked, and nothing
    // is stuck.
    eventually(Duration::from_secs(10), "evaluations acked", || async {
        let e = cli_json(&fx, &["cluster", "status"])["evaluations"].clone();
        (e["acked_total"].as_u64() >= Some(2) && e["failed"] == 0).then_some(())
    })
    .await;
}

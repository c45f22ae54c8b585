//! Game sessions and projects through the CLI on `vmcloud dev` (whose host has no GPU, so a
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

    // One session per project.
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

    // The operator makes the project VIP; its next launch carries the tier.
    let err = cli_fails(
        &fx,
        &["project", "set", "acct-dev", "--gaming-tier", "gold"],
    );
    assert!(
        err.contains("choose one of: standard, priority-plus, vip"),
        "{err}"
    );
    let a = cli_json(
        &fx,
        &[
            "project",
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

#[tokio::test]
async fn a_latency_target_picks_the_region_and_sessions_and_jobs_take_a_market() {
    let fx = Fixture::start();
    let base = [
        "session",
        "launch",
        "--title",
        "chess",
        "--flavor",
        "game-rtx4090",
    ];
    let with = |extra: &[&'static str]| -> Vec<&'static str> {
        base.iter().chain(extra.iter()).copied().collect()
    };
    // Nothing within the target: the error lists what was measured.
    let err = cli_fails(
        &fx,
        &with(&["--rtt", "par=40", "--rtt", "fra=50", "--max-latency", "20"]),
    );
    assert!(
        err.contains("no open region is within 20 ms: fra 50 ms, par 40 ms"),
        "{err}"
    );
    let err = cli_fails(&fx, &with(&["--rtt", "nyc=5", "--max-latency", "20"]));
    assert!(err.contains("latency.rtt_ms names region `nyc`"), "{err}");
    let err = cli_fails(
        &fx,
        &with(&[
            "--rtt",
            "par=5",
            "--max-latency",
            "20",
            "--market",
            "reserved",
        ]),
    );
    assert!(err.contains("give region, and drop latency"), "{err}");
    // London is in maintenance: never chosen though nearest; Paris is within 15 ms.
    let s = cli_json(
        &fx,
        &with(&[
            "--rtt",
            "lon=4",
            "--rtt",
            "par=9",
            "--rtt",
            "fra=21",
            "--max-latency",
            "15",
            "--market",
            "spot",
        ]),
    );
    assert_eq!(
        (
            s["region"].as_str(),
            s["rtt_ms"].as_u64(),
            s["market"].as_str()
        ),
        (Some("par"), Some(9), Some("spot")),
        "{s}"
    );
    assert_eq!(s["state"], "queued", "{s}");

    // Jobs: spot, and reserved only on a reservation with a slot per member.
    let job = [
        "job",
        "submit",
        "--flavor",
        "vps-s",
        "--image",
        "debian-12",
        "--region",
        "par",
        "--max-runtime",
        "10m",
        "--members",
        "2",
    ];
    let spot: Vec<&str> = job.iter().copied().chain(["--market", "spot"]).collect();
    let j = cli_json(&fx, &spot);
    assert_eq!(j["market"], "spot", "{j}");
    let reserved: Vec<&str> = job
        .iter()
        .copied()
        .chain(["--market", "reserved"])
        .collect();
    let err = cli_fails(&fx, &reserved);
    assert!(
        err.contains("no active reservation of vps-s in par with 2 free slot(s)")
            && err.contains("(409)"),
        "{err}"
    );
    let notice: Vec<&str> = job.iter().copied().chain(["--notice", "60"]).collect();
    let err = cli_fails(&fx, &notice);
    assert!(
        err.contains("preemption_notice_s applies to spot jobs only"),
        "{err}"
    );
}

/// `vmcloud dev --gpus gpu-2xrtx4090`: the local agent reports simulated GPUs (the real
/// inventory path from agent to scheduler), so game sessions start; a bad shape is refused.
#[tokio::test]
async fn a_dev_fleet_with_simulated_gpus_runs_sessions_on_them() {
    let dir = tempfile::tempdir().unwrap();
    let bad = vmcloud_tests::DevFleet::try_start_with(
        &dir.path().join("data"),
        &dir.path().join("config"),
        &["--gpus", "gpu-8xv100"],
    );
    let Err(failed) = bad else {
        panic!("a bad GPU shape was accepted")
    };
    assert!(
        failed
            .stderr
            .contains("--gpus: unknown host shape `gpu-8xv100`"),
        "{}",
        failed.stderr
    );

    let fx = Fixture::start_with(&["--gpus", "gpu-2xrtx4090"]);
    let nodes = cli_json(&fx, &["node", "list"]);
    let gpus = nodes["nodes"][0]["gpus"].as_array().unwrap().clone();
    assert_eq!(gpus.len(), 2, "{nodes}");
    assert!(gpus.iter().all(|g| g["model"] == "RTX4090"), "{gpus:?}");
    let s = cli_json(
        &fx,
        &[
            "session",
            "launch",
            "--title",
            "chess",
            "--flavor",
            "game-rtx4090",
            "--region",
            "par",
        ],
    );
    let id = s["id"].as_str().unwrap().to_owned();
    eventually(Duration::from_secs(20), "the session running", || async {
        let s = cli_json(&fx, &["session", "get", &id]);
        (s["state"] == "running").then_some(())
    })
    .await;
}

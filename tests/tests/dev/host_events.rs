//! Host events and placement constraints from an operator's seat: `vmcloud node ...` against
//! a running `vmcloud dev`, with the agent's libvirt domains as the witness.

use std::time::Duration;

use serde_json::{Value, json};

use super::{
    Fixture, agent_domains, cli_fails, cli_json, create, eventually, http, instance, wait_state,
};

#[tokio::test]
async fn cordon_pools_and_drain_through_the_cli() {
    let fx = Fixture::start();
    let node = fx.fleet.node.clone();

    let list = cli_json(&fx, &["node", "list"]);
    assert_eq!(list["nodes"][0]["id"], node.as_str());
    assert_eq!(list["nodes"][0]["state"], "ready");

    // Cordoned: a new instance waits and says why; back to ready, it runs.
    let n = cli_json(&fx, &["node", "cordon", &node, "--reason", "disk swap"]);
    assert_eq!(n["state"], "cordoned");
    assert_eq!(n["state_reason"], "disk swap");
    let vps = create(&fx, &[]);
    let waiting = eventually(Duration::from_secs(5), "a pending reason", || async {
        instance(&fx, &vps).await.filter(|i| {
            i["pending_reason"]
                .as_str()
                .is_some_and(|r| r.contains("not ready"))
        })
    })
    .await;
    assert_eq!(waiting["state"], "pending", "{waiting}");
    cli_json(&fx, &["node", "uncordon", &node]);
    wait_state(&fx, &vps, "running").await;

    // A pooled host takes only work that asks for its pool.
    let n = cli_json(
        &fx,
        &["node", "label", &node, "gpu=none", "--pool", "anti-cheat"],
    );
    assert_eq!(n["pools"], json!(["anti-cheat"]));
    assert_eq!(n["labels"], json!({"gpu": "none"}));
    let general = create(&fx, &[]);
    let pooled = create(
        &fx,
        &[
            "--pool",
            "anti-cheat",
            "--selector",
            "gpu=none",
            "--market",
            "spot",
            "--notice",
            "30",
        ],
    );
    let spot = wait_state(&fx, &pooled, "running").await;
    assert_eq!(spot["market"], "spot");
    let general_view = eventually(Duration::from_secs(5), "a pool reason", || async {
        instance(&fx, &general).await.filter(|i| {
            i["pending_reason"]
                .as_str()
                .is_some_and(|r| r.contains("1 in a dedicated pool"))
        })
    })
    .await;
    assert_eq!(general_view["state"], "pending");
    // Deleting what waits removes it at once.
    let out = fx.fleet.cli(&["instance", "delete", &general]);
    assert!(out.status.success());

    // Drain with a 1 s deadline: the spot instance gets its notice cut to the deadline and is
    // reclaimed (its domain goes); the VPS is told and keeps running.
    let n = cli_json(&fx, &["node", "drain", &node, "--deadline", "1s"]);
    assert_eq!(n["state"], "draining");
    assert!(n["drain_deadline"].is_string(), "{n}");
    let told = instance(&fx, &vps).await.unwrap();
    assert!(
        told["notices"][0]["message"]
            .as_str()
            .unwrap()
            .contains("is draining"),
        "{told}"
    );
    let noticed = instance(&fx, &pooled).await.unwrap();
    assert!(noticed["terminate_at"].is_string(), "{noticed}");
    let domain = format!("vmcloud-{pooled}");
    eventually(Duration::from_secs(10), "the spot domain to go", || async {
        let domains = agent_domains(&fx.fleet).await;
        (!domains.iter().any(|(name, _)| name == &domain)).then_some(())
    })
    .await;
    assert_eq!(instance(&fx, &vps).await.unwrap()["state"], "running");

    // Bad input changes nothing and says what to do.
    let err = cli_fails(&fx, &["node", "cordon", "no-such-node"]);
    assert!(err.contains("does not exist"), "{err}");
    let resp = http()
        .patch(format!("{}/v1/nodes/{node}", fx.fleet.api))
        .bearer_auth(&fx.fleet.token)
        .json(&json!({"state": "broken"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 422);
    let problem: Value = resp.json().await.unwrap();
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("choose one of: ready, cordoned, draining, maintenance, down"),
        "{problem}"
    );
    let resp = http()
        .patch(format!("{}/v1/nodes/{node}", fx.fleet.api))
        .bearer_auth(&fx.fleet.token)
        .json(&json!({"state": "cordoned", "drain_deadline_s": 60, "labels": {"a": "b"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 422);
    let after = cli_json(&fx, &["node", "get", &node]);
    assert_eq!(after["state"], "draining", "nothing changed");
    assert_eq!(after["labels"], json!({"gpu": "none"}));
    let err = cli_fails(
        &fx,
        &[
            "instance",
            "create",
            "--flavor",
            "vps-s",
            "--image",
            "debian-12",
            "--region",
            "par",
            "--market",
            "reservd",
        ],
    );
    assert!(
        err.contains("choose one of: on-demand, spot, reserved"),
        "{err}"
    );
}

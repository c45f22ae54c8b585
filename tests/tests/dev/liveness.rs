//! Liveness: a host whose agent stops answering is suspect, then declared down; when most of a
//! datacenter goes silent at once the scheduler suspects the link and declares none down.
//! Agents are real processes killed with `kill -9`.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use vmcloud_tests::vmcloud_bin;

use super::{Fixture, cli_json, eventually};

fn sim_agents(fx: &Fixture, dir: &std::path::Path, node: &str, region: &str, count: &str) -> Child {
    Command::new(vmcloud_bin())
        .args(["agent", "--sim", "--shape", "cpu", "--count", count])
        .args([
            "--node",
            node,
            "--region",
            region,
            "--scheduler",
            &fx.fleet.gateway,
        ])
        .arg("--pki-dir")
        .arg(fx.fleet.data_dir.join("pki"))
        .arg("--data-dir")
        .arg(dir.join(node))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn node(fx: &Fixture, id: &str) -> serde_json::Value {
    cli_json(fx, &["node", "get", id])
}

#[tokio::test]
async fn silent_hosts_go_down_unless_their_whole_datacenter_went_silent() {
    // Heartbeats every 5 s: suspect after 7 s of silence, down after 9 s (+ up to 20 %).
    let fx = Fixture::start_with(&[
        "--suspect-after",
        "7s",
        "--down-after",
        "9s",
        "--liveness-grace",
        "1s",
    ]);
    let dir = tempfile::tempdir().unwrap();
    // One host in par (beside the dev host), three in fra.
    let mut lone = sim_agents(&fx, dir.path(), "lone", "par", "1");
    let mut fra = sim_agents(&fx, dir.path(), "fra", "fra", "3");
    eventually(Duration::from_secs(20), "5 alive nodes", || async {
        let list = cli_json(&fx, &["node", "list"]);
        let nodes = list["nodes"].as_array().unwrap().clone();
        (nodes.len() == 5 && nodes.iter().all(|n| n["liveness"] == "alive")).then_some(())
    })
    .await;

    lone.kill().unwrap();
    fra.kill().unwrap();
    let _ = (lone.wait(), fra.wait());

    let down = eventually(Duration::from_secs(25), "lone declared down", || async {
        let n = node(&fx, "lone");
        (n["state"] == "down").then_some(n)
    })
    .await;
    assert!(
        down["state_reason"]
            .as_str()
            .unwrap()
            .starts_with("no heartbeat from its agent"),
        "{down}"
    );
    // fra went silent as a whole: suspect, alarmed, not down.
    let status = cli_json(&fx, &["cluster", "status"]);
    let alarms = status["partition_alarms"].as_array().unwrap();
    assert_eq!(alarms.len(), 1, "{status}");
    assert_eq!(alarms[0]["region"], "fra");
    assert_eq!(alarms[0]["silent"], 3);
    for i in 1..=3 {
        let n = node(&fx, &format!("fra-{i}"));
        assert_eq!(n["liveness"], "suspect", "{n}");
        assert_ne!(n["state"], "down", "{n}");
    }
    // The dev host answers all along.
    assert_eq!(node(&fx, &fx.fleet.node)["liveness"], "alive");
}

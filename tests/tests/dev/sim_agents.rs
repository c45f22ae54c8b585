//! `vmcloud agent --sim`: simulated hosts of a shape join a running dev fleet over the real
//! wire protocol (QUIC, mutual TLS) and run work like real ones.

use std::process::{Command, Stdio};
use std::time::Duration;

use vmcloud_tests::vmcloud_bin;

use super::{Fixture, cli_json, create_in, eventually, instance, wait_state};

#[tokio::test]
async fn simulated_agents_join_the_dev_fleet_and_run_gpu_work() {
    let fx = Fixture::start();
    let dir = tempfile::tempdir().unwrap();
    let pki = fx.fleet.data_dir.join("pki");
    let agent_args = |shape: &str| {
        let mut cmd = Command::new(vmcloud_bin());
        cmd.args(["agent", "--sim", "--shape", shape, "--count", "20"])
            .args(["--node", "sim", "--scheduler", &fx.fleet.gateway])
            .arg("--pki-dir")
            .arg(&pki)
            .arg("--data-dir")
            .arg(dir.path().join("agents"))
            .stdin(Stdio::null());
        cmd
    };

    // A shape that does not exist is refused before anything starts, with the choices.
    let out = agent_args("gpu-3xfoo").output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unknown host shape `gpu-3xfoo`") && err.contains("h100"),
        "{err}"
    );

    let mut agents = agent_args("gpu-1xh100")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let nodes = eventually(Duration::from_secs(20), "21 ready nodes", || async {
        let list = cli_json(&fx, &["node", "list"]);
        let nodes = list["nodes"].as_array().unwrap().clone();
        (nodes.len() == 21 && nodes.iter().all(|n| n["state"] == "ready")).then_some(nodes)
    })
    .await;
    let sim: Vec<_> = nodes
        .iter()
        .filter(|n| n["id"].as_str().unwrap().starts_with("sim-"))
        .collect();
    assert_eq!(sim.len(), 20);
    // And they stay connected (a link that drops and comes back would show here).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let list = cli_json(&fx, &["node", "list"]);
    let disconnected: Vec<&str> = list["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["connected"] != true)
        .map(|n| n["id"].as_str().unwrap())
        .collect();
    assert!(disconnected.is_empty(), "not connected: {disconnected:?}");
    assert_eq!(sim[0]["gpus"].as_array().unwrap().len(), 1, "{}", sim[0]);

    // GPU work can only go to a simulated host (the dev host has no GPU), and runs there.
    let created = cli_json(
        &fx,
        &[
            "instance",
            "create",
            "--flavor",
            "gpu-h100-1",
            "--image",
            "ubuntu-24.04",
            "--region",
            "par",
        ],
    );
    let id = created["id"].as_str().unwrap();
    let running = wait_state(&fx, id, "running").await;
    assert!(
        running["node"].as_str().unwrap().starts_with("sim-"),
        "{running}"
    );

    // The dev host's own agent reads its telemetry: /metrics in Prometheus' format.
    let metrics = eventually(Duration::from_secs(15), "agent /metrics", || async {
        let resp = reqwest::get(format!("{}/metrics", fx.fleet.agent_api))
            .await
            .ok()?;
        (resp.status() == 200).then_some(())?;
        resp.text().await.ok()
    })
    .await;
    for metric in [
        "vmcloud_agent_cpu_percent{node=",
        "vmcloud_agent_memory_total_bytes{node=",
        "vmcloud_agent_disk_free_bytes{node=",
        "vmcloud_agent_nic_received_bytes_total{node=",
        "vmcloud_agent_domains{node=",
    ] {
        assert!(metrics.contains(metric), "{metric} missing in\n{metrics}");
    }

    // Its summary reaches the scheduler in heartbeats (every 5 s): `vmcloud node get`.
    let node = fx.fleet.node.clone();
    let seen = eventually(
        Duration::from_secs(15),
        "telemetry in the node view",
        || async {
            let n = cli_json(&fx, &["node", "get", &node]);
            n["telemetry"]["memory_total_mib"]
                .as_u64()
                .is_some_and(|m| m > 0)
                .then_some(n)
        },
    )
    .await;
    assert!(
        seen["telemetry"]["disk_total_gib"].as_u64().is_some(),
        "{seen}"
    );

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(agents.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert!(agents.wait().unwrap().success());
}

/// A host holding many instances gets its desired config as deltas after the first (the
/// scheduler counts them on /metrics), and converges exactly: new instances run, deleted ones
/// go.
#[tokio::test]
async fn large_desired_configs_go_as_deltas_and_the_agent_converges() {
    let fx = Fixture::start();
    let dir = tempfile::tempdir().unwrap();
    let mut agent = Command::new(vmcloud_bin())
        .args([
            "agent", "--sim", "--shape", "cpu", "--node", "big", "--region", "ams",
        ])
        .args(["--scheduler", &fx.fleet.gateway])
        .arg("--pki-dir")
        .arg(fx.fleet.data_dir.join("pki"))
        .arg("--data-dir")
        .arg(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    eventually(Duration::from_secs(20), "node big ready", || async {
        let list = cli_json(&fx, &["node", "list"]);
        list["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["id"] == "big" && n["state"] == "ready" && n["connected"] == true)?;
        Some(())
    })
    .await;
    let ids: Vec<String> = (0..20).map(|_| create_in(&fx, "ams", &[])).collect();
    for id in &ids {
        let i = wait_state(&fx, id, "running").await;
        assert_eq!(i["node"], "big");
    }
    for id in &ids[..3] {
        let out = fx.fleet.cli(&["instance", "delete", id]);
        assert!(out.status.success());
    }
    for id in &ids[..3] {
        eventually(Duration::from_secs(15), "deleted instance gone", || async {
            instance(&fx, id).await.is_none().then_some(())
        })
        .await;
    }
    for id in &ids[3..] {
        assert_eq!(instance(&fx, id).await.unwrap()["state"], "running");
    }
    let metrics = reqwest::get(format!("{}/metrics", fx.fleet.api))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let deltas: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("vmcloud_gateway_desired_configs_delta_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0);
    assert!(deltas >= 3.0, "deltas sent: {deltas}\n{metrics}");
    let _ = agent.kill();
    let _ = agent.wait();
}

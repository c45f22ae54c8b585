//! Create, list, get and delete an instance through the HTTP API and through the CLI, and see
//! the libvirt test driver's domain come and go on the agent.

use std::time::Duration;

use serde_json::{Value, json};

use super::{Fixture, agent_domains, eventually, get_json, http, instance_state};

fn rfc3339_ms(s: &str) -> i64 {
    // 2026-11-21T23:59:01.123Z — seconds of the day are enough for a difference within a run.
    let time = s.split('T').nth(1).unwrap().trim_end_matches('Z');
    let mut parts = time.split(':');
    let h: i64 = parts.next().unwrap().parse().unwrap();
    let m: i64 = parts.next().unwrap().parse().unwrap();
    let sec: f64 = parts.next().unwrap().parse().unwrap();
    (h * 3600 + m * 60) * 1000 + (sec * 1000.0).round() as i64
}

#[tokio::test]
async fn instance_lifecycle_through_api_and_cli() {
    let fx = Fixture::start();
    let fleet = &fx.fleet;

    // Version, as `vmcloud --version` prints it.
    let (status, version) = get_json(&format!("{}/v1/version", fleet.api), None).await;
    assert_eq!(status, 200);
    assert_eq!(version["version"], env!("CARGO_PKG_VERSION"));
    assert!(
        version["git_sha"].as_str().is_some_and(|s| !s.is_empty()),
        "{version}"
    );
    let cli_version = String::from_utf8(fleet.cli(&["--version"]).stdout).unwrap();
    assert!(
        cli_version.contains(version["git_sha"].as_str().unwrap()),
        "{cli_version} vs {version}"
    );

    // --- HTTP API ---
    let resp = http()
        .post(format!("{}/v1/instances", fleet.api))
        .bearer_auth(&fleet.token)
        .json(&json!({"flavor": "vps-s", "image": "debian-12", "region": "par", "name": "web-1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 201);
    let location = resp.headers()["location"].to_str().unwrap().to_owned();
    let created: Value = resp.json().await.unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(location, format!("/v1/instances/{id}"));
    assert_eq!(created["name"], "web-1");
    assert_eq!(created["vcpus"], 1);

    eventually(Duration::from_secs(5), "the instance to run", || async {
        (instance_state(fleet, &id).await.as_deref() == Some("running")).then_some(())
    })
    .await;
    let (_, instance) = get_json(
        &format!("{}/v1/instances/{id}", fleet.api),
        Some(&fleet.token),
    )
    .await;
    assert_eq!(instance["node"].as_str(), Some(fleet.node.as_str()));
    let latency = rfc3339_ms(instance["running_at"].as_str().unwrap())
        - rfc3339_ms(instance["created_at"].as_str().unwrap());
    println!("create → running (scheduler timestamps): {latency} ms");
    let domain = format!("vmcloud-{id}");
    assert!(
        agent_domains(fleet)
            .await
            .contains(&(domain.clone(), "running".into()))
    );

    let (status, list) = get_json(&format!("{}/v1/instances", fleet.api), Some(&fleet.token)).await;
    assert_eq!(status, 200);
    assert_eq!(list["instances"].as_array().unwrap().len(), 1);

    let resp = http()
        .delete(format!("{}/v1/instances/{id}", fleet.api))
        .bearer_auth(&fleet.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 202);
    eventually(
        Duration::from_secs(5),
        "the instance to be gone",
        || async { instance_state(fleet, &id).await.is_none().then_some(()) },
    )
    .await;
    assert!(
        !agent_domains(fleet)
            .await
            .iter()
            .any(|(name, _)| *name == domain),
        "the libvirt domain is removed"
    );

    // --- CLI ---
    let out = fleet.cli(&[
        "instance",
        "create",
        "--flavor",
        "vps-s",
        "--image",
        "debian-12",
        "--region",
        "par",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(
        id.starts_with("i-") && id.len() == 22,
        "create prints the id: {id:?}"
    );

    let listed = eventually(
        Duration::from_secs(5),
        "the CLI to list it running",
        || async {
            let out = fleet.cli(&["instance", "list", "-o", "json"]);
            assert!(out.status.success());
            let list: Value = serde_json::from_slice(&out.stdout).unwrap();
            let found = list["instances"]
                .as_array()
                .unwrap()
                .iter()
                .find(|i| i["id"] == id.as_str())
                .cloned();
            found.filter(|i| i["state"] == "running")
        },
    )
    .await;
    assert_eq!(listed["flavor"], "vps-s");

    let table = String::from_utf8(fleet.cli(&["instance", "list"]).stdout).unwrap();
    assert!(table.starts_with("ID "), "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.contains(&id) && l.contains("running") && l.contains(&fleet.node)),
        "{table}"
    );

    let out = fleet.cli(&["instance", "get", &id]);
    assert!(out.status.success());
    let details = String::from_utf8(out.stdout).unwrap();
    assert!(
        details.contains("state:") && details.contains("running"),
        "{details}"
    );
    let out = fleet.cli(&["instance", "get", &id, "-o", "json"]);
    let got: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(got["id"], id.as_str());
    assert!(
        agent_domains(fleet)
            .await
            .contains(&(format!("vmcloud-{id}"), "running".into()))
    );

    let out = fleet.cli(&["instance", "delete", &id, "--wait"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().trim(),
        format!("{id} deleted")
    );
    assert!(
        !agent_domains(fleet)
            .await
            .iter()
            .any(|(name, _)| *name == format!("vmcloud-{id}"))
    );
    let out = fleet.cli(&["instance", "get", &id]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not exist"));

    // Gone from the live state, kept in history: its owner lists it among ended instances,
    // with when and why it ended.
    let ended = eventually(
        std::time::Duration::from_secs(5),
        "the deleted instance in the list of ended instances",
        || async {
            let out = fleet.cli(&["instance", "list", "--ended", "-o", "json"]);
            let list: Value = serde_json::from_slice(&out.stdout).ok()?;
            list["instances"]
                .as_array()?
                .iter()
                .find(|i| i["id"] == id.as_str())
                .cloned()
        },
    )
    .await;
    assert_eq!(ended["state"], "ended", "{ended}");
    assert!(ended["ended_at"].as_str().is_some(), "{ended}");
    assert!(ended["end_reason"].as_str().is_some(), "{ended}");
    let out = fleet.cli(&["instance", "list", "--ended"]);
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(table.contains("ENDED") && table.contains(&id), "{table}");

    // The agent logged the domain coming and going.
    let logs = fleet.logs();
    assert!(
        logs.contains("instance started") && logs.contains("instance removed"),
        "{logs}"
    );
}

#[tokio::test]
async fn idempotency_key_creates_once() {
    let fx = Fixture::start();
    let fleet = &fx.fleet;
    let post = |path: &str, key: &str, body: Value| {
        http()
            .post(format!("{}{path}", fleet.api))
            .bearer_auth(&fleet.token)
            .header("Idempotency-Key", key)
            .json(&body)
            .send()
    };
    let body = json!({"flavor": "vps-m", "image": "ubuntu-24.04", "region": "par"});
    // Retries, one after the other and eight at once: one instance.
    let mut ids = Vec::new();
    for _ in 0..2 {
        let resp = post("/v1/instances", "order-42", body.clone())
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 201);
        assert!(resp.headers().contains_key("x-request-id"));
        let body: Value = resp.json().await.unwrap();
        ids.push(body["id"].as_str().unwrap().to_owned());
    }
    let concurrent =
        futures::future::join_all((0..8).map(|_| post("/v1/instances", "order-43", body.clone())))
            .await;
    for resp in concurrent {
        let resp = resp.unwrap();
        assert_eq!(resp.status().as_u16(), 201);
        let body: Value = resp.json().await.unwrap();
        ids.push(body["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(ids[0], ids[1]);
    assert!(ids[2..].iter().all(|id| *id == ids[2]), "{ids:?}");
    assert_ne!(ids[0], ids[2]);
    let (_, list) = get_json(&format!("{}/v1/instances", fleet.api), Some(&fleet.token)).await;
    assert_eq!(list["instances"].as_array().unwrap().len(), 2);

    // The same key for another request: refused, nothing made.
    let other = json!({"flavor": "vps-s", "image": "ubuntu-24.04", "region": "par"});
    let resp = post("/v1/instances", "order-42", other).await.unwrap();
    assert_eq!(resp.status().as_u16(), 422);
    let problem: Value = resp.json().await.unwrap();
    assert_eq!(
        problem["type"],
        "urn:vmcloud:problem:idempotency-key-reused"
    );
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("different request"),
        "{problem}"
    );
    // A key too long for the contract: a clear 400.
    let resp = post("/v1/instances", &"k".repeat(256), body.clone())
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    let problem: Value = resp.json().await.unwrap();
    assert_eq!(
        problem["type"],
        "urn:vmcloud:problem:invalid-idempotency-key"
    );

    // A secret is shown once: creating an API key again with its key says what was done.
    let (_, projects) = get_json(&format!("{}/v1/projects", fleet.api), Some(&fleet.token)).await;
    let project = projects["projects"][0]["id"].as_str().unwrap().to_owned();
    let key_body = json!({"name": "ci", "role": "project-member"});
    let path = format!("/v1/projects/{project}/keys");
    let first = post(&path, "key-1", key_body.clone()).await.unwrap();
    assert_eq!(first.status().as_u16(), 201);
    let again = post(&path, "key-1", key_body).await.unwrap();
    assert_eq!(again.status().as_u16(), 409);
    let problem: Value = again.json().await.unwrap();
    assert_eq!(
        problem["type"],
        "urn:vmcloud:problem:idempotency-key-replayed"
    );
    assert!(
        problem["detail"].as_str().unwrap().contains("shown once"),
        "{problem}"
    );
}

#[tokio::test]
async fn instance_without_a_host_waits_and_says_why() {
    let fx = Fixture::start();
    let fleet = &fx.fleet;
    // The dev agent is in par: fra has no host, and no host has GPUs.
    for (flavor, region, reason) in [
        ("vps-s", "fra", "no host in region fra yet"),
        ("gpu-h100-1", "par", "no host in par with 1×H100 free"),
        (
            "gpu-h100-1g.10gb",
            "par",
            "no host in par with a free H100 MIG slice 1g.10gb",
        ),
    ] {
        let out = fleet.cli(&[
            "instance",
            "create",
            "--flavor",
            flavor,
            "--image",
            "debian-12",
            "--region",
            region,
        ]);
        assert!(out.status.success());
        let id = String::from_utf8(out.stdout).unwrap().trim().to_owned();
        let got = eventually(Duration::from_secs(5), "a pending reason", || async {
            let (_, i) = get_json(
                &format!("{}/v1/instances/{id}", fleet.api),
                Some(&fleet.token),
            )
            .await;
            i["pending_reason"]
                .as_str()
                .filter(|r| r.starts_with(reason))
                .map(|_| i.clone())
        })
        .await;
        assert_eq!(got["state"], "pending");
        assert!(got["node"].is_null());
        // Deleting something that never got a host removes it at once.
        let out = fleet.cli(&["instance", "delete", &id]);
        assert_eq!(
            String::from_utf8(out.stdout).unwrap().trim(),
            format!("{id} deleted")
        );
    }
}

//! `vmcloud dev` as a new user runs it: a real process, the HTTP API, the CLI, the agent.

mod bad_input;
mod host_events;
mod lifecycle;
mod restart;

use std::time::{Duration, Instant};

use serde_json::Value;
use vmcloud_tests::DevFleet;

/// A fleet in fresh temporary directories (data dir and CLI config home).
pub struct Fixture {
    pub fleet: DevFleet,
    /// Removed when the fixture is dropped, after the fleet.
    _dir: tempfile::TempDir,
}

impl Fixture {
    pub fn start() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let fleet = DevFleet::start(&dir.path().join("data"), &dir.path().join("config"));
        Fixture { fleet, _dir: dir }
    }
}

pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

pub async fn get_json(url: &str, token: Option<&str>) -> (u16, Value) {
    let mut req = http().get(url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// Polls `f` every 10 ms until it returns `Some`, for at most `limit`.
pub async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The domains the agent's libvirt connection sees, by name → state.
pub async fn agent_domains(fleet: &DevFleet) -> Vec<(String, String)> {
    let (status, body) = get_json(&format!("{}/v1/domains", fleet.agent_api), None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["hypervisor_uri"], "test:///default");
    body["domains"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["name"].as_str().unwrap().to_owned(),
                d["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

pub async fn instance_state(fleet: &DevFleet, id: &str) -> Option<String> {
    let (status, body) = get_json(
        &format!("{}/v1/instances/{id}", fleet.api),
        Some(&fleet.token),
    )
    .await;
    (status == 200).then(|| body["state"].as_str().unwrap().to_owned())
}

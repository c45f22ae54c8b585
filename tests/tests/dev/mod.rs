//! `vmcloud dev` as a new user runs it: a real process, the HTTP API, the CLI, the agent.

mod audit;
mod bad_input;
mod billing;
mod browser;
mod cli_customer;
mod customers;
mod gaming;
mod host_events;
mod identity;
mod isolation;
mod jobs;
mod join;
mod lifecycle;
mod liveness;
mod mail;
mod mfa;
mod networks;
mod noc;
mod noc_pages;
mod openapi;
mod pagination;
mod partner_licences;
mod partners;
mod payments;
mod plans;
mod prepaid;
mod quotas;
mod rate_limits;
mod reservations;
mod restart;
mod sessions;
mod share_play;
mod sim_agents;
mod sso;
mod status_page;
mod tokens;
mod vxlan;
mod webhooks;

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

    /// A fleet started with more `vmcloud dev` arguments.
    pub fn start_with(extra: &[&str]) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let fleet =
            DevFleet::try_start_with(&dir.path().join("data"), &dir.path().join("config"), extra)
                .unwrap_or_else(|f| {
                    panic!("vmcloud dev did not start ({}):\n{}", f.status, f.stderr)
                });
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

/// `vmcloud ARGS -o json`, which must succeed; its JSON answer.
pub fn cli_json(fx: &Fixture, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    let out = fx.fleet.cli(&all);
    assert!(
        out.status.success(),
        "vmcloud {args:?} failed: {}\nlast lines of vmcloud dev's log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        fx.fleet.log_tail(40)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

pub fn cli_fails(fx: &Fixture, args: &[&str]) -> String {
    let out = fx.fleet.cli(args);
    assert!(!out.status.success(), "vmcloud {args:?} should fail");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `vmcloud instance create` of a vps-s in par with `extra` flags; the new instance's id.
pub fn create(fx: &Fixture, extra: &[&str]) -> String {
    create_in(fx, "par", extra)
}

/// `vmcloud instance create` of a vps-s in `region` with `extra` flags; the new instance's id.
pub fn create_in(fx: &Fixture, region: &str, extra: &[&str]) -> String {
    let mut args = vec![
        "instance",
        "create",
        "--flavor",
        "vps-s",
        "--image",
        "debian-12",
        "--region",
        region,
    ];
    args.extend(extra);
    cli_json(fx, &args)["id"].as_str().unwrap().to_owned()
}

pub async fn instance(fx: &Fixture, id: &str) -> Option<Value> {
    let resp = http()
        .get(format!("{}/v1/instances/{id}", fx.fleet.api))
        .bearer_auth(&fx.fleet.token)
        .send()
        .await
        .unwrap();
    if resp.status() != 200 {
        return None;
    }
    Some(resp.json().await.unwrap())
}

pub async fn wait_state(fx: &Fixture, id: &str, state: &str) -> Value {
    eventually(
        Duration::from_secs(10),
        &format!("{id} {state}"),
        || async { instance(fx, id).await.filter(|i| i["state"] == state) },
    )
    .await
}

/// Moves a fresh fleet's test clock to the 10th of next month when today is near a month's
/// end or start, so that tests of months of billing (a 30-day trial credit against calendar
/// months) tell the same story whatever day CI runs them. Call it before anyone signs up.
pub fn to_mid_month(fx: &Fixture) {
    let now_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    // Days since 1970-01-01 → (year, month, day) (the civil calendar, proleptic Gregorian).
    let civil = |days: i64| {
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let d = doy - (153 * mp + 2) / 5 + 1;
        let m = if mp < 10 { mp + 3 } else { mp - 9 };
        (yoe + era * 400 + i64::from(m <= 2), m, d)
    };
    let today = now_s / 86_400;
    let (_, _, day) = civil(today);
    if (5..=20).contains(&day) {
        return;
    }
    let mut ahead = 1;
    while civil(today + ahead).2 != 10 {
        ahead += 1;
    }
    cli_json(fx, &["billing", "clock", &format!("{ahead}d")]);
}

//! `vmcloud bench webhooks`: webhook deliveries per second and the time from commit to
//! delivery, against a running fleet (`vmcloud dev`). A receiver in this process (it checks
//! every signature) gets an endpoint of the caller's project; `--jobs` jobs of `--members`
//! members wait in a region without hosts, then all are cancelled at once: every member's
//! removal is an `instance.state_changed` event the leader delivers. Prints the figures beside
//! the DESIGN.md §6 budget and, last, a JSON line.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use reqwest::Method;
use serde_json::{Value, json};

use super::percentile;
use crate::client::{Client, ClientArgs};

const BUDGET_PER_S: f64 = 2_000.0;
const BUDGET_P99_MS: f64 = 1_000.0;

#[derive(Debug, Args)]
pub struct WebhookBenchArgs {
    /// Jobs cancelled at once (each cancel is one command and `--members` events).
    #[arg(long, default_value_t = 100)]
    pub jobs: usize,
    /// Members per job (1 to 64).
    #[arg(long, default_value_t = 50)]
    pub members: u32,
    /// A region of the catalog without hosts (the jobs wait there).
    #[arg(long, default_value = "lon")]
    pub region: String,
}

/// What the receiver saw: event id → (when it arrived, ms from the event's time to then).
type Seen = Arc<Mutex<HashMap<String, (Instant, f64)>>>;

/// The receiver's state: what it saw, the signing key, deliveries that did not verify.
type Receiver = (Seen, Arc<Mutex<Vec<u8>>>, Arc<Mutex<u64>>);

async fn receive(
    axum::extract::State((seen, key, bad)): axum::extract::State<Receiver>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> axum::http::StatusCode {
    let at = Instant::now();
    let h = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let (id, ts, signature) = (
        h("webhook-id"),
        h("webhook-timestamp"),
        h("webhook-signature"),
    );
    let key = key.lock().expect("key").clone();
    let expected =
        vmcloud_scheduler::webhooks::sign::signature(&key, &id, ts.parse().unwrap_or(0), &body);
    if expected != signature {
        *bad.lock().expect("bad") += 1;
        return axum::http::StatusCode::BAD_REQUEST;
    }
    // The event's time is the command's (stamped when it was proposed, just before its
    // commit): the latency is from then to here, an upper bound of commit → delivery.
    let event_ms = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v["timestamp"].as_str().map(str::to_owned))
        .and_then(|t| {
            time::OffsetDateTime::parse(&t, &time::format_description::well_known::Rfc3339).ok()
        })
        .map_or(0, |t| (t.unix_timestamp_nanos() / 1_000_000) as i64);
    let latency = (vmcloud_scheduler::clock::now_ms() - event_ms).max(0) as f64;
    seen.lock()
        .expect("seen")
        .entry(id)
        .or_insert((at, latency));
    axum::http::StatusCode::NO_CONTENT
}

pub async fn webhooks(client_args: ClientArgs, args: WebhookBenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        (1..=64).contains(&args.members) && args.jobs > 0,
        "--members is 1 to 64 and --jobs at least 1"
    );
    let client = Client::new(&client_args)?;
    let seen: Seen = Arc::default();
    let key: Arc<Mutex<Vec<u8>>> = Arc::default();
    let bad: Arc<Mutex<u64>> = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(receive))
        .with_state((seen.clone(), key.clone(), bad.clone()));
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let made = client
        .call(
            Method::POST,
            "/v1/webhook-endpoints",
            Some(json!({"url": format!("http://127.0.0.1:{port}/hook"),
                "event_types": ["instance.state_changed"], "description": "vmcloud bench webhooks"})),
            false,
        )
        .await?
        .unwrap_or_default();
    let endpoint = made["id"].as_str().context("no endpoint id")?.to_owned();
    *key.lock().expect("key") =
        vmcloud_scheduler::webhooks::sign::key_of(made["secret"].as_str().context("no secret")?)
            .context("not a whsec_ secret")?;
    let result = run(&client, &args, &seen).await;
    let _ = client
        .call(
            Method::DELETE,
            &format!("/v1/webhook-endpoints/{endpoint}"),
            None,
            true,
        )
        .await;
    server.abort();
    let (per_s, p50, p99, delivered, wanted) = result?;
    let refused = *bad.lock().expect("bad");
    println!(
        "{delivered} of {wanted} events delivered ({refused} with a bad signature): {per_s:.0}/s (budget ≥ {BUDGET_PER_S:.0}/s)"
    );
    println!(
        "commit → delivery: p50 {p50:.0} ms, p99 {p99:.0} ms (budget p99 ≤ {BUDGET_P99_MS:.0} ms)"
    );
    println!(
        "{}",
        json!({"events": wanted, "delivered": delivered, "bad_signatures": refused,
            "deliveries_per_s": per_s, "p50_ms": p50, "p99_ms": p99})
    );
    if refused > 0 {
        bail!("{refused} deliveries had a signature that does not verify");
    }
    Ok(())
}

async fn run(
    client: &Client,
    args: &WebhookBenchArgs,
    seen: &Seen,
) -> anyhow::Result<(f64, f64, f64, usize, usize)> {
    // The jobs, waiting where no host is.
    let mut jobs: Vec<(String, usize)> = Vec::new();
    for _ in 0..args.jobs {
        let job = client
            .call(
                Method::POST,
                "/v1/jobs",
                Some(
                    json!({"flavor": "vps-s", "image": "debian-12", "region": args.region,
                    "members": args.members, "max_runtime_s": 3600}),
                ),
                false,
            )
            .await?
            .unwrap_or_default();
        let id = job["id"].as_str().context("no job id")?.to_owned();
        let members = job["instances"].as_array().map_or(0, Vec::len);
        jobs.push((id, members));
    }
    let wanted = args.jobs * args.members as usize;
    println!(
        "{} jobs of {} members waiting in {}; cancelling them all…",
        args.jobs, args.members, args.region
    );
    // Cancel all at once.
    let started = Instant::now();
    let mut cancels = tokio::task::JoinSet::new();
    for (job, _) in &jobs {
        let (client, job) = (client.clone(), job.clone());
        cancels.spawn(async move {
            client
                .call(Method::DELETE, &format!("/v1/jobs/{job}"), None, false)
                .await
        });
    }
    while let Some(done) = cancels.join_next().await {
        done??;
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while seen.lock().expect("seen").len() < wanted && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let seen = seen.lock().expect("seen").clone();
    let last = seen.values().map(|(at, _)| *at).max().unwrap_or(started);
    let per_s = seen.len() as f64 / last.duration_since(started).as_secs_f64().max(1e-3);
    let mut latencies: Vec<f64> = seen.values().map(|(_, ms)| *ms).collect();
    latencies.sort_by(f64::total_cmp);
    Ok((
        per_s,
        percentile(&latencies, 50.0),
        percentile(&latencies, 99.0),
        seen.len(),
        wanted,
    ))
}

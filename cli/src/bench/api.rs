//! `vmcloud bench api`: authenticated reads against a running fleet (`vmcloud dev`, or each
//! replica of a group). Makes `--keys` API keys in the caller's project (read-only, revoked at
//! the end) and spreads the reads over them, so key lookups are part of every request; then
//! `--concurrency` clients read until `--reads` are done, per replica. Prints reads/s and
//! latency beside the DESIGN.md §6 budget and, last, a JSON line.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use reqwest::Method;
use serde_json::json;

use super::percentile;
use crate::client::{Client, ClientArgs};

/// DESIGN.md §6: authenticated API reads per replica.
const BUDGET_READS_PER_S: f64 = 5_000.0;
const BUDGET_P99_MS: f64 = 20.0;

#[derive(Debug, Args)]
pub struct ApiBenchArgs {
    /// Reads per replica.
    #[arg(long, default_value_t = 100_000)]
    pub reads: usize,
    /// API keys to spread the reads over (made for the run, revoked after).
    #[arg(long, default_value_t = 100)]
    pub keys: usize,
    /// Reads in flight at once.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// What to read.
    #[arg(long, default_value = "/v1/instances")]
    pub path: String,
    /// Another replica's API address to measure too (repeat); default: the profile's API only.
    #[arg(long = "replica")]
    pub replicas: Vec<String>,
}

struct ReplicaFigures {
    api: String,
    reads_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

async fn measure(
    api: &str,
    keys: &[String],
    args: &ApiBenchArgs,
) -> anyhow::Result<ReplicaFigures> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(args.concurrency)
        .build()?;
    let url = format!("{api}{}", args.path);
    // Warm the connections and the replica.
    for key in keys.iter().take(args.concurrency) {
        http.get(&url)
            .bearer_auth(key)
            .send()
            .await?
            .error_for_status()?;
    }
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..args.concurrency {
        let (http, url, next) = (http.clone(), url.clone(), next.clone());
        let keys = keys.to_vec();
        let total = args.reads;
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= total {
                    return Ok::<_, anyhow::Error>(latencies);
                }
                let t0 = Instant::now();
                let response = http
                    .get(&url)
                    .bearer_auth(&keys[n % keys.len()])
                    .send()
                    .await?;
                let status = response.status();
                let _ = response.bytes().await?;
                if !status.is_success() {
                    bail!("read {n} answered {status}");
                }
                latencies.push(t0.elapsed().as_secs_f64() * 1000.0);
            }
        }));
    }
    let mut all = Vec::with_capacity(args.reads);
    for t in tasks {
        all.extend(t.await.context("a reader panicked")??);
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort_by(f64::total_cmp);
    Ok(ReplicaFigures {
        api: api.to_owned(),
        reads_per_s: all.len() as f64 / elapsed,
        p50_ms: percentile(&all, 50.0),
        p99_ms: percentile(&all, 99.0),
        max_ms: all.last().copied().unwrap_or(f64::NAN),
    })
}

pub async fn api(client_args: ClientArgs, args: ApiBenchArgs) -> anyhow::Result<()> {
    if args.reads == 0 || args.keys == 0 || args.concurrency == 0 {
        bail!("--reads, --keys and --concurrency must be at least 1");
    }
    let client = Client::new(&client_args)?;
    let me = client
        .call(Method::GET, "/v1/me", None, false)
        .await?
        .unwrap_or_default();
    let project = me["projects"][0]["id"]
        .as_str()
        .context("the caller has no project to make keys in (use a project's API key)")?
        .to_owned();
    eprintln!(
        "making {} read-only API keys in project {project}",
        args.keys
    );
    let mut keys = Vec::with_capacity(args.keys);
    let mut key_ids = Vec::with_capacity(args.keys);
    for n in 0..args.keys {
        let made = client
            .call(
                Method::POST,
                &format!("/v1/projects/{project}/keys"),
                Some(json!({"name": format!("bench-api-{n}"), "role": "project-viewer"})),
                false,
            )
            .await?
            .unwrap_or_default();
        keys.push(made["token"].as_str().context("no token")?.to_owned());
        key_ids.push(made["id"].as_str().context("no id")?.to_owned());
    }
    let mut apis = vec![client.api().to_owned()];
    apis.extend(args.replicas.iter().cloned());
    let mut figures = Vec::new();
    let mut failed = None;
    for api in &apis {
        eprintln!(
            "{} reads of {} on {api}, {} at a time",
            args.reads, args.path, args.concurrency
        );
        match measure(api, &keys, &args).await {
            Ok(f) => figures.push(f),
            Err(e) => {
                failed = Some(e.context(format!("reading from {api}")));
                break;
            }
        }
    }
    for id in &key_ids {
        client
            .call(
                Method::DELETE,
                &format!("/v1/projects/{project}/keys/{id}"),
                None,
                true,
            )
            .await?;
    }
    if let Some(e) = failed {
        return Err(e);
    }
    println!(
        "authenticated reads: GET {} with {} API keys, {} in flight",
        args.path, args.keys, args.concurrency
    );
    println!(
        "{:<28} {:>10} {:>8} {:>8} {:>8}   budget",
        "replica", "reads/s", "p50 ms", "p99 ms", "max ms"
    );
    for f in &figures {
        println!(
            "{:<28} {:>10.0} {:>8.2} {:>8.2} {:>8.1}   ≥ {BUDGET_READS_PER_S:.0}/s, p99 ≤ {BUDGET_P99_MS} ms",
            f.api, f.reads_per_s, f.p50_ms, f.p99_ms, f.max_ms
        );
    }
    let worst_rate = figures
        .iter()
        .map(|f| f.reads_per_s)
        .fold(f64::INFINITY, f64::min);
    let worst_p99 = figures.iter().map(|f| f.p99_ms).fold(0.0, f64::max);
    println!(
        "{}",
        json!({
            "benchmark": "api_reads",
            "path": args.path,
            "reads": args.reads,
            "keys": args.keys,
            "concurrency": args.concurrency,
            "replicas": figures.iter().map(|f| json!({
                "api": f.api, "reads_per_s": f.reads_per_s, "p50_ms": f.p50_ms, "p99_ms": f.p99_ms,
            })).collect::<Vec<_>>(),
            "reads_per_s": worst_rate,
            "p99_ms": worst_p99,
            "budget_reads_per_s": BUDGET_READS_PER_S,
            "budget_p99_ms": BUDGET_P99_MS,
        })
    );
    Ok(())
}

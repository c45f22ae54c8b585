//! `vmcloud bench create`: measures API create → running against a running fleet (start one
//! with `vmcloud dev`). Each round creates an instance, polls it until the agent reports it
//! running, deletes it and waits until it is gone, so the figure does not depend on the dev
//! host's capacity. Prints a table beside the DESIGN.md §6 budget and, last, a JSON line.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use reqwest::Method;
use serde_json::{Value, json};

use super::percentile;
use crate::client::{Client, ClientArgs};

/// DESIGN.md §6: API create → VM defined and started on the agent (libvirt test driver).
const BUDGET_P99_MS: f64 = 50.0;

#[derive(Debug, Args)]
pub struct CreateBenchArgs {
    /// Instances to create, one after the other.
    #[arg(long, default_value_t = 200)]
    pub count: usize,
    #[arg(long, default_value = "vps-s")]
    pub flavor: String,
    #[arg(long, default_value = "debian-12")]
    pub image: String,
    #[arg(long, default_value = "par")]
    pub region: String,
}

fn parse_ms(v: &Value) -> Option<i128> {
    let t =
        time::OffsetDateTime::parse(v.as_str()?, &time::format_description::well_known::Rfc3339)
            .ok()?;
    Some(t.unix_timestamp_nanos() / 1_000_000)
}

pub async fn create(client_args: ClientArgs, args: CreateBenchArgs) -> anyhow::Result<()> {
    if args.count == 0 {
        bail!("--count must be at least 1");
    }
    let client = Client::new(&client_args)?;
    let body = json!({ "flavor": args.flavor, "image": args.image, "region": args.region });
    let mut observed = Vec::with_capacity(args.count);
    let mut stamped = Vec::with_capacity(args.count);
    let started = Instant::now();
    for round in 0..args.count {
        let t0 = Instant::now();
        let created = client
            .call(Method::POST, "/v1/instances", Some(body.clone()), false)
            .await?
            .context("the API returned no instance")?;
        let id = created["id"]
            .as_str()
            .context("no id in the answer")?
            .to_owned();
        let path = format!("/v1/instances/{id}");
        let instance = loop {
            let i = client
                .call(Method::GET, &path, None, true)
                .await?
                .context("the instance vanished")?;
            match i["state"].as_str() {
                Some("running") => break i,
                Some("failed") => bail!("instance {id} failed: {}", i["status_message"]),
                _ if t0.elapsed() > Duration::from_secs(10) => {
                    bail!("instance {id} not running after 10 s: {i}")
                }
                _ => tokio::time::sleep(Duration::from_millis(1)).await,
            }
        };
        observed.push(t0.elapsed().as_secs_f64() * 1000.0);
        if let (Some(c), Some(r)) = (
            parse_ms(&instance["created_at"]),
            parse_ms(&instance["running_at"]),
        ) {
            stamped.push((r - c) as f64);
        }
        client.call(Method::DELETE, &path, None, true).await?;
        while client.call(Method::GET, &path, None, true).await?.is_some() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        if (round + 1) % 50 == 0 {
            eprintln!("{} / {} instances", round + 1, args.count);
        }
    }
    let elapsed = started.elapsed();
    observed.sort_by(f64::total_cmp);
    stamped.sort_by(f64::total_cmp);
    println!(
        "API create → running ({} instances of {}, one at a time, {:.1} s)",
        args.count,
        args.flavor,
        elapsed.as_secs_f64()
    );
    println!(
        "{:<44} {:>8} {:>8} {:>8} {:>14}",
        "measure", "p50 ms", "p99 ms", "max ms", "budget p99 ms"
    );
    for (name, xs) in [
        ("client: POST sent → GET shows running", &observed),
        ("scheduler: created_at → running_at", &stamped),
    ] {
        println!(
            "{name:<44} {:>8.1} {:>8.1} {:>8.1} {:>14}",
            percentile(xs, 50.0),
            percentile(xs, 99.0),
            xs.last().copied().unwrap_or(f64::NAN),
            BUDGET_P99_MS
        );
    }
    println!(
        "{}",
        json!({
            "benchmark": "create_to_running",
            "count": args.count,
            "client_p50_ms": percentile(&observed, 50.0),
            "client_p99_ms": percentile(&observed, 99.0),
            "server_p50_ms": percentile(&stamped, 50.0),
            "server_p99_ms": percentile(&stamped, 99.0),
            "budget_p99_ms": BUDGET_P99_MS,
        })
    );
    Ok(())
}

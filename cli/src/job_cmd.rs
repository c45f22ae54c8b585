//! `vmcloud job ...`: AI batch jobs — submit, list, get, cancel.

use std::time::Duration;

use anyhow::anyhow;
use clap::Subcommand;
use reqwest::Method;
use serde_json::{Value, json};

use crate::bench::parse_duration;
use crate::client::{Client, ClientArgs, Output, print_rows};

#[derive(Debug, Subcommand)]
pub enum JobCommand {
    /// Queue a job; prints its id. Its members start together and are stopped at the
    /// maximum run time.
    Submit {
        /// Flavor of each member, e.g. gpu-h100-8.
        #[arg(long)]
        flavor: String,
        #[arg(long)]
        image: String,
        #[arg(long)]
        region: String,
        /// How long each member may run (e.g. 90m, 6h; 1m to 7d).
        #[arg(long, value_parser = parse_duration)]
        max_runtime: Duration,
        /// Members started together (a gang).
        #[arg(long, default_value_t = 1)]
        members: u32,
        /// low, normal or high.
        #[arg(long, default_value = "normal")]
        priority: String,
        #[arg(long)]
        name: Option<String>,
        /// `on-demand`, `spot` (cheaper; preempted with notice when the GPUs are needed, then
        /// queued again) or `reserved` (one slot of your reservation per member).
        #[arg(long, default_value = "on-demand")]
        market: String,
        /// Reserved: the reservation to draw on (default: your active one for this flavor and
        /// region with a slot free for every member).
        #[arg(long)]
        reservation: Option<String>,
        /// Spot: seconds of notice before a preemption stops it (30 to 3600).
        #[arg(long)]
        notice: Option<u32>,
    },
    /// List your jobs, with queue position and estimated start.
    List,
    /// Show one job.
    Get { id: String },
    /// Cancel a job: its members are deleted.
    Cancel { id: String },
}

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or("-")
}

fn print_job(j: &Value) {
    for key in [
        "id",
        "name",
        "state",
        "priority",
        "market",
        "region",
        "flavor",
        "estimated_start",
        "pending_reason",
        "ends_by",
        "submitted_at",
    ] {
        if let Some(v) = j[key].as_str() {
            println!("{:<16} {v}", format!("{key}:"));
        }
    }
    if let Some(p) = j["position"].as_u64() {
        println!("{:<16} {p} of {}", "position:", j["queue_length"]);
    }
    for i in j["instances"].as_array().into_iter().flatten() {
        println!("{:<16} {}", "instance:", i.as_str().unwrap_or("-"));
    }
}

pub async fn run(args: ClientArgs, command: JobCommand) -> anyhow::Result<()> {
    let client = Client::new(&args)?;
    let json_out = args.output == Output::Json;
    let job = match command {
        JobCommand::Submit {
            flavor,
            image,
            region,
            max_runtime,
            members,
            priority,
            name,
            market,
            reservation,
            notice,
        } => {
            let mut body = json!({
                "flavor": flavor, "image": image, "region": region, "members": members,
                "priority": priority, "max_runtime_s": max_runtime.as_secs(), "market": market,
            });
            if let Some(r) = reservation {
                body["reservation"] = Value::String(r);
            }
            if let Some(n) = notice {
                body["preemption_notice_s"] = n.into();
            }
            if let Some(n) = name {
                body["name"] = Value::String(n);
            }
            let j = client
                .call(Method::POST, "/v1/jobs", Some(body), false)
                .await?
                .ok_or_else(|| anyhow!("the API returned no job"))?;
            if !json_out {
                println!("{}", s(&j, "id"));
                eprintln!("job {} is {}", s(&j, "id"), s(&j, "state"));
                return Ok(());
            }
            j
        }
        JobCommand::List => {
            let list = client.list_all("/v1/jobs", "jobs").await?;
            if json_out {
                println!("{}", serde_json::to_string_pretty(&list)?);
                return Ok(());
            }
            let rows: Vec<[String; 7]> = list["jobs"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|j| {
                    [
                        s(j, "id").to_owned(),
                        s(j, "state").to_owned(),
                        s(j, "priority").to_owned(),
                        s(j, "flavor").to_owned(),
                        j["instances"].as_array().map_or(0, Vec::len).to_string(),
                        j["position"]
                            .as_u64()
                            .map_or("-".to_owned(), |p| format!("{p}/{}", j["queue_length"])),
                        s(j, "estimated_start").to_owned(),
                    ]
                })
                .collect();
            print_rows(
                [
                    "ID",
                    "STATE",
                    "PRIORITY",
                    "FLAVOR",
                    "MEMBERS",
                    "POSITION",
                    "ESTIMATED START",
                ],
                &rows,
            );
            return Ok(());
        }
        JobCommand::Get { id } => client
            .call(Method::GET, &format!("/v1/jobs/{id}"), None, true)
            .await?
            .ok_or_else(|| anyhow!("job {id} does not exist"))?,
        JobCommand::Cancel { id } => client
            .call(Method::DELETE, &format!("/v1/jobs/{id}"), None, true)
            .await?
            .ok_or_else(|| anyhow!("job {id} does not exist"))?,
    };
    if json_out {
        println!("{}", serde_json::to_string_pretty(&job)?);
    } else {
        print_job(&job);
    }
    Ok(())
}

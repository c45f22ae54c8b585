//! `vmcloud status` (the public status page in the terminal) and `vmcloud incident …`
//! (operators declare incidents and maintenance windows, and update them).

use anyhow::anyhow;
use clap::Subcommand;
use reqwest::Method;
use serde_json::{Value, json};

use crate::client::{Client, ClientArgs, Output, print_rows};

#[derive(Debug, Subcommand)]
pub enum IncidentCommand {
    /// Declare an incident (or, with --maintenance, a maintenance window); prints its id.
    Declare {
        #[arg(long)]
        title: String,
        /// What is known; shown on the status page.
        #[arg(long)]
        message: String,
        /// degraded, partial-outage or major-outage (a maintenance window: maintenance).
        #[arg(long, default_value = "degraded")]
        impact: String,
        /// A region affected (repeat for several; none: every region).
        #[arg(long)]
        region: Vec<String>,
        /// A service affected: api, console, compute, gpu, gaming, billing (repeat; none: all).
        #[arg(long)]
        service: Vec<String>,
        /// A maintenance window, from --starts-at (RFC 3339; default now) to --ends-at.
        #[arg(long, requires = "ends_at")]
        maintenance: bool,
        #[arg(long)]
        starts_at: Option<String>,
        #[arg(long)]
        ends_at: Option<String>,
    },
    /// Say what is new: investigating, identified, monitoring, resolved (a maintenance:
    /// scheduled, in-progress, completed). `resolved` and `completed` close it.
    Update {
        id: String,
        #[arg(long)]
        status: String,
        #[arg(long)]
        message: String,
        /// A new impact.
        #[arg(long)]
        impact: Option<String>,
    },
}

fn s(v: &Value, key: &str) -> String {
    match &v[key] {
        Value::String(x) => x.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

/// `vmcloud status`.
pub async fn status(args: ClientArgs) -> anyhow::Result<()> {
    let client = Client::new(&args)?;
    let v = client
        .call(Method::GET, "/v1/status", None, false)
        .await?
        .unwrap_or(Value::Null);
    if args.output == Output::Json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!("{} (updated {})", s(&v, "status"), s(&v, "updated_at"));
    let rows: Vec<[String; 3]> = v["regions"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|r| {
            r["services"]
                .as_array()
                .into_iter()
                .flatten()
                .map(move |sv| [s(r, "region"), s(sv, "service"), s(sv, "status")])
        })
        .collect();
    print_rows(["REGION", "SERVICE", "STATUS"], &rows);
    for (key, heading) in [("active", "under way"), ("scheduled", "scheduled")] {
        for i in v[key].as_array().into_iter().flatten() {
            println!(
                "{heading}: {} {} [{}] {} — {}",
                s(i, "id"),
                s(i, "title"),
                s(i, "impact"),
                s(i, "status"),
                s(&i["updates"][0], "message")
            );
        }
    }
    Ok(())
}

pub async fn run(args: ClientArgs, command: IncidentCommand) -> anyhow::Result<()> {
    let client = Client::new(&args)?;
    let v = match command {
        IncidentCommand::Declare {
            title,
            message,
            impact,
            region,
            service,
            maintenance,
            starts_at,
            ends_at,
        } => {
            let body = json!({
                "kind": if maintenance { "maintenance" } else { "incident" },
                "title": title, "message": message, "impact": impact,
                "regions": region, "services": service,
                "starts_at": starts_at, "ends_at": ends_at,
            });
            client
                .call(Method::POST, "/v1/incidents", Some(body), false)
                .await?
        }
        IncidentCommand::Update {
            id,
            status,
            message,
            impact,
        } => {
            client
                .call(
                    Method::POST,
                    &format!("/v1/incidents/{id}/updates"),
                    Some(json!({"status": status, "message": message, "impact": impact})),
                    false,
                )
                .await?
        }
    }
    .ok_or_else(|| anyhow!("the API returned no incident"))?;
    if args.output == Output::Json {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!("{}", s(&v, "id"));
        eprintln!(
            "{} [{}] {}",
            s(&v, "title"),
            s(&v, "impact"),
            s(&v, "status")
        );
    }
    Ok(())
}

//! `vmcloud reservation ...`: capacity held for your project (a count of one flavor in one
//! region, from a start to an end), drawn on by `vmcloud instance create --market reserved`.

use std::time::Duration;

use anyhow::anyhow;
use clap::Subcommand;
use reqwest::Method;
use serde_json::{Value, json};

use crate::bench::parse_duration;
use crate::client::{Client, ClientArgs, Output, print_rows};

#[derive(Debug, Subcommand)]
pub enum ReservationCommand {
    /// Hold capacity: COUNT slots of FLAVOR in REGION; prints the reservation's id.
    Create {
        #[arg(long)]
        flavor: String,
        #[arg(long)]
        region: String,
        #[arg(long)]
        count: u32,
        /// When it starts (RFC 3339); default now. Capacity is held from creation.
        #[arg(long)]
        start: Option<String>,
        /// When it ends (RFC 3339).
        #[arg(long, conflicts_with_all = ["term_months", "duration"])]
        end: Option<String>,
        /// A commitment term: 12, 24 or 36 months.
        #[arg(long = "term", conflicts_with = "duration")]
        term_months: Option<u32>,
        /// How long it lasts from its start (e.g. 2h, 30m).
        #[arg(long = "for", value_parser = parse_duration)]
        duration: Option<Duration>,
    },
    /// List your reservations.
    List,
    /// Show one reservation.
    Get { id: String },
}

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or("-")
}

fn rfc3339(t: time::OffsetDateTime) -> anyhow::Result<String> {
    Ok(t.format(&time::format_description::well_known::Rfc3339)?)
}

pub async fn run(args: ClientArgs, command: ReservationCommand) -> anyhow::Result<()> {
    let client = Client::new(&args)?;
    let json_out = args.output == Output::Json;
    let print = |v: &Value| -> anyhow::Result<()> {
        if json_out {
            println!("{}", serde_json::to_string_pretty(v)?);
        } else {
            for (k, label) in [
                ("id", "id"),
                ("status", "status"),
                ("region", "region"),
                ("flavor", "flavor"),
                ("start", "start"),
                ("end", "end"),
            ] {
                println!("{:<10} {}", format!("{label}:"), s(v, k));
            }
            println!("{:<10} {} of {}", "used:", v["used"], v["count"]);
            for i in v["instances"].as_array().into_iter().flatten() {
                println!("{:<10} {}", "instance:", i.as_str().unwrap_or("-"));
            }
        }
        Ok(())
    };
    match command {
        ReservationCommand::Create {
            flavor,
            region,
            count,
            start,
            end,
            term_months,
            duration,
        } => {
            let mut body = json!({ "flavor": flavor, "region": region, "count": count });
            let starts = match &start {
                Some(t) => {
                    time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
                        .map_err(|e| anyhow!("--start `{t}` is not an RFC 3339 time: {e}"))?
                }
                None => time::OffsetDateTime::now_utc(),
            };
            if let Some(t) = start {
                body["start"] = Value::String(t);
            }
            match (end, term_months, duration) {
                (Some(e), _, _) => body["end"] = Value::String(e),
                (_, Some(m), _) => body["term_months"] = json!(m),
                (_, _, Some(d)) => body["end"] = Value::String(rfc3339(starts + d)?),
                _ => return Err(anyhow!("say how long it lasts: --end, --term or --for")),
            }
            let r = client
                .call(Method::POST, "/v1/reservations", Some(body), false)
                .await?
                .ok_or_else(|| anyhow!("the API returned no reservation"))?;
            if json_out {
                print(&r)?;
            } else {
                println!("{}", s(&r, "id"));
                eprintln!(
                    "reservation {} holds {} × {} in {} until {}",
                    s(&r, "id"),
                    r["count"],
                    s(&r, "flavor"),
                    s(&r, "region"),
                    s(&r, "end")
                );
            }
        }
        ReservationCommand::List => {
            let list = client.list_all("/v1/reservations", "reservations").await?;
            if json_out {
                println!("{}", serde_json::to_string_pretty(&list)?);
                return Ok(());
            }
            let rows: Vec<[String; 7]> = list["reservations"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|r| {
                    [
                        s(r, "id").to_owned(),
                        s(r, "status").to_owned(),
                        s(r, "region").to_owned(),
                        s(r, "flavor").to_owned(),
                        format!("{}/{}", r["used"], r["count"]),
                        s(r, "start").to_owned(),
                        s(r, "end").to_owned(),
                    ]
                })
                .collect();
            print_rows(
                ["ID", "STATUS", "REGION", "FLAVOR", "USED", "START", "END"],
                &rows,
            );
        }
        ReservationCommand::Get { id } => {
            let r = client
                .call(Method::GET, &format!("/v1/reservations/{id}"), None, true)
                .await?
                .ok_or_else(|| anyhow!("reservation {id} does not exist"))?;
            print(&r)?;
        }
    }
    Ok(())
}

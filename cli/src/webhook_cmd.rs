//! `vmcloud webhook ...`: a project's webhook endpoints, test events, and `sign` (the headers
//! a delivery of a given body carries, to test a receiver).

use anyhow::{Context, anyhow};
use clap::Subcommand;
use reqwest::Method;
use serde_json::{Value, json};

use crate::client::{Client, ClientArgs, Output, print_rows};

#[derive(Debug, Subcommand)]
pub enum WebhookCommand {
    /// Make an endpoint; prints its signing secret (shown once).
    Create {
        /// Where events are POSTed (https://…).
        #[arg(long)]
        url: String,
        /// An event type to send (repeat; default: all).
        #[arg(long = "event-type")]
        event_types: Vec<String>,
        #[arg(long, default_value = "")]
        description: String,
    },
    /// The project's endpoints.
    List,
    /// Delete an endpoint.
    Delete { id: String },
    /// Send a signed `webhook.test` event to an endpoint now; says what it answered.
    Test { id: String },
    /// An endpoint's delivery attempts, newest first, and what is queued for it.
    Deliveries {
        id: String,
        /// The most attempts to show.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Send a past event to an endpoint again, under its own `webhook-id` (for a receiver
    /// that was down or answered an error).
    Resend {
        /// The endpoint (`we_…`).
        id: String,
        /// The event (`evt_…`, as `deliveries` lists it).
        event: String,
    },
    /// The Standard Webhooks headers a delivery of BODY carries (for testing a receiver).
    Sign {
        /// The endpoint's secret (whsec_…).
        #[arg(long, env = "VMCLOUD_WEBHOOK_SECRET")]
        secret: String,
        #[arg(long, default_value = "msg_manual")]
        id: String,
        /// Unix seconds (default: now).
        #[arg(long)]
        timestamp: Option<i64>,
        /// The body, as sent.
        body: String,
    },
}

pub async fn run(args: ClientArgs, command: WebhookCommand) -> anyhow::Result<()> {
    use vmcloud_scheduler::webhooks::sign;
    if let WebhookCommand::Sign {
        secret,
        id,
        timestamp,
        body,
    } = &command
    {
        let key = sign::key_of(secret).context("the secret is not a whsec_… secret")?;
        let ts = timestamp.unwrap_or_else(|| vmcloud_scheduler::clock::now_ms() / 1000);
        let signature = sign::signature(&key, id, ts, body.as_bytes());
        if args.output == Output::Json {
            println!(
                "{}",
                json!({"webhook-id": id, "webhook-timestamp": ts.to_string(), "webhook-signature": signature})
            );
        } else {
            println!("webhook-id: {id}\nwebhook-timestamp: {ts}\nwebhook-signature: {signature}");
        }
        return Ok(());
    }
    let client = Client::new(&args)?;
    let json_out = args.output == Output::Json;
    let answer = |v: Option<Value>| v.ok_or_else(|| anyhow!("the API returned nothing"));
    match command {
        WebhookCommand::Create {
            url,
            event_types,
            description,
        } => {
            let e = answer(
                client
                    .call(
                        Method::POST,
                        "/v1/webhook-endpoints",
                        Some(json!({"url": url, "event_types": event_types, "description": description})),
                        false,
                    )
                    .await?,
            )?;
            if json_out {
                println!("{}", serde_json::to_string_pretty(&e)?);
            } else {
                println!("{}", e["secret"].as_str().unwrap_or_default());
                eprintln!(
                    "endpoint {} for {}: that is its signing secret, shown once (verify deliveries with it)",
                    e["id"].as_str().unwrap_or_default(),
                    e["url"].as_str().unwrap_or_default()
                );
            }
        }
        WebhookCommand::List => {
            let list = client
                .list_all("/v1/webhook-endpoints", "endpoints")
                .await?;
            if json_out {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                let rows: Vec<[String; 4]> = list["endpoints"]
                    .as_array()
                    .map(Vec::as_slice)
                    .unwrap_or(&[])
                    .iter()
                    .map(|e| {
                        let types: Vec<&str> = e["event_types"]
                            .as_array()
                            .map(|a| a.iter().filter_map(Value::as_str).collect())
                            .unwrap_or_default();
                        [
                            e["id"].as_str().unwrap_or("-").to_owned(),
                            e["url"].as_str().unwrap_or("-").to_owned(),
                            if types.is_empty() {
                                "all".into()
                            } else {
                                types.join(",")
                            },
                            e["created_at"].as_str().unwrap_or("-").to_owned(),
                        ]
                    })
                    .collect();
                print_rows(["ID", "URL", "EVENTS", "CREATED"], &rows);
            }
        }
        WebhookCommand::Delete { id } => {
            client
                .call(
                    Method::DELETE,
                    &format!("/v1/webhook-endpoints/{id}"),
                    None,
                    false,
                )
                .await?;
            if !json_out {
                eprintln!("endpoint {id} deleted");
            }
        }
        WebhookCommand::Test { id } => {
            let r = answer(
                client
                    .call(
                        Method::POST,
                        &format!("/v1/webhook-endpoints/{id}/test"),
                        Some(json!({})),
                        false,
                    )
                    .await?,
            )?;
            if json_out {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else if r["delivered"] == true {
                println!(
                    "delivered {} ({} in {} ms)",
                    r["webhook_id"].as_str().unwrap_or_default(),
                    r["status"],
                    r["duration_ms"]
                );
            } else {
                anyhow::bail!(
                    "not delivered: {}",
                    r["error"].as_str().unwrap_or("unknown error")
                );
            }
        }
        WebhookCommand::Deliveries { id, limit } => {
            let log = answer(
                client
                    .call(
                        Method::GET,
                        &format!(
                            "/v1/webhook-endpoints/{id}/deliveries?limit={}",
                            limit.clamp(1, 1000)
                        ),
                        None,
                        false,
                    )
                    .await?,
            )?;
            if json_out {
                println!("{}", serde_json::to_string_pretty(&log)?);
            } else {
                let text = |v: &Value, k: &str| v[k].as_str().unwrap_or("-").to_owned();
                let mut rows: Vec<[String; 5]> = log["pending"]
                    .as_array()
                    .map(Vec::as_slice)
                    .unwrap_or(&[])
                    .iter()
                    .map(|p| {
                        [
                            text(p, "next_attempt_at"),
                            text(p, "event_id"),
                            format!("{}", p["attempts"].as_u64().unwrap_or(0) + 1),
                            "queued".into(),
                            String::new(),
                        ]
                    })
                    .collect();
                rows.extend(
                    log["deliveries"]
                        .as_array()
                        .map(Vec::as_slice)
                        .unwrap_or(&[])
                        .iter()
                        .map(|d| {
                            [
                                text(d, "at"),
                                text(d, "event_id"),
                                d["attempt"].to_string(),
                                if d["delivered"] == true {
                                    format!("delivered {}", d["status"])
                                } else {
                                    match d["status"].as_u64() {
                                        Some(code) => format!("failed {code}"),
                                        None => "failed".into(),
                                    }
                                },
                                d["error"].as_str().unwrap_or("").to_owned(),
                            ]
                        }),
                );
                print_rows(["AT", "EVENT", "ATTEMPT", "RESULT", "ERROR"], &rows);
            }
        }
        WebhookCommand::Resend { id, event } => {
            let r = answer(
                client
                    .call(
                        Method::POST,
                        &format!("/v1/webhook-endpoints/{id}/deliveries/{event}/resend"),
                        Some(json!({})),
                        false,
                    )
                    .await?,
            )?;
            if json_out {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                eprintln!(
                    "{event} ({}) queued for {id}: `vmcloud webhook deliveries {id}` shows the attempt",
                    r["type"].as_str().unwrap_or("event")
                );
            }
        }
        WebhookCommand::Sign { .. } => unreachable!("handled above"),
    }
    Ok(())
}

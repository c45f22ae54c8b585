//! `vmcloud session ...` (cloud-gaming sessions: launch, list, get, end) and
//! `vmcloud project ...` (a project's share weight and gaming tier, set by operators).

use anyhow::anyhow;
use clap::Subcommand;
use reqwest::Method;
use serde_json::{Value, json};

use crate::client::{Client, ClientArgs, Output, print_rows};

#[derive(Debug, Subcommand)]
pub enum SessionCommand {
    /// Launch a session; prints its id, and where to connect when a warm VM took it at once.
    /// It waits in the region's launch queue when no warm VM and no GPU is
    /// free (VIP, then Priority+, then standard).
    Launch {
        /// The game, e.g. cyberpunk-2077.
        #[arg(long)]
        title: String,
        /// A GPU flavor, e.g. game-rtx4090.
        #[arg(long)]
        flavor: String,
        /// Where to play; or give --rtt and --max-latency and the scheduler picks.
        #[arg(long, required_unless_present = "rtt", conflicts_with = "rtt")]
        region: Option<String>,
        /// Round trip measured to a region's beacon, REGION=MS (repeat for several).
        #[arg(long, requires = "max_latency")]
        rtt: Vec<String>,
        /// The most round trip you accept, in ms: the launch goes to the region within it
        /// where it starts first.
        #[arg(long, requires = "rtt")]
        max_latency: Option<u32>,
        /// A dedicated pool, e.g. anti-cheat.
        #[arg(long)]
        pool: Option<String>,
        /// `on-demand`, `spot` (cheaper; ended with notice when the GPU is needed) or
        /// `reserved` (on one of your reservations).
        #[arg(long, default_value = "on-demand")]
        market: String,
        /// Reserved: the reservation to draw on.
        #[arg(long)]
        reservation: Option<String>,
    },
    /// Your sessions, with queue position and estimated start.
    List,
    /// Show one session.
    Get { id: String },
    /// End a session (leave the queue, or stop the game VM).
    End { id: String },
    /// Share-Play: invite a friend to your running session; prints a code (and a link) that
    /// lets one friend join for up to 60 minutes, valid 10 minutes.
    Share { id: String },
    /// Share-Play: end your friend's play (and any open invite); your session goes on.
    Unshare { id: String },
}

#[derive(Debug, Subcommand)]
pub enum ProjectCommand {
    /// The projects you can see.
    List,
    /// A new project in one of your organisations; prints its id.
    Create {
        name: String,
        #[arg(long)]
        org: String,
    },
    /// Delete a project that has no workloads left (its keys go with it).
    Delete { id: String },
    /// Show a project (yours, or any for an operator).
    Get { id: String },
    /// Act in this project from now on (saved in the current profile; `-` for none).
    Use { id: String },
    /// Change a project (operators).
    Set {
        id: String,
        /// Weight of its fair share of the AI job queues (1 to 1000).
        #[arg(long)]
        share_weight: Option<u32>,
        /// standard, priority-plus or vip.
        #[arg(long)]
        gaming_tier: Option<String>,
    },
}

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or("-")
}

fn print_fields(v: &Value, keys: &[&str]) {
    for key in keys {
        match &v[*key] {
            Value::String(x) => println!("{:<16} {x}", format!("{key}:")),
            Value::Number(x) => println!("{:<16} {x}", format!("{key}:")),
            Value::Bool(x) => println!("{:<16} {x}", format!("{key}:")),
            _ => {}
        }
    }
}

fn print_session(v: &Value) {
    print_fields(
        v,
        &[
            "id",
            "title",
            "tier",
            "state",
            "region",
            "rtt_ms",
            "flavor",
            "market",
            "node",
            "estimated_start",
            "pending_reason",
            "ends_by",
            "launched_at",
        ],
    );
    if let Some(p) = v["position"].as_u64() {
        println!("{:<16} {p} of {}", "position:", v["queue_length"]);
    }
    for n in v["notices"].as_array().into_iter().flatten() {
        println!("{:<16} {}", "notice:", n.as_str().unwrap_or("-"));
    }
}

pub async fn run(args: ClientArgs, command: SessionCommand) -> anyhow::Result<()> {
    let client = Client::new(&args)?;
    let json_out = args.output == Output::Json;
    let session = match command {
        SessionCommand::Launch {
            title,
            flavor,
            region,
            rtt,
            max_latency,
            pool,
            market,
            reservation,
        } => {
            let mut body = json!({ "title": title, "flavor": flavor, "market": market });
            if let Some(r) = region {
                body["region"] = Value::String(r);
            }
            if let Some(max_ms) = max_latency {
                let mut rtt_ms = serde_json::Map::new();
                for kv in &rtt {
                    let (r, ms) = kv
                        .split_once('=')
                        .and_then(|(r, ms)| {
                            Some((r, ms.trim_end_matches("ms").parse::<u32>().ok()?))
                        })
                        .ok_or_else(|| anyhow!("--rtt {kv}: expected REGION=MS, e.g. par=12"))?;
                    rtt_ms.insert(r.to_owned(), ms.into());
                }
                body["latency"] = json!({ "max_ms": max_ms, "rtt_ms": rtt_ms });
            }
            if let Some(p) = pool {
                body["pool"] = Value::String(p);
            }
            if let Some(r) = reservation {
                body["reservation"] = Value::String(r);
            }
            let v = client
                .call(Method::POST, "/v1/sessions", Some(body), false)
                .await?
                .ok_or_else(|| anyhow!("the API returned no session"))?;
            if !json_out {
                println!("{}", s(&v, "id"));
                match v["position"].as_u64() {
                    Some(p) => eprintln!(
                        "session {} is queued: {p} of {} ({})",
                        s(&v, "id"),
                        v["queue_length"],
                        s(&v, "pending_reason")
                    ),
                    None => eprintln!("session {} is {}", s(&v, "id"), s(&v, "state")),
                }
                print_connection(&v["connection"]);
                return Ok(());
            }
            v
        }
        SessionCommand::List => {
            let list = client.list_all("/v1/sessions", "sessions").await?;
            if json_out {
                println!("{}", serde_json::to_string_pretty(&list)?);
                return Ok(());
            }
            let rows: Vec<[String; 7]> = list["sessions"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|v| {
                    [
                        s(v, "id").to_owned(),
                        s(v, "title").to_owned(),
                        s(v, "tier").to_owned(),
                        s(v, "state").to_owned(),
                        s(v, "region").to_owned(),
                        v["position"]
                            .as_u64()
                            .map_or("-".to_owned(), |p| format!("{p}/{}", v["queue_length"])),
                        s(v, "estimated_start").to_owned(),
                    ]
                })
                .collect();
            print_rows(
                [
                    "ID",
                    "TITLE",
                    "TIER",
                    "STATE",
                    "REGION",
                    "POSITION",
                    "ESTIMATED START",
                ],
                &rows,
            );
            return Ok(());
        }
        SessionCommand::Get { id } => client
            .call(Method::GET, &format!("/v1/sessions/{id}"), None, true)
            .await?
            .ok_or_else(|| anyhow!("session {id} does not exist"))?,
        SessionCommand::End { id } => client
            .call(Method::DELETE, &format!("/v1/sessions/{id}"), None, true)
            .await?
            .ok_or_else(|| anyhow!("session {id} does not exist"))?,
        SessionCommand::Share { id } => {
            let v = client
                .call(
                    Method::POST,
                    &format!("/v1/sessions/{id}/share-play"),
                    None,
                    false,
                )
                .await?
                .ok_or_else(|| anyhow!("the API returned no invite"))?;
            if !json_out {
                println!("{}", s(&v, "code"));
                eprintln!(
                    "a friend joins with this code (or {}) before {}: `vmcloud household join HOUSEHOLD CODE --player PROFILE`",
                    s(&v, "link"),
                    s(&v, "expires_at")
                );
                return Ok(());
            }
            v
        }
        SessionCommand::Unshare { id } => {
            client
                .call(
                    Method::DELETE,
                    &format!("/v1/sessions/{id}/share-play"),
                    None,
                    false,
                )
                .await?;
            eprintln!("Share-Play of session {id} ended; the session goes on");
            return Ok(());
        }
    };
    if json_out {
        println!("{}", serde_json::to_string_pretty(&session)?);
    } else {
        print_session(&session);
    }
    Ok(())
}

pub async fn run_project(args: ClientArgs, command: ProjectCommand) -> anyhow::Result<()> {
    let client = Client::new(&args)?;
    let project = match command {
        ProjectCommand::List => {
            let list = client.list_all("/v1/projects", "projects").await?;
            if args.output == Output::Json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                println!("{:<22} {:<24} ORGANISATION", "ID", "NAME");
                for p in list["projects"].as_array().into_iter().flatten() {
                    println!(
                        "{:<22} {:<24} {}",
                        s(p, "id"),
                        s(p, "name"),
                        s(p, "organisation")
                    );
                }
            }
            return Ok(());
        }
        ProjectCommand::Create { name, org } => client
            .call(
                Method::POST,
                "/v1/projects",
                Some(json!({"name": name, "organisation": org})),
                false,
            )
            .await?
            .unwrap_or_default(),
        ProjectCommand::Delete { id } => {
            client
                .call(Method::DELETE, &format!("/v1/projects/{id}"), None, false)
                .await?;
            println!("project {id} deleted");
            return Ok(());
        }
        ProjectCommand::Use { id } => {
            let name = crate::profile::current_name(args.profile.clone())?;
            let project = (id != "-").then_some(id);
            if let Some(p) = &project {
                // It must be one the profile's user can see.
                client
                    .call(Method::GET, &format!("/v1/projects/{p}"), None, false)
                    .await?;
            }
            let path = crate::profile::set_profile_project(&name, project.clone())?;
            match project {
                Some(p) => println!(
                    "profile `{name}` now acts in project {p} ({})",
                    path.display()
                ),
                None => println!("profile `{name}` names no project now ({})", path.display()),
            }
            return Ok(());
        }
        ProjectCommand::Get { id } => client
            .call(Method::GET, &format!("/v1/projects/{id}"), None, true)
            .await?
            .ok_or_else(|| anyhow!("project {id} does not exist"))?,
        ProjectCommand::Set {
            id,
            share_weight,
            gaming_tier,
        } => {
            if share_weight.is_none() && gaming_tier.is_none() {
                return Err(anyhow!(
                    "nothing to change: give --share-weight and/or --gaming-tier"
                ));
            }
            let mut body = json!({});
            if let Some(w) = share_weight {
                body["share_weight"] = json!(w);
            }
            if let Some(t) = gaming_tier {
                body["gaming_tier"] = json!(t);
            }
            client
                .call(
                    Method::PATCH,
                    &format!("/v1/projects/{id}"),
                    Some(body),
                    true,
                )
                .await?
                .ok_or_else(|| anyhow!("project {id} does not exist"))?
        }
    };
    if args.output == Output::Json {
        println!("{}", serde_json::to_string_pretty(&project)?);
    } else {
        print_fields(
            &project,
            &[
                "id",
                "name",
                "operator",
                "share_weight",
                "gaming_tier",
                "created_at",
            ],
        );
    }
    Ok(())
}

/// A launch a warm VM served comes with where to connect: says it, on standard error.
pub(crate) fn print_connection(c: &Value) {
    if c.is_object() {
        eprintln!(
            "connect to {}:{} with the one-time token {} (valid until {})",
            s(c, "host"),
            c["port"],
            s(c, "token"),
            s(c, "expires_at")
        );
    }
}

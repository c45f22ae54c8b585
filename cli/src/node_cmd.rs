//! `vmcloud node ...`: the fleet's hosts as operators see them, and host events (cordon,
//! drain, maintenance, down, back to ready), labels and pools. Operator API keys only.

use std::time::Duration;

use anyhow::anyhow;
use clap::Subcommand;
use reqwest::Method;
use serde_json::{Value, json};

use crate::bench::parse_duration;
use crate::client::{Client, ClientArgs, Output, key_values, print_rows};

#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// List the hosts: state, usage, pools.
    List,
    /// Show one host.
    Get { id: String },
    /// No new placements on the host; what runs there stays.
    Cordon {
        id: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Back to ready: the host takes placements again.
    Uncordon { id: String },
    /// Empty the host: no new placements, spot work gets its notice now, owners of the rest
    /// are told the deadline.
    Drain {
        id: String,
        /// When the host must be empty, from now (e.g. 2h, 30m).
        #[arg(long, value_parser = parse_duration)]
        deadline: Option<Duration>,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Planned work on the host: no new placements; owners are told.
    Maintenance {
        id: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Declare the host lost: spot work ends, instances there are impaired and their owners
    /// told (nothing with a local disk is recreated elsewhere).
    Down {
        id: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Replace the host's labels and pools.
    Label {
        id: String,
        /// Labels as KEY=VALUE (all of them: labels not given are removed).
        labels: Vec<String>,
        /// A dedicated pool (repeat for several); a pooled host only takes work that asks for
        /// one of its pools.
        #[arg(long = "pool")]
        pools: Vec<String>,
    },
}

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or("-")
}

fn print_nodes(nodes: &[Value]) {
    let rows: Vec<[String; 8]> = nodes
        .iter()
        .map(|n| {
            let gpus = n["gpus"].as_array().cloned().unwrap_or_default();
            let bound = gpus.iter().filter(|g| g["bound"] == true).count();
            let pools: Vec<&str> = n["pools"]
                .as_array()
                .map(|p| p.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            [
                s(n, "id").to_owned(),
                s(n, "region").to_owned(),
                s(n, "rack").to_owned(),
                s(n, "state").to_owned(),
                format!("{}/{}", n["used_vcpus"], n["allocatable_vcpus"]),
                format!(
                    "{}/{} MiB",
                    n["used_memory_mib"], n["allocatable_memory_mib"]
                ),
                if gpus.is_empty() {
                    "-".to_owned()
                } else {
                    format!("{bound}/{}", gpus.len())
                },
                if pools.is_empty() {
                    "-".to_owned()
                } else {
                    pools.join(",")
                },
            ]
        })
        .collect();
    print_rows(
        [
            "ID", "REGION", "RACK", "STATE", "VCPUS", "MEMORY", "GPUS", "POOLS",
        ],
        &rows,
    );
}

fn print_node(n: &Value) {
    let mut fields = vec![
        ("id", s(n, "id").to_owned()),
        ("state", s(n, "state").to_owned()),
        ("region", s(n, "region").to_owned()),
        ("rack", s(n, "rack").to_owned()),
        ("hostname", s(n, "hostname").to_owned()),
        (
            "vcpus",
            format!("{} of {} used", n["used_vcpus"], n["allocatable_vcpus"]),
        ),
        (
            "memory",
            format!(
                "{} of {} MiB used",
                n["used_memory_mib"], n["allocatable_memory_mib"]
            ),
        ),
        (
            "held",
            format!(
                "{} vCPUs, {} MiB, {} GPUs for reservations",
                n["held_vcpus"], n["held_memory_mib"], n["held_gpus"]
            ),
        ),
        ("labels", n["labels"].to_string()),
        ("pools", n["pools"].to_string()),
        ("connected", n["connected"].to_string()),
    ];
    for (k, label) in [("state_reason", "reason"), ("drain_deadline", "drain by")] {
        if let Some(v) = n[k].as_str() {
            fields.push((label, v.to_owned()));
        }
    }
    for g in n["gpus"].as_array().into_iter().flatten() {
        fields.push((
            "gpu",
            format!(
                "{} {} numa {} nvlink {}{}",
                s(g, "pci_address"),
                s(g, "model"),
                g["numa_node"],
                g["nvlink_group"],
                if g["mig"] == true {
                    let slices: Vec<&str> = g["mig_slices"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|x| x.as_str())
                        .collect();
                    if slices.is_empty() {
                        " MIG (no slices bound)".to_owned()
                    } else {
                        format!(" MIG slices {}", slices.join(" "))
                    }
                } else if g["bound"] == true {
                    " (bound)".to_owned()
                } else {
                    String::new()
                }
            ),
        ));
    }
    for (k, v) in fields {
        println!("{:<12} {v}", format!("{k}:"));
    }
}

pub async fn run(args: ClientArgs, command: NodeCommand) -> anyhow::Result<()> {
    let client = Client::new(&args)?;
    let json = args.output == Output::Json;
    let state_change = |id: String, state: &str, reason: Option<String>| {
        let mut body = json!({ "state": state });
        if let Some(r) = reason {
            body["reason"] = Value::String(r);
        }
        (id, body)
    };
    let (id, body) = match command {
        NodeCommand::List => {
            let list = client.list_all("/v1/nodes", "nodes").await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                print_nodes(list["nodes"].as_array().map(Vec::as_slice).unwrap_or(&[]));
            }
            return Ok(());
        }
        NodeCommand::Get { id } => (id, None),
        NodeCommand::Cordon { id, reason } => {
            let (id, b) = state_change(id, "cordoned", reason);
            (id, Some(b))
        }
        NodeCommand::Uncordon { id } => {
            let (id, b) = state_change(id, "ready", None);
            (id, Some(b))
        }
        NodeCommand::Drain {
            id,
            deadline,
            reason,
        } => {
            let (id, mut b) = state_change(id, "draining", reason);
            if let Some(d) = deadline {
                b["drain_deadline_s"] = json!(d.as_secs().max(1));
            }
            (id, Some(b))
        }
        NodeCommand::Maintenance { id, reason } => {
            let (id, b) = state_change(id, "maintenance", reason);
            (id, Some(b))
        }
        NodeCommand::Down { id, reason } => {
            let (id, b) = state_change(id, "down", reason);
            (id, Some(b))
        }
        NodeCommand::Label { id, labels, pools } => {
            let labels = key_values(&labels, "label")?;
            (id, Some(json!({ "labels": labels, "pools": pools })))
        }
    };
    let path = format!("/v1/nodes/{id}");
    let node = match body {
        None => client.call(Method::GET, &path, None, true).await?,
        Some(b) => client.call(Method::PATCH, &path, Some(b), true).await?,
    }
    .ok_or_else(|| anyhow!("node {id} does not exist (see `vmcloud node list`)"))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&node)?);
    } else {
        print_node(&node);
    }
    Ok(())
}

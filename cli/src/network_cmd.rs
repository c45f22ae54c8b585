//! `vmcloud network ...`: a project's private networks (each instance's NIC is on one; an
//! instance that names none joins the project's default network of its region).

use anyhow::anyhow;
use clap::Subcommand;
use reqwest::Method;
use serde_json::{Value, json};

use crate::client::{Client, ClientArgs, Output, print_rows};

#[derive(Debug, Subcommand)]
pub enum NetworkCommand {
    /// Make a private network; prints its id.
    Create {
        name: String,
        /// A private IPv4 range (RFC 1918), /16 to /28 (default: the first free 10.x.0.0/24).
        #[arg(long)]
        subnet: Option<String>,
        /// The region its instances run in (default: every region).
        #[arg(long)]
        region: Option<String>,
    },
    /// The project's networks.
    List {
        /// Only those instances of this region may join.
        #[arg(long)]
        region: Option<String>,
    },
    /// Show one network.
    Get { id: String },
    /// Delete a network (refused while instances are on it).
    Delete { id: String },
}

fn row(n: &Value) -> [String; 8] {
    let text = |k: &str| n[k].as_str().unwrap_or("-").to_owned();
    [
        text("id"),
        text("name"),
        text("subnet"),
        n["region"].as_str().unwrap_or("all").to_owned(),
        n["vni"].to_string(),
        format!("{}/{}", n["addresses_used"], n["addresses_total"]),
        if n["default"] == true { "yes" } else { "" }.to_owned(),
        text("created_at"),
    ]
}

const HEADER: [&str; 8] = [
    "ID",
    "NAME",
    "SUBNET",
    "REGION",
    "VNI",
    "ADDRESSES",
    "DEFAULT",
    "CREATED",
];

pub async fn run(args: ClientArgs, command: NetworkCommand) -> anyhow::Result<()> {
    let client = Client::new(&args)?;
    let json_out = args.output == Output::Json;
    let answer = |v: Option<Value>| v.ok_or_else(|| anyhow!("the API returned nothing"));
    match command {
        NetworkCommand::Create {
            name,
            subnet,
            region,
        } => {
            let mut body = json!({ "name": name });
            if let Some(s) = subnet {
                body["subnet"] = s.into();
            }
            if let Some(r) = region {
                body["region"] = r.into();
            }
            let n = answer(
                client
                    .call(Method::POST, "/v1/networks", Some(body), false)
                    .await?,
            )?;
            if json_out {
                println!("{}", serde_json::to_string_pretty(&n)?);
            } else {
                println!("{}", n["id"].as_str().unwrap_or_default());
                eprintln!(
                    "network {} ({}, VNI {}): instances join it with --network {}",
                    n["name"].as_str().unwrap_or_default(),
                    n["subnet"].as_str().unwrap_or_default(),
                    n["vni"],
                    n["id"].as_str().unwrap_or_default()
                );
            }
        }
        NetworkCommand::List { region } => {
            let path = match region {
                Some(r) => format!("/v1/networks?region={r}"),
                None => "/v1/networks".to_owned(),
            };
            let list = client.list_all(&path, "networks").await?;
            if json_out {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                let rows: Vec<[String; 8]> = list["networks"]
                    .as_array()
                    .map(Vec::as_slice)
                    .unwrap_or(&[])
                    .iter()
                    .map(row)
                    .collect();
                print_rows(HEADER, &rows);
            }
        }
        NetworkCommand::Get { id } => {
            let n = answer(
                client
                    .call(Method::GET, &format!("/v1/networks/{id}"), None, true)
                    .await?,
            )?;
            if json_out {
                println!("{}", serde_json::to_string_pretty(&n)?);
            } else {
                print_rows(HEADER, &[row(&n)]);
            }
        }
        NetworkCommand::Delete { id } => {
            client
                .call(Method::DELETE, &format!("/v1/networks/{id}"), None, false)
                .await?;
            if !json_out {
                eprintln!("network {id} deleted");
            }
        }
    }
    Ok(())
}

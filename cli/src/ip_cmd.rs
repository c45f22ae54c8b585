//! `vmcloud ip ...`: floating IPs (public addresses a project keeps and moves between its
//! instances) and reverse DNS names of public addresses.

use anyhow::anyhow;
use clap::Subcommand;
use reqwest::Method;
use serde_json::{Value, json};

use crate::client::{Client, ClientArgs, Output, print_rows};

#[derive(Debug, Subcommand)]
pub enum IpCommand {
    /// Take a floating IP from a region's pools; prints its address.
    Create {
        #[arg(long)]
        region: String,
        /// Assign it at once to this instance.
        #[arg(long)]
        instance: Option<String>,
        #[arg(long, default_value = "")]
        description: String,
    },
    /// The project's floating IPs.
    List,
    /// Assign (or move) a floating IP to an instance of its region.
    Assign { id: String, instance: String },
    /// Unassign a floating IP (the project keeps it).
    Unassign { id: String },
    /// Give a floating IP back.
    Delete { id: String },
    /// Set the reverse DNS name of a public address (`-` for none).
    Rdns { address: String, name: String },
}

fn row(f: &Value) -> [String; 6] {
    let text = |k: &str| f[k].as_str().unwrap_or("-").to_owned();
    [
        text("id"),
        text("address"),
        text("region"),
        text("instance"),
        text("reverse_dns"),
        text("created_at"),
    ]
}

const HEADER: [&str; 6] = [
    "ID",
    "ADDRESS",
    "REGION",
    "INSTANCE",
    "REVERSE DNS",
    "CREATED",
];

pub async fn run(args: ClientArgs, command: IpCommand) -> anyhow::Result<()> {
    let client = Client::new(&args)?;
    let json_out = args.output == Output::Json;
    let answer = |v: Option<Value>| v.ok_or_else(|| anyhow!("the API returned nothing"));
    let show = |f: &Value| -> anyhow::Result<()> {
        if json_out {
            println!("{}", serde_json::to_string_pretty(f)?);
        } else {
            print_rows(HEADER, &[row(f)]);
        }
        Ok(())
    };
    match command {
        IpCommand::Create {
            region,
            instance,
            description,
        } => {
            let mut body = json!({"region": region, "description": description});
            if let Some(i) = instance {
                body["instance"] = i.into();
            }
            let f = answer(
                client
                    .call(Method::POST, "/v1/floating-ips", Some(body), false)
                    .await?,
            )?;
            if json_out {
                show(&f)?;
            } else {
                println!("{}", f["address"].as_str().unwrap_or_default());
                eprintln!(
                    "floating IP {} in {}{}",
                    f["id"].as_str().unwrap_or_default(),
                    f["region"].as_str().unwrap_or_default(),
                    f["instance"]
                        .as_str()
                        .map(|i| format!(", assigned to {i}"))
                        .unwrap_or_default()
                );
            }
        }
        IpCommand::List => {
            let list = client.list_all("/v1/floating-ips", "floating_ips").await?;
            if json_out {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                let rows: Vec<[String; 6]> = list["floating_ips"]
                    .as_array()
                    .map(Vec::as_slice)
                    .unwrap_or(&[])
                    .iter()
                    .map(row)
                    .collect();
                print_rows(HEADER, &rows);
            }
        }
        IpCommand::Assign { id, instance } => {
            let f = answer(
                client
                    .call(
                        Method::POST,
                        &format!("/v1/floating-ips/{id}/assign"),
                        Some(json!({"instance": instance})),
                        false,
                    )
                    .await?,
            )?;
            show(&f)?;
        }
        IpCommand::Unassign { id } => {
            let f = answer(
                client
                    .call(
                        Method::POST,
                        &format!("/v1/floating-ips/{id}/unassign"),
                        Some(json!({})),
                        false,
                    )
                    .await?,
            )?;
            show(&f)?;
        }
        IpCommand::Delete { id } => {
            client
                .call(
                    Method::DELETE,
                    &format!("/v1/floating-ips/{id}"),
                    None,
                    false,
                )
                .await?;
            if !json_out {
                eprintln!("floating IP {id} given back");
            }
        }
        IpCommand::Rdns { address, name } => {
            let name = if name == "-" { String::new() } else { name };
            let r = answer(
                client
                    .call(
                        Method::PUT,
                        &format!("/v1/reverse-dns/{address}"),
                        Some(json!({"name": name})),
                        false,
                    )
                    .await?,
            )?;
            if json_out {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                println!(
                    "{} {}",
                    r["address"].as_str().unwrap_or_default(),
                    r["reverse_dns"].as_str().unwrap_or("(none)")
                );
            }
        }
    }
    Ok(())
}

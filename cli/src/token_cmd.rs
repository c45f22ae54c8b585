//! `vmcloud token ...` (operators): single-use join tokens for new hosts.

use anyhow::anyhow;
use clap::Subcommand;
use reqwest::Method;
use serde_json::json;

use crate::client::{Client, ClientArgs, Output, print_rows};

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Make a join token for one node name; prints the token (shown once).
    Create {
        /// The node the host joins as (a DNS label, e.g. par-r1-h07).
        #[arg(long)]
        node_name: String,
        /// How long it stays valid (1m to 7d).
        #[arg(long, default_value = "15m", value_parser = crate::bench::parse_duration)]
        ttl: std::time::Duration,
    },
    /// List join tokens (never their secrets): node, expiry, valid, used or expired.
    List,
}

pub async fn run(args: ClientArgs, command: TokenCommand) -> anyhow::Result<()> {
    let client = Client::new(&args)?;
    let json = args.output == Output::Json;
    match command {
        TokenCommand::Create { node_name, ttl } => {
            let body = json!({ "node_name": node_name, "ttl_s": ttl.as_secs() });
            let token = client
                .call(Method::POST, "/v1/join-tokens", Some(body), false)
                .await?
                .ok_or_else(|| anyhow!("the API returned no token"))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&token)?);
            } else {
                println!("{}", token["token"].as_str().unwrap_or_default());
                eprintln!(
                    "join token for node {} (single use, expires {}); it is not shown again",
                    token["node_name"].as_str().unwrap_or_default(),
                    token["expires_at"].as_str().unwrap_or_default()
                );
            }
        }
        TokenCommand::List => {
            let list = client.list_all("/v1/join-tokens", "tokens").await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                let field =
                    |t: &serde_json::Value, k: &str| t[k].as_str().unwrap_or("-").to_owned();
                let rows: Vec<[String; 5]> = list["tokens"]
                    .as_array()
                    .map(Vec::as_slice)
                    .unwrap_or(&[])
                    .iter()
                    .map(|t| {
                        [
                            field(t, "id"),
                            field(t, "node_name"),
                            field(t, "status"),
                            field(t, "expires_at"),
                            field(t, "created_by"),
                        ]
                    })
                    .collect();
                print_rows(["ID", "NODE", "STATUS", "EXPIRES", "BY"], &rows);
            }
        }
    }
    Ok(())
}

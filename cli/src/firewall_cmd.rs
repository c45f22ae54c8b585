//! `vmcloud firewall ...`: a project's firewalls — rules written as
//! `DIRECTION PROTOCOL [PORTS] [CIDR,…|fw-…]` (`in tcp 22 203.0.113.0/24`, `in tcp 443`,
//! `in any fw-0123…`, `out udp 53 10.0.0.2`), attached to instances.

use anyhow::anyhow;
use clap::Subcommand;
use reqwest::Method;
use serde_json::{Value, json};

use crate::client::{Client, ClientArgs, Output, print_rows};
use vmcloud_scheduler::firewalls::api::{parse_rule, rule_text};

#[derive(Debug, Subcommand)]
pub enum FirewallCommand {
    /// Make a firewall; prints its id.
    Create {
        name: String,
        /// A rule: `in|out tcp|udp|icmp|any [PORT|FROM-TO] [CIDR,CIDR…|fw-…]` (repeat).
        #[arg(long = "rule", value_name = "RULE")]
        rules: Vec<String>,
    },
    /// The project's firewalls.
    List,
    /// Show a firewall and its rules.
    Get { id: String },
    /// Replace a firewall's rules (the hosts apply them at once).
    Rules {
        id: String,
        #[arg(long = "rule", value_name = "RULE")]
        rules: Vec<String>,
    },
    /// Attach a firewall to an instance.
    Attach { id: String, instance: String },
    /// Detach a firewall from an instance.
    Detach { id: String, instance: String },
    /// Delete a firewall (refused while attached).
    Delete { id: String },
}

fn print_firewall(f: &Value) {
    println!(
        "{} {} — attached to {}",
        f["id"].as_str().unwrap_or_default(),
        f["name"].as_str().unwrap_or_default(),
        f["instances"].as_array().map_or(0, Vec::len)
    );
    for r in f["rules"].as_array().into_iter().flatten() {
        if let Ok(rule) = serde_json::from_value(r.clone()) {
            println!("  {}", rule_text(&rule));
        }
    }
}

pub async fn run(args: ClientArgs, command: FirewallCommand) -> anyhow::Result<()> {
    let client = Client::new(&args)?;
    let json_out = args.output == Output::Json;
    let answer = |v: Option<Value>| v.ok_or_else(|| anyhow!("the API returned nothing"));
    let show = |f: &Value| -> anyhow::Result<()> {
        if json_out {
            println!("{}", serde_json::to_string_pretty(f)?);
        } else {
            print_firewall(f);
        }
        Ok(())
    };
    let verb = match &command {
        FirewallCommand::Attach { .. } => "attach",
        _ => "detach",
    };
    match command {
        FirewallCommand::Create { name, rules } => {
            let rules = rules
                .iter()
                .map(|r| parse_rule(r).map_err(|e| anyhow!(e)))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let f = answer(
                client
                    .call(
                        Method::POST,
                        "/v1/firewalls",
                        Some(json!({"name": name, "rules": rules})),
                        false,
                    )
                    .await?,
            )?;
            if json_out {
                show(&f)?;
            } else {
                println!("{}", f["id"].as_str().unwrap_or_default());
            }
        }
        FirewallCommand::List => {
            let list = client.list_all("/v1/firewalls", "firewalls").await?;
            if json_out {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                let rows: Vec<[String; 5]> = list["firewalls"]
                    .as_array()
                    .map(Vec::as_slice)
                    .unwrap_or(&[])
                    .iter()
                    .map(|f| {
                        [
                            f["id"].as_str().unwrap_or("-").to_owned(),
                            f["name"].as_str().unwrap_or("-").to_owned(),
                            f["rules"].as_array().map_or(0, Vec::len).to_string(),
                            f["instances"].as_array().map_or(0, Vec::len).to_string(),
                            f["created_at"].as_str().unwrap_or("-").to_owned(),
                        ]
                    })
                    .collect();
                print_rows(["ID", "NAME", "RULES", "INSTANCES", "CREATED"], &rows);
            }
        }
        FirewallCommand::Get { id } => {
            let f = answer(
                client
                    .call(Method::GET, &format!("/v1/firewalls/{id}"), None, true)
                    .await?,
            )?;
            show(&f)?;
        }
        FirewallCommand::Rules { id, rules } => {
            let rules = rules
                .iter()
                .map(|r| parse_rule(r).map_err(|e| anyhow!(e)))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let f = answer(
                client
                    .call(
                        Method::PUT,
                        &format!("/v1/firewalls/{id}/rules"),
                        Some(json!({"rules": rules})),
                        false,
                    )
                    .await?,
            )?;
            show(&f)?;
        }
        FirewallCommand::Attach { id, instance } | FirewallCommand::Detach { id, instance } => {
            let f = answer(
                client
                    .call(
                        Method::POST,
                        &format!("/v1/firewalls/{id}/{verb}"),
                        Some(json!({"instance": instance})),
                        false,
                    )
                    .await?,
            )?;
            if json_out {
                show(&f)?;
            } else {
                eprintln!(
                    "firewall {id} {verb}ed {} {instance}",
                    if verb == "attach" { "to" } else { "from" }
                );
            }
        }
        FirewallCommand::Delete { id } => {
            client
                .call(Method::DELETE, &format!("/v1/firewalls/{id}"), None, false)
                .await?;
            if !json_out {
                eprintln!("firewall {id} deleted");
            }
        }
    }
    Ok(())
}

//! `vmcloud firewall ...`: a project's firewalls — rules written as
//! `DIRECTION PROTOCOL [PORTS] [CIDR,…|fw-…]` (`in tcp 22 203.0.113.0/24`, `in tcp 443`,
//! `in any fw-0123…`, `out udp 53 10.0.0.2`), attached to instances.

use anyhow::{anyhow, bail};
use clap::Subcommand;
use reqwest::Method;
use serde_json::{Value, json};

use crate::client::{Client, ClientArgs, Output, print_rows};

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

/// `in tcp 22 203.0.113.0/24` as the API's rule.
fn parse_rule(text: &str) -> anyhow::Result<Value> {
    let words: Vec<&str> = text.split_whitespace().collect();
    let (direction, rest) = match words.split_first() {
        Some((&("in" | "inbound"), rest)) => ("inbound", rest),
        Some((&("out" | "outbound"), rest)) => ("outbound", rest),
        _ => bail!("rule {text:?}: start with `in` or `out` (e.g. `in tcp 22 203.0.113.0/24`)"),
    };
    let (protocol, rest) = rest
        .split_first()
        .ok_or_else(|| anyhow!("rule {text:?}: name a protocol: tcp, udp, icmp or any"))?;
    let mut rule = json!({"direction": direction, "protocol": protocol});
    let mut rest = rest.iter();
    let mut next = rest.next();
    if let Some(p) = next
        && p.chars().next().is_some_and(|c| c.is_ascii_digit())
        && !p.contains('.')
    {
        rule["ports"] = (*p).into();
        next = rest.next();
    }
    if let Some(target) = next {
        if target.starts_with("fw-") {
            rule["peer_firewall"] = (*target).into();
        } else {
            let cidrs: Vec<&str> = target.split(',').collect();
            rule[if direction == "inbound" {
                "sources"
            } else {
                "destinations"
            }] = cidrs.into();
        }
    }
    if let Some(extra) = rest.next() {
        bail!("rule {text:?}: {extra:?} is one word too many");
    }
    Ok(rule)
}

fn rule_text(r: &Value) -> String {
    let mut out = format!(
        "{} {}",
        if r["direction"] == "inbound" {
            "in"
        } else {
            "out"
        },
        r["protocol"].as_str().unwrap_or("any")
    );
    if let Some(p) = r["ports"].as_str() {
        out.push(' ');
        out.push_str(p);
    }
    for k in ["sources", "destinations"] {
        if let Some(list) = r[k].as_array() {
            let l: Vec<&str> = list.iter().filter_map(Value::as_str).collect();
            out.push(' ');
            out.push_str(&l.join(","));
        }
    }
    if let Some(p) = r["peer_firewall"].as_str() {
        out.push(' ');
        out.push_str(p);
    }
    out
}

fn print_firewall(f: &Value) {
    println!(
        "{} {} — attached to {}",
        f["id"].as_str().unwrap_or_default(),
        f["name"].as_str().unwrap_or_default(),
        f["instances"].as_array().map_or(0, Vec::len)
    );
    for r in f["rules"].as_array().into_iter().flatten() {
        println!("  {}", rule_text(r));
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
                .map(|r| parse_rule(r))
                .collect::<anyhow::Result<Vec<Value>>>()?;
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
                .map(|r| parse_rule(r))
                .collect::<anyhow::Result<Vec<Value>>>()?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_read_as_written() {
        assert_eq!(
            parse_rule("in tcp 22 203.0.113.0/24,198.51.100.7").unwrap(),
            json!({"direction": "inbound", "protocol": "tcp", "ports": "22",
                "sources": ["203.0.113.0/24", "198.51.100.7"]})
        );
        assert_eq!(
            parse_rule("out udp 53 10.0.0.2").unwrap(),
            json!({"direction": "outbound", "protocol": "udp", "ports": "53",
                "destinations": ["10.0.0.2"]})
        );
        assert_eq!(
            parse_rule("in any fw-0011").unwrap(),
            json!({"direction": "inbound", "protocol": "any", "peer_firewall": "fw-0011"})
        );
        assert!(parse_rule("sideways tcp").is_err());
        assert!(parse_rule("in tcp 22 10.0.0.0/8 extra").is_err());
        let r = parse_rule("in tcp 8000-8100").unwrap();
        assert_eq!(rule_text(&r), "in tcp 8000-8100");
    }
}

//! `vmcloud audit ...`: list the audit trail, export it as JSON lines, verify its hash chain.

use anyhow::{Context, anyhow, bail};
use clap::{Args, Subcommand};
use reqwest::Method;
use vmcloud_scheduler::audit::types::{AuditEvent, GENESIS, verify};

use crate::client::{Client, ClientArgs, Output, print_rows};

#[derive(Debug, Clone, Default, Args)]
pub struct AuditFilterArgs {
    /// The organisation whose events to show (operators: any; owners and admins: theirs).
    #[arg(long)]
    pub org: Option<String>,
    /// Only this actor: user:<id>, key:<id>, node:<id>, system or anonymous.
    #[arg(long)]
    pub actor: Option<String>,
    /// Only this resource, as kind/id (instance/i-…, project/prj-…, user/usr_…).
    #[arg(long)]
    pub resource: Option<String>,
    /// From this time on (RFC 3339).
    #[arg(long)]
    pub since: Option<String>,
    /// Before this time (RFC 3339).
    #[arg(long)]
    pub until: Option<String>,
}

impl AuditFilterArgs {
    fn query(&self) -> String {
        let mut q = Vec::new();
        for (k, v) in [
            ("org", &self.org),
            ("actor", &self.actor),
            ("resource", &self.resource),
            ("since", &self.since),
            ("until", &self.until),
        ] {
            if let Some(v) = v {
                q.push(format!("{k}={}", urlencode(v)));
            }
        }
        q.join("&")
    }
}

fn urlencode(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// The latest events, newest first.
    List {
        #[command(flatten)]
        filter: AuditFilterArgs,
        /// How many.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Every event the filter admits, oldest first, one JSON object a line (for archives and
    /// SIEMs).
    Export {
        #[command(flatten)]
        filter: AuditFilterArgs,
    },
    /// Reads the whole trail (operators) and recomputes its hash chain: says how many events
    /// hold together, or where the chain breaks and how.
    Verify,
}

/// Calls `f` with every page of events, oldest first.
async fn each_page(
    client: &Client,
    query: &str,
    mut f: impl FnMut(Vec<AuditEvent>) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut cursor: Option<String> = None;
    loop {
        let mut path = "/v1/audit-events?order=asc&limit=1000".to_owned();
        if !query.is_empty() {
            path.push('&');
            path.push_str(query);
        }
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let page = client
            .call(Method::GET, &path, None, false)
            .await?
            .ok_or_else(|| anyhow!("the API returned no events"))?;
        let events: Vec<AuditEvent> = serde_json::from_value(page["events"].clone())
            .context("the API's audit events are not in the expected shape")?;
        f(events)?;
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return Ok(()),
        }
    }
}

pub async fn run(args: ClientArgs, command: AuditCommand) -> anyhow::Result<()> {
    let client = Client::new(&args)?;
    match command {
        AuditCommand::List { filter, limit } => {
            let mut path = format!("/v1/audit-events?limit={limit}");
            let query = filter.query();
            if !query.is_empty() {
                path.push('&');
                path.push_str(&query);
            }
            let page = client
                .call(Method::GET, &path, None, false)
                .await?
                .ok_or_else(|| anyhow!("the API returned no events"))?;
            if args.output == Output::Json {
                println!("{}", serde_json::to_string_pretty(&page)?);
                return Ok(());
            }
            let events: Vec<AuditEvent> = serde_json::from_value(page["events"].clone())?;
            let rows: Vec<[String; 6]> = events
                .iter()
                .map(|e| {
                    [
                        vmcloud_scheduler::clock::rfc3339(e.at_ms),
                        e.actor.clone(),
                        if e.source.is_empty() {
                            "-".into()
                        } else {
                            e.source.clone()
                        },
                        e.action.clone(),
                        e.resource.clone(),
                        e.outcome.clone(),
                    ]
                })
                .collect();
            print_rows(
                ["TIME", "ACTOR", "SOURCE", "ACTION", "RESOURCE", "OUTCOME"],
                &rows,
            );
        }
        AuditCommand::Export { filter } => {
            use std::io::Write;
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            each_page(&client, &filter.query(), |events| {
                for e in events {
                    serde_json::to_writer(&mut out, &e)?;
                    out.write_all(b"\n")?;
                }
                Ok(())
            })
            .await?;
            out.flush()?;
        }
        AuditCommand::Verify => {
            let mut checked = 0u64;
            let mut head = (1u64, GENESIS.to_owned());
            let mut broken = None;
            each_page(&client, "", |events| {
                if broken.is_some() {
                    return Ok(());
                }
                match verify(&events, (head.0, &head.1)) {
                    Ok(n) => {
                        checked += n;
                        if let Some(last) = events.last() {
                            head = (last.number + 1, last.hash.clone());
                        }
                    }
                    Err(b) => broken = Some(b),
                }
                Ok(())
            })
            .await?;
            if let Some(b) = broken {
                bail!("the audit chain breaks after {checked} good events: {b}");
            }
            if args.output == Output::Json {
                println!(
                    "{}",
                    serde_json::json!({"verified": checked, "head": head.1})
                );
            } else {
                println!(
                    "the audit chain holds: {checked} events, each linked to the one before; head {}",
                    head.1
                );
            }
        }
    }
    Ok(())
}

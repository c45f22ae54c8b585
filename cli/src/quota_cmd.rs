//! `vmcloud quota ...`: a project's limits and usage per region, requests for more, and the
//! operators' side (set limits, approve or decline requests).

use anyhow::anyhow;
use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{Map, Value, json};

use crate::client::{Client, ClientArgs, Output, print_rows};

/// Limits to set or ask for; absent ones stay as they are.
#[derive(Debug, Clone, Default, Args)]
pub struct LimitArgs {
    #[arg(long)]
    pub instances: Option<u32>,
    #[arg(long)]
    pub vcpus: Option<u32>,
    /// Memory in MiB.
    #[arg(long)]
    pub memory_mib: Option<u64>,
    /// GPUs of every model together.
    #[arg(long)]
    pub gpus: Option<u32>,
    /// GPUs of one model, as MODEL=N (repeat for several).
    #[arg(long = "gpu-model", value_parser = parse_model)]
    pub gpu_models: Vec<(String, u32)>,
    #[arg(long)]
    pub reservations: Option<u32>,
}

fn parse_model(s: &str) -> Result<(String, u32), String> {
    let (m, n) = s
        .split_once('=')
        .ok_or_else(|| format!("`{s}` is not MODEL=N (e.g. H100=4)"))?;
    let n = n
        .parse()
        .map_err(|_| format!("`{n}` is not a number of GPUs"))?;
    Ok((m.to_owned(), n))
}

impl LimitArgs {
    fn body(&self, mut body: Map<String, Value>) -> Value {
        for (k, v) in [
            ("instances", self.instances.map(Value::from)),
            ("vcpus", self.vcpus.map(Value::from)),
            ("memory_mib", self.memory_mib.map(Value::from)),
            ("gpus", self.gpus.map(Value::from)),
            ("reservations", self.reservations.map(Value::from)),
        ] {
            if let Some(v) = v {
                body.insert(k.into(), v);
            }
        }
        if !self.gpu_models.is_empty() {
            body.insert(
                "gpus_by_model".into(),
                self.gpu_models
                    .iter()
                    .map(|(m, n)| (m.clone(), Value::from(*n)))
                    .collect::<Map<_, _>>()
                    .into(),
            );
        }
        body.into()
    }
}

#[derive(Debug, Subcommand)]
pub enum QuotaCommand {
    /// Limits and usage in every region (or one).
    Show {
        #[arg(long)]
        region: Option<String>,
    },
    /// Ask the operators for higher limits in a region.
    Request {
        #[arg(long)]
        region: String,
        /// What the higher limits are for.
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        limits: LimitArgs,
    },
    /// Quota requests: your project's, or (operators) everyone's.
    Requests {
        /// open, approved or declined.
        #[arg(long)]
        state: Option<String>,
    },
    /// Operators: set a project's limits in a region.
    Set {
        #[arg(long)]
        project: String,
        #[arg(long)]
        region: String,
        #[command(flatten)]
        limits: LimitArgs,
    },
    /// Operators: grant a request (its limits become the project's).
    Approve {
        id: String,
        #[arg(long, default_value = "")]
        note: String,
    },
    /// Operators: decline a request, saying why.
    Decline {
        id: String,
        #[arg(long)]
        note: String,
    },
}

fn limit(v: &Value) -> String {
    v.as_u64().map_or("∞".to_owned(), |n| n.to_string())
}

fn print_quota(view: &Value) {
    let rows: Vec<[String; 7]> = view["regions"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[])
        .iter()
        .map(|r| {
            let (l, u) = (&r["limits"], &r["used"]);
            let pair = |k: &str| format!("{}/{}", u[k].as_u64().unwrap_or(0), limit(&l[k]));
            let models = l["gpus_by_model"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| {
                            format!(
                                "{k} {}/{}",
                                u["gpus_by_model"][k].as_u64().unwrap_or(0),
                                limit(v)
                            )
                        })
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .unwrap_or_default();
            [
                r["region"].as_str().unwrap_or("-").to_owned(),
                pair("instances"),
                pair("vcpus"),
                format!(
                    "{}/{}",
                    u["memory_mib"].as_u64().unwrap_or(0) / 1024,
                    l["memory_mib"]
                        .as_u64()
                        .map_or("∞".to_owned(), |m| (m / 1024).to_string())
                ),
                pair("gpus"),
                pair("reservations"),
                if models.is_empty() {
                    "-".into()
                } else {
                    models
                },
            ]
        })
        .collect();
    print_rows(
        [
            "REGION",
            "INSTANCES",
            "VCPUS",
            "MEMORY GIB",
            "GPUS",
            "RESERVATIONS",
            "BY MODEL",
        ],
        &rows,
    );
}

fn print_request(r: &Value) {
    println!(
        "{} {} in {}: {} ({})",
        r["id"].as_str().unwrap_or("-"),
        r["state"].as_str().unwrap_or("-"),
        r["region"].as_str().unwrap_or("-"),
        r["wanted"],
        r["reason"].as_str().unwrap_or("")
    );
}

pub async fn run(args: ClientArgs, command: QuotaCommand) -> anyhow::Result<()> {
    let client = Client::new(&args)?;
    let json_out = args.output == Output::Json;
    let answer = |v: Option<Value>| v.ok_or_else(|| anyhow!("the API returned nothing"));
    let verb = match &command {
        QuotaCommand::Approve { .. } => "approve",
        _ => "decline",
    };
    match command {
        QuotaCommand::Show { region } => {
            let path = match &region {
                Some(r) => format!("/v1/quotas?region={r}"),
                None => "/v1/quotas".to_owned(),
            };
            let view = answer(client.call(Method::GET, &path, None, false).await?)?;
            if json_out {
                println!("{}", serde_json::to_string_pretty(&view)?);
            } else {
                println!(
                    "project {}: used/limit",
                    view["project"].as_str().unwrap_or("-")
                );
                print_quota(&view);
            }
        }
        QuotaCommand::Request {
            region,
            reason,
            limits,
        } => {
            let mut body = Map::new();
            body.insert("region".into(), json!(region));
            body.insert("reason".into(), json!(reason));
            let r = answer(
                client
                    .call(
                        Method::POST,
                        "/v1/quota-requests",
                        Some(limits.body(body)),
                        false,
                    )
                    .await?,
            )?;
            if json_out {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                print_request(&r);
                eprintln!(
                    "the operators are told; `vmcloud quota requests` shows what they decide"
                );
            }
        }
        QuotaCommand::Requests { state } => {
            let path = match &state {
                Some(s) => format!("/v1/quota-requests?state={s}"),
                None => "/v1/quota-requests".to_owned(),
            };
            let list = client.list_all(&path, "quota_requests").await?;
            if json_out {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                let rows: Vec<[String; 6]> = list["quota_requests"]
                    .as_array()
                    .map(Vec::as_slice)
                    .unwrap_or(&[])
                    .iter()
                    .map(|r| {
                        let f = |k: &str| r[k].as_str().unwrap_or("-").to_owned();
                        [
                            f("id"),
                            f("project"),
                            f("region"),
                            f("state"),
                            r["wanted"].to_string(),
                            f("reason"),
                        ]
                    })
                    .collect();
                print_rows(
                    ["ID", "PROJECT", "REGION", "STATE", "WANTED", "REASON"],
                    &rows,
                );
            }
        }
        QuotaCommand::Set {
            project,
            region,
            limits,
        } => {
            let mut body = Map::new();
            body.insert("region".into(), json!(region));
            let view = answer(
                client
                    .call(
                        Method::PUT,
                        &format!("/v1/projects/{project}/quotas"),
                        Some(limits.body(body)),
                        false,
                    )
                    .await?,
            )?;
            if json_out {
                println!("{}", serde_json::to_string_pretty(&view)?);
            } else {
                print_quota(&view);
            }
        }
        QuotaCommand::Approve { id, note } | QuotaCommand::Decline { id, note } => {
            let r = answer(
                client
                    .call(
                        Method::POST,
                        &format!("/v1/quota-requests/{id}/{verb}"),
                        Some(json!({ "note": note })),
                        false,
                    )
                    .await?,
            )?;
            if json_out {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                print_request(&r);
            }
        }
    }
    Ok(())
}

//! Client commands: `vmcloud instance ...` over the HTTP API.
//!
//! Each command sends one request (or polls, with `--wait`), prints the answer as a table or as
//! the API's JSON (`-o json`), and turns problem+json errors into a message and a non-zero
//! exit.

use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use clap::{Args, Subcommand, ValueEnum};
use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::profile::{self, Endpoint};

/// Times a request is sent again after a transient failure (the answer lost, 502, 503, 504), with
/// the same Idempotency-Key: 0.5 s, 1 s, 2 s apart (or as the answer's Retry-After says, 1 to
/// 5 s), saying so on stderr.
const RETRIES: u32 = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Json,
}

#[derive(Debug, Clone, Args)]
pub struct ClientArgs {
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value = "table", global = true)]
    pub output: Output,
    /// API base URL (overrides VMCLOUD_API and the profile).
    #[arg(long, global = true)]
    pub api: Option<String>,
    /// API key (overrides VMCLOUD_TOKEN and the profile).
    #[arg(long, global = true)]
    pub token: Option<String>,
    /// CLI profile to use (default: the current profile, or `dev`).
    #[arg(long, global = true)]
    pub profile: Option<String>,
}

#[derive(Debug, Subcommand)]
// Parsed once per run; the size difference costs nothing.
#[allow(clippy::large_enum_variant)]
pub enum InstanceCommand {
    /// Create an instance; prints its id.
    Create {
        /// Flavor, e.g. vps-s (see GET /v1/catalog).
        #[arg(long)]
        flavor: String,
        /// Image, e.g. debian-12.
        #[arg(long)]
        image: String,
        /// Region code: par, fra or ams.
        #[arg(long)]
        region: String,
        /// Name (lowercase letters, digits, `-`); generated if omitted.
        #[arg(long)]
        name: Option<String>,
        /// `on-demand`, `spot` (cheaper; reclaimed with notice when capacity is needed) or
        /// `reserved` (draws on one of your reservations).
        #[arg(long, default_value = "on-demand")]
        market: String,
        /// Reserved: the reservation to draw on (default: your active one for this flavor and
        /// region with a free slot).
        #[arg(long)]
        reservation: Option<String>,
        /// Spot: seconds of notice before it is reclaimed (30 to 3600; default 120).
        #[arg(long)]
        notice: Option<u32>,
        /// A dedicated pool to run in (e.g. anti-cheat).
        #[arg(long)]
        pool: Option<String>,
        /// A label the host must carry, KEY=VALUE (repeat for several).
        #[arg(long = "selector")]
        selector: Vec<String>,
        /// Your instances in one spread group never share a host and spread across racks.
        #[arg(long)]
        spread_group: Option<String>,
        /// An OpenSSH public key for the guest, or @FILE to read one (e.g.
        /// @~/.ssh/id_ed25519.pub); repeat for several.
        #[arg(long = "ssh-key", value_name = "KEY|@FILE")]
        ssh_keys: Vec<String>,
        /// A file of cloud-init user-data for the guest (at most 16 KiB).
        #[arg(long, value_name = "FILE")]
        user_data: Option<std::path::PathBuf>,
        /// The private network to join (`net-…`; default: the project's default network of
        /// the region, made on first use).
        #[arg(long)]
        network: Option<String>,
        /// The private address to take (default: the network's first free one).
        #[arg(long)]
        private_ipv4: Option<String>,
        /// A public IPv4 address of its own, from the region's pools.
        #[arg(long)]
        public_ipv4: bool,
        /// Wait until the instance is running (or failed).
        #[arg(long)]
        wait: bool,
    },
    /// List your instances.
    List {
        /// Instances that have ended (deleted, or gone after they stopped), newest first,
        /// from the scheduler's history.
        #[arg(long)]
        ended: bool,
        /// With --ended: how many to show (1 to 1000).
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Show one instance.
    Get { id: String },
    /// Delete an instance (its VM is destroyed).
    Delete {
        id: String,
        /// Wait until the VM is gone.
        #[arg(long)]
        wait: bool,
    },
}

#[derive(Clone)]
pub(crate) struct Client {
    http: reqwest::Client,
    endpoint: Endpoint,
}

impl Client {
    pub(crate) fn new(args: &ClientArgs) -> anyhow::Result<Client> {
        let endpoint =
            profile::resolve(args.api.clone(), args.token.clone(), args.profile.clone())?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .user_agent(concat!("vmcloud-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("cannot build the HTTP client")?;
        Ok(Client { http, endpoint })
    }

    /// The API's base URL.
    pub(crate) fn api(&self) -> &str {
        &self.endpoint.api
    }

    /// Sends a request; `Ok(None)` for 404 when `allow_404`.
    pub(crate) async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        allow_404: bool,
    ) -> anyhow::Result<Option<Value>> {
        let url = format!("{}{path}", self.endpoint.api);
        // One key for every attempt: a retry after a lost answer (a replica killed, a leader
        // change) gets the first attempt's result instead of doing it twice.
        let key = uuid::Uuid::new_v4().to_string();
        let mut attempt = 0;
        let response = loop {
            let mut request = self.http.request(method.clone(), &url);
            if let Some(token) = &self.endpoint.token {
                request = request.bearer_auth(token);
                // A login token acts in the profile's project; an API key only ever in its own.
                if token.starts_with("vms_")
                    && let Some(project) = &self.endpoint.project
                {
                    request = request.header("VMCloud-Project", project);
                }
            }
            if let Some(body) = &body {
                request = request.header("Idempotency-Key", &key).json(body);
            }
            let sent = request.send().await;
            let transient = match &sent {
                // Not reaching the API at all is not retried: the answer comes at once.
                Err(e) => !e.is_connect() && (e.is_timeout() || e.is_request()),
                Ok(r) => matches!(
                    r.status(),
                    StatusCode::BAD_GATEWAY
                        | StatusCode::SERVICE_UNAVAILABLE
                        | StatusCode::GATEWAY_TIMEOUT
                ),
            };
            if transient && attempt < RETRIES {
                attempt += 1;
                // The server's Retry-After when it gave one (a leader being elected), within
                // reason; else 0.5 s, 1 s, 2 s.
                let wait = sent
                    .as_ref()
                    .ok()
                    .and_then(|r| r.headers().get(reqwest::header::RETRY_AFTER))
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map_or(Duration::from_millis(250 << attempt), |s| {
                        Duration::from_secs(s.clamp(1, 5))
                    });
                let why = match &sent {
                    Ok(r) => format!("the API answered {}", r.status().as_u16()),
                    Err(_) => "the answer was lost".to_owned(),
                };
                eprintln!(
                    "{why}: trying again in {:.1} s (retry {attempt} of {RETRIES}, with the same Idempotency-Key: done once at most)",
                    wait.as_secs_f64()
                );
                tokio::time::sleep(wait).await;
                continue;
            }
            break sent.map_err(|e| {
                anyhow!(
                    "cannot reach the VMCloud API at {} ({}): {}. Is `vmcloud dev` running?",
                    self.endpoint.api,
                    self.endpoint.source,
                    root_cause(&e)
                )
            })?;
        };
        let status = response.status();
        let text = response.text().await.context("reading the API's answer")?;
        if status.is_success() {
            if text.trim().is_empty() {
                return Ok(Some(Value::Null));
            }
            return serde_json::from_str(&text).map(Some).with_context(|| {
                format!("the API answered {status} with a body that is not JSON")
            });
        }
        if status == StatusCode::NOT_FOUND && allow_404 {
            return Ok(None);
        }
        let problem: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let title = problem["title"]
            .as_str()
            .unwrap_or(status.canonical_reason().unwrap_or("error"));
        let detail = problem["detail"].as_str().unwrap_or(text.trim());
        let mut message = format!("{title} ({}): {detail}", status.as_u16());
        if status == StatusCode::UNAUTHORIZED {
            message.push_str(&format!(" [API key from {}]", self.key_source()));
        }
        bail!(message)
    }

    /// A document that is not JSON (a PDF, a CSV), as bytes.
    pub(crate) async fn download(&self, path: &str) -> anyhow::Result<Vec<u8>> {
        let url = format!("{}{path}", self.endpoint.api);
        let mut request = self.http.get(&url);
        if let Some(token) = &self.endpoint.token {
            request = request.bearer_auth(token);
            if token.starts_with("vms_")
                && let Some(project) = &self.endpoint.project
            {
                request = request.header("VMCloud-Project", project);
            }
        }
        let response = request.send().await.map_err(|e| {
            anyhow!(
                "cannot reach the VMCloud API at {} ({}): {}",
                self.endpoint.api,
                self.endpoint.source,
                root_cause(&e)
            )
        })?;
        let status = response.status();
        let body = response.bytes().await.context("reading the API's answer")?;
        if status.is_success() {
            return Ok(body.to_vec());
        }
        let problem: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        bail!(
            "{} ({}): {}",
            problem["title"].as_str().unwrap_or("error"),
            status.as_u16(),
            problem["detail"].as_str().unwrap_or_default()
        )
    }

    /// Every page of a list (`{field: [...], next_cursor}`), in order, as `{field: [...]}`.
    pub(crate) async fn list_all(&self, path: &str, field: &str) -> anyhow::Result<Value> {
        let mut all = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let sep = if path.contains('?') { '&' } else { '?' };
            let page_path = match &cursor {
                Some(c) => format!("{path}{sep}limit=1000&cursor={c}"),
                None => format!("{path}{sep}limit=1000"),
            };
            let page = self
                .call(Method::GET, &page_path, None, false)
                .await?
                .unwrap_or_default();
            all.extend(page[field].as_array().cloned().unwrap_or_default());
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => break,
            }
        }
        Ok(serde_json::json!({ field: all }))
    }

    fn key_source(&self) -> String {
        if self.endpoint.token.is_none() {
            "nowhere: set VMCLOUD_TOKEN or run `vmcloud dev` to write a dev profile".to_owned()
        } else {
            self.endpoint.source.clone()
        }
    }
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

fn print_json(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or("-")
}

fn print_ended(instances: &[Value]) {
    let rows: Vec<[String; 7]> = instances
        .iter()
        .map(|i| {
            [
                "id",
                "name",
                "flavor",
                "region",
                "created_at",
                "ended_at",
                "end_reason",
            ]
            .map(|k| s(i, k).to_owned())
        })
        .collect();
    print_rows(
        [
            "ID", "NAME", "FLAVOR", "REGION", "CREATED", "ENDED", "REASON",
        ],
        &rows,
    );
}

fn print_table(instances: &[Value]) {
    let rows: Vec<[String; 9]> = instances
        .iter()
        .map(|i| {
            [
                s(i, "id").to_owned(),
                s(i, "name").to_owned(),
                s(i, "flavor").to_owned(),
                s(i, "image").to_owned(),
                s(i, "region").to_owned(),
                s(i, "state").to_owned(),
                s(i, "node").to_owned(),
                s(i, "created_at").to_owned(),
                s(i, "private_ipv4").to_owned(),
            ]
        })
        .collect();
    print_rows(
        [
            "ID",
            "NAME",
            "FLAVOR",
            "IMAGE",
            "REGION",
            "STATE",
            "NODE",
            "CREATED",
            "PRIVATE IPV4",
        ],
        &rows,
    );
}

/// Prints a header and rows as left-aligned columns two spaces apart.
pub(crate) fn print_rows<const N: usize>(header: [&str; N], rows: &[[String; N]]) {
    let header = header.map(String::from);
    let mut widths = header.clone().map(|h| h.len());
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    for row in std::iter::once(&header).chain(rows) {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", line.join("  ").trim_end());
    }
}

fn print_details(i: &Value) {
    let mut fields = vec![
        ("id", s(i, "id").to_owned()),
        ("name", s(i, "name").to_owned()),
        ("state", s(i, "state").to_owned()),
        ("region", s(i, "region").to_owned()),
        ("node", s(i, "node").to_owned()),
        ("flavor", s(i, "flavor").to_owned()),
        ("image", s(i, "image").to_owned()),
        ("vcpus", i["vcpus"].to_string()),
        ("memory", format!("{} MiB", i["memory_mib"])),
        ("disk", format!("{} GiB", i["disk_gib"])),
    ];
    if let Some(ip) = i["public_ipv4"].as_str() {
        fields.push(("public ipv4", ip.to_owned()));
    }
    if let Some(f) = i["floating_ips"].as_array().filter(|f| !f.is_empty()) {
        let ids: Vec<&str> = f.iter().filter_map(Value::as_str).collect();
        fields.push(("floating ips", ids.join(", ")));
    }
    if let Some(ip) = i["private_ipv4"].as_str() {
        fields.push((
            "private ipv4",
            format!("{ip} on {} ({})", s(i, "network"), s(i, "mac")),
        ));
    }
    if let Some(gpu) = i["gpu"].as_object() {
        fields.push((
            "gpus",
            format!("{}× {}", gpu["count"], gpu["model"].as_str().unwrap_or("?")),
        ));
    }
    fields.push(("market", s(i, "market").to_owned()));
    for (k, label) in [
        ("pending_reason", "pending"),
        ("status_message", "message"),
        ("pool", "pool"),
        ("spread_group", "spread group"),
        ("terminate_at", "stops at"),
        ("nominated_node", "nominated to"),
        ("reservation", "reservation"),
    ] {
        if let Some(v) = i[k].as_str() {
            fields.push((label, v.to_owned()));
        }
    }
    for (k, label) in [
        ("created_at", "created"),
        ("placed_at", "placed"),
        ("running_at", "running since"),
    ] {
        if let Some(v) = i[k].as_str() {
            fields.push((label, v.to_owned()));
        }
    }
    for (k, v) in fields {
        println!("{:<14} {v}", format!("{k}:"));
    }
    for n in i["notices"].as_array().into_iter().flatten() {
        println!("{:<14} {} {}", "notice:", s(n, "at"), s(n, "message"));
    }
}

pub async fn run(args: ClientArgs, command: InstanceCommand) -> anyhow::Result<()> {
    let client = Client::new(&args)?;
    let json = args.output == Output::Json;
    match command {
        InstanceCommand::Create {
            flavor,
            image,
            region,
            name,
            market,
            reservation,
            notice,
            pool,
            selector,
            spread_group,
            ssh_keys,
            user_data,
            network,
            private_ipv4,
            public_ipv4,
            wait,
        } => {
            let mut body = serde_json::json!({
                "flavor": flavor, "image": image, "region": region, "market": market,
            });
            if let Some(name) = name {
                body["name"] = Value::String(name);
            }
            if let Some(n) = notice {
                body["preemption_notice_s"] = n.into();
            }
            if let Some(p) = pool {
                body["pool"] = Value::String(p);
            }
            if let Some(r) = reservation {
                body["reservation"] = Value::String(r);
            }
            if !selector.is_empty() {
                body["node_selector"] = key_values(&selector, "selector")?;
            }
            if let Some(g) = spread_group {
                body["spread_group"] = Value::String(g);
            }
            if !ssh_keys.is_empty() {
                let mut keys = Vec::with_capacity(ssh_keys.len());
                for k in ssh_keys {
                    keys.push(match k.strip_prefix('@') {
                        Some(path) => {
                            let path = expand_home(path);
                            std::fs::read_to_string(&path)
                                .with_context(|| {
                                    format!("--ssh-key: cannot read {}", path.display())
                                })?
                                .trim()
                                .to_owned()
                        }
                        None => k,
                    });
                }
                body["ssh_keys"] = keys.into();
            }
            if let Some(path) = user_data {
                let data = std::fs::read_to_string(&path).with_context(|| {
                    format!(
                        "--user-data: cannot read {} (it must be UTF-8 text)",
                        path.display()
                    )
                })?;
                body["user_data"] = Value::String(data);
            }
            if let Some(n) = network {
                body["network"] = Value::String(n);
            }
            if let Some(ip) = private_ipv4 {
                body["private_ipv4"] = Value::String(ip);
            }
            if public_ipv4 {
                body["public_ipv4"] = Value::Bool(true);
            }
            let mut instance = client
                .call(Method::POST, "/v1/instances", Some(body), false)
                .await?
                .ok_or_else(|| anyhow!("the API returned no instance"))?;
            let id = s(&instance, "id").to_owned();
            if wait {
                instance = wait_for(&client, &id, |i| {
                    matches!(i.map(|i| s(i, "state")), Some("running" | "failed"))
                })
                .await?
                .ok_or_else(|| anyhow!("instance {id} disappeared while waiting for it"))?;
                if s(&instance, "state") == "failed" && !json {
                    bail!("instance {id} failed: {}", s(&instance, "status_message"));
                }
            }
            if json {
                print_json(&instance);
            } else {
                println!("{id}");
                eprintln!("instance {id} is {}", s(&instance, "state"));
            }
        }
        InstanceCommand::List { ended: true, limit } => {
            let list = client
                .call(
                    Method::GET,
                    &format!("/v1/instances?state=ended&limit={limit}"),
                    None,
                    false,
                )
                .await?
                .unwrap_or_default();
            if json {
                print_json(&list);
            } else {
                print_ended(
                    list["instances"]
                        .as_array()
                        .map(Vec::as_slice)
                        .unwrap_or_default(),
                );
            }
        }
        InstanceCommand::List { ended: false, .. } => {
            let list = client.list_all("/v1/instances", "instances").await?;
            if json {
                print_json(&list);
            } else {
                print_table(
                    list["instances"]
                        .as_array()
                        .map(Vec::as_slice)
                        .unwrap_or_default(),
                );
            }
        }
        InstanceCommand::Get { id } => {
            let instance = client
                .call(Method::GET, &format!("/v1/instances/{id}"), None, true)
                .await?
                .ok_or_else(|| anyhow!("instance {id} does not exist"))?;
            if json {
                print_json(&instance);
            } else {
                print_details(&instance);
            }
        }
        InstanceCommand::Delete { id, wait } => {
            let instance = client
                .call(Method::DELETE, &format!("/v1/instances/{id}"), None, true)
                .await?
                .ok_or_else(|| anyhow!("instance {id} does not exist"))?;
            let mut state = s(&instance, "state").to_owned();
            if wait && state != "deleted" {
                wait_for(&client, &id, |i| i.is_none()).await?;
                state = "deleted".to_owned();
            }
            if json {
                print_json(&serde_json::json!({ "id": id, "state": state }));
            } else {
                println!("{id} {state}");
            }
        }
    }
    Ok(())
}

/// Polls the instance until `done` says so (60 s at most).
async fn wait_for(
    client: &Client,
    id: &str,
    done: impl Fn(Option<&Value>) -> bool,
) -> anyhow::Result<Option<Value>> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let instance = client
            .call(Method::GET, &format!("/v1/instances/{id}"), None, true)
            .await?;
        if done(instance.as_ref()) {
            return Ok(instance);
        }
        if Instant::now() > deadline {
            bail!(
                "gave up waiting for instance {id} after 60 s; it is {}",
                instance.as_ref().map_or("gone", |i| s(i, "state"))
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `vmcloud cluster status`: the Raft group as the replica at `--api` sees it.
pub async fn cluster_status(args: ClientArgs) -> anyhow::Result<()> {
    let client = Client::new(&args)?;
    let view = client
        .call(Method::GET, "/v1/cluster", None, false)
        .await?
        .ok_or_else(|| anyhow!("the API returned nothing"))?;
    if args.output == Output::Json {
        print_json(&view);
        return Ok(());
    }
    let leader = view["leader"]
        .as_u64()
        .map_or("none known".to_owned(), |l| l.to_string());
    println!(
        "replica:       {}{}",
        view["replica"],
        if view["is_leader"] == true {
            " (leader)"
        } else {
            ""
        }
    );
    println!("leader:        {leader}");
    println!("term:          {}", view["term"]);
    let voters: Vec<String> = view["voters"]
        .as_array()
        .map(|v| v.iter().map(|x| x.to_string()).collect())
        .unwrap_or_default();
    println!("voters:        {}", voters.join(", "));
    println!("commit index:  {}", view["commit_index"]);
    println!("applied index: {}", view["applied_index"]);
    let e = &view["evaluations"];
    if view["is_leader"] == true {
        println!(
            "evaluations:   {} ready, {} being planned, {} failed (delivered {}, acked {}, nacked {})",
            e["ready"],
            e["unacked"],
            e["failed"],
            e["delivered_total"],
            e["acked_total"],
            e["nacked_total"]
        );
        for ev in e["evaluations"].as_array().into_iter().flatten() {
            println!(
                "  {} {} priority {} attempt {}: {}",
                ev["region"].as_str().unwrap_or("-"),
                ev["state"].as_str().unwrap_or("-"),
                ev["priority"],
                ev["attempts"],
                ev["reason"].as_str().unwrap_or("-")
            );
        }
    } else {
        println!("evaluations:   kept by the leader; ask it");
    }
    Ok(())
}

/// `vmcloud cluster transfer-leader --to N`, sent to the current leader.
pub async fn transfer_leader(args: ClientArgs, to: u64) -> anyhow::Result<()> {
    let client = Client::new(&args)?;
    client
        .call(
            Method::POST,
            "/v1/cluster/transfer-leader",
            Some(serde_json::json!({ "to": to })),
            false,
        )
        .await?;
    println!("leadership transfer to replica {to} started");
    Ok(())
}

/// `vmcloud cluster join --id N --raft-address A`, sent to the leader: adds the replica as a
/// learner, waits until it has caught up, and makes it a voter.
pub async fn cluster_join(args: ClientArgs, id: u64, raft_address: String) -> anyhow::Result<()> {
    let client = Client::new(&args)?;
    eprintln!("adding replica {id} as a learner; it becomes a voter once it has caught up…");
    let view = client
        .call(
            Method::POST,
            "/v1/cluster/members",
            Some(serde_json::json!({ "id": id, "raft_address": raft_address })),
            false,
        )
        .await?
        .unwrap_or_default();
    println!("replica {id} joined; voters: {}", view["voters"]);
    Ok(())
}

/// `vmcloud cluster leave --id N`, sent to the leader.
pub async fn cluster_leave(args: ClientArgs, id: u64) -> anyhow::Result<()> {
    let client = Client::new(&args)?;
    let view = client
        .call(
            Method::DELETE,
            &format!("/v1/cluster/members/{id}"),
            None,
            false,
        )
        .await?
        .unwrap_or_default();
    println!("replica {id} left; voters: {}", view["voters"]);
    Ok(())
}

/// `~/x` → `$HOME/x`; other paths as given.
fn expand_home(path: &str) -> std::path::PathBuf {
    match (path.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => std::path::Path::new(&home).join(rest),
        _ => std::path::PathBuf::from(path),
    }
}

/// `KEY=VALUE` pairs as a JSON object; the error names the bad one.
pub fn key_values(pairs: &[String], what: &str) -> anyhow::Result<Value> {
    let mut map = serde_json::Map::new();
    for pair in pairs {
        let Some((k, v)) = pair.split_once('=') else {
            bail!("{what} `{pair}` must be KEY=VALUE");
        };
        map.insert(k.to_owned(), Value::String(v.to_owned()));
    }
    Ok(Value::Object(map))
}

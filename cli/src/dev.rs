//! `vmcloud dev`: a whole fleet in one process — a single-replica scheduler (raft-rs, one
//! voter, redb), one agent on libvirt's `test:///default` driver connected over QUIC with
//! mutual TLS, and the HTTP API — with defaults that need no configuration.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use vmcloud_agent::{Agent, AgentConfig, NetworkMode};
use vmcloud_proto::NodeId;
use vmcloud_scheduler::bootstrap::ensure_dev_project;
use vmcloud_scheduler::catalog::Catalog;
use vmcloud_scheduler::tenancy::api_key::ApiKeyToken;
use vmcloud_scheduler::{Replication, Scheduler, SchedulerConfig};

use crate::build_info::build_info;
use crate::data_dir::{self, read_optional, write_private};
use crate::{dev_pki, profile};

#[derive(Debug, Args)]
pub struct DevArgs {
    /// Where the replicated log, the agent's ledger and the dev PKI live.
    #[arg(long, default_value = ".vmcloud", env = "VMCLOUD_DATA_DIR")]
    pub data_dir: PathBuf,
    /// HTTP API address.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// UDP address agents connect to (QUIC).
    #[arg(long, default_value = "127.0.0.1:7443")]
    pub gateway_listen: SocketAddr,
    /// The local agent's HTTP API address.
    #[arg(long, default_value = "127.0.0.1:8081")]
    pub agent_listen: SocketAddr,
    /// Node name of the local agent (default: this host's name).
    #[arg(long)]
    pub node_name: Option<String>,
    /// Region of the local agent's host.
    #[arg(long, default_value = "par")]
    pub region: String,
    /// Give the demo customer a running instance (with a public address, a firewall and a
    /// floating IP) on first start; `false` leaves the host empty (the tests' fleets).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub demo_instance: bool,
    /// libvirt URI the local agent drives.
    #[arg(long, default_value = "test:///default")]
    pub hypervisor: String,
    /// Simulated GPUs for the local agent, as a host shape: `gpu-<N>x<model>`, e.g.
    /// gpu-8xh100, gpu-2xrtx4090 (the test driver's VMs get no real device). Default: the GPUs
    /// NVML finds (none without the NVIDIA driver).
    #[arg(long, value_name = "SHAPE")]
    pub gpus: Option<String>,
    /// Simulated game hosts beside the local agent (agents in this process on simulated
    /// hardware of `--game-host-shape`, in `--region`), so that game launches start; with
    /// some, a warm pool of `game-rtx4090` VMs is kept there unless the catalog has its own.
    #[arg(long, default_value_t = 2)]
    pub game_hosts: usize,
    #[arg(long, default_value = "gpu-4xrtx4090", value_name = "SHAPE")]
    pub game_host_shape: String,
    /// The local agent's image cache (one directory per image with an image.json; see
    /// images/README.md). Default: <data dir>/agent/images. With the test driver, images the
    /// cache lacks are defined without a disk.
    #[arg(long, value_name = "DIR")]
    pub image_dir: Option<PathBuf>,
    /// How long the node certificates the scheduler signs (joins, renewals) are valid; agents
    /// renew two thirds into it (e.g. 365d; short values are for trying rotation).
    #[arg(long, default_value = "365d", value_parser = crate::bench::parse_duration)]
    pub node_cert_ttl: Duration,
    #[command(flatten)]
    pub liveness: LivenessArgs,
    #[command(flatten)]
    pub mail: MailArgs,
    #[command(flatten)]
    pub api: ApiArgs,
    /// Catalog file (regions, flavors, images); default: the built-in config/catalog.toml.
    #[arg(long)]
    pub catalog: Option<PathBuf>,
    /// Do not write the `dev` profile to the CLI config.
    #[arg(long)]
    pub no_profile: bool,
}

pub async fn run(args: DevArgs) -> anyhow::Result<()> {
    let data_dir = absolute(&args.data_dir)?;
    let _lock = data_dir::lock(&data_dir)?;
    let mut signals = crate::signals::StopSignals::register()?;
    let catalog = match &args.catalog {
        Some(path) => Catalog::load(path)?,
        None => Catalog::builtin(),
    };
    if !catalog.regions.contains_key(&args.region) {
        anyhow::bail!(
            "--region {}: no such region in the catalog; choose one of: {}",
            args.region,
            catalog
                .regions
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    if let Some(shape) = &args.gpus {
        vmcloud_agent::gpu::SimGpus::shape(shape).map_err(|e| anyhow::anyhow!("--gpus: {e}"))?;
    }
    let mut catalog = catalog;
    if args.game_hosts > 0 {
        vmcloud_agent::gpu::SimGpus::shape(&args.game_host_shape)
            .map_err(|e| anyhow::anyhow!("--game-host-shape: {e}"))?;
        if catalog.gaming.warm_pools.is_empty() && catalog.flavors.contains_key(DEV_WARM_FLAVOR) {
            catalog
                .gaming
                .warm_pools
                .push(vmcloud_scheduler::gaming::catalog::WarmPoolConfig {
                    region: args.region.clone(),
                    flavor: DEV_WARM_FLAVOR.into(),
                    image: vmcloud_scheduler::sessions::types::SESSION_IMAGE.into(),
                    pool: None,
                    min: 2,
                    max: 2 * args.game_hosts as u32,
                    boot_s: DEV_GAME_BOOT.as_secs() as u32,
                });
        }
    }
    let node = match &args.node_name {
        Some(name) => NodeId::parse(name).with_context(|| "--node-name".to_owned())?,
        None => NodeId::from_hostname(&hostname()),
    };
    let pki = dev_pki::load_or_create(&data_dir.join("pki"), &node)?;
    if pki.generated {
        tracing::info!(dir = %data_dir.join("pki").display(), "generated a dev CA and certificates");
    }
    let build = build_info();
    let mailer = args.mail.mailer(vmcloud_scheduler::mail::Mailer::Folder(
        data_dir.join("mail"),
    ))?;
    let mail_note = match &args.mail.smtp_url {
        Some(_) => "sent through the SMTP relay of --smtp-url".to_owned(),
        None => format!(
            "written to {}  (sign-up verification links land here)",
            data_dir.join("mail").display()
        ),
    };
    let secrets_path = data_dir.join("secrets.key");
    let secrets = vmcloud_scheduler::secrets::SecretsKey::load_or_create(&secrets_path)
        .context("the dev secrets key")?;

    let scheduler = signals
        .unless_stopped("starting the scheduler", async {
            Scheduler::start(SchedulerConfig {
                data_dir: data_dir.join("scheduler"),
                api_listen: args.listen,
                gateway_listen: args.gateway_listen,
                catalog: catalog.clone(),
                build: build.clone(),
                ca_pem: pki.ca.identity.cert_pem.clone(),
                identity: pki.scheduler.clone(),
                ca_key_pem: Some(pki.ca.identity.key_pem.clone()),
                node_cert_ttl: args.node_cert_ttl,
                liveness: args.liveness.config(),
                replication: Replication::Single,
                mailer,
                secrets: Some(secrets),
                public_url: None,
                pages: Some(vmcloud_web::pages),
                api_per_hour: args.api.api_rate_limit,
                // A receiver on this machine is the usual dev set-up.
                webhooks_allow_private: true,
                // Newcomers may move a month on to see billing run (`vmcloud billing clock`).
                test_clock: true,
                billing_run_after: args.api.billing_run_after,
                stripe: args.api.stripe(),
                dunning_grace: args.api.dunning_grace,
            })
            .await
            .context("cannot start the scheduler")
        })
        .await?;

    let key_path = data_dir.join("dev-api-key");
    let existing = read_optional(&key_path)?.and_then(|k| ApiKeyToken::parse(k.trim()));
    let token = ensure_dev_project(scheduler.cluster(), existing.clone())
        .await
        .context("cannot set up the dev project")?;
    if existing.as_ref() != Some(&token) {
        write_private(&key_path, &format!("{token}\n"))?;
    }
    // A customer to log in as at once (the console's sign-up works too).
    let demo_path = data_dir.join("demo-password");
    let demo_password = match read_optional(&demo_path)? {
        Some(p) => p.trim().to_owned(),
        None => {
            let p = format!("demo-{}", uuid::Uuid::new_v4().simple());
            write_private(&demo_path, &format!("{p}\n"))?;
            p
        }
    };
    vmcloud_scheduler::bootstrap::ensure_demo_customer(
        scheduler.cluster(),
        &catalog,
        &demo_password,
        args.demo_instance.then_some(args.region.as_str()),
    )
    .await
    .context("cannot set up the demo customer")?;
    vmcloud_scheduler::bootstrap::ensure_demo_household(scheduler.cluster(), &demo_password)
        .await
        .context("cannot set up the demo household")?;
    vmcloud_scheduler::bootstrap::ensure_demo_operator(scheduler.cluster(), &demo_password)
        .await
        .context("cannot set up the demo operator")?;

    let agent = Agent::start(AgentConfig {
        node: node.clone(),
        region: args.region.clone(),
        schedulers: vec![scheduler.gateway_addr()],
        ca_pem: pki.ca.identity.cert_pem.clone(),
        identity: pki.node.clone(),
        hypervisor_uri: args.hypervisor.clone(),
        data_dir: data_dir.join("agent"),
        api_listen: args.agent_listen,
        build: build.clone(),
        heartbeat: Duration::from_secs(5),
        sim_gpus: args.gpus.clone(),
        // The dev PKI lives in <data dir>/pki; renewals stay in memory.
        identity_dir: None,
        image_dir: args.image_dir.clone(),
        // The dev fleet never changes the machine's network.
        networks: NetworkMode::Simulated,
        stop_grace: AgentConfig::DEFAULT_STOP_GRACE,
        watch_interval: AgentConfig::DEFAULT_WATCH_INTERVAL,
        // The dev fleet's guests are the test driver's: none would ask.
        metadata_listen: None,
        // A documentation prefix, so that instances show IPv6 addresses.
        ipv6_prefix: Some("2001:db8:0:1::/64".into()),
        telemetry_interval: Some(AgentConfig::DEFAULT_TELEMETRY_INTERVAL),
        connect_gate: None,
        shared_endpoint: None,
    })
    .await
    .context("cannot start the agent")?;

    let mut game_hosts = start_game_hosts(
        &args,
        ("game", &args.region, args.game_hosts),
        &data_dir,
        &pki.ca,
        scheduler.gateway_addr(),
        scheduler.cluster(),
        &node,
    )
    .await?;
    // The demo partner, its brand on a `*.localhost` name, and hosts at its POP.
    let demo_pops: Vec<String> = catalog
        .regions
        .keys()
        .filter(|r| catalog.partner_of(r) == Some(vmcloud_scheduler::bootstrap::DEMO_PARTNER))
        .cloned()
        .collect();
    vmcloud_scheduler::bootstrap::ensure_demo_partner(
        scheduler.cluster(),
        &demo_password,
        demo_pops,
    )
    .await
    .context("cannot set up the demo partner")?;
    let pop = catalog
        .regions
        .keys()
        .find(|r| catalog.partner_of(r) == Some(vmcloud_scheduler::bootstrap::DEMO_PARTNER))
        .cloned();
    let pop_hosts = match &pop {
        Some(region) if args.game_hosts > 0 => {
            start_game_hosts(
                &args,
                ("pop", region, 2),
                &data_dir,
                &pki.ca,
                scheduler.gateway_addr(),
                scheduler.cluster(),
                &node,
            )
            .await?
        }
        _ => Vec::new(),
    };
    let partner_note = format!(
        "{name} at http://{domain}:{port}/partner (log in as {admin} / {demo_password}); its POP {pop} with {n} simulated hosts",
        name = vmcloud_scheduler::bootstrap::DEMO_PARTNER_NAME,
        domain = vmcloud_scheduler::bootstrap::DEMO_PARTNER_DOMAIN,
        port = scheduler.api_addr().port(),
        admin = vmcloud_scheduler::bootstrap::DEMO_PARTNER_EMAIL,
        pop = pop.as_deref().unwrap_or("(none in the catalog)"),
        n = pop_hosts.len(),
    );
    game_hosts.extend(pop_hosts);

    let api = format!("http://{}", scheduler.api_addr());
    let profile_note = if args.no_profile {
        "not written (--no-profile)".to_owned()
    } else {
        match profile::save_profile(
            "dev",
            profile::Profile {
                api: api.clone(),
                token: token.to_string(),
                project: None,
            },
        ) {
            Ok(path) => format!(
                "`dev` written to {} (API address + dev API key)",
                path.display()
            ),
            Err(e) => {
                tracing::warn!(error = format!("{e:#}"), "the CLI profile was not written");
                format!("not written: {e:#}")
            }
        }
    };
    let exe = cli_name();
    // Written, not `println!`ed: a closed stdout (`vmcloud dev | head`) must not stop the fleet.
    let _ = writeln!(
        std::io::stdout(),
        "VMCloud dev fleet is running (vmcloud {}, git {})\n\
         \n  console      {api}/login  (log in as {demo} / {demo_password}, or sign up; English and French)\n  \
         gaming       the demo household: log in as {gamer} / {demo_password} (parental PIN {pin}) at {api}/play; {exe} titles; {exe} household show <ORG>\n  \
         game hosts   {game_note}\n  \
         NOC          log in as {noc} / {demo_password} at {api}/noc (turn on two-step verification in the account first); public status at {api}/status\n  \
         partner      {partner_note}\n  \
         API          {api}\n  \
         agent API    http://{agent_api}  (node {node} in {region}, hypervisor {hv})\n  \
         agent link   quic://{gateway}  (mutual TLS, dev CA in {pki})\n  \
         data dir     {data}\n  \
         CLI profile  {profile_note}\n  \
         API key      in {key}\n  \
         mail         {mail_note}\n  \
         secrets key  {secrets}  (seals TOTP seeds in the log)\n  \
         billing      {billing_note}\n\
         \nTry, in another terminal:\n  \
         {exe} instance create --flavor vps-s --image debian-12 --region {region} --public-ipv4\n  \
         {exe} instance list              (each with its private address)\n  \
         {exe} network list; {exe} firewall list; {exe} ip list\n  \
         {exe} instance delete <ID>\n  \
         {exe} billing usage --org <ORG>; {exe} billing clock 31d; {exe} billing run <YYYY-MM>; {exe} billing invoices --org <ORG>\n\
         \nPress Ctrl-C to stop.",
        build.version,
        build.git_sha,
        secrets = secrets_path.display(),
        demo = vmcloud_scheduler::bootstrap::DEMO_EMAIL,
        gamer = vmcloud_scheduler::bootstrap::DEMO_GAMER_EMAIL,
        noc = vmcloud_scheduler::bootstrap::DEMO_OPERATOR_EMAIL,
        pin = vmcloud_scheduler::bootstrap::DEMO_PIN,
        game_note = if game_hosts.is_empty() {
            "none (--game-hosts 0): launches wait in the queue".to_owned()
        } else {
            format!(
                "{} simulated ({}) in {}, warm VMs ready for launches ({exe} warm-pools)",
                game_hosts.len(),
                args.game_host_shape,
                args.region
            )
        },
        agent_api = agent.api_addr(),
        region = args.region,
        hv = args.hypervisor,
        gateway = scheduler.gateway_addr(),
        pki = data_dir.join("pki").display(),
        data = data_dir.display(),
        key = key_path.display(),
        billing_note = match args.api.stripe() {
            Some(s) if s.test_mode() => format!(
                "cards through Stripe at {} in test mode (the console's billing page takes 4242 4242 4242 4242); a test clock (`billing clock`)",
                s.api
            ),
            Some(s) => format!("cards through Stripe at {}; a test clock (`billing clock`)", s.api),
            None => "bank transfer only (no --stripe-secret-key; `scripts/dev` starts a localstripe); a test clock (`billing clock`)".to_owned(),
        },
    );

    signals.wait().await;
    eprintln!("stopping…");
    for host in game_hosts {
        host.shutdown().await;
    }
    agent.shutdown().await;
    scheduler.shutdown().await;
    eprintln!("stopped; state is kept in {}", data_dir.display());
    Ok(())
}

/// The flavor of the dev fleet's warm pool.
const DEV_WARM_FLAVOR: &str = "game-rtx4090";

/// How long a simulated game VM takes to boot (long enough to see a launch wait).
const DEV_GAME_BOOT: Duration = Duration::from_secs(3);

/// Starts `--game-hosts` simulated agents once the local agent's node is registered (so that
/// it stays the fleet's first node), with certificates from the dev CA.
async fn start_game_hosts(
    args: &DevArgs,
    (prefix, region, count): (&str, &str, usize),
    data_dir: &Path,
    ca: &vmcloud_proto::pki::Ca,
    gateway: SocketAddr,
    cluster: &vmcloud_scheduler::raft_handle::Cluster,
    local: &NodeId,
) -> anyhow::Result<Vec<Agent>> {
    if count == 0 {
        return Ok(Vec::new());
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while !cluster.state().nodes.contains_key(local) && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut configs = Vec::with_capacity(count);
    for n in 1..=count {
        let node =
            NodeId::parse(&format!("{prefix}-{region}-{n}")).context("a game host's name")?;
        let identity = ca
            .issue_node(&node)
            .context("issuing a game host's certificate")?;
        let dir = data_dir.join("game-hosts").join(node.as_str());
        configs.push(AgentConfig {
            node,
            region: region.to_owned(),
            schedulers: vec![gateway],
            ca_pem: ca.identity.cert_pem.clone(),
            identity,
            hypervisor_uri: "sim:///".into(),
            identity_dir: None,
            data_dir: dir,
            api_listen: "127.0.0.1:0".parse().expect("an address"),
            build: build_info(),
            heartbeat: Duration::from_secs(5),
            sim_gpus: None,
            image_dir: None,
            networks: NetworkMode::Simulated,
            stop_grace: AgentConfig::DEFAULT_STOP_GRACE,
            watch_interval: AgentConfig::DEFAULT_WATCH_INTERVAL,
            metadata_listen: None,
            ipv6_prefix: None,
            telemetry_interval: None,
            connect_gate: None,
            shared_endpoint: None,
        });
    }
    let agents = vmcloud_agent::simulated_host::start_agents(
        configs,
        &args.game_host_shape,
        vmcloud_agent::simulated_host::Timings {
            boot: DEV_GAME_BOOT,
            ..Default::default()
        },
    )
    .await
    .context("cannot start the simulated game hosts")?;
    Ok(agents.into_iter().map(|(a, _)| a).collect())
}

fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    if path.is_absolute() {
        Ok(path.to_owned())
    } else {
        Ok(std::env::current_dir()
            .context("cannot read the current directory")?
            .join(path))
    }
}

fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".to_owned())
}

/// `vmcloud` if that is what the shell finds on PATH, else this binary's full path.
fn cli_name() -> String {
    let exe = std::env::current_exe().ok();
    let on_path = std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|dir| {
            let candidate = dir.join("vmcloud");
            candidate.is_file()
                && exe
                    .as_ref()
                    .is_some_and(|e| candidate.canonicalize().ok() == e.canonicalize().ok())
        })
    });
    match exe {
        Some(exe) if !on_path => exe.display().to_string(),
        _ => "vmcloud".to_owned(),
    }
}

/// Where mail to people goes (`vmcloud dev` and `vmcloud scheduler`).
#[derive(Debug, clap::Args)]
pub struct MailArgs {
    /// Send mail through this SMTP relay: smtp://HOST:PORT (plain),
    /// smtp://USER:PASS@HOST:587?tls=required (STARTTLS) or smtps://USER:PASS@HOST:465.
    #[arg(long, env = "VMCLOUD_SMTP_URL", hide_env_values = true)]
    pub smtp_url: Option<String>,
    /// The sender of mail to people.
    #[arg(long, default_value = "VMCloud <no-reply@vmcloud.example>")]
    pub mail_from: String,
}

/// The API's limits (`vmcloud dev` and `vmcloud scheduler`).
#[derive(Debug, clap::Args)]
pub struct ApiArgs {
    /// API requests an hour each API key or user (or address, without one) may make on a
    /// replica, refilled evenly; 0: no limit. VMCloud's operators are not limited.
    #[arg(long, default_value_t = vmcloud_scheduler::api::limits::DEFAULT_API_PER_HOUR)]
    pub api_rate_limit: u32,
    /// Let webhooks go to `http` URLs and private, loopback or link-local addresses (a test
    /// set-up; `vmcloud dev` always does). Production refuses them (SSRF).
    #[arg(long)]
    pub webhooks_allow_private: bool,
    /// Let operators move the cluster's clock forward (`vmcloud billing clock advance`): for
    /// test clusters that exercise billing over months. `vmcloud dev` always has it.
    #[arg(long)]
    pub test_clock: bool,
    /// The leader bills each month this long after it ends (finalized invoices, numbered); 0:
    /// never, runs are made by hand (`vmcloud billing run`).
    #[arg(long, default_value = "1h", value_parser = crate::bench::parse_duration_or_zero)]
    pub billing_run_after: std::time::Duration,
    /// Stripe's API (or a localstripe's: `scripts/dev` starts one) for card payments.
    #[arg(
        long,
        env = "VMCLOUD_STRIPE_API",
        default_value = "https://api.stripe.com"
    )]
    pub stripe_api: String,
    /// The Stripe secret key (`sk_test_…` or `sk_live_…`); without it, invoices are paid by
    /// bank transfer only (recorded by an operator).
    #[arg(long, env = "VMCLOUD_STRIPE_SECRET_KEY", hide_env_values = true)]
    pub stripe_secret_key: Option<String>,
    /// The signing secret of Stripe's webhook endpoint (`whsec_…`) for `/v1/stripe/webhook`.
    #[arg(long, env = "VMCLOUD_STRIPE_WEBHOOK_SECRET", hide_env_values = true)]
    pub stripe_webhook_secret: Option<String>,
    /// The Stripe publishable key (`pk_test_…`, `pk_live_…`): the console's card form is then
    /// Stripe's own (Stripe.js; card numbers never reach VMCloud). Without it, test mode takes
    /// test card numbers and live mode takes no cards in the console.
    #[arg(long, env = "VMCLOUD_STRIPE_PUBLISHABLE_KEY")]
    pub stripe_publishable_key: Option<String>,
    /// Where the console loads Stripe.js from (default: `https://js.stripe.com/v3/`, or the
    /// localstripe's copy when `--stripe-api` is not Stripe's).
    #[arg(long, env = "VMCLOUD_STRIPE_JS")]
    pub stripe_js: Option<String>,
    /// How long an organisation suspended for unpaid invoices keeps its (stopped) instances
    /// before they are deleted.
    #[arg(long, default_value = "30d", value_parser = crate::bench::parse_duration)]
    pub dunning_grace: std::time::Duration,
}

impl ApiArgs {
    /// The Stripe configuration, when a secret key is given.
    pub fn stripe(&self) -> Option<vmcloud_scheduler::billing::stripe::StripeConfig> {
        self.stripe_secret_key
            .clone()
            .filter(|k| !k.is_empty())
            .map(
                |secret_key| vmcloud_scheduler::billing::stripe::StripeConfig {
                    api: self.stripe_api.clone(),
                    secret_key,
                    webhook_secret: self.stripe_webhook_secret.clone(),
                    publishable_key: self
                        .stripe_publishable_key
                        .clone()
                        .filter(|k| !k.is_empty()),
                    js: self.stripe_js.clone().unwrap_or_else(|| {
                        if self.stripe_api.trim_end_matches('/') == "https://api.stripe.com" {
                            "https://js.stripe.com/v3/".to_owned()
                        } else {
                            format!(
                                "{}/js.stripe.com/v3/",
                                self.stripe_api.trim_end_matches('/')
                            )
                        }
                    }),
                },
            )
    }
}

impl MailArgs {
    /// The relay when one is set, otherwise `fallback`.
    pub fn mailer(
        &self,
        fallback: vmcloud_scheduler::mail::Mailer,
    ) -> anyhow::Result<vmcloud_scheduler::mail::Mailer> {
        Ok(match &self.smtp_url {
            Some(url) => vmcloud_scheduler::mail::Mailer::smtp(url, &self.mail_from)?,
            None => fallback,
        })
    }
}

/// Liveness and disconnect policy (`vmcloud dev` and `vmcloud scheduler`).
#[derive(Debug, clap::Args)]
pub struct LivenessArgs {
    /// A node silent this long is suspect.
    #[arg(long, default_value = "15s", value_parser = crate::bench::parse_duration)]
    pub suspect_after: Duration,
    /// A node silent this long (plus up to 20 % jitter) is declared down, unless most of its
    /// datacenter went silent with it.
    #[arg(long, default_value = "60s", value_parser = crate::bench::parse_duration)]
    pub down_after: Duration,
    /// A new leader declares nothing down for this long.
    #[arg(long, default_value = "30s", value_parser = crate::bench::parse_duration)]
    pub liveness_grace: Duration,
    /// Jobs on a host declared down wait this long for it to come back before they are
    /// requeued (VPS never are: they come back with their host).
    #[arg(long, default_value = "5m", value_parser = crate::bench::parse_duration_or_zero)]
    pub job_lost_after: Duration,
    /// Game sessions on a host declared down end after this long (0s: at once).
    #[arg(long, default_value = "0s", value_parser = crate::bench::parse_duration_or_zero)]
    pub session_lost_after: Duration,
}

impl LivenessArgs {
    pub fn config(&self) -> vmcloud_scheduler::nodes::liveness::LivenessConfig {
        vmcloud_scheduler::nodes::liveness::LivenessConfig {
            suspect_after: self.suspect_after,
            down_after: self.down_after.max(self.suspect_after),
            grace: self.liveness_grace,
            job_lost_after: self.job_lost_after,
            session_lost_after: self.session_lost_after,
            ..Default::default()
        }
    }
}

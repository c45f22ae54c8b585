//! `vmcloud scheduler`: one replica of a multi-replica scheduler (Raft over QUIC between
//! replicas), and `vmcloud cluster init`, which makes the cluster CA and the replicas'
//! certificates.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Args;
use vmcloud_proto::pki::{Ca, Identity};
use vmcloud_scheduler::catalog::Catalog;
use vmcloud_scheduler::tenancy::api_key::ApiKeyToken;
use vmcloud_scheduler::{Replication, Scheduler, SchedulerConfig};

use crate::build_info::build_info;
use crate::data_dir::{self, read_optional, write_private};

#[derive(Debug, Args)]
pub struct SchedulerArgs {
    /// This replica's Raft id (1, 2, 3, …), one of --peers.
    #[arg(long)]
    pub id: u64,
    /// Every voter as ID=HOST:PORT (UDP, QUIC), comma-separated, this replica included.
    #[arg(long, value_delimiter = ',', required = true)]
    pub peers: Vec<String>,
    /// Directory with ca.pem and this replica's scheduler-<id>.{pem,key} (`vmcloud cluster init`).
    #[arg(long)]
    pub pki_dir: PathBuf,
    /// This replica's data directory (Raft log, snapshots).
    #[arg(long)]
    pub data_dir: PathBuf,
    /// HTTP API address.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// UDP address agents connect to (QUIC).
    #[arg(long, default_value = "127.0.0.1:7443")]
    pub gateway_listen: SocketAddr,
    /// Catalog file; default: the built-in config/catalog.toml.
    #[arg(long)]
    pub catalog: Option<PathBuf>,
    /// Join an existing group: start empty and wait to be added with `vmcloud cluster join`
    /// (instead of forming a new group with --peers).
    #[arg(long)]
    pub join: bool,
    #[command(flatten)]
    pub liveness: crate::dev::LivenessArgs,
    /// How long the node certificates this replica signs are valid (joins, renewals).
    #[arg(long, default_value = "365d", value_parser = crate::bench::parse_duration)]
    pub node_cert_ttl: std::time::Duration,
    /// Write mail to people (verification links, password resets) as .eml files in this
    /// folder instead of only logging it.
    #[arg(long, conflicts_with = "smtp_url")]
    pub mail_dir: Option<PathBuf>,
    #[command(flatten)]
    pub mail: crate::dev::MailArgs,
    #[command(flatten)]
    pub api: crate::dev::ApiArgs,
    /// The key file that seals secrets in the log (TOTP seeds): one or more lines of 64 hex
    /// digits, the first seals (`vmcloud secrets new-key`; rotation: docs/operations.md).
    /// Every replica needs the same file. Without it, two-step verification cannot be set up.
    #[arg(long)]
    pub secrets_key: Option<PathBuf>,
    /// The address people reach the API and pages at, for links in mail
    /// (https://cloud.example.com); default: http:// and this replica's API address.
    #[arg(long)]
    pub public_url: Option<String>,
    /// Make sure this API key (vmc_…) belongs to the dev project (for test clusters).
    #[arg(long, env = "VMCLOUD_BOOTSTRAP_API_KEY", hide_env_values = true)]
    pub bootstrap_api_key: Option<String>,
}

fn parse_peers(peers: &[String]) -> anyhow::Result<BTreeMap<u64, SocketAddr>> {
    let mut out = BTreeMap::new();
    for p in peers {
        let (id, addr) = p
            .split_once('=')
            .with_context(|| format!("--peers: `{p}` is not ID=HOST:PORT"))?;
        let id: u64 = id
            .parse()
            .ok()
            .filter(|&i| i > 0)
            .with_context(|| format!("--peers: `{id}` is not a replica id (1, 2, …)"))?;
        let addr: SocketAddr = addr
            .parse()
            .with_context(|| format!("--peers: `{addr}` is not HOST:PORT"))?;
        if out.insert(id, addr).is_some() {
            bail!("--peers: replica {id} is listed twice");
        }
    }
    Ok(out)
}

fn read_identity(dir: &Path, name: &str) -> anyhow::Result<Identity> {
    let read = |ext: &str| {
        let path = dir.join(format!("{name}.{ext}"));
        read_optional(&path)?.with_context(|| {
            format!(
                "{} is missing: run `vmcloud cluster init --pki-dir {}` first",
                path.display(),
                dir.display()
            )
        })
    };
    Ok(Identity {
        cert_pem: read("pem")?,
        key_pem: read("key")?,
    })
}

pub async fn run(args: SchedulerArgs) -> anyhow::Result<()> {
    let peers = parse_peers(&args.peers)?;
    let listen = *peers.get(&args.id).with_context(|| {
        format!(
            "--id {}: not one of --peers ({})",
            args.id,
            peers
                .keys()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        )
    })?;
    let token = match &args.bootstrap_api_key {
        Some(k) => Some(
            ApiKeyToken::parse(k.trim())
                .context("--bootstrap-api-key: not an API key (vmc_<16 hex>_<32 hex>)")?,
        ),
        None => None,
    };
    let _lock = data_dir::lock(&args.data_dir)?;
    let mut signals = crate::signals::StopSignals::register()?;
    let catalog = match &args.catalog {
        Some(path) => Catalog::load(path)?,
        None => Catalog::builtin(),
    };
    let ca = read_identity(&args.pki_dir, "ca")?;
    let mailer = args.mail.mailer(match &args.mail_dir {
        Some(dir) => vmcloud_scheduler::mail::Mailer::Folder(dir.clone()),
        None => vmcloud_scheduler::mail::Mailer::Log,
    })?;
    let secrets = args
        .secrets_key
        .as_deref()
        .map(vmcloud_scheduler::secrets::SecretsKey::load)
        .transpose()
        .context("--secrets-key")?;
    let identity = read_identity(&args.pki_dir, &format!("scheduler-{}", args.id))?;
    let scheduler = signals
        .unless_stopped("waiting for the cluster", async {
            Scheduler::start(SchedulerConfig {
                data_dir: args.data_dir.clone(),
                api_listen: args.listen,
                gateway_listen: args.gateway_listen,
                catalog,
                build: build_info(),
                ca_pem: ca.cert_pem.clone(),
                identity,
                // Hosts joining with a token get their certificates signed here.
                ca_key_pem: Some(ca.key_pem.clone()),
                node_cert_ttl: args.node_cert_ttl,
                liveness: args.liveness.config(),
                replication: Replication::Peers {
                    id: args.id,
                    listen,
                    peers,
                    join: args.join,
                },
                mailer,
                secrets,
                public_url: args.public_url.clone(),
                pages: Some(vmcloud_web::pages),
                api_per_hour: args.api.api_rate_limit,
                webhooks_allow_private: args.api.webhooks_allow_private,
                test_clock: args.api.test_clock,
                billing_run_after: args.api.billing_run_after,
                stripe: args.api.stripe(),
                dunning_grace: args.api.dunning_grace,
            })
            .await
            .context("cannot start the scheduler")
        })
        .await?;
    if let Some(token) = &token {
        vmcloud_scheduler::bootstrap::ensure_api_key(scheduler.cluster(), token)
            .await
            .context("cannot set up the bootstrap API key")?;
    }
    println!(
        "scheduler replica {} is running\n  API          http://{}\n  agent link   quic://{}\n  raft link    quic://{listen}",
        args.id,
        scheduler.api_addr(),
        scheduler.gateway_addr(),
    );
    signals.wait().await;
    eprintln!("stopping…");
    scheduler.shutdown().await;
    Ok(())
}

#[derive(Debug, Args)]
pub struct ClusterInitArgs {
    /// Where to write the CA and the replicas' certificates.
    #[arg(long)]
    pub pki_dir: PathBuf,
    /// How many scheduler replicas to issue certificates for.
    #[arg(long, default_value_t = 3)]
    pub replicas: u64,
    /// Name of the cluster (in the CA's name).
    #[arg(long, default_value = "vmcloud")]
    pub name: String,
}

pub fn init(args: ClusterInitArgs) -> anyhow::Result<()> {
    let dir = &args.pki_dir;
    if dir.join("ca.pem").exists() {
        bail!(
            "{} already holds a cluster CA; refusing to replace it (delete it first to start over)",
            dir.display()
        );
    }
    if args.replicas == 0 {
        bail!("--replicas must be at least 1");
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let ca = Ca::generate(&args.name).context("generating the cluster CA")?;
    let save = |name: &str, id: &Identity| -> anyhow::Result<()> {
        std::fs::write(dir.join(format!("{name}.pem")), &id.cert_pem)
            .with_context(|| format!("cannot write {name}.pem"))?;
        write_private(&dir.join(format!("{name}.key")), &id.key_pem)
    };
    for id in 1..=args.replicas {
        save(
            &format!("scheduler-{id}"),
            &ca.issue_scheduler(&id.to_string())?,
        )?;
    }
    save("ca", &ca.identity)?;
    println!(
        "cluster CA and certificates for scheduler replicas 1..={} written to {} (keys mode 0600)",
        args.replicas,
        dir.display()
    );
    Ok(())
}

//! `vmcloud agent`: the node agent as a process of its own, on this host's hardware or, with
//! `--sim`, on simulated hardware of a host shape (many agents in one process with `--count`).
//!
//! Every setting can also come from the environment (`VMCLOUD_AGENT_*`, listed by `--help`):
//! the systemd unit of `ansible/roles/agent` reads them from `/etc/vmcloud/agent.env`.
//!
//! Identity: on first start the agent joins with a single-use token (`--token`; the scheduler
//! signs its certificate request) or, without one, issues itself a certificate from the CA key
//! in `--pki-dir` (development). Either way it keeps certificate and key (mode 0600) under its
//! data directory and uses them at every later start.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use vmcloud_agent::{Agent, AgentConfig, NetworkMode, simulated_host, tenant_net::Underlay};
use vmcloud_proto::NodeId;
use vmcloud_proto::pki::{Ca, Identity};

use crate::build_info::build_info;
use crate::data_dir::{self, read_optional, write_private};

#[derive(Debug, Args)]
pub struct AgentArgs {
    /// This host's node name (a DNS label). With --count, agents are NODE-1 … NODE-N.
    #[arg(long, env = "VMCLOUD_AGENT_NODE")]
    pub node: String,
    /// Region code of this host.
    #[arg(long, env = "VMCLOUD_AGENT_REGION", default_value = "par")]
    pub region: String,
    /// The scheduler replicas' agent gateways (QUIC), HOST:PORT, comma-separated (or the
    /// flag repeated). The agent connects to the first that answers; a follower sends it on
    /// to the leader.
    #[arg(
        long,
        env = "VMCLOUD_AGENT_SCHEDULER",
        default_value = "127.0.0.1:7443",
        value_delimiter = ','
    )]
    pub scheduler: Vec<SocketAddr>,
    /// Directory holding the cluster CA certificate (ca.pem). With --token that is all it
    /// needs; without, it must also hold the CA key (ca.key) and the agent issues itself a
    /// certificate (development).
    #[arg(long, env = "VMCLOUD_AGENT_PKI_DIR")]
    pub pki_dir: PathBuf,
    /// A join token (`vmcloud token create --node-name NODE`): on first start the agent
    /// sends a certificate request with it and keeps the certificate it gets. Single use.
    #[arg(long, env = "VMCLOUD_AGENT_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// The agent's own directory: ledger, certificate, instance disks and logs.
    #[arg(long, env = "VMCLOUD_AGENT_DATA_DIR")]
    pub data_dir: PathBuf,
    /// libvirt URI: qemu:///system in production, test:///default for development.
    #[arg(
        long,
        env = "VMCLOUD_AGENT_HYPERVISOR",
        default_value = "qemu:///system"
    )]
    pub hypervisor: String,
    /// The agent's local HTTP API.
    #[arg(long, env = "VMCLOUD_AGENT_LISTEN", default_value = "127.0.0.1:0")]
    pub agent_listen: SocketAddr,
    /// The image cache (default: <data dir>/images).
    #[arg(long, env = "VMCLOUD_AGENT_IMAGE_DIR")]
    pub image_dir: Option<PathBuf>,
    /// Tenant networks: `host` makes bridges (and VXLAN devices with --underlay-device) on
    /// this host; `sim` keeps them in memory.
    #[arg(long, env = "VMCLOUD_AGENT_NETWORKS", value_parser = ["host", "sim"], default_value = "host")]
    pub networks: String,
    /// The underlay interface VXLAN traffic leaves by (with --underlay-ip).
    #[arg(long, env = "VMCLOUD_AGENT_UNDERLAY_DEVICE", requires = "underlay_ip")]
    pub underlay_device: Option<String>,
    /// This host's address on the underlay (the VXLAN source).
    #[arg(long, env = "VMCLOUD_AGENT_UNDERLAY_IP", requires = "underlay_device")]
    pub underlay_ip: Option<Ipv4Addr>,
    /// This host's IPv6 /64 (`2001:db8:0:7::/64`): each of its instances gets an address in
    /// it (the prefix and the EUI-64 of its MAC), gateway fe80::1 on its bridge.
    #[arg(long, env = "VMCLOUD_AGENT_IPV6_PREFIX", value_parser = parse_prefix64)]
    pub ipv6_prefix: Option<String>,
    /// Make tenant networks in this network namespace (`ip netns` name) instead of the
    /// agent's own.
    #[arg(long, env = "VMCLOUD_AGENT_TENANT_NETNS")]
    pub tenant_netns: Option<String>,
    /// Serve the guest metadata endpoint here (169.254.169.254:80 in production).
    #[arg(long, env = "VMCLOUD_AGENT_METADATA_LISTEN")]
    pub metadata_listen: Option<SocketAddr>,
    /// How long a guest has to honour an ACPI shutdown (e.g. 60s).
    #[arg(long, env = "VMCLOUD_AGENT_STOP_GRACE", default_value = "60s", value_parser = crate::duration::parse_duration)]
    pub stop_grace: Duration,
    /// Run on simulated hardware (a hypervisor in memory with timed transitions, simulated
    /// GPUs, networks and scrubbing) of --shape.
    #[arg(long)]
    pub sim: bool,
    /// Host shape of the simulated hardware: `cpu` or `gpu-<1..16>x<model>` (gpu-8xh100).
    /// Without --sim: the real hypervisor, but CPU, memory and GPUs reported as this shape
    /// (development and benchmarks on a small machine; the test driver's VMs use nothing).
    #[arg(long)]
    pub shape: Option<String>,
    /// Simulated agents to run in this process.
    #[arg(long, requires = "sim", default_value_t = 1)]
    pub count: usize,
}

fn read_ca_cert(dir: &Path) -> anyhow::Result<String> {
    let path = dir.join("ca.pem");
    read_optional(&path)?.with_context(|| {
        format!(
            "{} is missing: --pki-dir must hold the cluster CA certificate (ca.pem, from `vmcloud cluster init`)",
            path.display()
        )
    })
}

fn read_ca(dir: &Path) -> anyhow::Result<Ca> {
    let read = |ext: &str| {
        let path = dir.join(format!("ca.{ext}"));
        read_optional(&path)?.with_context(|| {
            format!(
                "{} is missing: --pki-dir must hold the cluster CA (`vmcloud cluster init --pki-dir {}`, or a dev fleet's <data dir>/pki)",
                path.display(),
                dir.display()
            )
        })
    };
    Ok(Ca {
        identity: Identity {
            cert_pem: read("pem")?,
            key_pem: read("key")?,
        },
    })
}

/// The node's certificate under `dir`, issued from the CA the first time.
/// How a node gets its certificate the first time.
enum Issuer<'a> {
    /// Joins with a token: the scheduler signs it.
    Token {
        schedulers: &'a [SocketAddr],
        ca_pem: &'a str,
        token: &'a str,
    },
    /// Issues it from the CA key (development).
    Ca(&'a Ca),
    /// None: only a kept, valid certificate will do.
    Kept,
}

async fn node_identity(issuer: Issuer<'_>, node: &NodeId, dir: &Path) -> anyhow::Result<Identity> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let (cert, key) = (dir.join("node.pem"), dir.join("node.key"));
    if let (Some(cert_pem), Some(key_pem)) = (read_optional(&cert)?, read_optional(&key)?)
        && vmcloud_proto::pki::node_id_from_cert(&pem_der(&cert_pem)?)
            .ok()
            .as_ref()
            == Some(node)
    {
        let Some(at) = vmcloud_proto::pki::expired_at(&cert_pem) else {
            return Ok(Identity { cert_pem, key_pem });
        };
        let when = time::OffsetDateTime::from_unix_timestamp(at)
            .map(|t| t.to_string())
            .unwrap_or_else(|_| at.to_string());
        match &issuer {
            Issuer::Token { .. } => eprintln!(
                "the certificate of node {node} expired at {when} (it could not be renewed while the scheduler was unreachable); joining again with the token"
            ),
            Issuer::Ca(_) => {}
            Issuer::Kept => bail!(
                "the certificate of node {node} expired at {when}: it could not be renewed while the scheduler was unreachable. Start the agent with a fresh join token (`vmcloud token create --node-name {node}`, then --token)"
            ),
        }
    }
    let id = match issuer {
        Issuer::Token {
            schedulers,
            ca_pem,
            token,
        } => {
            let id = join_any(schedulers, ca_pem, node, token)
                .await
                .with_context(|| format!("node {node} could not join"))?;
            eprintln!(
                "joined as node {node} with the token; certificate kept in {}",
                dir.display()
            );
            id
        }
        Issuer::Ca(ca) => ca
            .issue_node(node)
            .with_context(|| format!("issuing the certificate of node {node}"))?,
        // `run` reads the CA key whenever no certificate is kept.
        Issuer::Kept => bail!("no certificate of node {node} is kept in {}", dir.display()),
    };
    // The key first, then the certificate by rename: whoever sees the certificate sees it
    // whole, with its key beside it.
    write_private(&key, &id.key_pem)?;
    let tmp = cert.with_extension("pem.tmp");
    std::fs::write(&tmp, &id.cert_pem)
        .and_then(|()| std::fs::rename(&tmp, &cert))
        .with_context(|| format!("cannot write {}", cert.display()))?;
    Ok(id)
}

/// Joins through the first scheduler that answers (any replica can: a follower hands the
/// token to the leader); a refusal is final.
async fn join_any(
    schedulers: &[SocketAddr],
    ca_pem: &str,
    node: &NodeId,
    token: &str,
) -> Result<Identity, vmcloud_agent::join::JoinError> {
    let mut last = None;
    for scheduler in schedulers {
        match vmcloud_agent::join::join(*scheduler, ca_pem, node, token).await {
            Err(e @ vmcloud_agent::join::JoinError::Unreachable { .. }) => {
                eprintln!("{e}; trying the next scheduler");
                last = Some(e);
            }
            other => return other,
        }
    }
    Err(last.unwrap_or(vmcloud_agent::join::JoinError::Refused(
        "no scheduler address given (--scheduler)".into(),
    )))
}

/// Whether a certificate for `node` is already kept under `dir`.
fn has_identity(node: &NodeId, dir: &Path) -> anyhow::Result<bool> {
    Ok(match read_optional(&dir.join("node.pem"))? {
        Some(pem) => {
            vmcloud_proto::pki::node_id_from_cert(&pem_der(&pem)?)
                .ok()
                .as_ref()
                == Some(node)
                && dir.join("node.key").exists()
        }
        None => false,
    })
}

fn pem_der(pem: &str) -> anyhow::Result<Vec<u8>> {
    let (_, parsed) = x509_parser::pem::parse_x509_pem(pem.as_bytes())
        .map_err(|e| anyhow::anyhow!("the stored node certificate is not PEM: {e}"))?;
    Ok(parsed.contents)
}

pub async fn run(args: AgentArgs) -> anyhow::Result<()> {
    if args.count == 0 {
        bail!("--count must be at least 1");
    }
    let shape = args.shape.clone().unwrap_or_else(|| "cpu".into());
    if args.sim || args.shape.is_some() {
        vmcloud_agent::gpu::SimGpus::shape(&shape).map_err(|e| anyhow::anyhow!("--shape: {e}"))?;
    }
    let data_dir = std::path::absolute(&args.data_dir)
        .with_context(|| format!("--data-dir {}", args.data_dir.display()))?;
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("cannot create {}", data_dir.display()))?;
    let _lock = data_dir::lock(&data_dir)?;
    if args.token.is_some() && args.count > 1 {
        bail!("--token joins one node; it cannot go with --count");
    }
    let ca_pem = read_ca_cert(&args.pki_dir)?;
    // The CA key is read only when the agent must issue its own certificate.
    let mut ca = None;
    let networks = if args.sim || args.networks == "sim" {
        NetworkMode::Simulated
    } else {
        NetworkMode::Host {
            underlay: args
                .underlay_device
                .clone()
                .zip(args.underlay_ip)
                .map(|(device, local)| Underlay { device, local }),
            netns: args
                .tenant_netns
                .as_ref()
                .map(|name| PathBuf::from("/run/netns").join(name)),
        }
    };
    if args.count > 1 {
        // Each simulated agent holds a UDP socket, its ledger and an API socket.
        let limit = crate::limits::raise_nofile();
        let needed = 4 * args.count as u64 + 64;
        if limit > 0 && limit < needed {
            bail!(
                "--count {} needs about {needed} open files, but this process may open {limit}: raise the limit (ulimit -n) or run fewer agents per process",
                args.count
            );
        }
    }
    let names: Vec<String> = if args.count == 1 {
        vec![args.node.clone()]
    } else {
        (1..=args.count)
            .map(|i| format!("{}-{i}", args.node))
            .collect()
    };
    // Agents of one process connect 64 at a time: they share its CPUs.
    let connect_gate =
        (args.count > 1).then(|| std::sync::Arc::new(tokio::sync::Semaphore::new(64)));
    // …through one UDP socket: a port for each would exhaust the ephemeral range.
    let shared_endpoint = match (args.count > 1, args.scheduler.first()) {
        (true, Some(first)) => Some(vmcloud_agent::scheduler_link::bind_endpoint(*first)?),
        _ => None,
    };
    let mut configs = Vec::with_capacity(names.len());
    for name in &names {
        let node = NodeId::parse(name).map_err(|e| anyhow::anyhow!("--node: {e}"))?;
        let dir = if args.count == 1 {
            data_dir.clone()
        } else {
            data_dir.join(name)
        };
        let issuer = match &args.token {
            Some(token) => Issuer::Token {
                schedulers: &args.scheduler,
                ca_pem: &ca_pem,
                token,
            },
            None => {
                if ca.is_none() && !has_identity(&node, &dir.join("identity"))? {
                    ca = Some(read_ca(&args.pki_dir).context(
                        "without --token the agent issues its own certificate and needs the CA key; give a join token instead (vmcloud token create)",
                    )?);
                }
                match &ca {
                    Some(ca) => Issuer::Ca(ca),
                    None => Issuer::Kept,
                }
            }
        };
        let identity = node_identity(issuer, &node, &dir.join("identity")).await?;
        configs.push(AgentConfig {
            node,
            region: args.region.clone(),
            schedulers: args.scheduler.clone(),
            ca_pem: ca_pem.clone(),
            identity,
            hypervisor_uri: args.hypervisor.clone(),
            identity_dir: Some(dir.join("identity")),
            data_dir: dir,
            api_listen: args.agent_listen,
            build: build_info(),
            heartbeat: Duration::from_secs(5),
            sim_gpus: None,
            image_dir: args.image_dir.clone(),
            networks: networks.clone(),
            stop_grace: args.stop_grace,
            watch_interval: AgentConfig::DEFAULT_WATCH_INTERVAL,
            metadata_listen: args.metadata_listen,
            // A /64 is one host's: several agents of one process get none.
            ipv6_prefix: (args.count == 1)
                .then(|| args.ipv6_prefix.clone())
                .flatten(),
            // Simulated agents would all read this same machine.
            telemetry_interval: (!args.sim).then_some(AgentConfig::DEFAULT_TELEMETRY_INTERVAL),
            connect_gate: connect_gate.clone(),
            shared_endpoint: shared_endpoint.clone(),
        });
    }
    let schedulers = args
        .scheduler
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    let mut signals = crate::signals::StopSignals::register()?;
    let agents: Vec<Agent> = if args.sim {
        let started = std::time::Instant::now();
        let agents =
            simulated_host::start_agents(configs, &shape, simulated_host::Timings::default())
                .await
                .context("cannot start the simulated agents")?;
        eprintln!(
            "{} simulated agent(s) of shape {} started in {:.1} s, reporting to {}",
            agents.len(),
            shape,
            started.elapsed().as_secs_f64(),
            schedulers
        );
        agents.into_iter().map(|(a, _)| a).collect()
    } else {
        let config = configs.pop().expect("one config");
        let agent = match &args.shape {
            None => Agent::start(config).await,
            Some(shape) => {
                let uri = config.hypervisor_uri.clone();
                let hv = tokio::task::spawn_blocking(move || {
                    vmcloud_agent::libvirt::Libvirt::connect(&uri)
                })
                .await??;
                let (mut hw, _) = simulated_host::hardware(
                    &config.node.to_string(),
                    shape,
                    simulated_host::Timings::default(),
                )
                .map_err(|e| anyhow::anyhow!("--shape: {e}"))?;
                hw.hypervisor = std::sync::Arc::new(hv);
                // Only the CPU, memory and GPUs are the shape's: networks are what was asked.
                hw.links = vmcloud_agent::links_for(&config)?;
                hw.firewall = vmcloud_agent::firewall_for(&config);
                Agent::start_with(config, hw).await
            }
        }
        .context("cannot start the agent")?;
        eprintln!(
            "agent {} running: hypervisor {}, API http://{}, reporting to {}",
            args.node,
            args.hypervisor,
            agent.api_addr(),
            schedulers
        );
        vec![agent]
    };
    signals.wait().await;
    eprintln!("stopping (VMs keep running)");
    for agent in agents {
        agent.shutdown().await;
    }
    Ok(())
}

/// `--ipv6-prefix`: a /64, its host bits zero.
fn parse_prefix64(s: &str) -> Result<String, String> {
    vmcloud_scheduler::nodes::types::parse_prefix64(s)
        .map(|ip| format!("{ip}/64"))
        .ok_or_else(|| {
            format!("{s:?} is not an IPv6 /64 with its host bits zero (2001:db8:0:7::/64)")
        })
}

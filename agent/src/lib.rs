//! The VMCloud node agent.
//!
//! Hardware sits behind narrow traits — [`hypervisor::Hypervisor`] (real: [`libvirt::Libvirt`]),
//! [`host_info::HostInfo`] (real: sysinfo) and [`gpu::GpuInventory`] (real: NVML; simulated:
//! [`gpu::SimGpus`]). Tasks of a running [`Agent`]:
//! - the **link** ([`scheduler_link`]) to the scheduler: registers, receives desired configs and persists
//!   them in the **ledger** ([`ledger`], redb) before anything acts on them, sends status and
//!   heartbeats;
//! - the **reconciler** ([`reconciler`]): converges the hypervisor onto the desired config;
//! - the local **API** ([`api`]).
//!
//! They talk through `watch` channels: desired config (link → reconciler), status report
//! (reconciler → link), link state (link → API).

pub mod api;
pub mod firewall;
pub mod gpu;
pub mod host_info;
pub mod hypervisor;
pub mod images;
pub mod join;
pub mod ledger;
pub mod libvirt;
pub mod metadata;
pub mod reconciler;
pub mod scheduler_link;
pub mod scrub;
pub mod simulated_host;
pub mod telemetry;
pub mod tenant_net;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use vmcloud_proto::{ALPN_AGENT, BuildInfo, NodeId, pb, pki};

use crate::host_info::HostInfo;
use crate::hypervisor::Hypervisor;

#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// The node this agent speaks for; must match the common name of `identity`.
    pub node: NodeId,
    /// Where `identity` is kept (`node.pem`, `node.key`): renewed certificates are written
    /// there. None: renewals are kept in memory only.
    pub identity_dir: Option<PathBuf>,
    /// Region code of this host (e.g. `par`).
    pub region: String,
    /// The scheduler replicas' agent gateways. The agent connects to the first that answers;
    /// a follower sends it to the leader.
    pub schedulers: Vec<SocketAddr>,
    pub ca_pem: String,
    pub identity: pki::Identity,
    pub hypervisor_uri: String,
    /// The agent's own directory (`ledger.redb` lives here).
    pub data_dir: PathBuf,
    pub api_listen: SocketAddr,
    pub build: BuildInfo,
    pub heartbeat: Duration,
    /// Simulated GPUs of a host shape (`gpu-8xh100`, see [`gpu::SimGpus::shape`]) instead of
    /// those NVML finds.
    pub sim_gpus: Option<String>,
    /// The image cache; `<data_dir>/images` when unset.
    pub image_dir: Option<PathBuf>,
    /// Tenant networks on the host's real links (rtnetlink), or kept in memory.
    pub networks: NetworkMode,
    /// How long a guest has to honour an ACPI shutdown before it is stopped forcibly.
    pub stop_grace: Duration,
    /// How often the reconciler looks at the domains when nothing else wakes it.
    pub watch_interval: Duration,
    /// How often host telemetry is read (`/metrics`, heartbeat summary, conditions); none:
    /// not read (simulated fleets, where every agent would read the same machine).
    pub telemetry_interval: Option<Duration>,
    /// Simulated agents sharing one process take turns at connecting (handshake and
    /// registration) through this gate, as hosts with CPUs of their own would not compete.
    pub connect_gate: Option<Arc<tokio::sync::Semaphore>>,
    /// A QUIC endpoint (one UDP socket) shared by the simulated agents of one process; none:
    /// the agent binds its own.
    pub shared_endpoint: Option<quinn::Endpoint>,
    /// Where the guest metadata endpoint listens (`169.254.169.254:80` in production; the
    /// address is put on every tenant bridge); none: not served.
    pub metadata_listen: Option<SocketAddr>,
    /// The host's IPv6 /64 (`2001:db8:0:7::/64`), reported at registration: its instances'
    /// IPv6 addresses are in it. None: no IPv6 for its guests.
    pub ipv6_prefix: Option<String>,
}

/// Where tenant networks are made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetworkMode {
    /// Bridges and VXLAN devices on the host (needs CAP_NET_ADMIN). Without an underlay,
    /// networks are bridges only (one host).
    Host {
        underlay: Option<tenant_net::Underlay>,
        /// A network namespace (`/run/netns/NAME`) to make them in instead of the agent's
        /// own: hosts that keep tenant plumbing apart, and tests that run several hosts on one
        /// machine.
        netns: Option<PathBuf>,
    },
    /// In memory: the dev fleet and simulated hosts, which must not change the machine.
    Simulated,
}

/// The instances' firewalls `config` asks for: nftables on a real host (in the tenant
/// namespace when there is one), in memory otherwise.
pub fn firewall_for(config: &AgentConfig) -> Arc<dyn firewall::Firewall> {
    match &config.networks {
        NetworkMode::Simulated => Arc::new(firewall::SimFirewall::default()),
        NetworkMode::Host { netns, .. } => Arc::new(firewall::nft::Nft::new(netns.clone())),
    }
}

/// The tenant network plumbing `config` asks for: real links (rtnetlink, in the configured
/// namespace when there is one) or simulated ones.
pub fn links_for(config: &AgentConfig) -> Result<Arc<dyn tenant_net::NetLinks>, AgentError> {
    Ok(match &config.networks {
        NetworkMode::Simulated => Arc::new(tenant_net::SimLinks::default()),
        NetworkMode::Host { underlay, netns } => {
            let underlay = underlay.clone();
            let netns = netns.clone();
            let metadata = config.metadata_listen.and_then(|a| match a.ip() {
                std::net::IpAddr::V4(v4) => Some(v4),
                std::net::IpAddr::V6(_) => None,
            });
            // The netlink socket belongs to the namespace of the thread that opens it.
            let open = move || -> Result<_, tenant_net::NetError> {
                if let Some(path) = &netns {
                    let ns =
                        std::fs::File::open(path).map_err(|e| tenant_net::NetError::Netlink {
                            operation: format!("opening the network namespace {}", path.display()),
                            message: e.to_string(),
                        })?;
                    nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| {
                        tenant_net::NetError::Netlink {
                            operation: format!("entering the network namespace {}", path.display()),
                            message: e.to_string(),
                        }
                    })?;
                }
                tenant_net::linux::Rtnetlink::new(underlay, metadata)
            };
            let links = std::thread::spawn(open)
                .join()
                .expect("opening netlink does not panic")
                .map_err(AgentError::Networks)?;
            Arc::new(links)
        }
    })
}

impl AgentConfig {
    /// Defaults for what a deployment rarely changes.
    pub const DEFAULT_STOP_GRACE: Duration = Duration::from_secs(60);
    pub const DEFAULT_WATCH_INTERVAL: Duration = Duration::from_secs(5);
    pub const DEFAULT_TELEMETRY_INTERVAL: Duration = Duration::from_secs(5);
}

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("cannot create the agent data directory {path}")]
    DataDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Ledger(#[from] ledger::LedgerError),
    #[error("{0}")]
    Shape(String),
    #[error("no scheduler address given: name at least one scheduler gateway (--scheduler)")]
    NoScheduler,
    #[error(
        "cannot listen for the guest metadata endpoint on {addr}: the address must be on this host (put it on a bridge or loopback) or choose another with --metadata-listen"
    )]
    MetadataBind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot manage tenant networks on this host")]
    Networks(#[source] tenant_net::NetError),
    #[error("cannot open the hypervisor")]
    Hypervisor(#[from] hypervisor::HypervisorError),
    #[error("invalid node certificate")]
    Tls(#[from] pki::PkiError),
    #[error(transparent)]
    Link(#[from] scheduler_link::LinkError),
    #[error(
        "cannot listen for the agent API on {addr}: choose another address with --agent-listen"
    )]
    ApiBind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// The hardware an agent drives, each part behind its trait: real or simulated.
pub struct Hardware {
    pub hypervisor: Arc<dyn Hypervisor>,
    pub host: Box<dyn HostInfo>,
    pub gpus: Box<dyn gpu::GpuInventory>,
    pub links: Arc<dyn tenant_net::NetLinks>,
    pub firewall: Arc<dyn firewall::Firewall>,
    pub scrubber: Arc<dyn scrub::GpuScrubber>,
}

/// A running agent.
pub struct Agent {
    api_addr: SocketAddr,
    tasks: Vec<JoinHandle<()>>,
    api_stop: oneshot::Sender<()>,
    /// Closed at shutdown, unless shared with other (simulated) agents.
    endpoint: Option<quinn::Endpoint>,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("api_addr", &self.api_addr)
            .finish_non_exhaustive()
    }
}

impl Agent {
    /// Starts an agent on real hardware: libvirt at `config.hypervisor_uri`, sysinfo, NVML.
    pub async fn start(config: AgentConfig) -> Result<Agent, AgentError> {
        let uri = config.hypervisor_uri.clone();
        let hv = tokio::task::spawn_blocking(move || libvirt::Libvirt::connect(&uri))
            .await
            .expect("connecting to libvirt does not panic")?;
        let host = host_info::SysinfoHost::read();
        let links = links_for(&config)?;
        let hw =
            |gpus: Box<dyn gpu::GpuInventory>, scrubber: Arc<dyn scrub::GpuScrubber>| Hardware {
                hypervisor: Arc::new(hv),
                host: Box::new(host),
                gpus,
                links,
                firewall: firewall_for(&config),
                scrubber,
            };
        let hardware = match &config.sim_gpus {
            Some(shape) => hw(
                Box::new(gpu::SimGpus::shape(shape).map_err(AgentError::Shape)?),
                Arc::new(scrub::SimScrubber::default()),
            ),
            None => {
                let (nvml, cuda) = tokio::task::spawn_blocking(|| {
                    let nvml = gpu::Nvml::load();
                    // Only a host with GPUs needs CUDA; one without never scrubs.
                    let cuda =
                        (!gpu::GpuInventory::read(&nvml).gpus.is_empty()).then(scrub::Cuda::load);
                    (nvml, cuda)
                })
                .await
                .expect("loading NVML and CUDA does not panic");
                let scrubber: Arc<dyn scrub::GpuScrubber> = match cuda {
                    Some(Ok(cuda)) => Arc::new(cuda),
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "GPUs cannot be scrubbed: none will go to a tenant");
                        Arc::new(scrub::Refuse(match e {
                            scrub::ScrubError::Unavailable(why) => why,
                            other => other.to_string(),
                        }))
                    }
                    None => Arc::new(scrub::Refuse("this host has no GPUs".into())),
                };
                hw(Box::new(nvml), scrubber)
            }
        };
        Agent::start_with(config, hardware).await
    }

    /// Starts an agent on the given hardware.
    pub async fn start_with(config: AgentConfig, hardware: Hardware) -> Result<Agent, AgentError> {
        let Hardware {
            hypervisor: hv,
            host,
            gpus,
            links,
            firewall,
            scrubber,
        } = hardware;
        std::fs::create_dir_all(&config.data_dir).map_err(|source| AgentError::DataDir {
            path: config.data_dir.clone(),
            source,
        })?;
        let ledger = ledger::Ledger::open(&config.data_dir.join("ledger.redb"))?;
        let persisted = ledger.current().cloned();
        if let Some(p) = &persisted {
            tracing::info!(
                generation = p.generation,
                instances = p.instances.len(),
                "resuming from the persisted desired config"
            );
        }
        let (desired_tx, desired_rx) = watch::channel(persisted);
        let (status_tx, status_rx) = watch::channel::<Option<pb::StatusReport>>(None);
        let (connected_tx, connected_rx) = watch::channel(false);

        let gpu_report = gpus.read();
        let expected_gpus = gpu_report
            .gpus
            .iter()
            .map(|g| g.pci_address.clone())
            .collect();
        for e in &gpu_report.errors {
            tracing::warn!(error = %e, "a GPU could not be read; it is not reported");
        }
        let image_dir = config
            .image_dir
            .clone()
            .unwrap_or_else(|| config.data_dir.join("images"));
        let reconcile_host = Arc::new(reconciler::Host {
            hv: hv.clone(),
            images: Arc::new(images::ImageCache::new(
                image_dir,
                config.data_dir.join("instances"),
            )),
            links,
            firewall,
            scrubber,
            gpus: gpu_report
                .gpus
                .iter()
                .map(|g| (g.pci_address.clone(), g.numa_node))
                .collect(),
            numa_cpus: host_info::numa_cpus(),
            stop_grace: config.stop_grace,
            watch_interval: config.watch_interval,
        });

        let (snapshot_tx, snapshot_rx) = watch::channel::<Option<Arc<telemetry::Snapshot>>>(None);
        let (summary_tx, summary_rx) = watch::channel::<Option<pb::HostSummary>>(None);
        let (conditions_tx, conditions_rx) = watch::channel::<Vec<pb::HostCondition>>(Vec::new());

        let tls = pki::client_config(&config.ca_pem, &config.identity, ALPN_AGENT)?;
        let first = *config.schedulers.first().ok_or(AgentError::NoScheduler)?;
        let (endpoint, own_endpoint) = match &config.shared_endpoint {
            Some(e) => (e.clone(), false),
            None => (scheduler_link::bind_endpoint(first)?, true),
        };
        let link = scheduler_link::Link {
            client: scheduler_link::client_config(tls)?,
            schedulers: config.schedulers.clone(),
            endpoint: endpoint.clone(),
            build: (&config.build).into(),
            inventory: pb::HostInventory {
                underlay_ipv4: match &config.networks {
                    NetworkMode::Host {
                        underlay: Some(u), ..
                    } => u.local.to_string(),
                    _ => String::new(),
                },
                ipv6_prefix: config.ipv6_prefix.clone().unwrap_or_default(),
                ..host.inventory(&config.region, hv.uri(), gpu_report.to_pb())
            },
            heartbeat: config.heartbeat,
            ledger: Arc::new(Mutex::new(ledger)),
            desired: desired_tx,
            status: status_rx.clone(),
            connected: connected_tx,
            summary: summary_rx,
            conditions: conditions_rx,
            ca_pem: config.ca_pem.clone(),
            identity: config.identity.clone(),
            identity_dir: config.identity_dir.clone(),
            connect_gate: config.connect_gate.clone(),
        };

        let listener = tokio::net::TcpListener::bind(config.api_listen)
            .await
            .map_err(|source| AgentError::ApiBind {
                addr: config.api_listen,
                source,
            })?;
        let api_addr = listener
            .local_addr()
            .map_err(|source| AgentError::ApiBind {
                addr: config.api_listen,
                source,
            })?;
        let reconcile_stats = Arc::new(reconciler::ReconcileStats::default());
        let router = api::router(api::AgentApiState {
            node: config.node.to_string(),
            hypervisor: hv.clone(),
            desired: desired_rx.clone(),
            status: status_rx,
            connected: connected_rx,
            telemetry: snapshot_rx,
            reconcile: reconcile_stats.clone(),
        });
        let mut tasks = Vec::new();
        if let Some(every) = config.telemetry_interval {
            let sampler = telemetry::Sampler::new(
                gpus,
                expected_gpus,
                &config.data_dir,
                telemetry::Thresholds::default(),
            );
            tasks.push(tokio::spawn(telemetry_loop(
                every,
                sampler,
                hv.clone(),
                snapshot_tx,
                summary_tx,
                conditions_tx,
            )));
        }
        if let Some(addr) = config.metadata_listen {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| AgentError::MetadataBind { addr, source })?;
            let app = metadata::router(metadata::MetadataState::new(
                desired_rx.clone(),
                config.region.clone(),
            ));
            tracing::info!(%addr, "guest metadata endpoint listening");
            tasks.push(tokio::spawn(async move {
                let served = axum::serve(
                    listener,
                    app.into_make_service_with_connect_info::<SocketAddr>(),
                )
                .await;
                if let Err(e) = served {
                    tracing::error!(error = %e, "guest metadata endpoint stopped");
                }
            }));
        }
        let (api_stop, stopped) = oneshot::channel::<()>();
        let api = tokio::spawn(async move {
            let served = axum::serve(listener, router)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
            if let Err(e) = served {
                tracing::error!(error = %e, "agent API stopped");
            }
        });
        let reconciler = tokio::spawn(reconciler::run(
            reconcile_host,
            desired_rx,
            status_tx,
            reconcile_stats,
        ));
        let link = tokio::spawn(link.run());
        Ok(Agent {
            api_addr,
            tasks: {
                tasks.extend([link, reconciler, api]);
                tasks
            },
            api_stop,
            endpoint: own_endpoint.then_some(endpoint),
        })
    }

    pub fn api_addr(&self) -> SocketAddr {
        self.api_addr
    }

    /// Stops the agent's tasks. VMs are left as they are.
    pub async fn shutdown(self) {
        let _ = self.api_stop.send(());
        if let Some(endpoint) = &self.endpoint {
            endpoint.close(0u32.into(), b"agent shutting down");
        }
        for t in &self.tasks {
            t.abort();
        }
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// Reads the host every `every` and publishes the snapshot (`/metrics`), the summary
/// (heartbeats) and the conditions (status reports).
async fn telemetry_loop(
    every: Duration,
    sampler: telemetry::Sampler,
    hv: Arc<dyn Hypervisor>,
    snapshot: watch::Sender<Option<Arc<telemetry::Snapshot>>>,
    summary: watch::Sender<Option<pb::HostSummary>>,
    conditions: watch::Sender<Vec<pb::HostCondition>>,
) {
    let sampler = Arc::new(Mutex::new(sampler));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let (sampler, hv) = (sampler.clone(), hv.clone());
        let Ok((snap, now)) = tokio::task::spawn_blocking(move || {
            let domains = hv
                .list()
                .map_or(0, |d| d.iter().filter(|d| d.instance_id.is_some()).count());
            let mut sampler = sampler.lock().unwrap();
            let snap = sampler.sample(domains);
            let now = sampler.conditions(&snap);
            (snap, now)
        })
        .await
        else {
            tracing::error!("a telemetry read panicked");
            continue;
        };
        summary.send_replace(Some(snap.summary()));
        snapshot.send_replace(Some(Arc::new(snap)));
        conditions.send_if_modified(|c| {
            if *c == now {
                return false;
            }
            for new in now.iter().filter(|n| !c.contains(n)) {
                tracing::warn!(kind = new.kind, subject = new.subject, "{}", new.message);
            }
            for gone in c.iter().filter(|o| !now.contains(o)) {
                tracing::info!(
                    kind = gone.kind,
                    subject = gone.subject,
                    "condition cleared"
                );
            }
            *c = now;
            true
        });
    }
}

/// Tests that use libvirt's shared `test:///default` driver take this lock, so one test's
/// reconcile pass never removes another test's domains.
#[cfg(test)]
pub(crate) static TEST_DRIVER: Mutex<()> = Mutex::new(());

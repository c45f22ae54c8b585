//! [`Scheduler`]: one scheduler replica with everything it serves — the Raft node and the
//! state it applies, the agent gateway, the placement controller and the HTTP API.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use vmcloud_consensus::{NoPeers, QuicCloser, QuicEndpoint, Raft, RaftConfig};
use vmcloud_proto::pb::{self, command::Body};
use vmcloud_proto::{ALPN_AGENT, BuildInfo, pki};

use crate::api::{self, ApiState};
use crate::catalog::Catalog;
use crate::gateway::endpoint::{Gateway, GatewayError};
use crate::gateway::links::NodeLinks;
use crate::history::store::HistoryStore;
use crate::raft_handle::Cluster;
use crate::state::ApplyResult;
use crate::state::replicated::SharedState;

#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// This replica's directory (`raft.redb` lives here).
    pub data_dir: PathBuf,
    pub api_listen: SocketAddr,
    pub gateway_listen: SocketAddr,
    pub catalog: Catalog,
    pub build: BuildInfo,
    /// Cluster CA certificate (PEM) that agents' certificates must chain to.
    pub ca_pem: String,
    /// This scheduler's certificate and key (for agents and for its peers).
    pub identity: pki::Identity,
    /// The cluster CA's key, to sign the certificates of hosts joining with a token; without
    /// it, joins are refused with that reason.
    pub ca_key_pem: Option<String>,
    /// How long the node certificates this scheduler signs are valid (agents renew theirs
    /// two thirds into it).
    pub node_cert_ttl: std::time::Duration,
    /// When silent nodes are suspect and declared down (leader only).
    pub liveness: crate::nodes::liveness::LivenessConfig,
    pub replication: Replication,
    /// Where mail to people goes (verification links, password resets).
    pub mailer: crate::mail::Mailer,
    /// The key-encryption key(s) that seal secrets in the log (`--secrets-key`).
    pub secrets: Option<crate::secrets::SecretsKey>,
    /// The address people reach this service at (links in mail); default: `http://` and the
    /// API's advertised address.
    pub public_url: Option<String>,
    /// The web pages served beside the API (the `web` crate's router), if any.
    pub pages: Option<Pages>,
    /// Requests an hour each API principal may make on this replica (0: no limit).
    pub api_per_hour: u32,
    /// Webhooks may go to `http` and private addresses (for `vmcloud dev`).
    pub webhooks_allow_private: bool,
    /// Operators may move the cluster's clock forward (billing tests; `vmcloud dev`).
    pub test_clock: bool,
    /// The leader bills each month this long after it ends (zero: runs are manual).
    pub billing_run_after: Duration,
    /// Card payments through Stripe (or a localstripe), when configured.
    pub stripe: Option<crate::billing::stripe::StripeConfig>,
    /// How long a suspended organisation keeps its instances before they are deleted.
    pub dunning_grace: Duration,
}

/// Builds the web pages' router from the API's state.
pub type Pages = fn(ApiState) -> axum::Router;

/// How this replica's Raft group is made.
#[derive(Debug, Clone)]
pub enum Replication {
    /// One voter, no peers (`vmcloud dev`).
    Single,
    /// Voters talking over QUIC: this replica's id, the UDP address it listens on for its
    /// peers, and every voter's address (its own included).
    Peers {
        id: u64,
        listen: SocketAddr,
        peers: BTreeMap<u64, SocketAddr>,
        /// A new replica of an existing group: it starts empty and waits to be added
        /// (`vmcloud cluster join`), instead of forming a new group with `peers`.
        join: bool,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot create the data directory {path}")]
    DataDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot open this replica's history store")]
    History(#[from] crate::history::store::HistoryError),
    #[error("cannot start the replicated log")]
    Raft(#[from] vmcloud_consensus::StartError),
    #[error(
        "no leader was elected within {0:?}: are a majority of the replicas running and reachable?"
    )]
    NoLeader(Duration),
    #[error("cannot open the raft link")]
    RaftLink(#[from] vmcloud_consensus::QuicTransportError),
    #[error("replaying the log failed")]
    Replay(#[from] vmcloud_consensus::ProposeError),
    #[error("invalid scheduler certificate")]
    Tls(#[from] pki::PkiError),
    #[error(transparent)]
    Gateway(#[from] GatewayError),
    #[error(
        "cannot listen for HTTP on {addr}: is another process using it? choose another address with --listen"
    )]
    ApiBind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// The address peers and agents reach `bound` at: a wildcard listen address is replaced by
/// the replica's Raft address (or loopback without peers).
fn advertised(bound: SocketAddr, replication: &Replication) -> SocketAddr {
    if !bound.ip().is_unspecified() {
        return bound;
    }
    let ip = match replication {
        Replication::Peers { listen, .. } if !listen.ip().is_unspecified() => listen.ip(),
        _ => std::net::Ipv4Addr::LOCALHOST.into(),
    };
    SocketAddr::new(ip, bound.port())
}

/// Records where this replica serves agents and the API (once they differ from what the
/// state holds), retrying until it is committed.
async fn announce(cluster: Cluster, me: pb::AnnounceReplica) {
    loop {
        let known = cluster
            .state()
            .replicas
            .get(&me.replica_id)
            .is_some_and(|r| r.gateway == me.gateway_addr && r.api == me.api_addr);
        if known {
            return;
        }
        match cluster.propose(Body::AnnounceReplica(me.clone())).await {
            Ok(_) => {
                tracing::info!(
                    gateway = me.gateway_addr,
                    api = me.api_addr,
                    "replica addresses announced"
                );
                return;
            }
            Err(e) => {
                tracing::debug!(error = %e, "replica addresses not announced yet; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// A running scheduler replica.
pub struct Scheduler {
    cluster: Cluster,
    api_addr: SocketAddr,
    gateway: Gateway,
    controller: JoinHandle<()>,
    /// The leader's webhook deliveries.
    webhooks: JoinHandle<()>,
    /// The leader's monthly billing runs.
    billing: JoinHandle<()>,
    /// The leader's charges and dunning.
    collector: JoinHandle<()>,
    /// The leader's warm pools.
    warm_pools: JoinHandle<()>,
    liveness: JoinHandle<()>,
    api: JoinHandle<()>,
    api_stop: oneshot::Sender<()>,
    announce: JoinHandle<()>,
    /// Closes the raft link to the peers, when there are peers.
    raft_link: Option<QuicCloser>,
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler")
            .field("api_addr", &self.api_addr)
            .finish_non_exhaustive()
    }
}

impl Scheduler {
    /// Starts the replica: replays the log, then opens the gateway and the API.
    pub async fn start(config: SchedulerConfig) -> Result<Scheduler, StartError> {
        std::fs::create_dir_all(&config.data_dir).map_err(|source| StartError::DataDir {
            path: config.data_dir.clone(),
            source,
        })?;
        let history = config.data_dir.join("history.redb");
        let state = SharedState::with_history(HistoryStore::open(&history)?);
        let log = config.data_dir.join("raft.redb");
        let (raft, closer) = match &config.replication {
            Replication::Single => (
                Raft::start(RaftConfig::new(1, log, vec![1]), state.clone(), NoPeers)?,
                None,
            ),
            Replication::Peers {
                id,
                listen,
                peers,
                join,
            } => {
                let endpoint = QuicEndpoint::bind(*listen, &config.ca_pem, &config.identity)?;
                // The transport exists before the replica it delivers to.
                let cell: Arc<OnceLock<Raft<ApplyResult>>> = Arc::default();
                let inbox = cell.clone();
                let voters = if *join {
                    Vec::new()
                } else {
                    peers.keys().copied().collect()
                };
                let mut raft_config = RaftConfig::new(*id, log, voters);
                raft_config.peer_addresses =
                    peers.iter().map(|(id, a)| (*id, a.to_string())).collect();
                let metrics = raft_config.metrics.clone();
                let transport = endpoint.start(
                    *id,
                    peers.clone().into_iter().collect(),
                    metrics,
                    move |m| {
                        if let Some(raft) = inbox.get() {
                            raft.step(m);
                        }
                    },
                );
                let closer = transport.closer();
                let raft = Raft::start(raft_config, state.clone(), transport)?;
                let _ = cell.set(raft.clone());
                (raft, Some(closer))
            }
        };
        // Wait for a leader (a majority must be up), then replay everything committed. A
        // joining replica hears from the leader only once it has been added, however long
        // that takes.
        let joining = matches!(config.replication, Replication::Peers { join: true, .. });
        let limit = if joining {
            Duration::MAX
        } else {
            Duration::from_secs(60)
        };
        let mut status = raft.status();
        if joining {
            if let Replication::Peers { id, listen, .. } = &config.replication {
                tracing::info!(
                    "waiting to be added to the group: run `vmcloud cluster join --id {id} --raft-address {listen}` against the leader"
                );
            }
        } else {
            tracing::info!("waiting for a leader");
        }
        if tokio::time::timeout(limit, status.wait_for(|s| s.leader_id != 0))
            .await
            .is_err()
        {
            if let Some(c) = &closer {
                c.close();
            }
            raft.shutdown();
            return Err(StartError::NoLeader(limit));
        }
        // Everything committed before now is applied once this empty entry is (a follower
        // forwards it to the leader). A leader change can drop it: try again.
        let mut tries = 0;
        loop {
            match raft.barrier().await {
                Ok(()) => break,
                Err(e) if tries < 10 => {
                    tries += 1;
                    tracing::info!(error = %e, "replay barrier not committed yet; retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
        let cluster = Cluster::new(raft, state);
        {
            let s = cluster.state();
            tracing::info!(
                applied = s.applied_index,
                instances = s.instances.len(),
                nodes = s.nodes.len(),
                "replicated state recovered"
            );
        }

        let links = NodeLinks::default();
        let tls = pki::server_config_with_anonymous(
            &config.ca_pem,
            &config.identity,
            &[ALPN_AGENT, vmcloud_proto::ALPN_JOIN],
        )?;
        let ca = config.ca_key_pem.as_ref().map(|key| {
            std::sync::Arc::new(crate::gateway::join::Signer {
                ca: pki::Ca {
                    identity: pki::Identity {
                        cert_pem: config.ca_pem.clone(),
                        key_pem: key.clone(),
                    },
                },
                node_cert_ttl: config.node_cert_ttl,
            })
        });
        let gateway = Gateway::start(
            config.gateway_listen,
            tls,
            cluster.clone(),
            links.clone(),
            ca,
        )?;
        let controller = tokio::spawn(crate::placement_controller::run_placement(cluster.clone()));
        let liveness_view = crate::nodes::liveness::LivenessView::default();
        let liveness = tokio::spawn(crate::nodes::liveness::run(
            cluster.clone(),
            links.clone(),
            config.liveness,
            liveness_view.clone(),
        ));

        let listener = tokio::net::TcpListener::bind(config.api_listen)
            .await
            .map_err(|source| StartError::ApiBind {
                addr: config.api_listen,
                source,
            })?;
        let api_addr = listener
            .local_addr()
            .map_err(|source| StartError::ApiBind {
                addr: config.api_listen,
                source,
            })?;
        let mut registry = prometheus_client::registry::Registry::default();
        cluster.raft().metrics().register(&mut registry);
        links.metrics().register(&mut registry);
        let catalog = Arc::new(config.catalog);
        registry.register_collector(Box::new(crate::public_ips::metrics::PoolsCollector {
            cluster: cluster.clone(),
            catalog: catalog.clone(),
        }));
        registry.register_collector(Box::new(crate::nodes::fleet_metrics::FleetCollector {
            cluster: cluster.clone(),
            liveness: liveness_view.clone(),
        }));
        let api_metrics = crate::api::metrics::ApiMetrics::default();
        api_metrics.register(&mut registry);
        registry.register_collector(Box::new(crate::gaming::warm_metrics::WarmPoolsCollector {
            cluster: cluster.clone(),
            catalog: catalog.clone(),
        }));
        let announce = tokio::spawn(announce(
            cluster.clone(),
            pb::AnnounceReplica {
                replica_id: cluster.raft_status().borrow().id,
                gateway_addr: advertised(gateway.local_addr(), &config.replication).to_string(),
                api_addr: advertised(api_addr, &config.replication).to_string(),
            },
        ));
        let public_url = config
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", advertised(api_addr, &config.replication)));
        let api_state = ApiState {
            cluster: cluster.clone(),
            catalog,
            build: config.build,
            links,
            metrics: Arc::new(registry),
            api_metrics,
            liveness: liveness_view,
            mailer: Arc::new(config.mailer),
            secrets: config.secrets.map(Arc::new),
            public_url: public_url.trim_end_matches('/').to_owned(),
            limiter: Default::default(),
            warm_claims: Default::default(),
            api_per_hour: config.api_per_hour,
            webhooks_allow_private: config.webhooks_allow_private,
            test_clock: config.test_clock,
            stripe: config
                .stripe
                .clone()
                .map(crate::billing::stripe::Stripe::new),
        };
        let webhooks = tokio::spawn(crate::webhooks::deliver::run(api_state.clone()));
        let billing = tokio::spawn(crate::billing::controller::run(
            cluster.clone(),
            config.billing_run_after,
        ));
        let collector = tokio::spawn(
            crate::billing::collect::Collector {
                cluster: cluster.clone(),
                stripe: api_state.stripe.clone(),
                mailer: api_state.mailer.clone(),
                grace: config.dunning_grace,
            }
            .run(),
        );
        let warm_pools = tokio::spawn(crate::gaming::warm_controller::run(
            cluster.clone(),
            api_state.catalog.clone(),
        ));
        let mut router = api::router(api_state.clone());
        if let Some(pages) = config.pages {
            router = pages(api_state).merge(router);
        }
        let (api_stop, stopped) = oneshot::channel::<()>();
        let api = tokio::spawn(async move {
            let served = axum::serve(
                listener,
                router.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await;
            if let Err(e) = served {
                tracing::error!(error = %e, "HTTP API stopped");
            }
        });
        Ok(Scheduler {
            cluster,
            api_addr,
            gateway,
            controller,
            webhooks,
            billing,
            collector,
            warm_pools,
            liveness,
            api,
            api_stop,
            announce,
            raft_link: closer,
        })
    }

    pub fn api_addr(&self) -> SocketAddr {
        self.api_addr
    }

    pub fn gateway_addr(&self) -> SocketAddr {
        self.gateway.local_addr()
    }

    pub fn cluster(&self) -> &Cluster {
        &self.cluster
    }

    /// Stops serving, then stops the Raft node (everything committed is applied first).
    pub async fn shutdown(self) {
        let _ = self.api_stop.send(());
        let _ = tokio::time::timeout(Duration::from_secs(5), self.api).await;
        self.controller.abort();
        self.webhooks.abort();
        self.billing.abort();
        self.collector.abort();
        self.warm_pools.abort();
        self.announce.abort();
        self.liveness.abort();
        self.gateway.shutdown().await;
        let raft = self.cluster.raft().clone();
        let _ = tokio::task::spawn_blocking(move || raft.shutdown()).await;
        if let Some(link) = self.raft_link {
            link.close();
        }
    }
}

//! [`Scheduler`]: one scheduler replica with everything it serves — the Raft node and the
//! state it applies, the agent gateway, the placement controller and the HTTP API.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use vmcloud_consensus::{NoPeers, Raft, RaftConfig};
use vmcloud_proto::{ALPN_AGENT, BuildInfo, pki};

use crate::api::{self, ApiState};
use crate::catalog::Catalog;
use crate::cluster::Cluster;
use crate::gateway::{Gateway, GatewayError, NodeLinks};
use crate::state::SharedState;

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
    /// This scheduler's certificate and key.
    pub identity: pki::Identity,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot create the data directory {path}")]
    DataDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start the replicated log")]
    Raft(#[from] vmcloud_consensus::StartError),
    #[error("the replica did not become leader within {0:?}")]
    NoLeader(Duration),
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

/// A running scheduler replica.
pub struct Scheduler {
    cluster: Cluster,
    api_addr: SocketAddr,
    gateway: Gateway,
    controller: JoinHandle<()>,
    api: JoinHandle<()>,
    api_stop: oneshot::Sender<()>,
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
        let state = SharedState::default();
        // A single-voter group for now (`vmcloud dev`); peers come with multi-replica clusters.
        let raft_config = RaftConfig::new(1, config.data_dir.join("raft.redb"), vec![1]);
        let raft = Raft::start(raft_config, state.clone(), NoPeers)?;
        let limit = Duration::from_secs(10);
        let mut status = raft.status();
        if tokio::time::timeout(limit, status.wait_for(|s| s.is_leader))
            .await
            .is_err()
        {
            raft.shutdown();
            return Err(StartError::NoLeader(limit));
        }
        // Everything committed before now is applied once this empty entry is.
        raft.barrier().await?;
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
        let tls = pki::server_config(&config.ca_pem, &config.identity, ALPN_AGENT)?;
        let gateway = Gateway::start(config.gateway_listen, tls, cluster.clone(), links.clone())?;
        let controller = tokio::spawn(crate::controller::run_placement(cluster.clone()));

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
        let router = api::router(ApiState {
            cluster: cluster.clone(),
            catalog: Arc::new(config.catalog),
            build: config.build,
            links,
        });
        let (api_stop, stopped) = oneshot::channel::<()>();
        let api = tokio::spawn(async move {
            let served = axum::serve(listener, router)
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
            api,
            api_stop,
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
        self.gateway.shutdown().await;
        let raft = self.cluster.raft().clone();
        let _ = tokio::task::spawn_blocking(move || raft.shutdown()).await;
    }
}

//! The QUIC endpoint: binds the socket, accepts connections, routes them by ALPN (agent
//! link or join), and wakes links when desired configs change.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::gateway::join::{Signer, serve_join};
use crate::gateway::links::NodeLinks;
use crate::gateway::session::serve_link;
use crate::gateway::wire::LinkError;
use crate::raft_handle::Cluster;
use tokio::task::JoinHandle;
use vmcloud_proto::{ErrorChain, NodeId, pki};

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("invalid TLS configuration for the agent gateway")]
    Tls(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error(
        "cannot listen for agents on udp {addr}: is another scheduler running there? choose another port with --gateway-listen"
    )]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// The running gateway.
pub struct Gateway {
    pub(crate) endpoint: quinn::Endpoint,
    pub(crate) accept: JoinHandle<()>,
    pub(crate) watch: JoinHandle<()>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("addr", &self.endpoint.local_addr().ok())
            .finish()
    }
}

impl Gateway {
    pub fn start(
        addr: SocketAddr,
        tls: rustls::ServerConfig,
        cluster: Cluster,
        links: NodeLinks,
        ca: Option<Arc<Signer>>,
    ) -> Result<Gateway, GatewayError> {
        let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)
            .map_err(|e| GatewayError::Tls(Box::new(e)))?;
        let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
        let mut transport = quinn::TransportConfig::default();
        transport.max_idle_timeout(Some(
            Duration::from_secs(30)
                .try_into()
                .expect("30 s is a valid idle timeout"),
        ));
        config.transport_config(Arc::new(transport));
        let socket = bind_udp(addr).map_err(|source| GatewayError::Bind { addr, source })?;
        let runtime = quinn::default_runtime().ok_or_else(|| GatewayError::Bind {
            addr,
            source: std::io::Error::other("no async runtime for QUIC"),
        })?;
        let endpoint = quinn::Endpoint::new(
            quinn::EndpointConfig::default(),
            Some(config),
            socket,
            runtime,
        )
        .map_err(|source| GatewayError::Bind { addr, source })?;
        let watch = tokio::spawn(watch_generations(cluster.clone(), links.clone()));
        let accept = tokio::spawn(accept_loop(endpoint.clone(), cluster, links, ca));
        Ok(Gateway {
            endpoint,
            accept,
            watch,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.endpoint
            .local_addr()
            .expect("a bound endpoint has an address")
    }

    /// Closes every agent connection and stops accepting new ones.
    pub async fn shutdown(self) {
        self.accept.abort();
        self.watch.abort();
        self.endpoint.close(0u32.into(), b"scheduler shutting down");
        let _ = tokio::time::timeout(Duration::from_secs(2), self.endpoint.wait_idle()).await;
    }
}

/// After every applied batch, wakes the connections whose node's desired-config generation
/// changed — only those, however many agents are connected.
pub(crate) async fn watch_generations(cluster: Cluster, links: NodeLinks) {
    let mut applied = cluster.applied();
    let mut status = cluster.raft_status();
    let mut seen_epoch = None;
    let leading = status.borrow_and_update().is_leader;
    links.2.send_replace(leading);
    loop {
        tokio::select! {
            changed = applied.changed() => if changed.is_err() { return },
            changed = status.changed() => {
                if changed.is_err() {
                    return;
                }
                // Connections follow the lead, not every commit.
                let leading = status.borrow_and_update().is_leader;
                links.2.send_if_modified(|l| std::mem::replace(l, leading) != leading);
                continue;
            }
        }
        let state = cluster.state();
        let mut map = links.0.lock().unwrap();
        // Nothing to look at unless some node's generation grew (a new connection sends the
        // config of its node itself).
        let epoch = state.generation_epoch.0;
        if seen_epoch == Some(epoch) {
            continue;
        }
        // The nodes whose generation grew since the last look (every node when the epoch
        // remembers not that far back, or at the first look).
        let bumped = seen_epoch.and_then(|seen| state.generation_epoch.nodes_since(seen));
        seen_epoch = Some(epoch);
        let wake = |node: &vmcloud_proto::NodeId, link: &mut crate::gateway::links::LinkInfo| {
            if let Some(n) = state.nodes.get(node)
                && n.generation != link.generation_seen
            {
                link.generation_seen = n.generation;
                link.wake.notify_one();
            }
        };
        match bumped {
            Some(nodes) => {
                for node in nodes {
                    if let Some(link) = map.get_mut(node) {
                        wake(node, link);
                    }
                }
            }
            None => {
                for (node, link) in map.iter_mut() {
                    wake(node, link);
                }
            }
        }
    }
}

/// Socket buffer the gateway asks for. Thousands of agents reconnecting at once (after a
/// failover) overflow the kernel's default (≈ 200 KiB): packets are dropped and their
/// handshakes stall on retransmission timers.
pub(crate) const SOCKET_BUFFER: usize = 16 << 20;

/// The gateway's UDP socket, with large buffers (forced past `net.core.rmem_max` when the
/// process may: root or CAP_NET_ADMIN).
pub(crate) fn bind_udp(addr: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    use nix::sys::socket::{getsockopt, setsockopt, sockopt};
    let socket = std::net::UdpSocket::bind(addr)?;
    if setsockopt(&socket, sockopt::RcvBufForce, &SOCKET_BUFFER).is_err() {
        let _ = setsockopt(&socket, sockopt::RcvBuf, &SOCKET_BUFFER);
    }
    if setsockopt(&socket, sockopt::SndBufForce, &SOCKET_BUFFER).is_err() {
        let _ = setsockopt(&socket, sockopt::SndBuf, &SOCKET_BUFFER);
    }
    // Linux reports twice what it grants.
    let granted = getsockopt(&socket, sockopt::RcvBuf).unwrap_or(0) / 2;
    if granted < SOCKET_BUFFER / 4 {
        tracing::warn!(
            granted,
            wanted = SOCKET_BUFFER,
            "the agent gateway's UDP receive buffer is small: agents reconnecting en masse may be dropped; raise net.core.rmem_max and net.core.wmem_max (sysctl) to 16 MiB"
        );
    }
    Ok(socket)
}

pub(crate) async fn accept_loop(
    endpoint: quinn::Endpoint,
    cluster: Cluster,
    links: NodeLinks,
    ca: Option<Arc<Signer>>,
) {
    let mut next_connection = 0u64;
    while let Some(incoming) = endpoint.accept().await {
        next_connection += 1;
        let connection = next_connection;
        let (cluster, links, ca) = (cluster.clone(), links.clone(), ca.clone());
        let remote = incoming.remote_address();
        tokio::spawn(async move {
            let mut node = None;
            let result = serve(
                incoming,
                &cluster,
                &links,
                ca.as_deref(),
                connection,
                &mut node,
            )
            .await;
            if let Some(node) = &node {
                let mut map = links.0.lock().unwrap();
                if map.get(node).is_some_and(|l| l.connection == connection) {
                    map.remove(node);
                }
                links.1.connected_agents.set(map.len() as i64);
            }
            match (result, node) {
                (Ok(()), Some(node)) => tracing::info!(%node, "agent disconnected"),
                (Ok(()), None) => {}
                (Err(e), node) => {
                    let node = node.map(|n| n.to_string()).unwrap_or_default();
                    tracing::warn!(%remote, node, error = %ErrorChain(&e), "agent link ended");
                }
            }
        });
    }
}

pub(crate) fn node_of(connection: &quinn::Connection) -> Result<NodeId, LinkError> {
    let certs = connection
        .peer_identity()
        .and_then(|id| {
            id.downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
                .ok()
        })
        .ok_or(LinkError::Identity(None))?;
    let leaf = certs.first().ok_or(LinkError::Identity(None))?;
    pki::node_id_from_cert(leaf).map_err(|e| LinkError::Identity(Some(e)))
}

pub(crate) async fn serve(
    incoming: quinn::Incoming,
    cluster: &Cluster,
    links: &NodeLinks,
    ca: Option<&Signer>,
    connection: u64,
    node_out: &mut Option<NodeId>,
) -> Result<(), LinkError> {
    let conn = incoming.await?;
    let alpn = conn
        .handshake_data()
        .and_then(|h| h.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
        .and_then(|h| h.protocol);
    if alpn.as_deref() == Some(vmcloud_proto::ALPN_JOIN) {
        return serve_join(&conn, cluster, ca).await;
    }
    // The agent protocol needs a certificate (the TLS layer lets joining hosts in without).
    let node = node_of(&conn)?;
    *node_out = Some(node.clone());
    let result = serve_link(&conn, node, cluster, links, ca, connection).await;
    // An agent that closes its connection on purpose (e.g. shutting down) is not an error.
    match conn.close_reason() {
        Some(quinn::ConnectionError::ApplicationClosed(_)) => Ok(()),
        _ => result,
    }
}

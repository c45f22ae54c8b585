//! The agent gateway: the QUIC server (ALPN `vmcloud-agent/1`, mutual TLS) that agents
//! connect to.
//!
//! Tasks: one accept loop; one task per agent connection; one watcher that, after every
//! applied log batch, wakes the connections whose node's desired-config generation changed.
//! Each connection task reads the agent's frames and pushes the node's desired config when its
//! generation changes. The node's identity is the common name of its verified client
//! certificate — never anything the agent says — so an agent can only register, report for and
//! receive the config of its own node.
//!
//! Liveness is kept here, in memory ([`NodeLinks`]), not in the Raft log.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use prost::Message;
use tokio::task::JoinHandle;
use tokio_util::codec::{FramedRead, FramedWrite, LengthDelimitedCodec};
use vmcloud_proto::pb::{self, agent_message, command::Body, scheduler_message};
use vmcloud_proto::{ErrorChain, NodeId, frame, pki};

use crate::cluster::Cluster;
use crate::state::{ClusterState, InstanceState};

/// What the leader knows about each connected agent.
#[derive(Debug, Clone)]
pub struct LinkInfo {
    /// Distinguishes a reconnect from the connection it replaces.
    pub connection: u64,
    pub connected_since: Instant,
    pub last_heartbeat: Instant,
    /// The desired-config generation the agent last reported it reconciled.
    pub acked_generation: Option<u64>,
    /// The host's latest telemetry summary (heartbeats).
    pub summary: Option<pb::HostSummary>,
    /// What the agent last said is wrong with the host, and GPUs it will not give out.
    pub conditions: Vec<pb::HostCondition>,
    pub unhealthy_gpus: Vec<pb::UnhealthyGpu>,
    /// Wakes the connection when the node's desired-config generation changes.
    wake: Arc<tokio::sync::Notify>,
    /// The node's generation when `wake` was last woken.
    generation_seen: u64,
}

/// Connected agents, by node. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct NodeLinks(
    Arc<Mutex<HashMap<NodeId, LinkInfo>>>,
    Arc<GatewayMetrics>,
    /// Whether this replica leads; changes only when the lead does.
    Arc<tokio::sync::watch::Sender<bool>>,
);

/// What the gateway exports on `/metrics`.
#[derive(Debug)]
pub struct GatewayMetrics {
    /// Agents registered on this replica's gateway now.
    pub connected_agents: prometheus_client::metrics::gauge::Gauge,
    /// From an agent sending a heartbeat (its clock) to this gateway handling it, seconds.
    pub heartbeat_delay_seconds: prometheus_client::metrics::histogram::Histogram,
    /// Agents sent to the leader because this replica does not lead.
    pub redirects: prometheus_client::metrics::counter::Counter,
    /// Desired configs sent whole, and as deltas on the one before.
    pub desired_whole: prometheus_client::metrics::counter::Counter,
    pub desired_deltas: prometheus_client::metrics::counter::Counter,
}

impl Default for GatewayMetrics {
    fn default() -> Self {
        GatewayMetrics {
            connected_agents: Default::default(),
            // 100 µs … ~3 s, buckets √2 apart.
            heartbeat_delay_seconds: prometheus_client::metrics::histogram::Histogram::new(
                prometheus_client::metrics::histogram::exponential_buckets(
                    0.000_1,
                    std::f64::consts::SQRT_2,
                    30,
                ),
            ),
            redirects: Default::default(),
            desired_whole: Default::default(),
            desired_deltas: Default::default(),
        }
    }
}

impl GatewayMetrics {
    pub fn register(&self, registry: &mut prometheus_client::registry::Registry) {
        registry.register(
            "vmcloud_gateway_connected_agents",
            "Agents registered on this replica's gateway",
            self.connected_agents.clone(),
        );
        registry.register(
            "vmcloud_gateway_heartbeat_delay_seconds",
            "From an agent sending a heartbeat (its clock) to the gateway handling it",
            self.heartbeat_delay_seconds.clone(),
        );
        registry.register(
            "vmcloud_gateway_redirects",
            "Agents sent to the leader because this replica does not lead",
            self.redirects.clone(),
        );
        registry.register(
            "vmcloud_gateway_desired_configs_whole",
            "Desired configs sent whole",
            self.desired_whole.clone(),
        );
        registry.register(
            "vmcloud_gateway_desired_configs_delta",
            "Desired configs sent as a delta on the one before (large configs)",
            self.desired_deltas.clone(),
        );
    }
}

impl NodeLinks {
    pub fn metrics(&self) -> &GatewayMetrics {
        &self.1
    }

    /// Agents connected now.
    pub fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Calls `f` with each connected node and when it was last heard.
    pub fn heartbeats(&self, mut f: impl FnMut(&NodeId, Instant)) {
        for (node, link) in self.0.lock().unwrap().iter() {
            f(node, link.last_heartbeat);
        }
    }

    pub fn snapshot(&self) -> HashMap<NodeId, LinkInfo> {
        self.0.lock().unwrap().clone()
    }

    fn update(&self, node: &NodeId, f: impl FnOnce(&mut LinkInfo)) {
        if let Some(link) = self.0.lock().unwrap().get_mut(node) {
            f(link);
        }
    }
}

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

#[derive(Debug, thiserror::Error)]
enum LinkError {
    #[error("QUIC connection failed")]
    Connection(#[from] quinn::ConnectionError),
    #[error("the agent's identity could not be established")]
    Identity(#[source] Option<pki::PkiError>),
    #[error("stream I/O failed")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Frame(#[from] frame::FrameError),
    #[error("protocol violation: {0}")]
    Protocol(&'static str),
}

/// The running gateway.
pub struct Gateway {
    endpoint: quinn::Endpoint,
    accept: JoinHandle<()>,
    watch: JoinHandle<()>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("addr", &self.endpoint.local_addr().ok())
            .finish()
    }
}

pub(crate) fn codec() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .max_frame_length(frame::MAX_FRAME_BYTES)
        .new_codec()
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
async fn watch_generations(cluster: Cluster, links: NodeLinks) {
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
        seen_epoch = Some(epoch);
        for (node, link) in map.iter_mut() {
            if let Some(n) = state.nodes.get(node)
                && n.generation != link.generation_seen
            {
                link.generation_seen = n.generation;
                link.wake.notify_one();
            }
        }
    }
}

/// Socket buffer the gateway asks for. Thousands of agents reconnecting at once (after a
/// failover) overflow the kernel's default (≈ 200 KiB): packets are dropped and their
/// handshakes stall on retransmission timers.
const SOCKET_BUFFER: usize = 16 << 20;

/// The gateway's UDP socket, with large buffers (forced past `net.core.rmem_max` when the
/// process may: root or CAP_NET_ADMIN).
fn bind_udp(addr: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
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

/// Signs node certificates: for hosts joining with a token and for agents renewing theirs.
#[derive(Debug)]
pub struct Signer {
    pub ca: pki::Ca,
    /// How long a node certificate it signs is valid.
    pub node_cert_ttl: Duration,
}

async fn accept_loop(
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

fn node_of(connection: &quinn::Connection) -> Result<NodeId, LinkError> {
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

/// A host joining with a token: one request, one answer.
async fn serve_join(
    conn: &quinn::Connection,
    cluster: &Cluster,
    ca: Option<&Signer>,
) -> Result<(), LinkError> {
    let (send, recv) = conn.accept_bi().await?;
    let mut reader = FramedRead::new(recv, codec());
    let mut writer = FramedWrite::new(send, codec());
    let Some(frame) = reader.next().await else {
        return Ok(());
    };
    let request: pb::JoinRequest = frame::decode("joining host", &frame?)?;
    let answer = match join(cluster, ca, &request).await {
        Ok(cert_pem) => {
            tracing::info!(node = request.node_id, remote = %conn.remote_address(), "host joined with a token");
            pb::JoinResponse {
                cert_pem,
                error: String::new(),
            }
        }
        Err(error) => {
            tracing::warn!(node = request.node_id, remote = %conn.remote_address(), %error, "join refused");
            pb::JoinResponse {
                cert_pem: String::new(),
                error,
            }
        }
    };
    writer.send(Bytes::from(answer.encode_to_vec())).await?;
    let _ = writer.get_mut().finish();
    // Let the answer reach the host before the connection goes.
    let _ = tokio::time::timeout(Duration::from_secs(5), conn.closed()).await;
    Ok(())
}

/// Checks the token and signs the host's certificate; Err is the reason, for the host.
async fn join(
    cluster: &Cluster,
    ca: Option<&Signer>,
    request: &pb::JoinRequest,
) -> Result<String, String> {
    let ca = ca.ok_or(
        "this scheduler cannot sign certificates: the cluster CA's key is not in its PKI directory",
    )?;
    let node = NodeId::parse(&request.node_id).map_err(|e| e.to_string())?;
    let secret = crate::join::TokenSecret::parse(&request.token).ok_or(
        "that is not a join token (vmcjoin_<id>_<secret>); make one with `vmcloud token create`",
    )?;
    let unknown = || "unknown join token; make one with `vmcloud token create`".to_owned();
    {
        let state = cluster.state();
        let token = state.join_tokens.get(&secret.id).ok_or_else(unknown)?;
        if !token.matches(&secret) {
            return Err(unknown());
        }
        if let Some(why) = token.refusal(&node, crate::cluster::now_ms()) {
            return Err(why);
        }
    }
    // Applied once: a second host racing with the same token is refused here.
    match cluster
        .propose(Body::UseJoinToken(pb::UseJoinToken {
            token_id: secret.id.clone(),
            node_id: node.to_string(),
        }))
        .await
    {
        Ok(Ok(_)) => {}
        Ok(Err(rejected)) => return Err(rejected.to_string()),
        Err(e) => return Err(format!("the token could not be recorded as used: {e}")),
    }
    ca.ca
        .sign_node_csr_for(&request.csr_pem, &node, ca.node_cert_ttl)
        .map_err(|e| format!("the certificate request is not valid: {e}"))
}

fn encode(body: scheduler_message::Body) -> Bytes {
    pb::SchedulerMessage { body: Some(body) }
        .encode_to_vec()
        .into()
}

async fn serve(
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

async fn serve_link(
    conn: &quinn::Connection,
    node: NodeId,
    cluster: &Cluster,
    links: &NodeLinks,
    signer: Option<&Signer>,
    connection: u64,
) -> Result<(), LinkError> {
    let (send, recv) = conn.accept_bi().await?;
    let mut reader = FramedRead::new(recv, codec());
    let mut writer = FramedWrite::new(send, codec());

    let first = reader.next().await.ok_or(LinkError::Protocol(
        "the agent closed the stream before registering",
    ))??;
    let message: pb::AgentMessage = frame::decode("agent", &first)?;
    let Some(agent_message::Body::Register(register)) = message.body else {
        return Err(LinkError::Protocol("the first message must be Register"));
    };
    // Only the leader serves agents: it keeps their liveness and pushes their configs.
    if let Some(redirect) = redirect(cluster) {
        return send_redirect(conn, &mut writer, links, redirect).await;
    }
    let now = Instant::now();
    let wake = Arc::new(tokio::sync::Notify::new());
    {
        let mut map = links.0.lock().unwrap();
        map.insert(
            node.clone(),
            LinkInfo {
                connection,
                connected_since: now,
                last_heartbeat: now,
                acked_generation: None,
                summary: None,
                conditions: Vec::new(),
                unhealthy_gpus: Vec::new(),
                wake: wake.clone(),
                generation_seen: 0,
            },
        );
    }
    // Listed before it registers: liveness never sees a registered node without its link.
    register_node(cluster, &node, &register).await;
    back_up(cluster, &node).await;
    writer
        .send(encode(scheduler_message::Body::Registered(
            pb::Registered {
                node_id: node.to_string(),
            },
        )))
        .await?;
    links.1.connected_agents.set(links.len() as i64);
    tracing::info!(%node, remote = %conn.remote_address(), version = register.build.as_ref().map(|b| b.version.as_str()).unwrap_or(""), "agent connected");

    let mut leading = links.2.subscribe();
    let mut sent_generation = None;
    // The config this stream carried last: a large one that follows goes as a delta on it.
    let mut last_sent: Option<pb::DesiredConfig> = None;
    loop {
        let desired = {
            let state = cluster.state();
            let generation = state.nodes.get(&node).map(|n| n.generation);
            if generation.is_some() && generation != sent_generation {
                state.desired_config(&node)
            } else {
                None
            }
        };
        if let Some(desired) = desired {
            sent_generation = Some(desired.generation);
            let message = match &last_sent {
                Some(base)
                    if desired.instances.len() >= vmcloud_proto::desired::DELTA_MIN_INSTANCES =>
                {
                    links.1.desired_deltas.inc();
                    vmcloud_proto::desired::delta(base, &desired)
                }
                _ => {
                    links.1.desired_whole.inc();
                    desired.clone()
                }
            };
            last_sent = Some(desired);
            writer
                .send(encode(scheduler_message::Body::Desired(message)))
                .await?;
        }
        // Both arms are cancel-safe: `FramedRead::next` keeps partial frames in its buffer,
        // and `watch::Receiver::changed` loses nothing (the loop re-reads the state).
        tokio::select! {
            frame = reader.next() => {
                let Some(frame) = frame else { return Ok(()) };
                let message: pb::AgentMessage = frame::decode("agent", &frame?)?;
                match message.body {
                    Some(agent_message::Body::Heartbeat(hb)) => {
                        if hb.sent_unix_us > 0 {
                            let delay_us = now_us() - hb.sent_unix_us;
                            links.1.heartbeat_delay_seconds.observe(delay_us.max(0) as f64 / 1e6);
                        }
                        links.update(&node, |l| {
                            l.last_heartbeat = Instant::now();
                            if hb.summary.is_some() {
                                l.summary = hb.summary;
                            }
                        });
                    }
                    Some(agent_message::Body::Status(report)) => {
                        links.update(&node, |l| {
                            l.last_heartbeat = Instant::now();
                            l.acked_generation = Some(report.generation);
                            for c in report.conditions.iter().filter(|c| !l.conditions.contains(c)) {
                                tracing::warn!(%node, kind = c.kind, subject = c.subject, "host condition: {}", c.message);
                            }
                            for g in report.unhealthy_gpus.iter().filter(|g| !l.unhealthy_gpus.contains(g)) {
                                tracing::error!(%node, gpu = g.pci_address, reason = g.reason, "GPU unhealthy");
                            }
                            l.conditions.clone_from(&report.conditions);
                            l.unhealthy_gpus.clone_from(&report.unhealthy_gpus);
                        });
                        observe(cluster, &node, &report).await;
                        observe_gpus(cluster, &node, &report).await;
                    }
                    Some(agent_message::Body::Renew(renew)) => {
                        // The certificate names the node this connection proved it is.
                        let answer = match signer {
                            None => pb::Renewed { cert_pem: String::new(), error: "this scheduler cannot sign certificates: the cluster CA's key is not in its PKI directory".into() },
                            Some(s) => match s.ca.sign_node_csr_for(&renew.csr_pem, &node, s.node_cert_ttl) {
                                Ok(cert_pem) => {
                                    tracing::info!(%node, "node certificate renewed");
                                    pb::Renewed { cert_pem, error: String::new() }
                                }
                                Err(e) => pb::Renewed { cert_pem: String::new(), error: format!("the certificate request is not valid: {e}") },
                            },
                        };
                        writer.send(encode(scheduler_message::Body::Renewed(answer))).await?;
                    }
                    Some(agent_message::Body::Register(_)) => return Err(LinkError::Protocol("Register sent twice")),
                    None => return Err(LinkError::Protocol("empty agent message")),
                }
            }
            () = wake.notified() => {}
            changed = leading.changed() => {
                if changed.is_err() {
                    return Ok(());
                }
                if *leading.borrow_and_update() {
                    continue;
                }
                if let Some(redirect) = redirect_after_lead_lost(cluster, links).await {
                    tracing::info!(%node, leader = redirect.leader_gateway, "this replica no longer leads; sending the agent to the leader");
                    return send_redirect(conn, &mut writer, links, redirect).await;
                }
            }
        }
    }
}

/// Where to send an agent once this replica lost the lead; None if it leads again. Waits
/// (up to 10 s) until a new leader is known — an agent sent nowhere only adds to the
/// reconnecting crowd — then a random delay that spreads the agents of a large fleet over up
/// to 20 s (one second per 2,000), so they do not all arrive at the new leader at once.
async fn redirect_after_lead_lost(cluster: &Cluster, links: &NodeLinks) -> Option<pb::Redirect> {
    use rand::Rng;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = redirect(cluster)?;
        if !r.leader_gateway.is_empty() || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let spread = Duration::from_secs_f64((links.len() as f64 / 2000.0).min(20.0));
    let wait = rand::rng().random_range(Duration::ZERO..=spread);
    tokio::time::sleep(wait).await;
    redirect(cluster)
}

/// Sends the agent to the leader and ends the session once it has read that (it closes the
/// connection then), giving a busy agent up to 15 s.
async fn send_redirect(
    conn: &quinn::Connection,
    writer: &mut FramedWrite<quinn::SendStream, LengthDelimitedCodec>,
    links: &NodeLinks,
    redirect: pb::Redirect,
) -> Result<(), LinkError> {
    links.1.redirects.inc();
    writer
        .send(encode(scheduler_message::Body::Redirect(redirect)))
        .await?;
    let _ = writer.get_mut().finish();
    let _ = tokio::time::timeout(Duration::from_secs(15), conn.closed()).await;
    Ok(())
}

/// The current time, Unix µs.
fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// Where to send an agent when this replica does not lead; None when it leads.
fn redirect(cluster: &Cluster) -> Option<pb::Redirect> {
    let status = cluster.raft_status().borrow().clone();
    if status.is_leader {
        return None;
    }
    let leader_gateway = cluster
        .state()
        .replicas
        .get(&status.leader_id)
        .map(|r| r.gateway.clone())
        .unwrap_or_default();
    Some(pb::Redirect {
        leader_gateway,
        leader_id: status.leader_id,
    })
}

/// A host the leader declared down because its agent went silent is ready again once the
/// agent is back (a host an operator marked down stays down until the operator says).
async fn back_up(cluster: &Cluster, node: &NodeId) {
    let silent_down = cluster
        .state()
        .nodes
        .get(node)
        .is_some_and(|n| n.state == crate::state::NodeState::Down && n.down_by_liveness);
    if !silent_down {
        return;
    }
    let command = Body::SetNodeState(pb::SetNodeState {
        node_id: node.to_string(),
        state: pb::NodeState::Ready as i32,
        reason: "its agent reconnected".into(),
        deadline_unix_ms: 0,
        by_liveness: false,
    });
    match cluster.propose(command).await {
        Ok(Ok(_)) => tracing::info!(%node, "the host's agent is back: ready again"),
        Ok(Err(e)) => tracing::warn!(%node, error = %e, "could not mark the host ready"),
        Err(e) => tracing::warn!(%node, error = %e, "could not mark the host ready"),
    }
}

/// Records the node's inventory in the replicated state when it is new or has changed.
async fn register_node(cluster: &Cluster, node: &NodeId, register: &pb::Register) {
    let inventory = register.inventory.clone().unwrap_or_default();
    let build = register.build.clone().unwrap_or_default();
    let unchanged = cluster.state().nodes.get(node).is_some_and(|n| {
        n.region == inventory.region
            && n.hostname == inventory.hostname
            && n.cpu_threads == inventory.cpu_threads
            && n.memory_bytes == inventory.memory_bytes
            && n.hypervisor_uri == inventory.hypervisor_uri
            && n.agent_version == build.version
            && n.agent_git_sha == build.git_sha
    });
    if unchanged {
        return;
    }
    let command = Body::RegisterNode(pb::RegisterNode {
        node_id: node.to_string(),
        inventory: Some(inventory),
        build: Some(build),
    });
    match cluster.propose(command).await {
        Ok(Ok(_)) => tracing::info!(%node, "node registered"),
        Ok(Err(e)) => tracing::warn!(%node, error = %e, "node registration rejected"),
        Err(e) => tracing::warn!(%node, error = %e, "node registration not committed"),
    }
}

/// The status changes in `report` that the replicated state does not know yet.
pub fn observations(
    state: &ClusterState,
    node: &NodeId,
    report: &pb::StatusReport,
) -> Vec<pb::InstanceStatus> {
    let mut out = Vec::new();
    let mut reported = std::collections::HashSet::new();
    for status in &report.instances {
        reported.insert(status.instance_id.as_str());
        let Some(instance) = state
            .instances
            .values()
            .find(|i| i.id.as_str() == status.instance_id && i.node.as_ref() == Some(node))
        else {
            continue;
        };
        let known = match status.state() {
            pb::ObservedState::Running => instance.state == InstanceState::Running,
            pb::ObservedState::Stopped => instance.state == InstanceState::Stopped,
            pb::ObservedState::Failed => {
                instance.state == InstanceState::Failed
                    && instance.status_message.as_deref().unwrap_or("") == status.message
            }
            pb::ObservedState::Absent | pb::ObservedState::Unspecified => true,
        };
        if !known && instance.state != InstanceState::Deleting {
            out.push(status.clone());
        }
    }
    // A full report for a generation that no longer holds a deleted instance, and does not
    // list it, means its VM is gone.
    for instance in state.instances.values() {
        if instance.node.as_ref() == Some(node)
            && instance.state == InstanceState::Deleting
            && instance
                .deleted_in_generation
                .is_some_and(|g| report.generation >= g)
            && !reported.contains(instance.id.as_str())
        {
            out.push(pb::InstanceStatus {
                instance_id: instance.id.to_string(),
                state: pb::ObservedState::Absent as i32,
                message: String::new(),
            });
        }
    }
    out
}

/// Records the GPUs the agent will not give out when that differs from the state (placement
/// must skip them on every replica).
async fn observe_gpus(cluster: &Cluster, node: &NodeId, report: &pb::StatusReport) {
    let differs = cluster.state().nodes.get(node).is_some_and(|n| {
        n.gpus.iter().any(|g| {
            let reported = report
                .unhealthy_gpus
                .iter()
                .find(|u| u.pci_address == g.pci_address)
                .map(|u| u.reason.as_str());
            reported != g.unhealthy.as_deref()
        })
    });
    if !differs {
        return;
    }
    let command = Body::SetGpuHealth(pb::SetGpuHealth {
        node_id: node.to_string(),
        unhealthy: report.unhealthy_gpus.clone(),
    });
    if let Err(e) = cluster.propose(command).await {
        tracing::warn!(%node, error = %e, "GPU health not committed; it is sent again with the next report");
    }
}

async fn observe(cluster: &Cluster, node: &NodeId, report: &pb::StatusReport) {
    let changes = observations(&cluster.state(), node, report);
    if changes.is_empty() {
        return;
    }
    let command = Body::ObserveInstances(pb::ObserveInstances {
        node_id: node.to_string(),
        instances: changes,
    });
    if let Err(e) = cluster.propose(command).await {
        tracing::warn!(%node, error = %e, "instance status not committed; it is sent again with the next report");
    }
}

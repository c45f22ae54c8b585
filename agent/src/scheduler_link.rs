//! The scheduler link: the agent's QUIC connection (mutual TLS, ALPN `vmcloud-agent/1`) to the
//! scheduler.
//!
//! One task. Per session: register (build, inventory, persisted generation), then send status
//! reports when the reconciler's observation changes and heartbeats on a timer, and accept
//! desired configs — each persisted in the ledger before the reconciler sees it. When the link
//! drops it reconnects with exponential backoff and full jitter; everything on the host keeps
//! running meanwhile.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use prost::Message;
use rand::Rng;
use tokio::sync::watch;
use tokio_util::codec::{FramedRead, FramedWrite, LengthDelimitedCodec};
use vmcloud_proto::pb::{self, agent_message, scheduler_message};
use vmcloud_proto::{ErrorChain, frame, pki};

use crate::ledger::{Ledger, Stored};

/// The first wait (full jitter: anywhere up to it). A second spreads a fleet reconnecting at
/// once (after a failover) over a second instead of a handful of milliseconds.
const BACKOFF_MIN: Duration = Duration::from_secs(1);
/// The longest wait between tries (full jitter: anywhere up to it). Bounds how long after a
/// cut link heals an agent that kept failing during the cut is back: ≤ 15 s plus a handshake.
const BACKOFF_MAX: Duration = Duration::from_secs(15);

/// Quiet after which the link sends a QUIC keep-alive.
pub const KEEP_ALIVE: Duration = Duration::from_secs(6);
/// Silence after which the link is given up (the scheduler's side agrees to the shorter of
/// its own and this).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(8);

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("invalid TLS configuration for the scheduler link")]
    Tls(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("cannot open a UDP socket for the scheduler link")]
    Socket(#[source] std::io::Error),
    #[error("cannot connect to the scheduler")]
    Connect(#[from] quinn::ConnectError),
    #[error("the QUIC connection failed")]
    Connection(#[from] quinn::ConnectionError),
    #[error("stream I/O failed")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Frame(#[from] frame::FrameError),
    #[error("protocol violation: {0}")]
    Protocol(&'static str),
    #[error("cannot persist the desired config")]
    Ledger(#[from] crate::ledger::LedgerError),
}

/// What the link needs to run.
pub struct Link {
    /// How this node connects (its certificate; replaced when renewed).
    pub client: quinn::ClientConfig,
    /// The scheduler replicas' gateways, tried in turn; followers redirect to the leader.
    pub schedulers: Vec<SocketAddr>,
    pub endpoint: quinn::Endpoint,
    pub build: pb::BuildInfo,
    pub inventory: pb::HostInventory,
    pub heartbeat: Duration,
    pub ledger: Arc<Mutex<Ledger>>,
    pub desired: watch::Sender<Option<pb::DesiredConfig>>,
    pub status: watch::Receiver<Option<pb::StatusReport>>,
    pub connected: watch::Sender<bool>,
    /// The host's latest summary (telemetry), sent in each heartbeat.
    pub summary: watch::Receiver<Option<pb::HostSummary>>,
    /// What is wrong with the host; added to every status report, which is sent again when
    /// these change.
    pub conditions: watch::Receiver<Vec<pb::HostCondition>>,
    /// The cluster CA and this node's current certificate; the link renews the certificate
    /// two thirds into its lifetime, over the link, and later connections present the new one.
    pub ca_pem: String,
    pub identity: pki::Identity,
    /// Where the certificate is kept (`node.pem`, `node.key`); none: in memory only.
    pub identity_dir: Option<std::path::PathBuf>,
    /// Held from connecting until registered (simulated agents sharing a process).
    pub connect_gate: Option<Arc<tokio::sync::Semaphore>>,
}

/// How long to wait before asking again after a refused or unanswered renewal.
const RENEW_RETRY: Duration = Duration::from_secs(60);

/// Writes a file through a temporary name (key files mode 0600), so a crash never leaves half
/// of one.
fn write_atomic(path: &std::path::Path, contents: &str, private: bool) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(if private { 0o600 } else { 0o644 })
        .open(&tmp)?;
    f.write_all(contents.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("schedulers", &self.schedulers)
            .finish_non_exhaustive()
    }
}

/// A client endpoint for `scheduler`, trusting only the cluster CA and presenting the node's
/// certificate.
pub fn endpoint(
    scheduler: SocketAddr,
    tls: rustls::ClientConfig,
) -> Result<quinn::Endpoint, LinkError> {
    let mut endpoint = bind_endpoint(scheduler)?;
    endpoint.set_default_client_config(client_config(tls)?);
    Ok(endpoint)
}

/// A client endpoint (one UDP socket) from which `scheduler` can be reached; connections
/// bring their own [`client_config`]. Simulated agents of one process share one.
pub fn bind_endpoint(scheduler: SocketAddr) -> Result<quinn::Endpoint, LinkError> {
    let local: SocketAddr = match scheduler {
        SocketAddr::V4(a) if a.ip().is_loopback() => (Ipv4Addr::LOCALHOST, 0).into(),
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    quinn::Endpoint::client(local).map_err(LinkError::Socket)
}

/// How a node connects: trusting only the cluster CA, presenting the node's certificate.
pub fn client_config(tls: rustls::ClientConfig) -> Result<quinn::ClientConfig, LinkError> {
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls)
        .map_err(|e| LinkError::Tls(Box::new(e)))?;
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    config.transport_config(transport());
    Ok(config)
}

fn transport() -> Arc<quinn::TransportConfig> {
    let mut transport = quinn::TransportConfig::default();
    // A scheduler gone without a word (kill -9, a cut link) is noticed after 8 s of silence
    // (3 to 8 s after it died) and the agent looks for the leader. A live scheduler
    // acknowledges every heartbeat (every 5 s) within milliseconds, so a live link is never
    // silent for more than about 5 s; a keep-alive goes out only when nothing was sent for
    // 6 s (a heartbeat late). So the link costs the leader no packets beyond the heartbeats
    // and their acknowledgements: keep-alives every 2 s with a 5 s timeout were measured
    // (docs/performance.md) to add load a busy leader felt, for 3 s less of detection.
    transport.keep_alive_interval(Some(KEEP_ALIVE));
    transport.max_idle_timeout(Some(IDLE_TIMEOUT.try_into().expect("a valid idle timeout")));
    Arc::new(transport)
}

/// The leader's gateway a redirect names, if it names one that parses.
fn leader_of(redirect: &pb::Redirect) -> Option<SocketAddr> {
    let parsed = redirect.leader_gateway.parse().ok();
    if parsed.is_none() && !redirect.leader_gateway.is_empty() {
        tracing::warn!(
            leader = redirect.leader_gateway,
            "the scheduler named a leader address that does not parse"
        );
    }
    parsed
}

fn encode(body: agent_message::Body) -> Bytes {
    pb::AgentMessage { body: Some(body) }.encode_to_vec().into()
}

fn codec() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .max_frame_length(frame::MAX_FRAME_BYTES)
        .new_codec()
}

/// How a session ended without error.
enum Ended {
    /// The scheduler closed the link.
    Closed,
    /// A follower named the leader's gateway (None: it knows no leader); `registered`: the
    /// replica had led this session until then.
    Redirect {
        leader: Option<SocketAddr>,
        registered: bool,
    },
}

/// How long a QUIC handshake may take before the agent tries the next replica.
/// Not shorter: when thousands of agents reconnect at once to a busy new leader, handshakes
/// take seconds, and giving up on them early only makes them start again (measured: 5 s made
/// a 10,000-agent failover on 2 vCPUs a retry storm).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Redirects followed in a row before backing off (a leader change under way).
const MAX_REDIRECTS: u32 = 3;

impl Link {
    /// Runs sessions forever, reconnecting after each: to the leader a follower named, else
    /// to the next scheduler of the list.
    pub async fn run(mut self) {
        let mut attempt = 0u32;
        let mut next = 0usize;
        let mut redirect: Option<SocketAddr> = None;
        let mut redirects = 0u32;
        loop {
            let target = redirect
                .take()
                .unwrap_or(self.schedulers[next % self.schedulers.len()]);
            let registered = self.session(target).await;
            let _ = self.connected.send(false);
            match registered {
                Ok(Ended::Closed) => {
                    tracing::info!(scheduler = %target, "the scheduler closed the link");
                    redirects = 0;
                    next += 1;
                }
                Ok(Ended::Redirect { leader, registered }) => {
                    if registered {
                        redirects = 0;
                    }
                    redirects += 1;
                    match leader {
                        Some(leader) => {
                            tracing::info!(from = %target, to = %leader, "redirected to the leader")
                        }
                        None => {
                            tracing::info!(scheduler = %target, "that scheduler knows no leader; trying the next");
                            next += 1;
                        }
                    }
                    if redirects <= MAX_REDIRECTS {
                        redirect = leader;
                        attempt = 0;
                        if leader.is_some() {
                            continue;
                        }
                    }
                }
                Err((was_registered, e)) => {
                    if was_registered {
                        attempt = 0;
                    }
                    redirects = 0;
                    // The next replica of the list that is not the one that just failed (a
                    // leader we were redirected to may sit anywhere in it).
                    next += 1;
                    let n = self.schedulers.len();
                    if n > 1 && self.schedulers[next % n] == target {
                        next += 1;
                    }
                    let level_warn = attempt == 0 || attempt.is_multiple_of(10);
                    if level_warn {
                        tracing::warn!(scheduler = %target, error = %ErrorChain(&e), "scheduler link down; reconnecting");
                    }
                }
            }
            // Exponential backoff with full jitter.
            let cap = BACKOFF_MIN
                .saturating_mul(1 << attempt.min(10))
                .min(BACKOFF_MAX);
            attempt = attempt.saturating_add(1);
            let wait = rand::rng().random_range(Duration::ZERO..=cap);
            tokio::time::sleep(wait).await;
        }
    }

    /// One session with `target`; the error says whether registration had succeeded.
    async fn session(&mut self, target: SocketAddr) -> Result<Ended, (bool, LinkError)> {
        let early = |e: LinkError| (false, e);
        let gate = match &self.connect_gate {
            Some(g) => g.clone().acquire_owned().await.ok(),
            None => None,
        };
        let connecting = self
            .endpoint
            .connect_with(self.client.clone(), target, pki::SCHEDULER_SERVER_NAME)
            .map_err(|e| early(e.into()))?;
        // A replica that is gone never answers: give up on it well before the idle timeout.
        let conn = tokio::time::timeout(CONNECT_TIMEOUT, connecting)
            .await
            .map_err(|_| {
                early(LinkError::Protocol(
                    "no answer to the QUIC handshake within 10 s",
                ))
            })?
            .map_err(|e| early(e.into()))?;
        let (send, recv) = conn.open_bi().await.map_err(|e| early(e.into()))?;
        let mut reader = FramedRead::new(recv, codec());
        let mut writer = FramedWrite::new(send, codec());
        let generation = self
            .ledger
            .lock()
            .unwrap()
            .current()
            .map_or(0, |c| c.generation);
        writer
            .send(encode(agent_message::Body::Register(pb::Register {
                build: Some(self.build.clone()),
                inventory: Some(self.inventory.clone()),
                desired_generation: generation,
            })))
            .await
            .map_err(|e| early(e.into()))?;
        let first = reader
            .next()
            .await
            .ok_or_else(|| {
                early(LinkError::Protocol(
                    "the scheduler closed the stream before answering Register",
                ))
            })?
            .map_err(|e| early(e.into()))?;
        let answer: pb::SchedulerMessage =
            frame::decode("scheduler", &first).map_err(|e| early(e.into()))?;
        let registered = match answer.body {
            Some(scheduler_message::Body::Registered(registered)) => registered,
            Some(scheduler_message::Body::Redirect(r)) => {
                conn.close(0u32.into(), b"redirected");
                return Ok(Ended::Redirect {
                    leader: leader_of(&r),
                    registered: false,
                });
            }
            _ => {
                return Err(early(LinkError::Protocol(
                    "the first answer must be Registered or Redirect",
                )));
            }
        };
        drop(gate);
        tracing::info!(scheduler = %target, node = registered.node_id, "registered with the scheduler");
        let _ = self.connected.send(true);
        self.serve(&mut reader, &mut writer)
            .await
            .map_err(|e| (true, e))
    }

    async fn serve(
        &mut self,
        reader: &mut FramedRead<quinn::RecvStream, LengthDelimitedCodec>,
        writer: &mut FramedWrite<quinn::SendStream, LengthDelimitedCodec>,
    ) -> Result<Ended, LinkError> {
        // The scheduler has not seen any report from this session yet.
        self.status.mark_changed();
        self.conditions.mark_unchanged();
        let mut heartbeat = tokio::time::interval(self.heartbeat);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut sequence = 0u64;
        // Without telemetry (simulated agents) nothing ever sends conditions.
        let mut conditions_open = true;
        let renew = tokio::time::sleep(pki::until_renewal(&self.identity.cert_pem));
        tokio::pin!(renew);
        // The key of a renewal under way.
        let mut pending_key: Option<String> = None;
        loop {
            // All arms are cancel-safe: `FramedRead::next` buffers partial frames, `changed`
            // only marks a value seen, and a missed interval tick fires on the next poll.
            tokio::select! {
                frame = reader.next() => {
                    let Some(frame) = frame else { return Ok(Ended::Closed) };
                    let message: pb::SchedulerMessage = frame::decode("scheduler", &frame?)?;
                    match message.body {
                        Some(scheduler_message::Body::Desired(config)) => self.accept(config).await?,
                        Some(scheduler_message::Body::Registered(_)) => return Err(LinkError::Protocol("Registered sent twice")),
                        // This replica lost the lead.
                        Some(scheduler_message::Body::Redirect(r)) => return Ok(Ended::Redirect { leader: leader_of(&r), registered: true }),
                        Some(scheduler_message::Body::Renewed(renewed)) => {
                            let next = match (pending_key.take(), renewed.error.is_empty()) {
                                (Some(key_pem), true) => match self.renewed(renewed.cert_pem, key_pem) {
                                    Ok(()) => pki::until_renewal(&self.identity.cert_pem),
                                    Err(e) => {
                                        tracing::warn!(error = %e, "the renewed certificate could not be used; retrying");
                                        RENEW_RETRY
                                    }
                                },
                                (_, false) => {
                                    tracing::warn!(reason = renewed.error, "the scheduler refused to renew this node's certificate; retrying");
                                    RENEW_RETRY
                                }
                                (None, true) => pki::until_renewal(&self.identity.cert_pem),
                            };
                            renew.as_mut().reset(tokio::time::Instant::now() + next);
                        }
                        None => return Err(LinkError::Protocol("empty scheduler message")),
                    }
                }
                changed = self.status.changed() => {
                    if changed.is_err() {
                        return Ok(Ended::Closed);
                    }
                    let report = self.status.borrow_and_update().clone();
                    if let Some(mut report) = report {
                        report.conditions = self.conditions.borrow_and_update().clone();
                        writer.send(encode(agent_message::Body::Status(report))).await?;
                    }
                }
                changed = self.conditions.changed(), if conditions_open => {
                    if changed.is_err() {
                        conditions_open = false;
                        continue;
                    }
                    let conditions = self.conditions.borrow_and_update().clone();
                    let report = self.status.borrow().clone();
                    if let Some(mut report) = report {
                        report.conditions = conditions;
                        writer.send(encode(agent_message::Body::Status(report))).await?;
                    }
                }
                () = &mut renew => {
                    let request = pki::node_id_from_cert_pem(&self.identity.cert_pem)
                        .and_then(|node| pki::node_csr(&node));
                    match request {
                        Ok((csr_pem, key_pem)) => {
                            pending_key = Some(key_pem);
                            writer.send(encode(agent_message::Body::Renew(pb::Renew { csr_pem }))).await?;
                            tracing::info!("renewing this node's certificate");
                        }
                        Err(e) => tracing::warn!(error = %e, "cannot make a certificate request; retrying"),
                    }
                    // Asked again if no answer comes.
                    renew.as_mut().reset(tokio::time::Instant::now() + RENEW_RETRY);
                }
                _ = heartbeat.tick() => {
                    sequence += 1;
                    let applied_generation = self.status.borrow().as_ref().map_or(0, |r| r.generation);
                    let summary = self.summary.borrow().clone();
                    let sent_unix_us = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_micros() as i64);
                    writer.send(encode(agent_message::Body::Heartbeat(pb::Heartbeat { sequence, applied_generation, summary, sent_unix_us }))).await?;
                }
            }
        }
    }

    /// Takes a renewed certificate: kept on disk, presented by every later connection.
    fn renewed(&mut self, cert_pem: String, key_pem: String) -> Result<(), LinkError> {
        let identity = pki::Identity { cert_pem, key_pem };
        let tls = pki::client_config(&self.ca_pem, &identity, vmcloud_proto::ALPN_AGENT)
            .map_err(|e| LinkError::Tls(Box::new(e)))?;
        let client = client_config(tls)?;
        if let Some(dir) = &self.identity_dir {
            write_atomic(&dir.join("node.key"), &identity.key_pem, true)
                .and_then(|()| write_atomic(&dir.join("node.pem"), &identity.cert_pem, false))
                .map_err(LinkError::Io)?;
        }
        self.client = client;
        let until = pki::cert_validity(&identity.cert_pem)
            .map(|(_, until)| until)
            .unwrap_or_default();
        tracing::info!(valid_until = until, "node certificate renewed");
        self.identity = identity;
        Ok(())
    }

    /// Persists a desired config (rebuilt whole when it came as a delta), then hands it to
    /// the reconciler.
    async fn accept(&mut self, config: pb::DesiredConfig) -> Result<(), LinkError> {
        let config = if vmcloud_proto::desired::is_delta(&config) {
            let current = self.ledger.lock().unwrap().current().cloned();
            current
                .and_then(|c| vmcloud_proto::desired::apply(&c, &config))
                .ok_or(LinkError::Protocol(
                    "a desired-config delta on a generation this agent does not hold; reconnecting for the whole config",
                ))?
        } else {
            config
        };
        let ledger = self.ledger.clone();
        let to_store = config.clone();
        let stored = tokio::task::spawn_blocking(move || ledger.lock().unwrap().store(&to_store))
            .await
            .map_err(|_| LinkError::Protocol("the ledger task panicked"))??;
        match stored {
            Stored::Accepted => {
                tracing::debug!(
                    generation = config.generation,
                    instances = config.instances.len(),
                    "desired config accepted"
                );
                let _ = self.desired.send(Some(config));
            }
            Stored::Unchanged => {}
            Stored::Stale { current } => {
                tracing::warn!(
                    received = config.generation,
                    current,
                    "refused a desired config older than the one persisted"
                );
            }
        }
        Ok(())
    }
}

//! The Raft transport between scheduler replicas: QUIC with mutual TLS (certificates from the
//! cluster CA, ALPN `vmcloud-raft/1`).
//!
//! Tasks: one accept loop and one reader per incoming connection (decode batches, check that
//! every message's `from` is the replica the certificate names, deliver); one sender per peer,
//! which keeps one connection and one unidirectional stream open, drains its queue into a
//! single batch per write, and reconnects with exponential backoff and full jitter. `send`
//! never blocks the raft runner: a message for a peer whose queue is full is dropped, as the
//! network could have (raft retransmits).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use prost::Message as _;
use protobuf::Message as _;
use raft::prelude::{Message, MessageType};
use rand::Rng;
use std::sync::Mutex;

use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;
use tokio_util::codec::{FramedRead, FramedWrite, LengthDelimitedCodec};
use vmcloud_proto::{ErrorChain, frame, pb, pki};

use super::Transport;
use crate::metrics::RaftMetrics;

/// Snapshot data larger than this is streamed in chunks of this size.
const CHUNK: usize = 1024 * 1024;
/// Messages waiting for one peer before new ones are dropped.
const QUEUE: usize = 4096;
/// Most messages in one batch.
const BATCH: usize = 256;
const BACKOFF_MIN: Duration = Duration::from_millis(20);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum QuicTransportError {
    #[error("invalid TLS configuration for the raft link")]
    Tls(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("cannot listen for raft peers on udp {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

fn codec() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .max_frame_length(frame::MAX_FRAME_BYTES)
        .new_codec()
}

/// A bound endpoint, before the peers are known (so every replica can bind, then learn the
/// others' addresses).
pub struct QuicEndpoint {
    endpoint: quinn::Endpoint,
    client: quinn::ClientConfig,
}

impl std::fmt::Debug for QuicEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuicEndpoint")
            .field("addr", &self.endpoint.local_addr().ok())
            .finish()
    }
}

impl QuicEndpoint {
    /// Binds `addr` with this replica's certificate (`identity`, from the cluster CA).
    pub fn bind(
        addr: SocketAddr,
        ca_pem: &str,
        identity: &pki::Identity,
    ) -> Result<QuicEndpoint, QuicTransportError> {
        let tls_err = |e: pki::PkiError| QuicTransportError::Tls(Box::new(e));
        let server =
            pki::server_config(ca_pem, identity, vmcloud_proto::ALPN_RAFT).map_err(tls_err)?;
        let client =
            pki::client_config(ca_pem, identity, vmcloud_proto::ALPN_RAFT).map_err(tls_err)?;
        let server = quinn::crypto::rustls::QuicServerConfig::try_from(server)
            .map_err(|e| QuicTransportError::Tls(Box::new(e)))?;
        let client = quinn::crypto::rustls::QuicClientConfig::try_from(client)
            .map_err(|e| QuicTransportError::Tls(Box::new(e)))?;
        let mut transport = quinn::TransportConfig::default();
        transport.keep_alive_interval(Some(Duration::from_secs(1)));
        transport.max_idle_timeout(Some(
            Duration::from_secs(10)
                .try_into()
                .expect("a valid idle timeout"),
        ));
        let transport = Arc::new(transport);
        let mut server = quinn::ServerConfig::with_crypto(Arc::new(server));
        server.transport_config(transport.clone());
        let mut client = quinn::ClientConfig::new(Arc::new(client));
        client.transport_config(transport);
        let endpoint = quinn::Endpoint::server(server, addr)
            .map_err(|source| QuicTransportError::Bind { addr, source })?;
        Ok(QuicEndpoint { endpoint, client })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.endpoint
            .local_addr()
            .expect("a bound endpoint has an address")
    }

    /// Starts the transport of replica `id`: senders to `peers` and the accept loop, which
    /// hands every verified incoming message to `deliver`.
    pub fn start(
        self,
        id: u64,
        peers: HashMap<u64, SocketAddr>,
        metrics: Arc<RaftMetrics>,
        deliver: impl Fn(Message) + Send + Sync + 'static,
    ) -> QuicTransport {
        let deliver: Arc<dyn Fn(Message) + Send + Sync> = Arc::new(deliver);
        let restarts: Restarts = Arc::default();
        let accept = tokio::spawn(accept_loop(
            self.endpoint.clone(),
            deliver,
            restarts.clone(),
        ));
        let mut transport = QuicTransport {
            id,
            queues: HashMap::new(),
            addresses: HashMap::new(),
            endpoint: self.endpoint,
            client: self.client,
            incarnation: rand::rng().random(),
            restarts,
            metrics,
            tasks: Arc::new(Mutex::new(vec![accept])),
            runtime: tokio::runtime::Handle::current(),
        };
        for (peer, addr) in peers {
            transport.connect(peer, addr);
        }
        transport
    }
}

/// The running transport. Give it to `Raft::start`; drop or [`QuicTransport::close`] it to
/// stop.
pub struct QuicTransport {
    id: u64,
    queues: HashMap<u64, mpsc::Sender<Message>>,
    addresses: HashMap<u64, SocketAddr>,
    endpoint: quinn::Endpoint,
    client: quinn::ClientConfig,
    /// Random per process start; sent with every batch.
    incarnation: u64,
    restarts: Restarts,
    metrics: Arc<RaftMetrics>,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
    /// Senders for peers added later are spawned from the raft runner's thread.
    runtime: tokio::runtime::Handle,
}

impl std::fmt::Debug for QuicTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuicTransport")
            .field("peers", &self.queues.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl QuicTransport {
    /// Starts the sender to `peer` at `addr` (replacing one that exists).
    fn connect(&mut self, peer: u64, addr: SocketAddr) {
        if peer == self.id || self.addresses.get(&peer) == Some(&addr) {
            return;
        }
        self.remove_peer(peer);
        self.addresses.insert(peer, addr);
        let restarted = Arc::new(Notify::new());
        self.restarts
            .lock()
            .unwrap()
            .insert(peer, restarted.clone());
        let (tx, rx) = mpsc::channel(QUEUE);
        self.queues.insert(peer, tx);
        let link = Outbound {
            endpoint: self.endpoint.clone(),
            client: self.client.clone(),
            peer,
            addr,
            incarnation: self.incarnation,
            restarted,
            metrics: self.metrics.clone(),
        };
        let task = self.runtime.spawn(sender(link, rx));
        let mut tasks = self.tasks.lock().unwrap();
        tasks.retain(|t| !t.is_finished());
        tasks.push(task);
    }

    /// A handle that closes this transport's connections and tasks (the transport itself is
    /// owned by the raft runner).
    pub fn closer(&self) -> QuicCloser {
        QuicCloser {
            endpoint: self.endpoint.clone(),
            tasks: self.tasks.clone(),
        }
    }
}

impl Transport for QuicTransport {
    fn add_peer(&mut self, id: u64, address: &str) {
        match address.parse() {
            Ok(addr) => self.connect(id, addr),
            Err(_) => tracing::warn!(
                peer = id,
                address,
                "new replica has no valid raft address; it cannot be reached"
            ),
        }
    }

    fn remove_peer(&mut self, id: u64) {
        // Dropping the queue ends the peer's sender.
        self.queues.remove(&id);
        self.addresses.remove(&id);
        self.restarts.lock().unwrap().remove(&id);
    }

    fn send(&mut self, messages: Vec<Message>) {
        for m in messages {
            if let Some(queue) = self.queues.get(&m.to) {
                // Full or closed: drop it, as a lossy network would.
                let _ = queue.try_send(m);
            }
        }
    }
}

/// Closes a [`QuicTransport`]'s endpoint and stops its tasks.
#[derive(Clone)]
pub struct QuicCloser {
    endpoint: quinn::Endpoint,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl std::fmt::Debug for QuicCloser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuicCloser").finish()
    }
}

impl QuicCloser {
    pub fn close(&self) {
        self.endpoint.close(0u32.into(), b"replica stopping");
        for t in self.tasks.lock().unwrap().iter() {
            t.abort();
        }
    }
}

/// One peer's outbound side.
struct Outbound {
    endpoint: quinn::Endpoint,
    client: quinn::ClientConfig,
    peer: u64,
    addr: SocketAddr,
    /// This process's incarnation, sent with every batch.
    incarnation: u64,
    /// Notified when the peer has restarted: the current connection is dead.
    restarted: Arc<Notify>,
    metrics: Arc<RaftMetrics>,
}

async fn sender(link: Outbound, mut queue: mpsc::Receiver<Message>) {
    let Outbound {
        endpoint,
        client,
        peer,
        addr,
        incarnation,
        restarted,
        metrics,
    } = link;
    let labels = RaftMetrics::peer(peer);
    let mut attempt = 0u32;
    loop {
        let result: Result<(), Box<dyn std::error::Error + Send + Sync>> = async {
            let conn = endpoint
                .connect_with(client.clone(), addr, pki::SCHEDULER_SERVER_NAME)?
                .await?;
            let stream = conn.open_uni().await?;
            let mut writer = FramedWrite::new(stream, codec());
            attempt = 0;
            tracing::debug!(peer, %addr, "raft link up");
            let mut batch = Vec::with_capacity(BATCH);
            loop {
                // Both arms are cancel-safe: `recv` loses nothing, and `notified` only
                // consumes the notification.
                let first = tokio::select! {
                    first = queue.recv() => first,
                    () = restarted.notified() => return Err("the peer restarted".into()),
                };
                let Some(first) = first else { return Ok(()) };
                batch.push(first);
                while batch.len() < BATCH {
                    match queue.try_recv() {
                        Ok(m) => batch.push(m),
                        Err(_) => break,
                    }
                }
                let mut encoded = Vec::with_capacity(batch.len());
                for mut m in batch.drain(..) {
                    // A large snapshot goes on a stream of its own, in chunks, beside the
                    // batches, so it holds up nothing and no frame outgrows the limit.
                    if m.get_msg_type() == MessageType::MsgSnapshot && m.get_snapshot().data.len() > CHUNK {
                        let data = std::mem::take(&mut m.mut_snapshot().data);
                        let (conn, metrics, labels) = (conn.clone(), metrics.clone(), labels.clone());
                        tokio::spawn(async move {
                            if let Err(e) = send_snapshot(&conn, incarnation, m, data, &metrics, &labels).await {
                                tracing::debug!(peer, error = %ErrorChain(&*e), "snapshot stream failed; raft will send it again");
                            }
                        });
                        continue;
                    }
                    encoded.push(m.write_to_bytes().expect("encoding a raft message cannot fail"));
                }
                if encoded.is_empty() {
                    continue;
                }
                let count = encoded.len() as u64;
                let frame = pb::RaftFrame {
                    body: Some(pb::raft_frame::Body::Batch(pb::RaftBatch {
                        incarnation,
                        messages: encoded,
                    })),
                };
                let bytes = frame.encode_to_vec();
                metrics.sent_messages.get_or_create(&labels).inc_by(count);
                metrics.sent_bytes.get_or_create(&labels).inc_by(bytes.len() as u64);
                writer.send(Bytes::from(bytes)).await?;
            }
        }
        .await;
        match result {
            Ok(()) => return,
            Err(e) => {
                if attempt.is_multiple_of(20) {
                    tracing::debug!(peer, %addr, error = %ErrorChain(&*e), "raft link down; reconnecting");
                }
            }
        }
        // Messages queued while the link is down are stale by the time it is back.
        while queue.try_recv().is_ok() {}
        let cap = BACKOFF_MIN
            .saturating_mul(1 << attempt.min(8))
            .min(BACKOFF_MAX);
        attempt = attempt.saturating_add(1);
        let wait = rand::rng().random_range(Duration::ZERO..=cap);
        tokio::time::sleep(wait).await;
    }
}

/// Hands a message from `peer` on, if it speaks for `peer`: a replica speaks only for itself.
fn deliver_from(peer: u64, m: Message, deliver: &(dyn Fn(Message) + Send + Sync)) {
    if m.from != peer {
        tracing::warn!(
            peer,
            claimed = m.from,
            "raft message from a replica speaking for another; dropped"
        );
        return;
    }
    deliver(m);
}

/// A changed incarnation means the peer restarted: our connection to it is stale.
fn note_incarnation(
    peer: u64,
    incarnation: u64,
    incarnations: &Mutex<HashMap<u64, u64>>,
    restarts: &Restarts,
) {
    let previous = incarnations.lock().unwrap().insert(peer, incarnation);
    if previous.is_some_and(|p| p != incarnation)
        && let Some(restarted) = restarts.lock().unwrap().get(&peer).cloned()
    {
        tracing::debug!(peer, "peer restarted; reconnecting to it");
        restarted.notify_one();
    }
}

/// Streams one snapshot message on its own unidirectional stream.
async fn send_snapshot(
    conn: &quinn::Connection,
    incarnation: u64,
    message: Message,
    data: Vec<u8>,
    metrics: &RaftMetrics,
    labels: &crate::metrics::PeerLabels,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let mut writer = FramedWrite::new(conn.open_uni().await?, codec());
    let start = pb::RaftFrame {
        body: Some(pb::raft_frame::Body::SnapshotStart(pb::SnapshotStart {
            incarnation,
            message: message
                .write_to_bytes()
                .expect("encoding a raft message cannot fail"),
            data_len: data.len() as u64,
            data_crc32: crc32fast::hash(&data),
        })),
    };
    writer.send(Bytes::from(start.encode_to_vec())).await?;
    for chunk in data.chunks(CHUNK) {
        let frame = pb::RaftFrame {
            body: Some(pb::raft_frame::Body::SnapshotChunk(chunk.to_vec())),
        };
        let bytes = frame.encode_to_vec();
        metrics
            .sent_bytes
            .get_or_create(labels)
            .inc_by(bytes.len() as u64);
        writer.send(Bytes::from(bytes)).await?;
    }
    metrics.sent_messages.get_or_create(labels).inc();
    writer.get_mut().finish()?;
    Ok(())
}

type Restarts = Arc<Mutex<HashMap<u64, Arc<Notify>>>>;

async fn accept_loop(
    endpoint: quinn::Endpoint,
    deliver: Arc<dyn Fn(Message) + Send + Sync>,
    restarts: Restarts,
) {
    let incarnations: Arc<Mutex<HashMap<u64, u64>>> = Arc::default();
    while let Some(incoming) = endpoint.accept().await {
        let (deliver, restarts, incarnations) =
            (deliver.clone(), restarts.clone(), incarnations.clone());
        tokio::spawn(async move {
            if let Err(e) = serve_peer(incoming, deliver, restarts, incarnations).await {
                tracing::debug!(error = %ErrorChain(&*e), "raft peer connection ended");
            }
        });
    }
}

async fn serve_peer(
    incoming: quinn::Incoming,
    deliver: Arc<dyn Fn(Message) + Send + Sync>,
    restarts: Restarts,
    incarnations: Arc<Mutex<HashMap<u64, u64>>>,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let conn = incoming.await?;
    let peer = conn
        .peer_identity()
        .and_then(|id| {
            id.downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
                .ok()
        })
        .and_then(|certs| certs.first().and_then(|c| pki::replica_id_from_cert(c)))
        .ok_or("the peer's certificate does not name a scheduler replica")?;
    loop {
        let stream = conn.accept_uni().await?;
        let (deliver, restarts, incarnations) =
            (deliver.clone(), restarts.clone(), incarnations.clone());
        tokio::spawn(async move {
            let mut reader = FramedRead::new(stream, codec());
            let mut snapshot: Option<(Message, Vec<u8>, u64, u32)> = None;
            while let Some(frame) = reader.next().await {
                let Ok(frame) = frame else { return };
                let Ok(frame) = frame::decode::<pb::RaftFrame>("raft frame", &frame) else {
                    tracing::warn!(peer, "malformed raft frame; closing the stream");
                    return;
                };
                match frame.body {
                    Some(pb::raft_frame::Body::Batch(batch)) => {
                        note_incarnation(peer, batch.incarnation, &incarnations, &restarts);
                        for bytes in batch.messages {
                            let mut m = Message::default();
                            if m.merge_from_bytes(&bytes).is_err() {
                                tracing::warn!(peer, "malformed raft message dropped");
                                continue;
                            }
                            deliver_from(peer, m, &*deliver);
                        }
                    }
                    Some(pb::raft_frame::Body::SnapshotStart(start)) => {
                        note_incarnation(peer, start.incarnation, &incarnations, &restarts);
                        let mut m = Message::default();
                        if m.merge_from_bytes(&start.message).is_err() {
                            tracing::warn!(peer, "malformed snapshot message; closing the stream");
                            return;
                        }
                        let capacity = (start.data_len as usize).min(64 * CHUNK);
                        snapshot = Some((
                            m,
                            Vec::with_capacity(capacity),
                            start.data_len,
                            start.data_crc32,
                        ));
                    }
                    Some(pb::raft_frame::Body::SnapshotChunk(chunk)) => {
                        let Some((_, data, len, _)) = snapshot.as_mut() else {
                            tracing::warn!(
                                peer,
                                "snapshot chunk without a start; closing the stream"
                            );
                            return;
                        };
                        data.extend_from_slice(&chunk);
                        if data.len() as u64 > *len {
                            tracing::warn!(peer, "snapshot longer than announced; dropped");
                            return;
                        }
                        if data.len() as u64 == *len {
                            let (mut m, data, _, crc) = snapshot.take().expect("checked above");
                            if crc32fast::hash(&data) != crc {
                                tracing::warn!(
                                    peer,
                                    "snapshot checksum mismatch; dropped (raft sends it again)"
                                );
                                return;
                            }
                            m.mut_snapshot().data = data;
                            deliver_from(peer, m, &*deliver);
                        }
                    }
                    None => {
                        tracing::warn!(peer, "empty raft frame; closing the stream");
                        return;
                    }
                }
            }
        });
    }
}

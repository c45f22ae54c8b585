//! A whole Raft group in this process, over the real QUIC transport on loopback: for
//! benchmarks (`vmcloud bench raft`) and tests that want the production network path without
//! several processes.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use vmcloud_proto::pki;

use crate::{
    QuicCloser, QuicEndpoint, QuicTransportError, Raft, RaftConfig, StartError, StateMachine,
};

#[derive(Debug, thiserror::Error)]
pub enum LocalClusterError {
    #[error(transparent)]
    Transport(#[from] QuicTransportError),
    #[error(transparent)]
    Start(#[from] StartError),
}

pub struct LocalReplica<O> {
    pub id: u64,
    pub raft: Raft<O>,
    closer: QuicCloser,
}

/// Replicas `1..=n`, each with its own redb log under `dir`.
pub struct LocalQuicCluster<O> {
    pub replicas: Vec<LocalReplica<O>>,
}

impl<O> std::fmt::Debug for LocalQuicCluster<O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalQuicCluster")
            .field("replicas", &self.replicas.len())
            .finish()
    }
}

impl<O: Send + 'static> LocalQuicCluster<O> {
    /// Starts one replica per identity (replica `i + 1` presents `identities[i]`), all
    /// trusting `ca_pem`. `tune` adjusts each replica's config; `make` builds its state
    /// machine.
    pub fn start<S: StateMachine<Output = O>>(
        dir: &Path,
        ca_pem: &str,
        identities: &[pki::Identity],
        tune: impl Fn(&mut RaftConfig),
        mut make: impl FnMut(u64) -> S,
    ) -> Result<LocalQuicCluster<O>, LocalClusterError> {
        let ids: Vec<u64> = (1..=identities.len() as u64).collect();
        let endpoints = identities
            .iter()
            .map(|identity| QuicEndpoint::bind(([127, 0, 0, 1], 0).into(), ca_pem, identity))
            .collect::<Result<Vec<_>, _>>()?;
        let addrs: HashMap<u64, _> = ids
            .iter()
            .zip(&endpoints)
            .map(|(&id, e)| (id, e.local_addr()))
            .collect();
        let mut replicas = Vec::new();
        for (&id, endpoint) in ids.iter().zip(endpoints) {
            // The transport is created before the replica it delivers to.
            let cell: Arc<OnceLock<Raft<O>>> = Arc::default();
            let inbox = cell.clone();
            let mut config = RaftConfig::new(id, dir.join(format!("raft-{id}.redb")), ids.clone());
            config.peer_addresses = addrs.iter().map(|(id, a)| (*id, a.to_string())).collect();
            tune(&mut config);
            let transport = endpoint.start(id, addrs.clone(), config.metrics.clone(), move |m| {
                if let Some(raft) = inbox.get() {
                    raft.step(m);
                }
            });
            let closer = transport.closer();
            let raft = Raft::start(config, make(id), transport)?;
            let _ = cell.set(raft.clone());
            replicas.push(LocalReplica { id, raft, closer });
        }
        Ok(LocalQuicCluster { replicas })
    }

    /// Index (in `replicas`) of the replica that leads at the highest term, once one does.
    pub async fn leader(&self, within: Duration) -> Option<usize> {
        let deadline = Instant::now() + within;
        loop {
            let best = self
                .replicas
                .iter()
                .enumerate()
                .map(|(i, r)| (i, r.raft.status().borrow().clone()))
                .filter(|(_, s)| s.is_leader)
                .max_by_key(|(_, s)| s.term);
            if let Some((i, _)) = best {
                return Some(i);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Stops replica `replicas[index]` and removes it: its connections close, its log stays.
    pub async fn stop(&mut self, index: usize) {
        let replica = self.replicas.remove(index);
        replica.closer.close();
        let _ = tokio::task::spawn_blocking(move || replica.raft.shutdown()).await;
    }

    pub async fn shutdown(mut self) {
        while !self.replicas.is_empty() {
            self.stop(0).await;
        }
    }
}

//! Replicas over the real QUIC transport on loopback, with mutual TLS.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use vmcloud_consensus::{QuicCloser, QuicEndpoint, Raft, RaftConfig};
use vmcloud_proto::pki::Ca;

use crate::harness::{Recorder, TICK};

struct QuicReplica {
    raft: Raft<u64>,
    applied: Recorder,
    closer: QuicCloser,
}

/// Starts replicas `1..=cas.len()`; replica i gets its certificate from `cas[i - 1]` but
/// trusts `cas[0]`.
fn start(dir: &std::path::Path, cas: &[&Ca]) -> Vec<QuicReplica> {
    let trusted = cas[0].identity.cert_pem.clone();
    let n = cas.len() as u64;
    let ids: Vec<u64> = (1..=n).collect();
    let endpoints: Vec<QuicEndpoint> = ids
        .iter()
        .map(|&id| {
            let identity = cas[id as usize - 1]
                .issue_scheduler(&id.to_string())
                .unwrap();
            QuicEndpoint::bind("127.0.0.1:0".parse().unwrap(), &trusted, &identity).unwrap()
        })
        .collect();
    let addrs: HashMap<u64, _> = ids
        .iter()
        .zip(&endpoints)
        .map(|(&id, e)| (id, e.local_addr()))
        .collect();
    ids.iter()
        .zip(endpoints)
        .map(|(&id, endpoint)| {
            let cell: Arc<OnceLock<Raft<u64>>> = Arc::default();
            let inbox = cell.clone();
            let transport = endpoint.start(id, addrs.clone(), move |m| {
                if let Some(raft) = inbox.get() {
                    raft.step(m);
                }
            });
            let closer = transport.closer();
            let mut config = RaftConfig::new(id, dir.join(format!("raft-{id}.redb")), ids.clone());
            config.tick = TICK;
            config.election_ticks = 10;
            config.max_election_ticks = 20;
            config.heartbeat_ticks = 2;
            config.propose_timeout = Duration::from_secs(2);
            let applied = Recorder::default();
            let raft = Raft::start(config, applied.clone(), transport).unwrap();
            let _ = cell.set(raft.clone());
            QuicReplica {
                raft,
                applied,
                closer,
            }
        })
        .collect()
}

async fn leader(replicas: &[QuicReplica]) -> usize {
    for _ in 0..500 {
        if let Some(i) = replicas
            .iter()
            .position(|r| r.raft.status().borrow().is_leader)
        {
            return i;
        }
        tokio::time::sleep(TICK).await;
    }
    panic!("no leader over QUIC");
}

async fn stop(replicas: Vec<QuicReplica>) {
    for r in replicas {
        r.closer.close();
        tokio::task::spawn_blocking(move || r.raft.shutdown())
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_replicate_over_quic_with_mutual_tls() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::generate("test").unwrap();
    let replicas = start(dir.path(), &[&ca, &ca, &ca]);
    let l = leader(&replicas).await;
    for i in 0..20u32 {
        // Through followers too: they forward to the leader over QUIC.
        replicas[(l + i as usize) % 3]
            .raft
            .propose(i.to_be_bytes().to_vec())
            .await
            .unwrap();
    }
    for _ in 0..300 {
        if replicas
            .iter()
            .all(|r| r.applied.0.lock().unwrap().len() == 20)
        {
            break;
        }
        tokio::time::sleep(TICK).await;
    }
    let logs: Vec<_> = replicas
        .iter()
        .map(|r| r.applied.0.lock().unwrap().clone())
        .collect();
    assert_eq!(logs[0].len(), 20);
    assert!(
        logs.iter().all(|l| *l == logs[0]),
        "replicas disagree: {logs:?}"
    );
    stop(replicas).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_with_a_certificate_from_another_ca_is_shut_out() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::generate("test").unwrap();
    let rogue = Ca::generate("rogue").unwrap();
    let replicas = start(dir.path(), &[&ca, &ca, &rogue]);
    let l = leader(&replicas).await;
    assert_ne!(l, 2, "the replica nobody can verify cannot lead");
    for i in 0..5u32 {
        replicas[l]
            .raft
            .propose(i.to_be_bytes().to_vec())
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        replicas[2].applied.0.lock().unwrap().len(),
        0,
        "the rogue replica received the log"
    );
    stop(replicas).await;
}

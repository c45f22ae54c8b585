//! Replicas over the real QUIC transport on loopback, with mutual TLS.

use std::time::Duration;

use vmcloud_consensus::RaftConfig;
use vmcloud_consensus::local::LocalQuicCluster;
use vmcloud_proto::pki::Ca;

use crate::harness::{Recorder, TICK};

fn tune(config: &mut RaftConfig) {
    config.tick = TICK;
    config.election_ticks = 10;
    config.max_election_ticks = 20;
    config.heartbeat_ticks = 2;
    config.propose_timeout = Duration::from_secs(2);
}

/// Replica i presents a certificate from `cas[i]`; all trust `cas[0]`.
fn start(dir: &std::path::Path, cas: &[&Ca]) -> (LocalQuicCluster<u64>, Vec<Recorder>) {
    let identities: Vec<_> = cas
        .iter()
        .enumerate()
        .map(|(i, ca)| ca.issue_scheduler(&(i + 1).to_string()).unwrap())
        .collect();
    let recorders: Vec<Recorder> = cas.iter().map(|_| Recorder::default()).collect();
    let sms = recorders.clone();
    let cluster =
        LocalQuicCluster::start(dir, &cas[0].identity.cert_pem, &identities, tune, |id| {
            sms[id as usize - 1].clone()
        })
        .unwrap();
    (cluster, recorders)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_replicate_over_quic_with_mutual_tls() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::generate("test").unwrap();
    let (cluster, applied) = start(dir.path(), &[&ca, &ca, &ca]);
    let l = cluster
        .leader(Duration::from_secs(5))
        .await
        .expect("a leader over QUIC");
    for i in 0..20u32 {
        // Through followers too: they forward to the leader over QUIC.
        cluster.replicas[(l + i as usize) % 3]
            .raft
            .propose(i.to_be_bytes().to_vec())
            .await
            .unwrap();
    }
    for _ in 0..300 {
        if applied.iter().all(|r| r.0.lock().unwrap().len() == 20) {
            break;
        }
        tokio::time::sleep(TICK).await;
    }
    let logs: Vec<_> = applied
        .iter()
        .map(|r| r.0.lock().unwrap().clone())
        .collect();
    assert_eq!(logs[0].len(), 20);
    assert!(
        logs.iter().all(|l| *l == logs[0]),
        "replicas disagree: {logs:?}"
    );
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_with_a_certificate_from_another_ca_is_shut_out() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::generate("test").unwrap();
    let rogue = Ca::generate("rogue").unwrap();
    let (cluster, applied) = start(dir.path(), &[&ca, &ca, &rogue]);
    let l = cluster
        .leader(Duration::from_secs(5))
        .await
        .expect("a leader over QUIC");
    assert_ne!(l, 2, "the replica nobody can verify cannot lead");
    for i in 0..5u32 {
        cluster.replicas[l]
            .raft
            .propose(i.to_be_bytes().to_vec())
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        applied[2].0.lock().unwrap().len(),
        0,
        "the rogue replica received the log"
    );
    cluster.shutdown().await;
}

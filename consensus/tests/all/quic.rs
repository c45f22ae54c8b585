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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_larger_than_a_frame_is_streamed_in_chunks() {
    use std::collections::HashMap;
    use std::sync::{Arc, OnceLock};
    use vmcloud_consensus::{QuicEndpoint, Raft};

    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::generate("test").unwrap();
    let endpoints: Vec<QuicEndpoint> = (1..=3u64)
        .map(|id| {
            let identity = ca.issue_scheduler(&id.to_string()).unwrap();
            QuicEndpoint::bind(
                "127.0.0.1:0".parse().unwrap(),
                &ca.identity.cert_pem,
                &identity,
            )
            .unwrap()
        })
        .collect();
    let addrs: HashMap<u64, _> = endpoints
        .iter()
        .enumerate()
        .map(|(i, e)| (i as u64 + 1, e.local_addr()))
        .collect();
    let start = |id: u64, endpoint: QuicEndpoint, sm: Recorder| {
        let mut config = RaftConfig::new(
            id,
            dir.path().join(format!("raft-{id}.redb")),
            vec![1, 2, 3],
        );
        tune(&mut config);
        config.snapshot_every = 5;
        // All three replicas share this process's two runtime threads: streaming 24 MiB
        // through TLS (and checking it on the other end) takes longer than the 100–200 ms
        // election timeout of `tune`, and a leader that misses heartbeats meanwhile loses
        // its term and its snapshot is dropped as stale. Production's timeout (0.8–1.2 s at
        // 100 ms ticks) is what this test runs with.
        config.election_ticks = 80;
        config.max_election_ticks = 120;
        let cell: Arc<OnceLock<Raft<u64>>> = Arc::default();
        let inbox = cell.clone();
        let transport = endpoint.start(id, addrs.clone(), config.metrics.clone(), move |m| {
            if let Some(raft) = inbox.get() {
                raft.step(m);
            }
        });
        let closer = transport.closer();
        let raft = Raft::start(config, sm, transport).unwrap();
        let _ = cell.set(raft.clone());
        (raft, closer)
    };
    let mut endpoints = endpoints.into_iter();
    let (e1, e2, e3) = (
        endpoints.next().unwrap(),
        endpoints.next().unwrap(),
        endpoints.next().unwrap(),
    );
    let recorders = [
        Recorder::default(),
        Recorder::default(),
        Recorder::default(),
    ];
    let r1 = start(1, e1, recorders[0].clone());
    let r2 = start(2, e2, recorders[1].clone());
    // Two of three make a quorum; replica 3 is not running yet.
    let mut leader = None;
    for _ in 0..500 {
        leader = [&r1, &r2]
            .into_iter()
            .find(|(r, _)| r.status().borrow().is_leader)
            .map(|(r, _)| r.clone());
        if leader.is_some() {
            break;
        }
        tokio::time::sleep(TICK).await;
    }
    let leader = leader.expect("a leader among replicas 1 and 2");
    // 24 MiB of state: its snapshot is larger than the 16 MiB frame limit.
    for i in 0..24u8 {
        leader.propose(vec![i; 1024 * 1024]).await.unwrap();
    }
    // Replica 3 starts with an empty log; the log it misses is compacted: it needs the
    // snapshot, in chunks.
    let r3 = start(3, e3, recorders[2].clone());
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while recorders[2].0.lock().unwrap().len() < 24 {
        assert!(
            std::time::Instant::now() < deadline,
            "replica 3 did not catch up"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        *recorders[2].0.lock().unwrap(),
        *recorders[0].0.lock().unwrap()
    );
    for (raft, closer) in [r1, r2, r3] {
        closer.close();
        tokio::task::spawn_blocking(move || raft.shutdown())
            .await
            .unwrap();
    }
}

//! Proposals and reads fail over with the group: a write or read pending on a leader that is
//! lost is answered through the next leader within about one election, not after the
//! proposal timeout, and a write is applied once.

use std::time::{Duration, Instant};

use vmcloud_consensus::Faults;

use crate::harness::{Cluster, TICK};

const SECOND: Duration = Duration::from_secs(1);
/// Far longer than an election here (100–200 ms): a test that waits it out has failed.
const PATIENCE: Duration = Duration::from_secs(10);

/// Cuts what `leader` sends (it still hears the others): it takes proposals and appends them
/// in its term, but can neither commit them nor keep its followers — as a paused process.
fn silence(cluster: &Cluster, leader: u64) {
    for &other in cluster.ids.iter().filter(|&&o| o != leader) {
        cluster.net.cut(leader, other);
    }
}

fn count(cluster: &Cluster, id: u64, data: &[u8]) -> usize {
    cluster
        .applied(id)
        .iter()
        .filter(|(_, d)| d == data)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_pending_on_a_lost_leader_is_proposed_to_the_next_one_and_applied_once() {
    let cluster = Cluster::start_waiting(3, 41, Faults::default(), PATIENCE);
    let old = cluster.leader(5 * SECOND).await;
    cluster
        .propose_until_acked(old, b"before", 5 * SECOND)
        .await;
    let follower = *cluster.ids.iter().find(|&&id| id != old).unwrap();

    silence(&cluster, old);
    // Forwarded to the silenced leader, which appends it in its own term and cannot commit.
    let started = Instant::now();
    let plain = cluster.propose(follower, b"plain").await;
    let plain_took = started.elapsed();
    let once = cluster.replicas[&follower]
        .raft
        .propose_once([9; 16], b"once".to_vec())
        .await;
    assert!(
        plain.is_ok(),
        "the write through a follower failed: {plain:?}"
    );
    assert!(once.is_ok(), "a write with a request id failed: {once:?}");
    assert!(
        plain_took < 3 * SECOND,
        "the write waited {plain_took:?} for a leader that was gone (an election takes ~0.2 s)"
    );
    let retried = cluster.replicas[&follower]
        .raft
        .metrics()
        .proposals_retried
        .get();
    assert!(retried >= 1, "the write was not proposed again");

    // The old leader hears the new term, drops what it appended alone, and catches up.
    cluster.net.heal();
    cluster.wait_converged(3, 5 * SECOND).await;
    for id in cluster.live() {
        assert_eq!(count(&cluster, id, b"plain"), 1, "replica {id}");
        assert_eq!(count(&cluster, id, b"once"), 1, "replica {id}");
    }
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_pending_on_a_deposed_leader_is_confirmed_through_the_new_one() {
    let cluster = Cluster::start_waiting(3, 43, Faults::default(), PATIENCE);
    let old = cluster.leader(5 * SECOND).await;
    cluster.propose_until_acked(old, b"a", 5 * SECOND).await;

    silence(&cluster, old);
    // The others elect a leader of a later term and commit without the old one.
    let others: Vec<u64> = cluster.live().into_iter().filter(|&id| id != old).collect();
    let deadline = Instant::now() + 5 * SECOND;
    let new = loop {
        if let Some(&id) = others
            .iter()
            .find(|id| cluster.replicas[id].raft.status().borrow().is_leader)
        {
            break id;
        }
        assert!(Instant::now() < deadline, "the majority elected no leader");
        tokio::time::sleep(TICK).await;
    };
    cluster.propose_until_acked(new, b"b", 5 * SECOND).await;

    // A read through the old leader, which still thinks it leads: its confirmation round is
    // lost. When it comes back it is a follower at the new term, and the read is asked again
    // through the new leader.
    let raft = cluster.replicas[&old].raft.clone();
    let started = Instant::now();
    let read = tokio::spawn(async move { raft.read_barrier().await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    cluster.net.heal();
    let result = read.await.unwrap();
    let took = started.elapsed();
    assert!(result.is_ok(), "the read failed: {result:?}");
    assert!(
        took < 3 * SECOND,
        "the read waited {took:?}: it should be confirmed through the new leader in milliseconds after the heal"
    );
    // Read-after-write: what the new leader committed is applied on the old one by now.
    assert_eq!(count(&cluster, old, b"b"), 1);
    assert!(cluster.replicas[&old].raft.metrics().reads_retried.get() >= 1);
    cluster.shutdown().await;
}

//! Scenario tests: elections, replication, leader loss, partitions.

use std::time::Duration;

use vmcloud_consensus::{Faults, ProposeError};

use crate::harness::Cluster;

const SECOND: Duration = Duration::from_secs(1);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_elect_one_leader_and_replicate_through_any_replica() {
    let cluster = Cluster::start(3, 1, Faults::default());
    let leader = cluster.leader(5 * SECOND).await;
    let leaders: Vec<u64> = cluster
        .live()
        .into_iter()
        .filter(|id| cluster.replicas[id].raft.status().borrow().is_leader)
        .collect();
    assert_eq!(leaders, vec![leader], "exactly one leader");
    // Followers forward proposals to the leader; every replica answers with the entry's index.
    for i in 0..30u32 {
        let via = cluster.ids[i as usize % 3];
        cluster
            .propose_until_acked(via, &i.to_be_bytes(), 5 * SECOND)
            .await;
    }
    cluster.wait_converged(30, 5 * SECOND).await;
    let data: Vec<Vec<u8>> = cluster.applied(1).into_iter().map(|(_, d)| d).collect();
    assert_eq!(
        data,
        (0..30u32)
            .map(|i| i.to_be_bytes().to_vec())
            .collect::<Vec<_>>()
    );
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_leader_takes_over_and_the_old_one_catches_up() {
    let mut cluster = Cluster::start(3, 2, Faults::default());
    let first = cluster.leader(5 * SECOND).await;
    cluster
        .propose_until_acked(first, b"before", 5 * SECOND)
        .await;
    cluster.crash(first).await;

    let second = cluster.leader(5 * SECOND).await;
    assert_ne!(first, second);
    cluster
        .propose_until_acked(second, b"after", 5 * SECOND)
        .await;

    // The old leader comes back from its log and catches up.
    cluster.start_replica(first);
    cluster.wait_converged(2, 5 * SECOND).await;
    let data: Vec<Vec<u8>> = cluster.applied(first).into_iter().map(|(_, d)| d).collect();
    assert_eq!(data, vec![b"before".to_vec(), b"after".to_vec()]);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_isolated_leader_cannot_commit_and_the_majority_goes_on() {
    let cluster = Cluster::start(5, 3, Faults::default());
    let old = cluster.leader(5 * SECOND).await;
    cluster.propose_until_acked(old, b"a", 5 * SECOND).await;
    cluster.net.isolate(old, &cluster.ids);

    // A write through the isolated leader is never acknowledged.
    let stuck = cluster.propose(old, b"lost").await;
    assert!(
        matches!(
            stuck,
            Err(ProposeError::Timeout(_) | ProposeError::NotLeader { .. })
        ),
        "a leader cut off from its majority acknowledged a write: {stuck:?}"
    );
    // The majority elects a new leader and commits.
    let others: Vec<u64> = cluster
        .ids
        .iter()
        .copied()
        .filter(|&id| id != old)
        .collect();
    let new = {
        let mut found = None;
        for _ in 0..500 {
            found = others
                .iter()
                .copied()
                .find(|id| cluster.replicas[id].raft.status().borrow().is_leader);
            if found.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        found.expect("the majority elects a leader")
    };
    cluster.propose_until_acked(new, b"b", 5 * SECOND).await;

    // Healed, the old leader steps down and gets the majority's log; "lost" is never applied
    // anywhere.
    cluster.net.heal();
    cluster.wait_converged(2, 5 * SECOND).await;
    for id in cluster.live() {
        let data: Vec<Vec<u8>> = cluster.applied(id).into_iter().map(|(_, d)| d).collect();
        assert!(
            !data.contains(&b"lost".to_vec()),
            "replica {id} applied an unacknowledged write from a deposed leader"
        );
        assert!(
            data.starts_with(&[b"a".to_vec(), b"b".to_vec()]),
            "replica {id}: {data:?}"
        );
    }
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asymmetric_partition_does_not_split_the_log() {
    let cluster = Cluster::start(3, 4, Faults::default());
    let leader = cluster.leader(5 * SECOND).await;
    let follower = cluster
        .ids
        .iter()
        .copied()
        .find(|&id| id != leader)
        .unwrap();
    // The follower hears nothing from the leader but the leader hears the follower.
    cluster.net.cut(leader, follower);
    for i in 0..10u32 {
        cluster
            .propose_until_acked(leader, &i.to_be_bytes(), 10 * SECOND)
            .await;
    }
    cluster.net.heal();
    cluster.wait_converged(10, 10 * SECOND).await;
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_behind_the_compacted_log_catches_up_from_a_snapshot() {
    let mut cluster = Cluster::start(3, 5, Faults::default());
    let leader = cluster.leader(5 * SECOND).await;
    let behind = cluster
        .ids
        .iter()
        .copied()
        .find(|&id| id != leader)
        .unwrap();
    cluster.crash(behind).await;
    // Far more than one snapshot interval: the entries it misses are compacted away.
    for i in 0..40u32 {
        cluster
            .propose_until_acked(leader, &i.to_be_bytes(), 5 * SECOND)
            .await;
    }
    cluster.start_replica(behind);
    cluster.wait_converged(40, 10 * SECOND).await;
    let snapshots = std::fs::read_dir(cluster.snapshot_dir(behind))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(
        snapshots, 1,
        "the lagging replica installed (or took) a snapshot"
    );
    assert!(
        cluster.replicas[&behind]
            .applied
            .1
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1,
        "the snapshot it was sent was made by the leader's state machine for a peer"
    );
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_changes_under_load() {
    let mut cluster = Cluster::start(3, 6, Faults::default());
    let leader = cluster.leader(5 * SECOND).await;
    let load = |cluster: &Cluster, from: u32, to: u32| {
        let rafts: Vec<_> = cluster.replicas.values().map(|r| r.raft.clone()).collect();
        tokio::spawn(async move {
            let mut acked = Vec::new();
            for i in from..to {
                for attempt in 0..50 {
                    let raft = &rafts[(i as usize + attempt) % rafts.len()];
                    if raft.propose(i.to_be_bytes().to_vec()).await.is_ok() {
                        acked.push(i);
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            acked
        })
    };
    let writes = load(&cluster, 0, 60);

    // A fourth replica joins as a learner, catches up from a snapshot, and is promoted.
    cluster.start_joining(4);
    let raft = cluster.replicas[&leader].raft.clone();
    raft.add_learner(4, "").await.unwrap();
    assert_eq!(raft.status().borrow().learners, vec![4]);
    raft.promote(4, "").await.unwrap();
    let status = raft.status().borrow().clone();
    assert_eq!(status.voters, vec![1, 2, 3, 4]);
    assert!(status.learners.is_empty());

    // One of the original followers leaves.
    let leaving = [1, 2, 3].into_iter().find(|&id| id != leader).unwrap();
    raft.remove(leaving).await.unwrap();
    assert!(!raft.status().borrow().voters.contains(&leaving));
    cluster.crash(leaving).await;
    let acked = writes.await.unwrap();
    assert_eq!(
        acked.len(),
        60,
        "every write during the changes was acknowledged"
    );

    // The new voter counts: with the old leader gone, the remaining three elect one.
    cluster.crash(leader).await;
    let next = cluster.leader(10 * SECOND).await;
    assert!(next != leader && next != leaving);
    cluster
        .propose_until_acked(next, b"after", 5 * SECOND)
        .await;
    cluster.wait_converged(61, 10 * SECOND).await;
    let on_new: Vec<Vec<u8>> = cluster.applied(4).into_iter().map(|(_, d)| d).collect();
    for i in 0..60u32 {
        assert!(
            on_new.contains(&i.to_be_bytes().to_vec()),
            "write {i} missing on the new replica"
        );
    }
    // A change through a follower is refused with who leads.
    let follower = cluster.live().into_iter().find(|&id| id != next).unwrap();
    let err = cluster.replicas[&follower]
        .raft
        .remove(next)
        .await
        .unwrap_err();
    assert!(
        matches!(err, vmcloud_consensus::ProposeError::NotLeader { leader: Some(l), .. } if l == next),
        "{err}"
    );
    cluster.shutdown().await;
}

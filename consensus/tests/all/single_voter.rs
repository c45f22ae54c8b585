//! A single-voter group: becomes leader at once, applies in order, replays after restart.

use vmcloud_consensus::{NoPeers, ProposeError, Raft, RaftConfig};

use crate::harness::Recorder;

async fn start(dir: &std::path::Path, sm: Recorder, snapshot_every: u64) -> Raft<u64> {
    let mut config = RaftConfig::new(1, dir.join("raft.redb"), vec![1]);
    config.snapshot_every = snapshot_every;
    let raft = Raft::start(config, sm, NoPeers).unwrap();
    let mut status = raft.status();
    tokio::time::timeout(
        std::time::Duration::from_secs(5),
        status.wait_for(|s| s.is_leader),
    )
    .await
    .expect("a single voter becomes leader")
    .unwrap();
    raft.barrier().await.unwrap();
    raft
}

#[tokio::test]
async fn single_voter_applies_in_order_and_replays_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let first = Recorder::default();
    let raft = start(dir.path(), first.clone(), 0).await;

    // Concurrent proposals are all applied, each exactly once, each answered with its index.
    let mut tasks = Vec::new();
    for i in 0..50u32 {
        let raft = raft.clone();
        tasks.push(tokio::spawn(async move {
            raft.propose(i.to_be_bytes().to_vec()).await
        }));
    }
    let mut indexes = Vec::new();
    for t in tasks {
        indexes.push(t.await.unwrap().unwrap());
    }
    indexes.sort();
    let applied = first.0.lock().unwrap().clone();
    assert_eq!(applied.len(), 50);
    assert_eq!(indexes, applied.iter().map(|(i, _)| *i).collect::<Vec<_>>());
    raft.shutdown();
    assert!(matches!(
        raft.propose(b"late".to_vec()).await,
        Err(ProposeError::ShuttingDown)
    ));

    // The same log rebuilds the same state.
    let second = Recorder::default();
    let raft = start(dir.path(), second.clone(), 0).await;
    assert_eq!(*second.0.lock().unwrap(), applied);
    let next = raft.propose(b"next".to_vec()).await.unwrap();
    assert!(next > *indexes.last().unwrap());
    raft.shutdown();
}

#[tokio::test]
async fn snapshots_compact_the_log_and_restarts_start_from_them() {
    let dir = tempfile::tempdir().unwrap();
    let first = Recorder::default();
    let raft = start(dir.path(), first.clone(), 10).await;
    for i in 0..35u32 {
        raft.propose(i.to_be_bytes().to_vec()).await.unwrap();
    }
    let applied = first.0.lock().unwrap().clone();
    raft.shutdown();
    // A snapshot still being saved when the node shut down finishes on its thread (and then
    // removes the older one): on a loaded machine that can be a moment after `shutdown`.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let snapshots = loop {
        let names: Vec<_> = std::fs::read_dir(dir.path().join("raft.snapshots"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        if names.len() == 1 || std::time::Instant::now() > deadline {
            break names;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert_eq!(snapshots.len(), 1, "one snapshot is kept: {snapshots:?}");

    // Restarted: the state comes back from the snapshot plus the log after it.
    let second = Recorder::default();
    let raft = start(dir.path(), second.clone(), 10).await;
    assert_eq!(*second.0.lock().unwrap(), applied);
    raft.shutdown();

    // A corrupt snapshot is refused, with what to do.
    let path = std::fs::read_dir(dir.path().join("raft.snapshots"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[20] ^= 0xff;
    std::fs::write(&path, bytes).unwrap();
    let config = RaftConfig::new(1, dir.path().join("raft.redb"), vec![1]);
    let err = Raft::start(config, Recorder::default(), NoPeers)
        .err()
        .expect("a corrupt snapshot must stop the start");
    let text = vmcloud_proto::ErrorChain(&err).to_string();
    assert!(
        text.contains("is corrupt") && text.contains("wipe its data dir"),
        "{text}"
    );
}

#[tokio::test]
async fn a_retried_request_is_applied_once_even_across_snapshots() {
    let dir = tempfile::tempdir().unwrap();
    let log = Recorder::default();
    let raft = start(dir.path(), log.clone(), 3).await;
    let id = [42u8; 16];
    let index = raft.propose_once(id, b"pay 10".to_vec()).await.unwrap();
    assert_eq!(
        raft.propose_once(id, b"pay 10".to_vec()).await,
        Err(ProposeError::AlreadyApplied { index })
    );
    // Enough other entries for a snapshot or two: the table of ids goes into them.
    for i in 0..10u32 {
        raft.propose_once([i as u8; 16], i.to_be_bytes().to_vec())
            .await
            .unwrap();
    }
    raft.shutdown();
    let again = Recorder::default();
    let raft = start(dir.path(), again.clone(), 3).await;
    assert_eq!(
        raft.propose_once(id, b"pay 10".to_vec()).await,
        Err(ProposeError::AlreadyApplied { index })
    );
    let paid = again
        .0
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, d)| d == b"pay 10")
        .count();
    assert_eq!(paid, 1);
    raft.shutdown();
}

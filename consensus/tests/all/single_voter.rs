//! A single-voter group: becomes leader at once, applies in order, replays after restart.

use std::sync::{Arc, Mutex};

use vmcloud_consensus::{NoPeers, ProposeError, Raft, RaftConfig, StateMachine};

/// A register log: remembers every applied command, returns its position.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<Vec<u8>>>>);

impl StateMachine for Recorder {
    type Output = usize;
    fn apply(&mut self, _index: u64, data: &[u8]) -> usize {
        let mut log = self.0.lock().unwrap();
        log.push(data.to_vec());
        log.len()
    }
}

async fn start(dir: &std::path::Path, sm: Recorder) -> Raft<usize> {
    let config = RaftConfig::new(1, dir.join("raft.redb"), vec![1]);
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
    let raft = start(dir.path(), first.clone()).await;

    // Concurrent proposals are all applied, each exactly once.
    let mut tasks = Vec::new();
    for i in 0..50u32 {
        let raft = raft.clone();
        tasks.push(tokio::spawn(async move {
            raft.propose(i.to_be_bytes().to_vec()).await
        }));
    }
    let mut positions = Vec::new();
    for t in tasks {
        positions.push(t.await.unwrap().unwrap());
    }
    positions.sort();
    assert_eq!(positions, (1..=50).collect::<Vec<_>>());
    let applied = first.0.lock().unwrap().clone();
    raft.shutdown();
    assert!(matches!(
        raft.propose(b"late".to_vec()).await,
        Err(ProposeError::ShuttingDown)
    ));

    // The same log rebuilds the same state.
    let second = Recorder::default();
    let raft = start(dir.path(), second.clone()).await;
    assert_eq!(*second.0.lock().unwrap(), applied);
    assert_eq!(raft.propose(b"next".to_vec()).await.unwrap(), 51);
    raft.shutdown();
}

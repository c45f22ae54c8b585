//! A cluster of real replicas in one process, over a [`MemNetwork`], with a recording state
//! machine, plus the checks every test makes: one log, in the same order, on every replica.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use vmcloud_consensus::{Faults, MemNetwork, ProposeError, Raft, RaftConfig, StateMachine};

/// Applied entries, in order: `(log index, data)`.
pub type AppliedLog = Vec<(u64, Vec<u8>)>;

/// Remembers every applied command with its log index; answers with the index. What it
/// sends a peer carries a trailer its own snapshots lack (as the scheduler adds its history):
/// `peer_snapshots` counts the snapshots restored with it.
#[derive(Clone, Default)]
pub struct Recorder(
    pub Arc<Mutex<AppliedLog>>,
    pub Arc<std::sync::atomic::AtomicUsize>,
);

/// Marks a snapshot as made for a peer (see [`Recorder`]).
const SENT_TO_A_PEER: &[u8] = b"sent to a peer";

impl StateMachine for Recorder {
    type Output = u64;
    fn apply(&mut self, index: u64, data: &[u8]) -> u64 {
        self.0.lock().unwrap().push((index, data.to_vec()));
        index
    }

    /// `(index u64 LE, length u32 LE, bytes)` per entry.
    fn snapshot(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for (index, data) in self.0.lock().unwrap().iter() {
            out.extend_from_slice(&index.to_le_bytes());
            out.extend_from_slice(&(data.len() as u32).to_le_bytes());
            out.extend_from_slice(data);
        }
        out
    }

    fn outgoing_snapshot(&self) -> Option<vmcloud_consensus::OutgoingSnapshotFn> {
        Some(Arc::new(|_, state: &[u8]| {
            // A snapshot installed from a peer is passed on as it came.
            if state.ends_with(SENT_TO_A_PEER) {
                return Ok(state.to_vec());
            }
            Ok([state, SENT_TO_A_PEER].concat())
        }))
    }

    fn restore(&mut self, mut bytes: &[u8]) -> Result<(), String> {
        if let Some(state) = bytes.strip_suffix(SENT_TO_A_PEER) {
            bytes = state;
            self.1.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        let mut log = Vec::new();
        while !bytes.is_empty() {
            let (head, rest) = bytes.split_at_checked(12).ok_or("truncated")?;
            let index = u64::from_le_bytes(head[..8].try_into().unwrap());
            let len = u32::from_le_bytes(head[8..].try_into().unwrap()) as usize;
            let (data, rest) = rest.split_at_checked(len).ok_or("truncated")?;
            log.push((index, data.to_vec()));
            bytes = rest;
        }
        *self.0.lock().unwrap() = log;
        Ok(())
    }
}

pub struct Replica {
    pub raft: Raft<u64>,
    pub applied: Recorder,
}

pub struct Cluster {
    pub net: MemNetwork,
    pub ids: Vec<u64>,
    pub replicas: BTreeMap<u64, Replica>,
    dir: tempfile::TempDir,
    /// How long a proposal or read waits (short, so that tests of faults run fast).
    propose_timeout: Duration,
}

pub const TICK: Duration = Duration::from_millis(10);

impl Cluster {
    pub fn start(n: u64, seed: u64, faults: Faults) -> Cluster {
        Self::start_waiting(n, seed, faults, Duration::from_millis(500))
    }

    /// Like [`Cluster::start`], with proposals and reads that wait `propose_timeout`.
    pub fn start_waiting(n: u64, seed: u64, faults: Faults, propose_timeout: Duration) -> Cluster {
        let ids: Vec<u64> = (1..=n).collect();
        let mut cluster = Cluster {
            net: MemNetwork::new(seed, faults),
            ids: ids.clone(),
            replicas: BTreeMap::new(),
            dir: tempfile::tempdir().unwrap(),
            propose_timeout,
        };
        for id in ids {
            cluster.start_replica(id);
        }
        cluster
    }

    /// Starts (or restarts, from its log on disk) replica `id`.
    pub fn start_replica(&mut self, id: u64) {
        let voters = self.ids.clone();
        self.start_with(id, voters);
    }

    /// Starts a brand-new replica that is not in the group yet: it waits, with an empty log,
    /// for the leader to add it and send it a snapshot.
    pub fn start_joining(&mut self, id: u64) {
        if !self.ids.contains(&id) {
            self.ids.push(id);
        }
        self.start_with(id, Vec::new());
    }

    fn start_with(&mut self, id: u64, voters: Vec<u64>) {
        assert!(
            !self.replicas.contains_key(&id),
            "replica {id} is already running"
        );
        let mut config =
            RaftConfig::new(id, self.dir.path().join(format!("raft-{id}.redb")), voters);
        config.tick = TICK;
        config.election_ticks = 10;
        config.max_election_ticks = 20;
        config.heartbeat_ticks = 2;
        config.propose_timeout = self.propose_timeout;
        // Snapshot often, so compaction, snapshot transfer and restore run in every test.
        config.snapshot_every = 7;
        let applied = Recorder::default();
        let raft = Raft::start(config, applied.clone(), self.net.transport(id)).unwrap();
        let inbox = raft.clone();
        self.net.register(id, move |m| inbox.step(m));
        self.replicas.insert(id, Replica { raft, applied });
    }

    /// Stops replica `id` as a crash would, from the network's point of view: messages to it
    /// are lost; what it had persisted stays on disk.
    pub async fn crash(&mut self, id: u64) {
        self.net.unregister(id);
        let replica = self.replicas.remove(&id).expect("replica is running");
        tokio::task::spawn_blocking(move || replica.raft.shutdown())
            .await
            .unwrap();
    }

    pub fn snapshot_dir(&self, id: u64) -> std::path::PathBuf {
        self.dir.path().join(format!("raft-{id}.snapshots"))
    }

    pub fn live(&self) -> Vec<u64> {
        self.replicas.keys().copied().collect()
    }

    /// The replica that says it leads at the highest term, once there is one.
    pub async fn leader(&self, within: Duration) -> u64 {
        match self.try_leader(within).await {
            Some(id) => id,
            None => panic!(
                "no leader within {within:?}; live replicas: {:?}",
                self.statuses()
            ),
        }
    }

    /// Like [`Cluster::leader`], but `None` when there is none within `within`.
    pub async fn try_leader(&self, within: Duration) -> Option<u64> {
        let deadline = Instant::now() + within;
        loop {
            let best = self
                .replicas
                .iter()
                .map(|(id, r)| (*id, r.raft.status().borrow().clone()))
                .filter(|(_, s)| s.is_leader)
                .max_by_key(|(_, s)| s.term);
            if let Some((id, _)) = best {
                return Some(id);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(TICK).await;
        }
    }

    fn statuses(&self) -> Vec<vmcloud_consensus::RaftStatus> {
        self.replicas
            .values()
            .map(|r| r.raft.status().borrow().clone())
            .collect()
    }

    pub async fn propose(&self, via: u64, data: &[u8]) -> Result<u64, ProposeError> {
        self.replicas[&via].raft.propose(data.to_vec()).await
    }

    /// Proposes through `via`, retrying through the current leader until acknowledged.
    pub async fn propose_until_acked(&self, via: u64, data: &[u8], within: Duration) -> u64 {
        let deadline = Instant::now() + within;
        let mut target = via;
        loop {
            match self.propose(target, data).await {
                Ok(index) => return index,
                Err(e) => {
                    assert!(
                        Instant::now() < deadline,
                        "proposal not acknowledged within {within:?}: {e}"
                    );
                    tokio::time::sleep(TICK).await;
                    target = self
                        .leader(deadline.saturating_duration_since(Instant::now()))
                        .await;
                }
            }
        }
    }

    pub fn applied(&self, id: u64) -> AppliedLog {
        self.replicas[&id].applied.0.lock().unwrap().clone()
    }

    /// Every live replica's applied log is a prefix of the longest one: same entries at the
    /// same indexes, in the same order.
    pub fn check_prefix_consistent(&self) {
        let logs: Vec<(u64, AppliedLog)> = self
            .live()
            .into_iter()
            .map(|id| (id, self.applied(id)))
            .collect();
        let (longest_id, longest) = logs.iter().max_by_key(|(_, l)| l.len()).cloned().unwrap();
        for (id, log) in &logs {
            for (i, entry) in log.iter().enumerate() {
                assert_eq!(
                    Some(entry),
                    longest.get(i),
                    "replica {id} applied {entry:?} as its #{i}, replica {longest_id} applied {:?}",
                    longest.get(i)
                );
            }
            assert!(
                log.windows(2).all(|w| w[0].0 < w[1].0),
                "replica {id} applied out of index order"
            );
        }
    }

    /// Waits until every live replica has applied the same number of entries (and at least
    /// `min`), then checks they agree.
    pub async fn wait_converged(&self, min: usize, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let lens: Vec<usize> = self
                .live()
                .into_iter()
                .map(|id| self.applied(id).len())
                .collect();
            if lens.iter().all(|&l| l == lens[0] && l >= min) {
                self.check_prefix_consistent();
                return;
            }
            assert!(
                Instant::now() < deadline,
                "replicas did not converge within {within:?}: applied {lens:?}, want ≥ {min}"
            );
            tokio::time::sleep(TICK).await;
        }
    }

    pub async fn shutdown(mut self) {
        for id in self.live() {
            self.crash(id).await;
        }
    }
}

/// Prints the seed if the test panics, so the failure can be replayed.
pub struct SeedGuard(pub u64, pub &'static str);

impl Drop for SeedGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "{} failed with seed {}; replay with VMCLOUD_RAFT_SEED={}",
                self.1, self.0, self.0
            );
        }
    }
}

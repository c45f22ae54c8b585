//! Linearizability of writes and ReadIndex reads under faults, checked by the register checker
//! in `vmcloud-tests` — and proof that the checker catches a replica that answers reads from
//! its local state while partitioned.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use vmcloud_consensus::{Faults, MemNetwork, ProposeError, Raft, RaftConfig, StateMachine};
use vmcloud_tests::linearizability::{Op, Operation, check};

use crate::harness::{SeedGuard, TICK};

/// A key-value store of registers; commands are `key=value`.
#[derive(Clone, Default)]
struct Kv(Arc<Mutex<HashMap<String, u64>>>);

impl StateMachine for Kv {
    type Output = ();
    fn apply(&mut self, _index: u64, data: &[u8]) {
        let text = std::str::from_utf8(data).unwrap();
        let (key, value) = text.split_once('=').unwrap();
        self.0
            .lock()
            .unwrap()
            .insert(key.to_owned(), value.parse().unwrap());
    }

    fn snapshot(&self) -> Vec<u8> {
        let map = self.0.lock().unwrap();
        map.iter()
            .map(|(k, v)| format!("{k}={v}\n"))
            .collect::<String>()
            .into_bytes()
    }

    fn restore(&mut self, data: &[u8]) -> Result<(), String> {
        let text = std::str::from_utf8(data).map_err(|e| e.to_string())?;
        let mut map = HashMap::new();
        for line in text.lines() {
            let (k, v) = line.split_once('=').ok_or("no `=`")?;
            map.insert(k.to_owned(), v.parse().map_err(|_| "bad value")?);
        }
        *self.0.lock().unwrap() = map;
        Ok(())
    }
}

struct KvCluster {
    net: MemNetwork,
    ids: Vec<u64>,
    replicas: HashMap<u64, (Raft<()>, Kv)>,
    _dir: tempfile::TempDir,
}

impl KvCluster {
    fn start(n: u64, seed: u64, faults: Faults) -> KvCluster {
        let dir = tempfile::tempdir().unwrap();
        let net = MemNetwork::new(seed, faults);
        let ids: Vec<u64> = (1..=n).collect();
        let mut replicas = HashMap::new();
        for &id in &ids {
            let mut config =
                RaftConfig::new(id, dir.path().join(format!("raft-{id}.redb")), ids.clone());
            config.tick = TICK;
            config.election_ticks = 10;
            config.max_election_ticks = 20;
            config.heartbeat_ticks = 2;
            config.propose_timeout = Duration::from_millis(500);
            let kv = Kv::default();
            let raft = Raft::start(config, kv.clone(), net.transport(id)).unwrap();
            let inbox = raft.clone();
            net.register(id, move |m| inbox.step(m));
            replicas.insert(id, (raft, kv));
        }
        KvCluster {
            net,
            ids,
            replicas,
            _dir: dir,
        }
    }

    async fn write(&self, via: u64, key: &str, value: u64) -> Result<(), ProposeError> {
        self.replicas[&via]
            .0
            .propose(format!("{key}={value}").into_bytes())
            .await
    }

    /// A linearizable read: ReadIndex, then this replica's state.
    async fn read(&self, via: u64, key: &str) -> Result<Option<u64>, ProposeError> {
        let (raft, kv) = &self.replicas[&via];
        raft.read_barrier().await?;
        Ok(kv.0.lock().unwrap().get(key).copied())
    }

    /// The broken read: this replica's state, without asking anyone.
    fn local_read(&self, via: u64, key: &str) -> Option<u64> {
        self.replicas[&via].1.0.lock().unwrap().get(key).copied()
    }

    async fn leader(&self) -> u64 {
        for _ in 0..1000 {
            if let Some(id) = self
                .ids
                .iter()
                .copied()
                .find(|id| self.replicas[id].0.status().borrow().is_leader)
            {
                return id;
            }
            tokio::time::sleep(TICK).await;
        }
        panic!("no leader");
    }

    async fn shutdown(self) {
        for (_, (raft, _)) in self.replicas {
            tokio::task::spawn_blocking(move || raft.shutdown())
                .await
                .unwrap();
        }
    }
}

type History = Arc<Mutex<Vec<Operation>>>;

async fn client(
    cluster: Arc<KvCluster>,
    history: History,
    client: usize,
    seed: u64,
    start: Instant,
    ops: usize,
) {
    let mut rng = StdRng::seed_from_u64(seed);
    let keys = ["a", "b", "c"];
    for i in 0..ops {
        let key = keys[rng.random_range(0..keys.len())];
        let via = cluster.ids[rng.random_range(0..cluster.ids.len())];
        let call = start.elapsed().as_nanos() as u64;
        if rng.random_bool(0.5) {
            // Values are unique per history: client * 1e6 + i.
            let value = client as u64 * 1_000_000 + i as u64;
            let result = cluster.write(via, key, value).await;
            let ret = start.elapsed().as_nanos() as u64;
            let ret = match result {
                Ok(()) => Some(ret),
                // Refused before it was appended anywhere: it did not happen.
                Err(
                    ProposeError::NotLeader { .. }
                    | ProposeError::Dropped(_)
                    | ProposeError::Membership(_)
                    | ProposeError::AlreadyApplied { .. },
                ) => continue,
                // It may or may not have been committed.
                Err(
                    ProposeError::Timeout(_)
                    | ProposeError::ShuttingDown
                    | ProposeError::Unknown(_),
                ) => None,
            };
            history.lock().unwrap().push(Operation {
                client,
                key: key.into(),
                op: Op::Write(value),
                call,
                ret,
            });
        } else if let Ok(seen) = cluster.read(via, key).await {
            let ret = start.elapsed().as_nanos() as u64;
            history.lock().unwrap().push(Operation {
                client,
                key: key.into(),
                op: Op::Read(seen),
                call,
                ret: Some(ret),
            });
        }
    }
}

async fn run_seed(seed: u64) {
    let _guard = SeedGuard(seed, "linearizable_reads_and_writes");
    let mut rng = StdRng::seed_from_u64(seed);
    let faults = Faults {
        drop: rng.random_range(0.0..0.1),
        duplicate: rng.random_range(0.0..0.1),
        max_delay: Duration::from_millis(rng.random_range(0..10)),
    };
    let cluster = Arc::new(KvCluster::start(
        if seed.is_multiple_of(2) { 3 } else { 5 },
        seed,
        faults,
    ));
    cluster.leader().await;
    let history: History = Arc::default();
    let start = Instant::now();
    let clients: Vec<_> = (0..4)
        .map(|c| {
            tokio::spawn(client(
                cluster.clone(),
                history.clone(),
                c,
                seed * 100 + c as u64,
                start,
                25,
            ))
        })
        .collect();
    // Partitions come and go while the clients run.
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(rng.random_range(50..250))).await;
        let ids = &cluster.ids;
        let minority: Vec<u64> = ids
            .iter()
            .copied()
            .filter(|_| rng.random_bool(0.4))
            .take((ids.len() - 1) / 2)
            .collect();
        let rest: Vec<u64> = ids
            .iter()
            .copied()
            .filter(|id| !minority.contains(id))
            .collect();
        cluster.net.partition(&minority, &rest);
        tokio::time::sleep(Duration::from_millis(rng.random_range(50..250))).await;
        cluster.net.heal();
    }
    for c in clients {
        c.await.unwrap();
    }
    // Healed: a read of each key through each replica until one completes, so that the
    // history always has reads to check (on a loaded machine every read made during the
    // faults may time out). They are operations like the others, checked with them.
    let deadline = Instant::now() + Duration::from_secs(10);
    for key in ["a", "b", "c"] {
        'key: while Instant::now() < deadline {
            for &via in &cluster.ids {
                let call = start.elapsed().as_nanos() as u64;
                if let Ok(seen) = cluster.read(via, key).await {
                    let ret = start.elapsed().as_nanos() as u64;
                    history.lock().unwrap().push(Operation {
                        client: 4,
                        key: key.into(),
                        op: Op::Read(seen),
                        call,
                        ret: Some(ret),
                    });
                    break 'key;
                }
            }
        }
    }
    let history = history.lock().unwrap().clone();
    let reads = history
        .iter()
        .filter(|o| matches!(o.op, Op::Read(_)))
        .count();
    assert!(reads > 0, "seed {seed}: no read completed");
    if let Err(violation) = check(&history) {
        panic!("seed {seed}: {violation}");
    }
    Arc::try_unwrap(cluster)
        .ok()
        .expect("clients are done")
        .shutdown()
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linearizable_reads_and_writes_under_faults() {
    let seeds: Vec<u64> = match std::env::var("VMCLOUD_RAFT_SEED") {
        Ok(s) => vec![s.parse().unwrap()],
        Err(_) => (0..std::env::var("VMCLOUD_LIN_SEEDS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(24))
            .collect(),
    };
    println!("linearizable_reads_and_writes: {} seeds", seeds.len());
    for batch in seeds.chunks(8) {
        let runs: Vec<_> = batch.iter().map(|&s| tokio::spawn(run_seed(s))).collect();
        for (seed, run) in batch.iter().zip(runs) {
            if let Err(e) = run.await {
                panic!("seed {seed} failed (replay with VMCLOUD_RAFT_SEED={seed}): {e}");
            }
        }
    }
}

/// The checker can fail: reads answered from a partitioned leader's local state are caught,
/// and the ReadIndex read on the same replica does not answer at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checker_catches_reads_served_by_a_partitioned_leader() {
    let cluster = KvCluster::start(3, 7, Faults::default());
    let old = cluster.leader().await;
    let start = Instant::now();
    let now = || start.elapsed().as_nanos() as u64;
    let mut history = Vec::new();

    let call = now();
    cluster.write(old, "x", 1).await.unwrap();
    history.push(Operation {
        client: 0,
        key: "x".into(),
        op: Op::Write(1),
        call,
        ret: Some(now()),
    });

    cluster.net.isolate(old, &cluster.ids);
    let mut new = None;
    for _ in 0..500 {
        new = cluster
            .ids
            .iter()
            .copied()
            .find(|&id| id != old && cluster.replicas[&id].0.status().borrow().is_leader);
        if new.is_some() {
            break;
        }
        tokio::time::sleep(TICK).await;
    }
    let new = new.expect("the majority elects a new leader");
    let call = now();
    cluster.write(new, "x", 2).await.unwrap();
    history.push(Operation {
        client: 1,
        key: "x".into(),
        op: Op::Write(2),
        call,
        ret: Some(now()),
    });

    // The correct read on the deposed leader cannot be answered.
    assert!(
        cluster.read(old, "x").await.is_err(),
        "a partitioned leader answered a ReadIndex read"
    );

    // The broken read answers, with the old value, after the new write was acknowledged.
    let call = now();
    let seen = cluster.local_read(old, "x");
    history.push(Operation {
        client: 2,
        key: "x".into(),
        op: Op::Read(seen),
        call,
        ret: Some(now()),
    });
    assert_eq!(seen, Some(1));
    let violation = check(&history).expect_err("the checker must reject a stale read");
    assert_eq!(violation.key, "x");

    // And the same read through the new leader is fine.
    let call = now();
    let seen = cluster.read(new, "x").await.unwrap();
    let mut good = history[..2].to_vec();
    good.push(Operation {
        client: 2,
        key: "x".into(),
        op: Op::Read(seen),
        call,
        ret: Some(now()),
    });
    check(&good).unwrap();
    cluster.net.heal();
    cluster.shutdown().await;
}

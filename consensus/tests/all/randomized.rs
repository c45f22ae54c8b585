//! Randomized fault runs: message loss, duplication, delay (reordering), partitions and
//! crashes, driven by a seed. Every acknowledged write must end up applied on every replica,
//! and all replicas must apply the same log.
//!
//! `VMCLOUD_RAFT_SEEDS=N` runs seeds 0..N (default 200); `VMCLOUD_RAFT_SEED=S` replays one.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use vmcloud_consensus::{Faults, ProposeError};

use crate::harness::{Cluster, SeedGuard};

const WRITES: u32 = 20;

async fn run_seed(seed: u64) {
    let _guard = SeedGuard(seed, "randomized_faults");
    let mut rng = StdRng::seed_from_u64(seed);
    let n = if rng.random_bool(0.5) { 3 } else { 5 };
    let faults = Faults {
        drop: rng.random_range(0.0..0.15),
        duplicate: rng.random_range(0.0..0.1),
        max_delay: Duration::from_millis(rng.random_range(0..15)),
    };
    let mut cluster = Cluster::start(n, seed, faults);
    let mut acked = Vec::new();
    let mut crashed: Vec<u64> = Vec::new();
    for i in 0..WRITES {
        // Now and then, change the weather.
        if rng.random_bool(0.25) {
            match rng.random_range(0..5) {
                0 => {
                    let minority: Vec<u64> = cluster
                        .ids
                        .iter()
                        .copied()
                        .filter(|_| rng.random_bool(0.3))
                        .take((n as usize - 1) / 2)
                        .collect();
                    let rest: Vec<u64> = cluster
                        .ids
                        .iter()
                        .copied()
                        .filter(|id| !minority.contains(id))
                        .collect();
                    cluster.net.partition(&minority, &rest);
                }
                1 => {
                    let a = rng.random_range(1..=n);
                    let b = rng.random_range(1..=n);
                    if a != b {
                        cluster.net.cut(a, b);
                    }
                }
                2 if crashed.len() < (n as usize - 1) / 2 => {
                    let live = cluster.live();
                    let victim = live[rng.random_range(0..live.len())];
                    cluster.crash(victim).await;
                    crashed.push(victim);
                }
                3 if !crashed.is_empty() => {
                    let back = crashed.remove(rng.random_range(0..crashed.len()));
                    cluster.start_replica(back);
                }
                _ => cluster.net.heal(),
            }
        }
        let data = format!("w{i}").into_bytes();
        let request: [u8; 16] = rng.random();
        let live = cluster.live();
        let via = live[rng.random_range(0..live.len())];
        // Writes that cannot be acknowledged within a short while (partitioned) are abandoned:
        // they may or may not be applied, but must never be applied twice or out of place.
        let healed_at = if rng.random_bool(0.5) { 0 } else { 3 };
        let mut done = false;
        for attempt in 0..6 {
            if attempt == healed_at {
                cluster.net.heal();
            }
            let target = if attempt == 0 {
                via
            } else {
                match cluster.try_leader(Duration::from_millis(500)).await {
                    Some(leader) => leader,
                    None => continue,
                }
            };
            // Every try carries the same request id: however many reach the log, one applies.
            match cluster.replicas[&target]
                .raft
                .propose_once(request, data.clone())
                .await
            {
                Ok(index) | Err(ProposeError::AlreadyApplied { index }) => {
                    acked.push((index, data.clone()));
                    done = true;
                    break;
                }
                Err(_) => {}
            }
        }
        if !done {
            cluster.net.heal();
        }
    }
    // Calm weather: everyone back, no faults; the logs must converge.
    cluster.net.heal();
    cluster.net.set_faults(Faults::default());
    for id in crashed {
        cluster.start_replica(id);
    }
    let leader = cluster.leader(Duration::from_secs(10)).await;
    cluster
        .propose_until_acked(leader, b"final", Duration::from_secs(10))
        .await;
    cluster
        .wait_converged(acked.len() + 1, Duration::from_secs(15))
        .await;
    let log = cluster.applied(leader);
    let mut seen = std::collections::HashSet::new();
    for (_, data) in &log {
        assert!(
            seen.insert(data.clone()),
            "seed {seed}: {:?} was applied twice",
            String::from_utf8_lossy(data)
        );
    }
    for (index, data) in &acked {
        assert!(
            log.contains(&(*index, data.clone())),
            "seed {seed}: acknowledged write {:?} at index {index} is not in the log",
            String::from_utf8_lossy(data)
        );
    }
    cluster.shutdown().await;
}

fn seeds() -> Vec<u64> {
    if let Ok(seed) = std::env::var("VMCLOUD_RAFT_SEED") {
        return vec![seed.parse().expect("VMCLOUD_RAFT_SEED is a number")];
    }
    let n: u64 = std::env::var("VMCLOUD_RAFT_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    (0..n).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn randomized_faults_keep_one_log() {
    let seeds = seeds();
    println!(
        "randomized_faults: {} seeds ({}..={})",
        seeds.len(),
        seeds[0],
        seeds[seeds.len() - 1]
    );
    // Clusters mostly wait on timers: 25 at a time keeps the run short on two cores.
    for batch in seeds.chunks(25) {
        let runs: Vec<_> = batch.iter().map(|&s| tokio::spawn(run_seed(s))).collect();
        for (seed, run) in batch.iter().zip(runs) {
            if let Err(e) = run.await {
                panic!("seed {seed} failed (replay with VMCLOUD_RAFT_SEED={seed}): {e}");
            }
        }
    }
}

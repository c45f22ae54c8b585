//! Crash durability with real processes: three `vmcloud scheduler` replicas over QUIC on
//! loopback, clients creating instances through any replica, and `kill -9` of random replicas
//! — sometimes all of them — round after round. Every acknowledged create must be there
//! afterwards, on every replica.
//!
//! `VMCLOUD_CRASH_ROUNDS` (default 50) sets the rounds — the soak command is
//! `VMCLOUD_CRASH_ROUNDS=1000 cargo test -p vmcloud-tests --test all crash` — and
//! `VMCLOUD_CRASH_SEED` replays a run.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use vmcloud_tests::cluster::{SchedulerCluster, TEST_API_KEY};

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// Every instance the replica at `api` lists, following the pages.
async fn list(client: &reqwest::Client, api: &str) -> Option<BTreeSet<String>> {
    let mut all = BTreeSet::new();
    let mut cursor: Option<String> = None;
    loop {
        let url = match &cursor {
            Some(c) => format!("{api}/v1/instances?limit=1000&cursor={c}"),
            None => format!("{api}/v1/instances?limit=1000"),
        };
        let resp = client
            .get(url)
            .bearer_auth(TEST_API_KEY)
            .send()
            .await
            .ok()?;
        let body: Value = resp.json().await.ok()?;
        all.extend(
            body["instances"]
                .as_array()?
                .iter()
                .filter_map(|i| i["id"].as_str().map(str::to_owned)),
        );
        match body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return Some(all),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_kill_9_of_any_and_all_replicas() {
    let seed = env_u64("VMCLOUD_CRASH_SEED").unwrap_or_else(rand::random);
    let rounds = env_u64("VMCLOUD_CRASH_ROUNDS").unwrap_or(50);
    println!("crash test: seed {seed} (replay with VMCLOUD_CRASH_SEED={seed}), {rounds} rounds");
    let mut rng = StdRng::seed_from_u64(seed);
    let mut cluster = SchedulerCluster::new(3);
    let n = cluster.len();
    for i in 0..n {
        cluster.start(i);
    }
    for i in 0..n {
        cluster.wait_ready(i, Duration::from_secs(60));
    }
    let apis: Vec<String> = (0..n).map(|i| cluster.api(i)).collect();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .build()
        .unwrap();

    // Two writers, each creating instances through random replicas, dead or alive.
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let attempts = Arc::new(Mutex::new(0u64));
    let writers: Vec<_> = (0..2)
        .map(|w| {
            let (client, apis, acked, stop, attempts) = (
                client.clone(),
                apis.clone(),
                acked.clone(),
                stop.clone(),
                attempts.clone(),
            );
            let mut rng = StdRng::seed_from_u64(seed ^ (w + 1));
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let api = &apis[rng.random_range(0..apis.len())];
                    *attempts.lock().unwrap() += 1;
                    let sent = client
                        .post(format!("{api}/v1/instances"))
                        .bearer_auth(TEST_API_KEY)
                        .json(&json!({"flavor": "vps-s", "image": "debian-12", "region": "fra"}))
                        .send()
                        .await;
                    if let Ok(resp) = sent
                        && resp.status().as_u16() == 201
                        && let Ok(body) = resp.json::<Value>().await
                        && let Some(id) = body["id"].as_str()
                    {
                        acked.lock().unwrap().push(id.to_owned());
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    } else {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            })
        })
        .collect();

    let started = Instant::now();
    let mut kills = 0;
    let mut all_down = 0;
    for round in 0..rounds {
        let round_started = Instant::now();
        tokio::time::sleep(Duration::from_millis(rng.random_range(100..400))).await;
        let victims: Vec<usize> = if rng.random_bool(0.15) {
            all_down += 1;
            (0..n).collect()
        } else {
            vec![rng.random_range(0..n)]
        };
        for &v in &victims {
            cluster.kill9(v);
            kills += 1;
        }
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..200))).await;
        for &v in &victims {
            cluster.start(v);
        }
        for &v in &victims {
            cluster.wait_ready(v, Duration::from_secs(60));
        }
        if std::env::var_os("VMCLOUD_CRASH_VERBOSE").is_some() {
            println!(
                "round {round}: killed {victims:?}, back in {:.2} s",
                round_started.elapsed().as_secs_f64()
            );
        }
    }
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await.unwrap();
    }
    let acked: Vec<String> = acked.lock().unwrap().clone();
    let attempts = *attempts.lock().unwrap();
    println!(
        "{rounds} rounds in {:.1} s: {kills} kills ({all_down} with every replica down), {} of {attempts} creates acknowledged",
        started.elapsed().as_secs_f64(),
        acked.len()
    );
    assert!(
        acked.len() as u64 >= rounds,
        "too few writes were acknowledged to prove anything"
    );

    // Every replica converges on the same instances, and every acknowledged one is there.
    let deadline = Instant::now() + Duration::from_secs(30);
    let sets = loop {
        let mut sets = Vec::new();
        for api in &apis {
            sets.push(list(&client, api).await.unwrap_or_default());
        }
        if sets.iter().all(|s| *s == sets[0]) && acked.iter().all(|id| sets[0].contains(id)) {
            break sets;
        }
        if Instant::now() > deadline {
            let missing: Vec<&String> = acked.iter().filter(|id| !sets[0].contains(*id)).collect();
            panic!(
                "seed {seed}: replicas hold {:?} instances; {} acknowledged creates missing on replica 1: {missing:?}",
                sets.iter().map(BTreeSet::len).collect::<Vec<_>>(),
                missing.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(sets[0].len() >= acked.len());
}

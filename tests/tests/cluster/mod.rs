//! A three-replica `vmcloud scheduler` cluster run by hand: `vmcloud cluster status` and
//! `transfer-leader`, writes through followers, metrics on every replica.

mod partition;

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use vmcloud_tests::cluster::{SchedulerCluster, TEST_API_KEY, http_get};
use vmcloud_tests::vmcloud_bin;

fn cli(cluster: &SchedulerCluster, replica: usize, args: &[&str]) -> std::process::Output {
    Command::new(vmcloud_bin())
        .env("XDG_CONFIG_HOME", cluster.dir.path().join("cli-config"))
        .env_remove("VMCLOUD_API")
        .env_remove("VMCLOUD_TOKEN")
        .args(args)
        .args(["--api", &cluster.api(replica), "--token", TEST_API_KEY])
        .output()
        .unwrap()
}

fn status(cluster: &SchedulerCluster, replica: usize) -> Value {
    let out = cli(cluster, replica, &["cluster", "status", "-o", "json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Index (0-based) of the replica every replica agrees leads, once they do.
fn agreed_leader(cluster: &SchedulerCluster, except: Option<u64>) -> usize {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let leaders: Vec<Option<u64>> = (0..cluster.len())
            .filter(|&i| cluster.is_running(i))
            .map(|i| status(cluster, i)["leader"].as_u64())
            .collect();
        if let Some(Some(l)) = leaders.first()
            && leaders.iter().all(|x| *x == Some(*l))
            && Some(*l) != except
        {
            return *l as usize - 1;
        }
        assert!(
            Instant::now() < deadline,
            "replicas do not agree on a leader: {leaders:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn status_and_leadership_transfer_from_the_cli() {
    let mut cluster = SchedulerCluster::new(3);
    cluster.start_ready(3);
    let leader = agreed_leader(&cluster, None);
    let view = status(&cluster, leader);
    assert_eq!(view["is_leader"], true);
    assert_eq!(view["voters"], serde_json::json!([1, 2, 3]));
    let table = String::from_utf8(cli(&cluster, leader, &["cluster", "status"]).stdout).unwrap();
    assert!(
        table.contains("(leader)") && table.contains("voters:        1, 2, 3"),
        "{table}"
    );

    // A write through a follower is forwarded and lands everywhere.
    let follower = (leader + 1) % 3;
    let out = cli(
        &cluster,
        follower,
        &[
            "instance",
            "create",
            "--flavor",
            "vps-s",
            "--image",
            "debian-12",
            "--region",
            "ams",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Only the leader hands over leadership; the error says where to go.
    let out = cli(
        &cluster,
        follower,
        &[
            "cluster",
            "transfer-leader",
            "--to",
            &(follower + 1).to_string(),
        ],
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("send this to replica {}", leader + 1)),
        "{stderr}"
    );
    let out = cli(
        &cluster,
        leader,
        &["cluster", "transfer-leader", "--to", "9"],
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("9 is not a voter"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let target = follower as u64 + 1;
    let out = cli(
        &cluster,
        leader,
        &["cluster", "transfer-leader", "--to", &target.to_string()],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let new = agreed_leader(&cluster, Some(leader as u64 + 1));
    assert_eq!(
        new as u64 + 1,
        target,
        "leadership went to the replica asked for"
    );

    // Every replica serves its Raft metrics.
    for i in 0..3 {
        let (status, text) =
            http_get(&format!("{}/metrics", cluster.api(i))).expect("the metrics endpoint answers");
        assert_eq!(status, 200);
        assert!(
            text.contains("vmcloud_raft_term") && text.contains("vmcloud_raft_fsync_seconds"),
            "{text}"
        );
    }
}

fn instances_on(cluster: &SchedulerCluster, replica: usize) -> Vec<String> {
    let out = cli(cluster, replica, &["instance", "list", "-o", "json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    list["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_owned())
        .collect()
}

fn voters(cluster: &SchedulerCluster, replica: usize) -> Value {
    status(cluster, replica)["voters"].clone()
}

#[test]
fn a_replica_joins_catches_up_and_another_leaves() {
    let mut cluster = SchedulerCluster::with_spares(3, 1);
    cluster.start_ready(3);
    let leader = agreed_leader(&cluster, None);
    let out = cli(
        &cluster,
        leader,
        &[
            "instance",
            "create",
            "--flavor",
            "vps-s",
            "--image",
            "debian-12",
            "--region",
            "ams",
        ],
    );
    let first = String::from_utf8(out.stdout).unwrap().trim().to_owned();

    // Replica 4 starts empty, waits, and is added: learner, caught up, voter.
    cluster.start_joining(3);
    let address = cluster.raft_address(3).to_string();
    let out = cli(
        &cluster,
        leader,
        &["cluster", "join", "--id", "4", "--raft-address", &address],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(voters(&cluster, leader), serde_json::json!([1, 2, 3, 4]));
    cluster.wait_ready(3, Duration::from_secs(60));
    assert!(
        instances_on(&cluster, 3).contains(&first),
        "the new replica has the state from before it joined"
    );

    // Joining twice is refused; a leader cannot leave; a follower can.
    let out = cli(
        &cluster,
        leader,
        &["cluster", "join", "--id", "4", "--raft-address", &address],
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("already a voter"));
    let out = cli(
        &cluster,
        leader,
        &["cluster", "leave", "--id", &(leader + 1).to_string()],
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("hand leadership to another replica first")
    );
    let leaving = (0..3).find(|&i| i != leader).unwrap();
    let out = cli(
        &cluster,
        leader,
        &["cluster", "leave", "--id", &(leaving + 1).to_string()],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let expected: Vec<u64> = (1..=4).filter(|&id| id != leaving as u64 + 1).collect();
    assert_eq!(voters(&cluster, leader), serde_json::json!(expected));
    cluster.kill9(leaving);

    // Writes through the new replica land; after a kill -9 it comes back with everything.
    let out = cli(
        &cluster,
        3,
        &[
            "instance",
            "create",
            "--flavor",
            "vps-s",
            "--image",
            "debian-12",
            "--region",
            "ams",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let second = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    cluster.kill9(3);
    cluster.start(3);
    cluster.wait_ready(3, Duration::from_secs(60));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ids = instances_on(&cluster, 3);
        if ids.contains(&first) && ids.contains(&second) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "replica 4 lost state after a restart: {ids:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn connected(cluster: &SchedulerCluster, i: usize) -> Option<u64> {
    status(cluster, i)["connected_agents"].as_u64()
}

/// Waits until the 4 agents are attached to replica `i`.
fn wait_connected(
    cluster: &SchedulerCluster,
    i: usize,
    within: Duration,
    log: &dyn Fn() -> String,
) {
    let deadline = Instant::now() + within;
    while connected(cluster, i) != Some(4) {
        assert!(
            Instant::now() < deadline,
            "4 agents not attached to replica {} within {within:?} (it has {:?}):\n{}",
            i + 1,
            connected(cluster, i),
            log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn agents_follow_the_leader_through_a_failover() {
    let mut cluster = SchedulerCluster::new(3);
    cluster.start_ready(3);
    let leader = agreed_leader(&cluster, None);
    // A follower first: it sends the agents on to the leader.
    let mut order: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    order.push(leader);
    let gateways: Vec<String> = order
        .iter()
        .map(|&i| cluster.gateway(i).to_string())
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let mut agents = Command::new(vmcloud_bin())
        .args(["agent", "--sim", "--shape", "cpu", "--count", "4"])
        .args(["--node", "edge", "--region", "ams"])
        .args(["--scheduler", &gateways.join(",")])
        .arg("--pki-dir")
        .arg(cluster.pki_dir())
        .arg("--data-dir")
        .arg(dir.path())
        .env("RUST_LOG", "info,quinn=warn")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("agents.log")).unwrap())
        .spawn()
        .unwrap();
    let agents_log = || std::fs::read_to_string(dir.path().join("agents.log")).unwrap_or_default();
    wait_connected(&cluster, leader, Duration::from_secs(30), &agents_log);
    for &f in &order[..2] {
        assert_eq!(connected(&cluster, f), Some(0), "followers serve no agents");
        let view = status(&cluster, f);
        assert_eq!(
            view["replicas"][(leader + 1).to_string()]["gateway"],
            cluster.gateway(leader).to_string(),
            "every replica knows where the leader serves agents: {view}"
        );
    }
    assert!(
        agents_log().contains("redirected to the leader"),
        "{}",
        agents_log()
    );

    // Leadership handed over: the old leader sends its agents to the new one.
    let target = order[0];
    let out = cli(
        &cluster,
        leader,
        &[
            "cluster",
            "transfer-leader",
            "--to",
            &(target + 1).to_string(),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let leader = agreed_leader(&cluster, Some(leader as u64 + 1));
    assert_eq!(leader, target);
    wait_connected(&cluster, leader, Duration::from_secs(30), &agents_log);

    // kill -9 the leader: the agents find the new one (after their link times out).
    let killed = Instant::now();
    cluster.kill9(leader);
    let new = agreed_leader(&cluster, Some(leader as u64 + 1));
    wait_connected(&cluster, new, Duration::from_secs(40), &agents_log);
    eprintln!(
        "4 agents re-attached to replica {} {:.1} s after the leader was killed",
        new + 1,
        killed.elapsed().as_secs_f64()
    );
    let out = cli(&cluster, new, &["node", "list", "-o", "json"]);
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    let nodes = list["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 4, "{list}");
    for n in nodes {
        assert_ne!(
            n["state"], "down",
            "no node is declared down by a failover: {n}"
        );
    }
    let _ = agents.kill();
    let _ = agents.wait();
}

/// The 1,000-agent version of `vmcloud bench fleet` (the 10,000 and 65,000 runs are recorded in
/// docs/performance.md): every agent registers over QUIC + mTLS with 3 replicas, and after a
/// `kill -9` of the leader every agent re-attaches to the new one and no node is declared down.
/// The figures are printed, not asserted against budgets (benchmarks measure speed).
#[test]
fn a_thousand_agents_register_and_survive_a_leader_kill() {
    let out = Command::new(vmcloud_bin())
        .args(["bench", "fleet", "--agents", "1000", "--per-process", "500"])
        .args(["--measure", "10s", "--timeout", "180s"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}");
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let figures: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(figures["agents"], 1000);
    assert!(figures["registered_s"].as_f64().unwrap() > 0.0);
    assert!(
        figures["reattach_s"].as_f64().is_some(),
        "every agent re-attached: {figures}"
    );
    assert_eq!(figures["false_downs"], 0, "{figures}");
    assert!(figures["heartbeats_measured"].as_u64().unwrap() > 0);
}

/// `vmcloud bench failover`, short: writes through a follower go on when the leader is killed
/// and when it is paused, each applied once, and a read through the resumed old leader is
/// answered. The figures are printed, not asserted against budgets (benchmarks measure
/// speed; docs/performance.md records them).
#[test]
fn writes_through_a_follower_go_on_when_the_leader_is_killed_or_paused() {
    let out = Command::new(vmcloud_bin())
        .args(["bench", "failover", "--rounds", "2"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}");
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let figures: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert!(
        figures["api_failover_ms"].as_f64().unwrap() > 0.0,
        "{figures}"
    );
    assert_eq!(
        figures["kill9_ms"].as_array().unwrap().len(),
        1,
        "{figures}"
    );
    assert_eq!(
        figures["pause_ms"].as_array().unwrap().len(),
        1,
        "{figures}"
    );
    assert_eq!(figures["writes_missing"], 0, "{figures}");
    assert_eq!(figures["writes_duplicated"], 0, "{figures}");
    assert!(
        figures["writes_acknowledged"].as_u64().unwrap() >= 40,
        "{figures}"
    );
}

/// Clients that retry with their Idempotency-Key get exactly one object per key across a
/// `kill -9` of the leader: creates in flight when it dies (some committed, their answers
/// lost) are retried through the survivors and answered with the first result.
#[test]
fn idempotent_retries_across_a_leader_kill_make_one_object_each() {
    const ORDERS: usize = 120;
    let mut cluster = SchedulerCluster::new(3);
    cluster.start_ready(3);
    let leader = agreed_leader(&cluster, None);
    let apis: Vec<String> = (0..3).map(|i| cluster.api(i)).collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .unwrap();
    let dead = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let started = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    // Eight clients, each sending its orders to the leader first, then retrying on others.
    let workers: Vec<_> = (0..8)
        .map(|w| {
            let (client, apis, dead, started) =
                (client.clone(), apis.clone(), dead.clone(), started.clone());
            rt.spawn(async move {
                let mut retried = 0;
                for n in (w..ORDERS).step_by(8) {
                    started.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let deadline = Instant::now() + Duration::from_secs(60);
                    let mut target = leader;
                    loop {
                        let resp = client
                            .post(format!("{}/v1/instances", apis[target]))
                            .bearer_auth(TEST_API_KEY)
                            .header("Idempotency-Key", format!("order-{n}"))
                            .json(&serde_json::json!({
                                "name": format!("order-{n}"),
                                "flavor": "vps-s", "image": "debian-12", "region": "par"
                            }))
                            .send()
                            .await;
                        match resp {
                            Ok(r) if r.status().as_u16() == 201 => break,
                            Ok(r) if r.status().is_client_error() => {
                                panic!("order-{n}: {} {}", r.status(), r.text().await.unwrap())
                            }
                            _ => {
                                assert!(Instant::now() < deadline, "order-{n} never succeeded");
                                retried += 1;
                                if dead.load(std::sync::atomic::Ordering::Relaxed) {
                                    target = (target + 1) % 3;
                                    if target == leader {
                                        target = (target + 1) % 3;
                                    }
                                }
                                tokio::time::sleep(Duration::from_millis(100)).await;
                            }
                        }
                    }
                }
                retried
            })
        })
        .collect();
    while started.load(std::sync::atomic::Ordering::Relaxed) < ORDERS / 3 {
        std::thread::sleep(Duration::from_millis(5));
    }
    cluster.kill9(leader);
    dead.store(true, std::sync::atomic::Ordering::Relaxed);
    let retried: usize = rt.block_on(async {
        let mut total = 0;
        for w in workers {
            total += w.await.unwrap();
        }
        total
    });
    let survivor = (leader + 1) % 3;
    let out = cli(&cluster, survivor, &["instance", "list", "-o", "json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut names: Vec<String> = list["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    let mut unique = names.clone();
    unique.dedup();
    eprintln!(
        "{ORDERS} orders, {retried} retries after the leader was killed, {} instances",
        names.len()
    );
    assert_eq!(
        names.len(),
        unique.len(),
        "an order made two instances: {names:?}"
    );
    assert_eq!(unique.len(), ORDERS, "every order made its instance");
}

/// Webhooks across a `kill -9` of the leader: 40 instances deleted, half before the kill and
/// half after (through the survivors); the receiver — verifying every signature with the
/// Standard Webhooks reference library — sees each deletion's event, each under one
/// `webhook-id` however many times it was delivered (at least once: de-duplicate on the id).
#[test]
fn webhook_events_arrive_once_each_by_id_across_a_leader_kill() {
    const N: usize = 40;
    let Some(python) = vmcloud_tests::python_with("standardwebhooks") else {
        vmcloud_proto::testing::skip(
            "cluster::webhook_events_arrive_once_each_by_id_across_a_leader_kill",
            "no Python with standardwebhooks (scripts/test makes .venv with it)",
        );
        return;
    };
    let receiver = vmcloud_tests::WebhookReceiver::start(&python);
    let mut cluster = SchedulerCluster::new(3);
    cluster.start_ready(3);
    let leader = agreed_leader(&cluster, None);
    let url = format!("http://127.0.0.1:{}/hooks", receiver.port);
    let out = cli(
        &cluster,
        leader,
        &["webhook", "create", "--url", &url, "-o", "json"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let made: Value = serde_json::from_slice(&out.stdout).unwrap();
    std::fs::write(&receiver.secret, made["secret"].as_str().unwrap()).unwrap();
    let apis: Vec<String> = (0..3).map(|i| cluster.api(i)).collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .unwrap();
    // Pending instances (no hosts): a delete removes them at once, one event each.
    let ids: Vec<String> = rt.block_on(async {
        let mut ids = Vec::new();
        for n in 0..N {
            let r = http
                .post(format!("{}/v1/instances", apis[leader]))
                .bearer_auth(TEST_API_KEY)
                .header("Idempotency-Key", format!("vm-{n}"))
                .json(
                    &serde_json::json!({"flavor": "vps-s", "image": "debian-12", "region": "par"}),
                )
                .send()
                .await
                .unwrap();
            assert_eq!(r.status().as_u16(), 201);
            let v: Value = r.json().await.unwrap();
            ids.push(v["id"].as_str().unwrap().to_owned());
        }
        ids
    });
    let delete = |targets: Vec<usize>, ids: &[String]| {
        rt.block_on(async {
            for id in ids {
                let deadline = Instant::now() + Duration::from_secs(60);
                let mut t = 0;
                loop {
                    let r = http
                        .delete(format!(
                            "{}/v1/instances/{id}",
                            apis[targets[t % targets.len()]]
                        ))
                        .bearer_auth(TEST_API_KEY)
                        .send()
                        .await;
                    match r {
                        Ok(r) if r.status().is_success() || r.status().as_u16() == 404 => break,
                        _ => {
                            assert!(Instant::now() < deadline, "{id} was never deleted");
                            t += 1;
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                    }
                }
            }
        })
    };
    delete(vec![leader], &ids[..N / 2]);
    cluster.kill9(leader);
    let survivors: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    delete(survivors, &ids[N / 2..]);
    // Every deletion's event arrives, verified, under one id each.
    let deadline = Instant::now() + Duration::from_secs(60);
    let (by_instance, deliveries) = loop {
        let seen = receiver.seen();
        assert!(
            seen.iter().all(|e| e["ok"] == true),
            "a delivery did not verify: {seen:?}"
        );
        let mut by_instance: std::collections::BTreeMap<
            String,
            std::collections::BTreeSet<String>,
        > = Default::default();
        for e in seen.iter().filter(|e| e["state"] == "deleted") {
            by_instance
                .entry(e["instance"].as_str().unwrap().to_owned())
                .or_default()
                .insert(e["id"].as_str().unwrap().to_owned());
        }
        if by_instance.len() == N {
            break (by_instance, seen.len());
        }
        assert!(
            Instant::now() < deadline,
            "{} of {N} deletions' events arrived",
            by_instance.len()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    for (instance, event_ids) in &by_instance {
        assert_eq!(
            event_ids.len(),
            1,
            "{instance} came under several ids: {event_ids:?}"
        );
    }
    eprintln!(
        "{N} events, {deliveries} deliveries ({} made again after the leader was killed)",
        deliveries - N
    );
}

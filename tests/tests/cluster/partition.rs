//! A datacenter cut off and healed for real: three network namespaces are the datacenters
//! (PAR, FRA, AMS), each with one `vmcloud scheduler` replica and 20 simulated hosts, joined by
//! a bridge. AMS's link is set down past the time after which a silent host is declared down,
//! then up again. During the cut the leader raises the partition alarm and declares none of
//! AMS's hosts down, and writes through PAR go on; after the heal every host is ready again
//! without any having been declared down (the datacenter's hosts get the grace to reconnect),
//! and no instance changed state.
//!
//! Needs root (network namespaces); skipped with the reason elsewhere.

use std::net::IpAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use vmcloud_tests::cluster::{SchedulerCluster, TEST_API_KEY};
use vmcloud_tests::vmcloud_bin;

const TEST: &str = "cluster::partition::a_cut_datacenter_heals_without_a_host_declared_down_or_an_instance_changed";
const HOSTS_PER_DC: usize = 20;
/// Short liveness timeouts (agents send a heartbeat every 5 s), so that the cut outlasts
/// `down_after` and its jitter (up to 20 %) within seconds.
const SUSPECT_AFTER: &str = "8s";
const DOWN_AFTER_S: u64 = 14;
/// The default grace (`--liveness-grace`): agents that failed to reconnect during the cut
/// return out of their backoff (up to 30 s) over about that long.
const GRACE_S: u64 = 30;
const CUT: Duration = Duration::from_secs(25);

/// Namespaces, the bridge and the agents removed however the test ends.
struct Net {
    tag: String,
    namespaces: Vec<String>,
    agents: Vec<Child>,
}

impl Drop for Net {
    fn drop(&mut self) {
        for a in &mut self.agents {
            let _ = a.kill();
            let _ = a.wait();
        }
        for ns in &self.namespaces {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
        let _ = Command::new("ip")
            .args(["link", "del", &format!("{}br", self.tag)])
            .status();
    }
}

fn run(args: &[&str]) {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Net {
    /// The bridge in this namespace (with an address of its own, so the test reaches every
    /// datacenter) and one namespace per datacenter, plugged into it by a veth pair.
    fn new(datacenters: &[&str]) -> Net {
        let tag = format!("vp{}", std::process::id() % 100_000);
        let mut net = Net {
            tag: tag.clone(),
            namespaces: Vec::new(),
            agents: Vec::new(),
        };
        let bridge = format!("{tag}br");
        run(&["ip", "link", "add", &bridge, "type", "bridge"]);
        run(&["ip", "addr", "add", "198.18.77.254/24", "dev", &bridge]);
        run(&["ip", "link", "set", &bridge, "up"]);
        for (i, dc) in datacenters.iter().enumerate() {
            let ns = format!("{tag}-{dc}");
            run(&["ip", "netns", "add", &ns]);
            net.namespaces.push(ns.clone());
            run(&["ip", "-n", &ns, "link", "set", "lo", "up"]);
            let outside = net.link(dc);
            run(&[
                "ip", "link", "add", &outside, "type", "veth", "peer", "name", "eth0", "netns", &ns,
            ]);
            run(&["ip", "link", "set", &outside, "master", &bridge, "up"]);
            let address = format!("198.18.77.{}/24", i + 1);
            run(&["ip", "-n", &ns, "addr", "add", &address, "dev", "eth0"]);
            run(&["ip", "-n", &ns, "link", "set", "eth0", "up"]);
        }
        net
    }

    /// The bridge's end of a datacenter's link.
    fn link(&self, dc: &str) -> String {
        format!("{}{dc}", self.tag)
    }

    fn namespace(&self, dc: &str) -> String {
        format!("{}-{dc}", self.tag)
    }
}

struct Api {
    http: reqwest::Client,
}

impl Api {
    async fn get(&self, url: &str) -> Option<Value> {
        let resp = self
            .http
            .get(url)
            .bearer_auth(TEST_API_KEY)
            .send()
            .await
            .ok()?;
        resp.error_for_status().ok()?.json().await.ok()
    }

    /// `(node id, state, liveness)` of every node, as the replica at `api` lists them.
    async fn nodes(&self, api: &str) -> Option<Vec<(String, String, String)>> {
        let list = self.get(&format!("{api}/v1/nodes?limit=1000")).await?;
        Some(
            list["nodes"]
                .as_array()?
                .iter()
                .map(|n| {
                    let s = |k: &str| n[k].as_str().unwrap_or_default().to_owned();
                    (s("id"), s("state"), s("liveness"))
                })
                .collect(),
        )
    }

    async fn instances(&self, api: &str) -> Option<Vec<(String, String)>> {
        let list = self.get(&format!("{api}/v1/instances?limit=1000")).await?;
        Some(
            list["instances"]
                .as_array()?
                .iter()
                .map(|i| {
                    let s = |k: &str| i[k].as_str().unwrap_or_default().to_owned();
                    (s("id"), s("state"))
                })
                .collect(),
        )
    }

    /// The replica every running one agrees leads, by index.
    async fn leader(&self, cluster: &SchedulerCluster, within: Duration) -> usize {
        let deadline = Instant::now() + within;
        loop {
            let mut leaders = Vec::new();
            for i in 0..cluster.len() {
                let view = self.get(&format!("{}/v1/cluster", cluster.api(i))).await;
                leaders.push(view.and_then(|v| v["leader"].as_u64()));
            }
            if let Some(Some(l)) = leaders.first()
                && leaders.iter().all(|x| *x == Some(*l))
            {
                return *l as usize - 1;
            }
            assert!(
                Instant::now() < deadline,
                "replicas do not agree on a leader: {leaders:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_datacenter_heals_without_a_host_declared_down_or_an_instance_changed() {
    if !nix::unistd::Uid::effective().is_root() {
        vmcloud_proto::testing::skip(TEST, "needs root to make network namespaces");
        return;
    }
    let dcs = ["par", "fra", "ams"];
    let mut net = Net::new(&dcs);
    let placements: Vec<(String, IpAddr)> = dcs
        .iter()
        .enumerate()
        .map(|(i, dc)| {
            (
                net.namespace(dc),
                format!("198.18.77.{}", i + 1).parse().unwrap(),
            )
        })
        .collect();
    let mut cluster = SchedulerCluster::in_namespaces(
        &placements,
        &[
            "--suspect-after",
            SUSPECT_AFTER,
            "--down-after",
            &format!("{DOWN_AFTER_S}s"),
        ],
    );
    cluster.start_ready(3);
    let api = Api {
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap(),
    };
    let mut leader = api.leader(&cluster, Duration::from_secs(30)).await;
    if leader == 2 {
        // The cut datacenter's replica must not lead: the test is about its hosts.
        let out = Command::new(vmcloud_bin())
            .env("XDG_CONFIG_HOME", cluster.dir.path().join("cli-config"))
            .args(["cluster", "transfer-leader", "--to", "1"])
            .args(["--api", &cluster.api(2), "--token", TEST_API_KEY])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
        leader = api.leader(&cluster, Duration::from_secs(30)).await;
    }
    assert_ne!(leader, 2);
    let leader_api = cluster.api(leader);

    // 20 simulated hosts per datacenter, in its namespace; their own replica first.
    let dir = tempfile::tempdir().unwrap();
    for (i, dc) in dcs.iter().enumerate() {
        let gateways: Vec<String> = (0..3)
            .map(|j| cluster.gateway((i + j) % 3).to_string())
            .collect();
        let log = std::fs::File::create(dir.path().join(format!("agents-{dc}.log"))).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", &net.namespace(dc)])
            .arg(vmcloud_bin())
            .args(["agent", "--sim", "--shape", "cpu"])
            .args(["--count", &HOSTS_PER_DC.to_string()])
            .args(["--node", dc, "--region", dc])
            .args(["--scheduler", &gateways.join(",")])
            .arg("--pki-dir")
            .arg(cluster.pki_dir())
            .arg("--data-dir")
            .arg(dir.path().join(dc))
            .env("RUST_LOG", "info,quinn=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        net.agents.push(child);
    }
    let all = 3 * HOSTS_PER_DC;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let nodes = api.nodes(&leader_api).await.unwrap_or_default();
        if nodes
            .iter()
            .filter(|n| n.1 == "ready" && n.2 == "alive")
            .count()
            == all
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not all {all} hosts ready within 60 s: {nodes:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // Instances at AMS and at PAR, running before the cut.
    for (n, region) in ["ams", "ams", "ams", "par", "par"].iter().enumerate() {
        let resp = api
            .http
            .post(format!("{leader_api}/v1/instances"))
            .bearer_auth(TEST_API_KEY)
            .json(
                &json!({"flavor": "vps-s", "image": "debian-12", "region": region,
                           "name": format!("cut-{n}")}),
            )
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "{}", resp.text().await.unwrap());
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let before = loop {
        let list = api.instances(&leader_api).await.unwrap_or_default();
        if list.len() == 5 && list.iter().all(|i| i.1 == "running") {
            break list;
        }
        assert!(
            Instant::now() < deadline,
            "instances not running within 60 s: {list:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };

    // The cut.
    eprintln!("cutting AMS for {CUT:?}");
    run(&["ip", "link", "set", &net.link("ams"), "down"]);
    let cut = Instant::now();
    let mut alarm = false;
    let mut writes = 0;
    let mut downs: Vec<String> = Vec::new();
    let mut suspects = 0;
    while cut.elapsed() < CUT {
        if let Some(nodes) = api.nodes(&leader_api).await {
            downs.extend(nodes.iter().filter(|n| n.1 == "down").map(|n| n.0.clone()));
            suspects = suspects.max(nodes.iter().filter(|n| n.2 == "suspect").count());
        }
        if let Some(view) = api.get(&format!("{leader_api}/v1/cluster")).await
            && view["partition_alarms"]
                .as_array()
                .is_some_and(|a| a.iter().any(|x| x["region"] == "ams"))
        {
            alarm = true;
        }
        // A write through PAR, acknowledged.
        let resp = api
            .http
            .post(format!("{}/v1/firewalls", cluster.api(0)))
            .bearer_auth(TEST_API_KEY)
            .json(&json!({"name": format!("during-cut-{writes}")}))
            .send()
            .await
            .unwrap();
        assert!(
            resp.status().is_success(),
            "a write through PAR during the cut: {}",
            resp.text().await.unwrap()
        );
        writes += 1;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert!(
        alarm,
        "the leader raised no partition alarm for AMS during the cut"
    );
    assert!(
        suspects >= HOSTS_PER_DC,
        "AMS's hosts were never suspect: the cut did not cut ({suspects})"
    );
    assert!(
        downs.is_empty(),
        "hosts declared down during the cut: {downs:?}"
    );

    // The heal: every host ready again, none declared down on the way.
    eprintln!("healing AMS after {:.0} s", cut.elapsed().as_secs_f64());
    run(&["ip", "link", "set", &net.link("ams"), "up"]);
    let healed = Instant::now();
    // Agents that kept failing during the cut wait out their backoff (≤ 15 s) and a handshake.
    // A straggler may need two handshake timeouts and backoffs (10 s + up to 15 s each).
    let watch = Duration::from_secs(2 * GRACE_S);
    let mut ready_after = None;
    while healed.elapsed() < watch {
        if let Some(nodes) = api.nodes(&leader_api).await {
            downs.extend(nodes.iter().filter(|n| n.1 == "down").map(|n| n.0.clone()));
            if ready_after.is_none()
                && nodes
                    .iter()
                    .filter(|n| n.1 == "ready" && n.2 == "alive")
                    .count()
                    == all
            {
                ready_after = Some(healed.elapsed());
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // The leader logs every node it declares down; a down and back within a poll is there.
    let declared: Vec<String> = (0..3)
        .flat_map(|i| {
            std::fs::read_to_string(cluster.log(i))
                .unwrap_or_default()
                .lines()
                .filter(|l| l.contains("declaring the node down"))
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(
        downs.is_empty(),
        "hosts declared down after the heal: {downs:?}"
    );
    assert!(
        declared.is_empty(),
        "the leader declared hosts down:\n{}",
        declared.join("\n")
    );
    let Some(ready_after) = ready_after else {
        let nodes = api.nodes(&leader_api).await.unwrap_or_default();
        let behind: Vec<_> = nodes.iter().filter(|n| n.2 != "alive").collect();
        let region = behind
            .first()
            .map_or("ams", |n| n.0.split('-').next().unwrap_or("ams"));
        let log = std::fs::read_to_string(dir.path().join(format!("agents-{region}.log")))
            .unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(30).collect();
        let leader_log = std::fs::read_to_string(cluster.log(leader)).unwrap_or_default();
        let leader_tail: Vec<&str> = leader_log.lines().rev().take(30).collect();
        panic!(
            "not every host was heard again within {watch:?} of the heal: {behind:?}\n{region} agents' log (last lines, newest first):\n{}\nthe leader's log (newest first):\n{}",
            tail.join("\n"),
            leader_tail.join("\n")
        );
    };
    let after = api.instances(&leader_api).await.unwrap();
    assert_eq!(after, before, "an instance changed state across the cut");
    eprintln!(
        "AMS cut {:.0} s: partition alarm raised, 0 hosts declared down, {writes} writes through PAR acknowledged; after the heal all {all} hosts heard again in {:.1} s, 0 declared down, {} instances unchanged",
        CUT.as_secs_f64(),
        ready_after.as_secs_f64(),
        after.len()
    );
    drop(cluster);
}

//! Tenant networks across two hosts for real: two network namespaces are the hosts, joined by
//! a veth pair (the underlay); on each a `vmcloud agent` (test driver for the VMs) that joined
//! with a token makes its networks' bridges, VXLAN devices and flood entries in its host's
//! namespace from the scheduler's desired config. Guests are namespaces plugged into their
//! network's bridge with the address the scheduler's IPAM gave their instance. Guests of one
//! network ping each other across the hosts; another project's guests, on the same subnet,
//! are not reachable from them. A firewall opening port 22 lets a TCP connection through
//! while another port stays shut; without the rule port 22 shuts too; detached, all is open
//! again (nftables on the host, applied without touching the guest). A floating IP reaches the
//! instance it is assigned to from its host, and the one it is moved to after.
//!
//! Needs root (network namespaces); skipped with the reason elsewhere.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use vmcloud_tests::vmcloud_bin;

use super::customers::{Api, customer};
use super::{Fixture, cli_json, eventually};

const TEST: &str = "dev::vxlan::guests_of_a_network_reach_each_other_across_hosts_and_nobody_else";

/// Network namespaces removed, and agents stopped, however the test ends.
#[derive(Default)]
struct Cleanup {
    namespaces: Vec<String>,
    agents: Vec<Child>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for a in &mut self.agents {
            let _ = a.kill();
            let _ = a.wait();
        }
        for ns in &self.namespaces {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
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

fn netns(cleanup: &mut Cleanup, name: &str) {
    run(&["ip", "netns", "add", name]);
    cleanup.namespaces.push(name.to_owned());
    run(&["ip", "-n", name, "link", "set", "lo", "up"]);
}

/// Whether `from` (a guest namespace) gets an answer from `to` within `limit`.
fn pings(from: &str, to: &str, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        let ok = Command::new("ip")
            .args(["netns", "exec", from, "ping", "-c", "1", "-W", "1", to])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return true;
        }
    }
    false
}

#[tokio::test]
async fn guests_of_a_network_reach_each_other_across_hosts_and_nobody_else() {
    if !nix::unistd::Uid::effective().is_root() {
        vmcloud_proto::testing::skip(TEST, "needs root to make network namespaces");
        return;
    }
    for tool in ["ip", "ping"] {
        if Command::new(tool).arg("-V").output().is_err() {
            vmcloud_proto::testing::skip(TEST, &format!("`{tool}` is not installed"));
            return;
        }
    }
    let fx = Fixture::start();
    let tag = std::process::id() % 100_000;
    let mut cleanup = Cleanup::default();
    let hosts = [format!("vxh1-{tag}"), format!("vxh2-{tag}")];
    for h in &hosts {
        netns(&mut cleanup, h);
    }
    // The underlay: a veth pair between the two hosts.
    let (u1, u2) = (format!("vxu1-{tag}"), format!("vxu2-{tag}"));
    run(&[
        "ip", "link", "add", &u1, "type", "veth", "peer", "name", &u2,
    ]);
    for (dev, host, ip) in [
        (&u1, &hosts[0], "192.0.2.1/24"),
        (&u2, &hosts[1], "192.0.2.2/24"),
    ] {
        run(&["ip", "link", "set", dev, "netns", host]);
        run(&["ip", "-n", host, "addr", "add", ip, "dev", dev]);
        run(&["ip", "-n", host, "link", "set", dev, "up"]);
    }

    // An agent per host, joined with a token; its networks in its host's namespace.
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    std::fs::create_dir_all(&pki).unwrap();
    std::fs::copy(fx.fleet.data_dir.join("pki/ca.pem"), pki.join("ca.pem")).unwrap();
    for (n, (host, (dev, ip))) in hosts
        .iter()
        .zip([(&u1, "192.0.2.1"), (&u2, "192.0.2.2")])
        .enumerate()
    {
        let node = format!("vx-host-{}", n + 1);
        let token = cli_json(
            &fx,
            &["token", "create", "--node-name", &node, "--ttl", "15m"],
        )["token"]
            .as_str()
            .unwrap()
            .to_owned();
        let agent = Command::new(vmcloud_bin())
            .args([
                "agent", "--node", &node, "--region", "ams", "--shape", "cpu",
            ])
            .args(["--hypervisor", "test:///default", "--networks", "host"])
            .args([
                "--tenant-netns",
                host,
                "--underlay-device",
                dev,
                "--underlay-ip",
                ip,
            ])
            .args(["--scheduler", &fx.fleet.gateway, "--token", &token])
            .arg("--pki-dir")
            .arg(&pki)
            .arg("--data-dir")
            .arg(dir.path().join(&node))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        cleanup.agents.push(agent);
    }
    eventually(Duration::from_secs(30), "both hosts connected", || async {
        let n = cli_json(&fx, &["node", "list"]);
        let connected = n["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|n| n["region"] == "ams" && n["connected"] == true)
            .count();
        (connected == 2).then_some(())
    })
    .await;

    // Two projects; each has two instances in ams, one per host (a spread group), on its
    // default network — both 10.0.0.0/24. Project B's second asks for 10.0.0.9.
    let api = Api {
        base: &fx.fleet.api,
    };
    let (b_token, _, b_project) = customer(&fx, &api, "bea@example.org", "B Corp").await;
    // Project A is the dev project: its key names it, no `?project=` needed.
    let a_project = String::new();
    let scoped = |path: &str, project: &str| {
        if project.is_empty() {
            path.to_owned()
        } else {
            let sep = if path.contains('?') { '&' } else { '?' };
            format!("{path}{sep}project={project}")
        }
    };
    let create = |token: String, project: String, ip: Option<&'static str>| {
        let api = Api {
            base: &fx.fleet.api,
        };
        async move {
            let mut body = json!({"flavor": "vps-s", "image": "debian-12", "region": "ams",
                "spread_group": "web"});
            if let Some(ip) = ip {
                body["private_ipv4"] = ip.into();
            }
            let (status, made) = api
                .call(
                    "POST",
                    &scoped("/v1/instances", &project),
                    Some(&token),
                    Some(body),
                )
                .await;
            assert_eq!(status, 201, "{made}");
            made["id"].as_str().unwrap().to_owned()
        }
    };
    let a_token = fx.fleet.token.clone();
    let a1 = create(a_token.clone(), a_project.clone(), None).await;
    let a2 = create(a_token.clone(), a_project.clone(), None).await;
    let b1 = create(b_token.clone(), b_project.clone(), None).await;
    let b2 = create(b_token.clone(), b_project.clone(), Some("10.0.0.9")).await;

    // Each running on its host: plug a guest namespace into its network's bridge there.
    let mut guests = Vec::new();
    for (n, (id, token, project)) in [
        (&a1, &a_token, &a_project),
        (&a2, &a_token, &a_project),
        (&b1, &b_token, &b_project),
        (&b2, &b_token, &b_project),
    ]
    .into_iter()
    .enumerate()
    {
        let instance: Value = eventually(Duration::from_secs(30), "running", || async {
            let (_, i) = api
                .call(
                    "GET",
                    &scoped(&format!("/v1/instances/{id}"), project),
                    Some(token),
                    None,
                )
                .await;
            (i["state"] == "running").then_some(i)
        })
        .await;
        let (_, network) = api
            .call(
                "GET",
                &scoped(
                    &format!("/v1/networks/{}", instance["network"].as_str().unwrap()),
                    project,
                ),
                Some(token),
                None,
            )
            .await;
        let host = match instance["node"].as_str().unwrap() {
            "vx-host-1" => &hosts[0],
            "vx-host-2" => &hosts[1],
            other => panic!("{id} is on {other}, not on a test host"),
        };
        let bridge = format!("vmcbr{}", network["vni"]);
        let guest = format!("vxg{n}-{tag}");
        netns(&mut cleanup, &guest);
        // The host side is named as a tap of the instance would be, so that its firewall
        // applies to it.
        let (inside, outside) = (
            format!("vxgi{n}-{tag}"),
            vmcloud_agent::firewall::port_name(id),
        );
        run(&[
            "ip", "link", "add", &inside, "type", "veth", "peer", "name", &outside,
        ]);
        run(&["ip", "link", "set", &inside, "netns", &guest]);
        run(&["ip", "link", "set", &outside, "netns", host]);
        // The bridge is the agent's: wait for it.
        let deadline = Instant::now() + Duration::from_secs(20);
        while !Command::new("ip")
            .args(["-n", host, "link", "show", &bridge])
            .output()
            .unwrap()
            .status
            .success()
        {
            assert!(Instant::now() < deadline, "no {bridge} on {host}");
            std::thread::sleep(Duration::from_millis(100));
        }
        run(&[
            "ip", "-n", host, "link", "set", &outside, "master", &bridge, "mtu", "1450", "up",
        ]);
        let address = format!("{}/24", instance["private_ipv4"].as_str().unwrap());
        run(&["ip", "-n", &guest, "addr", "add", &address, "dev", &inside]);
        run(&[
            "ip", "-n", &guest, "link", "set", &inside, "mtu", "1450", "up",
        ]);
        guests.push((
            guest,
            instance["private_ipv4"].as_str().unwrap().to_owned(),
            instance["node"].as_str().unwrap().to_owned(),
            inside,
        ));
    }
    assert_ne!(
        guests[0].2, guests[1].2,
        "A's instances share a host: {guests:?}"
    );
    assert_ne!(
        guests[2].2, guests[3].2,
        "B's instances share a host: {guests:?}"
    );
    assert_eq!(guests[3].1, "10.0.0.9");

    // One network, two hosts: through VXLAN.
    let limit = Duration::from_secs(20);
    assert!(
        pings(&guests[0].0, &guests[1].1, limit),
        "A1 cannot reach A2 ({guests:?})"
    );
    assert!(
        pings(&guests[1].0, &guests[0].1, limit),
        "A2 cannot reach A1"
    );
    assert!(
        pings(&guests[2].0, &guests[3].1, limit),
        "B1 cannot reach B2 at 10.0.0.9"
    );
    // The same subnet in another project is another network: A reaches nothing of B's.
    assert!(
        !pings(&guests[0].0, "10.0.0.9", Duration::from_secs(3)),
        "A1 reached B2's 10.0.0.9 across projects"
    );
    // The flood entries the agents made name the other host.
    let (_, net) = api
        .call(
            "GET",
            &scoped("/v1/networks", &a_project),
            Some(&a_token),
            None,
        )
        .await;
    let vni = net["networks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["region"] == "ams")
        .unwrap()["vni"]
        .clone();
    let fdb = Command::new("ip")
        .args([
            "netns",
            "exec",
            &hosts[0],
            "bridge",
            "fdb",
            "show",
            "dev",
            &format!("vmcvx{vni}"),
        ])
        .output()
        .unwrap();
    let fdb = String::from_utf8_lossy(&fdb.stdout);
    assert!(fdb.contains("00:00:00:00:00:00 dst 192.0.2.2"), "{fdb}");

    // A firewall on A2: port 22 open, 23 shut, from anywhere.
    let a2_ip = guests[1].1.clone();
    for port in [22, 23] {
        listen(&guests[1].0, port);
    }
    let from_a1 = |port: u16| connects(&guests[0].0, &a2_ip, port);
    assert!(from_a1(22) && from_a1(23), "unfiltered, both ports answer");
    let fw = cli_json(&fx, &["firewall", "create", "ssh", "--rule", "in tcp 22"]);
    let fw = fw["id"].as_str().unwrap().to_owned();
    let out = fx.fleet.cli(&["firewall", "attach", &fw, &a2]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let shut = |port: u16| {
        let deadline = Instant::now() + Duration::from_secs(20);
        while from_a1(port) {
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        true
    };
    assert!(shut(23), "port 23 still answers through the firewall");
    assert!(from_a1(22), "port 22 does not answer through the firewall");
    let rules = Command::new("ip")
        .args([
            "netns", "exec", &hosts[1], "nft", "list", "table", "inet", "vmcloud",
        ])
        .output()
        .unwrap();
    let rules = String::from_utf8_lossy(&rules.stdout);
    assert!(rules.contains("tcp dport 22 accept"), "{rules}");
    // The rule gone, port 22 shuts too; detached, everything answers again.
    let out = fx.fleet.cli(&["firewall", "rules", &fw]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(shut(22), "port 22 still answers without its rule");
    let out = fx.fleet.cli(&["firewall", "detach", &fw, &a2]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while !(from_a1(22) && from_a1(23)) {
        assert!(Instant::now() < deadline, "detached, the ports stay shut");
        std::thread::sleep(Duration::from_millis(200));
    }

    // A floating IP on A1, then moved to A2 (on the other host). The guest takes the address
    // as cloud-init would from its network config (a /32, and the world through its host).
    let fip = cli_json(&fx, &["ip", "create", "--region", "ams", "--instance", &a1]);
    let (fip_id, address) = (
        fip["id"].as_str().unwrap().to_owned(),
        fip["address"].as_str().unwrap().to_owned(),
    );
    let host_of = |n: usize| {
        if guests[n].2 == "vx-host-1" {
            &hosts[0]
        } else {
            &hosts[1]
        }
    };
    let take = |n: usize| {
        let (ns, dev) = (&guests[n].0, &guests[n].3);
        run(&[
            "ip",
            "-n",
            ns,
            "addr",
            "add",
            &format!("{address}/32"),
            "dev",
            dev,
        ]);
        run(&["ip", "-n", ns, "route", "replace", "default", "dev", dev]);
    };
    let routed = |host: &str| {
        let out = Command::new("ip")
            .args(["-n", host, "route", "show", &format!("{address}/32")])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).contains("vmcbr")
    };
    take(0);
    assert!(
        pings(host_of(0), &address, limit),
        "{address} does not reach A1 from its host"
    );
    assert!(routed(host_of(0)));
    let out = fx.fleet.cli(&["ip", "assign", &fip_id, &a2]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    run(&[
        "ip",
        "-n",
        &guests[0].0,
        "addr",
        "del",
        &format!("{address}/32"),
        "dev",
        &guests[0].3,
    ]);
    take(1);
    assert!(
        pings(host_of(1), &address, limit),
        "{address} does not reach A2 after the move"
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while routed(host_of(0)) {
        assert!(
            Instant::now() < deadline,
            "A1's host still routes {address}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Enters the network namespace `ns` on the calling thread.
fn enter(ns: &str) {
    let f = std::fs::File::open(format!("/run/netns/{ns}")).unwrap();
    nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
}

/// A TCP listener on `port` in guest namespace `ns` that accepts (and drops) connections
/// for as long as the test runs.
fn listen(ns: &str, port: u16) {
    let ns = ns.to_owned();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        enter(&ns);
        let l = std::net::TcpListener::bind(("0.0.0.0", port)).unwrap();
        tx.send(()).unwrap();
        for conn in l.incoming() {
            drop(conn);
        }
    });
    rx.recv().unwrap();
}

/// Whether a TCP connection from guest namespace `ns` to `ip:port` opens within a second.
fn connects(ns: &str, ip: &str, port: u16) -> bool {
    let (ns, addr) = (ns.to_owned(), format!("{ip}:{port}").parse().unwrap());
    std::thread::spawn(move || {
        enter(&ns);
        std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok()
    })
    .join()
    .unwrap()
}
